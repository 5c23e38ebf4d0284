// EventFd: an owned, non-blocking eventfd. The transport makes one per queue for the
// driver's notifications (the VMM registers it with KVM_IOEVENTFD at QueueNotify, and the
// device's worker waits on it); devices use them for stop requests and backend completions.
//
// Threads: signal() from any thread; consume() and wait() from the thread that owns the
// reading side.
#pragma once

#include <cstdint>

namespace minivmm::virtio {

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

}  // namespace minivmm::virtio
