// PvPanic: QEMU's pvpanic ISA device (docs/specs/pvpanic.rst in QEMU): one I/O port
// (boot::kPvpanicPort, 0x505, where the VMM puts it), described in the DSDT as _HID "QEMU0001" (Linux's pvpanic-mmio driver takes the port from
// _CRS). Reads return the events the device supports; a write reports one: PANICKED (bit 0)
// ends the VM at once with the "guest panicked" status, CRASH_LOADED (bit 1, a crash kernel
// takes over) is logged and the guest goes on. Other bits are ignored.
//
// Threads: read()/write() on vCPU threads; the callbacks run there.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "mmio/bus.h"

namespace minivmm::devices {

class PvPanic final : public mmio::BusDevice {
 public:
  static constexpr uint8_t kPanicked = 1u << 0;
  static constexpr uint8_t kCrashLoaded = 1u << 1;

  PvPanic(std::function<void()> on_panic, std::function<void()> on_crash_loaded)
      : on_panic_(std::move(on_panic)), on_crash_loaded_(std::move(on_crash_loaded)) {}

  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) {
      data[i] = offset + i == 0 ? static_cast<uint8_t>(kPanicked | kCrashLoaded) : uint8_t{0};
    }
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset != 0 || data.empty()) return;
    if (data[0] & kPanicked) {
      on_panic_();
    } else if (data[0] & kCrashLoaded) {
      on_crash_loaded_();
    }
  }

 private:
  const std::function<void()> on_panic_;
  const std::function<void()> on_crash_loaded_;
};

}  // namespace minivmm::devices
