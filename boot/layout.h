// x86_64 guest physical memory layout, interrupt numbers and I/O ports that minivmm presents to
// a Linux guest. Every other file in boot/ and the VMM take their addresses from here.
//
// Guest physical map:
//   0x0000_0500  GDT: null, null, __BOOT_CS (0x10), __BOOT_DS (0x18)   (32 bytes)
//   0x0000_0520  IDT: one empty gate; interrupts stay disabled until Linux loads its own
//   0x0000_7000  zero page (struct boot_params, 4 KiB)
//   0x0000_8ff0  boot stack pointer (stack grows down into 0x8000..0x8fef)
//   0x0000_9000  PML4, 0xa000 PDPT, 0xb000..0xefff four page directories
//   0x0002_0000  kernel command line (up to kCmdlineMaxSize bytes with the NUL)
//   0x0009_fc00  EBDA / VGA / BIOS area, reserved in e820 up to 1 MiB
//   0x000e_0000  ACPI: RSDP, then XSDT, FADT, MADT, DSDT (inside the reserved BIOS area,
//                where ACPI 6.4 §5.2.5.1 says to search for the RSDP; we also pass its address
//                in boot_params.acpi_rsdp_addr)
//   0x000f_0000  MP floating pointer and MP configuration table (MultiProcessor Spec 1.4
//                §4: the BIOS ROM area is one of the places searched), for guests without
//                ACPI
//   0x0010_0000  protected-mode kernel (bzImage), 64-bit entry at +0x200
//   ...          initrd at the top of low RAM
//   0xc000_0000  32-bit MMIO gap [3 GiB, 4 GiB): no RAM here
//   0xd000_0000  virtio-mmio devices, one 4 KiB slot each
//   0xfec0_0000  IOAPIC, 0xfee0_0000 local APIC
//   0x1_0000_0000  RAM beyond 3 GiB continues here
//
// Page tables identity-map [0, 4 GiB) with 2 MiB pages. 1 GiB pages would need only the PDPT,
// but they need CPUID.80000001H:EDX.Page1GB, which not every (emulated, nested) vCPU offers;
// 2 MiB pages work on every x86_64 CPU. The whole first 4 GiB is mapped, so the kernel, the
// zero page and the command line are mapped wherever they are (Linux boot.rst "64-bit Boot
// Protocol": they must be identity mapped).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

