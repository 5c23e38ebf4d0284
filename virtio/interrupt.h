// Interrupt interfaces between devices, transports and the VMM.
#pragma once

#include <cstdint>

namespace minivmm::virtio {

// One edge-triggered interrupt line into the guest (the UART's): each trigger() is one
// interrupt. The VMM backs it with KVM_IRQFD (an eventfd write); tests back it with a
// counter. Called from any thread; implementations must be thread-safe.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void trigger() = 0;
};

// One level-triggered interrupt line into the guest (a virtio-mmio device's): the line is
// high from set_level(true) until set_level(false), and the guest's interrupt controller
// interrupts again at each end of interrupt while it is high. Setting the level it already
// has does nothing. The VMM backs it with KVM_IRQ_LINE; tests record the level. The caller
// serialises the calls (the transport sets the level under its own lock, so that the line
// follows its InterruptStatus register exactly).
class LevelIrqLine {
 public:
  virtual ~LevelIrqLine() = default;
  virtual void set_level(bool high) = 0;
};

// What a device uses to interrupt its driver: the transport records the reason
// (kInterruptUsedBuffer / kInterruptConfigChange from spec.h) in its InterruptStatus
// register and raises its line (mmio/virtio_mmio.h). Thread-safe.
class VirtioInterrupt {
 public:
  virtual ~VirtioInterrupt() = default;
  virtual void signal(uint32_t reason) = 0;
  // The device found its queues broken by the driver (virtio 1.2 §2.1.2): the transport
  // sets DEVICE_NEEDS_RESET and sends a configuration change interrupt. Returns whether
  // the bit was newly set. The default does nothing, for transports without the bit.
  virtual bool set_needs_reset() { return false; }
};

}  // namespace minivmm::virtio
