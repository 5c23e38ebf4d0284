// virtio-blk end to end: the real device, its I/O thread and both backends on temp files,
// driven through fake guest memory and a driver-side queue.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <cstring>
#include <set>

#include "devices/disk_backend.h"
#include "tests/devices/blk_harness.h"

using namespace minivmm;
using devices::BlockConfig;
using devices::kBlkSIoErr;
using devices::kBlkSOk;
using devices::kBlkSUnsupp;
using test::BlkHarness;
using test::Buf;
using test::TempImage;

namespace {

constexpr uint64_t kImageSize = 1 << 20;  // 2048 sectors

BlockConfig config(const TempImage& img, BlockConfig::Engine engine, bool ro = false) {
  BlockConfig c;
  c.path = img.path();
  c.read_only = ro;
  c.engine = engine;
  c.serial = "minivmm-serial-01";
  return c;
}

std::vector<uint8_t> guest_bytes(BlkHarness& h, uint64_t addr, uint64_t len) {
  const uint8_t* p = h.guest.host(addr);
  return std::vector<uint8_t>(p, p + len);
}

std::vector<uint8_t> file_pattern(uint64_t offset, uint64_t len) {
  std::vector<uint8_t> out(len);
  for (uint64_t i = 0; i < len; ++i) out[i] = TempImage::pattern_byte(offset + i);
  return out;
}

void write_segment(BlkHarness& h, uint64_t addr, uint64_t sector, uint32_t n, uint32_t flags) {
  devices::VirtioBlkDiscardWriteZeroes s{sector, n, flags};
  std::memcpy(h.guest.host(addr), &s, sizeof(s));
}

}  // namespace

TEST_CASE("blk device: features and config space", "[blk][device]") {
  TempImage img(kImageSize + 100);  // not a multiple of 512: rounded down
  BlockConfig c = config(img, BlockConfig::Engine::kSync);
  c.num_queues = 2;
  BlkHarness h(c);
  const uint64_t f = h.dev.device_features();
  CHECK(virtio::has_feature(f, virtio::kFVersion1));
  CHECK(virtio::has_feature(f, virtio::kFEventIdx));
  CHECK(virtio::has_feature(f, virtio::kFIndirectDesc));
  CHECK(virtio::has_feature(f, devices::kBlkFFlush));
  CHECK(virtio::has_feature(f, devices::kBlkFDiscard));
  CHECK(virtio::has_feature(f, devices::kBlkFWriteZeroes));
  CHECK(virtio::has_feature(f, devices::kBlkFMq));
  CHECK_FALSE(virtio::has_feature(f, devices::kBlkFRo));
  CHECK(h.dev.device_type() == virtio::kDeviceIdBlock);
  CHECK(h.dev.queue_max_sizes().size() == 2);
  uint8_t cap[8];
  h.dev.read_config(0, cap);
  uint64_t capacity;
  std::memcpy(&capacity, cap, 8);
  CHECK(capacity == kImageSize / 512);
  uint8_t nq[2];
  h.dev.read_config(34, nq);
  CHECK((nq[0] | (nq[1] << 8)) == 2);
  uint8_t past[4] = {1, 2, 3, 4};
  h.dev.read_config(70, past);  // straddles the end: the tail reads zero
  CHECK(past[2] == 0);
  CHECK(past[3] == 0);
  h.dev.read_config(~uint64_t{0}, past);
  CHECK(past[0] == 0);
  // reset() returns the device to its initial state, also when it was never activated
  // (it used to return early then and keep the acked features).
  h.dev.set_acked_features(h.dev.device_features());
  h.dev.reset();
  CHECK(h.dev.acked_features() == 0);
}

