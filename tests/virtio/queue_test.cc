// Split virtqueue: activation checks, avail/used ring protocol, notification suppression
// (virtio 1.2 §2.7).
#include <catch2/catch.hpp>

#include <vector>

#include "tests/support/fake_guest.h"
#include "virtio/queue.h"

using namespace minivmm::virtio;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;

namespace {
constexpr uint64_t kRam = 0x100000;
constexpr uint64_t kRings = 0x1000;
constexpr uint64_t kData = 0x10000;
}  // namespace

TEST_CASE("validate: size, alignment and ring placement") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  Queue q(256);
  CHECK(q.max_size() == 256);
  CHECK(q.size() == 256);
  CHECK(q.validate(mem).error() == Error::kQueueNotReady);  // not ready

  DriverQueue driver(guest, 128, kRings);
  driver.configure(q);
  CHECK(q.validate(mem).has_value());

  SECTION("size must be a power of two") {
    q.set_size(100);
    CHECK_FALSE(q.is_valid(mem));
  }
  SECTION("size 0 and size above max are invalid") {
    q.set_size(0);
    CHECK_FALSE(q.is_valid(mem));
    q.set_size(512);
    CHECK_FALSE(q.is_valid(mem));
  }
  SECTION("descriptor table needs 16-byte alignment") {
    q.set_desc_table(kRings + 8);
    CHECK_FALSE(q.is_valid(mem));
  }
  SECTION("avail ring needs 2-byte alignment") {
    q.set_avail_ring(driver.avail_addr() + 1);
    CHECK_FALSE(q.is_valid(mem));
  }
  SECTION("used ring needs 4-byte alignment") {
    q.set_used_ring(driver.used_addr() + 2);
    CHECK_FALSE(q.is_valid(mem));
  }
  SECTION("rings must lie inside guest RAM") {
    q.set_used_ring(kRam - 8);
    CHECK(q.validate(mem).error() == Error::kGuestMemory);
    q.set_used_ring(driver.used_addr());
    q.set_desc_table(kRam - desc_table_bytes(128));  // ends exactly at the top: fine
    CHECK(q.is_valid(mem));
    q.set_desc_table(0xffff'ffff'ffff'fff0);
    CHECK_FALSE(q.is_valid(mem));
  }
}

TEST_CASE("pop and add_used move chains through the rings") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q);

  auto none = q.pop(mem);
  REQUIRE(none.has_value());
  CHECK_FALSE(none->has_value());

  const uint16_t a = driver.add_chain({{kData, 16}, {kData + 16, 1, true}});
  const uint16_t b = driver.add_chain({{kData + 32, 16}});
  std::vector<uint16_t> heads;
  auto it = q.iter(mem);
  REQUIRE(it.has_value());
  for (DescriptorChain& chain : *it) {
    CHECK(chain.is_valid());
    heads.push_back(chain.head_index());
  }
  CHECK(heads == std::vector<uint16_t>{a, b});
  CHECK(q.next_avail() == 2);
  CHECK(q.in_flight() == 2);

  REQUIRE(q.add_used(mem, b, 0).has_value());
  REQUIRE(q.add_used(mem, a, 1).has_value());
  auto used = driver.take_used();
  REQUIRE(used.size() == 2);
  CHECK(used[0].id == b);
  CHECK(used[1].id == a);
  CHECK(used[1].len == 1);
  CHECK(q.in_flight() == 0);
}

TEST_CASE("add_used refuses heads that are not in flight") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q);
  CHECK(q.add_used(mem, 0, 0).error() == Error::kInvalidUsedHead);
  CHECK(q.add_used(mem, 9, 0).error() == Error::kInvalidUsedHead);
  const uint16_t head = driver.add_chain({{kData, 4}});
  REQUIRE(q.pop(mem).has_value());
  CHECK(q.add_used(mem, head, 0).has_value());
  CHECK(q.add_used(mem, head, 0).error() == Error::kInvalidUsedHead);  // used twice
  CHECK(driver.used_idx() == 1);
}

TEST_CASE("indices wrap at 2^16") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 4, kRings);
  Queue q(4);
  driver.configure(q);
  for (int round = 0; round < 70000 / 4; ++round) {
    for (int i = 0; i < 4; ++i) driver.add_chain({{kData, 8}});
    int n = 0;
    auto it = q.iter(mem);
    REQUIRE(it.has_value());
    for (DescriptorChain& chain : *it) {
      REQUIRE(chain.is_valid());
      REQUIRE(q.add_used(mem, chain.head_index(), 0).has_value());
      ++n;
    }
    REQUIRE(n == 4);
  }
  CHECK(q.next_used() == static_cast<uint16_t>(70000 / 4 * 4));
  CHECK(driver.used_idx() == q.next_used());
}

