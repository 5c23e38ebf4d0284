// Test helpers for virtio-blk: temporary disk images, an interrupt that counts, and a
// harness that wires a VirtioBlock to fake guest memory and a driver-side queue the way a
// transport would. Single test thread plus the device's I/O thread.
#pragma once

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "devices/disk_backend.h"
#include "devices/virtio_blk.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

namespace minivmm::test {

// A temporary file of `size` bytes filled with a position-dependent pattern (or zeroes).
class TempImage {
 public:
  explicit TempImage(uint64_t size, bool pattern = true) {
    char name[] = "/tmp/minivmm-blk-XXXXXX";
    fd_ = ::mkstemp(name);
    if (fd_ < 0) throw std::runtime_error("mkstemp failed");
    path_ = name;
    if (::ftruncate(fd_, static_cast<off_t>(size)) != 0) throw std::runtime_error("ftruncate");
    if (pattern) {
      std::vector<uint8_t> buf(size);
      for (uint64_t i = 0; i < size; ++i) buf[i] = pattern_byte(i);
      if (::pwrite(fd_, buf.data(), buf.size(), 0) != static_cast<ssize_t>(buf.size())) {
        throw std::runtime_error("pwrite");
      }
    }
  }
  ~TempImage() {
    ::close(fd_);
    ::unlink(path_.c_str());
  }
  TempImage(const TempImage&) = delete;
  TempImage& operator=(const TempImage&) = delete;

  static uint8_t pattern_byte(uint64_t offset) {
    return static_cast<uint8_t>((offset * 7 + (offset >> 9) * 13) & 0xff);
  }
  const std::string& path() const { return path_; }
  std::vector<uint8_t> read(uint64_t offset, uint64_t len) const {
    std::vector<uint8_t> out(len);
    if (::pread(fd_, out.data(), len, static_cast<off_t>(offset)) != static_cast<ssize_t>(len)) {
      throw std::runtime_error("pread");
    }
    return out;
  }
  void write(uint64_t offset, const std::vector<uint8_t>& data) const {
    if (::pwrite(fd_, data.data(), data.size(), static_cast<off_t>(offset)) !=
        static_cast<ssize_t>(data.size())) {
      throw std::runtime_error("pwrite");
    }
  }

 private:
  int fd_ = -1;
  std::string path_;
};

class CountingInterrupt final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t reason) override {
    if (reason == virtio::kInterruptUsedBuffer) count_.fetch_add(1);
  }
  bool set_needs_reset() override {
    needs_reset.fetch_add(1);
    return true;
  }
  uint64_t count() const { return count_.load(); }

  std::atomic<int> needs_reset{0};

 private:
  std::atomic<uint64_t> count_{0};
};

// Both engines; io_uring only where it works (reported, never silently skipped).
inline std::vector<devices::BlockConfig::Engine> blk_engines() {
  std::vector<devices::BlockConfig::Engine> out{devices::BlockConfig::Engine::kSync};
  std::string reason;
  if (devices::io_uring_available(reason)) {
    out.push_back(devices::BlockConfig::Engine::kIoUring);
  } else {
    WARN("SKIPPED: io_uring unavailable: " << reason);
  }
  return out;
}

inline uint64_t blk_features_all() {
  using virtio::feature_bit;
  return feature_bit(virtio::kFVersion1) | feature_bit(devices::kBlkFFlush) |
         feature_bit(devices::kBlkFDiscard) | feature_bit(devices::kBlkFWriteZeroes) |
         feature_bit(devices::kBlkFBlkSize) | feature_bit(devices::kBlkFSegMax);
}

// Guest layout: rings at 0x1000, request headers from 0x100000, data from 0x200000.
class BlkHarness {
 public:
  static constexpr uint64_t kRam = 64ull << 20;
  static constexpr uint64_t kRings = 0x1000;
  static constexpr uint64_t kHeaders = 0x100000;
  static constexpr uint64_t kData = 0x400000;

