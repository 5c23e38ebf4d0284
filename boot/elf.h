// ELF64 kernels (an uncompressed Linux vmlinux): parsing, loading by program headers, and the
// PVH entry point (Xen's ELF note XEN_ELFNOTE_PHYS32_ENTRY, which Linux emits with CONFIG_PVH).
// The file is untrusted user input: every failure is an Error with one line. Functions over
// an ImageSource (bytes in memory, or the VMM's reads of the file: only the headers, the notes
// and the loaded segments are read, each once); called from the main thread during VM setup.
//
// Accepted: ELFCLASS64, little-endian, EM_X86_64, ET_EXEC, program headers of the standard
// size inside the file, at most kMaxSegments PT_LOAD segments whose file bytes lie inside the
// file (filesz <= memsz), which do not overlap each other, and which load (by p_paddr) at or
// above kKernelLoadAddr -- above every boot structure minivmm writes -- and below the end of
// low RAM (so never into the MMIO gap). The entry point must lie in a loaded segment; it may
// be given as a virtual address, which is translated with that segment's p_vaddr -> p_paddr.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "boot/image_source.h"
#include "boot/result.h"

namespace minivmm::boot {

inline constexpr uint32_t kXenElfNotePhys32Entry = 18;  // xen/include/public/elfnote.h
inline constexpr size_t kMaxElfSegments = 64;
inline constexpr uint64_t kMaxElfNoteBytes = 64 * 1024;  // per PT_NOTE segment (Linux: < 1 KiB)

struct ElfSegment {
  uint64_t paddr;   // where it loads
  uint64_t vaddr;
  uint64_t offset;  // file bytes [offset, offset + filesz)
  uint64_t filesz;
  uint64_t memsz;   // the rest up to memsz is zeroed
};

struct ElfKernel {
  std::vector<ElfSegment> segments;  // sorted by paddr
  uint64_t entry = 0;                // e_entry as a physical address (the 64-bit entry)
  std::optional<uint32_t> pvh_entry;  // XEN_ELFNOTE_PHYS32_ENTRY, a 32-bit physical address
  uint64_t start = 0;                // lowest paddr loaded
  uint64_t end = 0;                  // one past the highest paddr + memsz
};

// True when `image` starts with the ELF magic (then it is parsed as ELF, never as bzImage).
bool is_elf(const ImageSource& image);

// Validates the headers and notes; `low_ram_end` bounds where segments may load.
Result<ElfKernel> parse_elf_kernel(const ImageSource& image, uint64_t low_ram_end);

// parse_elf_kernel, then reads each segment to its p_paddr in `low_ram` (index == guest
// physical address) and zeroes its bss.
Result<ElfKernel> load_elf_kernel(const ImageSource& image, std::span<uint8_t> low_ram);

}  // namespace minivmm::boot
