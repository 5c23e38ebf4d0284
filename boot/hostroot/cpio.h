// An in-memory cpio archive in the "newc" format, the one the kernel unpacks as an initramfs
// (Documentation/driver-api/early-userspace/buffer-format.rst; uncompressed, which the kernel
// always accepts). Each entry: a 110-byte ASCII header ("070701" and 13 eight-digit hex
// fields), the NUL-terminated name padded to a multiple of 4 bytes from the header's start,
// the data padded to 4 bytes; the archive ends with the entry "TRAILER!!!".
//
// Names are relative ("init", "minivmm/exec"), with no empty, "." or ".." component; owner
// root, mtime 0 (the archive is reproducible). A plain value; one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "boot/result.h"

namespace minivmm::boot {

inline constexpr std::string_view kCpioNewcMagic = "070701";
inline constexpr std::string_view kCpioTrailer = "TRAILER!!!";
inline constexpr size_t kCpioHeaderSize = 110;

// st_mode file types (inode(7)).
inline constexpr uint32_t kCpioDirectory = 0040000;
inline constexpr uint32_t kCpioRegular = 0100000;
inline constexpr uint32_t kCpioCharDevice = 0020000;

class CpioWriter {
 public:
  Result<void> add_directory(std::string_view name, uint32_t permissions = 0755);
  Result<void> add_file(std::string_view name, std::span<const uint8_t> data,
                        uint32_t permissions = 0644);
  Result<void> add_file(std::string_view name, std::string_view text, uint32_t permissions = 0644);
  Result<void> add_char_device(std::string_view name, uint32_t permissions, uint32_t major,
                               uint32_t minor);
  // Appends the trailer and hands over the archive; the writer starts over empty.
  std::vector<uint8_t> finish();

 private:
  Result<void> add_entry(std::string_view name, uint32_t mode, std::span<const uint8_t> data,
                         uint32_t rdev_major, uint32_t rdev_minor);
  void append_header(std::string_view name, uint32_t ino, uint32_t mode, uint32_t nlink,
                     uint32_t size, uint32_t rdev_major, uint32_t rdev_minor);
  void pad();

  std::vector<uint8_t> out_;
  uint32_t next_ino_ = 1;
};

}  // namespace minivmm::boot
