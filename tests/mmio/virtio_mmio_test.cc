// Register file, feature negotiation, status state machine, interrupts and config space
// of the virtio-mmio transport (virtio 1.2 §4.2.2, §2.1, §3.1.1).
#include <array>
#include <catch2/catch.hpp>

#include "tests/mmio/transport_fixture.h"

namespace minivmm::test {
namespace {

using mmio::VirtioMmioTransport;
using namespace mmio;  // kReg* offsets

TEST_CASE_METHOD(TransportFixture, "identification registers", "[virtio_mmio]") {
  CHECK(rd(kRegMagicValue) == 0x74726976);
  CHECK(rd(kRegVersion) == 2);
  CHECK(rd(kRegDeviceId) == virtio::kDeviceIdRng);
  CHECK(rd(kRegVendorId) == 0x4d564d4d);
  CHECK(rd(kRegStatus) == 0);
  CHECK(rd(kRegInterruptStatus) == 0);
  CHECK(rd(kRegConfigGeneration) == 0);
  CHECK(rd(kRegShmLenLow) == 0xffffffff);
  CHECK(rd(kRegShmLenHigh) == 0xffffffff);
  CHECK(rd(kRegShmBaseLow) == 0);
  // Write-only and unknown registers read 0.
  CHECK(rd(kRegQueueNotify) == 0);
  CHECK(rd(kRegQueueDescLow) == 0);
  CHECK(rd(kRegDriverFeatures) == 0);
  CHECK(rd(0x0c0) == 0);
  CHECK(rd(0x0f8) == 0);
  // Read-only registers ignore writes.
  wr(kRegMagicValue, 0);
  wr(kRegDeviceId, 7);
  CHECK(rd(kRegMagicValue) == 0x74726976);
  CHECK(rd(kRegDeviceId) == virtio::kDeviceIdRng);
  CHECK(VirtioMmioTransport::kQueueNotifyOffset == 0x50);
  CHECK(VirtioMmioTransport::kDeviceWindowSize == 0x1000);
}

TEST_CASE_METHOD(TransportFixture, "device features in two pages", "[virtio_mmio]") {
  wr(kRegDeviceFeaturesSel, 0);
  CHECK(rd(kRegDeviceFeatures) == static_cast<uint32_t>(DummyDevice::kFeatures));
  wr(kRegDeviceFeaturesSel, 1);
  CHECK(rd(kRegDeviceFeatures) == static_cast<uint32_t>(DummyDevice::kFeatures >> 32));
  wr(kRegDeviceFeaturesSel, 2);
  CHECK(rd(kRegDeviceFeatures) == 0);
  wr(kRegDeviceFeaturesSel, 0xffffffff);
  CHECK(rd(kRegDeviceFeatures) == 0);
  CHECK(device_features() == DummyDevice::kFeatures);
}

TEST_CASE_METHOD(TransportFixture, "driver features are acked at FEATURES_OK", "[virtio_mmio]") {
  const uint64_t wanted = kVersion1 | virtio::feature_bit(3) | virtio::feature_bit(50);
  CHECK(negotiate(wanted) == kFeaturesOk);
  CHECK(device->set_acked_calls == 1);
  CHECK(device->acked == wanted);
  // Features are frozen after FEATURES_OK.
  write_driver_features(kVersion1);
  CHECK(device->acked == wanted);
  CHECK(device->set_acked_calls == 1);
}

TEST_CASE_METHOD(TransportFixture, "driver feature pages beyond 1 are ignored", "[virtio_mmio]") {
  wr(kRegStatus, virtio::kStatusAcknowledge);
  wr(kRegStatus, kAckDriver);
  write_driver_features(kVersion1);
  wr(kRegDriverFeaturesSel, 2);
  wr(kRegDriverFeatures, 0xffffffff);
  wr(kRegStatus, kFeaturesOk);
  CHECK(rd(kRegStatus) == kFeaturesOk);
  CHECK(device->acked == kVersion1);
}

TEST_CASE_METHOD(TransportFixture, "driver features before DRIVER are ignored", "[virtio_mmio]") {
  write_driver_features(kVersion1 | virtio::feature_bit(3));
  wr(kRegStatus, virtio::kStatusAcknowledge);
  write_driver_features(kVersion1 | virtio::feature_bit(3));
  wr(kRegStatus, kAckDriver);
  write_driver_features(kVersion1);
  wr(kRegStatus, kFeaturesOk);
  CHECK(device->acked == kVersion1);
}

TEST_CASE_METHOD(TransportFixture, "FEATURES_OK is refused", "[virtio_mmio]") {
  SECTION("for a feature the device did not offer") {
    CHECK(negotiate(kVersion1 | virtio::feature_bit(5)) == kAckDriver);
  }
  SECTION("for an unoffered feature in the high page") {
    CHECK(negotiate(kVersion1 | virtio::feature_bit(63)) == kAckDriver);
  }
  SECTION("without VIRTIO_F_VERSION_1") {
    CHECK(negotiate(virtio::feature_bit(3)) == kAckDriver);
  }
  SECTION("for no features at all") {
    CHECK(negotiate(0) == kAckDriver);
  }
  CHECK(device->set_acked_calls == 0);
  // DRIVER_OK cannot follow.
  wr(kRegStatus, kAckDriver | virtio::kStatusFeaturesOk | virtio::kStatusDriverOk);
  CHECK(rd(kRegStatus) == kAckDriver);
  CHECK(device->activate_calls == 0);
  // The driver may fix its features and retry.
  write_driver_features(kVersion1);
  wr(kRegStatus, kFeaturesOk);
  CHECK(rd(kRegStatus) == kFeaturesOk);
  CHECK(device->acked == kVersion1);
}

TEST_CASE_METHOD(TransportFixture, "status bits are set in order only", "[virtio_mmio]") {
  SECTION("skipping ACKNOWLEDGE") {
    wr(kRegStatus, virtio::kStatusDriver);
    CHECK(rd(kRegStatus) == 0);
    CHECK(transport.ignored_accesses() == 1);
  }
  SECTION("FEATURES_OK without DRIVER") {
    wr(kRegStatus, virtio::kStatusAcknowledge);
    wr(kRegStatus, virtio::kStatusAcknowledge | virtio::kStatusFeaturesOk);
    CHECK(rd(kRegStatus) == virtio::kStatusAcknowledge);
  }
  SECTION("DRIVER_OK without FEATURES_OK") {
    wr(kRegStatus, virtio::kStatusAcknowledge);
    wr(kRegStatus, kAckDriver);
    wr(kRegStatus, kAckDriver | virtio::kStatusDriverOk);
    CHECK(rd(kRegStatus) == kAckDriver);
    CHECK(device->activate_calls == 0);
  }
  SECTION("clearing a bit") {
    wr(kRegStatus, virtio::kStatusAcknowledge);
    wr(kRegStatus, kAckDriver);
    wr(kRegStatus, virtio::kStatusAcknowledge);
    CHECK(rd(kRegStatus) == kAckDriver);
  }
  SECTION("unknown bits") {
    wr(kRegStatus, virtio::kStatusAcknowledge | 0x100);
    CHECK(rd(kRegStatus) == 0);
    wr(kRegStatus, virtio::kStatusAcknowledge | 0x10);
    CHECK(rd(kRegStatus) == 0);
  }
  SECTION("several steps in one write") {
    write_driver_features(kVersion1);  // ignored: DRIVER is not set yet
    wr(kRegStatus, kAckDriver);
    CHECK(rd(kRegStatus) == kAckDriver);
    write_driver_features(kVersion1);
    wr(kRegStatus, kDriverOk);
    CHECK(rd(kRegStatus) == kDriverOk);
    CHECK(device->activate_calls == 1);
  }
  SECTION("rewriting the same value is harmless") {
    CHECK(negotiate() == kFeaturesOk);
    wr(kRegStatus, kFeaturesOk);
    CHECK(rd(kRegStatus) == kFeaturesOk);
    CHECK(device->set_acked_calls == 1);
    CHECK(transport.ignored_accesses() == 0);
  }
}

TEST_CASE_METHOD(TransportFixture, "FAILED can be set at any time and sticks", "[virtio_mmio]") {
  wr(kRegStatus, virtio::kStatusAcknowledge);
  wr(kRegStatus, virtio::kStatusAcknowledge | virtio::kStatusFailed);
  CHECK(rd(kRegStatus) == (virtio::kStatusAcknowledge | virtio::kStatusFailed));
  wr(kRegStatus, kAckDriver | virtio::kStatusFailed);
  CHECK(rd(kRegStatus) == (virtio::kStatusAcknowledge | virtio::kStatusFailed));
  wr(kRegStatus, 0);
  CHECK(rd(kRegStatus) == 0);
  CHECK(device->reset_calls == 1);
}

TEST_CASE_METHOD(TransportFixture, "interrupt status is set by signal and cleared by ACK",
                 "[virtio_mmio]") {
  virtio::VirtioInterrupt& interrupt = transport;
  interrupt.signal(virtio::kInterruptUsedBuffer);
  CHECK(irq.count == 1);
  CHECK(rd(kRegInterruptStatus) == virtio::kInterruptUsedBuffer);
  interrupt.signal(virtio::kInterruptConfigChange);
  CHECK(irq.count == 2);
  CHECK(rd(kRegInterruptStatus) == 3);
  wr(kRegInterruptAck, virtio::kInterruptUsedBuffer);
  CHECK(rd(kRegInterruptStatus) == virtio::kInterruptConfigChange);
  wr(kRegInterruptAck, 0xffffffff);
  CHECK(rd(kRegInterruptStatus) == 0);
  // Unknown reasons are dropped without an interrupt.
  interrupt.signal(0x10);
  interrupt.signal(0);
  CHECK(irq.count == 2);
  CHECK(rd(kRegInterruptStatus) == 0);
  // InterruptStatus is read-only.
  wr(kRegInterruptStatus, 3);
  CHECK(rd(kRegInterruptStatus) == 0);
}

TEST_CASE_METHOD(TransportFixture, "registers take 32-bit aligned accesses only", "[virtio_mmio]") {
  std::array<uint8_t, 8> buf{};
  buf.fill(0x55);
  transport.read(kRegMagicValue, std::span(buf).first(2));
  CHECK(buf == std::array<uint8_t, 8>{0, 0, 0x55, 0x55, 0x55, 0x55, 0x55, 0x55});
  buf.fill(0x55);
  transport.read(kRegMagicValue, std::span(buf).first(1));
  CHECK(buf[0] == 0);
  buf.fill(0x55);
  transport.read(kRegMagicValue, buf);
  CHECK(buf == std::array<uint8_t, 8>{});
  buf.fill(0x55);
  transport.read(kRegMagicValue + 2, std::span(buf).first(4));
  CHECK(buf == std::array<uint8_t, 8>{0, 0, 0, 0, 0x55, 0x55, 0x55, 0x55});

  const uint8_t ack = virtio::kStatusAcknowledge;
  transport.write(kRegStatus, std::span(&ack, 1));
  const std::array<uint8_t, 8> ack8{virtio::kStatusAcknowledge};
  transport.write(kRegStatus, ack8);
  const std::array<uint8_t, 4> ack4{virtio::kStatusAcknowledge};
  transport.write(kRegStatus + 1, std::span(ack4).first(4));
  CHECK(rd(kRegStatus) == 0);
  CHECK(transport.ignored_accesses() == 7);
  transport.write(kRegStatus, ack4);
  CHECK(rd(kRegStatus) == virtio::kStatusAcknowledge);
}

TEST_CASE_METHOD(TransportFixture, "config space at widths 1, 2, 4 and 8", "[virtio_mmio]") {
  for (size_t i = 0; i < device->config.size(); ++i)
    device->config[i] = static_cast<uint8_t>(i + 1);
  uint8_t b = 0;
  transport.read(kRegConfig + 3, std::span(&b, 1));
  CHECK(b == 4);
  uint16_t h = 0;
  transport.read(kRegConfig + 2, std::span(reinterpret_cast<uint8_t*>(&h), 2));
  CHECK(h == 0x0403);
  uint32_t w = 0;
  transport.read(kRegConfig + 4, std::span(reinterpret_cast<uint8_t*>(&w), 4));
  CHECK(w == 0x08070605);
  uint64_t q = 0;
  transport.read(kRegConfig + 8, std::span(reinterpret_cast<uint8_t*>(&q), 8));
  CHECK(q == 0x100f0e0d0c0b0a09);
  // Past the device's config space: zeroes.
  transport.read(kRegConfig + 14, std::span(reinterpret_cast<uint8_t*>(&w), 4));
  CHECK(w == 0x0000100f);  // the last two bytes, then two zero bytes
  transport.read(kRegConfig + 0x100, std::span(reinterpret_cast<uint8_t*>(&w), 4));
  CHECK(w == 0);
  // Odd widths and the end of the window are refused.
  std::array<uint8_t, 3> three{9, 9, 9};
  transport.read(kRegConfig, three);
  CHECK(three == std::array<uint8_t, 3>{0, 0, 0});
  transport.read(VirtioMmioTransport::kDeviceWindowSize - 2,
                 std::span(reinterpret_cast<uint8_t*>(&w), 4));
  CHECK(w == 0);

  const uint32_t v = 0xa1b2c3d4;
  transport.write(kRegConfig + 4, std::span(reinterpret_cast<const uint8_t*>(&v), 4));
  CHECK(device->config[4] == 0xd4);
  CHECK(device->config[7] == 0xa1);
  const uint8_t one = 0x77;
  transport.write(kRegConfig + 15, std::span(&one, 1));
  CHECK(device->config[15] == 0x77);
  const uint64_t eight = 0x1122334455667788;
  transport.write(kRegConfig + 8, std::span(reinterpret_cast<const uint8_t*>(&eight), 8));
  CHECK(device->config[8] == 0x88);
  CHECK(device->config[15] == 0x11);
  CHECK(device->config_writes == 3);
  transport.write(kRegConfig, three);
  CHECK(device->config_writes == 3);
}

TEST_CASE_METHOD(TransportFixture, "config generation comes from the device", "[virtio_mmio]") {
  device->generation = 41;
  CHECK(rd(kRegConfigGeneration) == 41);
  device->generation = 42;
  CHECK(rd(kRegConfigGeneration) == 42);
}

TEST_CASE_METHOD(TransportFixture, "QueueSel beyond the queue count", "[virtio_mmio]") {
  REQUIRE(transport.num_queues() == 2);
  wr(kRegQueueSel, 0);
  CHECK(rd(kRegQueueNumMax) == 16);
  wr(kRegQueueSel, 1);
  CHECK(rd(kRegQueueNumMax) == 8);
  REQUIRE(negotiate() == kFeaturesOk);
  for (uint32_t sel : {2u, 0xffffu, 0x10000u, 0xffffffffu}) {
    wr(kRegQueueSel, sel);
    CHECK(rd(kRegQueueNumMax) == 0);
    CHECK(rd(kRegQueueReady) == 0);
    wr(kRegQueueNum, 4);
    wr(kRegQueueReady, 1);
    CHECK(rd(kRegQueueReady) == 0);
  }
  for (size_t i = 0; i < 2; ++i) {
    CHECK_FALSE(transport.queue(i).ready());
    CHECK(transport.queue(i).size() == transport.queue(i).max_size());
  }
}

// A device whose declared features and queue sizes are the test's parameters.
class BadDevice final : public virtio::VirtioDevice {
 public:
  BadDevice(uint64_t features, uint16_t queue_size) : features_(features), sizes_{queue_size} {}
  uint32_t device_type() const override { return virtio::kDeviceIdRng; }
  std::span<const uint16_t> queue_max_sizes() const override { return sizes_; }
  uint64_t device_features() const override { return features_; }
  void set_acked_features(uint64_t) override {}
  uint64_t acked_features() const override { return 0; }
  void read_config(uint64_t, std::span<uint8_t>) const override {}
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext&) override {
    return std::nullopt;
  }
  void reset() override {}

 private:
  uint64_t features_;
  std::array<uint16_t, 1> sizes_;
};

TEST_CASE("the transport refuses devices it cannot present", "[virtio_mmio]") {
  minivmm::test::FakeGuestMemory guest(0x10000);
  CountingIrq irq;
  const uint64_t v1 = virtio::feature_bit(virtio::kFVersion1);
  auto make = [&](uint64_t features, uint16_t size) {
    return std::make_unique<VirtioMmioTransport>(std::make_shared<BadDevice>(features, size),
                                                 guest.mem(), irq);
  };
  CHECK_NOTHROW(make(v1, 256));
  CHECK_THROWS_AS(make(0, 256), std::invalid_argument);  // no VERSION_1: legacy only
  CHECK_THROWS_AS(make(v1 | virtio::feature_bit(virtio::kFRingPacked), 256), std::invalid_argument);
  CHECK_THROWS_AS(make(v1 | virtio::feature_bit(virtio::kFRingReset), 256), std::invalid_argument);
  CHECK_THROWS_AS(make(v1, 100), std::invalid_argument);
  CHECK_THROWS_AS(make(v1, 0), std::invalid_argument);
}

}  // namespace
}  // namespace minivmm::test
