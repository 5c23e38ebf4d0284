#include "boot/acpi.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "boot/dsdt.h"
#include "boot/firmware_table.h"
#include "boot/format.h"

namespace minivmm::boot {
namespace {

constexpr uint8_t kFadtRevision = 6;  // ACPI 6.x FADT (276 bytes)
constexpr uint8_t kFadtMinorVersion = 4;
constexpr uint8_t kMadtRevision = 5;
constexpr uint8_t kXsdtRevision = 1;
constexpr uint8_t kRsdpRevision = 2;
constexpr uint8_t kAddressSpaceSystemIo = 1;
constexpr uint8_t kAccessSizeByte = 1;
constexpr uint8_t kMadtTypeLocalApic = 0;
constexpr uint8_t kMadtTypeIoApic = 1;
constexpr uint8_t kMadtTypeSourceOverride = 2;
constexpr uint8_t kMadtTypeLocalApicNmi = 4;
constexpr uint32_t kLocalApicEnabled = 1;
constexpr uint8_t kAllProcessors = 0xff;
constexpr uint64_t kTableAlignment = 16;
constexpr size_t kRsdpV1Length = 20;  // §5.2.5.3: checksum covers the ACPI 1.0 fields

GenericAddress io_register(uint16_t port) {
  return {kAddressSpaceSystemIo, 8, 0, kAccessSizeByte, port};
}

uint64_t align_up(uint64_t value) {
  return (value + kTableAlignment - 1) / kTableAlignment * kTableAlignment;
}

Result<void> check_config(const AcpiConfig& config) {
  if (config.num_cpus == 0 || config.num_cpus > kMaxCpus) {
    return Error{"ACPI: " + std::to_string(config.num_cpus) + " vCPUs; supported are 1 to " +
                 std::to_string(kMaxCpus)};
  }
  if (config.devices.size() > kIoapicPins) {
    return Error{"ACPI: " + std::to_string(config.devices.size()) +
                 " virtio-mmio devices; at most " + std::to_string(kIoapicPins) + " have IRQs"};
  }
  for (const VirtioMmioDeviceInfo& dev : config.devices) {
    if (dev.size == 0 || dev.base > 0xffff'ffff || dev.size > 0x1'0000'0000 - dev.base) {
      return Error{"ACPI: virtio-mmio window " + hex(dev.base) + "+" + hex(dev.size) +
                   " is not inside the 32-bit address space"};
    }
    if (dev.irq >= kIoapicPins || (config.serial && dev.irq == kCom1Irq)) {
      return Error{"ACPI: virtio-mmio IRQ " + std::to_string(dev.irq) +
                   " is not a free IOAPIC pin"};
    }
  }
  return {};
}

}  // namespace

void finish_sdt(std::vector<uint8_t>& table, const char (&signature)[5], uint8_t revision) {
  SdtHeader header;
  std::memcpy(header.signature, signature, 4);
  header.length = static_cast<uint32_t>(table.size());
  header.revision = revision;
  header.checksum = 0;
  std::memcpy(header.oem_id, "MINIVM", 6);
  std::memcpy(header.oem_table_id, "MINIVMM ", 8);
  header.oem_revision = 1;
  std::memcpy(header.creator_id, "MVMM", 4);
  header.creator_revision = 1;
  std::memcpy(table.data(), &header, sizeof header);
  table[offsetof(SdtHeader, checksum)] = zero_sum_checksum(table);
}

std::vector<uint8_t> build_fadt(uint64_t dsdt_addr) {
  Fadt fadt;
  std::memset(&fadt, 0, sizeof fadt);
  // §5.2.9: a hardware-reduced platform has no SCI, PM1/PM2/GPE blocks or PM timer; it uses the
  // sleep control/status registers (§4.8.3.7-8) instead of PM1 control/status.
  fadt.flags = kFadtHwReducedAcpi | kFadtResetRegSupported;
  fadt.iapc_boot_arch = kBootArchVgaNotPresent | kBootArchMsiNotSupported |
                        kBootArchCmosRtcNotPresent;  // 8042 bit clear: Linux skips i8042 probing
  fadt.dsdt = dsdt_addr <= 0xffff'ffff ? static_cast<uint32_t>(dsdt_addr) : 0;
  fadt.x_dsdt = dsdt_addr;
  fadt.reset_reg = io_register(kAcpiResetPort);
  fadt.reset_value = kAcpiResetValue;
  fadt.fadt_minor_version = kFadtMinorVersion;
  fadt.sleep_control_reg = io_register(kAcpiSleepControlPort);
  fadt.sleep_status_reg = io_register(kAcpiSleepStatusPort);
  std::memcpy(&fadt.hypervisor_vendor_identity, "MINIVMM ", 8);
  std::vector<uint8_t> table;
  append_struct(table, fadt);
  finish_sdt(table, "FACP", kFadtRevision);
  return table;
}

std::vector<uint8_t> build_madt(const AcpiConfig& config) {
  std::vector<uint8_t> table;
  MadtHeader header{};
  header.local_apic_address = static_cast<uint32_t>(kLapicAddr);
  header.flags = config.pcat_compat ? kMadtPcatCompat : 0;
  append_struct(table, header);
  // §5.2.12.2: ACPI processor UID = APIC ID = vCPU index; KVM gives vCPU n APIC ID n.
  for (uint32_t cpu = 0; cpu < config.num_cpus && cpu < kMaxCpus; ++cpu) {
    const auto id = static_cast<uint8_t>(cpu);
    append_struct(
        table, MadtLocalApic{kMadtTypeLocalApic, sizeof(MadtLocalApic), id, id, kLocalApicEnabled});
  }
  // §5.2.12.3: GSIs 0..23 on the IOAPIC's pins. ID 0 is what KVM's in-kernel IOAPIC reports
  // in its ID register after reset (IOAPIC and local APIC IDs are separate namespaces).
  append_struct(table, MadtIoApic{kMadtTypeIoApic, sizeof(MadtIoApic), 0, 0,
                                  static_cast<uint32_t>(kIoapicAddr), 0});
  if (config.irq0_override) {
    append_struct(table,
                  MadtInterruptSourceOverride{kMadtTypeSourceOverride,
                                              sizeof(MadtInterruptSourceOverride), 0, 0, 2, 0});
  }
  // §5.2.12.7: LINT1 of every local APIC is the NMI input (as on a PC).
  append_struct(table, MadtLocalApicNmi{kMadtTypeLocalApicNmi, sizeof(MadtLocalApicNmi),
                                        kAllProcessors, 0, 1});
  finish_sdt(table, "APIC", kMadtRevision);
  return table;
}

std::vector<uint8_t> build_xsdt(std::span<const uint64_t> table_addrs) {
  std::vector<uint8_t> table(sizeof(SdtHeader));
  for (uint64_t addr : table_addrs) append_struct(table, addr);  // §5.2.8: 64-bit entries
  finish_sdt(table, "XSDT", kXsdtRevision);
  return table;
}

std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr) {
  Rsdp rsdp;
  std::memset(&rsdp, 0, sizeof rsdp);
  std::memcpy(rsdp.signature, "RSD PTR ", 8);
  std::memcpy(rsdp.oem_id, "MINIVM", 6);
  rsdp.revision = kRsdpRevision;
  rsdp.length = sizeof(Rsdp);
  rsdp.xsdt_address = xsdt_addr;  // no RSDT: ACPI 2.0+ OSes use the XSDT
  std::vector<uint8_t> out;
  append_struct(out, rsdp);
  out[offsetof(Rsdp, checksum)] = zero_sum_checksum(std::span(out).first(kRsdpV1Length));
  out[offsetof(Rsdp, extended_checksum)] = zero_sum_checksum(out);
  return out;
}

