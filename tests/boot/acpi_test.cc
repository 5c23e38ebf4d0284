#include "boot/acpi.h"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "boot/dsdt.h"
#include "boot/layout.h"
#include "tests/boot/table_bytes.h"

using namespace minivmm::boot;

using minivmm::test::sum;

namespace {

template <typename T>
T read(const std::vector<uint8_t>& bytes, size_t offset) {
  return minivmm::test::at<T>(bytes.data() + offset);
}

std::string signature(const std::vector<uint8_t>& ram, uint64_t addr) {
  return std::string(reinterpret_cast<const char*>(ram.data() + addr), 4);
}

AcpiConfig sample_config(uint32_t cpus, uint32_t devices) {
  AcpiConfig config;
  config.num_cpus = cpus;
  for (uint32_t i = 0; i < devices; ++i) config.devices.push_back(*virtio_mmio_slot(i));
  return config;
}

bool contains(const std::vector<uint8_t>& haystack, const std::vector<uint8_t>& needle) {
  return std::search(haystack.begin(), haystack.end(), needle.begin(), needle.end()) !=
         haystack.end();
}

}  // namespace

TEST_CASE("ACPI tables in guest RAM: checksums, RSDP, XSDT", "[boot][acpi]") {
  std::vector<uint8_t> ram(2 * kMiB, 0xee);
  auto rsdp_addr = write_acpi_tables(ram, sample_config(4, 3));
  REQUIRE(rsdp_addr);
  CHECK(*rsdp_addr == 0xe0000);

  const uint8_t* rsdp = ram.data() + *rsdp_addr;
  CHECK(std::memcmp(rsdp, "RSD PTR ", 8) == 0);
  CHECK(rsdp[15] == 2);       // revision
  CHECK(sum(rsdp, 20) == 0);  // ACPI 1.0 checksum
  CHECK(sum(rsdp, 36) == 0);  // extended checksum
  uint32_t rsdp_length, rsdt;
  uint64_t xsdt_addr;
  std::memcpy(&rsdt, rsdp + 16, 4);
  std::memcpy(&rsdp_length, rsdp + 20, 4);
  std::memcpy(&xsdt_addr, rsdp + 24, 8);
  CHECK(rsdt == 0);
  CHECK(rsdp_length == 36);
  REQUIRE(signature(ram, xsdt_addr) == "XSDT");

  uint32_t xsdt_length;
  std::memcpy(&xsdt_length, ram.data() + xsdt_addr + 4, 4);
  REQUIRE(xsdt_length == 36 + 16);
  CHECK(sum(ram.data() + xsdt_addr, xsdt_length) == 0);
  uint64_t entries[2];
  std::memcpy(entries, ram.data() + xsdt_addr + 36, 16);
  CHECK(signature(ram, entries[0]) == "FACP");
  CHECK(signature(ram, entries[1]) == "APIC");

  uint64_t x_dsdt;
  std::memcpy(&x_dsdt, ram.data() + entries[0] + 140, 8);
  CHECK(signature(ram, x_dsdt) == "DSDT");
  // Every table sums to zero over its own length, and all stay in the ACPI area.
  for (uint64_t addr : {xsdt_addr, entries[0], entries[1], x_dsdt}) {
    uint32_t length;
    std::memcpy(&length, ram.data() + addr + 4, 4);
    INFO(signature(ram, addr));
    CHECK(sum(ram.data() + addr, length) == 0);
    CHECK(addr % 16 == 0);
    CHECK(addr >= kAcpiAreaStart);
    CHECK(addr + length <= kAcpiAreaEnd);
  }
}

TEST_CASE("FADT is hardware-reduced with sleep and reset registers", "[boot][acpi]") {
  const auto fadt = build_fadt(0xe1000);
  REQUIRE(fadt.size() == 276);
  CHECK(std::memcmp(fadt.data(), "FACP", 4) == 0);
  CHECK(read<uint32_t>(fadt, 4) == 276);
  CHECK(fadt[8] == 6);  // revision
  CHECK(sum(fadt.data(), fadt.size()) == 0);
  CHECK(read<uint32_t>(fadt, 40) == 0xe1000);   // DSDT
  CHECK(read<uint64_t>(fadt, 140) == 0xe1000);  // X_DSDT
  const auto flags = read<uint32_t>(fadt, 112);
  CHECK((flags & (1u << 20)));           // HW_REDUCED_ACPI
  CHECK((flags & (1u << 10)));           // RESET_REG_SUP
  CHECK(read<uint16_t>(fadt, 46) == 0);  // no SCI
  // RESET_REG: System I/O, 8 bits, port 0x64, value 0xfe.
  CHECK(fadt[116] == 1);
  CHECK(fadt[117] == 8);
  CHECK(read<uint64_t>(fadt, 120) == kAcpiResetPort);
  CHECK(fadt[128] == kAcpiResetValue);
  CHECK(fadt[244] == 1);
  CHECK(read<uint64_t>(fadt, 248) == kAcpiSleepControlPort);
  CHECK(fadt[256] == 1);
  CHECK(read<uint64_t>(fadt, 260) == kAcpiSleepStatusPort);
  CHECK(std::memcmp(fadt.data() + 268, "MINIVMM", 7) == 0);
}

