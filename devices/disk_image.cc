#include "devices/disk_image.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace minivmm::devices {

namespace {
std::string errno_text(int err) {
  return std::strerror(err);
}
}  // namespace

DiskImage::DiskImage(const std::string& path, bool read_only, bool direct)
    : path_(path), read_only_(read_only), direct_(direct) {
  int flags = (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC;
  if (direct) flags |= O_DIRECT;
  fd_ = ::open(path.c_str(), flags);
  if (fd_ < 0) {
    const int err = errno;
    if (err == EISDIR) throw DiskImageError("disk image " + path + " is a directory");
    if (err == EINVAL && direct) {
      throw DiskImageError("disk image " + path + ": O_DIRECT is not supported there");
    }
    throw DiskImageError("cannot open disk image " + path + ": " + errno_text(err));
  }
  struct stat st {};
  if (::fstat(fd_, &st) != 0) {
    const int err = errno;
    ::close(fd_);
    throw DiskImageError("cannot stat disk image " + path + ": " + errno_text(err));
  }
  uint64_t size = 0;
  if (S_ISDIR(st.st_mode)) {
    ::close(fd_);
    throw DiskImageError("disk image " + path + " is a directory");
  } else if (S_ISBLK(st.st_mode)) {
    if (::ioctl(fd_, BLKGETSIZE64, &size) != 0) {
      const int err = errno;
      ::close(fd_);
      throw DiskImageError("cannot get the size of block device " + path + ": " + errno_text(err));
    }
  } else if (S_ISREG(st.st_mode)) {
    size = static_cast<uint64_t>(st.st_size);
  } else {
    ::close(fd_);
    throw DiskImageError("disk image " + path + " is neither a regular file nor a block device");
  }
  // Exclusive for writers, shared for readers: a writer excludes everyone else. A minivmm
  // that was just killed (SIGKILL) still holds the lock for a few milliseconds, through its
  // io_uring's registered copy of the file, which the kernel releases asynchronously: a
  // held lock is retried for up to a second before it counts as another user's.
  int locked = ::flock(fd_, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB);
  for (int wait_ms = 0; locked != 0 && errno == EWOULDBLOCK && wait_ms < 1000; wait_ms += 5) {
    ::usleep(5000);
    locked = ::flock(fd_, (read_only ? LOCK_SH : LOCK_EX) | LOCK_NB);
  }
  if (locked != 0) {
    const int err = errno;
    ::close(fd_);
    if (err == EWOULDBLOCK) {
      throw DiskImageError("disk image " + path + " is locked by another process");
    }
    throw DiskImageError("cannot lock disk image " + path + ": " + errno_text(err));
  }
  if (size % 512 != 0) {
    spdlog::warn("disk image {}: size {} is not a multiple of 512; the last {} bytes are ignored",
                 path, size, size % 512);
  }
  capacity_sectors_ = size / 512;
  if (direct) {
    // A new open file description of the same file (also for a path that was replaced
    // since): through /proc, with the same access mode, without O_DIRECT.
    const std::string self = "/proc/self/fd/" + std::to_string(fd_);
    buffered_fd_ = ::open(self.c_str(), flags & ~O_DIRECT);
    if (buffered_fd_ < 0) {
      const int err = errno;
      ::close(fd_);
      throw DiskImageError("cannot reopen disk image " + path + " without O_DIRECT: " +
                           errno_text(err));
    }
  }
}

DiskImage::~DiskImage() {
  if (buffered_fd_ >= 0) ::close(buffered_fd_);
  if (fd_ >= 0) {
    // Closing the last fd of the description would drop the lock, but an io_uring that
    // registered the file holds it until the kernel tears the ring down, asynchronously,
    // after minivmm is gone: unlock now, so that the image can be opened again at once.
    ::flock(fd_, LOCK_UN);
    ::close(fd_);
  }
}

}  // namespace minivmm::devices
