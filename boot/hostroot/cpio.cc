#include "boot/hostroot/cpio.h"

#include <cstdio>
#include <limits>
#include <string>

namespace minivmm::boot {
namespace {

// A name the kernel's unpacker takes as it is (init/initramfs.c joins nothing: the name is
// the path below the rootfs).
Result<void> check_name(std::string_view name) {
  if (name.empty()) return Error{"cpio: empty entry name"};
  if (name.size() > 4095) return Error{"cpio: entry name longer than 4095 bytes"};
  if (name.front() == '/') return Error{"cpio: entry name is absolute: " + std::string(name)};
  if (name.find('\0') != std::string_view::npos) return Error{"cpio: entry name holds a NUL byte"};
  size_t start = 0;
  while (start <= name.size()) {
    size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    const std::string_view part = name.substr(start, end - start);
    if (part.empty() || part == "." || part == "..") {
      return Error{"cpio: entry name has an empty, '.' or '..' component: " + std::string(name)};
    }
    start = end + 1;
  }
  return {};
}

}  // namespace

void CpioWriter::append_header(std::string_view name, uint32_t ino, uint32_t mode, uint32_t nlink,
                               uint32_t size, uint32_t rdev_major, uint32_t rdev_minor) {
  // buffer-format.rst: c_magic, then c_ino c_mode c_uid c_gid c_nlink c_mtime c_filesize
  // c_maj c_min c_rmaj c_rmin c_namesize c_chksum, each 8 hex digits.
  const uint32_t fields[13] = {
      ino,  mode, 0, 0,          nlink,      0,
      size, 0,    0, rdev_major, rdev_minor, static_cast<uint32_t>(name.size() + 1),
      0};
  out_.insert(out_.end(), kCpioNewcMagic.begin(), kCpioNewcMagic.end());
  for (uint32_t field : fields) {
    char hex[9];
    std::snprintf(hex, sizeof hex, "%08X", field);
    out_.insert(out_.end(), hex, hex + 8);
  }
  out_.insert(out_.end(), name.begin(), name.end());
  out_.push_back(0);
  pad();
}

void CpioWriter::pad() {
  while (out_.size() % 4 != 0) out_.push_back(0);
}

Result<void> CpioWriter::add_entry(std::string_view name, uint32_t mode,
                                   std::span<const uint8_t> data, uint32_t rdev_major,
                                   uint32_t rdev_minor) {
  if (auto ok = check_name(name); !ok) return ok;
  if (data.size() > std::numeric_limits<uint32_t>::max()) {
    return Error{"cpio: " + std::string(name) + " is larger than 4 GiB, the newc limit"};
  }
  const uint32_t nlink = (mode & kCpioDirectory) == kCpioDirectory ? 2 : 1;
  append_header(name, next_ino_++, mode, nlink, static_cast<uint32_t>(data.size()), rdev_major,
                rdev_minor);
  out_.insert(out_.end(), data.begin(), data.end());
  pad();
  return {};
}

Result<void> CpioWriter::add_directory(std::string_view name, uint32_t permissions) {
  return add_entry(name, kCpioDirectory | (permissions & 07777), {}, 0, 0);
}

Result<void> CpioWriter::add_file(std::string_view name, std::span<const uint8_t> data,
                                  uint32_t permissions) {
  return add_entry(name, kCpioRegular | (permissions & 07777), data, 0, 0);
}

Result<void> CpioWriter::add_file(std::string_view name, std::string_view text,
                                  uint32_t permissions) {
  return add_file(name, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()),
                  permissions);
}

Result<void> CpioWriter::add_char_device(std::string_view name, uint32_t permissions,
                                         uint32_t major, uint32_t minor) {
  return add_entry(name, kCpioCharDevice | (permissions & 07777), {}, major, minor);
}

std::vector<uint8_t> CpioWriter::finish() {
  append_header(kCpioTrailer, 0, 0, 1, 0, 0, 0);
  next_ino_ = 1;
  std::vector<uint8_t> archive;
  archive.swap(out_);
  return archive;
}

}  // namespace minivmm::boot
