#include "devices/fault_backend.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "virtio/event_fd.h"

namespace minivmm::devices {
namespace {

constexpr uint64_t kSector = 512;

std::optional<uint64_t> number(std::string_view s) {
  uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  size_t start = 0;
  while (true) {
    const size_t at = s.find(sep, start);
    out.push_back(
        s.substr(start, at == std::string_view::npos ? std::string_view::npos : at - start));
    if (at == std::string_view::npos) return out;
    start = at + 1;
  }
}

uint8_t op_bit(DiskOp::Kind kind) {
  switch (kind) {
    case DiskOp::Kind::kRead:
      return DiskFault::kRead;
    case DiskOp::Kind::kWrite:
      return DiskFault::kWrite;
    case DiskOp::Kind::kFlush:
      return DiskFault::kFlush;
    case DiskOp::Kind::kDiscard:
    case DiskOp::Kind::kWriteZeroes:
      return DiskFault::kDiscard;
  }
  return 0;
}

class FaultBackend final : public DiskBackend {
 public:
  FaultBackend(std::unique_ptr<DiskBackend> inner, std::vector<DiskFault> faults)
      : inner_(std::move(inner)),
        faults_(std::move(faults)),
        name_(std::string("fault+") + inner_->name()) {
    // One fd for the device to wait on: an epoll set of the inner backend's completions
    // and this layer's own (injected results), readable when either is.
    if (inner_->completion_fd() < 0) return;
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_ < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
    for (int fd : {inner_->completion_fd(), own_.fd()}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &ev) != 0) {
        ::close(epoll_);
        throw std::system_error(errno, std::generic_category(), "epoll_ctl");
      }
    }
  }
  ~FaultBackend() override {
    if (epoll_ >= 0) ::close(epoll_);
  }

  bool has_capacity() const override { return inner_->has_capacity(); }

  void enqueue(DiskOp& op) override {
    const DiskFault* fault = match(op);
    if (fault == nullptr) return inner_->enqueue(op);
    switch (fault->kind) {
      case DiskFault::Kind::kError:
        injected_.emplace_back(&op, -fault->error);
        own_.signal();
        return;
      case DiskFault::Kind::kDelay: {
        const timespec ts{static_cast<time_t>(fault->delay_ms / 1000),
                          static_cast<long>(fault->delay_ms % 1000) * 1'000'000L};
        ::nanosleep(&ts, nullptr);
        return inner_->enqueue(op);
      }
      case DiskFault::Kind::kShort:
        if ((op.kind != DiskOp::Kind::kRead && op.kind != DiskOp::Kind::kWrite) ||
            op.length < 2 * kSector) {
          return inner_->enqueue(op);
        }
        // Carry out the first half only, and report that as the op's result, as a host
        // whose transfer ended early would if nobody went on with the rest.
        shorts_.push_back({&op, op.length});
        truncate(op, op.length / 2 / kSector * kSector);
        return inner_->enqueue(op);
    }
  }

  void submit() override { inner_->submit(); }

  size_t reap(const CompletionFn& fn) override {
    own_.consume();
    size_t n = report_injected(fn);
    return n + inner_->reap([this, &fn](DiskOp& op, int64_t result) { finish(op, result, fn); });
  }

  void drain(const CompletionFn& fn) override {
    report_injected(fn);
    inner_->drain([this, &fn](DiskOp& op, int64_t result) { finish(op, result, fn); });
  }

  int completion_fd() const override { return epoll_; }
  size_t in_flight() const override { return inner_->in_flight() + injected_.size(); }
  const char* name() const override { return name_.c_str(); }
  int ring_fd() const override { return inner_->ring_fd(); }

 private:
  struct Short {
    DiskOp* op;
    uint64_t length;  // the op's real length, restored before the device sees the result
  };

  const DiskFault* match(const DiskOp& op) {
    for (DiskFault& f : faults_) {
      if (f.count == 0 || (f.ops & op_bit(op.kind)) == 0) continue;
      if (op.kind != DiskOp::Kind::kFlush) {
        const uint64_t first = op.offset / kSector;
        const uint64_t last = (op.offset + std::max<uint64_t>(op.length, 1) - 1) / kSector;
        if (last < f.first_sector || first > f.last_sector) continue;
      }
      if (f.count != UINT64_MAX) --f.count;
      return &f;
    }
    return nullptr;
  }

