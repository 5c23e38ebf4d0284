#include "virtio/event_fd.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace minivmm::virtio {

EventFd::EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "eventfd");
}

EventFd::~EventFd() {
  if (fd_ >= 0) ::close(fd_);
}

EventFd& EventFd::operator=(EventFd&& other) noexcept {
  if (this != &other) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = other.fd_;
    other.fd_ = -1;
  }
  return *this;
}

void EventFd::signal(uint64_t n) const {
  // Only fails when the counter would overflow, and then the reader is awake anyway.
  while (::write(fd_, &n, sizeof(n)) < 0 && errno == EINTR) {
  }
}

uint64_t EventFd::consume() const {
  uint64_t value = 0;
  while (::read(fd_, &value, sizeof(value)) < 0) {
    if (errno != EINTR) return 0;  // EAGAIN: nothing pending
  }
  return value;
}

bool EventFd::wait(int timeout_ms) const {
  pollfd p{fd_, POLLIN, 0};
  while (true) {
    const int r = ::poll(&p, 1, timeout_ms);
    if (r >= 0) return r > 0;
    if (errno != EINTR) return false;
  }
}

}  // namespace minivmm::virtio
