#include "devices/virtio_fs.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "virtio/spec.h"

namespace minivmm::devices {
namespace {

// The ring features a backend may offer the guest through us: the layout is the backend's
// business, the transport only checks that the split ring is used. Device-specific bits
// (VIRTIO_FS_F_NOTIFICATION needs a queue we do not have) and vhost-user's own bit 30 are
// not passed on.
constexpr uint64_t kPassedFeatures = virtio::feature_bit(virtio::kFVersion1) |
                                     virtio::feature_bit(virtio::kFIndirectDesc) |
                                     virtio::feature_bit(virtio::kFEventIdx);

// virtio 1.2 §5.11.4.
struct FsConfig {
  char tag[VirtioFs::kTagSize];
  uint32_t num_request_queues;  // le32
};
static_assert(sizeof(FsConfig) == 40);

// Split-ring sizes (virtio 1.2 §2.7): what the backend will touch of each part.
uint64_t desc_bytes(uint16_t n) { return 16ull * n; }
uint64_t avail_bytes(uint16_t n) { return 6ull + 2ull * n; }
uint64_t used_bytes(uint16_t n) { return 6ull + 8ull * n; }

}  // namespace

VirtioFs::VirtioFs(Options options, vmm::UniqueFd socket)
    : options_(std::move(options)), frontend_(std::move(socket), options_.reply_timeout) {
  if (options_.tag.empty() || options_.tag.size() > kTagSize) {
    throw std::invalid_argument("tag '" + options_.tag + "' must be 1 to " +
                                std::to_string(kTagSize) + " bytes");
  }
  const uint32_t queues = 1 + kNumRequestQueues;
  const uint64_t wanted_protocol = (uint64_t{1} << vhost_user::kProtocolFReplyAck) |
                                   (uint64_t{1} << vhost_user::kProtocolFMq);
  if (auto s = frontend_.handshake(wanted_protocol, queues); !s) {
    throw std::runtime_error("vhost-user handshake: " + s.error());
  }
  const uint64_t offered = frontend_.backend_features();
  if (!(offered & virtio::feature_bit(virtio::kFVersion1))) {
    throw std::runtime_error("the vhost-user backend does not offer VIRTIO_F_VERSION_1");
  }
  device_features_ = offered & kPassedFeatures;
  for (uint32_t q = 0; q < queues; ++q) {
    calls_.emplace_back();
    errs_.emplace_back();
  }
  started_.assign(queues, false);
  worker_.spawn("vhost");
}

VirtioFs::~VirtioFs() {
  reset();
}

void VirtioFs::read_config(uint64_t offset, std::span<uint8_t> data) const {
  FsConfig config{};
  std::memcpy(config.tag, options_.tag.data(), options_.tag.size());
  config.num_request_queues = kNumRequestQueues;
  virtio::read_config_window({reinterpret_cast<const uint8_t*>(&config), sizeof(config)}, offset,
                             data);
}

std::optional<virtio::ActivateError> VirtioFs::activate(const virtio::ActivateContext& ctx) {
  if (ctx.queues.size() != calls_.size()) {
    return virtio::ActivateError{"virtio-fs: expected " + std::to_string(calls_.size()) +
                                 " queues"};
  }
  if (gone_.load(std::memory_order_acquire)) {
    return virtio::ActivateError{"the vhost-user backend is gone; the share cannot be used"};
  }
  interrupt_.store(&ctx.interrupt, std::memory_order_release);
  VirtioWorker::Hooks hooks;
  hooks.watch_queues = false;  // the backend reads the kicks
  hooks.on_start = [this, &ctx](EventLoop& loop) { start_rings(ctx, loop); };
  hooks.on_stop = [this] { stop_rings(); };
  try {
    worker_.start(options_.name, ctx, std::move(hooks));
  } catch (const std::exception& e) {
    return virtio::ActivateError{std::string("vhost-user backend: ") + e.what()};
  }
  return std::nullopt;
}

void VirtioFs::reset() {
  worker_.stop();
  acked_features_ = 0;
}

void VirtioFs::start_rings(const virtio::ActivateContext& ctx, EventLoop& loop) {
  auto check = [this](VhostUserFrontend::Status s) {
    if (!s) {
      stop_rings();
      throw std::runtime_error(s.error());
    }
  };
  check(frontend_.set_features(acked_features_));
  std::vector<VhostUserMemory> regions;
  for (const virtio::MemoryRegion& r : ctx.mem.regions()) {
    regions.push_back({r.guest_base, r.size, reinterpret_cast<uint64_t>(r.host), r.fd,
                       r.fd_offset});
  }
  check(frontend_.set_mem_table(regions));
  virtio::VirtioInterrupt* irq = &ctx.interrupt;
  for (uint32_t q = 0; q < ctx.queues.size(); ++q) {
    calls_[q].consume();  // left from an earlier activation
    errs_[q].consume();
    const virtio::Queue& queue = ctx.queues[q];
    if (!queue.ready()) continue;
    const uint16_t n = queue.size();
    // The transport checked the rings against guest memory at activation.
    uint8_t* desc = ctx.mem.translate(queue.desc_table(), desc_bytes(n));
    uint8_t* avail = ctx.mem.translate(queue.avail_ring(), avail_bytes(n));
    uint8_t* used = ctx.mem.translate(queue.used_ring(), used_bytes(n));
    if (desc == nullptr || avail == nullptr || used == nullptr) {
      check(std::string("queue " + std::to_string(q) + " lies outside guest memory"));
    }
    const VhostUserVring ring{q,
                              n,
                              reinterpret_cast<uint64_t>(desc),
                              reinterpret_cast<uint64_t>(avail),
                              reinterpret_cast<uint64_t>(used),
                              0,  // a fresh ring after reset: the driver starts at 0
                              ctx.queue_events[q].fd(),
                              calls_[q].fd(),
                              errs_[q].fd()};
    started_[q] = true;  // from here GET_VRING_BASE must stop it, even if a step fails
    check(frontend_.set_vring(ring));
    check(frontend_.set_vring_enable(q, true));
    loop.add(calls_[q].fd(), EventLoop::kIn, [this, q, irq](uint32_t) {
      calls_[q].consume();
      irq->signal(virtio::kInterruptUsedBuffer);
    });
    loop.add(errs_[q].fd(), EventLoop::kIn, [this, q](uint32_t) {
      errs_[q].consume();
      lost("the vhost-user backend reported queue " + std::to_string(q) + " broken");
    });
  }
  loop.add(frontend_.fd(), 0, [this, &loop](uint32_t events) {
    if (!(events & (EventLoop::kHangup | EventLoop::kError))) return;
    loop.remove(frontend_.fd());
    lost("the vhost-user backend closed its connection", true);
  });
  // Requests the driver queued before DRIVER_OK reach the backend without waiting for the
  // driver's next notification.
  for (uint32_t q = 0; q < ctx.queues.size(); ++q) {
    if (started_[q]) ctx.queue_events[q].signal();
  }
}

void VirtioFs::stop_rings() {
  for (uint32_t q = 0; q < started_.size(); ++q) {
    if (!started_[q]) continue;
    started_[q] = false;
    if (gone_.load(std::memory_order_acquire) || frontend_.broken()) continue;
    // Disabling first is what QEMU does; GET_VRING_BASE is what stops virtiofsd's ring.
    (void)frontend_.set_vring_enable(q, false);
    if (auto base = frontend_.get_vring_base(q); !base) {
      lost("stopping queue " + std::to_string(q) + ": " + base.error());
    }
  }
}

void VirtioFs::lost(const std::string& why, bool hangup) {
  gone_.store(true, std::memory_order_release);
  // Minivmm's own daemon hanging up: the VMM reports its exit, with the status, in one line.
  if (!logged_.exchange(true) && !(hangup && options_.own_daemon)) {
    spdlog::warn("{}: {}; the device needs a reset and is not used again", options_.name, why);
  } else {
    spdlog::debug("{}: {}", options_.name, why);
  }
  ask_for_reset();
}

void VirtioFs::backend_gone() {
  logged_.store(true);  // the VMM's own line says it
  gone_.store(true, std::memory_order_release);
  ask_for_reset();
}

void VirtioFs::ask_for_reset() {
  if (virtio::VirtioInterrupt* irq = interrupt_.load(std::memory_order_acquire)) {
    irq->set_needs_reset();
  }
}

}  // namespace minivmm::devices
