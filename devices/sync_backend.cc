#include "devices/sync_backend.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <memory>

namespace minivmm::devices {

uint32_t advance_iovecs(iovec* iov, uint32_t count, uint64_t n) {
  uint32_t i = 0;
  while (i < count && n > 0) {
    if (n >= iov[i].iov_len) {
      n -= iov[i].iov_len;
      iov[i].iov_len = 0;
      ++i;
    } else {
      iov[i].iov_base = static_cast<uint8_t*>(iov[i].iov_base) + n;
      iov[i].iov_len -= static_cast<size_t>(n);
      n = 0;
    }
  }
  while (i < count && iov[i].iov_len == 0) ++i;
  return i;
}

void warn_direct_fallback(const std::string& path, bool& warned) {
  if (warned) return;
  warned = true;
  spdlog::warn(
      "disk {}: O_DIRECT refused a request (buffer or offset not aligned to the host's block "
      "size); such requests go through the page cache",
      path);
}

namespace {

int64_t write_zeroes_by_hand(int fd, uint64_t offset, uint64_t length) {
  constexpr size_t kChunk = 1 << 20;
  // Aligned so that it also works on an O_DIRECT descriptor.
  std::unique_ptr<void, decltype(&std::free)> zero(std::aligned_alloc(4096, kChunk), &std::free);
  if (!zero) return -ENOMEM;
  std::fill_n(static_cast<uint8_t*>(zero.get()), kChunk, uint8_t{0});
  while (length > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(length, kChunk));
    const ssize_t r = ::pwrite(fd, zero.get(), n, static_cast<off_t>(offset));
    if (r < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (r == 0) return -EIO;
    offset += static_cast<uint64_t>(r);
    length -= static_cast<uint64_t>(r);
  }
  return 0;
}

int fallocate_retry(int fd, int mode, uint64_t offset, uint64_t length) {
  while (::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    if (errno != EINTR) return -errno;
  }
  return 0;
}

}  // namespace

int64_t execute_range_op(int fd, const DiskOp& op) {
  constexpr int kPunch = FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE;
  constexpr int kZero = FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE;
  if (op.kind == DiskOp::Kind::kDiscard) {
    const int r = fallocate_retry(fd, kPunch, op.offset, op.length);
    // Discard is a hint: a filesystem without hole punching simply keeps the data.
    return (r == -EOPNOTSUPP) ? 0 : r;
  }
  // Write zeroes: punching a hole also reads back zeroes, but only when unmap is allowed.
  int r = fallocate_retry(fd, op.unmap ? kPunch : kZero, op.offset, op.length);
  if (r == -EOPNOTSUPP && op.unmap) r = fallocate_retry(fd, kZero, op.offset, op.length);
  if (r == -EOPNOTSUPP) return write_zeroes_by_hand(fd, op.offset, op.length);
  return r;
}

int64_t SyncBackend::execute(DiskOp& op) {
  switch (op.kind) {
    case DiskOp::Kind::kRead:
    case DiskOp::Kind::kWrite: {
      const bool is_read = op.kind == DiskOp::Kind::kRead;
      uint32_t first = advance_iovecs(op.iov, op.iov_count, 0);
      while (op.done < op.length) {
        const int cnt = static_cast<int>(op.iov_count - first);
        const off_t off = static_cast<off_t>(op.offset + op.done);
        const int fd = op.buffered ? buffered_fd_ : fd_;
        const ssize_t r = is_read ? ::preadv(fd, op.iov + first, cnt, off)
                                  : ::pwritev(fd, op.iov + first, cnt, off);
        if (r < 0) {
          if (errno == EINTR) continue;
          if (errno == EINVAL && !op.buffered && buffered_fd_ != fd_) {
            warn_direct_fallback(path_, warned_direct_);
            op.buffered = true;
            continue;
          }
          return -errno;
        }
        if (r == 0) return -EIO;  // end of file inside the capacity: the image shrank
        op.done += static_cast<uint64_t>(r);
        first += advance_iovecs(op.iov + first, op.iov_count - first, static_cast<uint64_t>(r));
      }
      return static_cast<int64_t>(op.done);
    }
    case DiskOp::Kind::kFlush:
      while (::fdatasync(fd_) != 0) {
        if (errno != EINTR) return -errno;
      }
      return 0;
    case DiskOp::Kind::kDiscard:
    case DiskOp::Kind::kWriteZeroes:
      return execute_range_op(fd_, op);
  }
  return -EINVAL;
}

void SyncBackend::submit() {
  // In order: a flush therefore follows every op enqueued before it.
  for (DiskOp* op : queued_) done_.emplace_back(op, execute(*op));
  queued_.clear();
}

size_t SyncBackend::reap(const CompletionFn& fn) {
  // The callback may enqueue and submit more ops; iterate over a private copy.
  reaping_.swap(done_);
  done_.clear();
  for (auto& [op, result] : reaping_) fn(*op, result);
  const size_t n = reaping_.size();
  reaping_.clear();
  return n;
}

std::unique_ptr<DiskBackend> make_sync_backend(const DiskImage& image) {
  return std::make_unique<SyncBackend>(image);
}

}  // namespace minivmm::devices
