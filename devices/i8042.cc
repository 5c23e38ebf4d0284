#include "devices/i8042.h"

#include <algorithm>

namespace minivmm::devices {

I8042::I8042(std::function<void()> on_reset) : on_reset_(std::move(on_reset)) {}

void I8042::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::fill(data.begin(), data.end(), uint8_t{0});
  std::lock_guard lock(mutex_);
  if (offset == kDataOffset) {
    if (!output_.empty()) {
      data[0] = output_.front();
      output_.pop_front();
    }
  } else if (offset == kCommandOffset) {
    data[0] = static_cast<uint8_t>(status_flags_ | (output_.empty() ? 0 : kStatusOutputFull));
  } else {
    data[0] = 0xff;
  }
}

void I8042::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty()) return;
  bool reset = false;
  {
    std::lock_guard lock(mutex_);
    if (offset == kCommandOffset) {
      status_flags_ |= kStatusCommand;
      reset = command(data[0]);
    } else if (offset == kDataOffset) {
      status_flags_ = static_cast<uint8_t>(status_flags_ & ~kStatusCommand);
      reset = this->data(data[0]);
    }
    if (reset) ++resets_;
  }
  if (reset && on_reset_) on_reset_();
}

uint64_t I8042::resets() const {
  std::lock_guard lock(mutex_);
  return resets_;
}

void I8042::answer(uint8_t byte) {
  if (output_.size() < kOutputCapacity) output_.push_back(byte);
}

bool I8042::command(uint8_t cmd) {
  pending_command_ = 0;
  switch (cmd) {
    case kCmdReadConfig:
      answer(config_);
      return false;
    case kCmdWriteConfig:
    case kCmdWriteOutputPort:
      pending_command_ = cmd;
      return false;
    case kCmdSelfTest:
      answer(0x55);  // test passed
      return false;
    case kCmdTestAux:
    case kCmdTestKbd:
      answer(0x00);  // interface OK
      return false;
    case kCmdReadOutputPort:
      answer(output_port_);
      return false;
    case kCmdDisableAux:
    case kCmdEnableAux:
    case kCmdDisableKbd:
    case kCmdEnableKbd:
      return false;
    default:
      // 0xF0-0xFF pulse the output port bits whose mask bit is 0 for ~6 us; bit 0 is the CPU
      // reset line, so any such command with bit 0 clear (0xFE among them) resets.
      return cmd >= 0xf0 && (cmd & 0x01) == 0;
  }
}

bool I8042::data(uint8_t value) {
  const uint8_t cmd = pending_command_;
  pending_command_ = 0;
  if (cmd == kCmdWriteConfig) {
    config_ = value;
    return false;
  }
  if (cmd == kCmdWriteOutputPort) {
    output_port_ = value;
    return (value & 0x01) == 0;  // the reset line is active low
  }
  // A byte for the keyboard: no keyboard is attached, nothing answers.
  return false;
}

}  // namespace minivmm::devices