  explicit BlkHarness(devices::BlockConfig cfg, uint16_t qsize = 256)
      : guest(kRam),
        dq(guest, qsize, kRings),
        queues(1, virtio::Queue(cfg.queue_size)),
        events(1),
        dev(cfg) {}
  ~BlkHarness() { dev.reset(); }

  void activate(uint64_t features = blk_features_all(), bool event_idx = false,
                bool indirect = true) {
    if (event_idx) features |= virtio::feature_bit(virtio::kFEventIdx);
    if (indirect) features |= virtio::feature_bit(virtio::kFIndirectDesc);
    dq.configure(queues[0], event_idx, indirect);
    dev.set_acked_features(features & dev.device_features());
    auto err = dev.activate(virtio::ActivateContext{guest.mem(), queues, events, irq});
    if (err) throw std::runtime_error(err->message);
  }

  // Writes a request header for slot `i` and returns its guest address.
  uint64_t header(uint32_t i, uint32_t type, uint64_t sector) {
    const uint64_t addr = kHeaders + uint64_t{i} * 32;
    devices::VirtioBlkReqHeader h{type, 0, sector};
    std::memcpy(guest.host(addr), &h, sizeof(h));
    *guest.host(status_addr(i)) = 0xff;
    return addr;
  }
  uint64_t status_addr(uint32_t i) const { return kHeaders + uint64_t{i} * 32 + 16; }
  uint8_t status(uint32_t i) const { return *guest.host(status_addr(i)); }

  // Writes descriptors starting at table index `first` (no free-list: tests pick disjoint
  // ranges) and publishes the head.
  uint16_t add_chain_at(uint16_t first, const std::vector<Buf>& bufs) {
    for (size_t k = 0; k < bufs.size(); ++k) {
      const bool last = k + 1 == bufs.size();
      const auto idx = static_cast<uint16_t>(first + k);
      virtio::VirtqDesc d{bufs[k].addr, bufs[k].len,
                          static_cast<uint16_t>((bufs[k].write ? virtio::kVirtqDescFWrite : 0) |
                                                (last ? 0 : virtio::kVirtqDescFNext)),
                          static_cast<uint16_t>(last ? 0 : idx + 1)};
      dq.write_desc(idx, d);
    }
    dq.publish(first);
    return first;
  }

  // The driver's notification, as KVM's ioeventfd (or the transport) delivers it.
  void kick() { events[0].signal(); }

  // Waits until `n` more used elements appeared; returns them.
  std::vector<virtio::VirtqUsedElem> wait_used(size_t n, int timeout_ms = 10000) {
    std::vector<virtio::VirtqUsedElem> out;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
    while (out.size() < n && std::chrono::steady_clock::now() < deadline) {
      auto got = dq.take_used();
      out.insert(out.end(), got.begin(), got.end());
      if (out.size() < n) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    return out;
  }

  // One request: header + bufs + status, as a single chain at table index 0; waits.
  std::optional<virtio::VirtqUsedElem> run(uint32_t type, uint64_t sector,
                                           const std::vector<Buf>& data) {
    std::vector<Buf> bufs{{header(0, type, sector), 16, false}};
    bufs.insert(bufs.end(), data.begin(), data.end());
    bufs.push_back({status_addr(0), 1, true});
    add_chain_at(0, bufs);
    kick();
    auto used = wait_used(1);
    if (used.size() != 1) return std::nullopt;
    return used[0];
  }

  FakeGuestMemory guest;
  DriverQueue dq;
  std::vector<virtio::Queue> queues;
  std::vector<virtio::EventFd> events;  // the transport's queue events
  CountingInterrupt irq;
  devices::VirtioBlock dev;
  std::atomic<int>& needs_reset = irq.needs_reset;  // DEVICE_NEEDS_RESET requests
};

}  // namespace minivmm::test
