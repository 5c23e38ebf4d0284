// Queue registers, activation, reset and notifications of the virtio-mmio transport
// (virtio 1.2 §4.2.3.2, §2.1.2, §2.4, §3.1.1).
#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "tests/mmio/transport_fixture.h"

namespace minivmm::test {
namespace {

using namespace mmio;  // kReg* offsets

void check_initial(const virtio::Queue& q) {
  CHECK_FALSE(q.ready());
  CHECK(q.size() == q.max_size());
  CHECK(q.desc_table() == 0);
  CHECK(q.avail_ring() == 0);
  CHECK(q.used_ring() == 0);
  CHECK(q.next_avail() == 0);
  CHECK(q.next_used() == 0);
}

TEST_CASE_METHOD(TransportFixture, "full initialisation activates the device once",
                 "[virtio_mmio]") {
  DriverQueue q0(guest, 16, 0x10000);
  DriverQueue q1(guest, 4, 0x40000);
  const uint64_t features = kVersion1 | virtio::feature_bit(virtio::kFEventIdx);
  REQUIRE(negotiate(features) == kFeaturesOk);
  // Linux checks QueueReady is 0 and QueueNumMax is nonzero before setting a queue up.
  wr(kRegQueueSel, 0);
  CHECK(rd(kRegQueueReady) == 0);
  CHECK(rd(kRegQueueNumMax) == 16);
  setup_queue(0, q0);
  setup_queue(1, q1);
  CHECK(rd(kRegQueueReady) == 1);
  CHECK(device->activate_calls == 0);

  wr(kRegStatus, kDriverOk);
  CHECK(rd(kRegStatus) == kDriverOk);
  CHECK(device->activate_calls == 1);
  REQUIRE(device->queues.size() == 2);
  CHECK(device->mem == &guest.mem());
  CHECK(device->interrupt == &transport);
  const virtio::Queue& a = device->queues[0];
  CHECK(a.ready());
  CHECK(a.size() == 16);
  CHECK(a.desc_table() == q0.desc_addr());
  CHECK(a.avail_ring() == q0.avail_addr());
  CHECK(a.used_ring() == q0.used_addr());
  CHECK(a.event_idx());
  const virtio::Queue& b = device->queues[1];
  CHECK(b.size() == 4);
  CHECK(b.desc_table() == q1.desc_addr());
  CHECK(b.used_ring() == q1.used_addr());
  CHECK(&a == &transport.queue(0));

  // Writing DRIVER_OK again does not activate again.
  wr(kRegStatus, kDriverOk);
  CHECK(device->activate_calls == 1);
  CHECK(irq.count == 0);
}

TEST_CASE_METHOD(TransportFixture, "64-bit ring addresses through Low/High", "[virtio_mmio]") {
  REQUIRE(negotiate() == kFeaturesOk);
  setup_queue(1, 8, 0x1234'5678'9abc'def0, 0xfedc'ba98'7654'3210, 0x0000'0001'0000'0004);
  const virtio::Queue& q = transport.queue(1);
  CHECK(q.desc_table() == 0x1234'5678'9abc'def0);
  CHECK(q.avail_ring() == 0xfedc'ba98'7654'3210);
  CHECK(q.used_ring() == 0x0000'0001'0000'0004);
  CHECK(q.size() == 8);
  CHECK(q.ready());
  // Rewriting only the low half keeps the high half.
  wr(kRegQueueDescLow, 0x10);
  CHECK(q.desc_table() == 0x1234'5678'0000'0010);
}

TEST_CASE_METHOD(TransportFixture, "queue registers outside FEATURES_OK..DRIVER_OK are ignored",
                 "[virtio_mmio]") {
  DriverQueue q0(guest, 16, 0x10000);
  SECTION("before FEATURES_OK") {
    wr(kRegStatus, virtio::kStatusAcknowledge);
    wr(kRegStatus, kAckDriver);
    setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    check_initial(transport.queue(0));
  }
  SECTION("after a refused FEATURES_OK") {
    REQUIRE(negotiate(0) == kAckDriver);
    setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    check_initial(transport.queue(0));
  }
  SECTION("after DRIVER_OK") {
    REQUIRE(negotiate() == kFeaturesOk);
    setup_queue(0, q0);
    wr(kRegStatus, kDriverOk);
    REQUIRE(device->activate_calls == 1);
    setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    wr(kRegQueueReady, 0);
    const virtio::Queue& q = transport.queue(0);
    CHECK(q.ready());
    CHECK(rd(kRegQueueReady) == 1);
    CHECK(q.size() == 16);
    CHECK(q.desc_table() == q0.desc_addr());
    CHECK(q.avail_ring() == q0.avail_addr());
    CHECK(q.used_ring() == q0.used_addr());
    check_initial(transport.queue(1));
  }
  SECTION("after FAILED") {
    REQUIRE(negotiate() == kFeaturesOk);
    wr(kRegStatus, kFeaturesOk | virtio::kStatusFailed);
    setup_queue(0, 8, 0x1000, 0x2000, 0x3000);
    check_initial(transport.queue(0));
  }
}

TEST_CASE_METHOD(TransportFixture, "QueueNum above QueueNumMax and bad QueueReady values",
                 "[virtio_mmio]") {
  REQUIRE(negotiate() == kFeaturesOk);
  wr(kRegQueueSel, 1);
  wr(kRegQueueNum, 4);
  CHECK(transport.queue(1).size() == 4);
  wr(kRegQueueNum, 9);
  CHECK(transport.queue(1).size() == 4);
  wr(kRegQueueNum, 0x10004);
  CHECK(transport.queue(1).size() == 4);
  wr(kRegQueueNum, 8);
  CHECK(transport.queue(1).size() == 8);
  wr(kRegQueueReady, 2);
  CHECK_FALSE(transport.queue(1).ready());
}

TEST_CASE_METHOD(TransportFixture, "activation failure sets DEVICE_NEEDS_RESET", "[virtio_mmio]") {
  std::vector<std::string> errors;
  transport.set_error_handler([&](const std::string& e) { errors.push_back(e); });
  DriverQueue q0(guest, 16, 0x10000);
  REQUIRE(negotiate() == kFeaturesOk);
  int expected_activate_calls = 0;
  SECTION("rings outside RAM") {
    setup_queue(0, 16, guest.size() - 16 * 16 + 16, q0.avail_addr(), q0.used_addr());
  }
  SECTION("desc table misaligned") {
    setup_queue(0, 16, 0x10008, q0.avail_addr(), q0.used_addr());
  }
  SECTION("used ring misaligned") {
    setup_queue(0, 16, q0.desc_addr(), q0.avail_addr(), q0.used_addr() + 2);
  }
  SECTION("size not a power of two") {
    setup_queue(0, 12, q0.desc_addr(), q0.avail_addr(), q0.used_addr());
  }
  SECTION("size zero") {
    setup_queue(0, 0, q0.desc_addr(), q0.avail_addr(), q0.used_addr());
  }
  SECTION("ring at an address past 4 GiB") {
    setup_queue(0, 16, 0x1'0001'0000, q0.avail_addr(), q0.used_addr());
  }
  SECTION("the device refuses") {
    setup_queue(0, q0);
    device->fail_activate = true;
    expected_activate_calls = 1;
  }
  wr(kRegStatus, kDriverOk);
  CHECK(rd(kRegStatus) == (kDriverOk | virtio::kStatusDeviceNeedsReset));
  CHECK(device->activate_calls == expected_activate_calls);
  CHECK(rd(kRegInterruptStatus) == virtio::kInterruptConfigChange);
  CHECK(irq.count == 1);
  CHECK(errors.size() == 1);
  // Not live: notifications are dropped.
  wr(kRegQueueNotify, 0);
  CHECK(take_event(0) == 0);
  // The driver's way out is a reset.
  wr(kRegStatus, 0);
  CHECK(rd(kRegStatus) == 0);
  CHECK(device->reset_calls == 1);
  REQUIRE(negotiate() == kFeaturesOk);
  device->fail_activate = false;
  setup_queue(0, q0);
  wr(kRegStatus, kDriverOk);
  CHECK(rd(kRegStatus) == kDriverOk);
  CHECK(device->activate_calls == expected_activate_calls + 1);
}

TEST_CASE_METHOD(TransportFixture, "a queue left not ready is handed over not ready",
                 "[virtio_mmio]") {
  DriverQueue q0(guest, 16, 0x10000);
  REQUIRE(negotiate() == kFeaturesOk);
  setup_queue(0, q0);
  wr(kRegQueueSel, 1);
  wr(kRegQueueNum, 3);  // never enabled, so never validated
  wr(kRegStatus, kDriverOk);
  CHECK(rd(kRegStatus) == kDriverOk);
  REQUIRE(device->queues.size() == 2);
  CHECK(device->queues[0].ready());
  CHECK_FALSE(device->queues[1].ready());
}

TEST_CASE_METHOD(TransportFixture, "writing 0 to Status resets device, queues and registers",
                 "[virtio_mmio]") {
  DriverQueue q0(guest, 16, 0x10000);
  device->drain_on_activate = true;
  REQUIRE(negotiate(kVersion1 | virtio::feature_bit(virtio::kFIndirectDesc)) == kFeaturesOk);
  setup_queue(0, q0);
  wr(kRegStatus, kDriverOk);
  REQUIRE(device->activate_calls == 1);
  // Some activity: a chain is used and an interrupt is pending.
  q0.add_chain({{0x20000, 8, true}});
  wr(kRegQueueNotify, 0);
  device->service();
  CHECK(device->chains == 1);
  CHECK(q0.take_used().size() == 1);
  CHECK(rd(kRegInterruptStatus) == virtio::kInterruptUsedBuffer);
  q0.add_chain({{0x20000, 8, true}});  // made available, never processed
  wr(kRegQueueSel, 1);
  wr(kRegDeviceFeaturesSel, 1);
  wr(kRegDriverFeaturesSel, 1);

  wr(kRegStatus, 0);
  CHECK(device->reset_calls == 1);
  CHECK(device->queues.empty());
  CHECK(rd(kRegStatus) == 0);
  CHECK(rd(kRegInterruptStatus) == 0);
  check_initial(transport.queue(0));
  check_initial(transport.queue(1));
  CHECK_FALSE(transport.queue(0).event_idx());
  // Selectors are back to 0.
  CHECK(rd(kRegQueueNumMax) == 16);
  CHECK(rd(kRegDeviceFeatures) == static_cast<uint32_t>(DummyDevice::kFeatures));
  // Not live any more.
  wr(kRegQueueNotify, 0);
  CHECK(take_event(0) == 0);
  CHECK(device->notified.size() == 1);
  // A second reset in status 0 does not reach the device.
  wr(kRegStatus, 0);
  CHECK(device->reset_calls == 1);
  // And the device can be brought up again.
  CHECK(negotiate() == kFeaturesOk);
  CHECK(device->acked == kVersion1);
}

TEST_CASE_METHOD(TransportFixture, "VMM reset and destruction reset the device", "[virtio_mmio]") {
  REQUIRE(negotiate() == kFeaturesOk);
  wr(kRegStatus, kDriverOk);
  REQUIRE(device->activate_calls == 1);
  transport.reset();
  CHECK(device->reset_calls == 1);
  CHECK(rd(kRegStatus) == 0);
  REQUIRE(negotiate() == kFeaturesOk);
  CHECK(device->reset_calls == 1);  // negotiate() starts with a reset in status 0
  auto other = std::make_shared<DummyDevice>();
  {
    mmio::VirtioMmioTransport t(other, guest.mem(), irq);
    const uint32_t ack = virtio::kStatusAcknowledge;
    t.write(kRegStatus, std::span(reinterpret_cast<const uint8_t*>(&ack), 4));
  }
  CHECK(other->reset_calls == 1);
}

TEST_CASE_METHOD(TransportFixture, "QueueNotify signals that queue's event, the device's one path",
                 "[virtio_mmio]") {
  CHECK(transport.queue_event_fd(0) >= 0);
  CHECK(transport.queue_event_fd(1) >= 0);
  CHECK(transport.queue_event_fd(0) != transport.queue_event_fd(1));
  REQUIRE(negotiate() == kFeaturesOk);
  wr(kRegQueueNotify, 1);  // before DRIVER_OK: dropped
  CHECK(take_event(1) == 0);
  wr(kRegStatus, kDriverOk);
  REQUIRE(device->activate_calls == 1);
  REQUIRE(device->events.size() == 2);
  CHECK(device->events[0].fd() == transport.queue_event_fd(0));
  wr(kRegQueueNotify, 1);
  wr(kRegQueueNotify, 1);
  wr(kRegQueueNotify, 2);  // out of range: ignored
  wr(kRegQueueNotify, 0x10000);
  wr(kRegQueueNotify, 0xffffffff);
  CHECK(take_event(1) == 2);
  CHECK(take_event(0) == 0);
  wr(kRegQueueNotify, 0);
  device->service();
  CHECK(device->notified == std::vector<uint16_t>{0});
  // KVM's ioeventfd signals the same fd: the device cannot tell the paths apart.
  const uint64_t one = 1;
  REQUIRE(::write(transport.queue_event_fd(1), &one, sizeof(one)) == sizeof(one));
  device->service();
  CHECK(device->notified == std::vector<uint16_t>{0, 1});
}

TEST_CASE_METHOD(TransportFixture, "set_needs_reset after DRIVER_OK only, once", "[virtio_mmio]") {
  CHECK_FALSE(transport.set_needs_reset());
  REQUIRE(negotiate() == kFeaturesOk);
  CHECK_FALSE(transport.set_needs_reset());
  CHECK(rd(kRegStatus) == kFeaturesOk);
  wr(kRegStatus, kDriverOk);
  CHECK(transport.set_needs_reset());
  CHECK(rd(kRegStatus) == (kDriverOk | virtio::kStatusDeviceNeedsReset));
  CHECK(rd(kRegInterruptStatus) == virtio::kInterruptConfigChange);
  CHECK(irq.count == 1);
  CHECK_FALSE(transport.set_needs_reset());
  CHECK(irq.count == 1);
  // The driver writing back the status it read (with NEEDS_RESET) changes nothing.
  wr(kRegStatus, kDriverOk | virtio::kStatusDeviceNeedsReset);
  CHECK(rd(kRegStatus) == (kDriverOk | virtio::kStatusDeviceNeedsReset));
  wr(kRegStatus, 0);
  CHECK(rd(kRegStatus) == 0);
  CHECK(device->reset_calls == 1);
}

}  // namespace
}  // namespace minivmm::test
