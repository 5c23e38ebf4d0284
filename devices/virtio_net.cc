#include "devices/virtio_net.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>

#include "virtio/spec.h"

namespace minivmm::devices {
namespace {

using namespace net_features;

constexpr uint16_t kStatusLinkUp = 1;  // VIRTIO_NET_S_LINK_UP
constexpr uint8_t kHdrNeedsCsum = 1;   // VIRTIO_NET_HDR_F_NEEDS_CSUM
constexpr uint8_t kGsoNone = 0;
constexpr uint8_t kGsoTcpV4 = 1;
constexpr uint8_t kGsoTcpV6 = 4;
constexpr uint8_t kGsoEcn = 0x80;
constexpr size_t kEthHeader = 14;

// virtio 1.2 §5.1.4 (max_virtqueue_pairs is there without VIRTIO_NET_F_MQ too: 1).
struct NetConfig {
  uint8_t mac[6];
  uint16_t status;
  uint16_t max_virtqueue_pairs;
} __attribute__((packed));
static_assert(sizeof(NetConfig) == 10);

// Writes `first` then `second` across the chains' writable buffers, in order.
class SpanPair {
 public:
  SpanPair(std::span<const uint8_t> first, std::span<const uint8_t> second)
      : parts_{first, second} {}
  // Up to `room` bytes into `writer`; false when guest memory refused a write.
  bool write_to(virtio::ChainWriter& writer, uint64_t room) {
    while (room > 0 && part_ < 2) {
      std::span<const uint8_t> p = parts_[part_].subspan(offset_);
      if (p.empty()) {
        ++part_;
        offset_ = 0;
        continue;
      }
      const size_t n = static_cast<size_t>(std::min<uint64_t>(room, p.size()));
      if (!writer.write(p.first(n))) return false;
      offset_ += n;
      room -= n;
    }
    return true;
  }

 private:
  std::span<const uint8_t> parts_[2];
  size_t part_ = 0;
  size_t offset_ = 0;
};

}  // namespace

VirtioNet::VirtioNet(Options options, std::unique_ptr<NetBackend> backend)
    : options_(std::move(options)), backend_(std::move(backend)) {
  tx_iov_.reserve(64);
  used_.reserve(kQueueSize);
  worker_.spawn("net");
}

VirtioNet::~VirtioNet() {
  reset();
}

std::array<uint8_t, 6> VirtioNet::default_mac(const std::string& seed, unsigned index) {
  // FNV-1a over the seed and the index: stable, and different per device of one VM.
  uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](uint8_t b) {
    h ^= b;
    h *= 0x100000001b3ull;
  };
  for (char c : seed) mix(static_cast<uint8_t>(c));
  for (int i = 0; i < 4; ++i) mix(static_cast<uint8_t>(index >> (8 * i)));
  return {0x52, 0x54, 0x00, static_cast<uint8_t>(h >> 16), static_cast<uint8_t>(h >> 8),
          static_cast<uint8_t>(h)};
}

uint64_t VirtioNet::device_features() const {
  return virtio::feature_bit(virtio::kFVersion1) | virtio::feature_bit(virtio::kFEventIdx) |
         virtio::feature_bit(virtio::kFIndirectDesc) | bit(kMac) | bit(kStatus) |
         bit(kMrgRxbuf) | backend_->offload_features();
}

void VirtioNet::read_config(uint64_t offset, std::span<uint8_t> data) const {
  NetConfig config{};
  std::memcpy(config.mac, options_.mac.data(), sizeof(config.mac));
  config.status = link_up_.load(std::memory_order_acquire) ? kStatusLinkUp : 0;
  config.max_virtqueue_pairs = 1;
  virtio::read_config_window({reinterpret_cast<const uint8_t*>(&config), sizeof(config)}, offset,
                             data);
}

