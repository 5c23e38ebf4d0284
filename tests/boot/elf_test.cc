// The ELF (vmlinux) loader: segments loaded by p_paddr with their bss zeroed, the PVH note,
// virtual entry points, and one clear error for each kind of malformed file; then
// setup_linux_boot's two ELF entries (PVH start info, 64-bit zero page).
#include "boot/elf.h"

#include <catch2/catch.hpp>
#include <algorithm>
#include <cstring>
#include <span>
#include <utility>
#include <string>
#include <vector>

#include "boot/layout.h"
#include "boot/linux_boot.h"
#include "boot/pvh.h"
#include "boot/zero_page.h"
#include "tests/boot/fake_elf.h"

using namespace minivmm::boot;
using minivmm::boot::test::FakeElf;

namespace {

constexpr uint64_t kRam = 64 * kMiB;

std::string error_of(const FakeElf& fake, uint64_t ram = kRam) {
  const auto image = fake.build();
  auto r = parse_elf_kernel(image, ram);
  REQUIRE_FALSE(r);
  return r.error();
}

}  // namespace

TEST_CASE("ELF: segments load at p_paddr with their bss zeroed, the PVH note is found",
          "[boot][elf]") {
  FakeElf fake;
  fake.segments.push_back({0x200'0000, 0xffff'ffff'8200'0000, 0x100, 0x1000, 0xbb});
  const auto image = fake.build();
  REQUIRE(is_elf(image));
  std::vector<uint8_t> ram(kRam, 0xee);
  auto k = load_elf_kernel(image, ram);
  REQUIRE(k);
  CHECK(k->segments.size() == 2);
  CHECK(k->entry == 0x100'0000);
  REQUIRE(k->pvh_entry);
  CHECK(*k->pvh_entry == 0x100'0100);
  CHECK(k->start == 0x100'0000);
  CHECK(k->end == 0x200'1000);
  CHECK(ram[0x100'0000] == 0xaa);
  CHECK(ram[0x100'1fff] == 0xaa);
  CHECK(ram[0x100'2000] == 0);  // bss
  CHECK(ram[0x100'2fff] == 0);
  CHECK(ram[0x100'3000] == 0xee);  // untouched
  CHECK(ram[0x200'00ff] == 0xbb);
  CHECK(ram[0x200'0100] == 0);

  fake.pvh_note = false;
  const auto without = fake.build();
  auto no_note = parse_elf_kernel(without, kRam);
  REQUIRE(no_note);
  CHECK_FALSE(no_note->pvh_entry);
  fake.pvh_note = true;
  fake.pvh_descsz = 4;
  const auto short_note = fake.build();
  CHECK(*parse_elf_kernel(short_note, kRam)->pvh_entry == 0x100'0100);
}

TEST_CASE("ELF: a file reader is asked for the headers, the notes and each segment once",
          "[boot][elf]") {
  FakeElf fake;
  fake.segments.push_back({0x200'0000, 0xffff'ffff'8200'0000, 0x100, 0x1000, 0xbb});
  const auto file = fake.build();
  std::vector<std::pair<uint64_t, uint64_t>> reads;  // offset, length
  bool fail_big_reads = false;
  const ImageSource reader(file.size(), [&](uint64_t offset, std::span<uint8_t> out) {
    reads.emplace_back(offset, out.size());
    if (fail_big_reads && out.size() >= 0x100) return false;
    std::memcpy(out.data(), file.data() + offset, out.size());
    return true;
  });
  std::vector<uint8_t> ram(kRam, 0xee);
  auto k = load_elf_kernel(reader, ram);
  REQUIRE(k);
  CHECK(ram[0x100'0000] == 0xaa);
  CHECK(ram[0x200'00ff] == 0xbb);
  CHECK(ram[0x200'0100] == 0);
  uint64_t read_bytes = 0;
  size_t segment_reads = 0;
  for (const auto& [offset, len] : reads) {
    read_bytes += len;
    if (len == 0x2000 || len == 0x100) ++segment_reads;
  }
  CHECK(segment_reads == 2);
  // Headers, program headers and the note are small; the file is read about once.
  CHECK(read_bytes < file.size() + 512);

  // A file that cannot give a segment's bytes (it shrank, an I/O error) is an error, not zeroes.
  reads.clear();
  fail_big_reads = true;
  std::vector<uint8_t> ram2(kRam, 0);
  auto r = load_elf_kernel(reader, ram2);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error(), Catch::Contains("cannot read the segment at 0x1000000"));
}

TEST_CASE("ELF: a virtual entry point is translated through its segment", "[boot][elf]") {
  FakeElf fake;
  fake.entry = 0xffff'ffff'8100'0200;
  const auto image = fake.build();
  auto k = parse_elf_kernel(image, kRam);
  REQUIRE(k);
  CHECK(k->entry == 0x100'0200);
}

TEST_CASE("ELF: malformed kernels get one clear line each", "[boot][elf]") {
  FakeElf fake;
  auto image = fake.build();
  for (size_t len : {size_t{3}, size_t{40}, size_t{64 + 10}}) {
    std::vector<uint8_t> cut(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(len));
    auto r = parse_elf_kernel(cut, kRam);
    REQUIRE_FALSE(r);
    INFO(r.error());
    CHECK(r.error().find('\n') == std::string::npos);
  }
  std::vector<uint8_t> truncated(image.begin(), image.end() - 0x1000 - 24);
  CHECK_THAT(parse_elf_kernel(truncated, kRam).error(), Catch::Contains("outside the file"));

  FakeElf bad = fake;
  bad.elf_class = 1;
  CHECK(error_of(bad) == "ELF kernel: not a 64-bit ELF file");
  bad = fake;
  bad.machine = 3;
  CHECK_THAT(error_of(bad), Catch::Contains("not x86_64"));
  bad = fake;
  bad.segments.push_back({0x100'2000, 0, 0x10, 0x10, 0});  // inside the first one's bss
  CHECK_THAT(error_of(bad), Catch::Contains("overlap"));
  bad = fake;
  bad.segments[0].paddr = 0x8000;  // over the boot structures
  CHECK_THAT(error_of(bad), Catch::Contains("outside guest RAM from 0x100000"));
  bad = fake;
  bad.segments[0].paddr = kRam - 0x1000;  // past the end of RAM
  CHECK_THAT(error_of(bad), Catch::Contains("outside guest RAM"));
  bad = fake;
  bad.segments[0].paddr = 0xffff'ffff'ffff'f000;  // wraps
  CHECK_THAT(error_of(bad), Catch::Contains("outside guest RAM"));
  bad = fake;
  bad.segments[0].filesz = 0x4000;  // more file than memory
  CHECK_THAT(error_of(bad), Catch::Contains("more file bytes"));
  bad = fake;
  bad.entry = 0x500'0000;
  CHECK_THAT(error_of(bad), Catch::Contains("entry point 0x5000000 is in no loaded segment"));
  bad = fake;
  bad.pvh_entry = 0x1'0000'0000;
  CHECK_THAT(error_of(bad), Catch::Contains("not a 32-bit address"));
  bad = fake;
  bad.pvh_entry = 0x300'0000;
  CHECK_THAT(error_of(bad), Catch::Contains("PVH entry 0x3000000 is in no loaded segment"));
  bad = fake;
  bad.pvh_descsz = 2;
  CHECK_THAT(error_of(bad), Catch::Contains("2-byte value"));
  bad = fake;
  bad.segments.clear();
  CHECK(error_of(bad) == "ELF kernel: no loadable segment");

  // A PT_NOTE segment far larger than any kernel's is refused rather than read into memory.
  auto huge_note = fake.build();
  const uint64_t note_ph = 64 + 56 * fake.segments.size();  // the last program header
  uint32_t type = 0;
  std::memcpy(&type, huge_note.data() + note_ph, 4);
  REQUIRE(type == 4);  // PT_NOTE
  const uint64_t filesz = kMaxElfNoteBytes + 1;
  const uint64_t offset = 0;
  std::memcpy(huge_note.data() + note_ph + 8, &offset, 8);
  std::memcpy(huge_note.data() + note_ph + 32, &filesz, 8);
  huge_note.resize(std::max<size_t>(huge_note.size(), filesz));
  auto r = parse_elf_kernel(huge_note, kRam);
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error(), Catch::Contains("PT_NOTE segment of 65537 bytes"));
}

TEST_CASE("setup_linux_boot: an ELF kernel through PVH or the 64-bit entry", "[boot][elf]") {
  FakeElf fake;
  const auto image = fake.build();
  const std::vector<uint8_t> initrd(0x3000, 0x11);
  std::vector<uint8_t> ram(kRam, 0);
  LinuxBootConfig config;
  config.mem_size = kRam;
  config.kernel = image;
  config.initrd = initrd;
  config.cmdline = "console=ttyS0";

  auto pvh = setup_linux_boot(ram, config);  // auto: the note is there
  REQUIRE(pvh);
  CHECK(pvh->protocol == LinuxBootInfo::Protocol::kElfPvh);
  CHECK(pvh->entry_point == 0x100'0100);
  CHECK(pvh->start_info_addr == kPvhStartInfoAddr);
  CHECK(pvh->cpu.efer == 0);
  CHECK(pvh->cpu.code.l == 0);
  CHECK(pvh->cpu.code.db == 1);
  HvmStartInfo info;
  std::memcpy(&info, ram.data() + kPvhStartInfoAddr, sizeof info);
  CHECK(info.magic == kHvmStartMagic);
  CHECK(info.version == 1);
  CHECK(info.cmdline_paddr == kCmdlineAddr);
  CHECK(std::string(reinterpret_cast<const char*>(ram.data() + kCmdlineAddr)) == "console=ttyS0");
  CHECK(info.rsdp_paddr == pvh->rsdp_addr);
  REQUIRE(info.nr_modules == 1);
  HvmModlistEntry module;
  std::memcpy(&module, ram.data() + info.modlist_paddr, sizeof module);
  CHECK(module.paddr == pvh->initrd_addr);
  CHECK(module.size == initrd.size());
  CHECK(module.paddr >= 0x100'3000);  // above the kernel
  CHECK(ram[module.paddr] == 0x11);
  const auto e820 = e820_map(kRam);
  REQUIRE(info.memmap_entries == e820.size());
  HvmMemmapEntry last;
  std::memcpy(&last, ram.data() + info.memmap_paddr + (e820.size() - 1) * sizeof last, sizeof last);
  CHECK(last.addr == e820.back().addr);
  CHECK(last.size == e820.back().size);
  CHECK(last.type == e820.back().type);

  config.elf_entry = ElfEntry::kLinux64;
  std::vector<uint8_t> ram2(kRam, 0);
  auto lm = setup_linux_boot(ram2, config);
  REQUIRE(lm);
  CHECK(lm->protocol == LinuxBootInfo::Protocol::kElf64);
  CHECK(lm->entry_point == 0x100'0000);
  CHECK(lm->zero_page_addr == kZeroPageAddr);
  CHECK(lm->cpu.code.l == 1);
  BootParams params;
  std::memcpy(&params, ram2.data() + kZeroPageAddr, sizeof params);
  // Copies: the setup header is packed, and Catch binds references.
  const uint16_t boot_flag = params.hdr.boot_flag;
  const uint32_t header = params.hdr.header;
  const uint32_t cmd_line_ptr = params.hdr.cmd_line_ptr;
  const uint32_t ramdisk_image = params.hdr.ramdisk_image;
  const uint32_t ramdisk_size = params.hdr.ramdisk_size;
  CHECK(boot_flag == kBootFlag);
  CHECK(header == kHdrSMagic);
  CHECK(cmd_line_ptr == kCmdlineAddr);
  CHECK(ramdisk_image == lm->initrd_addr);
  CHECK(ramdisk_size == initrd.size());
  CHECK(params.e820_entries == e820.size());

  fake.pvh_note = false;
  const auto no_note = fake.build();
  config.kernel = no_note;
  config.elf_entry = ElfEntry::kPvh;
  auto refused = setup_linux_boot(ram2, config);
  REQUIRE_FALSE(refused);
  CHECK_THAT(refused.error(), Catch::Contains("no PVH entry note"));
  config.elf_entry = ElfEntry::kAuto;
  auto fallback = setup_linux_boot(ram2, config);
  REQUIRE(fallback);
  CHECK(fallback->protocol == LinuxBootInfo::Protocol::kElf64);
}
