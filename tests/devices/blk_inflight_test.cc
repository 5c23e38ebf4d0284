// virtio-blk with many requests in flight, reset during I/O, and the backends and disk
// image on their own.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>

#include <cstring>
#include <map>

#include "devices/disk_backend.h"
#include "devices/disk_image.h"
#include "devices/event_loop.h"
#include "tests/devices/blk_harness.h"

using namespace minivmm;
using devices::BlockConfig;
using devices::kBlkSOk;
using test::BlkHarness;
using test::TempImage;

namespace {

bool uring_or_warn() {
  std::string reason;
  if (devices::io_uring_available(reason)) return true;
  WARN("SKIPPED: io_uring unavailable: " << reason);
  return false;
}

}  // namespace

TEST_CASE("blk io_uring: many requests in flight each complete once with correct data",
          "[blk][uring]") {
  if (!uring_or_warn()) return;
  constexpr uint32_t kReqs = 128;
  constexpr uint32_t kLen = 4096;
  TempImage img(kReqs * 2 * kLen);
  BlockConfig c;
  c.path = img.path();
  c.engine = BlockConfig::Engine::kIoUring;
  c.queue_size = 512;
  BlkHarness h(c, 512);
  h.activate();
  REQUIRE(std::string(h.dev.backend_name()) == "io_uring");

  // Half reads (of the first half of the disk), half writes (to the second half), all
  // published before a single notification.
  for (uint32_t i = 0; i < kReqs; ++i) {
    const uint64_t buf = BlkHarness::kData + uint64_t{i} * kLen;
    const bool write = i % 2 == 1;
    const uint64_t sector = (write ? kReqs * kLen + i * kLen : i * kLen) / 512;
    if (write) std::memset(h.guest.host(buf), static_cast<int>(i), kLen);
    h.add_chain_at(static_cast<uint16_t>(i * 3),
                   {{h.header(i, write ? devices::kBlkTOut : devices::kBlkTIn, sector), 16, false},
                    {buf, kLen, !write},
                    {h.status_addr(i), 1, true}});
  }
  h.kick();
  auto used = h.wait_used(kReqs);
  REQUIRE(used.size() == kReqs);
  std::map<uint32_t, int> seen;
  for (const auto& u : used) {
    ++seen[u.id];
    const uint32_t i = u.id / 3;
    CHECK(u.len == (i % 2 == 1 ? 1u : kLen + 1));
  }
  CHECK(seen.size() == kReqs);
  for (const auto& [id, n] : seen) CHECK(n == 1);
  for (uint32_t i = 0; i < kReqs; ++i) {
    CHECK(h.status(i) == kBlkSOk);
    const uint64_t buf = BlkHarness::kData + uint64_t{i} * kLen;
    if (i % 2 == 0) {
      std::vector<uint8_t> want(kLen);
      for (uint32_t k = 0; k < kLen; ++k) want[k] = TempImage::pattern_byte(i * kLen + k);
      CHECK(std::memcmp(h.guest.host(buf), want.data(), kLen) == 0);
    } else {
      CHECK(img.read(kReqs * kLen + i * kLen, kLen) ==
            std::vector<uint8_t>(kLen, static_cast<uint8_t>(i)));
    }
  }
  // No extra completions trickle in later.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(h.dq.take_used().empty());
}

