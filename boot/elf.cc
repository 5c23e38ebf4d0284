#include "boot/elf.h"

#include <algorithm>
#include <cstring>
#include <string>

#include "boot/format.h"
#include "boot/layout.h"

namespace minivmm::boot {
namespace {

// ELF64 file structures (System V gABI; elf.h field names).
struct Elf64Ehdr {
  uint8_t e_ident[16];
  uint16_t e_type;
  uint16_t e_machine;
  uint32_t e_version;
  uint64_t e_entry;
  uint64_t e_phoff;
  uint64_t e_shoff;
  uint32_t e_flags;
  uint16_t e_ehsize;
  uint16_t e_phentsize;
  uint16_t e_phnum;
  uint16_t e_shentsize;
  uint16_t e_shnum;
  uint16_t e_shstrndx;
};
static_assert(sizeof(Elf64Ehdr) == 64);

struct Elf64Phdr {
  uint32_t p_type;
  uint32_t p_flags;
  uint64_t p_offset;
  uint64_t p_vaddr;
  uint64_t p_paddr;
  uint64_t p_filesz;
  uint64_t p_memsz;
  uint64_t p_align;
};
static_assert(sizeof(Elf64Phdr) == 56);

constexpr uint8_t kElfMagic[4] = {0x7f, 'E', 'L', 'F'};
constexpr uint8_t kElfClass64 = 2;
constexpr uint8_t kElfData2Lsb = 1;
constexpr uint16_t kEtExec = 2;
constexpr uint16_t kEmX86_64 = 62;
constexpr uint32_t kPtLoad = 1;
constexpr uint32_t kPtNote = 4;

template <typename T>
bool read_struct(const ImageSource& image, uint64_t offset, T& out) {
  return image.read(offset, std::span(reinterpret_cast<uint8_t*>(&out), sizeof(T)));
}

template <typename T>
T read_at(std::span<const uint8_t> bytes, uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

bool fits(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

uint64_t align4(uint64_t n) {
  return (n + 3) & ~uint64_t{3};
}

// XEN_ELFNOTE_PHYS32_ENTRY in one PT_NOTE segment's bytes, if there. Linux emits it with a
// pointer-sized descriptor (8 bytes on x86_64); 4 bytes is accepted too.
Result<std::optional<uint32_t>> find_pvh_entry(std::span<const uint8_t> notes) {
  uint64_t pos = 0;
  while (pos + 12 <= notes.size()) {
    const auto namesz = read_at<uint32_t>(notes, pos);
    const auto descsz = read_at<uint32_t>(notes, pos + 4);
    const auto type = read_at<uint32_t>(notes, pos + 8);
    const uint64_t name_at = pos + 12;
    const uint64_t desc_at = name_at + align4(namesz);
    if (!fits(name_at, align4(namesz), notes.size()) || !fits(desc_at, descsz, notes.size())) {
      return Error{"ELF kernel: a note runs past the end of its PT_NOTE segment"};
    }
    const bool xen = namesz == 4 && std::memcmp(notes.data() + name_at, "Xen", 4) == 0;
    if (xen && type == kXenElfNotePhys32Entry) {
      uint64_t entry = 0;
      if (descsz == 4) {
        entry = read_at<uint32_t>(notes, desc_at);
      } else if (descsz == 8) {
        entry = read_at<uint64_t>(notes, desc_at);
      } else {
        return Error{"ELF kernel: the PVH entry note has a " + std::to_string(descsz) +
                     "-byte value (expected 4 or 8)"};
      }
      if (entry > UINT32_MAX) {
        return Error{"ELF kernel: the PVH entry " + hex(entry) + " is not a 32-bit address"};
      }
      return std::optional<uint32_t>(static_cast<uint32_t>(entry));
    }
    pos = desc_at + align4(descsz);
  }
  return std::optional<uint32_t>();
}

}  // namespace

bool is_elf(const ImageSource& image) {
  uint8_t magic[4];
  return image.read(0, magic) && std::memcmp(magic, kElfMagic, 4) == 0;
}

Result<ElfKernel> parse_elf_kernel(const ImageSource& image, uint64_t low_ram_end) {
  Elf64Ehdr eh{};
  if (!read_struct(image, 0, eh) || !is_elf(image)) {
    return Error{"ELF kernel: file too short for an ELF header (" + std::to_string(image.size()) +
                 " bytes)"};
  }
  if (eh.e_ident[4] != kElfClass64) return Error{"ELF kernel: not a 64-bit ELF file"};
  if (eh.e_ident[5] != kElfData2Lsb) return Error{"ELF kernel: not little-endian"};
  if (eh.e_machine != kEmX86_64) {
    return Error{"ELF kernel: built for machine " + std::to_string(eh.e_machine) +
                 ", not x86_64 (62)"};
  }
  if (eh.e_type != kEtExec) return Error{"ELF kernel: not an executable (ET_EXEC) file"};
  if (eh.e_phentsize != sizeof(Elf64Phdr)) {
    return Error{"ELF kernel: program header size " + std::to_string(eh.e_phentsize) +
                 " (expected 56)"};
  }
  if (eh.e_phnum == 0 ||
      !fits(eh.e_phoff, uint64_t{eh.e_phnum} * sizeof(Elf64Phdr), image.size())) {
    return Error{"ELF kernel: the program headers lie outside the file (truncated?)"};
  }

  std::vector<uint8_t> headers(uint64_t{eh.e_phnum} * sizeof(Elf64Phdr));
  if (!image.read(eh.e_phoff, headers)) {
    return Error{"ELF kernel: cannot read the program headers from the file"};
  }

  ElfKernel kernel;
  std::vector<uint8_t> notes;
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    const auto ph = read_at<Elf64Phdr>(headers, uint64_t{i} * sizeof(Elf64Phdr));
    if (ph.p_type == kPtNote) {
      if (!fits(ph.p_offset, ph.p_filesz, image.size())) {
        return Error{"ELF kernel: a PT_NOTE segment lies outside the file (truncated?)"};
      }
      if (ph.p_filesz > kMaxElfNoteBytes) {
        return Error{"ELF kernel: a PT_NOTE segment of " + std::to_string(ph.p_filesz) +
                     " bytes (at most " + std::to_string(kMaxElfNoteBytes) + " are accepted)"};
      }
      notes.resize(ph.p_filesz);
      if (!image.read(ph.p_offset, notes)) {
        return Error{"ELF kernel: cannot read a PT_NOTE segment from the file"};
      }
      auto pvh = find_pvh_entry(notes);
      if (!pvh) return Error{pvh.error()};
      if (*pvh && !kernel.pvh_entry) kernel.pvh_entry = *pvh;
      continue;
    }
    if (ph.p_type != kPtLoad || ph.p_memsz == 0) continue;
    const std::string which = "ELF kernel: segment " + std::to_string(i);
    if (ph.p_filesz > ph.p_memsz) return Error{which + " has more file bytes than memory bytes"};
    if (!fits(ph.p_offset, ph.p_filesz, image.size())) {
      return Error{which + " lies outside the file (truncated?)"};
    }
    if (ph.p_paddr < kKernelLoadAddr || ph.p_paddr > low_ram_end ||
        ph.p_memsz > low_ram_end - ph.p_paddr) {
      return Error{which + " at " + hex(ph.p_paddr) + "-" + hex(ph.p_paddr + ph.p_memsz) +
                   " is outside guest RAM from " + hex(kKernelLoadAddr) + " to " +
                   hex(low_ram_end) + " (below it: the boot structures; above: the MMIO gap " +
                   "or the end of --memory)"};
    }
    if (kernel.segments.size() == kMaxElfSegments) {
      return Error{"ELF kernel: more than " + std::to_string(kMaxElfSegments) +
                   " loadable segments"};
    }
    kernel.segments.push_back({ph.p_paddr, ph.p_vaddr, ph.p_offset, ph.p_filesz, ph.p_memsz});
  }
  if (kernel.segments.empty()) return Error{"ELF kernel: no loadable segment"};
  std::sort(kernel.segments.begin(), kernel.segments.end(),
            [](const ElfSegment& a, const ElfSegment& b) { return a.paddr < b.paddr; });
  for (size_t i = 1; i < kernel.segments.size(); ++i) {
    const ElfSegment& prev = kernel.segments[i - 1];
    if (prev.paddr + prev.memsz > kernel.segments[i].paddr) {
      return Error{"ELF kernel: segments at " + hex(prev.paddr) + " and " +
                   hex(kernel.segments[i].paddr) + " overlap"};
    }
  }
  kernel.start = kernel.segments.front().paddr;
  kernel.end = kernel.segments.back().paddr + kernel.segments.back().memsz;

  // The entry point, as a physical address inside a loaded segment. Linux's vmlinux gives a
  // physical one (phys_startup_64); a virtual one is translated through its segment.
  bool found = false;
  for (const ElfSegment& seg : kernel.segments) {
    if (eh.e_entry >= seg.paddr && eh.e_entry - seg.paddr < seg.memsz) {
      kernel.entry = eh.e_entry;
      found = true;
      break;
    }
    if (eh.e_entry >= seg.vaddr && eh.e_entry - seg.vaddr < seg.memsz) {
      kernel.entry = seg.paddr + (eh.e_entry - seg.vaddr);
      found = true;
      break;
    }
  }
  if (!found) {
    return Error{"ELF kernel: the entry point " + hex(eh.e_entry) + " is in no loaded segment"};
  }
  if (kernel.pvh_entry) {
    const uint64_t pvh = *kernel.pvh_entry;
    const bool inside = std::any_of(
        kernel.segments.begin(), kernel.segments.end(),
        [pvh](const ElfSegment& s) { return pvh >= s.paddr && pvh - s.paddr < s.memsz; });
    if (!inside) {
      return Error{"ELF kernel: the PVH entry " + hex(pvh) + " is in no loaded segment"};
    }
  }
  return kernel;
}

Result<ElfKernel> load_elf_kernel(const ImageSource& image, std::span<uint8_t> low_ram) {
  auto kernel = parse_elf_kernel(image, low_ram.size());
  if (!kernel) return kernel;
  for (const ElfSegment& seg : kernel->segments) {
    auto dest = guest_range(low_ram, seg.paddr, seg.memsz);
    if (!dest) return Error{"ELF kernel: segment at " + hex(seg.paddr) + " is outside guest RAM"};
    if (!image.read(seg.offset, dest->subspan(0, seg.filesz))) {
      return Error{"ELF kernel: cannot read the segment at " + hex(seg.paddr) +
                   " from the file (did it change while loading?)"};
    }
    std::memset(dest->data() + seg.filesz, 0, seg.memsz - seg.filesz);
  }
  return kernel;
}

}  // namespace minivmm::boot
