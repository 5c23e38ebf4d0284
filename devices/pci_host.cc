#include "devices/pci_host.h"

#include <algorithm>

namespace minivmm::devices {

uint32_t PciHostBridge::config_dword(uint32_t address) {
  if ((address & kAddressEnable) == 0) return 0xffff'ffff;
  const uint32_t bdf = (address >> 8) & 0xffff;  // bus 23:16, device 15:11, function 10:8
  if (bdf != 0) return 0xffff'ffff;              // only 00:00.0 exists
  switch (address & 0xfc) {
    case 0x00:
      return uint32_t{kDeviceId} << 16 | kVendorId;
    case 0x08:
      return kClassCode << 8;  // revision 0
    default:
      return 0;  // command/status, header type 0 (single function), no BARs, no capabilities
  }
}

void PciHostBridge::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), uint8_t{0xff});
  if (offset == kAddressOffset && data.size() == 4) {
    const uint32_t value = address_.load(std::memory_order_relaxed);
    for (size_t i = 0; i < 4; ++i) data[i] = static_cast<uint8_t>(value >> (8 * i));
    return;
  }
  if (offset < kDataOffset || offset + data.size() > kPortRange) return;
  // A 1-, 2- or 4-byte window into the selected dword, at the data port's low address bits.
  const uint32_t value = config_dword(address_.load(std::memory_order_relaxed));
  const uint64_t shift = offset - kDataOffset;
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(value >> (8 * (shift + i)));
}

void PciHostBridge::write(uint64_t offset, std::span<const uint8_t> data) {
  if (offset != kAddressOffset || data.size() != 4) return;  // the header is read-only
  uint32_t value = 0;
  for (size_t i = 0; i < 4; ++i) value |= uint32_t{data[i]} << (8 * i);
  address_.store(value & kAddressWritable, std::memory_order_relaxed);
}

}  // namespace minivmm::devices
