// virtio-rng: the request handler (entropy into writable buffers, the per-request cap, bad
// buffers, a failing source) and the device on its worker (notifications, interrupts,
// hostile rings, reset).
#include <catch2/catch.hpp>

#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include "devices/virtio_rng.h"
#include "tests/devices/blk_harness.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using minivmm::devices::VirtioRng;
using minivmm::test::Buf;
using minivmm::test::CountingInterrupt;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;
namespace virtio = minivmm::virtio;

namespace {

constexpr uint64_t kRam = 4 << 20;
constexpr uint64_t kRings = 0x1000;
constexpr uint64_t kData = 0x100000;

// A deterministic source: 1, 2, 3, ... so that tests can see which bytes came from it.
VirtioRng::Source counting_source() {
  auto next = std::make_shared<uint8_t>(0);
  return [next](std::span<uint8_t> out) {
    for (uint8_t& b : out) b = ++*next;
    return true;
  };
}

// Pops one chain the way the device's queue loop would.
virtio::DescriptorChain pop(virtio::Queue& q, const FakeGuestMemory& guest) {
  auto chain = q.pop(guest.mem());
  REQUIRE(chain.has_value());
  REQUIRE(chain->has_value());
  return std::move(**chain);
}

}  // namespace

TEST_CASE("rng: fills every writable buffer of a chain and ignores readable ones") {
  FakeGuestMemory guest(kRam);
  virtio::Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  std::memset(guest.host(kData), 0, 0x300);
  driver.add_chain({{kData, 16, false}, {kData + 0x100, 8, true}, {kData + 0x200, 24, true}});
  VirtioRng rng(counting_source());
  const uint32_t n = rng.fill(guest.mem(), pop(q, guest));
  CHECK(n == 32);
  CHECK(rng.bytes_served() == 32);
  CHECK(guest.host(kData)[0] == 0);          // device-readable: untouched
  CHECK(guest.host(kData + 0x100)[0] == 1);  // in chain order
  CHECK(guest.host(kData + 0x107)[0] == 8);
  CHECK(guest.host(kData + 0x200)[0] == 9);
  CHECK(guest.host(kData + 0x217)[0] == 32);
  CHECK(guest.host(kData + 0x218)[0] == 0);
}

TEST_CASE("rng: at most kMaxBytesPerRequest per request, whatever the driver declared") {
  FakeGuestMemory guest(kRam);
  virtio::Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  const uint32_t declared = 1 << 20;
  std::memset(guest.host(kData), 0xee, declared);
  driver.add_chain({{kData, declared, true}});
  VirtioRng rng(counting_source());
  CHECK(rng.fill(guest.mem(), pop(q, guest)) == VirtioRng::kMaxBytesPerRequest);
  CHECK(guest.host(kData + VirtioRng::kMaxBytesPerRequest - 1)[0] != 0xee);
  CHECK(guest.host(kData + VirtioRng::kMaxBytesPerRequest)[0] == 0xee);  // not touched
}

TEST_CASE("rng: a buffer outside guest RAM ends the request, a failing source too") {
  FakeGuestMemory guest(kRam);
  virtio::Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  driver.add_chain({{kData, 4096, true}, {kRam - 16, 4096, true}});  // straddles the top
  VirtioRng rng(counting_source());
  const uint32_t n = rng.fill(guest.mem(), pop(q, guest));
  CHECK(n <= 4096 + 16);
  CHECK(n >= 4096);

  driver.add_chain({{kData, 64, true}});
  VirtioRng dry([](std::span<uint8_t>) { return false; });
  CHECK(dry.fill(guest.mem(), pop(q, guest)) == 0);
}

TEST_CASE("rng device: notified requests are served on its worker and interrupt the driver") {
  FakeGuestMemory guest(kRam);
  std::vector<virtio::Queue> queues(1, virtio::Queue(VirtioRng::kQueueSize));
  std::vector<virtio::EventFd> events(1);
  DriverQueue driver(guest, 64, kRings);
  CountingInterrupt irq;
  VirtioRng rng;
  CHECK(rng.device_type() == virtio::kDeviceIdRng);
  CHECK(virtio::has_feature(rng.device_features(), virtio::kFVersion1));
  driver.configure(queues[0], /*event_idx=*/false, /*indirect=*/true);
  rng.set_acked_features(rng.device_features());

  // A buffer made available before activation is served at start, without a notification.
  driver.add_chain({{kData, 64, true}});
  REQUIRE_FALSE(rng.activate(virtio::ActivateContext{guest.mem(), queues, events, irq}));
  auto wait_used = [&](size_t n) {
    std::vector<virtio::VirtqUsedElem> used;
    for (int i = 0; i < 5000 && used.size() < n; ++i) {
      auto u = driver.take_used();
      used.insert(used.end(), u.begin(), u.end());
      if (used.size() < n) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return used;
  };
  auto used = wait_used(1);
  REQUIRE(used.size() == 1);
  CHECK(used[0].len == 64);

  // Then each notification; an invalid chain (readable after writable) is returned empty.
  driver.add_chain({{kData + 0x1000, 128, true}});
  driver.add_chain({{kData + 0x2000, 8, true}, {kData + 0x3000, 8, false}});
  events[0].signal();
  used = wait_used(2);
  REQUIRE(used.size() == 2);
  CHECK(used[0].len == 128);
  CHECK(used[1].len == 0);
  CHECK(irq.count() >= 2);
  CHECK(irq.needs_reset == 0);

  // A driver that breaks the ring gets DEVICE_NEEDS_RESET, once, and no more service.
  driver.set_avail_idx(static_cast<uint16_t>(driver.avail_idx() + 100));
  events[0].signal();
  for (int i = 0; i < 5000 && irq.needs_reset == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(irq.needs_reset == 1);
  events[0].signal();
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(irq.needs_reset == 1);

  rng.reset();
  CHECK(rng.acked_features() == 0);
}

TEST_CASE("rng device: reset returns it to its initial state, active or not") {
  VirtioRng rng;
  rng.set_acked_features(rng.device_features());
  rng.reset();  // never activated
  CHECK(rng.acked_features() == 0);
  FakeGuestMemory guest(kRam);
  std::vector<virtio::Queue> two(2, virtio::Queue(16));
  std::vector<virtio::EventFd> events(2);
  CountingInterrupt irq;
  CHECK(rng.activate(virtio::ActivateContext{guest.mem(), two, events, irq}).has_value());
}
