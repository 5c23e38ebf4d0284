#include "virtio/guest_memory.h"

#include <algorithm>
#include <stdexcept>

namespace minivmm::virtio {

GuestMemory::GuestMemory(std::vector<MemoryRegion> regions) : regions_(std::move(regions)) {
  std::sort(regions_.begin(), regions_.end(),
            [](const MemoryRegion& a, const MemoryRegion& b) { return a.guest_base < b.guest_base; });
  for (size_t i = 0; i < regions_.size(); ++i) {
    const MemoryRegion& r = regions_[i];
    if (r.size == 0 || r.host == nullptr || r.guest_base + r.size < r.guest_base) {
      throw std::invalid_argument("guest memory region is empty or wraps");
    }
    // Ring indices are accessed atomically in place, so a naturally aligned guest address
    // must be naturally aligned on the host too.
    if ((reinterpret_cast<uintptr_t>(r.host) - r.guest_base) % 8 != 0) {
      throw std::invalid_argument("guest memory region host mapping is misaligned");
    }
    if (i > 0 && regions_[i - 1].guest_base + regions_[i - 1].size > r.guest_base) {
      throw std::invalid_argument("guest memory regions overlap");
    }
  }
}

uint8_t* GuestMemory::translate(uint64_t addr, uint64_t len) const {
  // Few regions (one or two around the MMIO gap): a linear scan beats a binary search.
  for (const MemoryRegion& r : regions_) {
    if (addr < r.guest_base) break;
    const uint64_t offset = addr - r.guest_base;
    // Overflow-safe form of `addr + len <= base + size`.
    if (offset <= r.size && len <= r.size - offset) return r.host + offset;
  }
  return nullptr;
}

bool GuestMemory::read(uint64_t addr, std::span<uint8_t> out) const {
  const uint8_t* src = translate(addr, out.size());
  if (src == nullptr) return false;
  if (!out.empty()) std::memcpy(out.data(), src, out.size());
  return true;
}

bool GuestMemory::write(uint64_t addr, std::span<const uint8_t> in) const {
  uint8_t* dst = translate(addr, in.size());
  if (dst == nullptr) return false;
  if (!in.empty()) std::memcpy(dst, in.data(), in.size());
  return true;
}

std::optional<uint16_t> GuestMemory::load_acquire_u16(uint64_t addr) const {
  if (addr % alignof(uint16_t) != 0) return std::nullopt;
  uint8_t* p = translate(addr, sizeof(uint16_t));
  if (p == nullptr) return std::nullopt;
  // The constructor checked that host and guest addresses agree modulo 8.
  return std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).load(std::memory_order_acquire);
}

bool GuestMemory::store_release_u16(uint64_t addr, uint16_t value) const {
  if (addr % alignof(uint16_t) != 0) return false;
  uint8_t* p = translate(addr, sizeof(uint16_t));
  if (p == nullptr) return false;
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(p)).store(value, std::memory_order_release);
  return true;
}

}  // namespace minivmm::virtio
