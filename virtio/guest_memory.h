// GuestMemory: the VMM's view of guest physical RAM as a set of host-mapped regions.
//
// Every access to guest memory in the VMM goes through `translate`, which checks that
// [addr, addr + len) lies entirely inside one region without wrapping (docs/architecture.md
// "Facing the guest"). The object does not own the mappings; the VMM's RAM regions do,
// and they outlive every GuestMemory that points into them. Immutable after construction,
// so any thread may use it concurrently (the guest may of course change the bytes).
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <type_traits>
#include <vector>

namespace minivmm::virtio {

struct MemoryRegion {
  uint64_t guest_base = 0;
  uint64_t size = 0;
  uint8_t* host = nullptr;
  // Shared guest RAM (a memfd mapped MAP_SHARED, for vhost-user backends): the fd and the
  // region's offset in it. -1 for private memory.
  int fd = -1;
  uint64_t fd_offset = 0;
};

class GuestMemory {
 public:
  GuestMemory() = default;
  // Regions must be non-empty and must not overlap; throws std::invalid_argument otherwise
  // (a VMM configuration error, never a guest one).
  explicit GuestMemory(std::vector<MemoryRegion> regions);

  // The host address of [addr, addr + len), or nullptr when the range is not wholly inside
  // one region or wraps. A zero-length range is valid anywhere inside or at the end of a
  // region.
  uint8_t* translate(uint64_t addr, uint64_t len) const {
    // Few regions (one or two around the MMIO gap): a linear scan beats a binary search.
    for (const MemoryRegion& r : regions_) {
      if (addr < r.guest_base) break;
      const uint64_t offset = addr - r.guest_base;
      // Overflow-safe form of `addr + len <= base + size`.
      if (offset <= r.size && len <= r.size - offset) return r.host + offset;
    }
    return nullptr;
  }
  bool contains(uint64_t addr, uint64_t len) const { return translate(addr, len) != nullptr; }

  // Copies between guest memory and host buffers; false (and nothing copied) when the guest
  // range is invalid.
  bool read(uint64_t addr, std::span<uint8_t> out) const;
  bool write(uint64_t addr, std::span<const uint8_t> in) const;

  template <typename T>
  std::optional<T> read_obj(uint64_t addr) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    const uint8_t* src = translate(addr, sizeof(T));
    if (src == nullptr) return std::nullopt;
    std::memcpy(&value, src, sizeof(T));
    return value;
  }

  template <typename T>
  bool write_obj(uint64_t addr, const T& value) const {
    static_assert(std::is_trivially_copyable_v<T>);
    uint8_t* dst = translate(addr, sizeof(T));
    if (dst == nullptr) return false;
    std::memcpy(dst, &value, sizeof(T));
    return true;
  }

  // Atomic 16-bit accesses for ring indices (virtio 1.2 §2.7.13.3: the driver publishes
  // avail->idx after the ring entries, the device used->idx after the used elements).
  // `addr` must be 2-byte aligned; nullopt / false otherwise or when out of range.
  std::optional<uint16_t> load_acquire_u16(uint64_t addr) const {
    uint16_t* p = ring_index(addr);
    if (p == nullptr) return std::nullopt;
    return std::atomic_ref<uint16_t>(*p).load(std::memory_order_acquire);
  }
  bool store_release_u16(uint64_t addr, uint16_t value) const {
    uint16_t* p = ring_index(addr);
    if (p == nullptr) return false;
    std::atomic_ref<uint16_t>(*p).store(value, std::memory_order_release);
    return true;
  }

  std::span<const MemoryRegion> regions() const { return regions_; }

 private:
  uint16_t* ring_index(uint64_t addr) const {
    if (addr % alignof(uint16_t) != 0) return nullptr;
    // The constructor checked that host and guest addresses agree modulo 8, so the host
    // pointer is aligned too.
    return reinterpret_cast<uint16_t*>(translate(addr, sizeof(uint16_t)));
  }

  std::vector<MemoryRegion> regions_;  // sorted by guest_base
};

}  // namespace minivmm::virtio
