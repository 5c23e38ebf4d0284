// HostOutput: where a guest console's bytes go on the host (stdout, a file, a FIFO), written
// without ever blocking the thread that produces them (a vCPU for the UART, the console
// device's worker for virtio-console).
//
// write() appends to a bounded buffer and writes what the fd takes at once; on a pipe or
// terminal whose reader is slow the rest waits in the buffer, and the main thread's loop
// flushes it when the fd is writable again (pending_event() tells it that there is
// something to flush). Bytes that do not fit in the buffer are dropped and counted; the
// first drop is logged at once, the total when the output is closed. So a guest that floods
// its console while nobody reads stdout loses output but never stalls, and nothing is lost
// while the reader keeps up.
//
// Regular files are written directly (a disk does not "stop reading"), and cannot be waited
// on with epoll anyway. For a pipe, terminal or socket on stdout the output reopens it
// through /proc/self/fd, so that O_NONBLOCK is set on its own open file description and not
// on the one the shell shares (which would break the shell after minivmm exits); where that
// is impossible (a socket) it sets O_NONBLOCK on the shared one and restores the flags when
// destroyed.
//
// Threads: write() and the counters from any thread; flush(), drain() and close_sink() on the
// main thread (or whichever thread owns the loop that watches fd()).
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "virtio/event_fd.h"

namespace minivmm::devices {

class HostOutput {
 public:
  static constexpr size_t kDefaultCapacity = 1 << 20;

  // The process's stdout, or stderr. Throws std::system_error when it cannot be set up.
  static std::shared_ptr<HostOutput> open_stdout(size_t capacity = kDefaultCapacity);
  static std::shared_ptr<HostOutput> open_stderr(size_t capacity = kDefaultCapacity);
  // A file created or truncated at `path` (or an existing FIFO or character device, opened
  // for writing). Throws std::system_error naming the path.
  static std::shared_ptr<HostOutput> open_path(const std::string& path,
                                               size_t capacity = kDefaultCapacity);
  // Writes to `fd`, which the output owns and closes (tests: a pipe). `pollable`: the fd is
  // non-blocking and may refuse bytes (EAGAIN); otherwise every write goes straight through.
  HostOutput(int fd, bool pollable, std::string name, size_t capacity = kDefaultCapacity);
  ~HostOutput();
  HostOutput(const HostOutput&) = delete;
  HostOutput& operator=(const HostOutput&) = delete;

  // Never blocks on a pollable fd; see the file comment.
  void write(std::span<const uint8_t> bytes);

  const std::string& name() const { return name_; }
  int fd() const { return fd_; }
  bool pollable() const { return pollable_; }
  // Signalled when bytes wait in the buffer for the fd to become writable.
  const virtio::EventFd& pending_event() const { return pending_; }

  // Writes what the fd takes now; true when the buffer is empty afterwards.
  bool flush();
  // Flushes, waiting for the fd, until the buffer is empty or `idle` passed without the fd
  // taking a byte (the reader is gone or stuck). For the end of the VM.
  void drain(std::chrono::milliseconds idle);
  // The reader went away (EPIPE, a hangup): everything from now on is dropped.
  void close_sink();

  uint64_t bytes_written() const;
  uint64_t bytes_dropped() const;
  size_t buffered() const;

 private:
  static std::shared_ptr<HostOutput> open_std(int std_fd, const char* name, size_t capacity);
  // Writes from the buffer's front; mutex held. True when the buffer is empty.
  bool write_buffered();
  void fail(int error);  // mutex held: the fd refused with `error`, everything is dropped
  void drop(size_t n);   // mutex held
  void restore_flags();

  int fd_;
  int restore_flags_ = -1;  // the shared stdout's file status flags to put back, or -1
  bool pollable_;
  std::string name_;
  size_t capacity_;
  virtio::EventFd pending_;
  mutable std::mutex mutex_;
  std::vector<uint8_t> buffer_;  // bytes waiting for the fd, front first
  size_t head_ = 0;              // buffer_[head_..] are still to write
  bool signalled_ = false;       // pending_ was signalled for the bytes in the buffer
  bool dead_ = false;            // the reader is gone
  bool drop_logged_ = false;
  uint64_t written_ = 0;
  uint64_t dropped_ = 0;
};

}  // namespace minivmm::devices
