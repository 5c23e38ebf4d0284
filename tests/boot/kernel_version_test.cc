#include "boot/kernel_version.h"

#include <catch2/catch.hpp>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tests/boot/fake_bzimage.h"

using namespace minivmm::boot;
using minivmm::boot::test::FakeBzImage;

namespace {

// A fake bzImage whose kernel_version field points at `version` inside its setup sectors.
std::vector<uint8_t> with_version(const std::string& version, uint16_t field = 0x400) {
  auto image = FakeBzImage{}.build();
  std::memcpy(image.data() + 0x20e, &field, sizeof field);
  if (size_t{field} + 0x200 + version.size() < image.size()) {
    std::memcpy(image.data() + field + 0x200, version.data(), version.size());
  }
  return image;
}

std::string version_error(const std::vector<uint8_t>& image) {
  auto r = bzimage_kernel_version(image);
  REQUIRE_FALSE(r);
  return r.error();
}

}  // namespace

TEST_CASE("bzimage_kernel_version: the first word of the header's string",
          "[boot][kernel_version]") {
  auto r = bzimage_kernel_version(
      with_version(std::string("6.1.0-57-cloud-amd64 (debian-kernel@lists.debian.org) #1") + '\0'));
  REQUIRE(r);
  CHECK(r->release == "6.1.0-57-cloud-amd64");
  r = bzimage_kernel_version(with_version(std::string("6.18.0-rc1+") + '\0'));
  REQUIRE(r);
  CHECK(r->release == "6.18.0-rc1+");
}

TEST_CASE("bzimage_kernel_version: malformed images", "[boot][kernel_version]") {
  CHECK(version_error({}) == "not a bzImage: 0 bytes is too short for the setup header");
  auto image = with_version(std::string("6.1") + '\0');
  image[0x1fe] = 0;
  CHECK(version_error(image) == "not a bzImage: missing boot flag 0xAA55 at 0x1fe");
  image = with_version(std::string("6.1") + '\0');
  image[0x202] = 'X';
  CHECK(version_error(image) == "not a bzImage: missing HdrS magic at offset 0x202");
  image = with_version(std::string("6.1") + '\0');
  image[0x206] = 0xff, image[0x207] = 0x01;  // protocol 1.255
  CHECK(version_error(image) == "bzImage boot protocol 0x1ff has no kernel_version field");
  CHECK(version_error(with_version("", 0)) ==
        "bzImage: its kernel_version field is 0 (no version)");
  // FakeBzImage has 4 setup sectors: the setup code ends at 0xa00, so 0x800 + 0x200 is past it.
  CHECK(version_error(with_version("6.1", 0x800)) ==
        "bzImage: kernel_version 0x800 points past the setup sectors");
  // No NUL before the end of the setup sectors.
  CHECK(version_error(with_version(std::string(0x600, 'a'))) ==
        "bzImage: the kernel version string is not terminated");
  CHECK(version_error(with_version(std::string(" 6.1") + '\0')) ==
        "bzImage kernel_version: the version string is empty");
  CHECK(version_error(with_version(std::string(100, '6') + '\0')) ==
        "bzImage kernel_version: the version string's first word is longer than 64 bytes");
  CHECK(version_error(with_version(std::string("6.1\x01") + '\0')) ==
        "bzImage kernel_version: the version string holds a non-printable byte");
  // A truncated image: the header ends before the field.
  image = with_version(std::string("6.1") + '\0');
  image.resize(0x20f);
  CHECK(version_error(image) == "not a bzImage: 527 bytes is too short for the setup header");
}

TEST_CASE("vmlinux_kernel_version: the banner", "[boot][kernel_version]") {
  std::string elf = std::string(
                        "\x7f"
                        "ELF") +
                    std::string(100, '\0') + "Linux version %s junk" +
                    '\0' +  // not followed by " (": skipped
                    "Linux version 6.1.0-57-amd64 (debian-kernel@lists.debian.org) (gcc)";
  std::vector<uint8_t> bytes(elf.begin(), elf.end());
  auto r = kernel_version(bytes);
  REQUIRE(r);
  CHECK(r->release == "6.1.0-57-amd64");
  bytes.resize(50);
  r = kernel_version(bytes);
  REQUIRE_FALSE(r);
  CHECK(r.error() == "vmlinux: no \"Linux version <release> (\" banner found");
}

TEST_CASE("a real bzImage's release matches its file name", "[boot][kernel_version][real]") {
  // The kernels images/fetch-kernel.sh unpacks: <cache>/images/kernel/<pkg>/boot/vmlinuz-<rel>.
  const char* cache = std::getenv("MINIVMM_CACHE");
  const char* home = std::getenv("HOME");
  const std::filesystem::path dir =
      (cache ? std::filesystem::path(cache)
             : std::filesystem::path(home ? home : "/root") / ".cache/minivmm") /
      "images/kernel";
  std::error_code ec;
  size_t checked = 0;
  for (const auto& pkg : std::filesystem::directory_iterator(dir, ec)) {
    for (const auto& f : std::filesystem::directory_iterator(pkg.path() / "boot", ec)) {
      const std::string name = f.path().filename().string();
      if (!name.starts_with("vmlinuz-")) continue;
      std::ifstream in(f.path(), std::ios::binary);
      const std::vector<uint8_t> image{std::istreambuf_iterator<char>(in), {}};
      auto r = bzimage_kernel_version(image);
      INFO(f.path().string());
      REQUIRE(r);
      CHECK(r->release == name.substr(8));
      WARN(name << ": release " << r->release);
      ++checked;
    }
  }
  if (checked == 0) {
    WARN("SKIPPED: no kernel in " << dir.string() << " (images/fetch-kernel.sh cloud fetches one)");
  }
}