namespace minivmm::boot {

inline constexpr uint64_t kKiB = 1024;
inline constexpr uint64_t kMiB = 1024 * kKiB;
inline constexpr uint64_t kGiB = 1024 * kMiB;
inline constexpr uint64_t kPageSize = 4096;

// ---- Low memory: CPU boot structures -------------------------------------------------------
inline constexpr uint64_t kGdtAddr = 0x500;
inline constexpr uint64_t kGdtEntries = 4;  // null, null, code 0x10, data 0x18
inline constexpr uint64_t kIdtAddr = 0x520;
inline constexpr uint64_t kPvhStartInfoAddr = 0x6000;  // hvm_start_info, memmap, modlist (PVH)
inline constexpr uint64_t kZeroPageAddr = 0x7000;
inline constexpr uint64_t kBootStackPointer = 0x8ff0;
inline constexpr uint64_t kPml4Addr = 0x9000;
inline constexpr uint64_t kPdptAddr = 0xa000;
inline constexpr uint64_t kPdAddr = 0xb000;  // first of kPdCount page directories
inline constexpr uint64_t kPdCount = 4;      // one per GiB
inline constexpr uint64_t kIdentityMapSize = 4 * kGiB;
inline constexpr uint64_t kCmdlineAddr = 0x20000;
inline constexpr uint64_t kCmdlineMaxSize = 0x10000;  // bytes including the terminating NUL

// ---- Low memory: firmware area ---------------------------------------------------------------
inline constexpr uint64_t kEbdaStart = 0x9fc00;  // e820: [0, kEbdaStart) is RAM
inline constexpr uint64_t kAcpiAreaStart = 0xe0000;
inline constexpr uint64_t kAcpiAreaEnd = 0xf0000;
inline constexpr uint64_t kMpTableAddr = kAcpiAreaEnd;
inline constexpr uint64_t kMpTableAreaEnd = 0x100000;
inline constexpr uint64_t kRsdpAddr = kAcpiAreaStart;

// ---- Kernel ------------------------------------------------------------------------------------
inline constexpr uint64_t kKernelLoadAddr = 0x100000;  // 1 MiB, boot.rst "loading the rest"
inline constexpr uint64_t kKernelEntryOffset = 0x200;  // 64-bit entry: load address + 0x200

// ---- 32-bit MMIO gap and devices -------------------------------------------------------------
inline constexpr uint64_t kMmioGapStart = 0xc000'0000;
inline constexpr uint64_t kMmioGapEnd = 0x1'0000'0000;
inline constexpr uint64_t kHighRamStart = kMmioGapEnd;
inline constexpr uint64_t kVirtioMmioBase = 0xd000'0000;
// virtio 1.2 §4.2.2 registers span 0x100 + config space; a 4 KiB slot keeps each device on its
// own page (so the VMM can map or trap them individually).
inline constexpr uint64_t kVirtioMmioSlotSize = 0x1000;
inline constexpr uint64_t kIoapicAddr = 0xfec0'0000;
inline constexpr uint64_t kLapicAddr = 0xfee0'0000;

// ---- Interrupts (GSI = IOAPIC pin; KVM's default routing maps GSI n to IOAPIC pin n) --------
// vCPU n has xAPIC id n (KVM's choice). xAPIC ids are 8 bits and 0xff is the broadcast id, and
// the MP table gives the IOAPIC the id after the last vCPU: at most 254 vCPUs, ids 0..253. The
// one limit of the command line, the MADT and the MP table.
inline constexpr uint32_t kMaxCpus = 254;
inline constexpr uint32_t kIoapicPins = 24;  // KVM's in-kernel IOAPIC
inline constexpr uint32_t kCom1Irq = 4;
// QEMU's pvpanic ISA device: one port.
inline constexpr uint16_t kPvpanicPort = 0x505;
inline constexpr uint16_t kCom1Port = 0x3f8;
inline constexpr uint16_t kCom1PortCount = 8;
// virtio-mmio device n uses IRQ kVirtioIrqBase + n, up to the last IOAPIC pin. IRQs 5..23 are
// free: there is no LPT, floppy, RTC (the FADT says "no CMOS RTC"), PS/2 mouse or IDE.
inline constexpr uint32_t kVirtioIrqBase = 5;
inline constexpr uint32_t kMaxVirtioMmioDevices = kIoapicPins - kVirtioIrqBase;  // 19

// ---- ACPI hardware-reduced power control (ACPI 6.4 §4.8.3.7, §4.8.3.8) ----------------------
// One 8-bit I/O register each. The VMM decodes a write to the sleep control register:
// SLP_EN (bit 5) set with SLP_TYP (bits 4:2) == kSleepTypeS5 means power off. That is the value
// Linux writes for S5 after reading SLP_TYP from the DSDT's \_S5_ package:
// (kSleepTypeS5 << 2) | kSleepEnable == 0x34. Before that Linux writes WAK_STS (0x80) to the
// sleep status register to clear it; the VMM may ignore that write and read as 0.
inline constexpr uint16_t kAcpiSleepControlPort = 0x3c0;
inline constexpr uint16_t kAcpiSleepStatusPort = 0x3c1;
inline constexpr uint8_t kSleepTypeShift = 2;
inline constexpr uint8_t kSleepTypeMask = 0x1c;
inline constexpr uint8_t kSleepEnable = 0x20;
inline constexpr uint8_t kWakeStatus = 0x80;
inline constexpr uint8_t kSleepTypeS5 = 5;
inline constexpr uint8_t kSleepControlPowerOff = (kSleepTypeS5 << kSleepTypeShift) | kSleepEnable;
// FADT RESET_REG: the i8042 "pulse reset line" command (port 0x64 <- 0xFE) that the devices/
// i8042 model already implements, so ACPI reboot and Linux's keyboard-controller fallback reset
// the same way.
inline constexpr uint16_t kAcpiResetPort = 0x64;
inline constexpr uint8_t kAcpiResetValue = 0xfe;

static_assert(kGdtAddr + kGdtEntries * 8 <= kIdtAddr);
static_assert(kPdAddr + kPdCount * kPageSize <= kCmdlineAddr);
static_assert(kCmdlineAddr + kCmdlineMaxSize <= kEbdaStart);
static_assert(kVirtioMmioBase + kMaxVirtioMmioDevices * kVirtioMmioSlotSize <= kIoapicAddr);

// ---- Functions ---------------------------------------------------------------------------------

// A range of guest physical addresses backed by RAM.
struct RamRegion {
  uint64_t guest_addr;
  uint64_t size;
  bool operator==(const RamRegion&) const = default;
};

// Splits mem_size bytes of guest RAM around the MMIO gap: [0, min(size, 3 GiB)) and, for the
// rest, [4 GiB, 4 GiB + rest). mem_size 0 gives no regions.
std::vector<RamRegion> ram_regions(uint64_t mem_size);

// Size of the RAM region that starts at guest address 0.
inline uint64_t low_ram_size(uint64_t mem_size) {
  return mem_size < kMmioGapStart ? mem_size : kMmioGapStart;
}

// One virtio-mmio device as the guest sees it.
struct VirtioMmioDeviceInfo {
  uint64_t base;
  uint64_t size;
  uint32_t irq;
  bool operator==(const VirtioMmioDeviceInfo&) const = default;
};

// The address window and IRQ of the index-th virtio-mmio device; nullopt when index is
// >= kMaxVirtioMmioDevices.
std::optional<VirtioMmioDeviceInfo> virtio_mmio_slot(uint32_t index);

// The host view of guest bytes [addr, addr + len) inside `ram`, a span whose index 0 is guest
// physical address 0 (the low RAM region). nullopt when the range leaves `ram` or wraps.
std::optional<std::span<uint8_t>> guest_range(std::span<uint8_t> ram, uint64_t addr, uint64_t len);

}  // namespace minivmm::boot
