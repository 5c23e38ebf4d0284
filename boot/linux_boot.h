// One call that prepares guest RAM for a Linux direct boot: the kernel (a bzImage at 1 MiB, or
// an ELF vmlinux by its program headers), initrd at the top of low RAM, command line, ACPI
// tables, and the entry state -- the 64-bit boot protocol (zero page, page tables, GDT) or,
// for an ELF kernel with the PVH note, the PVH entry (hvm_start_info). Returns what the VMM
// loads into the boot vCPU. Called from the main thread during VM setup.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "boot/acpi.h"
#include "boot/bzimage.h"
#include "boot/elf.h"
#include "boot/image_source.h"
#include "boot/page_tables.h"
#include "boot/result.h"

namespace minivmm::boot {

// How an ELF kernel is entered: PVH when it has the note (kAuto), or always one way.
enum class ElfEntry { kAuto, kPvh, kLinux64 };

struct LinuxBootConfig {
  uint64_t mem_size = 0;            // total guest RAM; low_ram covers min(mem_size, 3 GiB)
  ImageSource kernel;               // a bzImage or an ELF file
  ElfEntry elf_entry = ElfEntry::kAuto;
  std::span<const uint8_t> initrd;  // empty: no initrd
  std::string_view cmdline;
  uint32_t num_cpus = 1;  // for the MP table (boot/mptable.h), written with or without ACPI
  bool acpi = true;       // false: no tables, acpi_rsdp_addr = 0
  AcpiConfig acpi_config;
};

// Boot vCPU state (boot.rst "64-bit Boot Protocol"): RIP = entry_point, RSI = zero_page_addr,
// RBX = start_info_addr (PVH), RSP = RBP = stack_pointer, RFLAGS = kBootRflags, CS = cpu.code,
// DS/ES/SS/FS/GS = cpu.data, TR = cpu.tss, control registers, EFER, GDTR and IDTR from cpu.
// Other vCPUs wait for INIT/SIPI.
struct LinuxBootInfo {
  enum class Protocol { kBzImage, kElf64, kElfPvh };
  Protocol protocol = Protocol::kBzImage;
  uint64_t entry_point = 0;
  uint64_t zero_page_addr = 0;
  uint64_t start_info_addr = 0;  // PVH only
  uint64_t stack_pointer = 0;
  uint64_t rsdp_addr = 0;    // 0 when ACPI is off
  uint64_t initrd_addr = 0;  // 0 when there is no initrd
  BootCpuState cpu{};
};

// "bzImage", "ELF 64-bit entry", "ELF PVH entry": for log lines.
const char* protocol_name(LinuxBootInfo::Protocol protocol);

// `low_ram` is the host view of guest RAM [0, min(mem_size, kMmioGapStart)); index == guest
// physical address. Every failure (bad kernel, too little memory, command line too long,
// initrd too big, bad ACPI config, --elf-entry pvh without the note) is an Error with a
// one-line message.
Result<LinuxBootInfo> setup_linux_boot(std::span<uint8_t> low_ram, const LinuxBootConfig& config);

}  // namespace minivmm::boot
