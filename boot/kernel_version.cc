#include "boot/kernel_version.h"

#include <algorithm>
#include <cstring>
#include <string_view>

#include "boot/bzimage.h"
#include "boot/format.h"

namespace minivmm::boot {
namespace {

constexpr uint16_t kMinVersionProtocol = 0x0200;  // kernel_version exists from 2.00 on
constexpr size_t kMaxRelease = 64;                // utsname's release has 65 bytes

bool release_char(uint8_t c) {
  return c > 0x20 && c < 0x7f;
}

// The release at `start`: up to the first space, NUL or the end; only printable characters.
Result<KernelVersion> release_at(std::span<const uint8_t> bytes, size_t start,
                                 std::string_view what) {
  size_t end = start;
  while (end < bytes.size() && release_char(bytes[end])) ++end;
  if (end == start) return Error{std::string(what) + ": the version string is empty"};
  if (end - start > kMaxRelease) {
    return Error{std::string(what) + ": the version string's first word is longer than " +
                 std::to_string(kMaxRelease) + " bytes"};
  }
  if (end < bytes.size() && bytes[end] != ' ' && bytes[end] != 0) {
    return Error{std::string(what) + ": the version string holds a non-printable byte"};
  }
  return KernelVersion{
      std::string(reinterpret_cast<const char*>(bytes.data() + start), end - start)};
}

}  // namespace

Result<KernelVersion> bzimage_kernel_version(std::span<const uint8_t> image) {
  constexpr size_t kVersionField = 0x20e;
  if (image.size() < kVersionField + 2) {
    return Error{"not a bzImage: " + std::to_string(image.size()) +
                 " bytes is too short for the setup header"};
  }
  SetupHeader hdr{};
  std::memcpy(&hdr, image.data() + kSetupHeaderOffset,
              std::min(sizeof hdr, image.size() - kSetupHeaderOffset));
  if (hdr.boot_flag != kBootFlag) return Error{"not a bzImage: missing boot flag 0xAA55 at 0x1fe"};
  if (hdr.header != kHdrSMagic) return Error{"not a bzImage: missing HdrS magic at offset 0x202"};
  if (hdr.version < kMinVersionProtocol) {
    return Error{"bzImage boot protocol " + hex(hdr.version) + " has no kernel_version field"};
  }
  if (hdr.kernel_version == 0) return Error{"bzImage: its kernel_version field is 0 (no version)"};
  // boot.rst: "This value should be less than (0x200 * setup_sects)": inside the setup code.
  const size_t setup_sects = hdr.setup_sects == 0 ? 4 : hdr.setup_sects;
  const size_t start = size_t{hdr.kernel_version} + 0x200;
  const size_t setup_end = std::min((setup_sects + 1) * 512, image.size());
  if (start >= setup_end) {
    return Error{"bzImage: kernel_version " + hex(hdr.kernel_version) +
                 " points past the setup sectors"};
  }
  const auto setup = image.first(setup_end);
  const auto nul = std::find(setup.begin() + static_cast<std::ptrdiff_t>(start), setup.end(), 0);
  if (nul == setup.end()) return Error{"bzImage: the kernel version string is not terminated"};
  return release_at(setup.first(static_cast<size_t>(nul - setup.begin())), start,
                    "bzImage kernel_version");
}

Result<KernelVersion> vmlinux_kernel_version(std::span<const uint8_t> image) {
  // init/version.c: linux_banner = "Linux version " UTS_RELEASE " (" LINUX_COMPILE_BY ...
  constexpr std::string_view kBanner = "Linux version ";
  const std::string_view bytes(reinterpret_cast<const char*>(image.data()), image.size());
  for (size_t at = bytes.find(kBanner); at != std::string_view::npos;
       at = bytes.find(kBanner, at + 1)) {
    const size_t start = at + kBanner.size();
    auto release = release_at(image, start, "vmlinux banner");
    if (!release) continue;
    const size_t after = start + release->release.size();
    if (bytes.substr(after, 2) == " (") return release;
  }
  return Error{"vmlinux: no \"Linux version <release> (\" banner found"};
}

Result<KernelVersion> kernel_version(std::span<const uint8_t> image) {
  if (image.size() >= 4 && std::memcmp(image.data(),
                                       "\x7f"
                                       "ELF",
                                       4) == 0) {
    return vmlinux_kernel_version(image);
  }
  return bzimage_kernel_version(image);
}

}  // namespace minivmm::boot
