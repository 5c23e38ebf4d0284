// EventLoop: the small epoll loop that device workers and the main thread run.
//
// Each entry is an fd with an interest set (kIn, kOut) and a handler that is told which
// events fired (kIn, kOut, kHangup, kError). Level-triggered: a handler that leaves data
// unread is called again on the next wake-up. Entries can be added, changed (modify()) and
// removed from inside any handler, including their own: a removed entry's handler is not
// called again, not even for an event already fetched in the same wake-up, and its
// std::function lives until that wake-up's dispatch is over.
//
// Busy polling (what QEMU's IOThreads do with poll-max-ns): with a Poller set, after the
// loop handled a wake-up it keeps looking for more work -- through the Poller and through
// its fds without blocking -- until `poll_budget` passed without any, and only then
// sleeps in epoll_wait. A driver that answers completions with new requests within the
// budget is then served without a wake-up of this thread, and, with the Poller's
// notifications off while it polls, without having to notify at all.
//
// Threads: add()/modify()/remove() from the loop's own thread or before run() starts;
// run()/run_once() on the loop thread; stop() from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "virtio/event_fd.h"

namespace minivmm::devices {

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
  // Interest (add, modify) and fired events (the handler's argument).
  static constexpr uint32_t kIn = 1u << 0;      // readable
  static constexpr uint32_t kOut = 1u << 1;     // writable
  static constexpr uint32_t kHangup = 1u << 2;  // fired only: the peer closed
  static constexpr uint32_t kError = 1u << 3;   // fired only: an error on the fd
  using Handler = std::function<void(uint32_t events)>;

  // Throws std::system_error when epoll cannot be set up.
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // Calls `handler` when `fd` has any of the `interest` events (kHangup and kError are
  // always reported). The fd must stay open until removed. Throws std::system_error when
  // epoll refuses the fd (already added, not pollable).
  void add(int fd, uint32_t interest, Handler handler);
  // Changes the interest of an added fd; 0 keeps it added without waking for it (hangups
  // and errors still wake). Throws std::system_error when epoll refuses.
  void modify(int fd, uint32_t interest);
  // Removes `fd`; nothing when it was not added.
  void remove(int fd);
  size_t size() const;  // entries added and not removed
  // Removes every entry, the poller and a pending stop(): the loop as new, for its thread's
  // next use (a device worker between two activations), without a new epoll fd. Not from
  // a handler.
  void clear();

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
  // Entries live in slots; the epoll key is (generation << 32 | slot index), so that an
  // event fetched for a removed entry never reaches one added later into the same slot.
  struct Slot {
    std::unique_ptr<Entry> entry;
    uint32_t generation = 0;
  };
  Slot* find(int fd);
  // One polling phase: see the file comment.
  void poll();

  int epoll_fd_ = -1;
  Poller* poller_ = nullptr;
  std::chrono::microseconds poll_budget_{0};
  virtio::EventFd stop_;
  bool stopped_ = false;
  std::vector<Slot> slots_;
  std::vector<uint32_t> free_slots_;
  bool dispatching_ = false;
  // Entries removed during a dispatch, destroyed when it is over.
  std::vector<std::unique_ptr<Entry>> removed_;
};

}  // namespace minivmm::devices
