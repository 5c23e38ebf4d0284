// drain_queue: every chain handled and returned, invalid chains returned without reaching
// the handler, the budget, notification suppression and the re-check, broken queues.
#include <catch2/catch.hpp>

#include <cstring>
#include <vector>

#include "tests/support/fake_guest.h"
#include "virtio/queue_drain.h"
#include "virtio/spec.h"

using namespace minivmm::virtio;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;

namespace {
constexpr uint64_t kRam = 0x100000;
constexpr uint64_t kRings = 0x1000;
constexpr uint64_t kData = 0x10000;
}  // namespace

TEST_CASE("drain_queue hands each valid chain to the handler and returns it") {
  FakeGuestMemory guest(kRam);
  Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  const uint16_t a = driver.add_chain({{kData, 8, true}});
  const uint16_t b = driver.add_chain({{kData + 0x100, 4, false}, {kData + 0x200, 16, true}});
  std::vector<uint16_t> seen;
  auto r = drain_queue(q, guest.mem(), [&](const DescriptorChain& c) {
    seen.push_back(c.head_index());
    return c.writable_bytes();
  });
  REQUIRE(r.has_value());
  CHECK(r->notify);
  CHECK_FALSE(r->exhausted);
  CHECK(seen == std::vector<uint16_t>{a, b});
  const auto used = driver.take_used();
  REQUIRE(used.size() == 2);
  CHECK(used[0].id == a);
  CHECK(used[0].len == 8);
  CHECK(used[1].id == b);
  CHECK(used[1].len == 16);
  // Nothing new: nothing used, no interrupt.
  r = drain_queue(q, guest.mem(), [&](const DescriptorChain&) -> uint32_t { FAIL(); return 0; });
  REQUIRE(r.has_value());
  CHECK_FALSE(r->notify);
}

TEST_CASE("drain_queue returns an invalid chain with length 0 without handling it") {
  FakeGuestMemory guest(kRam);
  Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  // Device-readable after device-writable: refused by the chain validation.
  const uint16_t bad = driver.add_chain({{kData, 8, true}, {kData + 0x100, 8, false}});
  const uint16_t good = driver.add_chain({{kData + 0x200, 8, true}});
  int handled = 0;
  auto r = drain_queue(q, guest.mem(), [&](const DescriptorChain& c) {
    ++handled;
    CHECK(c.head_index() == good);
    return 8u;
  });
  REQUIRE(r.has_value());
  CHECK(handled == 1);
  const auto used = driver.take_used();
  REQUIRE(used.size() == 2);
  CHECK(used[0].id == bad);
  CHECK(used[0].len == 0);
  CHECK(used[1].len == 8);
}

TEST_CASE("drain_queue stops at the budget and leaves the rest for the next call") {
  FakeGuestMemory guest(kRam);
  Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q, /*event_idx=*/true);
  for (int i = 0; i < 5; ++i) driver.add_chain({{kData + 0x100 * static_cast<uint64_t>(i), 8, true}});
  int handled = 0;
  auto count = [&](const DescriptorChain&) {
    ++handled;
    return 0u;
  };
  auto r = drain_queue(q, guest.mem(), count, 2);
  REQUIRE(r.has_value());
  CHECK(r->exhausted);
  CHECK(handled == 2);
  r = drain_queue(q, guest.mem(), count, 2);
  REQUIRE(r.has_value());
  CHECK(r->exhausted);
  r = drain_queue(q, guest.mem(), count, 2);
  REQUIRE(r.has_value());
  CHECK_FALSE(r->exhausted);
  CHECK(handled == 5);
  CHECK(driver.take_used().size() == 5);
}

