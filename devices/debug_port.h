// DebugPort: the boot-progress port (Cloud Hypervisor's convention: port 0x80). Each byte the
// guest writes is reported, with the time elapsed since the VMM process started, to a
// callback (the VMM logs it; the benchmarks read those lines). Reads return 0.
//
// Threads: write() on vCPU threads; the callback runs on that thread. entries() on any
// thread. A mutex guards the record.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "mmio/bus.h"

namespace minivmm::devices {

class DebugPort final : public mmio::BusDevice {
 public:
  static constexpr uint16_t kPort = 0x80;
  static constexpr size_t kMaxEntries = 4096;  // the record stops growing, the log does not

  struct Entry {
    uint8_t value;
    std::chrono::nanoseconds since_start;
  };
  using Callback = std::function<void(const Entry&)>;

  DebugPort(std::chrono::steady_clock::time_point start, Callback callback);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  std::vector<Entry> entries() const;

 private:
  const std::chrono::steady_clock::time_point start_;
  const Callback callback_;
  mutable std::mutex mutex_;
  std::vector<Entry> entries_;
};

}  // namespace minivmm::devices