TEST_CASE("blk device: execute matrix", "[blk][device]") {
  for (auto engine : test::blk_engines()) {
    DYNAMIC_SECTION("engine " << (engine == BlockConfig::Engine::kSync ? "sync" : "io_uring")) {
      TempImage img(kImageSize);
      BlkHarness h(config(img, engine));
      h.activate();
      const uint64_t d = BlkHarness::kData;

      // Read: exact bytes from the right offset, used length = data + status.
      auto u = h.run(devices::kBlkTIn, 10, {{d, 1024, true}});
      REQUIRE(u);
      CHECK(u->len == 1025);
      CHECK(h.status(0) == kBlkSOk);
      CHECK(guest_bytes(h, d, 1024) == file_pattern(10 * 512, 1024));

      // Scattered read over three buffers.
      u = h.run(devices::kBlkTIn, 7,
                {{d, 512, true}, {d + 8192, 1024, true}, {d + 100000, 512, true}});
      REQUIRE(u);
      CHECK(u->len == 2049);
      CHECK(guest_bytes(h, d + 8192, 1024) == file_pattern(8 * 512, 1024));
      CHECK(guest_bytes(h, d + 100000, 512) == file_pattern(10 * 512, 512));

      // Write lands at the right offset, and nowhere else.
      std::vector<uint8_t> data(1536);
      for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(i ^ 0x5a);
      std::memcpy(h.guest.host(d), data.data(), 512);
      std::memcpy(h.guest.host(d + 4096), data.data() + 512, 1024);
      u = h.run(devices::kBlkTOut, 100, {{d, 512, false}, {d + 4096, 1024, false}});
      REQUIRE(u);
      CHECK(u->len == 1);
      CHECK(h.status(0) == kBlkSOk);
      CHECK(img.read(100 * 512, 1536) == data);
      CHECK(img.read(99 * 512, 512) == file_pattern(99 * 512, 512));
      CHECK(img.read(103 * 512, 512) == file_pattern(103 * 512, 512));

      // Last sector is writable; one past it is not.
      u = h.run(devices::kBlkTOut, kImageSize / 512 - 1, {{d, 512, false}});
      CHECK(h.status(0) == kBlkSOk);
      u = h.run(devices::kBlkTOut, kImageSize / 512, {{d, 512, false}});
      REQUIRE(u);
      CHECK(h.status(0) == kBlkSIoErr);
      CHECK(u->len == 1);
      u = h.run(devices::kBlkTIn, ~uint64_t{0}, {{d, 512, true}});
      CHECK(h.status(0) == kBlkSIoErr);
      struct stat st {};
      REQUIRE(::stat(img.path().c_str(), &st) == 0);
      CHECK(static_cast<uint64_t>(st.st_size) == kImageSize);  // nothing written past capacity

      // Flush.
      u = h.run(devices::kBlkTFlush, 0, {});
      REQUIRE(u);
      CHECK(h.status(0) == kBlkSOk);
      CHECK(u->len == 1);
      h.run(devices::kBlkTFlush, 5, {});
      CHECK(h.status(0) == kBlkSIoErr);

      // GET_ID.
      std::memset(h.guest.host(d), 0xee, 32);
      u = h.run(devices::kBlkTGetId, 0, {{d, 20, true}});
      REQUIRE(u);
      CHECK(h.status(0) == kBlkSOk);
      CHECK(u->len == 21);
      CHECK(std::memcmp(h.guest.host(d), "minivmm-serial-01\0\0\0", 20) == 0);
      h.run(devices::kBlkTGetId, 0, {{d, 19, true}});
      CHECK(h.status(0) == kBlkSIoErr);

      // Unsupported.
      u = h.run(devices::kBlkTGetLifetime, 0, {{d, 16, true}});
      CHECK(h.status(0) == kBlkSUnsupp);
      CHECK(u->len == 1);
      h.run(devices::kBlkTSecureErase, 0, {{d, 16, false}});
      CHECK(h.status(0) == kBlkSUnsupp);

      // Discard reads back zeroes (hole punching on the temp filesystem).
      const uint64_t segs = d + 0x10000;
      write_segment(h, segs, 200, 16, 0);
      u = h.run(devices::kBlkTDiscard, 0, {{segs, 16, false}});
      CHECK(h.status(0) == kBlkSOk);
      CHECK(img.read(200 * 512, 16 * 512) == std::vector<uint8_t>(16 * 512, 0));
      CHECK(img.read(216 * 512, 512) == file_pattern(216 * 512, 512));

      // Write zeroes, two segments, one with unmap.
      write_segment(h, segs, 300, 3, 0);
      write_segment(h, segs + 16, 400, 9, devices::kBlkDwzFUnmap);
      u = h.run(devices::kBlkTWriteZeroes, 0, {{segs, 32, false}});
      CHECK(h.status(0) == kBlkSOk);
      CHECK(img.read(300 * 512, 3 * 512) == std::vector<uint8_t>(3 * 512, 0));
      CHECK(img.read(303 * 512, 512) == file_pattern(303 * 512, 512));
      CHECK(img.read(400 * 512, 9 * 512) == std::vector<uint8_t>(9 * 512, 0));
      CHECK(img.read(299 * 512, 512) == file_pattern(299 * 512, 512));

      // A segment past capacity fails the whole request before anything is done.
      write_segment(h, segs, 500, 1, 0);
      write_segment(h, segs + 16, kImageSize / 512, 1, 0);
      h.run(devices::kBlkTWriteZeroes, 0, {{segs, 32, false}});
      CHECK(h.status(0) == kBlkSIoErr);
      CHECK(img.read(500 * 512, 512) == file_pattern(500 * 512, 512));
      CHECK(h.needs_reset == 0);
      CHECK(h.irq.count() > 0);
    }
  }
}