TEST_CASE("avail index jumping more than the queue size breaks the queue") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q);
  driver.set_avail_idx(9);
  CHECK(q.iter(mem).error() == Error::kAvailIndexTooFar);
  CHECK(q.pop(mem).error() == Error::kAvailIndexTooFar);
  driver.set_avail_idx(8);  // exactly a full ring is fine
  CHECK(q.iter(mem).has_value());
  driver.set_avail_idx(0xffff);  // "behind" us is also a jump of more than size
  CHECK(q.iter(mem).error() == Error::kAvailIndexTooFar);
}

TEST_CASE("the same head made available twice while in flight") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q);
  const uint16_t head = driver.add_chain({{kData, 8}});
  driver.publish(head);
  auto first = q.pop(mem);
  REQUIRE(first.has_value());
  REQUIRE((*first)->is_valid());
  auto second = q.pop(mem);
  REQUIRE(second.has_value());
  CHECK((*second)->error() == Error::kHeadInFlight);
  CHECK_FALSE((*second)->must_be_used());
  // The original is still in flight and can be completed exactly once.
  CHECK(q.add_used(mem, head, 0).has_value());
  CHECK(q.add_used(mem, head, 0).error() == Error::kInvalidUsedHead);
}

TEST_CASE("a queue that is not ready yields nothing") {
  FakeGuestMemory guest(kRam);
  Queue q(8);
  CHECK(q.pop(guest.mem()).error() == Error::kQueueNotReady);
  CHECK(q.add_used(guest.mem(), 0, 0).error() == Error::kQueueNotReady);
}

TEST_CASE("reset returns the queue to its initial state") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(16);
  driver.configure(q, true, true);
  driver.add_chain({{kData, 8}});
  REQUIRE(q.pop(mem).has_value());
  q.reset();
  CHECK_FALSE(q.ready());
  CHECK(q.size() == 16);
  CHECK(q.desc_table() == 0);
  CHECK(q.avail_ring() == 0);
  CHECK(q.used_ring() == 0);
  CHECK(q.next_avail() == 0);
  CHECK(q.next_used() == 0);
  CHECK(q.in_flight() == 0);
  CHECK_FALSE(q.event_idx());
}

TEST_CASE("notification suppression without EVENT_IDX uses the flags") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q);

  REQUIRE(q.disable_notification(mem).has_value());
  CHECK(driver.used_flags() == kVirtqUsedFNoNotify);
  auto more = q.enable_notification(mem);
  REQUIRE(more.has_value());
  CHECK_FALSE(*more);
  CHECK(driver.used_flags() == 0);
  driver.add_chain({{kData, 8}});
  CHECK(q.enable_notification(mem).value());  // work arrived: process it

  CHECK(q.needs_notification(mem).value());
  driver.set_avail_flags(kVirtqAvailFNoInterrupt);
  CHECK_FALSE(q.needs_notification(mem).value());
}

TEST_CASE("notification suppression with EVENT_IDX") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q, true, false);

  // enable_notification publishes avail_event = next_avail.
  for (int i = 0; i < 3; ++i) driver.add_chain({{kData, 8}});
  auto it = q.iter(mem);
  REQUIRE(it.has_value());
  std::vector<uint16_t> heads;
  for (DescriptorChain& c : *it) heads.push_back(c.head_index());
  CHECK_FALSE(q.enable_notification(mem).value());
  CHECK(driver.avail_event() == 3);
  // disable moves avail_event behind next_avail, so that no index the driver can publish
  // crosses it (virtio 1.2 §2.7.10); the flags stay untouched.
  REQUIRE(q.disable_notification(mem).has_value());
  CHECK(driver.avail_event() == 2);
  CHECK(driver.used_flags() == 0);
  {
    const uint16_t old_idx = driver.avail_idx();
    driver.add_chain({{kData, 8}});
    const uint16_t new_idx = driver.avail_idx();
    const auto event = driver.avail_event();
    // The driver's vring_need_event(): notify iff new - event - 1 < new - old.
    CHECK_FALSE(static_cast<uint16_t>(new_idx - event - 1) <
                static_cast<uint16_t>(new_idx - old_idx));
  }
  CHECK(q.enable_notification(mem).value());  // and the chain is found on re-enable
  CHECK(driver.avail_event() == 3);
  {
    auto it2 = q.iter(mem);
    REQUIRE(it2.has_value());
    for (DescriptorChain& c : *it2) heads.push_back(c.head_index());
  }

  // The first decision always notifies.
  REQUIRE(q.add_used(mem, heads[0], 0).has_value());
  CHECK(q.needs_notification(mem).value());
  // Driver asks to be woken only once used idx passes 2 (used_event = 2).
  driver.set_used_event(2);
  REQUIRE(q.add_used(mem, heads[1], 0).has_value());  // used idx 2: event 2 not crossed
  CHECK_FALSE(q.needs_notification(mem).value());
  REQUIRE(q.add_used(mem, heads[2], 0).has_value());  // used idx 3: crossed 2 -> 3
  CHECK(q.needs_notification(mem).value());
}

