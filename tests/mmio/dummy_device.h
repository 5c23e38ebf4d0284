// Test doubles for the mmio tests and the transport fuzzer: a VirtioDevice that records
// what the transport does to it, and an IrqLine that counts triggers. Single-threaded
// unless a test says otherwise (the counters are atomics for the thread tests).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "virtio/interrupt.h"
#include "virtio/spec.h"
#include "virtio/virtio_device.h"

namespace minivmm::test {

class CountingIrq final : public virtio::IrqLine {
 public:
  void trigger() override { count.fetch_add(1); }
  std::atomic<uint64_t> count{0};
};

class DummyDevice final : public virtio::VirtioDevice {
 public:
  static constexpr uint32_t kType = virtio::kDeviceIdRng;
  static constexpr uint64_t kFeatures = virtio::feature_bit(virtio::kFVersion1) |
                                        virtio::feature_bit(virtio::kFEventIdx) |
                                        virtio::feature_bit(virtio::kFIndirectDesc) |
                                        virtio::feature_bit(3) | virtio::feature_bit(50);
  static constexpr size_t kConfigSize = 16;

  uint32_t device_type() const override { return kType; }
  std::span<const uint16_t> queue_max_sizes() const override { return max_sizes; }
  uint64_t device_features() const override { return kFeatures; }
  void set_acked_features(uint64_t features) override {
    acked = features;
    ++set_acked_calls;
  }
  uint64_t acked_features() const override { return acked; }

  void read_config(uint64_t offset, std::span<uint8_t> data) const override {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i < config.size() ? config[offset + i] : 0;
    }
  }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override {
    ++config_writes;
    for (size_t i = 0; i < data.size() && offset + i < config.size(); ++i) {
      config[offset + i] = data[i];
    }
  }
  uint32_t config_generation() const override { return generation; }

  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override {
    ++activate_calls;
    if (fail_activate) return virtio::ActivateError{"dummy refuses"};
    queues = ctx.queues;
    events = ctx.queue_events;
    mem = &ctx.mem;
    interrupt = &ctx.interrupt;
    if (drain_on_activate) drain();
    return std::nullopt;
  }
  // What a device's worker does when its queue events fire: records each notified queue
  // in `notified` and, with drain_on_activate, drains. Tests call it after QueueNotify.
  void service() {
    for (size_t i = 0; i < events.size(); ++i) {
      if (events[i].consume() == 0) continue;
      notified.push_back(static_cast<uint16_t>(i));
      if (drain_on_activate) drain();
    }
  }
  void reset() override {
    ++reset_calls;
    acked = 0;
    queues = {};
    events = {};
    mem = nullptr;
    interrupt = nullptr;
  }

  // Pops every available chain from every ready queue, writes a byte into each writable
  // buffer, returns the chains and signals. Broken queues and unusable heads are counted
  // in `broken` (a real device would call set_needs_reset on its transport).
  void drain() {
    if (mem == nullptr) return;
    for (virtio::Queue& q : queues) {
      if (!q.ready()) continue;
      auto it = q.iter(*mem);
      if (!it) {
        ++broken;
        continue;
      }
      while (auto chain = it->next()) {
        ++chains;
        for (const virtio::Descriptor& d : chain->writable()) {
          if (d.len > 0) (void)mem->write_obj<uint8_t>(d.addr, 0xab);
        }
        if (chain->must_be_used()) {
          (void)q.add_used(*mem, chain->head_index(), chain->is_valid() ? 1 : 0);
        } else {
          ++broken;
        }
      }
      auto notify = q.needs_notification(*mem);
      if (notify && *notify && interrupt != nullptr)
        interrupt->signal(virtio::kInterruptUsedBuffer);
    }
  }

  std::array<uint16_t, 2> max_sizes{16, 8};
  std::array<uint8_t, kConfigSize> config{};
  uint32_t generation = 0;
  std::span<const virtio::EventFd> events;  // while active
  bool fail_activate = false;
  bool drain_on_activate = false;

  uint64_t acked = 0;
  int set_acked_calls = 0;
  int activate_calls = 0;
  int reset_calls = 0;
  int config_writes = 0;
  uint64_t chains = 0;
  uint64_t broken = 0;
  std::vector<uint16_t> notified;
  std::span<virtio::Queue> queues;
  const virtio::GuestMemory* mem = nullptr;
  virtio::VirtioInterrupt* interrupt = nullptr;
};

}  // namespace minivmm::test
