#include "boot/zero_page.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "boot/layout.h"
#include "tests/boot/fake_bzimage.h"

using namespace minivmm::boot;
using minivmm::boot::test::FakeBzImage;

namespace {

BzImage parsed_kernel(const FakeBzImage& fake = {}) {
  auto parsed = parse_bzimage(fake.build());
  REQUIRE(parsed);
  return *parsed;
}

LoadedKernel loaded_kernel(uint64_t runtime_end, uint32_t initrd_addr_max = 0x7fff'ffff) {
  FakeBzImage fake;
  fake.initrd_addr_max = initrd_addr_max;
  return LoadedKernel{parsed_kernel(fake), kKernelLoadAddr, kKernelLoadAddr + 0x200, runtime_end};
}

// Reads a packed-struct field by value: Catch2 would bind a reference to it, which is misaligned.
template <typename T>
T val(T value) {
  return value;
}

}  // namespace

TEST_CASE("e820 map for small memory", "[boot][e820]") {
  CHECK(e820_map(64 * kMiB) == std::vector<E820Entry>{
                                   {0, 0x9fc00, kE820Ram},
                                   {0x9fc00, 0x100000 - 0x9fc00, kE820Reserved},
                                   {0x100000, 63 * kMiB, kE820Ram},
                               });
  // Less than 640 KiB: only the base RAM, plus the firmware area.
  CHECK(e820_map(0x8000) == std::vector<E820Entry>{
                                {0, 0x8000, kE820Ram},
                                {0x9fc00, 0x100000 - 0x9fc00, kE820Reserved},
                            });
}

TEST_CASE("e820 map around the MMIO gap", "[boot][e820]") {
  // Just below the gap: one low region ending a page before 3 GiB.
  auto below = e820_map(kMmioGapStart - kPageSize);
  REQUIRE(below.size() == 3);
  CHECK(below[2] == E820Entry{0x100000, kMmioGapStart - kPageSize - 0x100000, kE820Ram});
  // Exactly at the gap: nothing above 4 GiB.
  auto at = e820_map(kMmioGapStart);
  REQUIRE(at.size() == 3);
  CHECK(at[2].addr + at[2].size == kMmioGapStart);
  // Just above: the page that does not fit below the gap goes to 4 GiB.
  auto above = e820_map(kMmioGapStart + kPageSize);
  REQUIRE(above.size() == 4);
  CHECK(above[2].addr + above[2].size == kMmioGapStart);
  CHECK(above[3] == E820Entry{0x1'0000'0000, kPageSize, kE820Ram});
  // No entry overlaps the gap.
  for (const E820Entry& e : e820_map(16 * kGiB)) {
    CHECK((e.addr + e.size <= kMmioGapStart || e.addr >= kMmioGapEnd));
  }
}

