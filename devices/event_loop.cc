#include "devices/event_loop.h"

#include <sys/epoll.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <system_error>

namespace minivmm::devices {

namespace {

constexpr uint64_t kStopKey = ~uint64_t{0};

[[noreturn]] void throw_errno(const char* what) {
  throw std::system_error(errno, std::generic_category(), what);
}

uint32_t to_epoll(uint32_t interest) {
  return ((interest & EventLoop::kIn) ? uint32_t{EPOLLIN} : 0u) |
         ((interest & EventLoop::kOut) ? uint32_t{EPOLLOUT} : 0u);
}

uint32_t from_epoll(uint32_t events) {
  return ((events & EPOLLIN) ? EventLoop::kIn : 0u) | ((events & EPOLLOUT) ? EventLoop::kOut : 0u) |
         ((events & (EPOLLHUP | EPOLLRDHUP)) ? EventLoop::kHangup : 0u) |
         ((events & EPOLLERR) ? EventLoop::kError : 0u);
}

}  // namespace

EventLoop::EventLoop() : epoll_fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (epoll_fd_ < 0) throw_errno("epoll_create1");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kStopKey;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, stop_.fd(), &ev) != 0) {
    const int err = errno;
    ::close(epoll_fd_);
    throw std::system_error(err, std::generic_category(), "epoll_ctl");
  }
}

EventLoop::~EventLoop() {
  ::close(epoll_fd_);
}

EventLoop::Slot* EventLoop::find(int fd) {
  for (Slot& s : slots_) {
    if (s.entry && s.entry->fd == fd) return &s;
  }
  return nullptr;
}

void EventLoop::add(int fd, uint32_t interest, Handler handler) {
  const bool reuse = !free_slots_.empty();
  const uint32_t index = reuse ? free_slots_.back() : static_cast<uint32_t>(slots_.size());
  if (!reuse) slots_.emplace_back();
  epoll_event ev{};
  ev.events = to_epoll(interest);
  ev.data.u64 = uint64_t{slots_[index].generation} << 32 | index;
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    const int err = errno;
    if (!reuse) slots_.pop_back();
    throw std::system_error(err, std::generic_category(), "epoll_ctl add");
  }
  if (reuse) free_slots_.pop_back();
  slots_[index].entry = std::make_unique<Entry>(Entry{fd, std::move(handler)});
}

void EventLoop::modify(int fd, uint32_t interest) {
  Slot* slot = find(fd);
  if (slot == nullptr) return;
  epoll_event ev{};
  ev.events = to_epoll(interest);
  ev.data.u64 = uint64_t{slot->generation} << 32 | static_cast<uint64_t>(slot - slots_.data());
  if (::epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fd, &ev) != 0) throw_errno("epoll_ctl mod");
}

void EventLoop::remove(int fd) {
  Slot* slot = find(fd);
  if (slot == nullptr) return;
  ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
  if (dispatching_) {
    removed_.push_back(std::move(slot->entry));  // its handler may be the one running
  } else {
    slot->entry.reset();
  }
  slot->generation++;
  free_slots_.push_back(static_cast<uint32_t>(slot - slots_.data()));
}

void EventLoop::clear() {
  for (Slot& s : slots_) {
    if (s.entry) remove(s.entry->fd);
  }
  stop_.consume();
  stopped_ = false;
  poller_ = nullptr;
  poll_budget_ = std::chrono::microseconds{0};
}

size_t EventLoop::size() const {
  size_t n = 0;
  for (const Slot& s : slots_) n += s.entry ? 1u : 0u;
  return n;
}

int EventLoop::run_once(int timeout_ms) {
  std::array<epoll_event, 16> events{};
  const int n = ::epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), timeout_ms);
  if (n < 0) {
    if (errno == EINTR) return 0;
    throw_errno("epoll_wait");
  }
  dispatching_ = true;
  for (int i = 0; i < n; ++i) {
    const epoll_event& ev = events[static_cast<size_t>(i)];
    if (ev.data.u64 == kStopKey) {
      stop_.consume();
      stopped_ = true;
      continue;
    }
    const auto index = static_cast<uint32_t>(ev.data.u64);
    const auto generation = static_cast<uint32_t>(ev.data.u64 >> 32);
    if (index >= slots_.size()) continue;
    Slot& slot = slots_[index];
    // Removed (and perhaps reused) since epoll_wait returned: not for this entry.
    if (slot.generation != generation || !slot.entry) continue;
    Entry* entry = slot.entry.get();  // `slot` may move if a handler adds entries
    entry->handler(from_epoll(ev.events));
  }
  dispatching_ = false;
  removed_.clear();
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
