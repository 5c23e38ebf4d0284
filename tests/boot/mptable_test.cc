#include "boot/mptable.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "boot/acpi.h"
#include "boot/layout.h"
#include "tests/boot/table_bytes.h"

using namespace minivmm::boot;

using minivmm::test::at;
using minivmm::test::sum;

namespace {

// What Linux's MP parser (arch/x86/kernel/mpparse.c) gets out of the tables: it looks for
// "_MP_" on 16-byte boundaries with a valid checksum, follows the pointer, checks "PCMP"
// and the checksum, then walks entry_count entries whose size depends on their type.
struct Parsed {
  std::vector<MpProcessor> cpus;
  std::vector<MpBus> buses;
  std::vector<MpIoApic> ioapics;
  std::vector<MpInterrupt> io_ints;
  std::vector<MpInterrupt> local_ints;
  MpConfigHeader header{};
};

Parsed parse(const std::vector<uint8_t>& ram, uint64_t scan_start, uint64_t scan_end) {
  Parsed out;
  uint64_t found = 0;
  int hits = 0;
  for (uint64_t a = scan_start; a + 16 <= scan_end; a += 16) {
    if (std::memcmp(ram.data() + a, "_MP_", 4) == 0 && sum(ram.data() + a, 16) == 0) {
      found = a;
      ++hits;
    }
  }
  REQUIRE(hits == 1);
  const auto fp = at<MpFloatingPointer>(ram.data() + found);
  CHECK(fp.length == 1);
  CHECK(fp.spec_rev == 4);
  CHECK(fp.features[0] == 0);  // a configuration table follows, not a default configuration
  REQUIRE(fp.config_addr + sizeof(MpConfigHeader) <= ram.size());
  const uint8_t* config = ram.data() + fp.config_addr;
  out.header = at<MpConfigHeader>(config);
  REQUIRE(std::string(out.header.signature, 4) == "PCMP");
  REQUIRE(fp.config_addr + out.header.base_length <= ram.size());
  CHECK(sum(config, out.header.base_length) == 0);
  size_t off = sizeof(MpConfigHeader);
  for (uint16_t i = 0; i < out.header.entry_count; ++i) {
    REQUIRE(off < out.header.base_length);
    switch (config[off]) {
      case 0:
        out.cpus.push_back(at<MpProcessor>(config + off));
        off += sizeof(MpProcessor);
        break;
      case 1:
        out.buses.push_back(at<MpBus>(config + off));
        off += 8;
        break;
      case 2:
        out.ioapics.push_back(at<MpIoApic>(config + off));
        off += 8;
        break;
      case 3:
        out.io_ints.push_back(at<MpInterrupt>(config + off));
        off += 8;
        break;
      case 4:
        out.local_ints.push_back(at<MpInterrupt>(config + off));
        off += 8;
        break;
      default:
        FAIL("unknown MP entry type " << int{config[off]});
    }
  }
  CHECK(off == out.header.base_length);  // entry_count and base_length agree
  return out;
}

}  // namespace

TEST_CASE("MP table: CPUs, ISA bus, IOAPIC and every pin, as Linux parses them",
          "[boot][mptable]") {
  const uint32_t cpus = GENERATE(1u, 2u, 7u, kMaxCpus);
  std::vector<uint8_t> ram(2 * kMiB, 0xcc);
  REQUIRE(write_mptable(ram, cpus));
  // Linux searches the BIOS ROM area 0xf0000-0xfffff (mpparse.c smp_scan_config).
  const Parsed p = parse(ram, 0xf0000, 0x100000);
  CHECK(p.header.spec_rev == 4);
  CHECK(p.header.local_apic_addr == kLapicAddr);

  REQUIRE(p.cpus.size() == cpus);
  for (uint32_t i = 0; i < cpus; ++i) {
    CHECK(p.cpus[i].apic_id == i);
    CHECK((p.cpus[i].flags & 1) == 1);                // enabled
    CHECK(((p.cpus[i].flags & 2) != 0) == (i == 0));  // vCPU 0 is the bootstrap processor
  }
  REQUIRE(p.buses.size() == 1);
  CHECK(std::string(p.buses[0].bus_type, 6) == "ISA   ");
  REQUIRE(p.ioapics.size() == 1);
  CHECK(p.ioapics[0].address == kIoapicAddr);
  CHECK(p.ioapics[0].flags == 1);
  CHECK(p.ioapics[0].id == cpus);  // not one of the local APIC ids
  // IRQ n -> pin n for all 24 pins, so that the virtio-mmio IRQs reach the guest too.
  REQUIRE(p.io_ints.size() == kIoapicPins);
  for (uint32_t pin = 0; pin < kIoapicPins; ++pin) {
    CHECK(p.io_ints[pin].source_bus == p.buses[0].bus_id);
    CHECK(p.io_ints[pin].source_irq == pin);
    CHECK(p.io_ints[pin].dest_apic == p.ioapics[0].id);
    CHECK(p.io_ints[pin].dest_pin == pin);
  }
  CHECK(virtio_mmio_slot(kMaxVirtioMmioDevices - 1)->irq < kIoapicPins);
  REQUIRE(p.local_ints.size() == 2);
  CHECK(p.local_ints[0].interrupt_type == 3);  // ExtINT
  CHECK(p.local_ints[0].dest_pin == 0);        // LINT0
  CHECK(p.local_ints[1].interrupt_type == 1);  // NMI
  CHECK(p.local_ints[1].dest_pin == 1);        // LINT1
  CHECK(p.local_ints[1].dest_apic == 0xff);    // every local APIC
}

TEST_CASE("MP table: impossible CPU counts and memory are errors, not crashes", "[boot][mptable]") {
  CHECK_FALSE(build_mptable(0));
  auto too_many = build_mptable(kMaxCpus + 1);
  REQUIRE_FALSE(too_many);
  CHECK_THAT(too_many.error(), Catch::Contains("255 CPUs"));
  CHECK_FALSE(build_mptable(1, kMpTableAddr + 8));  // not 16-byte aligned
  std::vector<uint8_t> small(kMpTableAddr + 64);
  CHECK_FALSE(write_mptable(small, 1));
}

TEST_CASE("MP table and ACPI tables live side by side", "[boot][mptable]") {
  std::vector<uint8_t> ram(2 * kMiB, 0);
  AcpiConfig acpi;
  acpi.num_cpus = 4;
  acpi.devices.push_back(*virtio_mmio_slot(0));
  auto rsdp = write_acpi_tables(ram, acpi);
  REQUIRE(rsdp);
  REQUIRE(write_mptable(ram, 4));
  // Both are still intact: the RSDP and the MP pointer keep their checksums.
  CHECK(std::memcmp(ram.data() + *rsdp, "RSD PTR ", 8) == 0);
  CHECK(sum(ram.data() + *rsdp, 20) == 0);
  CHECK(sum(ram.data() + *rsdp, 36) == 0);
  CHECK(parse(ram, 0xf0000, 0x100000).cpus.size() == 4);
  CHECK(kMpTableAddr >= kAcpiAreaEnd);  // separate areas: writing one never clobbers the other
}
