// DiskImage: an open disk image file (or block device) with its advisory lock.
//
// Opened O_RDONLY for read-only disks (so the VMM cannot write them even by mistake),
// O_RDWR otherwise, optionally O_DIRECT (then with a second, buffered descriptor for
// requests whose buffers O_DIRECT refuses). An flock() lock — exclusive for writable images,
// shared for read-only ones — keeps two VMMs from writing the same image; flock locks
// belong to the open file description, so they also conflict within one process.
// The size is rounded down to whole 512-byte sectors (with a warning).
//
// Threads: constructed on the main thread; afterwards immutable, so any thread may read
// fd() and the size.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

namespace minivmm::devices {

class DiskImageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class DiskImage {
 public:
  // Throws DiskImageError with a message meant for the user.
  DiskImage(const std::string& path, bool read_only, bool direct);
  ~DiskImage();
  DiskImage(const DiskImage&) = delete;
  DiskImage& operator=(const DiskImage&) = delete;

  int fd() const { return fd_; }
  // The same file without O_DIRECT: fd() itself unless the image is direct. O_DIRECT
  // wants buffers, lengths and offsets aligned to the host's logical block size; a guest
  // may legally send less aligned ones (virtio-blk promises 512 bytes at most), which then
  // go through the page cache. Linux keeps the two coherent: direct I/O writes back and
  // invalidates cached pages of the range first.
  int buffered_fd() const { return buffered_fd_ >= 0 ? buffered_fd_ : fd_; }
  const std::string& path() const { return path_; }
  bool read_only() const { return read_only_; }
  bool direct() const { return direct_; }
  uint64_t size_bytes() const { return capacity_sectors_ * 512; }
  uint64_t capacity_sectors() const { return capacity_sectors_; }

 private:
  std::string path_;
  int fd_ = -1;
  int buffered_fd_ = -1;  // only for direct images
  bool read_only_;
  bool direct_;
  uint64_t capacity_sectors_ = 0;
};

}  // namespace minivmm::devices