TEST_CASE("MADT has one enabled local APIC per vCPU and the IOAPIC", "[boot][acpi]") {
  for (uint32_t cpus : {1u, 2u, 8u, 254u}) {
    INFO(cpus << " vCPUs");
    const auto madt = build_madt(sample_config(cpus, 0));
    CHECK(std::memcmp(madt.data(), "APIC", 4) == 0);
    CHECK(read<uint32_t>(madt, 4) == madt.size());
    CHECK(sum(madt.data(), madt.size()) == 0);
    CHECK(read<uint32_t>(madt, 36) == 0xfee0'0000);
    CHECK(read<uint32_t>(madt, 40) == 1);  // PCAT_COMPAT
    uint32_t lapics = 0, ioapics = 0, nmis = 0, overrides = 0;
    size_t off = 44;
    while (off < madt.size()) {
      const uint8_t type = madt[off];
      const uint8_t length = madt[off + 1];
      REQUIRE(length >= 2);
      if (type == 0) {
        CHECK(madt[off + 2] == lapics);  // processor UID
        CHECK(madt[off + 3] == lapics);  // APIC ID
        CHECK(read<uint32_t>(madt, off + 4) == 1);
        ++lapics;
      } else if (type == 1) {
        CHECK(read<uint32_t>(madt, off + 4) == 0xfec0'0000);
        CHECK(read<uint32_t>(madt, off + 8) == 0);
        ++ioapics;
      } else if (type == 2) {
        ++overrides;
      } else if (type == 4) {
        CHECK(madt[off + 2] == 0xff);
        CHECK(madt[off + 5] == 1);  // LINT1
        ++nmis;
      }
      off += length;
    }
    CHECK(off == madt.size());
    CHECK(lapics == cpus);
    CHECK(ioapics == 1);
    CHECK(nmis == 1);
    CHECK(overrides == 0);
  }
  AcpiConfig config = sample_config(1, 0);
  config.irq0_override = true;
  config.pcat_compat = false;
  const auto madt = build_madt(config);
  CHECK(read<uint32_t>(madt, 40) == 0);
  // Override: after the LAPIC (8) and IOAPIC (12) entries: bus 0, IRQ 0 -> GSI 2.
  CHECK(madt[44 + 8 + 12] == 2);
  CHECK(madt[44 + 8 + 12 + 3] == 0);
  CHECK(read<uint32_t>(madt, 44 + 8 + 12 + 4) == 2);
}

TEST_CASE("DSDT contains COM1, the virtio devices and _S5_", "[boot][acpi]") {
  const auto dsdt = build_dsdt(sample_config(1, 2));
  CHECK(std::memcmp(dsdt.data(), "DSDT", 4) == 0);
  CHECK(dsdt[8] == 2);
  CHECK(read<uint32_t>(dsdt, 4) == dsdt.size());
  CHECK(sum(dsdt.data(), dsdt.size()) == 0);
  auto bytes = [](const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); };
  CHECK(contains(dsdt, bytes("COM1")));
  CHECK(contains(dsdt, bytes("V000")));
  CHECK(contains(dsdt, bytes("V001")));
  CHECK_FALSE(contains(dsdt, bytes("V002")));
  CHECK(contains(dsdt, bytes("LNRO0005")));
  CHECK(contains(dsdt, {0x08, '_', 'S', '5', '_', 0x12}) == false);  // rooted: \_S5_
  CHECK(contains(dsdt, {0x08, 0x5c, '_', 'S', '5', '_', 0x12}));
  AcpiConfig no_serial = sample_config(1, 0);
  no_serial.serial = false;
  CHECK_FALSE(contains(build_dsdt(no_serial), bytes("COM1")));
  // pvpanic: \_SB_.PEVT, _HID "QEMU0001", IO(Decode16, 0x505, 0x505, 1, 1).
  CHECK_FALSE(contains(dsdt, bytes("QEMU0001")));
  AcpiConfig pvpanic = sample_config(1, 0);
  pvpanic.pvpanic = true;
  const auto with = build_dsdt(pvpanic);
  CHECK(contains(with, bytes("PEVT")));
  CHECK(contains(with, bytes("QEMU0001")));
  CHECK(contains(with, {0x47, 0x01, 0x05, 0x05, 0x05, 0x05, 0x01, 0x01}));
  CHECK(sum(with.data(), with.size()) == 0);
}

TEST_CASE("bad ACPI configs are rejected", "[boot][acpi]") {
  CHECK_FALSE(build_acpi_tables(sample_config(0, 0)));
  CHECK_FALSE(build_acpi_tables(sample_config(255, 0)));
  CHECK(build_acpi_tables(sample_config(kMaxCpus, kMaxVirtioMmioDevices)));
  AcpiConfig clash = sample_config(1, 0);
  clash.devices.push_back({0xd000'0000, 0x1000, kCom1Irq});
  auto r = build_acpi_tables(clash);
  REQUIRE_FALSE(r);
  CHECK(r.error() == "ACPI: virtio-mmio IRQ 4 is not a free IOAPIC pin");
  AcpiConfig high = sample_config(1, 0);
  high.devices.push_back({0x1'0000'0000, 0x1000, 5});
  CHECK_FALSE(build_acpi_tables(high));
  AcpiConfig pin = sample_config(1, 0);
  pin.devices.push_back({0xd000'0000, 0x1000, 24});
  CHECK_FALSE(build_acpi_tables(pin));
  // A too-small area is an error, not an overflow.
  auto small = build_acpi_tables(sample_config(2, 2), kAcpiAreaStart, kAcpiAreaStart + 256);
  REQUIRE_FALSE(small);
  CHECK(small.error().starts_with("ACPI tables need "));
  std::vector<uint8_t> tiny(kAcpiAreaStart + 100);
  CHECK_FALSE(write_acpi_tables(tiny, sample_config(1, 0)));
}
