// Shared setup for the virtio-mmio transport tests: fake RAM, a DummyDevice, a counting
// IrqLine, the transport, and driver-side register helpers. Single-threaded.
#pragma once

#include <cstdint>
#include <cstring>
#include <unistd.h>
#include <memory>
#include <span>

#include "mmio/virtio_mmio.h"
#include "tests/mmio/dummy_device.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

namespace minivmm::test {

inline constexpr uint32_t kAckDriver = virtio::kStatusAcknowledge | virtio::kStatusDriver;
inline constexpr uint32_t kFeaturesOk = kAckDriver | virtio::kStatusFeaturesOk;
inline constexpr uint32_t kDriverOk = kFeaturesOk | virtio::kStatusDriverOk;
inline constexpr uint64_t kVersion1 = virtio::feature_bit(virtio::kFVersion1);

struct TransportFixture {
  FakeGuestMemory guest{1 << 20};
  std::shared_ptr<DummyDevice> device = std::make_shared<DummyDevice>();
  CountingIrq irq;
  mmio::VirtioMmioTransport transport{device, guest.mem(), irq};

  uint32_t rd(uint64_t offset) {
    uint32_t v = 0xdeadbeef;
    transport.read(offset, std::span(reinterpret_cast<uint8_t*>(&v), sizeof(v)));
    return v;
  }
  void wr(uint64_t offset, uint32_t value) {
    transport.write(offset, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(value)));
  }
  // Reads (and resets) the notification count of queue `q`'s event, as a device would.
  uint64_t take_event(size_t q) {
    uint64_t n = 0;
    return ::read(transport.queue_event_fd(q), &n, sizeof(n)) == sizeof(n) ? n : 0;
  }
  uint64_t device_features() {
    wr(mmio::kRegDeviceFeaturesSel, 1);
    const uint64_t high = rd(mmio::kRegDeviceFeatures);
    wr(mmio::kRegDeviceFeaturesSel, 0);
    return high << 32 | rd(mmio::kRegDeviceFeatures);
  }
  void write_driver_features(uint64_t features) {
    wr(mmio::kRegDriverFeaturesSel, 0);
    wr(mmio::kRegDriverFeatures, static_cast<uint32_t>(features));
    wr(mmio::kRegDriverFeaturesSel, 1);
    wr(mmio::kRegDriverFeatures, static_cast<uint32_t>(features >> 32));
  }
  // virtio 1.2 §3.1.1 steps 1-6; returns the status read back.
  uint32_t negotiate(uint64_t features = kVersion1) {
    wr(mmio::kRegStatus, 0);
    wr(mmio::kRegStatus, virtio::kStatusAcknowledge);
    wr(mmio::kRegStatus, kAckDriver);
    write_driver_features(features);
    wr(mmio::kRegStatus, kFeaturesOk);
    return rd(mmio::kRegStatus);
  }
  void write_addr(uint64_t low_reg, uint64_t addr) {
    wr(low_reg, static_cast<uint32_t>(addr));
    wr(low_reg + 4, static_cast<uint32_t>(addr >> 32));
  }
  // virtio 1.2 §4.2.3.2: select, check, size, addresses, ready.
  void setup_queue(uint32_t index, uint16_t size, uint64_t desc, uint64_t avail, uint64_t used) {
    wr(mmio::kRegQueueSel, index);
    wr(mmio::kRegQueueNum, size);
    write_addr(mmio::kRegQueueDescLow, desc);
    write_addr(mmio::kRegQueueDriverLow, avail);
    write_addr(mmio::kRegQueueDeviceLow, used);
    wr(mmio::kRegQueueReady, 1);
  }
  void setup_queue(uint32_t index, const DriverQueue& dq) {
    setup_queue(index, dq.size(), dq.desc_addr(), dq.avail_addr(), dq.used_addr());
  }
};

}  // namespace minivmm::test
