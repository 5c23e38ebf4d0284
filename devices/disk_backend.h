// DiskBackend: how the block device hands disk operations to the host.
//
// The device enqueues DiskOps, calls submit() to start them, and later collects results
// with reap(). A DiskOp is owned by the caller, must stay at the same address until its
// completion has been reaped, and may be modified by the backend meanwhile (short
// transfers advance `iov`). Results are the bytes transferred (the full length) or -errno.
// The synchronous backend completes ops inside submit(); the io_uring backend completes
// them asynchronously and makes completion_fd() readable when results are waiting.
//
// Threads: one thread at a time (the device's I/O thread, or the thread calling
// VirtioBlock::reset() after the I/O thread has stopped).
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "devices/disk_image.h"

namespace minivmm::devices {

struct DiskOp {
  enum class Kind : uint8_t { kRead, kWrite, kFlush, kDiscard, kWriteZeroes };
  Kind kind = Kind::kRead;
  uint64_t offset = 0;   // bytes
  uint64_t length = 0;   // bytes: the iov total for reads / writes, the range otherwise
  iovec* iov = nullptr;  // reads / writes; rewritten by the backend on short transfers
  uint32_t iov_count = 0;
  bool unmap = false;     // write-zeroes may deallocate (punch a hole)
  void* owner = nullptr;  // the caller's, untouched
  // Backend bookkeeping.
  uint64_t done = 0;
  bool buffered = false;  // O_DIRECT refused the op (EINVAL): retried on the buffered fd
};

// Logs, once per backend (`warned`), that O_DIRECT refused a request which is then
// retried through the page cache.
void warn_direct_fallback(const std::string& path, bool& warned);

class DiskBackend {
 public:
  using CompletionFn = std::function<void(DiskOp& op, int64_t result)>;

  virtual ~DiskBackend() = default;

  // Room for another op? When false, reap completions first.
  virtual bool has_capacity() const = 0;
  // Queues an op; it starts no later than the next submit().
  virtual void enqueue(DiskOp& op) = 0;
  // Starts everything queued. A flush starts only after every op enqueued before it has
  // completed, and completes once their data is durable.
  virtual void submit() = 0;
  // Reports every finished op to `fn`; returns how many. Never blocks.
  virtual size_t reap(const CompletionFn& fn) = 0;
  // Blocks until every op in flight has completed, reporting each to `fn`.
  virtual void drain(const CompletionFn& fn) = 0;
  // Readable when reap() has something to report; -1 for a backend that completes inside
  // submit().
  virtual int completion_fd() const = 0;
  virtual size_t in_flight() const = 0;
  virtual const char* name() const = 0;
  // The io_uring fd the backend's io_uring_enter calls name, -1 for a backend without a
  // ring: the only one the I/O thread's seccomp filter lets it enter (vmm/seccomp.h).
  virtual int ring_fd() const { return -1; }
};

// The synchronous backend over `image` (which must outlive it).
std::unique_ptr<DiskBackend> make_sync_backend(const DiskImage& image);

// The io_uring backend with room for `depth` ops in flight. nullptr and `error` set when
// io_uring is unavailable (old kernel, seccomp, sysctl kernel.io_uring_disabled).
std::unique_ptr<DiskBackend> make_uring_backend(const DiskImage& image, uint32_t depth,
                                                std::string& error);

// Whether io_uring works here; `reason` says why not.
bool io_uring_available(std::string& reason);

// Helpers shared by the backends.
// Advances `iov[0..count)` past `n` bytes in place; returns the first iovec still pending.
uint32_t advance_iovecs(iovec* iov, uint32_t count, uint64_t n);
// fallocate() for discard / write-zeroes, with a plain zero-writing fallback for
// write-zeroes where the filesystem does not support FALLOC_FL_ZERO_RANGE.
// Returns 0 or -errno. Discard where hole punching is unsupported succeeds (it is a hint,
// virtio 1.2 §5.2.6.2).
int64_t execute_range_op(int fd, const DiskOp& op);

}  // namespace minivmm::devices
