#include "virtio/guest_memory.h"

#include <algorithm>
#include <stdexcept>

namespace minivmm::virtio {

GuestMemory::GuestMemory(std::vector<MemoryRegion> regions) : regions_(std::move(regions)) {
  std::sort(regions_.begin(), regions_.end(), [](const MemoryRegion& a, const MemoryRegion& b) {
    return a.guest_base < b.guest_base;
  });
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

}  // namespace minivmm::virtio
