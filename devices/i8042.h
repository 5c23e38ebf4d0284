// I8042: the PS/2 keyboard controller, as much of it as Linux touches, and above all its
// "pulse reset line" command (0xFE to the command port), which Linux uses to reboot
// (reboot=k) and which the FADT's RESET_REG also names. A reset ends the VM as a reboot
// through the `on_reset` callback. No keyboard or mouse is attached: keyboard commands are
// ignored, so Linux's atkbd probe finds nothing.
//
// Inserted on the port I/O bus as one range [0x60, 0x65): offset 0 is the data port (0x60),
// offset 4 the status/command port (0x64). Port 0x61 (speaker) is handled inside KVM's PIT.
//
// Threads: read()/write() on vCPU threads, serialised by a mutex; `on_reset` is called on the
// vCPU thread that wrote the command, without the mutex held.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "mmio/bus.h"

namespace minivmm::devices {

class I8042 final : public mmio::BusDevice {
 public:
  static constexpr uint16_t kBasePort = 0x60;
  static constexpr uint64_t kPortRange = 5;
  static constexpr uint64_t kDataOffset = 0;
  static constexpr uint64_t kCommandOffset = 4;
  // Answers waiting for the guest to read them. A real 8042 has a one-byte output buffer;
  // more answers than fit are dropped, so that a guest repeating a command without reading
  // cannot grow the queue (host memory) without bound. Linux reads each answer before it
  // sends the next command.
  static constexpr size_t kOutputCapacity = 16;

  // Status register bits.
  static constexpr uint8_t kStatusOutputFull = 0x01;
  static constexpr uint8_t kStatusSystemFlag = 0x04;
  static constexpr uint8_t kStatusCommand = 0x08;  // last write was to the command port
  // Controller commands.
  static constexpr uint8_t kCmdReadConfig = 0x20;
  static constexpr uint8_t kCmdWriteConfig = 0x60;
  static constexpr uint8_t kCmdDisableAux = 0xa7;
  static constexpr uint8_t kCmdEnableAux = 0xa8;
  static constexpr uint8_t kCmdTestAux = 0xa9;
  static constexpr uint8_t kCmdSelfTest = 0xaa;
  static constexpr uint8_t kCmdTestKbd = 0xab;
  static constexpr uint8_t kCmdDisableKbd = 0xad;
  static constexpr uint8_t kCmdEnableKbd = 0xae;
  static constexpr uint8_t kCmdReadOutputPort = 0xd0;
  static constexpr uint8_t kCmdWriteOutputPort = 0xd1;
  static constexpr uint8_t kCmdPulseReset = 0xfe;

  explicit I8042(std::function<void()> on_reset);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  uint64_t resets() const;

 private:
  bool command(uint8_t cmd);  // mutex held; true: reset requested
  void answer(uint8_t byte);  // mutex held; queues a byte for the data port if it fits
  bool data(uint8_t value);   // mutex held; true: reset requested

  const std::function<void()> on_reset_;
  mutable std::mutex mutex_;
  std::deque<uint8_t> output_;   // bytes for the guest to read from the data port
  uint8_t config_ = 0x45;        // kbd interrupt on, system flag, translation (8042 default)
  uint8_t output_port_ = 0x01;   // bit 0: reset line not asserted (active low)
  uint8_t pending_command_ = 0;  // a command waiting for its data byte
  uint8_t status_flags_ = kStatusSystemFlag;
  uint64_t resets_ = 0;
};

}  // namespace minivmm::devices