TEST_CASE("blk device: read-only disk is never written", "[blk][device]") {
  for (auto engine : test::blk_engines()) {
    TempImage img(kImageSize);
    const auto before = img.read(0, kImageSize);
    BlkHarness h(config(img, engine, true));
    CHECK(virtio::has_feature(h.dev.device_features(), devices::kBlkFRo));
    CHECK_FALSE(virtio::has_feature(h.dev.device_features(), devices::kBlkFDiscard));
    h.activate();
    const uint64_t d = BlkHarness::kData;
    std::memset(h.guest.host(d), 0x11, 4096);
    h.run(devices::kBlkTOut, 0, {{d, 4096, false}});
    CHECK(h.status(0) == kBlkSIoErr);
    write_segment(h, d + 8192, 0, 8, 0);
    h.run(devices::kBlkTDiscard, 0, {{d + 8192, 16, false}});
    CHECK(h.status(0) != kBlkSOk);
    h.run(devices::kBlkTWriteZeroes, 0, {{d + 8192, 16, false}});
    CHECK(h.status(0) != kBlkSOk);
    h.run(devices::kBlkTIn, 0, {{d, 512, true}});
    CHECK(h.status(0) == kBlkSOk);
    h.run(devices::kBlkTFlush, 0, {});
    CHECK(h.status(0) == kBlkSOk);
    CHECK(img.read(0, kImageSize) == before);
  }
}

