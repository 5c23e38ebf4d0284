// VirtioDevice: what a virtio device model implements so that a transport can drive it
// (virtio 1.2 §2 "Basic Facilities of a Virtio Device", §3.1 "Device Initialization").
//
// The transport owns the queues and their registers, the status field and feature
// negotiation. It calls, in order: the read-only getters at any time; set_acked_features()
// once when the driver sets FEATURES_OK with an acceptable set; activate() once when the
// driver sets DRIVER_OK; reset() when the driver writes 0 to the status (or the VMM resets
// the device). Config space may be read and written at any time. All of these are called
// on the vCPU thread that accessed the transport's registers, serialised by the transport.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <functional>
#include <optional>
#include <span>
#include <string>

#include "virtio/event_fd.h"
#include "virtio/guest_memory.h"
#include "virtio/interrupt.h"
#include "virtio/queue.h"

namespace minivmm::virtio {

// Everything a device needs to run, handed over at DRIVER_OK. The references stay valid
// until reset() returns.
struct ActivateContext {
  const GuestMemory& mem;
  std::span<Queue> queues;  // already validated; features applied
  // One per queue, owned by the transport: signalled for each driver notification of that
  // queue (by KVM through an ioeventfd, or by the transport when QueueNotify is written).
  // The only way a device learns of new buffers, besides polling the rings.
  std::span<const EventFd> queue_events;
  VirtioInterrupt& interrupt;
};

// Why activation failed, for the log; the transport sets DEVICE_NEEDS_RESET.
struct ActivateError {
  std::string message;
};

// What read_config() does for a device whose config space is the bytes `config`: copies
// the `out.size()` bytes at `offset`; bytes past the end read as zero (virtio 1.2 §2.5).
// Safe for any offset.
inline void read_config_window(std::span<const uint8_t> config, uint64_t offset,
                               std::span<uint8_t> out) {
  std::fill(out.begin(), out.end(), uint8_t{0});
  if (offset >= config.size()) return;
  const size_t n = std::min<size_t>(out.size(), config.size() - static_cast<size_t>(offset));
  std::memcpy(out.data(), config.data() + offset, n);
}

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  // virtio 1.2 §5: kDeviceIdBlock, ...
  virtual uint32_t device_type() const = 0;
  // The maximum size of each queue; the number of queues is the span's length.
  virtual std::span<const uint16_t> queue_max_sizes() const = 0;
  // Feature bits the device offers. Must include VIRTIO_F_VERSION_1 and must not include
  // ring layouts the Queue does not implement (VIRTIO_F_RING_PACKED, VIRTIO_F_IN_ORDER).
  virtual uint64_t device_features() const = 0;
  // The features the driver accepted; a subset of device_features() that the transport
  // has already checked.
  virtual void set_acked_features(uint64_t features) = 0;
  virtual uint64_t acked_features() const = 0;

  // Device-specific configuration space (virtio 1.2 §2.5). Reads past the end read
  // zeroes; writes past the end are ignored. `offset` is from the start of the space.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) const = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;
  // Changes whenever the device changes its config space (virtio 1.2 §2.5.1).
  virtual uint32_t config_generation() const { return 0; }

  // Start processing. The device keeps the references in `ctx` until reset().
  // An error leaves the device inactive; the transport sets DEVICE_NEEDS_RESET.
  virtual std::optional<ActivateError> activate(const ActivateContext& ctx) = 0;

  // Stop all processing, wait for or cancel in-flight work, drop the references taken at
  // activate(), and return to the initial state: acked features cleared too. Must be safe
  // to call when not activated. When it returns the transport may reset the queues.
  virtual void reset() = 0;

  // The device's rings are served by another process that maps guest RAM itself (a
  // vhost-user backend): the VMM then makes guest RAM shareable (a memfd).
  virtual bool needs_shared_memory() const { return false; }

  // The VM is stopping (after reset()): make what the guest wrote durable on the host (a
  // disk's fdatasync). Errors are logged, not returned: the VM is done either way.
  virtual void sync_to_host() {}
};

}  // namespace minivmm::virtio
