#include "devices/event_loop.h"

#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace minivmm::devices {

namespace {
[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}
}  // namespace

EventFd::EventFd() : fd_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (fd_ < 0) throw_errno("eventfd");
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

EventLoop::EventLoop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw_errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = 0;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_.fd(), &ev) != 0) {
    const int err = errno;
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "epoll_ctl");
  }
}

EventLoop::~EventLoop() {
  ::close(epoll_fd_);
}

void EventLoop::add(int fd, Handler handler) {
  entries_.push_back(Entry{fd, std::move(handler)});
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = entries_.size();
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    entries_.pop_back();
    throw_errno("epoll_ctl add");
  }
}

void EventLoop::remove(int fd) {
  for (Entry& e : entries_) {
    if (e.fd == fd) {
      ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
      e.fd = -1;
      e.handler = nullptr;
    }
  }
}

int EventLoop::run_once(int timeout_ms) {
  std::array<epoll_event, 16> events{};
  const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw_errno("epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    const uint64_t key = events[static_cast<size_t>(i)].data.u64;
    if (key == 0) {
      stop_.consume();
      stopped_ = true;
      continue;
    }
    Entry& e = entries_[key - 1];
    if (e.handler) e.handler();
  }
  return n;
}

void EventLoop::run() {
  stopped_ = false;
  const bool polling = poller_ != nullptr && poll_budget_.count() > 0;
  while (!stopped_) {
    if (run_once(-1) > 0 && polling && !stopped_) poll();
  }
}

void EventLoop::poll() {
  using Clock = std::chrono::steady_clock;
  poller_->poll_begin();
  auto deadline = Clock::now() + poll_budget_;
  while (!stopped_) {
    // The fds too: backend completions, and notifications sent before poll_begin().
    bool work = run_once(0) > 0;
    if (stopped_) break;
    work = poller_->poll() || work;
    const auto now = Clock::now();
    if (work) {
      deadline = now + poll_budget_;
    } else if (now >= deadline) {
      break;
    }
  }
  poller_->poll_end();
}

}  // namespace minivmm::devices
