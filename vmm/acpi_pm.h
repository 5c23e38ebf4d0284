// AcpiPowerControl: the hardware-reduced ACPI sleep control and status registers
// (ACPI 6.4 §4.8.3.7) at the I/O ports the FADT names (boot/layout.h). Writing SLP_EN with
// SLP_TYP = S5 to the control register powers the VM off; the status register reads 0 and
// ignores writes (WAK_STS clear). The reset register is the i8042's port 0x64.
//
// Inserted on the port I/O bus at kAcpiSleepControlPort with length 2 (control, status).
// Threads: vCPU threads; stateless apart from the callback.
#pragma once

#include <algorithm>
#include <functional>
#include <span>

#include "boot/layout.h"
#include "mmio/bus.h"

namespace minivmm::vmm {

class AcpiPowerControl final : public mmio::BusDevice {
 public:
  static constexpr uint64_t kBase = boot::kAcpiSleepControlPort;
  static constexpr uint64_t kLength = 2;
  static_assert(boot::kAcpiSleepStatusPort == boot::kAcpiSleepControlPort + 1);

  explicit AcpiPowerControl(std::function<void()> on_power_off)
      : on_power_off_(std::move(on_power_off)) {}

  void read(uint64_t, std::span<uint8_t> data) override {
    std::fill(data.begin(), data.end(), uint8_t{0});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (offset != 0 || data.empty()) return;
    const uint8_t value = data[0];
    const auto sleep_type =
        static_cast<uint8_t>((value & boot::kSleepTypeMask) >> boot::kSleepTypeShift);
    if ((value & boot::kSleepEnable) && sleep_type == boot::kSleepTypeS5 && on_power_off_) {
      on_power_off_();
    }
  }

 private:
  std::function<void()> on_power_off_;
};

}  // namespace minivmm::vmm
