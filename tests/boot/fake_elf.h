// A minimal ELF64 x86_64 executable built in memory, for the ELF loader's tests and fuzz
// seeds: PT_LOAD segments with chosen addresses and sizes, and optionally the PVH note.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

namespace minivmm::boot::test {

struct FakeElf {
  struct Segment {
    uint64_t paddr;
    uint64_t vaddr;
    uint64_t filesz;
    uint64_t memsz;
    uint8_t fill;  // the file bytes
  };
  std::vector<Segment> segments = {{0x100'0000, 0xffff'ffff'8100'0000, 0x2000, 0x3000, 0xaa}};
  uint64_t entry = 0x100'0000;
  bool pvh_note = true;
  uint64_t pvh_entry = 0x100'0100;
  uint32_t pvh_descsz = 8;
  uint16_t machine = 62;
  uint8_t elf_class = 2;

  std::vector<uint8_t> build() const {
    const size_t phnum = segments.size() + (pvh_note ? 1 : 0);
    const uint64_t phoff = 64;
    uint64_t data = phoff + phnum * 56;
    std::vector<uint8_t> out(data, 0);
    auto put = [&out](size_t at, const void* p, size_t n) {
      if (out.size() < at + n) out.resize(at + n);
      std::memcpy(out.data() + at, p, n);
    };
    auto put16 = [&](size_t at, uint16_t v) { put(at, &v, 2); };
    auto put32 = [&](size_t at, uint32_t v) { put(at, &v, 4); };
    auto put64 = [&](size_t at, uint64_t v) { put(at, &v, 8); };
    const uint8_t ident[16] = {0x7f, 'E', 'L', 'F', elf_class, 1, 1, 0};
    put(0, ident, 16);
    put16(16, 2);  // ET_EXEC
    put16(18, machine);
    put32(20, 1);
    put64(24, entry);
    put64(32, phoff);
    put16(52, 64);
    put16(54, 56);
    put16(56, static_cast<uint16_t>(phnum));
    size_t ph = phoff;
    for (const Segment& s : segments) {
      put32(ph, 1);  // PT_LOAD
      put32(ph + 4, 7);
      put64(ph + 8, data);
      put64(ph + 16, s.vaddr);
      put64(ph + 24, s.paddr);
      put64(ph + 32, s.filesz);
      put64(ph + 40, s.memsz);
      put64(ph + 48, 0x1000);
      out.resize(data + s.filesz, s.fill);
      data += s.filesz;
      ph += 56;
    }
    if (pvh_note) {
      // Elf64_Nhdr + "Xen\0" + descriptor, as Linux's ELFNOTE() lays it out.
      const uint64_t at = data;
      put32(at, 4);
      put32(at + 4, pvh_descsz);
      put32(at + 8, 18);  // XEN_ELFNOTE_PHYS32_ENTRY
      put(at + 12, "Xen", 4);
      if (pvh_descsz == 8) {
        put64(at + 16, pvh_entry);
      } else {
        put32(at + 16, static_cast<uint32_t>(pvh_entry));
      }
      const uint64_t size = 16 + ((pvh_descsz + 3) & ~3u);
      put32(ph, 4);  // PT_NOTE
      put64(ph + 8, at);
      put64(ph + 32, size);
      put64(ph + 40, size);
      out.resize(at + size);
    }
    return out;
  }
};

}  // namespace minivmm::boot::test
