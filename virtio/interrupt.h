// Interrupt interfaces between devices, transports and the VMM.
#pragma once

#include <cstdint>

namespace minivmm::virtio {

// One interrupt line into the guest. The VMM backs it with KVM_IRQFD (an eventfd write);
// tests back it with a counter. Edge-triggered: each trigger() is one interrupt.
// Called from any thread; implementations must be thread-safe.
class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void trigger() = 0;
};

// What a device uses to interrupt its driver: the transport records the reason
// (kInterruptUsedBuffer / kInterruptConfigChange from spec.h) in its InterruptStatus
// register and then triggers the line. Thread-safe.
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
