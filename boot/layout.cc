#include "boot/layout.h"

namespace minivmm::boot {

std::vector<RamRegion> ram_regions(uint64_t mem_size) {
  std::vector<RamRegion> regions;
  const uint64_t low = low_ram_size(mem_size);
  if (low > 0) regions.push_back({0, low});
  if (mem_size > low) regions.push_back({kHighRamStart, mem_size - low});
  return regions;
}

std::optional<VirtioMmioDeviceInfo> virtio_mmio_slot(uint32_t index) {
  if (index >= kMaxVirtioMmioDevices) return std::nullopt;
  return VirtioMmioDeviceInfo{kVirtioMmioBase + uint64_t{index} * kVirtioMmioSlotSize,
                              kVirtioMmioSlotSize, kVirtioIrqBase + index};
}

std::optional<std::span<uint8_t>> guest_range(std::span<uint8_t> ram, uint64_t addr, uint64_t len) {
  if (addr > ram.size() || len > ram.size() - addr) return std::nullopt;
  return ram.subspan(static_cast<size_t>(addr), static_cast<size_t>(len));
}

}  // namespace minivmm::boot
