// UringBackend: asynchronous disk I/O on io_uring (liburing). Ops are batched into one
// io_uring_enter per submit(); completions post to an eventfd registered with the ring,
// which the device's event loop watches. Short transfers are resubmitted for the rest;
// flushes are IOSQE_IO_DRAIN fsyncs (datasync), so they start only after every earlier op
// has completed. Discard / write-zeroes use IORING_OP_FALLOCATE, falling back to the
// synchronous path where the filesystem lacks the mode.
//
// The ring is restricted (IORING_REGISTER_RESTRICTIONS) to these operations on the image's
// registered files; see create().
//
// Threads: see DiskBackend, and stricter: where the kernel supports
// IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, every call must come from the
// thread that created the backend (VirtioBlock creates it on its I/O thread, before that
// thread's seccomp filter forbids io_uring_setup and io_uring_register).
#pragma once

#include <liburing.h>

#include <memory>
#include <string>
#include <vector>

#include "devices/disk_backend.h"
#include "devices/event_loop.h"

namespace minivmm::devices {

class UringBackend final : public DiskBackend {
 public:
  // nullptr with `error` set when io_uring cannot be set up here.
  static std::unique_ptr<UringBackend> create(const DiskImage& image, uint32_t depth,
                                              std::string& error);
  ~UringBackend() override;

  bool has_capacity() const override { return in_flight_ < depth_; }
  void enqueue(DiskOp& op) override;
  void submit() override;
  size_t reap(const CompletionFn& fn) override;
  void drain(const CompletionFn& fn) override;
  int completion_fd() const override { return efd_.fd(); }
  size_t in_flight() const override { return in_flight_; }
  const char* name() const override { return "io_uring"; }
  int ring_fd() const override { return ring_.ring_fd; }

  // The ring itself, for the tests of its restrictions only
  // (tests/devices/uring_restrictions_test.cc submit what virtio-blk never does).
  io_uring& ring_for_testing() { return ring_; }

 private:
  UringBackend(const DiskImage& image, uint32_t depth)
      : fd_(image.fd()), buffered_fd_(image.buffered_fd()), path_(image.path()), depth_(depth) {}
  io_uring_sqe* get_sqe();
  void prep(DiskOp& op);
  // Handles one CQE: true when `op` is finished with `result`.
  bool complete_one(DiskOp& op, int64_t& result);

  // Indexes in the ring's registered files: ops name the files by these.
  static constexpr int kFixedImage = 0;
  static constexpr int kFixedBuffered = 1;  // the buffered twin of an O_DIRECT image
  static constexpr unsigned kFixedFiles = 2;

  int fd_;
  int buffered_fd_;  // == fd_ unless the image is O_DIRECT
  std::string path_;
  bool warned_direct_ = false;
  uint32_t depth_;
  io_uring ring_{};
  bool ring_ok_ = false;
  bool defer_taskrun_ = false;  // IORING_SETUP_DEFER_TASKRUN: reap() runs the task work
  virtio::EventFd efd_;
  size_t in_flight_ = 0;
  std::vector<std::pair<DiskOp*, int64_t>> cqes_;
  std::vector<DiskOp*> failed_;  // ops that got no SQE: completed with -EIO by reap()
};

}  // namespace minivmm::devices
