// EventFd and EventLoop: the small epoll loop that device I/O threads run.
//
// EventFd owns a non-blocking eventfd (a queue notification registered with
// KVM_IOEVENTFD, a backend's completion fd, a stop request). EventLoop dispatches
// readable fds to handlers, level-triggered, until stop().
//
// Threads: EventFd::signal() from any thread. EventLoop::add()/remove() from the loop's
// own thread or before run() starts; run()/run_once() on the loop thread; stop() from any
// thread.
#pragma once

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
  int epoll_fd_ = -1;
  EventFd stop_;
  bool stopped_ = false;
  std::vector<Entry> entries_;  // index + 1 is the epoll data; 0 is the stop fd
};

}  // namespace minivmm::devices
