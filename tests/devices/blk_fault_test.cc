// virtio-blk under disk faults (devices/fault_backend.h), on both engines: an error is IOERR
// to the guest and the device keeps serving; a short transfer is IOERR, never a success with
// part of the buffer untouched; a flush that failed once fails until restart; delays only
// delay; and past RLIMIT_FSIZE a write is IOERR while minivmm lives on (SIGXFSZ ignored).
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "devices/fault_backend.h"
#include "tests/devices/blk_harness.h"

using namespace minivmm;
using devices::BlockConfig;
using devices::DiskFault;
using devices::kBlkSIoErr;
using devices::kBlkSOk;
using test::BlkHarness;
using test::TempImage;

namespace {

constexpr uint64_t kImageSize = 1 << 20;  // 2048 sectors
constexpr uint64_t kD = BlkHarness::kData;

const char* engine_name(BlockConfig::Engine e) {
  return e == BlockConfig::Engine::kSync ? "sync" : "io_uring";
}

BlockConfig config(const TempImage& img, BlockConfig::Engine engine, const std::string& faults) {
  BlockConfig c;
  c.path = img.path();
  c.engine = engine;
  if (faults.empty()) return c;
  auto parsed = devices::parse_disk_faults(faults);
  REQUIRE(parsed);
  c.faults = *parsed;
  return c;
}

std::vector<uint8_t> pattern(uint64_t offset, uint64_t len) {
  std::vector<uint8_t> out(len);
  for (uint64_t i = 0; i < len; ++i) out[i] = TempImage::pattern_byte(offset + i);
  return out;
}

std::vector<uint8_t> guest_bytes(BlkHarness& h, uint64_t addr, uint64_t len) {
  const uint8_t* p = h.guest.host(addr);
  return std::vector<uint8_t>(p, p + len);
}

// One request; the status byte it got (0xff when it never completed).
uint8_t request(BlkHarness& h, uint32_t type, uint64_t sector, std::vector<test::Buf> data) {
  auto u = h.run(type, sector, data);
  return u ? h.status(0) : 0xff;
}

uint8_t read(BlkHarness& h, uint64_t sector, uint32_t len = 1024) {
  std::memset(h.guest.host(kD), 0xcc, len);
  return request(h, devices::kBlkTIn, sector, {{kD, len, true}});
}

uint8_t write(BlkHarness& h, uint64_t sector, uint8_t fill, uint32_t len = 1024) {
  std::memset(h.guest.host(kD), fill, len);
  return request(h, devices::kBlkTOut, sector, {{kD, len, false}});
}

uint8_t flush(BlkHarness& h) {
  return request(h, devices::kBlkTFlush, 0, {});
}

}  // namespace

TEST_CASE("disk fault specs: what, op, sectors, count, bad ones get one line", "[blk][fault]") {
  auto f = devices::parse_disk_faults("eio:read:100-200:3+delay20:any+short:write+enospc:flush");
  REQUIRE(f);
  REQUIRE(f->size() == 4);
  CHECK((*f)[0].kind == DiskFault::Kind::kError);
  CHECK((*f)[0].error == EIO);
  CHECK((*f)[0].ops == DiskFault::kRead);
  CHECK((*f)[0].first_sector == 100);
  CHECK((*f)[0].last_sector == 200);
  CHECK((*f)[0].count == 3);
  CHECK((*f)[1].kind == DiskFault::Kind::kDelay);
  CHECK((*f)[1].delay_ms == 20);
  CHECK((*f)[2].kind == DiskFault::Kind::kShort);
  CHECK((*f)[3].error == ENOSPC);
  for (const char* bad : {"", "eio", "eio:sideways", "boom:read", "eio:read:9-1", "eio:read:0",
                          "eio:read:x", "delay:read", "delay99999:read", "eio:read:1-2:3:4"}) {
    INFO(bad);
    auto r = devices::parse_disk_faults(bad);
    REQUIRE_FALSE(r);
    CHECK(r.error().find('\n') == std::string::npos);
  }
}

TEST_CASE("disk faults: errors are IOERR in their range and count, and the disk serves on",
          "[blk][fault]") {
  for (auto engine : test::blk_engines()) {
    DYNAMIC_SECTION("engine " << engine_name(engine)) {
      TempImage img(kImageSize);
      BlkHarness h(
          config(img, engine,
                 "eio:read:100-199:2+enospc:write:300-300+efbig:write:400-400:1+eio:discard"));
      h.activate();
      CHECK(read(h, 100) == kBlkSIoErr);
      CHECK(read(h, 50) == kBlkSOk);  // outside the range: untouched
      CHECK(guest_bytes(h, kD, 1024) == pattern(50 * 512, 1024));
      CHECK(read(h, 198) == kBlkSIoErr);  // touches 199
      CHECK(read(h, 150) == kBlkSOk);     // the count is spent
      CHECK(guest_bytes(h, kD, 1024) == pattern(150 * 512, 1024));

      CHECK(write(h, 299, 0x11) == kBlkSIoErr);                      // sectors 299-300
      CHECK(img.read(299 * 512, 1024) == pattern(299 * 512, 1024));  // nothing written
      CHECK(write(h, 400, 0x22) == kBlkSIoErr);
      CHECK(write(h, 400, 0x33) == kBlkSOk);
      CHECK(img.read(400 * 512, 1024) == std::vector<uint8_t>(1024, 0x33));

      devices::VirtioBlkDiscardWriteZeroes seg{10, 8, 0};
      std::memcpy(h.guest.host(kD), &seg, sizeof seg);
      CHECK(request(h, devices::kBlkTDiscard, 0, {{kD, sizeof seg, false}}) == kBlkSIoErr);
      CHECK(flush(h) == kBlkSOk);
    }
  }
}

