// ConsoleInput: where the VMM's main loop puts what it reads from stdin -- the UART
// (devices::Serial) or port 0 of the virtio console (hvc0). The seam that lets either
// console own the keyboard.
//
// Threads: all methods from the main thread, concurrently with the device's own threads;
// implementations are thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace minivmm::devices {

class ConsoleInput {
 public:
  virtual ~ConsoleInput() = default;
  // Queues as many bytes as fit and returns that count.
  virtual size_t enqueue_input(std::span<const uint8_t> bytes) = 0;
  // How many bytes enqueue_input() would take now; the loop stops reading stdin at 0 and
  // retries shortly.
  virtual size_t input_space() const = 0;
  // The host terminal's size, at start and on every change (SIGWINCH). A UART has none.
  virtual void resize(uint16_t /*cols*/, uint16_t /*rows*/) {}
};

}  // namespace minivmm::devices
