// VirtioMmioTransport: a virtio device behind the virtio-mmio register interface,
// version 2 ("modern" only; virtio 1.2 §4.2.2). It owns the device's queues and their
// registers, the device status field and feature negotiation, and drives the
// VirtioDevice through set_acked_features() / activate() / reset() (virtio 1.2 §3.1.1).
// It is also the device's VirtioInterrupt: signal() records the reason in InterruptStatus
// and triggers the device's IrqLine.
//
// Each device occupies a kDeviceWindowSize (4 KiB) window on the MMIO bus: the registers
// at 0x000-0x0ff and the device-specific configuration space from 0x100. The boot code
// describes the same window to the guest (ACPI DSDT `Memory32Fixed`, length 0x1000).
//
// Threads:
//  - read() / write(): vCPU threads, several at once. One mutex serialises the register
//    file and every call into the device (config, set_acked_features, activate, reset),
//    as VirtioDevice requires. Device code called from here must not call
//    read() / write() on this transport.
//  - signal() / set_needs_reset(): any thread, typically the device's I/O thread. They
//    are lock-free (atomics), so a device may use them while a vCPU holds the mutex in
//    VirtioDevice::reset() waiting for that same I/O thread to stop.
//  - set_error_handler(), queue_event_fd(): the main thread during setup.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "mmio/bus.h"
#include "virtio/event_fd.h"
#include "virtio/guest_memory.h"
#include "virtio/interrupt.h"
#include "virtio/queue.h"
#include "virtio/virtio_device.h"

namespace minivmm::mmio {

// Register offsets of virtio 1.2 §4.2.2 "MMIO Device Register Layout" (all 32 bits wide).
inline constexpr uint64_t kRegMagicValue = 0x000;         // R
inline constexpr uint64_t kRegVersion = 0x004;            // R
inline constexpr uint64_t kRegDeviceId = 0x008;           // R
inline constexpr uint64_t kRegVendorId = 0x00c;           // R
inline constexpr uint64_t kRegDeviceFeatures = 0x010;     // R
inline constexpr uint64_t kRegDeviceFeaturesSel = 0x014;  // W
inline constexpr uint64_t kRegDriverFeatures = 0x020;     // W
inline constexpr uint64_t kRegDriverFeaturesSel = 0x024;  // W
inline constexpr uint64_t kRegQueueSel = 0x030;           // W
inline constexpr uint64_t kRegQueueNumMax = 0x034;        // R
inline constexpr uint64_t kRegQueueNum = 0x038;           // W
inline constexpr uint64_t kRegQueueReady = 0x044;         // RW
inline constexpr uint64_t kRegQueueNotify = 0x050;        // W
inline constexpr uint64_t kRegInterruptStatus = 0x060;    // R
inline constexpr uint64_t kRegInterruptAck = 0x064;       // W
inline constexpr uint64_t kRegStatus = 0x070;             // RW
inline constexpr uint64_t kRegQueueDescLow = 0x080;       // W
inline constexpr uint64_t kRegQueueDescHigh = 0x084;      // W
inline constexpr uint64_t kRegQueueDriverLow = 0x090;     // W
inline constexpr uint64_t kRegQueueDriverHigh = 0x094;    // W
inline constexpr uint64_t kRegQueueDeviceLow = 0x0a0;     // W
inline constexpr uint64_t kRegQueueDeviceHigh = 0x0a4;    // W
inline constexpr uint64_t kRegShmSel = 0x0ac;             // W
inline constexpr uint64_t kRegShmLenLow = 0x0b0;          // R
inline constexpr uint64_t kRegShmLenHigh = 0x0b4;         // R
inline constexpr uint64_t kRegShmBaseLow = 0x0b8;         // R
inline constexpr uint64_t kRegShmBaseHigh = 0x0bc;        // R
inline constexpr uint64_t kRegConfigGeneration = 0x0fc;   // R
inline constexpr uint64_t kRegConfig = 0x100;             // device-specific, RW

class VirtioMmioTransport final : public BusDevice, public virtio::VirtioInterrupt {
 public:
  static constexpr uint32_t kMagicValue = 0x74726976;  // "virt"
  static constexpr uint32_t kVersion = 2;              // modern virtio-mmio
  // Our own vendor ID: the bytes "MMVM" (QEMU uses "QEMU", 0x554d4551). Linux matches
  // drivers on the device ID only.
  static constexpr uint32_t kVendorId = 0x4d564d4d;
  // Where the VMM registers each queue_event_fd() with KVM_IOEVENTFD (4 bytes, datamatch =
  // queue index).
  static constexpr uint64_t kQueueNotifyOffset = kRegQueueNotify;
  static constexpr uint64_t kConfigOffset = kRegConfig;
  // The bus window of one device: registers plus config space.
  static constexpr uint64_t kDeviceWindowSize = 0x1000;

