// SyncBackend: executes each disk op synchronously inside submit() — preadv / pwritev
// looping on short transfers, fdatasync for flushes, fallocate for discard and
// write-zeroes. Simple and always available; the I/O thread blocks while it works.
//
// Threads: see DiskBackend (one thread at a time).
#pragma once

#include <vector>

#include "devices/disk_backend.h"

namespace minivmm::devices {

class SyncBackend final : public DiskBackend {
 public:
  explicit SyncBackend(const DiskImage& image)
      : fd_(image.fd()), buffered_fd_(image.buffered_fd()), path_(image.path()) {}

  bool has_capacity() const override { return true; }
  void enqueue(DiskOp& op) override {
    op.done = 0;
    op.buffered = false;
    queued_.push_back(&op);
  }
  void submit() override;
  size_t reap(const CompletionFn& fn) override;
  void drain(const CompletionFn& fn) override {
    submit();
    reap(fn);
  }
  int completion_fd() const override { return -1; }
  size_t in_flight() const override { return queued_.size() + done_.size(); }
  const char* name() const override { return "sync"; }

 private:
  int64_t execute(DiskOp& op);

  int fd_;
  int buffered_fd_;  // == fd_ unless the image is O_DIRECT
  std::string path_;
  bool warned_direct_ = false;
  std::vector<DiskOp*> queued_;
  std::vector<std::pair<DiskOp*, int64_t>> done_;
  std::vector<std::pair<DiskOp*, int64_t>> reaping_;
};

}  // namespace minivmm::devices
