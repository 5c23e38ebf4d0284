// Virtio wire structures and constants (virtio 1.2). Everything here is a plain
// trivially copyable type whose layout is pinned by static_asserts; values cross the
// guest boundary only through GuestMemory (memcpy), never by pointer casts.
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

namespace minivmm::virtio {

// virtio 1.2 §2.7.5 "The Virtqueue Descriptor Table".
struct VirtqDesc {
  uint64_t addr;
  uint32_t len;
  uint16_t flags;
  uint16_t next;
};
static_assert(sizeof(VirtqDesc) == 16);
static_assert(offsetof(VirtqDesc, addr) == 0);
static_assert(offsetof(VirtqDesc, len) == 8);
static_assert(offsetof(VirtqDesc, flags) == 12);
static_assert(offsetof(VirtqDesc, next) == 14);
static_assert(std::is_trivially_copyable_v<VirtqDesc>);

inline constexpr uint16_t kVirtqDescFNext = 1;
inline constexpr uint16_t kVirtqDescFWrite = 2;
inline constexpr uint16_t kVirtqDescFIndirect = 4;

// virtio 1.2 §2.7.8 "The Virtqueue Used Ring": one element.
struct VirtqUsedElem {
  uint32_t id;
  uint32_t len;
};
static_assert(sizeof(VirtqUsedElem) == 8);
static_assert(offsetof(VirtqUsedElem, len) == 4);

// virtio 1.2 §2.7.6 / §2.7.8: ring headers are {le16 flags; le16 idx;} followed by the
// ring entries and, with VIRTIO_F_EVENT_IDX, a trailing le16 event field.
inline constexpr uint64_t kRingFlagsOffset = 0;
inline constexpr uint64_t kRingIdxOffset = 2;
inline constexpr uint64_t kRingEntriesOffset = 4;
inline constexpr uint64_t kAvailEntrySize = 2;
inline constexpr uint64_t kUsedEntrySize = sizeof(VirtqUsedElem);

inline constexpr uint16_t kVirtqAvailFNoInterrupt = 1;
inline constexpr uint16_t kVirtqUsedFNoNotify = 1;

// virtio 1.2 §2.7.10.1 alignment requirements.
inline constexpr uint64_t kDescTableAlign = 16;
inline constexpr uint64_t kAvailRingAlign = 2;
inline constexpr uint64_t kUsedRingAlign = 4;

// The largest queue a split virtqueue can have (virtio 1.2 §2.7: "Queue Size ... maximum 32768").
inline constexpr uint16_t kMaxQueueSize = 32768;

// Bytes each ring occupies for a queue of `size` entries, including the event field.
constexpr uint64_t desc_table_bytes(uint16_t size) {
  return uint64_t{size} * sizeof(VirtqDesc);
}
constexpr uint64_t avail_ring_bytes(uint16_t size) {
  return kRingEntriesOffset + uint64_t{size} * kAvailEntrySize + 2;
}
constexpr uint64_t used_ring_bytes(uint16_t size) {
  return kRingEntriesOffset + uint64_t{size} * kUsedEntrySize + 2;
}

// virtio 1.2 §6 "Reserved Feature Bits" (bit numbers).
inline constexpr unsigned kFIndirectDesc = 28;
inline constexpr unsigned kFEventIdx = 29;
inline constexpr unsigned kFVersion1 = 32;
inline constexpr unsigned kFAccessPlatform = 33;
inline constexpr unsigned kFRingPacked = 34;
inline constexpr unsigned kFInOrder = 35;
inline constexpr unsigned kFNotificationData = 38;
inline constexpr unsigned kFRingReset = 40;

// Transport and ring features this library does not implement: no device may offer them.
inline constexpr uint64_t kUnsupportedFeatures =
    (uint64_t{1} << kFRingPacked) | (uint64_t{1} << kFInOrder) |
    (uint64_t{1} << kFNotificationData) | (uint64_t{1} << kFRingReset);

constexpr uint64_t feature_bit(unsigned bit) {
  return uint64_t{1} << bit;
}
constexpr bool has_feature(uint64_t features, unsigned bit) {
  return (features & feature_bit(bit)) != 0;
}

// virtio 1.2 §2.1 "Device Status Field".
inline constexpr uint32_t kStatusAcknowledge = 1;
inline constexpr uint32_t kStatusDriver = 2;
inline constexpr uint32_t kStatusDriverOk = 4;
inline constexpr uint32_t kStatusFeaturesOk = 8;
inline constexpr uint32_t kStatusDeviceNeedsReset = 64;
inline constexpr uint32_t kStatusFailed = 128;

// virtio 1.2 §4.2.2 InterruptStatus bits.
inline constexpr uint32_t kInterruptUsedBuffer = 1;
inline constexpr uint32_t kInterruptConfigChange = 2;

// virtio 1.2 §5 device IDs.
inline constexpr uint32_t kDeviceIdNet = 1;
inline constexpr uint32_t kDeviceIdBlock = 2;
inline constexpr uint32_t kDeviceIdConsole = 3;
inline constexpr uint32_t kDeviceIdRng = 4;

}  // namespace minivmm::virtio