std::optional<virtio::ActivateError> VirtioNet::activate(const virtio::ActivateContext& ctx) {
  if (ctx.queues.size() != 2 || ctx.queue_events.size() != 2) {
    return virtio::ActivateError{"virtio-net: expected 2 queues"};
  }
  mergeable_ = virtio::has_feature(acked_features_, kMrgRxbuf);
  VirtioWorker::Hooks hooks;
  hooks.on_start = [this](EventLoop& loop) {
    ctx_ = &worker_.context();
    loop_ = &loop;
    start(loop);
  };
  hooks.on_queue = [this](uint16_t q) {
    if (q == kRxQueue) {
      receive();
    } else {
      transmit();
    }
  };
  hooks.on_stop = [this] {
    pending_ = false;  // the frame is dropped with the activation
    more_rx_ = more_tx_ = false;
    ctx_ = nullptr;
    loop_ = nullptr;
  };
  try {
    worker_.start(options_.name, ctx, std::move(hooks));
  } catch (const std::exception& e) {
    return virtio::ActivateError{options_.name + ": cannot start: " + e.what()};
  }
  return std::nullopt;
}

void VirtioNet::reset() {
  worker_.stop();
  acked_features_ = 0;
}

void VirtioNet::start(EventLoop& loop) {
  if (auto why = backend_->set_offloads(acked_features_)) {
    spdlog::warn("{}: the {} backend refused the guest's offloads ({}); it gets none", options_.name,
                 backend_->kind(), *why);
    backend_->set_offloads(0);
  }
  pending_ = false;
  interest_ = 0;
  loop.add(more_.fd(), EventLoop::kIn, [this](uint32_t) {
    more_.consume();
    const bool rx = std::exchange(more_rx_, false);
    const bool tx = std::exchange(more_tx_, false);
    if (rx) receive();
    if (tx) transmit();
  });
  if (!lost_) {
    interest_ = EventLoop::kIn;
    loop.add(backend_->fd(), interest_, [this](uint32_t events) { on_backend(events); });
  }
}

void VirtioNet::on_backend(uint32_t events) {
  if (events & EventLoop::kOut) {
    if (backend_->flush()) transmit();  // the backlog drained: take transmit buffers again
  }
  if (events & EventLoop::kIn) receive();
  if (!lost_ && (events & (EventLoop::kHangup | EventLoop::kError)) && !(events & EventLoop::kIn)) {
    backend_->flush();
    backend_lost();
  }
  if (!lost_) update_interest();
}

void VirtioNet::update_interest() {
  if (lost_ || loop_ == nullptr) return;
  // No input while a frame waits for buffers, or while the receive queue is broken (the
  // driver must reset the device first): the worker sleeps instead of spinning on it.
  const bool rx_open = !pending_ && !worker_.broken(kRxQueue);
  const uint32_t want = (rx_open ? EventLoop::kIn : 0) |
                        (backend_->wants_writable() ? EventLoop::kOut : 0);
  if (want == interest_) return;
  loop_->modify(backend_->fd(), want);
  interest_ = want;
}

void VirtioNet::backend_lost() {
  if (lost_) return;
  lost_ = true;
  if (loop_ != nullptr) loop_->remove(backend_->fd());
  pending_ = false;
  // The guest sees its link go down (a config change), as when a cable is pulled.
  link_up_.store(false, std::memory_order_release);
  generation_.fetch_add(1, std::memory_order_acq_rel);
  if (ctx_ != nullptr) ctx_->interrupt.signal(virtio::kInterruptConfigChange);
  spdlog::warn("{}: the {} backend is gone ({}); the link is down, frames are dropped (the VM "
               "goes on)",
               options_.name, backend_->kind(), backend_->error());
}

void VirtioNet::receive() {
  if (lost_ || ctx_ == nullptr || worker_.broken(kRxQueue)) return;
  virtio::Queue& queue = ctx_->queues[kRxQueue];
  uint32_t n = 0;
  for (; n < kBudget; ++n) {
    if (!pending_) {
      const NetBackend::RxStatus got = backend_->receive(frame_);
      if (got == NetBackend::RxStatus::kNone) break;
      if (got == NetBackend::RxStatus::kClosed) {
        backend_lost();
        break;
      }
      pending_ = true;
    }
    const Placed placed = place(frame_);
    if (placed == Placed::kBroken) return;
    if (placed == Placed::kDone) {
      pending_ = false;
      continue;
    }
    // No room: wait for the driver's buffers (its notification), unless some came meanwhile.
    auto more = queue.enable_notification(ctx_->mem);
    if (!more) {
      worker_.mark_broken(kRxQueue, virtio::to_string(more.error()));
      return;
    }
    if (!*more) break;
  }
  if (n == kBudget) {
    more_rx_ = true;
    more_.signal();
  }
  notify_rx();
  update_interest();
}

