#include "devices/virtio_rng.h"

#include <sys/random.h>

#include <algorithm>
#include <array>
#include <cerrno>

#include "virtio/spec.h"

namespace minivmm::devices {

bool VirtioRng::host_entropy(std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n = ::getrandom(out.data() + done, out.size() - done, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

uint64_t VirtioRng::device_features() const {
  return virtio::feature_bit(virtio::kFVersion1) | virtio::feature_bit(virtio::kFEventIdx) |
         virtio::feature_bit(virtio::kFIndirectDesc);
}

void VirtioRng::read_config(uint64_t, std::span<uint8_t> data) const {
  std::fill(data.begin(), data.end(), uint8_t{0});  // §5.4.4: no configuration
}

std::optional<virtio::ActivateError> VirtioRng::activate(const virtio::ActivateContext& ctx) {
  if (ctx.queues.size() != 1 || ctx.queue_events.size() != 1) {
    return virtio::ActivateError{"virtio-rng: expected 1 queue"};
  }
  const virtio::GuestMemory& mem = ctx.mem;
  VirtioWorker::Hooks hooks;
  hooks.on_queue = [this, &mem](uint16_t q) {
    worker_.serve(q, [this, &mem](const virtio::DescriptorChain& c) { return fill(mem, c); });
  };
  try {
    worker_.start("virtio-rng", ctx, std::move(hooks));
  } catch (const std::exception& e) {
    return virtio::ActivateError{std::string("virtio-rng: cannot start its worker: ") + e.what()};
  }
  return std::nullopt;
}

void VirtioRng::reset() {
  worker_.stop();
  acked_features_ = 0;
}

uint32_t VirtioRng::fill(const virtio::GuestMemory& mem, const virtio::DescriptorChain& chain) {
  virtio::ChainWriter writer(mem, chain);
  std::array<uint8_t, 4096> buf;
  uint64_t left = std::min<uint64_t>(writer.remaining(), kMaxBytesPerRequest);
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    const std::span<uint8_t> part(buf.data(), n);
    if (!source_(part) || !writer.write(part)) break;
    left -= n;
  }
  const auto written = static_cast<uint32_t>(writer.bytes_written());
  served_.fetch_add(written, std::memory_order_relaxed);
  return written;
}

}  // namespace minivmm::devices