  // Shortens the op's iovecs to `length` bytes in total.
  static void truncate(DiskOp& op, uint64_t length) {
    op.length = length;
    uint64_t left = length;
    uint32_t i = 0;
    for (; i < op.iov_count && left > 0; ++i) {
      op.iov[i].iov_len = static_cast<size_t>(std::min<uint64_t>(op.iov[i].iov_len, left));
      left -= op.iov[i].iov_len;
    }
    op.iov_count = i;
  }

  void finish(DiskOp& op, int64_t result, const CompletionFn& fn) {
    auto it =
        std::find_if(shorts_.begin(), shorts_.end(), [&op](const Short& s) { return s.op == &op; });
    if (it != shorts_.end()) {
      op.length = it->length;
      shorts_.erase(it);
    }
    fn(op, result);
  }

  size_t report_injected(const CompletionFn& fn) {
    // The callback may enqueue more (which may be injected again): take the list first.
    std::vector<std::pair<DiskOp*, int64_t>> now;
    now.swap(injected_);
    for (auto& [op, result] : now) fn(*op, result);
    return now.size();
  }

  std::unique_ptr<DiskBackend> inner_;
  std::vector<DiskFault> faults_;
  std::string name_;
  virtio::EventFd own_;
  int epoll_ = -1;
  std::vector<std::pair<DiskOp*, int64_t>> injected_;
  std::vector<Short> shorts_;
};

}  // namespace

Result<std::vector<DiskFault>, std::string> parse_disk_faults(std::string_view spec) {
  std::vector<DiskFault> faults;
  for (std::string_view item : split(spec, '+')) {
    const std::string shown(item.substr(0, 64));
    const auto parts = split(item, ':');
    if (parts.size() < 2 || parts.size() > 4) {
      return std::string("fault '" + shown + "' is not WHAT:OP[:FIRST-LAST][:COUNT]");
    }
    DiskFault f;
    const std::string_view what = parts[0];
    // delayMS: MS, or above any allowed delay when it is not that.
    const uint64_t delay_ms =
        what.starts_with("delay") ? number(what.substr(5)).value_or(UINT64_MAX) : UINT64_MAX;
    if (what == "eio" || what == "enospc" || what == "efbig") {
      f.error = what == "eio" ? EIO : what == "enospc" ? ENOSPC : EFBIG;
    } else if (what == "short") {
      f.kind = DiskFault::Kind::kShort;
    } else if (delay_ms <= 10'000) {
      f.kind = DiskFault::Kind::kDelay;
      f.delay_ms = static_cast<uint32_t>(delay_ms);
    } else {
      return std::string("fault '" + shown +
                         "': WHAT is eio, enospc, efbig, short or delayMS (MS at most 10000)");
    }
    const std::string_view op = parts[1];
    if (op == "read") {
      f.ops = DiskFault::kRead;
    } else if (op == "write") {
      f.ops = DiskFault::kWrite;
    } else if (op == "flush") {
      f.ops = DiskFault::kFlush;
    } else if (op == "discard") {
      f.ops = DiskFault::kDiscard;
    } else if (op == "any") {
      f.ops = DiskFault::kRead | DiskFault::kWrite | DiskFault::kFlush | DiskFault::kDiscard;
    } else {
      return std::string("fault '" + shown + "': OP is read, write, flush, discard or any");
    }
    for (size_t i = 2; i < parts.size(); ++i) {
      const size_t dash = parts[i].find('-');
      if (dash != std::string_view::npos) {
        const auto first = number(parts[i].substr(0, dash));
        const auto last = number(parts[i].substr(dash + 1));
        if (!first || !last || *first > *last) {
          return std::string("fault '" + shown + "': sectors are FIRST-LAST with FIRST <= LAST");
        }
        f.first_sector = *first;
        f.last_sector = *last;
      } else if (const auto count = number(parts[i]); count && *count > 0) {
        f.count = *count;
      } else {
        return std::string("fault '" + shown + "': COUNT is a number above 0");
      }
    }
    faults.push_back(f);
  }
  return faults;
}

std::unique_ptr<DiskBackend> make_fault_backend(std::unique_ptr<DiskBackend> inner,
                                                std::vector<DiskFault> faults) {
  return std::make_unique<FaultBackend>(std::move(inner), std::move(faults));
}

}  // namespace minivmm::devices
