#include "boot/cmdline.h"

#include <cstdio>

namespace minivmm::boot {

std::string memparse_size(uint64_t bytes) {
  if (bytes != 0 && bytes % kGiB == 0) return std::to_string(bytes / kGiB) + "G";
  if (bytes != 0 && bytes % kMiB == 0) return std::to_string(bytes / kMiB) + "M";
  if (bytes != 0 && bytes % kKiB == 0) return std::to_string(bytes / kKiB) + "K";
  return std::to_string(bytes);
}

std::string virtio_mmio_cmdline(std::span<const VirtioMmioDeviceInfo> devices) {
  std::string out;
  for (const VirtioMmioDeviceInfo& dev : devices) {
    char base[24];
    snprintf(base, sizeof base, "0x%llx", static_cast<unsigned long long>(dev.base));
    if (!out.empty()) out += ' ';
    out += "virtio_mmio.device=" + memparse_size(dev.size) + "@" + base + ":" +
           std::to_string(dev.irq);
  }
  return out;
}

}  // namespace minivmm::boot
