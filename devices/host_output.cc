#include "devices/host_output.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

namespace minivmm::devices {
namespace {

[[noreturn]] void throw_errno(const std::string& what) {
  throw std::system_error(errno, std::generic_category(), what);
}

}  // namespace

std::shared_ptr<HostOutput> HostOutput::open_stdout(size_t capacity) {
  return open_std(STDOUT_FILENO, "stdout", capacity);
}

std::shared_ptr<HostOutput> HostOutput::open_stderr(size_t capacity) {
  return open_std(STDERR_FILENO, "stderr", capacity);
}

std::shared_ptr<HostOutput> HostOutput::open_std(int std_fd, const char* name, size_t capacity) {
  struct stat st {};
  if (::fstat(std_fd, &st) != 0) throw_errno(name);
  if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
    const int fd = ::fcntl(std_fd, F_DUPFD_CLOEXEC, 3);
    if (fd < 0) throw_errno(name);
    return std::make_shared<HostOutput>(fd, false, name, capacity);
  }
  // A new open file description of the same pipe or terminal: O_NONBLOCK stays ours.
  const std::string self = "/proc/self/fd/" + std::to_string(std_fd);
  const int fd = ::open(self.c_str(), O_WRONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
  if (fd >= 0) return std::make_shared<HostOutput>(fd, true, name, capacity);
  // A socket cannot be reopened: share the description and put its flags back afterwards.
  const int shared = ::fcntl(std_fd, F_DUPFD_CLOEXEC, 3);
  if (shared < 0) throw_errno(name);
  const int flags = ::fcntl(shared, F_GETFL);
  if (flags < 0 || ::fcntl(shared, F_SETFL, flags | O_NONBLOCK) != 0) {
    const int saved = errno;
    ::close(shared);
    errno = saved;
    throw_errno(std::string(name) + ": cannot make it non-blocking");
  }
  auto out = std::make_shared<HostOutput>(shared, true, name, capacity);
  out->restore_flags_ = flags;
  return out;
}

std::shared_ptr<HostOutput> HostOutput::open_path(const std::string& path, size_t capacity) {
  // O_NONBLOCK: opening a FIFO without a reader fails (ENXIO) instead of hanging.
  const int fd =
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0644);
  if (fd < 0) throw_errno(path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int saved = errno;
    ::close(fd);
    errno = saved;
    throw_errno(path);
  }
  const bool regular = S_ISREG(st.st_mode);
  if (regular) {
    // Truncated only when it is a regular file (O_TRUNC on a FIFO or device is unspecified),
    // and appended to so that another writer of the same file does not overwrite us.
    if (::ftruncate(fd, 0) != 0 || ::fcntl(fd, F_SETFL, O_APPEND) != 0) {
      const int saved = errno;
      ::close(fd);
      errno = saved;
      throw_errno(path);
    }
  }
  return std::make_shared<HostOutput>(fd, !regular, path, capacity);
}

HostOutput::HostOutput(int fd, bool pollable, std::string name, size_t capacity)
    : fd_(fd), pollable_(pollable), name_(std::move(name)), capacity_(capacity) {}

HostOutput::~HostOutput() {
  const uint64_t lost = bytes_dropped();
  if (lost > 0) spdlog::warn("{}: {} bytes of guest output were dropped in all", name_, lost);
  restore_flags();
  if (fd_ >= 0) ::close(fd_);
}

void HostOutput::restore_flags() {
  if (restore_flags_ >= 0) ::fcntl(fd_, F_SETFL, restore_flags_);
  restore_flags_ = -1;
}

void HostOutput::write(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return;
  std::lock_guard lock(mutex_);
  if (dead_) {
    drop(bytes.size());
    return;
  }
  if (head_ == buffer_.size()) {
    // Nothing waiting: straight to the fd, and only what it refuses goes to the buffer.
    buffer_.clear();
    head_ = 0;
    while (!bytes.empty()) {
      const ssize_t n = ::write(fd_, bytes.data(), bytes.size());
      if (n > 0) {
        written_ += static_cast<uint64_t>(n);
        bytes = bytes.subspan(static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      fail(n < 0 ? errno : EIO);
      drop(bytes.size());
      return;
    }
    if (bytes.empty()) return;
  }
  const size_t room = capacity_ - (buffer_.size() - head_);
  const size_t keep = std::min(room, bytes.size());
  if (head_ > 0 && buffer_.size() + keep > capacity_) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(head_));
    head_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(keep));
  if (keep < bytes.size()) {
    drop(bytes.size() - keep);
    if (!drop_logged_) {
      drop_logged_ = true;
      spdlog::warn(
          "{}: the reader does not keep up; guest output beyond {} KiB of buffer is dropped "
          "(the total is reported at exit)",
          name_, capacity_ >> 10);
    }
  }
  if (!signalled_ && head_ < buffer_.size()) {
    signalled_ = true;
    pending_.signal();
  }
}

void HostOutput::fail(int error) {
  // EPIPE, ENOSPC, EIO: this output is gone for good.
  if (!dead_) {
    spdlog::warn("{}: cannot write guest output ({}); further output is dropped", name_,
                 std::strerror(error));
  }
  dead_ = true;
}

void HostOutput::drop(size_t n) {
  dropped_ += n;
}

bool HostOutput::write_buffered() {
  while (head_ < buffer_.size()) {
    const ssize_t n = ::write(fd_, buffer_.data() + head_, buffer_.size() - head_);
    if (n > 0) {
      written_ += static_cast<uint64_t>(n);
      head_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    fail(n < 0 ? errno : EIO);
    drop(buffer_.size() - head_);
    head_ = buffer_.size();
  }
  buffer_.clear();
  head_ = 0;
  signalled_ = false;
  return true;
}

bool HostOutput::flush() {
  std::lock_guard lock(mutex_);
  return write_buffered();
}

void HostOutput::drain(std::chrono::milliseconds idle) {
  while (true) {
    size_t before;
    {
      std::lock_guard lock(mutex_);
      before = buffer_.size() - head_;
      if (write_buffered()) return;
      if (buffer_.size() - head_ < before) continue;  // progress: try again at once
    }
    pollfd p{fd_, POLLOUT, 0};
    const int n = ::poll(&p, 1, static_cast<int>(idle.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0 || (p.revents & (POLLERR | POLLHUP | POLLNVAL))) {
      if (n == 0) {
        spdlog::warn("{}: the reader took nothing for {} ms; {} bytes of guest output left behind",
                     name_, idle.count(), buffered());
      }
      close_sink();
      return;
    }
  }
}

void HostOutput::close_sink() {
  std::lock_guard lock(mutex_);
  if (head_ < buffer_.size()) drop(buffer_.size() - head_);
  buffer_.clear();
  head_ = 0;
  dead_ = true;
}

uint64_t HostOutput::bytes_written() const {
  std::lock_guard lock(mutex_);
  return written_;
}

uint64_t HostOutput::bytes_dropped() const {
  std::lock_guard lock(mutex_);
  return dropped_;
}

size_t HostOutput::buffered() const {
  std::lock_guard lock(mutex_);
  return buffer_.size() - head_;
}

}  // namespace minivmm::devices
