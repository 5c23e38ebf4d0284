// Long-mode CPU state for the Linux 64-bit boot protocol (boot.rst "64-bit Boot Protocol"):
// identity-mapped page tables, a GDT with flat __BOOT_CS (0x10) and __BOOT_DS (0x18), an empty
// IDT, and the register values the VMM loads into the boot vCPU. No KVM types here: the VMM
// copies SegmentDescriptor fields into struct kvm_segment. Called from the main thread.
#pragma once

#include <cstdint>
#include <span>

#include "boot/result.h"

namespace minivmm::boot {

// Page table entry bits (Intel SDM Vol. 3A §4.5, Table 4-14..4-18).
inline constexpr uint64_t kPtePresent = 1ull << 0;
inline constexpr uint64_t kPteWritable = 1ull << 1;
inline constexpr uint64_t kPtePageSize = 1ull << 7;  // in a PDE: maps a 2 MiB page

// Control register and EFER bits (SDM Vol. 3A §2.5, §2.2.1).
inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;

// Linux's boot selectors (arch/x86/include/asm/segment.h GDT_ENTRY_BOOT_CS = 2, _DS = 3).
inline constexpr uint16_t kBootCsSelector = 0x10;
inline constexpr uint16_t kBootDsSelector = 0x18;

// A segment register as KVM wants it (struct kvm_segment has the same fields): limit in bytes
// (already scaled by the granularity), attribute bits unpacked.
struct SegmentDescriptor {
  uint64_t base = 0;
  uint32_t limit = 0;
  uint16_t selector = 0;
  uint8_t type = 0;  // 4-bit type (SDM Vol. 3A §3.4.5.1 for code/data)
  uint8_t present = 0;
  uint8_t dpl = 0;
  uint8_t db = 0;  // default operation size (must be 0 when l = 1)
  uint8_t s = 0;   // 1: code/data, 0: system
  uint8_t l = 0;   // 64-bit code segment
  uint8_t g = 0;   // limit granularity 4 KiB
  bool operator==(const SegmentDescriptor&) const = default;
};

struct DescriptorTableRegister {
  uint64_t base = 0;
  uint16_t limit = 0;
};

// __BOOT_CS: 4 GiB flat, execute/read, 64-bit (GDT entry 0x00af9b000000ffff).
SegmentDescriptor boot_code_segment();
// __BOOT_DS: 4 GiB flat, read/write (GDT entry 0x00cf93000000ffff). Also used for ES, SS, FS, GS.
SegmentDescriptor boot_data_segment();
// TR: a usable busy 64-bit TSS (type 11) at base 0, not backed by the GDT; hardware
// virtualization requires a usable TR at entry, and Linux loads its own TSS before it needs one.
SegmentDescriptor boot_tss_segment();

// The 8-byte GDT entry for a code/data descriptor (SDM Vol. 3A §3.4.5, Figure 3-8).
uint64_t gdt_entry(const SegmentDescriptor& segment);

// Everything the VMM loads into the boot vCPU besides RIP (the kernel entry point), RSI (the
// zero page) or RBX (PVH's start info), and RSP/RBP (kBootStackPointer); RFLAGS = 0x2
// (interrupts disabled).
struct BootCpuState {
  uint64_t cr0;
  uint64_t cr3;
  uint64_t cr4;
  uint64_t efer;
  DescriptorTableRegister gdt;
  DescriptorTableRegister idt;
  SegmentDescriptor code;  // CS
  SegmentDescriptor data;  // DS, ES, FS, GS, SS
  SegmentDescriptor tss;   // TR
};
inline constexpr uint64_t kBootRflags = 0x2;  // bit 1 is reserved and always set
// The 64-bit boot protocol: long mode, paging on with the identity map of write_page_tables.
BootCpuState long_mode_state();
// The PVH entry (Xen's docs/misc/pvh.pandoc): 32-bit protected mode, paging off, flat 4 GiB
// code (CS) and data (DS, ES, SS) segments, a 32-bit TSS; CR4 and EFER clear.
BootCpuState pvh_state();

// Writes the PML4 at kPml4Addr, the PDPT at kPdptAddr and kPdCount page directories at kPdAddr
// that identity-map [0, 4 GiB) with 2 MiB pages. `low_ram`: index == guest physical address.
Result<void> write_page_tables(std::span<uint8_t> low_ram);

// Writes the GDT at kGdtAddr (null, null, __BOOT_CS, __BOOT_DS) and an empty IDT at kIdtAddr.
Result<void> write_gdt_and_idt(std::span<uint8_t> low_ram);

}  // namespace minivmm::boot