Result<AcpiTables> build_acpi_tables(const AcpiConfig& config, uint64_t area_start,
                                     uint64_t area_end) {
  if (auto ok = check_config(config); !ok) return Error{ok.error()};
  AcpiTables t;
  t.dsdt = build_dsdt(config);
  t.madt = build_madt(config);
  // Layout: RSDP, XSDT (2 entries), FADT, MADT, DSDT.
  t.rsdp_addr = align_up(area_start);
  t.xsdt_addr = align_up(t.rsdp_addr + sizeof(Rsdp));
  t.fadt_addr = align_up(t.xsdt_addr + sizeof(SdtHeader) + 2 * sizeof(uint64_t));
  t.madt_addr = align_up(t.fadt_addr + sizeof(Fadt));
  t.dsdt_addr = align_up(t.madt_addr + t.madt.size());
  const uint64_t end = t.dsdt_addr + t.dsdt.size();
  if (end > area_end) {
    return Error{"ACPI tables need " + std::to_string(end - area_start) + " bytes, the area " +
                 hex(area_start) + "-" + hex(area_end) + " has " +
                 std::to_string(area_end - area_start)};
  }
  t.fadt = build_fadt(t.dsdt_addr);
  const uint64_t entries[] = {t.fadt_addr, t.madt_addr};
  t.xsdt = build_xsdt(entries);
  t.rsdp = build_rsdp(t.xsdt_addr);
  return t;
}

Result<uint64_t> write_acpi_tables(std::span<uint8_t> low_ram, const AcpiConfig& config,
                                   uint64_t area_start, uint64_t area_end) {
  auto tables = build_acpi_tables(config, area_start, area_end);
  if (!tables) return Error{tables.error()};
  const std::pair<uint64_t, const std::vector<uint8_t>*> parts[] = {
      {tables->rsdp_addr, &tables->rsdp},
      {tables->xsdt_addr, &tables->xsdt},
      {tables->fadt_addr, &tables->fadt},
      {tables->madt_addr, &tables->madt},
      {tables->dsdt_addr, &tables->dsdt}};
  // Zero the whole area first so the gaps between tables are deterministic.
  auto area = guest_range(low_ram, area_start, area_end - area_start);
  if (!area) return Error{"guest memory too small for the ACPI tables at " + hex(area_start)};
  std::memset(area->data(), 0, area->size());
  for (const auto& [addr, bytes] : parts) {
    auto dest = guest_range(low_ram, addr, bytes->size());
    if (!dest) return Error{"guest memory too small for the ACPI tables at " + hex(addr)};
    std::memcpy(dest->data(), bytes->data(), bytes->size());
  }
  return tables->rsdp_addr;
}

}  // namespace minivmm::boot