VirtioNet::Placed VirtioNet::place(const NetBackend::Frame& frame) {
  virtio::Queue& queue = ctx_->queues[kRxQueue];
  const virtio::GuestMemory& mem = ctx_->mem;
  const uint64_t needed = sizeof(VirtioNetHdr) + frame.data.size();
  std::vector<virtio::DescriptorChain>& chains = rx_chains_;
  chains.clear();
  uint64_t capacity = 0;
  auto give_back = [&] {
    for (auto it = chains.rbegin(); it != chains.rend(); ++it) {
      (void)queue.undo_pop(it->head_index());  // popped here, in this order: cannot fail
    }
    chains.clear();
  };
  while (capacity < needed) {
    auto popped = queue.pop(mem);
    if (!popped) {
      worker_.mark_broken(kRxQueue, virtio::to_string(popped.error()));
      return Placed::kBroken;
    }
    if (!popped->has_value()) {
      give_back();
      return Placed::kNoRoom;
    }
    virtio::DescriptorChain chain = std::move(**popped);
    if (!chain.must_be_used()) {
      worker_.mark_broken(kRxQueue, virtio::to_string(chain.error().value_or(virtio::Error::kInvalidHead)));
      return Placed::kBroken;
    }
    if (!chain.is_valid() || chain.writable_bytes() == 0 || chain.readable_bytes() != 0) {
      // Not a receive buffer: it goes back empty. Buffers taken before it cannot be given
      // back past it, so they go back empty too (the guest's driver made this mess).
      used_.clear();
      for (const auto& c : chains) used_.push_back({c.head_index(), 0});
      used_.push_back({chain.head_index(), 0});
      chains.clear();
      capacity = 0;
      if (auto r = queue.add_used_many(mem, used_); !r) {
        worker_.mark_broken(kRxQueue, virtio::to_string(r.error()));
        return Placed::kBroken;
      }
      rx_used_ = true;
      continue;
    }
    capacity += chain.writable_bytes();
    chains.push_back(std::move(chain));
    if (!mergeable_ || chains.size() == queue.size()) break;
  }
  if (capacity < needed) {
    // One buffer without MRG_RXBUF, or every buffer the ring holds, and still too small:
    // this frame can never be placed. The buffers stay the driver's.
    give_back();
    counters_.rx_dropped.fetch_add(1, std::memory_order_relaxed);
    return Placed::kDone;
  }
  VirtioNetHdr hdr = frame.hdr;
  hdr.num_buffers = static_cast<uint16_t>(chains.size());
  if (!virtio::has_feature(acked_features_, kGuestCsum)) {
    hdr.flags = 0;  // the backend has no offloads to give this guest
    hdr.gso_type = kGsoNone;
  }
  SpanPair bytes({reinterpret_cast<const uint8_t*>(&hdr), sizeof(hdr)}, frame.data);
  used_.clear();
  uint64_t left = needed;
  for (const auto& chain : chains) {
    virtio::ChainWriter writer(mem, chain);
    const uint64_t room = std::min<uint64_t>(left, writer.remaining());
    bytes.write_to(writer, room);  // a buffer outside guest RAM ends short: its used length says
    used_.push_back({chain.head_index(), static_cast<uint32_t>(writer.bytes_written())});
    left -= room;
  }
  chains.clear();
  if (auto r = queue.add_used_many(mem, used_); !r) {
    worker_.mark_broken(kRxQueue, virtio::to_string(r.error()));
    return Placed::kBroken;
  }
  rx_used_ = true;
  counters_.rx_frames.fetch_add(1, std::memory_order_relaxed);
  counters_.rx_bytes.fetch_add(frame.data.size(), std::memory_order_relaxed);
  return Placed::kDone;
}

