#include "devices/uring_backend.h"

#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>

namespace minivmm::devices {
namespace {

// io_uring_register(2) directly: Debian 12's shared liburing (2.3) does not export
// io_uring_register_restrictions or io_uring_enable_rings, though its headers declare them.
int register_ring(const io_uring& ring, unsigned opcode, const void* arg, unsigned nr_args) {
  const long r = ::syscall(__NR_io_uring_register, ring.ring_fd, opcode, arg, nr_args);
  return r < 0 ? -errno : static_cast<int>(r);
}

}  // namespace

std::unique_ptr<UringBackend> UringBackend::create(const DiskImage& image, uint32_t depth,
                                                   std::string& error) {
  depth = std::max<uint32_t>(depth, 1);
  std::unique_ptr<UringBackend> b(new UringBackend(image, depth));
  // One SQE per op in flight (resubmissions reuse their op's slot); the CQ is twice as big,
  // so it cannot overflow while we reap.
  const unsigned entries = std::min<uint32_t>(std::bit_ceil(depth), 4096);
  b->depth_ = std::min<uint32_t>(depth, entries);
  // Single issuer with deferred task work: completions are run when this thread asks for
  // them (in reap()) instead of interrupting it with an IPI each, which in a VM is an exit.
  // Older kernels refuse the flags; plain mode works everywhere.
  //
  // The ring is made disabled so that it can be locked down before it is used: its two
  // files (the image, and its buffered twin for O_DIRECT fallbacks) and the completion
  // eventfd registered, then IORING_REGISTER_RESTRICTIONS: only the operations virtio-blk
  // issues (readv, writev, fsync, fallocate), only on the registered files, no register
  // operation at all afterwards. A thread that goes astray cannot open or touch other files
  // through this ring, where seccomp does not look.
  constexpr unsigned kLocked = IORING_SETUP_R_DISABLED;
  int r = io_uring_queue_init(entries, &b->ring_,
                              kLocked | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
  if (r == -EINVAL) {
    r = io_uring_queue_init(entries, &b->ring_, kLocked);
  } else if (r >= 0) {
    b->defer_taskrun_ = true;
  }
  if (r < 0) {
    error = std::string("io_uring_queue_init: ") + std::strerror(-r);
    return nullptr;
  }
  b->ring_ok_ = true;
  const int files[kFixedFiles] = {b->fd_, b->buffered_fd_};
  if (const int e = io_uring_register_files(&b->ring_, files, kFixedFiles); e < 0) {
    error = std::string("io_uring_register_files: ") + std::strerror(-e);
    return nullptr;
  }
  if (const int e = io_uring_register_eventfd(&b->ring_, b->efd_.fd()); e < 0) {
    error = std::string("io_uring_register_eventfd: ") + std::strerror(-e);
    return nullptr;
  }
  io_uring_restriction rules[6] = {};
  const uint8_t ops[] = {IORING_OP_READV, IORING_OP_WRITEV, IORING_OP_FSYNC, IORING_OP_FALLOCATE};
  size_t n = 0;
  for (uint8_t op : ops) {
    rules[n].opcode = IORING_RESTRICTION_SQE_OP;
    rules[n++].sqe_op = op;
  }
  rules[n].opcode = IORING_RESTRICTION_SQE_FLAGS_ALLOWED;
  rules[n++].sqe_flags = IOSQE_FIXED_FILE | IOSQE_IO_DRAIN;
  rules[n].opcode = IORING_RESTRICTION_SQE_FLAGS_REQUIRED;
  rules[n++].sqe_flags = IOSQE_FIXED_FILE;
  if (const int e =
          register_ring(b->ring_, IORING_REGISTER_RESTRICTIONS, rules, static_cast<unsigned>(n));
      e < 0) {
    error = std::string("io_uring_register_restrictions: ") + std::strerror(-e);
    return nullptr;
  }
  if (const int e = register_ring(b->ring_, IORING_REGISTER_ENABLE_RINGS, nullptr, 0); e < 0) {
    error = std::string("io_uring_enable_rings: ") + std::strerror(-e);
    return nullptr;
  }
  return b;
}

UringBackend::~UringBackend() {
  if (!ring_ok_) return;
  if (in_flight_ > 0) {
    // Guest buffers are still targets of DMA: wait rather than unmap under the kernel.
    drain([](DiskOp&, int64_t) {});
  }
  io_uring_queue_exit(&ring_);
}

io_uring_sqe* UringBackend::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  // SQ full of unsubmitted entries: push them to the kernel to make room. Bounded, so that
  // a ring that refuses submissions fails the op instead of spinning.
  for (int attempt = 0; sqe == nullptr && attempt < 1000; ++attempt) {
    const int r = io_uring_submit(&ring_);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      spdlog::error("io_uring_submit: {}", std::strerror(-r));
      return nullptr;
    }
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void UringBackend::prep(DiskOp& op) {
  io_uring_sqe* sqe = get_sqe();
  if (sqe == nullptr) {
    // Reported by the next reap(); the eventfd makes sure there is one.
    failed_.push_back(&op);
    efd_.signal();
    return;
  }
  switch (op.kind) {
    case DiskOp::Kind::kRead:
    case DiskOp::Kind::kWrite: {
      const uint32_t first = advance_iovecs(op.iov, op.iov_count, 0);
      const unsigned cnt = op.iov_count - first;
      const uint64_t off = op.offset + op.done;
      const int fd = op.buffered ? kFixedBuffered : kFixedImage;
      if (op.kind == DiskOp::Kind::kRead) {
        io_uring_prep_readv(sqe, fd, op.iov + first, cnt, off);
      } else {
        io_uring_prep_writev(sqe, fd, op.iov + first, cnt, off);
      }
      io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
      break;
    }
    case DiskOp::Kind::kFlush:
      io_uring_prep_fsync(sqe, kFixedImage, IORING_FSYNC_DATASYNC);
      // Starts after everything submitted before it completed; durability of those writes
      // is what the flush promises (virtio 1.2 §5.2.6.1).
      io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE | IOSQE_IO_DRAIN);
      break;
    case DiskOp::Kind::kDiscard:
      io_uring_prep_fallocate(sqe, kFixedImage, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                              static_cast<off_t>(op.offset), static_cast<off_t>(op.length));
      io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
      break;
    case DiskOp::Kind::kWriteZeroes:
      io_uring_prep_fallocate(
          sqe, kFixedImage,
          (op.unmap ? FALLOC_FL_PUNCH_HOLE : FALLOC_FL_ZERO_RANGE) | FALLOC_FL_KEEP_SIZE,
          static_cast<off_t>(op.offset), static_cast<off_t>(op.length));
      io_uring_sqe_set_flags(sqe, IOSQE_FIXED_FILE);
      break;
  }
  io_uring_sqe_set_data(sqe, &op);
}

void UringBackend::enqueue(DiskOp& op) {
  op.done = 0;
  op.buffered = false;
  ++in_flight_;
  prep(op);
}

void UringBackend::submit() {
  while (true) {
    const int r = io_uring_submit(&ring_);
    if (r >= 0 || (r != -EINTR && r != -EAGAIN)) {
      if (r < 0) spdlog::error("io_uring_submit: {}", std::strerror(-r));
      return;
    }
  }
}

bool UringBackend::complete_one(DiskOp& op, int64_t& result) {
  switch (op.kind) {
    case DiskOp::Kind::kRead:
    case DiskOp::Kind::kWrite:
      if (result == -EAGAIN || result == -EINTR) {
        prep(op);
        return false;
      }
      if (result == -EINVAL && !op.buffered && buffered_fd_ != fd_) {
        warn_direct_fallback(path_, warned_direct_);
        op.buffered = true;
        prep(op);
        return false;
      }
      if (result < 0) return true;
      if (result == 0) {
        result = -EIO;  // end of file inside the capacity: the image shrank
        return true;
      }
      op.done += static_cast<uint64_t>(result);
      if (op.done < op.length) {
        // Short transfer: go on from where it stopped.
        advance_iovecs(op.iov, op.iov_count, static_cast<uint64_t>(result));
        prep(op);
        return false;
      }
      result = static_cast<int64_t>(op.done);
      return true;
    case DiskOp::Kind::kDiscard:
    case DiskOp::Kind::kWriteZeroes:
      if (result == -EOPNOTSUPP || result == -EINVAL) result = execute_range_op(fd_, op);
      return true;
    case DiskOp::Kind::kFlush:
      return true;
  }
  return true;
}

size_t UringBackend::reap(const CompletionFn& fn) {
  // The eventfd first: whatever completes after this point signals it again.
  efd_.consume();
  if (defer_taskrun_) io_uring_get_events(&ring_);
  cqes_.clear();
  io_uring_cqe* cqe = nullptr;
  unsigned head = 0;
  unsigned seen = 0;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    cqes_.emplace_back(static_cast<DiskOp*>(io_uring_cqe_get_data(cqe)), cqe->res);
    ++seen;
  }
  io_uring_cq_advance(&ring_, seen);
  for (DiskOp* op : failed_) cqes_.emplace_back(op, -EIO);
  failed_.clear();
  size_t finished = 0;
  bool resubmit = false;
  for (auto& [op, res] : cqes_) {
    int64_t result = res;
    if (!complete_one(*op, result)) {
      resubmit = true;
      continue;
    }
    --in_flight_;
    ++finished;
    fn(*op, result);
  }
  if (resubmit) submit();
  return finished;
}

void UringBackend::drain(const CompletionFn& fn) {
  submit();
  while (in_flight_ > 0) {
    if (!failed_.empty()) {
      reap(fn);
      continue;
    }
    io_uring_cqe* cqe = nullptr;
    const int r = io_uring_wait_cqe(&ring_, &cqe);
    if (r < 0 && r != -EINTR) {
      spdlog::error("io_uring_wait_cqe: {}", std::strerror(-r));
      return;
    }
    reap(fn);
  }
}

std::unique_ptr<DiskBackend> make_uring_backend(const DiskImage& image, uint32_t depth,
                                                std::string& error) {
  return UringBackend::create(image, depth, error);
}

bool io_uring_available(std::string& reason) {
  io_uring ring{};
  const int r = io_uring_queue_init(2, &ring, 0);
  if (r < 0) {
    reason = std::string("io_uring_queue_init: ") + std::strerror(-r);
    return false;
  }
  io_uring_queue_exit(&ring);
  return true;
}

}  // namespace minivmm::devices