TEST_CASE("zero page carries the setup header and loader fields", "[boot][zero_page]") {
  const FakeBzImage fake;
  const auto image = fake.build();
  const BzImage kernel = parsed_kernel(fake);
  ZeroPageConfig config;
  config.mem_size = 6 * kGiB;
  config.cmdline_len = 20;
  config.initrd_addr = 0x7f00'0000;
  config.initrd_size = 0x12'3456;
  config.rsdp_addr = kRsdpAddr;
  auto params = build_zero_page(kernel, config);
  REQUIRE(params);
  const auto* bytes = reinterpret_cast<const uint8_t*>(&*params);
  // Untouched header bytes come from the image verbatim.
  CHECK(std::memcmp(bytes + 0x1f1, image.data() + 0x1f1, 0x210 - 0x1f1) == 0);
  CHECK(bytes[0x210] == 0xff);                         // type_of_loader
  CHECK(bytes[0x211] == (kLoadedHigh | kCanUseHeap));  // loadflags
  SetupHeader hdr;
  std::memcpy(&hdr, bytes + 0x1f1, sizeof hdr);
  CHECK(val(hdr.header) == kHdrSMagic);
  CHECK(val(hdr.heap_end_ptr) == 0xfe00);
  CHECK(val(hdr.cmd_line_ptr) == kCmdlineAddr);
  CHECK(val(hdr.ramdisk_image) == 0x7f00'0000);
  CHECK(val(hdr.ramdisk_size) == 0x12'3456);
  CHECK(val(hdr.init_size) == fake.init_size);
  CHECK(val(params->ext_cmd_line_ptr) == 0);
  CHECK(val(params->ext_ramdisk_image) == 0);
  CHECK(val(params->ext_ramdisk_size) == 0);
  uint64_t rsdp;
  std::memcpy(&rsdp, bytes + 0x70, 8);
  CHECK(rsdp == 0xe0000);
  REQUIRE(bytes[0x1e8] == 4);  // e820_entries
  E820Entry last;
  std::memcpy(&last, bytes + 0x2d0 + 3 * 20, sizeof last);
  CHECK(last == E820Entry{4 * kGiB, 3 * kGiB, kE820Ram});
  CHECK(bytes[0x1ef] == 0);  // sentinel stays 0: the kernel would otherwise wipe fields
}

TEST_CASE("zero page splits 64-bit addresses into ext_ fields", "[boot][zero_page]") {
  ZeroPageConfig config;
  config.mem_size = 8 * kGiB;
  config.cmdline_addr = 0x1'2345'6000;
  config.initrd_addr = 0x1'0000'0000;
  config.initrd_size = 0x1'0000'1000;
  auto params = build_zero_page(parsed_kernel(), config);
  REQUIRE(params);
  CHECK(val(params->hdr.cmd_line_ptr) == 0x2345'6000);
  CHECK(val(params->ext_cmd_line_ptr) == 1);
  CHECK(val(params->hdr.ramdisk_image) == 0);
  CHECK(val(params->ext_ramdisk_image) == 1);
  CHECK(val(params->hdr.ramdisk_size) == 0x1000);
  CHECK(val(params->ext_ramdisk_size) == 1);
}

TEST_CASE("write_zero_page places boot_params at 0x7000", "[boot][zero_page]") {
  ZeroPageConfig config;
  config.mem_size = 32 * kMiB;
  auto params = build_zero_page(parsed_kernel(), config);
  REQUIRE(params);
  std::vector<uint8_t> ram(32 * kMiB, 0);
  REQUIRE(write_zero_page(ram, *params));
  CHECK(std::memcmp(ram.data() + 0x7000, &*params, 4096) == 0);
  std::vector<uint8_t> tiny(0x7800);
  CHECK_FALSE(write_zero_page(tiny, *params));
}

TEST_CASE("command line length limits", "[boot][cmdline]") {
  FakeBzImage fake;
  fake.cmdline_size = 255;
  const BzImage kernel = parsed_kernel(fake);
  std::vector<uint8_t> ram(32 * kMiB, 0xaa);
  const std::string ok(255, 'x');
  REQUIRE(write_cmdline(ram, kernel, ok));
  CHECK(std::memcmp(ram.data() + kCmdlineAddr, ok.data(), ok.size()) == 0);
  CHECK(ram[kCmdlineAddr + 255] == 0);

  const std::string too_long(256, 'x');
  auto result = write_cmdline(ram, kernel, too_long);
  REQUIRE_FALSE(result);
  CHECK(result.error() == "kernel command line is 256 bytes; this kernel accepts at most 255");

  ZeroPageConfig config;
  config.mem_size = 32 * kMiB;
  config.cmdline_len = 256;
  CHECK_FALSE(build_zero_page(kernel, config));

  fake.cmdline_size = 0x100000;  // the kernel takes more than our area holds
  const BzImage big = parsed_kernel(fake);
  CHECK(check_cmdline(big, std::string(kCmdlineMaxSize - 1, 'y')));
  auto over = check_cmdline(big, std::string(kCmdlineMaxSize, 'y'));
  REQUIRE_FALSE(over);
  CHECK(over.error() == "kernel command line is 65536 bytes; minivmm passes at most 65535");

  auto nul = check_cmdline(kernel, std::string("a\0b", 3));
  REQUIRE_FALSE(nul);
  CHECK(nul.error() == "kernel command line contains a NUL byte");
}

TEST_CASE("initrd goes page-aligned to the top of low RAM", "[boot][initrd]") {
  const LoadedKernel kernel = loaded_kernel(20 * kMiB);
  auto addr = place_initrd(kernel, 5 * kMiB + 123, 64 * kMiB);
  REQUIRE(addr);
  CHECK(*addr % kPageSize == 0);
  CHECK(*addr + 5 * kMiB + 123 <= 64 * kMiB);
  CHECK(*addr == (64 * kMiB - 5 * kMiB - 123) / kPageSize * kPageSize);
  CHECK(*place_initrd(kernel, 0, 64 * kMiB) == 0);  // no initrd
}

TEST_CASE("initrd stays below the MMIO gap and initrd_addr_max", "[boot][initrd]") {
  const LoadedKernel kernel = loaded_kernel(20 * kMiB, 0xffff'ffff);
  auto high_mem = place_initrd(kernel, kMiB, 8 * kGiB);
  REQUIRE(high_mem);
  CHECK(*high_mem == kMmioGapStart - kMiB);
  const LoadedKernel limited = loaded_kernel(20 * kMiB, 0x37ff'ffff);
  auto capped = place_initrd(limited, kMiB, 8 * kGiB);
  REQUIRE(capped);
  CHECK(*capped == 0x3800'0000 - kMiB);
}

TEST_CASE("initrd that does not fit is rejected", "[boot][initrd]") {
  const LoadedKernel kernel = loaded_kernel(20 * kMiB);
  // 64 MiB of RAM, the kernel uses up to 20 MiB: 44 MiB is the most that fits.
  CHECK(place_initrd(kernel, 44 * kMiB, 64 * kMiB));
  auto result = place_initrd(kernel, 44 * kMiB + 1, 64 * kMiB);
  REQUIRE_FALSE(result);
  CHECK(result.error() ==
        "initrd of 45 MiB does not fit in guest memory below 0x4000000: the kernel uses RAM up "
        "to 0x1400000, leaving 44 MiB");
  CHECK_FALSE(place_initrd(kernel, 100 * kGiB, 64 * kMiB));
  CHECK_FALSE(place_initrd(kernel, UINT64_MAX, 64 * kMiB));
}

TEST_CASE("load_initrd copies the bytes and checks bounds", "[boot][initrd]") {
  std::vector<uint8_t> ram(1 * kMiB, 0);
  const std::vector<uint8_t> initrd = {1, 2, 3, 4};
  REQUIRE(load_initrd(ram, initrd, kMiB - 4));
  CHECK(ram[kMiB - 1] == 4);
  CHECK_FALSE(load_initrd(ram, initrd, kMiB - 3));
}
