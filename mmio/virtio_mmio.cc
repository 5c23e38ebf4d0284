#include "mmio/virtio_mmio.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "virtio/spec.h"

namespace minivmm::mmio {

// virtio-mmio registers and config space are little-endian (virtio 1.2 §4.2.2); so is
// the host, so values are copied to and from the access buffers as they are.
static_assert(std::endian::native == std::endian::little);

namespace {

using virtio::kStatusAcknowledge;
using virtio::kStatusDeviceNeedsReset;
using virtio::kStatusDriver;
using virtio::kStatusDriverOk;
using virtio::kStatusFailed;
using virtio::kStatusFeaturesOk;

// virtio 1.2 §3.1.1: the driver sets the status bits in this order. Each entry is the
// status after one more step; a driver write must name one of these (or add FAILED).
constexpr std::array<uint32_t, 5> kStatusSteps = {
    0,
    kStatusAcknowledge,
    kStatusAcknowledge | kStatusDriver,
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk,
    kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk | kStatusDriverOk,
};
constexpr uint32_t kStepBits = kStatusSteps.back();

constexpr uint32_t kInterruptBits = virtio::kInterruptUsedBuffer | virtio::kInterruptConfigChange;

// Index into kStatusSteps, or -1.
int step_of(uint32_t bits) {
  auto it = std::find(kStatusSteps.begin(), kStatusSteps.end(), bits);
  return it == kStatusSteps.end() ? -1 : static_cast<int>(it - kStatusSteps.begin());
}

uint64_t with_low(uint64_t old, uint32_t low) {
  return (old & 0xffff'ffff'0000'0000) | low;
}
uint64_t with_high(uint64_t old, uint32_t high) {
  return (old & 0xffff'ffff) | (uint64_t{high} << 32);
}

}  // namespace

VirtioMmioTransport::VirtioMmioTransport(std::shared_ptr<virtio::VirtioDevice> device,
                                         const virtio::GuestMemory& mem, virtio::IrqLine& irq)
    : device_(std::move(device)), mem_(mem), irq_(irq) {
  // A device that declares what the queue or the transport cannot do is a VMM bug:
  // Linux would refuse it (sizes must be powers of two, virtio 1.2 §2.7).
  const uint64_t features = device_->device_features();
  if (!virtio::has_feature(features, virtio::kFVersion1) ||
      (features & virtio::kUnsupportedFeatures) != 0) {
    throw std::invalid_argument("virtio device offers features the transport cannot honour");
  }
  const std::span<const uint16_t> sizes = device_->queue_max_sizes();
  queues_.reserve(sizes.size());
  for (uint16_t max_size : sizes) {
    if (!std::has_single_bit(max_size) || max_size > virtio::kMaxQueueSize) {
      throw std::invalid_argument("virtio queue size must be a power of two up to 32768");
    }
    queues_.emplace_back(max_size);
  }
  queue_events_.resize(queues_.size());
}

VirtioMmioTransport::~VirtioMmioTransport() {
  std::lock_guard lock(mutex_);
  if (status_.load(std::memory_order_relaxed) != 0 || activated_) device_->reset();
}

void VirtioMmioTransport::read(uint64_t offset, std::span<uint8_t> data) {
  if (offset >= kConfigOffset) {
    // virtio 1.2 §4.2.2.2: config fields are accessed with their own width (1, 2, 4, or
    // two 4-byte accesses for 8-byte fields; an 8-byte access is accepted as well).
    const size_t n = data.size();
    const bool width_ok = n == 1 || n == 2 || n == 4 || n == 8;
    if (!width_ok || offset > kDeviceWindowSize - n) {
      std::fill(data.begin(), data.end(), uint8_t{0});
      ignore();
      return;
    }
    std::lock_guard lock(mutex_);
    device_->read_config(offset - kConfigOffset, data);
    return;
  }
  // virtio 1.2 §4.2.2.2: control registers take 32-bit wide, aligned accesses only.
  uint32_t value = 0;
  if (data.size() == sizeof(uint32_t) && offset % sizeof(uint32_t) == 0) {
    std::lock_guard lock(mutex_);
    value = read_register(offset);
  } else {
    ignore();
  }
  std::fill(data.begin(), data.end(), uint8_t{0});
  std::memcpy(data.data(), &value, std::min(data.size(), sizeof(value)));
}

void VirtioMmioTransport::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset >= kConfigOffset) {
    const size_t n = data.size();
    const bool width_ok = n == 1 || n == 2 || n == 4 || n == 8;
    if (!width_ok || offset > kDeviceWindowSize - n) {
      ignore();
      return;
    }
    std::lock_guard lock(mutex_);
    device_->write_config(offset - kConfigOffset, data);
    return;
  }
  if (data.size() != sizeof(uint32_t) || offset % sizeof(uint32_t) != 0) {
    ignore();
    return;
  }
  uint32_t value;
  std::memcpy(&value, data.data(), sizeof(value));
  std::lock_guard lock(mutex_);
  write_register(offset, value);
}

uint32_t VirtioMmioTransport::read_register(uint64_t offset) {
  const bool queue_ok = queue_sel_ < queues_.size();
  switch (offset) {
    case kRegMagicValue:
      return kMagicValue;
    case kRegVersion:
      return kVersion;
    case kRegDeviceId:
      return device_->device_type();
    case kRegVendorId:
      return kVendorId;
    case kRegDeviceFeatures: {
      // Two 32-bit pages of the 64 feature bits; higher pages read 0 (virtio 1.2 §4.2.2).
      if (device_features_sel_ > 1) return 0;
      return static_cast<uint32_t>(device_->device_features() >> (32 * device_features_sel_));
    }
    // 0 tells the driver the selected queue does not exist (virtio 1.2 §4.2.3.2).
    case kRegQueueNumMax:
      return queue_ok ? queues_[queue_sel_].max_size() : 0;
    case kRegQueueReady:
      return queue_ok && queues_[queue_sel_].ready() ? 1 : 0;
    case kRegInterruptStatus:
      return interrupt_status_.load(std::memory_order_acquire);
    case kRegStatus:
      return status_.load(std::memory_order_acquire);
    // No shared memory regions: a length of -1 means "no such region" (virtio 1.2 §4.2.2).
    case kRegShmLenLow:
    case kRegShmLenHigh:
      return 0xffff'ffff;
    case kRegShmBaseLow:
    case kRegShmBaseHigh:
      return 0;
    case kRegConfigGeneration:
      return device_->config_generation();
    default:
      // Write-only registers and unknown offsets read as 0.
      return 0;
  }
}

void VirtioMmioTransport::write_register(uint64_t offset, uint32_t value) {
  const uint32_t status = status_.load(std::memory_order_acquire);
  switch (offset) {
    case kRegDeviceFeaturesSel:
      device_features_sel_ = value;
      return;
    case kRegDriverFeaturesSel:
      driver_features_sel_ = value;
      return;
    case kRegDriverFeatures:
      // virtio 1.2 §3.1.1 step 5: features are written after DRIVER and before FEATURES_OK.
      if ((status & (kStatusDriver | kStatusFeaturesOk | kStatusFailed)) != kStatusDriver ||
          driver_features_sel_ > 1) {
        ignore();
        return;
      }
      driver_features_ = driver_features_sel_ == 0 ? with_low(driver_features_, value)
                                                   : with_high(driver_features_, value);
      return;
    case kRegQueueSel:
      queue_sel_ = value;
      return;
    case kRegQueueNotify:
      // Only a live device processes its queues; before DRIVER_OK (or after a failed
      // activation) the notification is dropped, and the driver notifies again later.
      if (!activated_ || value >= queues_.size()) {
        ignore();
        return;
      }
      queue_events_[value].signal();  // what KVM does when the ioeventfd is registered
      return;
    case kRegInterruptAck:
      interrupt_status_.fetch_and(~value, std::memory_order_acq_rel);
      return;
    case kRegStatus:
      write_status(value);
      return;
    case kRegQueueNum:
    case kRegQueueReady:
    case kRegQueueDescLow:
    case kRegQueueDescHigh:
    case kRegQueueDriverLow:
    case kRegQueueDriverHigh:
    case kRegQueueDeviceLow:
    case kRegQueueDeviceHigh:
      write_queue_register(offset, value);
      return;
    case kRegShmSel:
      return;  // no shared memory regions; every selection reads as absent
    default:
      ignore();
      return;
  }
}

void VirtioMmioTransport::write_queue_register(uint64_t offset, uint32_t value) {
  // virtio 1.2 §3.1.1 step 7: queues are set up after FEATURES_OK and before DRIVER_OK.
  // Afterwards the device's I/O thread owns them, so later writes must not reach them.
  const uint32_t status = status_.load(std::memory_order_acquire);
  if ((status & (kStatusFeaturesOk | kStatusDriverOk | kStatusFailed)) != kStatusFeaturesOk ||
      queue_sel_ >= queues_.size()) {
    ignore();
    return;
  }
  virtio::Queue& q = queues_[queue_sel_];
  switch (offset) {
    case kRegQueueNum:
      // Sizes above QueueNumMax are refused here; zero and non-powers of two are accepted
      // and fail the activation check (virtio 1.2 §2.7: size is a power of two).
      if (value > q.max_size()) {
        ignore();
        return;
      }
      q.set_size(static_cast<uint16_t>(value));
      return;
    case kRegQueueReady:
      if (value > 1) {
        ignore();
        return;
      }
      q.set_ready(value == 1);
      return;
    case kRegQueueDescLow:
      q.set_desc_table(with_low(q.desc_table(), value));
      return;
    case kRegQueueDescHigh:
      q.set_desc_table(with_high(q.desc_table(), value));
      return;
    case kRegQueueDriverLow:
      q.set_avail_ring(with_low(q.avail_ring(), value));
      return;
    case kRegQueueDriverHigh:
      q.set_avail_ring(with_high(q.avail_ring(), value));
      return;
    case kRegQueueDeviceLow:
      q.set_used_ring(with_low(q.used_ring(), value));
      return;
    case kRegQueueDeviceHigh:
      q.set_used_ring(with_high(q.used_ring(), value));
      return;
    default:
      ignore();
      return;
  }
}

void VirtioMmioTransport::write_status(uint32_t value) {
  // virtio 1.2 §4.2.2: writing 0 resets the device.
  if (value == 0) {
    reset_locked();
    return;
  }
  const uint32_t status = status_.load(std::memory_order_acquire);
  // virtio 1.2 §2.1.1: the driver may set FAILED whenever it gives up. Only a reset
  // leaves that state.
  if ((status & kStatusFailed) != 0) {
    ignore();
    return;
  }
  if ((value & kStatusFailed) != 0) {
    status_.fetch_or(kStatusFailed, std::memory_order_acq_rel);
    return;
  }
  // DEVICE_NEEDS_RESET belongs to the device: a driver writing back what it read is fine.
  // The driver must not clear bits, and sets them in the order of kStatusSteps; a write
  // may take several steps at once. Anything else is ignored.
  const int from = step_of(status & kStepBits);
  const int to = step_of(value & kStepBits);
  if (from < 0 || to < from || (value & ~(kStepBits | kStatusDeviceNeedsReset)) != 0) {
    ignore();
    return;
  }
  for (int step = from + 1; step <= to; ++step) {
    const uint32_t bit =
        kStatusSteps[static_cast<size_t>(step)] & ~kStatusSteps[static_cast<size_t>(step - 1)];
    if (bit == kStatusFeaturesOk) {
      // virtio 1.2 §2.2.2, §3.1.1 step 6: refuse the set by leaving FEATURES_OK clear;
      // the driver reads the status back and gives up.
      if (!features_acceptable()) {
        ignore();
        return;
      }
      device_->set_acked_features(driver_features_);
    }
    status_.fetch_or(bit, std::memory_order_acq_rel);
    if (bit == kStatusDriverOk) activate();
  }
}

bool VirtioMmioTransport::features_acceptable() const {
  // Only offered features, and VIRTIO_F_VERSION_1: this transport is modern-only, and a
  // v2 device must not work with a legacy driver (virtio 1.2 §4.2.4, §6.1).
  const uint64_t offered = device_->device_features();
  return (driver_features_ & ~offered) == 0 &&
         virtio::has_feature(driver_features_, virtio::kFVersion1);
}

void VirtioMmioTransport::activate() {
  std::string error;
  // A queue the driver did not enable is handed over not ready; the device must not use
  // it (Queue::iter / add_used refuse). Enabled queues must pass the activation check.
  for (size_t i = 0; i < queues_.size() && error.empty(); ++i) {
    if (!queues_[i].ready()) continue;
    auto valid = queues_[i].validate(mem_);
    if (!valid) error = "queue " + std::to_string(i) + ": " + virtio::to_string(valid.error());
  }
  if (error.empty()) {
    const uint64_t acked = driver_features_;
    for (virtio::Queue& q : queues_) {
      q.set_event_idx(virtio::has_feature(acked, virtio::kFEventIdx));
      q.set_indirect(virtio::has_feature(acked, virtio::kFIndirectDesc));
    }
    auto failure =
        device_->activate(virtio::ActivateContext{mem_, queues_, queue_events_, *this});
    if (failure) error = failure->message;
  }
  if (error.empty()) {
    activated_ = true;
    return;
  }
  if (error_handler_) error_handler_("virtio-mmio activation failed: " + error);
  // virtio 1.2 §2.1.2: set DEVICE_NEEDS_RESET and, since DRIVER_OK is set, send a
  // configuration change notification.
  status_.fetch_or(kStatusDeviceNeedsReset, std::memory_order_acq_rel);
  signal(virtio::kInterruptConfigChange);
}

bool VirtioMmioTransport::set_needs_reset() {
  uint32_t status = status_.load(std::memory_order_acquire);
  do {
    if ((status & kStatusDriverOk) == 0 || (status & kStatusDeviceNeedsReset) != 0) return false;
  } while (!status_.compare_exchange_weak(status, status | kStatusDeviceNeedsReset,
                                          std::memory_order_acq_rel, std::memory_order_acquire));
  signal(virtio::kInterruptConfigChange);
  return true;
}

void VirtioMmioTransport::signal(uint32_t reason) {
  reason &= kInterruptBits;
  if (reason == 0) return;
  // Release: the used ring writes the device made before signalling are visible to a vCPU
  // that sees the bit (the IrqLine's eventfd write is a barrier as well).
  interrupt_status_.fetch_or(reason, std::memory_order_acq_rel);
  irq_.trigger();
}

void VirtioMmioTransport::set_error_handler(std::function<void(const std::string&)> handler) {
  std::lock_guard lock(mutex_);
  error_handler_ = std::move(handler);
}

void VirtioMmioTransport::reset() {
  std::lock_guard lock(mutex_);
  reset_locked();
}

void VirtioMmioTransport::reset_locked() {
  // virtio 1.2 §2.4: the device stops (and drops its references to the queues and to us)
  // before the transport clears the queues; a device that only negotiated features is
  // reset too so that it forgets them. A reset of a device in status 0 is a no-op.
  if (status_.load(std::memory_order_acquire) != 0 || activated_) device_->reset();
  activated_ = false;
  for (virtio::Queue& q : queues_) q.reset();
  device_features_sel_ = 0;
  driver_features_sel_ = 0;
  driver_features_ = 0;
  queue_sel_ = 0;
  interrupt_status_.store(0, std::memory_order_release);
  status_.store(0, std::memory_order_release);
}

}  // namespace minivmm::mmio