TEST_CASE("drain_queue re-checks the ring after turning notifications back on") {
  FakeGuestMemory guest(kRam);
  Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  driver.add_chain({{kData, 8, true}});
  int handled = 0;
  // The driver adds a buffer while the device drains, with notifications off: the
  // device must find it before it returns, since no notification will come for it.
  auto r = drain_queue(q, guest.mem(), [&](const DescriptorChain&) {
    if (++handled == 1) {
      CHECK((driver.used_flags() & kVirtqUsedFNoNotify) != 0);
      driver.add_chain({{kData + 0x100, 8, true}});
    }
    return 8u;
  });
  REQUIRE(r.has_value());
  CHECK(handled == 2);
  CHECK((driver.used_flags() & kVirtqUsedFNoNotify) == 0);  // notifications on again
}

TEST_CASE("drain_queue reports a queue the driver broke") {
  FakeGuestMemory guest(kRam);
  Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q);
  SECTION("avail index too far ahead") {
    driver.set_avail_idx(17);
    auto r = drain_queue(q, guest.mem(), [](const DescriptorChain&) { return 0u; });
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == Error::kAvailIndexTooFar);
  }
  SECTION("a head out of range") {
    driver.publish(16);
    auto r = drain_queue(q, guest.mem(), [](const DescriptorChain&) { return 0u; });
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == Error::kInvalidHead);
  }
  SECTION("a queue never enabled is left alone") {
    Queue idle(16);
    auto r = drain_queue(idle, guest.mem(), [](const DescriptorChain&) { return 0u; });
    REQUIRE(r.has_value());
    CHECK_FALSE(r->notify);
  }
}

TEST_CASE("drain_queue: rings laid over each other so that the device's own writes move "
          "avail->idx end in an error, not an endless re-check") {
  // used->flags lies on avail->idx: disabling notifications writes 1 there, enabling them
  // writes 0, so after one chain the index flips between "one more" and "nothing new"
  // forever. Found by fuzz_rng (tests/fuzz/regressions/fuzz_rng/); it spun before.
  FakeGuestMemory guest(kRam);
  Queue q(2);
  q.set_desc_table(kRings);
  q.set_avail_ring(0x2002);  // flags 0x2002, idx 0x2004, ring[0] 0x2006
  q.set_used_ring(0x2004);   // flags 0x2004 = avail->idx
  q.set_ready(true);
  REQUIRE(q.is_valid(guest.mem()));
  const VirtqDesc d{kData, 8, kVirtqDescFWrite, 0};
  std::memcpy(guest.host(kRings), &d, sizeof(d));
  int handled = 0;
  auto r = drain_queue(q, guest.mem(), [&](const DescriptorChain&) {
    ++handled;
    return 8u;
  });
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == Error::kAvailIndexMovedBack);
  CHECK(handled == 1);
}

TEST_CASE("drain_queue_while takes chains only while the device wants them") {
  FakeGuestMemory guest(kRam);
  Queue q(16);
  DriverQueue driver(guest, 16, kRings);
  driver.configure(q, /*event_idx=*/true);
  for (int i = 0; i < 4; ++i) driver.add_chain({{kData + 0x100 * static_cast<uint64_t>(i), 8, true}});
  int data = 2;  // host data for two chains
  auto want = [&] { return data > 0; };
  auto fill = [&](const DescriptorChain&) {
    --data;
    return 8u;
  };
  auto r = drain_queue_while(q, guest.mem(), want, fill);
  REQUIRE(r.has_value());
  CHECK(r->notify);
  CHECK(driver.take_used().size() == 2);
  // The other two stay available, and the driver is asked to notify again.
  CHECK(q.pending(guest.mem()).value() == 2);
  CHECK(driver.avail_event() == q.next_avail());
  // Nothing wanted: nothing taken, no interrupt.
  r = drain_queue_while(q, guest.mem(), want, fill);
  REQUIRE(r.has_value());
  CHECK_FALSE(r->notify);
  CHECK(driver.take_used().empty());
  data = 5;
  r = drain_queue_while(q, guest.mem(), want, fill);
  REQUIRE(r.has_value());
  CHECK(driver.take_used().size() == 2);
  CHECK(data == 3);
}