TEST_CASE("ring_indices reads avail idx, used idx and, with EVENT_IDX, used_event") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 8, kRings);
  Queue q(8);
  driver.configure(q, false, false);
  for (int i = 0; i < 3; ++i) driver.add_chain({{kData, 8}});
  auto popped = q.pop(mem);
  REQUIRE(popped.has_value());
  REQUIRE(popped->has_value());
  REQUIRE(q.add_used(mem, (*popped)->head_index(), 0).has_value());
  driver.set_used_event(7);
  Queue::RingIndices r = q.ring_indices(mem);
  CHECK(r.avail == 3);
  CHECK(r.used == 1);
  CHECK_FALSE(r.used_event.has_value());  // no EVENT_IDX
  driver.configure(q, true, false);
  r = q.ring_indices(mem);
  CHECK(r.used_event == 7);
  // Rings outside guest RAM read as nothing.
  q.set_avail_ring(kRam + 0x1000);
  r = q.ring_indices(mem);
  CHECK_FALSE(r.avail.has_value());
  CHECK_FALSE(r.used_event.has_value());
  CHECK(r.used == 1);
}

TEST_CASE("EVENT_IDX decisions across the 16-bit wrap") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 4, kRings);
  Queue q(4);
  driver.configure(q, true, false);
  auto use_one = [&] {
    driver.add_chain({{kData, 8}});
    auto popped = q.pop(mem);
    REQUIRE(popped.has_value());
    REQUIRE(popped->has_value());
    REQUIRE(q.add_used(mem, (*popped)->head_index(), 0).has_value());
  };
  // Bring used idx to 0xfffe, checking as we go so the last decision is recent.
  for (int i = 0; i < 0xfffe; ++i) use_one();
  REQUIRE(q.next_used() == 0xfffe);
  (void)q.needs_notification(mem);
  CHECK_FALSE(q.needs_notification(mem).value());  // nothing new used: no interrupt
  driver.set_used_event(0xffff);                   // wake me when used passes 0xffff
  use_one();                                       // used = 0xffff: not past it yet
  CHECK_FALSE(q.needs_notification(mem).value());
  use_one();  // used = 0x0000: crossed 0xffff through the wrap
  CHECK(q.needs_notification(mem).value());
  driver.set_used_event(0x0001);
  use_one();  // used = 1: not past 1
  CHECK_FALSE(q.needs_notification(mem).value());
}

TEST_CASE("EVENT_IDX: 2^16 uses between checks always notify") {
  FakeGuestMemory guest(kRam);
  const GuestMemory& mem = guest.mem();
  DriverQueue driver(guest, 4, kRings);
  Queue q(4);
  driver.configure(q, true, false);
  (void)q.needs_notification(mem);
  driver.set_used_event(0xffff);  // crossed only by a full lap, which `used - old` cannot see
  for (int i = 0; i < 0x10000; ++i) {
    driver.add_chain({{kData, 8}});
    auto popped = q.pop(mem);
    REQUIRE(q.add_used(mem, (*popped)->head_index(), 0).has_value());
  }
  CHECK(q.next_used() == 0);
  CHECK(q.needs_notification(mem).value());
}

TEST_CASE("rings ending exactly at the top of RAM or at the edge of a hole are valid") {
  FakeGuestMemory guest(0x30000, FakeGuestMemory::Hole{0x10000, 0x20000});
  const GuestMemory& mem = guest.mem();
  Queue q(8);
  q.set_size(8);
  q.set_ready(true);
  q.set_desc_table(0x1000);
  q.set_avail_ring(0x10000 - avail_ring_bytes(8));    // ends at the hole
  q.set_used_ring(0x30000 - used_ring_bytes(8) - 2);  // 4-aligned, 2 bytes below the top
  CHECK(q.is_valid(mem));
  q.set_avail_ring(0x10000 - avail_ring_bytes(8) + 2);  // 2 bytes into the hole
  CHECK(q.validate(mem).error() == Error::kGuestMemory);
}
