// ACPI tables for a hardware-reduced x86 guest (ACPI 6.4): RSDP, XSDT, FADT, MADT and a DSDT
// describing COM1 and the virtio-mmio devices. Built from a plain AcpiConfig into byte vectors,
// then copied into guest RAM. Called from the main thread during VM setup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "boot/layout.h"
#include "boot/result.h"

namespace minivmm::boot {

#pragma pack(push, 1)
// System Description Table Header, ACPI 6.4 §5.2.6.
struct SdtHeader {
  char signature[4];
  uint32_t length;
  uint8_t revision;
  uint8_t checksum;
  char oem_id[6];
  char oem_table_id[8];
  uint32_t oem_revision;
  char creator_id[4];
  uint32_t creator_revision;
};
static_assert(sizeof(SdtHeader) == 36);
static_assert(offsetof(SdtHeader, checksum) == 9);
static_assert(offsetof(SdtHeader, oem_table_id) == 16);
static_assert(offsetof(SdtHeader, creator_revision) == 32);

// Root System Description Pointer, revision 2, §5.2.5.3.
struct Rsdp {
  char signature[8];  // "RSD PTR "
  uint8_t checksum;   // over the first 20 bytes (the ACPI 1.0 structure)
  char oem_id[6];
  uint8_t revision;  // 2
  uint32_t rsdt_address;
  uint32_t length;  // 36
  uint64_t xsdt_address;
  uint8_t extended_checksum;  // over all 36 bytes
  uint8_t reserved[3];
};
static_assert(sizeof(Rsdp) == 36);
static_assert(offsetof(Rsdp, revision) == 15);
static_assert(offsetof(Rsdp, length) == 20);
static_assert(offsetof(Rsdp, xsdt_address) == 24);
static_assert(offsetof(Rsdp, extended_checksum) == 32);

// Generic Address Structure, §5.2.3.2.
struct GenericAddress {
  uint8_t address_space_id;  // 1: System I/O
  uint8_t register_bit_width;
  uint8_t register_bit_offset;
  uint8_t access_size;  // 1: byte access
  uint64_t address;
};
static_assert(sizeof(GenericAddress) == 12);

// Fixed ACPI Description Table, revision 6, §5.2.9 Table 5.9. Fields a hardware-reduced
// platform leaves zero are collapsed into byte arrays.
struct Fadt {
  SdtHeader header;                     // 0
  uint32_t firmware_ctrl;               // 36
  uint32_t dsdt;                        // 40
  uint8_t reserved0;                    // 44
  uint8_t preferred_pm_profile;         // 45
  uint16_t sci_int;                     // 46
  uint8_t legacy_pm_fields[109 - 48];   // 48: SMI_CMD .. CENTURY, all 0 when HW-reduced
  uint16_t iapc_boot_arch;              // 109
  uint8_t reserved1;                    // 111
  uint32_t flags;                       // 112
  GenericAddress reset_reg;             // 116
  uint8_t reset_value;                  // 128
  uint16_t arm_boot_arch;               // 129
  uint8_t fadt_minor_version;           // 131
  uint64_t x_firmware_ctrl;             // 132
  uint64_t x_dsdt;                      // 140
  GenericAddress x_pm_blocks[8];        // 148: X_PM1a_EVT_BLK .. X_GPE1_BLK, unused
  GenericAddress sleep_control_reg;     // 244
  GenericAddress sleep_status_reg;      // 256
  uint64_t hypervisor_vendor_identity;  // 268
};
static_assert(sizeof(Fadt) == 276);
static_assert(offsetof(Fadt, iapc_boot_arch) == 109);
static_assert(offsetof(Fadt, flags) == 112);
static_assert(offsetof(Fadt, reset_reg) == 116);
static_assert(offsetof(Fadt, reset_value) == 128);
static_assert(offsetof(Fadt, fadt_minor_version) == 131);
static_assert(offsetof(Fadt, x_dsdt) == 140);
static_assert(offsetof(Fadt, sleep_control_reg) == 244);
static_assert(offsetof(Fadt, sleep_status_reg) == 256);
static_assert(offsetof(Fadt, hypervisor_vendor_identity) == 268);

// Multiple APIC Description Table, §5.2.12, and its interrupt controller structures.
struct MadtHeader {
  SdtHeader header;
  uint32_t local_apic_address;
  uint32_t flags;  // bit 0 PCAT_COMPAT
};
static_assert(sizeof(MadtHeader) == 44);

struct MadtLocalApic {  // type 0, §5.2.12.2
  uint8_t type;
  uint8_t length;
  uint8_t processor_uid;
  uint8_t apic_id;
  uint32_t flags;  // bit 0 Enabled
};
static_assert(sizeof(MadtLocalApic) == 8);

struct MadtIoApic {  // type 1, §5.2.12.3
  uint8_t type;
  uint8_t length;
  uint8_t io_apic_id;
  uint8_t reserved;
  uint32_t address;
  uint32_t gsi_base;
};
static_assert(sizeof(MadtIoApic) == 12);

struct MadtInterruptSourceOverride {  // type 2, §5.2.12.5
  uint8_t type;
  uint8_t length;
  uint8_t bus;  // 0: ISA
  uint8_t source;
  uint32_t gsi;
  uint16_t flags;  // MPS INTI flags, 0: conforms to the bus
};
static_assert(sizeof(MadtInterruptSourceOverride) == 10);

struct MadtLocalApicNmi {  // type 4, §5.2.12.7
  uint8_t type;
  uint8_t length;
  uint8_t processor_uid;  // 0xff: all processors
  uint16_t flags;
  uint8_t lint;
};
static_assert(sizeof(MadtLocalApicNmi) == 6);
#pragma pack(pop)

// FADT flags (§5.2.9 Table 5.10) and IA-PC boot architecture flags (§5.2.9.3 Table 5.11).
inline constexpr uint32_t kFadtResetRegSupported = 1u << 10;
inline constexpr uint32_t kFadtHwReducedAcpi = 1u << 20;
inline constexpr uint16_t kBootArchVgaNotPresent = 1u << 2;
inline constexpr uint16_t kBootArchMsiNotSupported = 1u << 3;
inline constexpr uint16_t kBootArchCmosRtcNotPresent = 1u << 5;
inline constexpr uint32_t kMadtPcatCompat = 1u << 0;

struct AcpiConfig {
  uint32_t num_cpus = 1;  // local APIC IDs and ACPI processor UIDs 0 .. num_cpus-1
  std::vector<VirtioMmioDeviceInfo> devices;
  bool serial = true;  // describe COM1 (kCom1Port, kCom1Irq) in the DSDT
  bool pvpanic = false;  // describe QEMU's pvpanic device (kPvpanicHid at kPvpanicPort)
  // MADT PCAT_COMPAT: KVM's in-kernel irqchip includes dual 8259 PICs, so the platform does
  // have them; the flag tells the OS to mask them when it switches to the IOAPIC.
  bool pcat_compat = true;
  // Interrupt Source Override ISA IRQ 0 -> GSI 2. Off by default: KVM's default GSI routing
  // connects GSI 0 (the in-kernel PIT) to IOAPIC pin 0, so there is nothing to override. Turn
  // it on only if the VMM routes the PIT to pin 2 as a PC does.
  bool irq0_override = false;
};

// Each table's bytes (checksums filled) and guest address, as build_acpi_tables lays them out:
// RSDP at the area start, then XSDT, FADT, MADT, DSDT, each 16-byte aligned.
struct AcpiTables {
  uint64_t rsdp_addr = 0, xsdt_addr = 0, fadt_addr = 0, madt_addr = 0, dsdt_addr = 0;
  std::vector<uint8_t> rsdp, xsdt, fadt, madt, dsdt;
};

// Fills the SDT header at the start of `table` (signature, length = table.size(), revision,
// minivmm OEM fields) and then its checksum.
void finish_sdt(std::vector<uint8_t>& table, const char (&signature)[5], uint8_t revision);

// The individual tables (checksums filled). build_dsdt is in dsdt.h.
std::vector<uint8_t> build_fadt(uint64_t dsdt_addr);
std::vector<uint8_t> build_madt(const AcpiConfig& config);
std::vector<uint8_t> build_xsdt(std::span<const uint64_t> table_addrs);
std::vector<uint8_t> build_rsdp(uint64_t xsdt_addr);

// Validates `config` (1..254 CPUs, device windows below 4 GiB, IRQs on IOAPIC pins and not
// COM1's) and lays the tables out in [area_start, area_end).
Result<AcpiTables> build_acpi_tables(const AcpiConfig& config, uint64_t area_start = kAcpiAreaStart,
                                     uint64_t area_end = kAcpiAreaEnd);

// build_acpi_tables, then copies them into `low_ram` (index == guest physical address).
// Returns the RSDP's guest address, for boot_params.acpi_rsdp_addr.
Result<uint64_t> write_acpi_tables(std::span<uint8_t> low_ram, const AcpiConfig& config,
                                   uint64_t area_start = kAcpiAreaStart,
                                   uint64_t area_end = kAcpiAreaEnd);

}  // namespace minivmm::boot
