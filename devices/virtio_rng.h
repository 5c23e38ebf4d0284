// VirtioRng: the entropy device (virtio 1.2 §5.4). One queue of device-writable buffers,
// which the device fills from the host's getrandom(). No feature bits of its own, no
// config space. A request gets at most kMaxBytesPerRequest bytes whatever length the driver
// declared (the used length says how many), copied through a fixed host buffer, so that a
// guest can neither make the host allocate nor keep the worker busy for long with one chain.
//
// The worked example of docs/architecture.md "Adding a device": one file pair, one attach
// line in Vm, one option entry.
//
// Threads: the VirtioDevice methods on the transport's thread; fill() on the worker (thread
// class "rng") or, in tests and the fuzzer, on the caller's.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <span>

#include "devices/virtio_worker.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

class VirtioRng final : public virtio::VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;
  // Fills the span with entropy; false when none can be had (the request then gets what
  // was written before).
  using Source = std::function<bool(std::span<uint8_t>)>;
  static bool host_entropy(std::span<uint8_t> out);  // getrandom(2)

  explicit VirtioRng(Source source = host_entropy) : source_(std::move(source)) {
    worker_.spawn("rng");
  }
  ~VirtioRng() override { reset(); }

  uint32_t device_type() const override { return virtio::kDeviceIdRng; }
  std::span<const uint16_t> queue_max_sizes() const override { return kQueueSizes; }
  uint64_t device_features() const override;
  void set_acked_features(uint64_t features) override { acked_features_ = features; }
  uint64_t acked_features() const override { return acked_features_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override;
  void reset() override;

  // The request handler: entropy into the chain's device-writable buffers, up to
  // kMaxBytesPerRequest; returns the bytes written. A buffer outside guest RAM ends the
  // request there.
  uint32_t fill(const virtio::GuestMemory& mem, const virtio::DescriptorChain& chain);
  uint64_t bytes_served() const { return served_.load(std::memory_order_relaxed); }

 private:
  static constexpr uint16_t kQueueSizes[1] = {kQueueSize};
  Source source_;
  uint64_t acked_features_ = 0;
  std::atomic<uint64_t> served_{0};
  VirtioWorker worker_;  // last: stopped first
};

}  // namespace minivmm::devices