TEST_CASE("blk device: malformed chains still complete", "[blk][device]") {
  TempImage img(kImageSize);
  BlkHarness h(config(img, BlockConfig::Engine::kSync));
  h.activate();
  const uint64_t d = BlkHarness::kData;
  SECTION("no status descriptor: used with length 0") {
    h.add_chain_at(0, {{h.header(0, devices::kBlkTIn, 0), 16, false}, {d, 512, false}});
    h.kick();
    auto u = h.wait_used(1);
    REQUIRE(u.size() == 1);
    CHECK(u[0].len == 0);
  }
  SECTION("descriptor loop: used with length 0, queue keeps working") {
    h.dq.write_desc(0, {h.header(0, devices::kBlkTIn, 0), 16, virtio::kVirtqDescFNext, 1});
    h.dq.write_desc(1, {d, 512, virtio::kVirtqDescFNext | virtio::kVirtqDescFWrite, 0});
    h.dq.publish(0);
    h.kick();
    auto u = h.wait_used(1);
    REQUIRE(u.size() == 1);
    CHECK(u[0].id == 0);
    CHECK(u[0].len == 0);
    auto ok = h.run(devices::kBlkTIn, 0, {{d, 512, true}});
    REQUIRE(ok);
    CHECK(h.status(0) == kBlkSOk);
  }
  SECTION("indirect table length not a multiple of 16") {
    h.dq.write_desc(0, {d + 0x8000, 24, virtio::kVirtqDescFIndirect, 0});
    h.dq.publish(0);
    h.kick();
    auto u = h.wait_used(1);
    REQUIRE(u.size() == 1);
    CHECK(u[0].len == 0);
  }
  SECTION("next >= queue size, nested indirect, lengths past 2^32, addr + len wrap") {
    const uint64_t hdr = h.header(0, devices::kBlkTIn, 0);
    h.dq.write_desc(0, {hdr, 16, virtio::kVirtqDescFNext, 999});
    h.dq.publish(0);
    // An indirect table whose entry is itself indirect.
    const uint64_t table = d + 0x8000;
    virtio::VirtqDesc inner{table + 0x100, 16, virtio::kVirtqDescFIndirect, 0};
    std::memcpy(h.guest.host(table), &inner, sizeof(inner));
    h.dq.write_desc(1, {table, 16, virtio::kVirtqDescFIndirect, 0});
    h.dq.publish(1);
    h.dq.write_desc(2, {hdr, 16, virtio::kVirtqDescFNext, 3});
    h.dq.write_desc(3, {d, 0xffffffffu, virtio::kVirtqDescFNext | virtio::kVirtqDescFWrite, 4});
    h.dq.write_desc(4, {d, 0x10, virtio::kVirtqDescFWrite, 0});
    h.dq.publish(2);
    h.dq.write_desc(5, {hdr, 16, virtio::kVirtqDescFNext, 6});
    h.dq.write_desc(
        6, {~uint64_t{0} - 10, 512, virtio::kVirtqDescFWrite | virtio::kVirtqDescFNext, 7});
    h.dq.write_desc(7, {h.status_addr(0), 1, virtio::kVirtqDescFWrite, 0});
    h.dq.publish(5);
    h.kick();
    auto u = h.wait_used(4);
    REQUIRE(u.size() == 4);
    for (const auto& e : u) CHECK(e.len == 0);
    CHECK(h.needs_reset == 0);
  }
  SECTION("data buffer outside RAM: IOERR, status written") {
    auto u = h.run(devices::kBlkTIn, 0, {{BlkHarness::kRam - 256, 512, true}});
    REQUIRE(u);
    CHECK(h.status(0) == kBlkSIoErr);
    CHECK(u->len == 1);
  }
  SECTION("head out of range: the queue is broken, needs reset") {
    h.dq.publish(300);  // queue size 256
    h.kick();
    for (int i = 0; i < 1000 && h.needs_reset == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(h.needs_reset == 1);
  }
  SECTION("avail index jumps by more than the queue size") {
    h.dq.set_avail_idx(1000);
    h.kick();
    for (int i = 0; i < 1000 && h.needs_reset == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(h.needs_reset == 1);
  }
  SECTION("the same head made available twice while in flight") {
    // Published twice before the device looks: the second is a driver bug.
    h.header(0, devices::kBlkTFlush, 0);
    h.dq.write_desc(0, {BlkHarness::kHeaders, 16, virtio::kVirtqDescFNext, 1});
    h.dq.write_desc(1, {h.status_addr(0), 1, virtio::kVirtqDescFWrite, 0});
    h.dev.reset();
    h.queues[0].reset();
    h.dq.publish(0);
    h.dq.publish(0);
    h.activate();
    auto u = h.wait_used(1, 2000);
    for (int i = 0; i < 1000 && h.needs_reset == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    CHECK(h.needs_reset == 1);
    CHECK(u.size() <= 1);
  }
}

TEST_CASE("blk device: write-through when FLUSH is not negotiated", "[blk][device]") {
  for (auto engine : test::blk_engines()) {
    TempImage img(kImageSize);
    BlkHarness h(config(img, engine));
    h.activate(virtio::feature_bit(virtio::kFVersion1) |
               virtio::feature_bit(devices::kBlkFWriteZeroes));
    const uint64_t d = BlkHarness::kData;
    std::memset(h.guest.host(d), 0x42, 512);
    h.run(devices::kBlkTOut, 1, {{d, 512, false}});
    CHECK(h.status(0) == kBlkSOk);
    CHECK(img.read(512, 512) == std::vector<uint8_t>(512, 0x42));
    // DISCARD was not negotiated: UNSUPP.
    write_segment(h, d + 4096, 0, 1, 0);
    h.run(devices::kBlkTDiscard, 0, {{d + 4096, 16, false}});
    CHECK(h.status(0) == kBlkSUnsupp);
  }
}

TEST_CASE("blk device: event-idx suppresses interrupts until used_event", "[blk][device]") {
  TempImage img(kImageSize);
  BlockConfig c = config(img, BlockConfig::Engine::kSync);
  c.poll_us = 0;  // the last check reads avail_event, which polling leaves behind meanwhile
  BlkHarness h(c);
  h.activate(test::blk_features_all(), /*event_idx=*/true);
  // The worker signals just after it publishes the used element that run() waits for: an
  // interrupt is awaited (up to 2 s), and one that must not come gets 50 ms to show up.
  auto settled = [&h](uint64_t expected) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (h.irq.count() < expected && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return h.irq.count();
  };
  h.dq.set_used_event(5);             // the driver wants an interrupt once used idx passes 5
  h.run(devices::kBlkTFlush, 0, {});  // first notification is always sent
  const uint64_t first = settled(1);
  CHECK(first == 1);
  for (int i = 0; i < 3; ++i) h.run(devices::kBlkTFlush, 0, {});
  CHECK(settled(first) == first);  // used idx 4: not yet
  for (int i = 0; i < 3; ++i) h.run(devices::kBlkTFlush, 0, {});
  CHECK(settled(first + 1) == first + 1);
  // The device asks to be notified at its next avail index (avail_event).
  CHECK(h.dq.avail_event() == h.dq.avail_idx());
}

TEST_CASE("blk device: indirect descriptors and two queues", "[blk][device]") {
  for (auto engine : test::blk_engines()) {
    TempImage img(kImageSize);
    BlockConfig c = config(img, engine);
    c.num_queues = 2;
    c.serial = "a-serial-that-is-longer-than-twenty";
    test::FakeGuestMemory guest(BlkHarness::kRam);
    test::DriverQueue q0(guest, 64, 0x1000);
    test::DriverQueue q1(guest, 64, 0x4000);
    std::vector<virtio::Queue> queues(2, virtio::Queue(c.queue_size));
    std::vector<virtio::EventFd> events(2);
    test::CountingInterrupt irq;
    devices::VirtioBlock dev(c);
    q0.configure(queues[0], true, true);
    q1.configure(queues[1], true, true);
    dev.set_acked_features(dev.device_features());
    REQUIRE_FALSE(dev.activate(virtio::ActivateContext{guest.mem(), queues, events, irq}));
    const uint64_t hdr0 = 0x100000, hdr1 = 0x100100, d = 0x200000;
    devices::VirtioBlkReqHeader h0{devices::kBlkTIn, 0, 4};
    devices::VirtioBlkReqHeader h1{devices::kBlkTGetId, 0, 0};
    std::memcpy(guest.host(hdr0), &h0, 16);
    std::memcpy(guest.host(hdr1), &h1, 16);
    // Queue 0: a read through an indirect table split into 8 buffers of 512 bytes.
    std::vector<Buf> bufs{{hdr0, 16, false}};
    for (int i = 0; i < 8; ++i) bufs.push_back({d + static_cast<uint64_t>(i) * 4096, 512, true});
    bufs.push_back({hdr0 + 16, 1, true});
    q0.publish(q0.add_indirect(0x300000, bufs));
    // Queue 1: GET_ID with a truncated serial.
    q1.add_chain({{hdr1, 16, false}, {d + 0x10000, 32, true}, {hdr1 + 16, 1, true}});
    events[0].signal();
    events[1].signal();
    std::vector<virtio::VirtqUsedElem> u0, u1;
    for (int i = 0; i < 5000 && (u0.empty() || u1.empty()); ++i) {
      auto a = q0.take_used();
      auto b = q1.take_used();
      u0.insert(u0.end(), a.begin(), a.end());
      u1.insert(u1.end(), b.begin(), b.end());
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(u0.size() == 1);
    REQUIRE(u1.size() == 1);
    CHECK(u0[0].len == 8 * 512 + 1);
    CHECK(*guest.host(hdr0 + 16) == kBlkSOk);
    for (uint64_t i = 0; i < 8; ++i) {
      const uint8_t* p = guest.host(d + i * 4096);
      CHECK(std::vector<uint8_t>(p, p + 512) == file_pattern((4 + i) * 512, 512));
    }
    CHECK(u1[0].len == 21);
    CHECK(std::memcmp(guest.host(d + 0x10000), "a-serial-that-is-lon", 20) == 0);
    dev.reset();
  }
}

TEST_CASE("blk advance_iovecs moves through partial transfers", "[blk][backend]") {
  uint8_t a[100], b[50], c[10];
  iovec v[3] = {{a, 100}, {b, 50}, {c, 10}};
  CHECK(devices::advance_iovecs(v, 3, 0) == 0);
  CHECK(devices::advance_iovecs(v, 3, 30) == 0);
  CHECK(v[0].iov_base == a + 30);
  CHECK(v[0].iov_len == 70);
  CHECK(devices::advance_iovecs(v, 3, 70) == 1);
  CHECK(devices::advance_iovecs(v, 3, 55) == 2);
  CHECK(v[2].iov_base == c + 5);
  CHECK(devices::advance_iovecs(v, 3, 5) == 3);
}

TEST_CASE("blk device: a queue the driver never enabled is left alone", "[blk][device]") {
  // Linux enables min(num_queues, CPUs) queues; the rest stay not ready, which is legal.
  for (auto engine : test::blk_engines()) {
    TempImage img(kImageSize);
    BlockConfig c = config(img, engine);
    c.num_queues = 2;
    test::FakeGuestMemory guest(BlkHarness::kRam);
    test::DriverQueue q0(guest, 64, 0x1000);
    std::vector<virtio::Queue> queues(2, virtio::Queue(c.queue_size));
    std::vector<virtio::EventFd> events(2);
    test::CountingInterrupt irq;
    devices::VirtioBlock dev(c);
    q0.configure(queues[0], true, true);
    dev.set_acked_features(dev.device_features());
    REQUIRE_FALSE(dev.activate(virtio::ActivateContext{guest.mem(), queues, events, irq}));
    const uint64_t hdr = 0x100000, d = 0x200000;
    devices::VirtioBlkReqHeader h{devices::kBlkTIn, 0, 0};
    std::memcpy(guest.host(hdr), &h, 16);
    q0.add_chain({{hdr, 16, false}, {d, 512, true}, {hdr + 16, 1, true}});
    events[0].signal();
    events[1].signal();
    std::vector<virtio::VirtqUsedElem> used;
    for (int i = 0; i < 5000 && used.empty(); ++i) {
      used = q0.take_used();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(used.size() == 1);
    CHECK(*guest.host(hdr + 16) == kBlkSOk);
    dev.reset();
    CHECK(irq.needs_reset == 0);
  }
}
