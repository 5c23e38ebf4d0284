#include "boot/bzimage.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "boot/layout.h"
#include "tests/boot/fake_bzimage.h"

using namespace minivmm::boot;
using minivmm::boot::test::FakeBzImage;

namespace {

std::string parse_error(const std::vector<uint8_t>& image) {
  auto result = parse_bzimage(image);
  REQUIRE_FALSE(result);
  return result.error();
}

}  // namespace

TEST_CASE("parse_bzimage accepts a well-formed 64-bit bzImage", "[boot][bzimage]") {
  FakeBzImage fake;
  const auto image = fake.build();
  auto parsed = parse_bzimage(image);
  REQUIRE(parsed);
  CHECK(parsed->protocol_version == 0x020f);
  CHECK(parsed->setup_sects == 4);
  CHECK(parsed->kernel_offset == 5 * 512);
  CHECK(parsed->kernel_size == fake.kernel_size);
  CHECK(parsed->init_size == fake.init_size);
  CHECK(parsed->cmdline_size == 2047);
  CHECK(parsed->initrd_addr_max == 0x7fff'ffff);
  CHECK(parsed->kernel_alignment == 0x20'0000);
  CHECK(parsed->relocatable);
  CHECK(parsed->pref_address == 0x100'0000);
  CHECK(parsed->header_end == 0x26c);
  CHECK(parsed->raw_header_len == 0x26c - 0x1f1);
}

TEST_CASE("parse_bzimage: setup_sects 0 means 4", "[boot][bzimage]") {
  FakeBzImage fake;
  fake.setup_sects = 0;
  auto parsed = parse_bzimage(fake.build());
  REQUIRE(parsed);
  CHECK(parsed->setup_sects == 4);
  CHECK(parsed->kernel_offset == 5 * 512);
}

TEST_CASE("parse_bzimage rejects each kind of bad image with its own message", "[boot][bzimage]") {
  FakeBzImage fake;
  auto image = fake.build();

  SECTION("smaller than a boot sector") {
    CHECK(parse_error(std::vector<uint8_t>(100)) ==
          "not a bzImage: file is 100 bytes, smaller than the 512-byte boot sector");
  }
  SECTION("no boot flag") {
    image[0x1fe] = 0;
    CHECK(parse_error(image) == "not a bzImage: missing boot flag 0xAA55 at offset 0x1fe");
  }
  SECTION("setup header cut off") {
    image.resize(0x240);
    CHECK(parse_error(image) ==
          "truncated kernel image: 576 bytes is too short for the setup header");
  }
  SECTION("no HdrS") {
    image[0x202] = 'X';
    CHECK(parse_error(image) == "not a bzImage: missing HdrS magic at offset 0x202");
  }
  SECTION("old protocol") {
    fake.version = 0x020a;
    CHECK(parse_error(fake.build()) ==
          "kernel boot protocol 2.10 is too old: 64-bit boot needs 2.12");
  }
  SECTION("no 64-bit entry") {
    fake.xloadflags = 0;
    CHECK(parse_error(fake.build()) == "kernel does not support 64-bit entry (XLF_KERNEL_64)");
  }
  SECTION("zImage") {
    fake.loadflags = 0;
    CHECK(parse_error(fake.build()) ==
          "not a bzImage: zImage kernels (LOADED_HIGH clear) are not supported");
  }
  SECTION("header length byte too small") {
    fake.header_length_byte = 0x10;
    CHECK(parse_error(fake.build()).starts_with("invalid setup header: its length byte"));
  }
  SECTION("file ends inside the setup sectors") {
    image.resize(4 * 512);
    CHECK(parse_error(image) ==
          "truncated kernel image: 4 setup sectors but the file is only 2048 bytes");
  }
  SECTION("file shorter than syssize") {
    image.resize(image.size() - 16);
    CHECK(parse_error(image) ==
          "truncated kernel image: the protected-mode kernel needs 12288 bytes, the file has "
          "12272");
  }
  SECTION("init_size 0") {
    fake.init_size = 0;
    CHECK(parse_error(fake.build()) == "invalid setup header: init_size is 0");
  }
  SECTION("kernel_alignment not a power of two") {
    fake.kernel_alignment = 0x30'0000;
    CHECK(parse_error(fake.build()) ==
          "invalid setup header: kernel_alignment 0x300000 is not a power of two");
  }
}

TEST_CASE("parse_bzimage never reads past the end for any truncation", "[boot][bzimage]") {
  const auto image = FakeBzImage{}.build();
  for (size_t size = 0; size < image.size(); size += 7) {
    std::vector<uint8_t> cut(image.begin(), image.begin() + static_cast<std::ptrdiff_t>(size));
    CHECK_FALSE(parse_bzimage(cut));
  }
}

TEST_CASE("load_bzimage copies the protected-mode kernel to 1 MiB", "[boot][bzimage]") {
  FakeBzImage fake;
  const auto image = fake.build();
  std::vector<uint8_t> ram(32 * kMiB, 0);
  auto loaded = load_bzimage(image, ram);
  REQUIRE(loaded);
  CHECK(loaded->load_addr == 0x100000);
  CHECK(loaded->entry_point == 0x100200);
  // Relocatable, 2 MiB aligned: runs at max(align_up(1 MiB, 2 MiB), pref_address) = 16 MiB.
  CHECK(kernel_runtime_start(loaded->image, loaded->load_addr) == 0x100'0000);
  CHECK(loaded->runtime_end == 0x100'0000 + fake.init_size);
  const size_t offset = loaded->image.kernel_offset;
  CHECK(std::equal(image.begin() + static_cast<std::ptrdiff_t>(offset), image.end(),
                   ram.begin() + 0x100000));
  CHECK(ram[0x100000 - 1] == 0);
  CHECK(ram[0x100000 + fake.kernel_size] == 0);
}

TEST_CASE("kernel_runtime_start follows head_64.S", "[boot][bzimage]") {
  FakeBzImage fake;
  fake.pref_address = 0x100000;
  fake.kernel_alignment = 0x100'0000;  // 16 MiB
  auto parsed = parse_bzimage(fake.build());
  REQUIRE(parsed);
  CHECK(kernel_runtime_start(*parsed, 0x100000) == 0x100'0000);
  fake.relocatable = 0;
  fake.pref_address = 0x20'0000;
  parsed = parse_bzimage(fake.build());
  REQUIRE(parsed);
  CHECK(kernel_runtime_start(*parsed, 0x100000) == 0x20'0000);
}

TEST_CASE("load_bzimage rejects a guest too small for init_size", "[boot][bzimage]") {
  FakeBzImage fake;
  std::vector<uint8_t> ram(20 * kMiB - 1, 0);  // one byte short of 16 MiB + 4 MiB
  auto loaded = load_bzimage(fake.build(), ram);
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error() ==
        "guest memory too small for the kernel: it needs RAM up to 0x1400000 (init_size 4 MiB "
        "at 0x1000000), the guest has 20 MiB below the MMIO gap");
  ram.resize(20 * kMiB);
  CHECK(load_bzimage(fake.build(), ram));
}

TEST_CASE("load_bzimage rejects a pref_address where init_size wraps (fuzz_bzimage finding)",
          "[boot][bzimage]") {
  FakeBzImage fake;
  fake.relocatable = 0;  // runs at pref_address, whatever it is
  fake.pref_address = 0xffff'ffff'ffff'fcff;
  fake.init_size = 0xff'ffff;  // pref_address + init_size wraps to 0xfffcfe, under 16 MiB
  std::vector<uint8_t> ram(32 * kMiB, 0);
  auto loaded = load_bzimage(fake.build(), ram);
  REQUIRE_FALSE(loaded);
  CHECK(loaded.error() ==
        "invalid setup header: init_size 16 MiB at 0xfffffffffffffcff ends past the 64-bit "
        "address space");
}

TEST_CASE("a real bzImage (/boot or the images cache) parses and loads", "[boot][bzimage][real]") {
  // $MINIVMM_TEST_BZIMAGE, the host's /boot, and the kernels images/fetch-kernel.sh unpacks
  // into ${MINIVMM_CACHE:-$HOME/.cache/minivmm}/images/kernel/<package>/boot.
  std::vector<std::filesystem::path> candidates;
  if (const char* env = std::getenv("MINIVMM_TEST_BZIMAGE")) candidates.emplace_back(env);
  std::vector<std::filesystem::path> boot_dirs = {"/boot"};
  const char* cache = std::getenv("MINIVMM_CACHE");
  const char* home = std::getenv("HOME");
  const std::filesystem::path cache_dir =
      cache ? std::filesystem::path(cache)
            : std::filesystem::path(home ? home : "/root") / ".cache/minivmm";
  std::error_code ec;
  for (const auto& pkg : std::filesystem::directory_iterator(cache_dir / "images/kernel", ec)) {
    boot_dirs.push_back(pkg.path() / "boot");
  }
  for (const auto& dir : boot_dirs) {
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
      if (entry.path().filename().string().starts_with("vmlinuz-")) {
        candidates.push_back(entry.path());
      }
    }
  }
  if (candidates.empty()) {
    WARN("SKIPPED: no bzImage found in /boot or " << (cache_dir / "images/kernel").string()
                                                  << " (set MINIVMM_TEST_BZIMAGE to one)");
    return;
  }
  for (const auto& path : candidates) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      WARN("SKIPPED: cannot read " << path.string());
      continue;
    }
    const std::vector<uint8_t> image{std::istreambuf_iterator<char>(in), {}};
    INFO(path.string());
    if (image.size() >= 4 && image[0] == 0x7f && image[1] == 'E') continue;  // an ELF vmlinux
    auto parsed = parse_bzimage(image);
    REQUIRE(parsed);
    CHECK(parsed->protocol_version >= kMinBootProtocol);
    CHECK(parsed->cmdline_size >= 255);
    CHECK(parsed->init_size >= parsed->kernel_size);
    std::vector<uint8_t> ram(512 * kMiB, 0);
    auto loaded = load_bzimage(image, ram);
    REQUIRE(loaded);
    CHECK(loaded->entry_point == kKernelLoadAddr + 0x200);
    CHECK(loaded->runtime_end > kKernelLoadAddr + parsed->kernel_size);
    // The 64-bit entry sits at startup_64, 0x200 into the protected-mode code.
    CHECK(parsed->kernel_size > 0x200);
    WARN("parsed " << path.filename().string() << ": protocol " << std::hex
                   << parsed->protocol_version << ", init_size 0x" << parsed->init_size
                   << ", pref_address 0x" << parsed->pref_address << ", kernel_alignment 0x"
                   << parsed->kernel_alignment << ", cmdline_size " << std::dec
                   << parsed->cmdline_size);
  }
}