TEST_CASE("blk device: reset while I/O is in flight, then activate again", "[blk][reset]") {
  std::vector<BlockConfig::Engine> engines{BlockConfig::Engine::kSync};
  if (uring_or_warn()) engines.push_back(BlockConfig::Engine::kIoUring);
  for (auto engine : engines) {
    constexpr uint32_t kReqs = 64;
    constexpr uint32_t kLen = 64 * 1024;
    TempImage img(uint64_t{kReqs} * kLen);
    BlockConfig c;
    c.path = img.path();
    c.engine = engine;
    c.direct = true;  // make the reads real device I/O, so that they are in flight
    BlkHarness h(c);
    h.activate();
    for (uint32_t i = 0; i < kReqs; ++i) {
      h.add_chain_at(static_cast<uint16_t>(i * 3),
                     {{h.header(i, devices::kBlkTIn, uint64_t{i} * kLen / 512), 16, false},
                      {BlkHarness::kData + uint64_t{i} * kLen, kLen, true},
                      {h.status_addr(i), 1, true}});
    }
    h.kick();
    h.dev.reset();  // must return with nothing in flight
    CHECK_FALSE(h.dev.active());
    const uint16_t used_after_reset = h.dq.used_idx();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    CHECK(h.dq.used_idx() == used_after_reset);  // nothing touched the ring after reset

    // The driver re-initialises: a fresh ring elsewhere, the same device.
    h.queues[0].reset();
    test::DriverQueue dq2(h.guest, 256, BlkHarness::kRings + 0x10000);
    dq2.configure(h.queues[0], false, true);
    h.dev.set_acked_features(test::blk_features_all());
    REQUIRE_FALSE(
        h.dev.activate(virtio::ActivateContext{h.guest.mem(), h.queues, h.events, h.irq}));
    dq2.add_chain({{h.header(0, devices::kBlkTIn, 3), 16, false},
                   {BlkHarness::kData, 512, true},
                   {h.status_addr(0), 1, true}});
    h.kick();
    std::vector<virtio::VirtqUsedElem> u;
    for (int i = 0; i < 5000 && u.empty(); ++i) {
      u = dq2.take_used();
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    REQUIRE(u.size() == 1);
    CHECK(u[0].len == 513);
    CHECK(h.status(0) == kBlkSOk);
    CHECK(*h.guest.host(BlkHarness::kData) == TempImage::pattern_byte(3 * 512));
  }
}

TEST_CASE("blk backends: ops complete with the right results", "[blk][backend]") {
  TempImage img(1 << 20);
  devices::DiskImage image(img.path(), false, false);
  std::vector<std::unique_ptr<devices::DiskBackend>> backends;
  backends.push_back(devices::make_sync_backend(image));
  if (uring_or_warn()) {
    std::string err;
    backends.push_back(devices::make_uring_backend(image, 64, err));
    REQUIRE(backends.back());
  }
  for (auto& b : backends) {
    INFO("backend " << b->name());
    constexpr int kOps = 64;
    std::vector<std::vector<uint8_t>> bufs(kOps, std::vector<uint8_t>(4096));
    std::vector<iovec> iovs(kOps * 2);
    std::vector<devices::DiskOp> ops(kOps);
    for (int i = 0; i < kOps; ++i) {
      auto& op = ops[static_cast<size_t>(i)];
      auto* base = bufs[static_cast<size_t>(i)].data();
      iovs[static_cast<size_t>(2 * i)] = {base, 1000};  // unaligned split: fine without O_DIRECT
      iovs[static_cast<size_t>(2 * i + 1)] = {base + 1000, 3096};
      op.kind = devices::DiskOp::Kind::kRead;
      op.offset = static_cast<uint64_t>(i) * 4096;
      op.length = 4096;
      op.iov = &iovs[static_cast<size_t>(2 * i)];
      op.iov_count = 2;
      REQUIRE(b->has_capacity());
      b->enqueue(op);
    }
    b->submit();
    std::map<devices::DiskOp*, int> done;
    b->drain([&](devices::DiskOp& op, int64_t r) {
      ++done[&op];
      CHECK(r == 4096);
    });
    CHECK(done.size() == kOps);
    CHECK(b->in_flight() == 0);
    for (int i = 0; i < kOps; ++i) {
      CHECK(bufs[static_cast<size_t>(i)] == img.read(static_cast<uint64_t>(i) * 4096, 4096));
    }
    // Reading past the end of the file is an error, not a hang.
    devices::DiskOp past;
    iovec v{bufs[0].data(), 4096};
    past.kind = devices::DiskOp::Kind::kRead;
    past.offset = 1 << 20;
    past.length = 4096;
    past.iov = &v;
    past.iov_count = 1;
    b->enqueue(past);
    int64_t result = 0;
    b->drain([&](devices::DiskOp&, int64_t r) { result = r; });
    CHECK(result < 0);
  }
}

TEST_CASE("blk disk image: locking and errors", "[blk][image]") {
  TempImage img(4096 + 100);
  {
    devices::DiskImage a(img.path(), false, false);
    CHECK(a.capacity_sectors() == 8);  // rounded down
    try {
      devices::DiskImage b(img.path(), false, false);
      FAIL("second writer opened the image");
    } catch (const devices::DiskImageError& e) {
      CHECK(std::string(e.what()) == "disk image " + img.path() + " is locked by another process");
    }
    CHECK_THROWS_AS(devices::DiskImage(img.path(), true, false), devices::DiskImageError);
  }
  {
    devices::DiskImage r1(img.path(), true, false);
    devices::DiskImage r2(img.path(), true, false);  // readers share
    CHECK_THROWS_WITH(devices::DiskImage(img.path(), false, false),
                      Catch::Contains("locked by another process"));
    // Opened O_RDONLY: the kernel refuses writes.
    CHECK(::pwrite(r1.fd(), "x", 1, 0) < 0);
  }
  CHECK_THROWS_WITH(devices::DiskImage("/tmp", false, false), Catch::Contains("is a directory"));
  CHECK_THROWS_WITH(devices::DiskImage("/nonexistent/disk.img", true, false),
                    Catch::Contains("cannot open disk image"));
}

TEST_CASE("event loop: dispatch and stop", "[event_loop]") {
  devices::EventLoop loop;
  virtio::EventFd a;
  int fired = 0;
  loop.add(a.fd(), devices::EventLoop::kIn, [&](uint32_t) {
    a.consume();
    ++fired;
    loop.stop();
  });
  a.signal();
  loop.run();
  CHECK(fired == 1);
  CHECK(loop.run_once(0) == 0);
  std::thread t([&] { loop.stop(); });
  loop.run();
  t.join();
  CHECK(fired == 1);
}

namespace {

// Counts the poll phases and finds "work" when another thread raised a flag, without any fd.
class FlagPoller final : public devices::Poller {
 public:
  void poll_begin() override { ++begins; }
  bool poll() override {
    if (!flag.exchange(false)) return false;
    ++found;
    return true;
  }
  void poll_end() override { ++ends; }

  std::atomic<bool> flag{false};
  std::atomic<int> begins{0}, ends{0}, found{0};
};

// Spins until `pred` holds or 10 s passed (so that a broken loop fails instead of hanging).
template <typename Pred>
bool spin_until(Pred pred) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

}  // namespace

TEST_CASE("event loop: polls after a wake-up until the budget passes without work",
          "[event_loop][poll]") {
  devices::EventLoop loop;
  virtio::EventFd a;
  FlagPoller poller;
  std::atomic<int> fired{0};
  loop.add(a.fd(), devices::EventLoop::kIn, [&](uint32_t) {
    a.consume();
    ++fired;
  });
  SECTION("a budget of zero never polls") {
    loop.set_poller(&poller, std::chrono::microseconds(0));
    std::thread t([&] {
      a.signal();
      spin_until([&] { return fired.load() > 0; });
      loop.stop();
    });
    loop.run();
    t.join();
    CHECK(poller.begins == 0);
  }
  SECTION("work found by polling is handled without a wake-up, and polling then ends") {
    loop.set_poller(&poller, std::chrono::milliseconds(300));
    std::thread t([&] {
      a.signal();
      if (spin_until([&] { return poller.begins.load() > 0; })) {
        poller.flag = true;  // inside the budget: found by polling
        spin_until([&] { return poller.found.load() > 0; });
        spin_until([&] { return poller.ends.load() > 0; });  // the budget passed
      }
      loop.stop();
    });
    loop.run();
    t.join();
    CHECK(fired == 1);
    CHECK(poller.found == 1);
    CHECK(poller.begins == poller.ends);
    CHECK(poller.begins >= 1);
  }
  SECTION("stop() ends a poll phase at once") {
    loop.set_poller(&poller, std::chrono::seconds(30));
    const auto t0 = std::chrono::steady_clock::now();
    std::thread t([&] {
      a.signal();
      spin_until([&] { return poller.begins.load() > 0; });
      loop.stop();
    });
    loop.run();
    t.join();
    CHECK(poller.begins == 1);
    CHECK(poller.ends == 1);
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
  }
}

// A driver that follows the device's notification suppression (virtio 1.2 §2.7.10): with
// EVENT_IDX it notifies only when avail_event lies in [old, new), without it only when the
// used ring's NO_NOTIFY flag is clear.
TEST_CASE("blk polling: requests published without a notification are served while the "
          "device polls; afterwards notifications are asked for again",
          "[blk][poll]") {
  const bool event_idx = GENERATE(false, true);
  CAPTURE(event_idx);
  constexpr uint32_t kLen = 4096;
  TempImage img(8 * kLen);
  BlockConfig c;
  c.path = img.path();
  // Long enough that steps 2 and 3 fall inside it even on a slow machine, and longer than
  // they may wait: served later, by poll_end(), would fail them.
  c.poll_us = 1'000'000;
  BlkHarness h(c);
  h.activate(test::blk_features_all(), event_idx);
  auto publish = [&](uint32_t i) {
    const uint16_t old = h.dq.avail_idx();
    h.add_chain_at(static_cast<uint16_t>(i * 3),
                   {{h.header(i, devices::kBlkTIn, uint64_t{i} * kLen / 512), 16, false},
                    {BlkHarness::kData + uint64_t{i} * kLen, kLen, true},
                    {h.status_addr(i), 1, true}});
    std::atomic_thread_fence(std::memory_order_seq_cst);
    const uint16_t now = h.dq.avail_idx();
    const bool notify =
        event_idx ? static_cast<uint16_t>(now - h.dq.avail_event() - 1) <
                        static_cast<uint16_t>(now - old)
                  : (h.dq.used_flags() & virtio::kVirtqUsedFNoNotify) == 0;
    if (notify) h.kick();
    return notify;
  };
  auto notifications_on = [&] {
    return event_idx ? h.dq.avail_event() == h.dq.avail_idx()
                     : (h.dq.used_flags() & virtio::kVirtqUsedFNoNotify) == 0;
  };
  // 1. An idle device. (Kicked whatever the ring says: the I/O thread's first pass over the
  //    queue may be toggling notifications right now.)
  h.add_chain_at(0, {{h.header(0, devices::kBlkTIn, 0), 16, false},
                     {BlkHarness::kData, kLen, true},
                     {h.status_addr(0), 1, true}});
  h.kick();
  REQUIRE(h.wait_used(1).size() == 1);
  // 2. The I/O thread is polling now (or about to: the request is served either way).
  publish(1);
  REQUIRE(h.wait_used(1, 300).size() == 1);
  // 3. Inside the window: no notification asked for, and the request is served by polling.
  CHECK_FALSE(publish(2));
  REQUIRE(h.wait_used(1, 300).size() == 1);
  // 4. Once the window has passed without work, notifications are back on.
  REQUIRE(spin_until(notifications_on));
  CHECK(publish(3));
  REQUIRE(h.wait_used(1).size() == 1);
  for (uint32_t i = 0; i < 4; ++i) {
    CHECK(h.status(i) == kBlkSOk);
    CHECK(*h.guest.host(BlkHarness::kData + uint64_t{i} * kLen) ==
          TempImage::pattern_byte(uint64_t{i} * kLen));
  }
}

TEST_CASE("blk io_uring: requests published while others are in flight are not lost", "[blk][uring]") {
  if (!uring_or_warn()) return;
  const uint32_t poll_us = GENERATE(0u, BlockConfig::kSuggestedPollUs);
  CAPTURE(poll_us);
  constexpr uint32_t kReqs = 160;
  constexpr uint32_t kLen = 4096;
  TempImage img(uint64_t{kReqs} * kLen);
  BlockConfig c;
  c.path = img.path();
  c.direct = true;
  c.queue_size = 512;
  c.poll_us = poll_us;
  BlkHarness h(c, 512);
  h.activate();  // no EVENT_IDX: the driver follows VIRTQ_USED_F_NO_NOTIFY
  uint32_t next = 0;
  size_t done = 0;
  auto publish_some = [&](uint32_t n) {
    for (uint32_t k = 0; k < n && next < kReqs; ++k, ++next) {
      h.add_chain_at(static_cast<uint16_t>(next * 3),
                     {{h.header(next, devices::kBlkTIn, uint64_t{next} * kLen / 512), 16, false},
                      {BlkHarness::kData + uint64_t{next} * kLen, kLen, true},
                      {h.status_addr(next), 1, true}});
    }
    // virtio 1.2 §2.7.7.2: kick unless the device said it does not need one.
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if ((h.dq.used_flags() & virtio::kVirtqUsedFNoNotify) == 0) h.kick();
  };
  publish_some(32);
  while (done < kReqs) {
    auto u = h.wait_used(1, 10000);
    REQUIRE_FALSE(u.empty());
    done += u.size();
    publish_some(static_cast<uint32_t>(u.size()));
  }
  for (uint32_t i = 0; i < kReqs; ++i) {
    CHECK(h.status(i) == kBlkSOk);
    CHECK(*h.guest.host(BlkHarness::kData + uint64_t{i} * kLen) ==
          TempImage::pattern_byte(uint64_t{i} * kLen));
  }
}

TEST_CASE("blk O_DIRECT: a buffer O_DIRECT refuses goes through the page cache, data intact",
          "[blk][direct]") {
  constexpr uint32_t kLen = 4096;
  TempImage img(4 * kLen);
  // Does O_DIRECT here refuse a buffer that is not 512-byte aligned? Then the device must
  // fall back; otherwise the checks below still hold, but the fallback is not exercised.
  {
    const int fd = ::open(img.path().c_str(), O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0) {
      WARN("SKIPPED: O_DIRECT unsupported on /tmp: " << std::strerror(errno));
      return;
    }
    alignas(4096) static uint8_t probe[2 * kLen];
    const bool refused = ::pread(fd, probe + 1, kLen, 0) < 0 && errno == EINVAL;
    ::close(fd);
    if (!refused) WARN("O_DIRECT accepts unaligned buffers here: the fallback is not exercised");
  }
  std::vector<BlockConfig::Engine> engines{BlockConfig::Engine::kSync};
  if (uring_or_warn()) engines.push_back(BlockConfig::Engine::kIoUring);
  for (auto engine : engines) {
    BlockConfig c;
    c.path = img.path();
    c.engine = engine;
    c.direct = true;
    BlkHarness h(c);
    h.activate();
    const uint64_t odd = BlkHarness::kData + 1;  // a guest buffer at an odd address
    // Read sector 8 into it.
    auto u = h.run(devices::kBlkTIn, 8, {{odd, kLen, true}});
    REQUIRE(u);
    CHECK(h.status(0) == kBlkSOk);
    CHECK(u->len == kLen + 1);
    CHECK(std::memcmp(h.guest.host(odd), img.read(8 * 512, kLen).data(), kLen) == 0);
    // Write it back, changed, to sector 16; then an aligned direct read sees the new data.
    std::memset(h.guest.host(odd), 0xa5, kLen);
    u = h.run(devices::kBlkTOut, 16, {{odd, kLen, false}});
    REQUIRE(u);
    CHECK(h.status(0) == kBlkSOk);
    u = h.run(devices::kBlkTIn, 16, {{BlkHarness::kData + 2 * kLen, kLen, true}});
    REQUIRE(u);
    CHECK(h.status(0) == kBlkSOk);
    CHECK(std::vector<uint8_t>(h.guest.host(BlkHarness::kData + 2 * kLen),
                               h.guest.host(BlkHarness::kData + 2 * kLen) + kLen) ==
          std::vector<uint8_t>(kLen, 0xa5));
    CHECK(img.read(16 * 512, kLen) == std::vector<uint8_t>(kLen, 0xa5));
  }
}
