// DebugExit: the guest's way to end the VM with a status, for test kernels and CI (the port
// test OSes use for QEMU's isa-debug-exit). A 1-, 2- or 4-byte write of v at the base port
// reports a status to a callback, which stops the VM:
//   kMinivmm (default, port 0xf4): status v & 0xff, so 0 is success;
//   kQemu (port 0x501 unless given): QEMU's formula ((v << 1) | 1) & 0xff, so that kernels
//   written for QEMU's isa-debug-exit run unchanged (0 is then unreachable, as under QEMU).
// Writes of other widths, or at another offset of a wider window, are ignored; reads return
// 0xff (no device). See README, "Running tests in a guest".
//
// Threads: write() on vCPU threads; the callback runs there.
#pragma once

#include <cstdint>
#include <functional>
#include <span>

#include "mmio/bus.h"

namespace minivmm::devices {

class DebugExit final : public mmio::BusDevice {
 public:
  enum class Formula { kMinivmm, kQemu };
  static constexpr uint16_t kMinivmmPort = 0xf4;
  static constexpr uint16_t kQemuPort = 0x501;
  static constexpr uint16_t kQemuSize = 2;  // QEMU's default iosize

  using Callback = std::function<void(uint8_t status, uint32_t value)>;
  DebugExit(Formula formula, Callback callback)
      : formula_(formula), callback_(std::move(callback)) {}

  // The status a written value gives.
  static uint8_t status_of(Formula formula, uint32_t value) {
    return formula == Formula::kQemu ? static_cast<uint8_t>((value << 1) | 1)
                                     : static_cast<uint8_t>(value);
  }

  void read(uint64_t, std::span<uint8_t> data) override {
    for (uint8_t& b : data) b = 0xff;
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset != 0 || (data.size() != 1 && data.size() != 2 && data.size() != 4)) return;
    uint32_t value = 0;
    for (size_t i = 0; i < data.size(); ++i) value |= uint32_t{data[i]} << (8 * i);
    callback_(status_of(formula_, value), value);
  }

 private:
  const Formula formula_;
  const Callback callback_;
};

}  // namespace minivmm::devices