TEST_CASE("disk faults: a short transfer is IOERR, never a success with stale bytes",
          "[blk][fault]") {
  for (auto engine : test::blk_engines()) {
    DYNAMIC_SECTION("engine " << engine_name(engine)) {
      TempImage img(kImageSize);
      BlkHarness h(config(img, engine, "short:read:0-99+short:write:500-599"));
      h.activate();
      CHECK(read(h, 10, 4096) == kBlkSIoErr);
      CHECK(write(h, 510, 0x44, 4096) == kBlkSIoErr);
      // A one-sector transfer cannot be cut short: it goes through.
      CHECK(read(h, 10, 512) == kBlkSOk);
      CHECK(guest_bytes(h, kD, 512) == pattern(10 * 512, 512));
      // Elsewhere all is well.
      CHECK(read(h, 1000, 4096) == kBlkSOk);
      CHECK(guest_bytes(h, kD, 4096) == pattern(1000 * 512, 4096));
    }
  }
}

TEST_CASE("disk faults: a failed flush stays failed until restart", "[blk][fault]") {
  for (auto engine : test::blk_engines()) {
    DYNAMIC_SECTION("engine " << engine_name(engine)) {
      TempImage img(kImageSize);
      {
        BlkHarness h(config(img, engine, "eio:flush:1"));
        h.activate();
        CHECK(write(h, 20, 0x55) == kBlkSOk);
        CHECK(flush(h) == kBlkSIoErr);
        // The fault is spent, and the host's fdatasync would now succeed: still IOERR.
        CHECK(write(h, 21, 0x66) == kBlkSOk);
        CHECK(flush(h) == kBlkSIoErr);
        // A driver reset is no restart.
        h.dev.reset();
        h.activate();
        CHECK(flush(h) == kBlkSIoErr);
        CHECK(read(h, 20) == kBlkSOk);  // reads still work
      }
      // A new device (minivmm restarted) flushes again.
      BlkHarness fresh(config(img, engine, ""));
      fresh.activate();
      CHECK(flush(fresh) == kBlkSOk);
    }
  }
}

TEST_CASE("disk faults: a delay only delays", "[blk][fault]") {
  for (auto engine : test::blk_engines()) {
    DYNAMIC_SECTION("engine " << engine_name(engine)) {
      TempImage img(kImageSize);
      BlkHarness h(config(img, engine, "delay80:read:0-0"));
      h.activate();
      const auto start = std::chrono::steady_clock::now();
      CHECK(read(h, 0) == kBlkSOk);
      CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(80));
      CHECK(guest_bytes(h, kD, 1024) == pattern(0, 1024));
    }
  }
}

TEST_CASE("disk faults: past RLIMIT_FSIZE a write is IOERR and the process lives", "[blk][fault]") {
  for (auto engine : test::blk_engines()) {
    DYNAMIC_SECTION("engine " << engine_name(engine)) {
      TempImage img(kImageSize);
      const BlockConfig cfg = config(img, engine, "");
      const pid_t pid = ::fork();
      REQUIRE(pid >= 0);
      if (pid == 0) {
        ::signal(SIGXFSZ, SIG_IGN);  // as minivmm's jail has it (vmm/jail.h)
        const rlimit fsize{kImageSize / 2, kImageSize / 2};
        if (::setrlimit(RLIMIT_FSIZE, &fsize) != 0) ::_exit(10);
        int rc = 0;
        {
          BlkHarness h(cfg);
          h.activate();
          if (write(h, 10, 0x77) != kBlkSOk) rc = 11;                       // below the limit
          if (write(h, kImageSize / 512 - 8, 0x77) != kBlkSIoErr) rc = 12;  // above it
          if (read(h, kImageSize / 512 - 8) != kBlkSOk) rc = 13;            // serving on
        }
        ::_exit(rc);
      }
      int ws = 0;
      REQUIRE(::waitpid(pid, &ws, 0) == pid);
      INFO("child exit " << (WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws)));
      CHECK(WIFEXITED(ws));
      CHECK(WEXITSTATUS(ws) == 0);
      CHECK(img.read(10 * 512, 1024) == std::vector<uint8_t>(1024, 0x77));
      CHECK(img.read(kImageSize - 8 * 512, 1024) == pattern(kImageSize - 8 * 512, 1024));
    }
  }
}
