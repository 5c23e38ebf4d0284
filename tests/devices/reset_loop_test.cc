// A driver that resets and re-activates a device 10^4 times with I/O in flight: the real
// virtio-mmio transport and the real virtio-blk (its worker thread, its io_uring), driven
// through the registers as a vCPU would. Every reset must wait for the requests in flight,
// and nothing may accumulate: the process's fds, threads and resident memory are the same
// after the loop as after a warm-up.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <memory>
#include <span>
#include <string>

#include "devices/virtio_blk.h"
#include "mmio/virtio_mmio.h"
#include "tests/devices/blk_harness.h"
#include "virtio/spec.h"

using namespace minivmm;
using test::Buf;
using test::DriverQueue;
using test::FakeGuestMemory;
using test::TempImage;

#if defined(__SANITIZE_ADDRESS__)
#define MINIVMM_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MINIVMM_TEST_ASAN 1
#endif
#endif
#ifndef MINIVMM_TEST_ASAN
#define MINIVMM_TEST_ASAN 0
#endif

namespace {

class NullIrq final : public virtio::IrqLine {
 public:
  void trigger() override {}
};

size_t count_entries(const char* dir) {
  size_t n = 0;
  if (DIR* d = ::opendir(dir)) {
    while (const dirent* e = ::readdir(d)) n += e->d_name[0] != '.';
    ::closedir(d);
  }
  return n;
}

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

struct Driver {
  static constexpr uint64_t kRings = 0x1000;
  static constexpr uint64_t kHeaders = 0x100000;
  static constexpr uint64_t kData = 0x200000;
  static constexpr int kInFlight = 8;

  FakeGuestMemory guest{16 << 20};
  NullIrq irq;
  std::shared_ptr<devices::VirtioBlock> blk;
  std::unique_ptr<mmio::VirtioMmioTransport> transport;
  uint64_t completed = 0;    // reads the device completed before a reset
  uint64_t interrupted = 0;  // cycles reset with some of their reads not completed

  explicit Driver(const devices::BlockConfig& cfg)
      : blk(std::make_shared<devices::VirtioBlock>(cfg)),
        transport(std::make_unique<mmio::VirtioMmioTransport>(blk, guest.mem(), irq)) {}

  void wr(uint64_t reg, uint32_t v) {
    transport->write(reg, std::span(reinterpret_cast<const uint8_t*>(&v), sizeof v));
  }
  uint32_t rd(uint64_t reg) {
    uint32_t v = 0;
    transport->read(reg, std::span(reinterpret_cast<uint8_t*>(&v), sizeof v));
    return v;
  }

  // One life of the driver: negotiate, set up queue 0, DRIVER_OK, make kInFlight reads
  // available and notify, then reset at once, with the reads still in flight.
  bool cycle() {
    wr(mmio::kRegStatus, virtio::kStatusAcknowledge);
    wr(mmio::kRegStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
    wr(mmio::kRegDriverFeaturesSel, 1);
    wr(mmio::kRegDriverFeatures, 1);  // VERSION_1 (bit 32)
    wr(mmio::kRegDriverFeaturesSel, 0);
    wr(mmio::kRegDriverFeatures, 0);
    const uint32_t features_ok =
        virtio::kStatusAcknowledge | virtio::kStatusDriver | virtio::kStatusFeaturesOk;
    wr(mmio::kRegStatus, features_ok);
    if ((rd(mmio::kRegStatus) & virtio::kStatusFeaturesOk) == 0) return false;
    DriverQueue dq(guest, 64, kRings);
    wr(mmio::kRegQueueSel, 0);
    wr(mmio::kRegQueueNum, dq.size());
    auto addr = [this](uint64_t reg, uint64_t a) {
      wr(reg, static_cast<uint32_t>(a));
      wr(reg + 4, static_cast<uint32_t>(a >> 32));
    };
    addr(mmio::kRegQueueDescLow, dq.desc_addr());
    addr(mmio::kRegQueueDriverLow, dq.avail_addr());
    addr(mmio::kRegQueueDeviceLow, dq.used_addr());
    wr(mmio::kRegQueueReady, 1);
    wr(mmio::kRegStatus, features_ok | virtio::kStatusDriverOk);
    if ((rd(mmio::kRegStatus) & virtio::kStatusDriverOk) == 0) return false;
    for (int i = 0; i < kInFlight; ++i) {
      const uint64_t h = kHeaders + uint64_t(i) * 32;
      devices::VirtioBlkReqHeader hdr{devices::kBlkTIn, 0, uint64_t(i) * 8};
      std::memcpy(guest.host(h), &hdr, sizeof hdr);
      *guest.host(h + 16) = 0xff;  // the status byte, until the device writes it
      dq.add_chain({{h, 16, false}, {kData + uint64_t(i) * 4096, 4096, true}, {h + 16, 1, true}});
    }
    wr(mmio::kRegQueueNotify, 0);
    wr(mmio::kRegStatus, 0);  // reset: waits for the reads in flight
    int done = 0;
    for (int i = 0; i < kInFlight; ++i) done += *guest.host(kHeaders + uint64_t(i) * 32 + 16) == 0;
    completed += static_cast<uint64_t>(done);
    interrupted += done < kInFlight;
    return rd(mmio::kRegStatus) == 0;
  }
};

}  // namespace

TEST_CASE("reset and re-activation 10^4 times with I/O in flight leak no fd, thread or memory",
          "[blk][device][hostile]") {
  std::string reason;
  const bool uring = devices::io_uring_available(reason);
  if (!uring) WARN("io_uring unavailable (" << reason << "): the loop runs on the sync engine");
  TempImage img(1 << 20);
  devices::BlockConfig cfg;
  cfg.path = img.path();
  cfg.engine = uring ? devices::BlockConfig::Engine::kIoUring : devices::BlockConfig::Engine::kSync;
  Driver driver(cfg);
  for (int i = 0; i < 200; ++i) REQUIRE(driver.cycle());  // warm-up: allocator, page cache
  const size_t fds = count_entries("/proc/self/fd");
  const size_t threads = count_entries("/proc/self/task");
  const long rss = rss_kib();
  for (int i = 0; i < 10'000; ++i) {
    if (!driver.cycle()) FAIL("cycle " << i << ": the device refused a state");
  }
  // The loop did I/O, and reset it midway: both happened, many times.
  INFO(driver.completed << " reads completed, " << driver.interrupted
                        << " cycles reset with reads not completed");
  // How many reads complete before the reset, and how many resets catch reads in flight,
  // depends on speed and load (g++ build, quiet: 75944 and 707; under ASan: 81498 and 14,
  // or 584 and 10127 with the machine loaded): both must happen.
  CHECK(driver.completed > 0);
  CHECK(driver.interrupted > 0);
  CHECK(count_entries("/proc/self/fd") == fds);
  CHECK(count_entries("/proc/self/task") == threads);
  INFO("RSS " << rss << " KiB after the warm-up, " << rss_kib() << " KiB after 10^4 cycles");
#if MINIVMM_TEST_ASAN
  WARN("RSS not compared under ASan: its quarantine keeps freed memory resident");
#else
  CHECK(rss_kib() < rss + 1024);
#endif
}
