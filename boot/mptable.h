// Intel MultiProcessor Specification 1.4 tables: how a guest without ACPI (`--no-acpi`, or
// a kernel booted with acpi=off) learns its CPUs, its IOAPIC and how ISA interrupts reach
// it. Linux reads them when it finds no ACPI MADT (CONFIG_X86_MPPARSE); without them it
// sees one CPU and runs the PIC in virtual-wire mode. With ACPI the MADT wins and these are
// ignored, so they are always written.
//
// What the tables say, matching the VMM's hardware and the MADT (boot/acpi.cc):
//   processors   one per vCPU, APIC id = vCPU index, vCPU 0 the bootstrap processor
//   bus 0        ISA
//   IOAPIC       id = number of vCPUs (unique among APIC ids), at kIoapicAddr
//   interrupts   ISA IRQ n -> IOAPIC pin n for every pin (KVM's default GSI routing; the
//                virtio-mmio devices' IRQs kVirtioIrqBase.. included), bus-default
//                polarity and trigger (edge, active high)
//   local        ExtINT -> LINT0 and NMI -> LINT1 of every local APIC (as vcpu.cc programs
//                them)
// Pure functions over byte spans, like the rest of boot/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "boot/layout.h"
#include "boot/result.h"

namespace minivmm::boot {

#pragma pack(push, 1)
// MP Floating Pointer Structure, MP spec §4.1.
struct MpFloatingPointer {
  char signature[4];     // "_MP_"
  uint32_t config_addr;  // physical address of the configuration table
  uint8_t length;        // in 16-byte units: 1
  uint8_t spec_rev;      // 4: version 1.4
  uint8_t checksum;      // all 16 bytes sum to 0
  uint8_t features[5];   // feature byte 1 = 0: a configuration table is present
};
static_assert(sizeof(MpFloatingPointer) == 16);

// MP Configuration Table Header, §4.2.
struct MpConfigHeader {
  char signature[4];  // "PCMP"
  uint16_t base_length;
  uint8_t spec_rev;
  uint8_t checksum;  // the base table (header + entries) sums to 0
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table_addr;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t local_apic_addr;
  uint16_t ext_length;
  uint8_t ext_checksum;
  uint8_t reserved;
};
static_assert(sizeof(MpConfigHeader) == 44);

// Processor entry, §4.3.1.
struct MpProcessor {
  uint8_t type;  // 0
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // bit 0 enabled, bit 1 bootstrap processor
  uint32_t signature;
  uint32_t features;
  uint32_t reserved[2];
};
static_assert(sizeof(MpProcessor) == 20);

// Bus entry, §4.3.2.
struct MpBus {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];  // "ISA   "
};
static_assert(sizeof(MpBus) == 8);

// I/O APIC entry, §4.3.3.
struct MpIoApic {
  uint8_t type;  // 2
  uint8_t id;
  uint8_t version;
  uint8_t flags;  // bit 0 enabled
  uint32_t address;
};
static_assert(sizeof(MpIoApic) == 8);

// I/O interrupt (type 3) and local interrupt (type 4) assignment entries, §4.3.4-5.
struct MpInterrupt {
  uint8_t type;
  uint8_t interrupt_type;  // 0 INT, 1 NMI, 2 SMI, 3 ExtINT
  uint16_t flags;          // 0: polarity and trigger conform to the bus
  uint8_t source_bus;
  uint8_t source_irq;
  uint8_t dest_apic;  // an IOAPIC id (type 3), a local APIC id or 0xff = all (type 4)
  uint8_t dest_pin;   // IOAPIC INTIN# (type 3), LINTIN# (type 4)
};
static_assert(sizeof(MpInterrupt) == 8);
#pragma pack(pop)

// The floating pointer followed by the configuration table, as placed at `addr` (16-byte
// aligned). An error for 0 or more than kMaxCpus (boot/layout.h) CPUs.
Result<std::vector<uint8_t>> build_mptable(uint32_t num_cpus, uint64_t addr = kMpTableAddr);

// build_mptable at kMpTableAddr, copied into `low_ram` (index == guest physical address);
// the rest of [kMpTableAddr, kMpTableAreaEnd) is zeroed.
Result<void> write_mptable(std::span<uint8_t> low_ram, uint32_t num_cpus);

}  // namespace minivmm::boot