void VirtioNet::notify_rx() {
  if (!rx_used_ || ctx_ == nullptr) return;
  rx_used_ = false;
  auto needed = ctx_->queues[kRxQueue].needs_notification(ctx_->mem);
  if (!needed) {
    worker_.mark_broken(kRxQueue, virtio::to_string(needed.error()));
    return;
  }
  if (*needed) ctx_->interrupt.signal(virtio::kInterruptUsedBuffer);
}

void VirtioNet::transmit() {
  if (ctx_ == nullptr) return;
  const bool exhausted = worker_.serve_while(
      kTxQueue, [this] { return lost_ || backend_->can_send(); },
      [this](const virtio::DescriptorChain& chain) { return send_chain(chain); }, kBudget);
  if (exhausted) {
    more_tx_ = true;
    more_.signal();
  }
  update_interest();
}

uint32_t VirtioNet::send_chain(const virtio::DescriptorChain& chain) {
  const uint32_t readable = chain.readable_bytes();
  auto drop = [this] {
    counters_.tx_dropped.fetch_add(1, std::memory_order_relaxed);
    return 0u;
  };
  if (lost_) return drop();
  if (readable < sizeof(VirtioNetHdr) + kEthHeader ||
      readable > sizeof(VirtioNetHdr) + NetBackend::kMaxFrame) {
    return drop();
  }
  // The header is copied and checked once; the frame goes to the backend as pieces of guest
  // memory, which the kernel reads (once) in writev/sendmsg: no copy in the VMM. A guest that
  // rewrites its frame meanwhile only garbles its own frame.
  virtio::ChainReader reader(ctx_->mem, chain);
  auto read_hdr = reader.read_obj<VirtioNetHdr>();
  if (!read_hdr) return drop();
  const VirtioNetHdr hdr = *read_hdr;
  // Offloads the driver did not negotiate are not the backend's to do (virtio 1.2 §5.1.6.2).
  const uint8_t gso = hdr.gso_type & static_cast<uint8_t>(~kGsoEcn);
  if (!virtio::has_feature(acked_features_, kCsum)) {
    if (hdr.flags & kHdrNeedsCsum || gso != kGsoNone) return drop();
  } else if ((gso == kGsoTcpV4 && !virtio::has_feature(acked_features_, kHostTso4)) ||
             (gso == kGsoTcpV6 && !virtio::has_feature(acked_features_, kHostTso6)) ||
             (gso != kGsoNone && gso != kGsoTcpV4 && gso != kGsoTcpV6) || (hdr.gso_type & kGsoEcn)) {
    return drop();
  }
  const size_t frame_bytes = readable - sizeof(hdr);
  tx_iov_.clear();
  uint64_t skip = sizeof(hdr);
  for (const virtio::Descriptor& d : chain.readable()) {
    uint64_t addr = d.addr;
    uint64_t len = d.len;
    const uint64_t s = std::min(skip, len);
    addr += s;
    len -= s;
    skip -= s;
    if (len == 0) continue;
    uint8_t* host = ctx_->mem.translate(addr, len);
    if (host == nullptr) return drop();  // outside guest RAM
    tx_iov_.push_back({host, static_cast<size_t>(len)});
  }
  NetBackend::TxStatus status;
  if (tx_iov_.size() <= NetBackend::kMaxFramePieces) {
    status = backend_->send_iov(hdr, tx_iov_, frame_bytes);
  } else {
    // A frame in more pieces than a writev takes (a driver's odd chain): copied, once.
    tx_buffer_.resize(frame_bytes);
    if (!reader.read(tx_buffer_)) return drop();
    status = backend_->send(hdr, tx_buffer_);
  }
  switch (status) {
    case NetBackend::TxStatus::kSent:
      counters_.tx_frames.fetch_add(1, std::memory_order_relaxed);
      counters_.tx_bytes.fetch_add(frame_bytes, std::memory_order_relaxed);
      break;
    case NetBackend::TxStatus::kDropped:
      drop();
      break;
    case NetBackend::TxStatus::kClosed:
      drop();
      backend_lost();
      break;
  }
  return 0;
}

}  // namespace minivmm::devices