  // `mem` and `irq` must outlive the transport. The queues are sized from
  // device->queue_max_sizes(). `device` must not be null. Throws std::invalid_argument when
  // the device offers features the library does not implement (virtio::kUnsupportedFeatures),
  // does not offer VIRTIO_F_VERSION_1, or has a queue size that is not a power of two.
  VirtioMmioTransport(std::shared_ptr<virtio::VirtioDevice> device, const virtio::GuestMemory& mem,
                      virtio::IrqLine& irq);
  // Resets the device first if the driver had started it, so that it drops its references
  // to our queues and to us.
  ~VirtioMmioTransport() override;
  VirtioMmioTransport(const VirtioMmioTransport&) = delete;
  VirtioMmioTransport& operator=(const VirtioMmioTransport&) = delete;

  // BusDevice. Registers below 0x100 take 32-bit aligned accesses only; anything else
  // reads as 0 and is ignored on write. Config space takes 1/2/4/8-byte accesses.
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // VirtioInterrupt: ORs `reason` (kInterruptUsedBuffer / kInterruptConfigChange) into
  // InterruptStatus and triggers the IrqLine. Other bits are ignored.
  void signal(uint32_t reason) override;

  // The device found its queues broken (virtio 1.2 §2.1.2): if the driver set DRIVER_OK
  // and DEVICE_NEEDS_RESET is not yet set, set it and send a configuration change
  // interrupt. Returns whether it did. The device should stop using its queues.
  bool set_needs_reset() override;

  // The eventfd of queue `index` (< num_queues()) that the device is notified through
  // (ActivateContext::queue_events). A QueueNotify write that reaches the transport
  // signals it; the VMM registers it with KVM_IOEVENTFD so that notifications skip user
  // space. Valid for the transport's lifetime.
  int queue_event_fd(size_t index) const { return queue_events_.at(index).fd(); }
  // Receives a message when activation fails (for the VMM's log). Called under the mutex.
  void set_error_handler(std::function<void(const std::string&)> handler);

  // A reset requested by the VMM (VM reboot), the same as the driver writing 0 to Status.
  void reset();

  // Introspection for the VMM and tests.
  uint32_t status() const { return status_.load(std::memory_order_acquire); }
  uint32_t interrupt_status() const { return interrupt_status_.load(std::memory_order_acquire); }
  size_t num_queues() const { return queues_.size(); }
  // Only meaningful while the device is not active (the I/O thread owns the queues then).
  const virtio::Queue& queue(size_t index) const { return queues_.at(index); }
  // Accesses that were ignored: bad width or alignment, unknown or read-only offsets,
  // writes refused by the state machine. For diagnostics and tests.
  uint64_t ignored_accesses() const { return ignored_.load(std::memory_order_relaxed); }

 private:
  uint32_t read_register(uint64_t offset);               // mutex held
  void write_register(uint64_t offset, uint32_t value);  // mutex held
  void write_queue_register(uint64_t offset, uint32_t value);
  void write_status(uint32_t value);
  bool features_acceptable() const;
  void activate();
  void reset_locked();
  void ignore() { ignored_.fetch_add(1, std::memory_order_relaxed); }

  const std::shared_ptr<virtio::VirtioDevice> device_;
  const virtio::GuestMemory& mem_;
  virtio::IrqLine& irq_;

  std::mutex mutex_;
  // Guarded by mutex_. After DRIVER_OK the device's I/O thread owns the queues; the
  // transport then only reads max_size() and ready(), which the device never changes.
  std::vector<virtio::Queue> queues_;
  std::vector<virtio::EventFd> queue_events_;  // one per queue, never changed after setup
  uint32_t device_features_sel_ = 0;
  uint32_t driver_features_sel_ = 0;
  uint64_t driver_features_ = 0;
  uint32_t queue_sel_ = 0;
  bool activated_ = false;  // activate() succeeded and reset() has not been called since
  std::function<void(const std::string&)> error_handler_;

  // Written under mutex_ by vCPUs, and by set_needs_reset() / signal() from any thread.
  std::atomic<uint32_t> status_{0};
  std::atomic<uint32_t> interrupt_status_{0};
  std::atomic<uint64_t> ignored_{0};
};

}  // namespace minivmm::mmio
