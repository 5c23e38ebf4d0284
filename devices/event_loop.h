// EventFd and EventLoop: the small epoll loop that device I/O threads run.
//
// EventFd owns a non-blocking eventfd (a queue notification registered with
// KVM_IOEVENTFD, a backend's completion fd, a stop request). EventLoop dispatches
// readable fds to handlers, level-triggered, until stop().
//
// Busy polling (what QEMU's IOThreads do with poll-max-ns): with a Poller set, after the
// loop handled a wake-up it keeps looking for more work -- through the Poller and through
// its fds without blocking -- until `poll_budget` passed without any, and only then
// sleeps in epoll_wait. A driver that answers completions with new requests within the
// budget is then served without a wake-up of this thread, and, with the Poller's
// notifications off while it polls, without having to notify at all.
//
// Threads: EventFd::signal() from any thread. EventLoop::add()/remove() from the loop's
// own thread or before run() starts; run()/run_once() on the loop thread; stop() from any
// thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <vector>

namespace minivmm::devices {

class EventFd {
 public:
  // Throws std::system_error when the eventfd cannot be created (a host problem).
  EventFd();
  ~EventFd();
  EventFd(EventFd&& other) noexcept : fd_(other.fd_) { other.fd_ = -1; }
  EventFd& operator=(EventFd&& other) noexcept;
  EventFd(const EventFd&) = delete;
  EventFd& operator=(const EventFd&) = delete;

  int fd() const { return fd_; }
  // Adds `n` to the counter (wakes the reader).
  void signal(uint64_t n = 1) const;
  // Reads and resets the counter; 0 when it was already zero.
  uint64_t consume() const;
  // Waits until the counter is nonzero (or `timeout_ms` passes, -1 = forever); true if so.
  bool wait(int timeout_ms) const;

 private:
  int fd_ = -1;
};

// Work the loop can find by looking instead of being woken (a virtqueue's avail ring).
// Called on the loop's thread.
class Poller {
 public:
  virtual ~Poller() = default;
  // Polling starts: suppress the notifications that polling makes unnecessary.
  virtual void poll_begin() = 0;
  // Handles whatever work there is; true if there was some.
  virtual bool poll() = 0;
  // Polling ends, because the loop is about to sleep (notifications back on, and work that
  // raced with that handled) or to stop (stop_requested() is then true).
  virtual void poll_end() = 0;
};

class EventLoop {
 public:
  using Handler = std::function<void()>;

  // Throws std::system_error when epoll cannot be set up.
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `handler` whenever `fd` is readable. The fd must stay open until removed.
  void add(int fd, Handler handler);
  void remove(int fd);

  // Polls with `poller` for up to `budget` after each wake-up (zero: never). Call before
  // run(); the poller must outlive it.
  void set_poller(Poller* poller, std::chrono::microseconds budget) {
    poller_ = poller;
    poll_budget_ = budget;
  }

  // Dispatches until stop(); returns after the handlers of the last wake-up ran.
  void run();
  // Waits up to `timeout_ms` (-1 = forever) and dispatches once; returns the events handled.
  int run_once(int timeout_ms);
  // Makes run() return; callable from any thread, also before run() starts.
  void stop() const { stop_.signal(); }
  bool stop_requested() const { return stopped_; }

 private:
  struct Entry {
    int fd;
    Handler handler;
  };
  // One polling phase: see the file comment.
  void poll();

  int epoll_fd_ = -1;
  Poller* poller_ = nullptr;
  std::chrono::microseconds poll_budget_{0};
  EventFd stop_;
  bool stopped_ = false;
  std::vector<Entry> entries_;  // index + 1 is the epoll data; 0 is the stop fd
};

}  // namespace minivmm::devices
