#include "boot/pvh.h"

#include <cstring>
#include <vector>

#include "boot/layout.h"
#include "boot/zero_page.h"

namespace minivmm::boot {

Result<uint64_t> write_pvh_start_info(std::span<uint8_t> low_ram, const PvhConfig& config) {
  const std::vector<E820Entry> e820 = e820_map(config.mem_size);
  std::vector<HvmMemmapEntry> memmap;
  for (const E820Entry& e : e820) memmap.push_back({e.addr, e.size, e.type, 0});
  const uint64_t memmap_addr = kPvhStartInfoAddr + sizeof(HvmStartInfo);
  const uint64_t modlist_addr = memmap_addr + memmap.size() * sizeof(HvmMemmapEntry);
  const uint64_t end = modlist_addr + sizeof(HvmModlistEntry);
  if (end > kZeroPageAddr) return Error{"PVH start info does not fit below the zero page"};
  auto area = guest_range(low_ram, kPvhStartInfoAddr, end - kPvhStartInfoAddr);
  if (!area) return Error{"guest memory too small for the PVH start info"};
  std::memset(area->data(), 0, area->size());

  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = 1;
  info.cmdline_paddr = config.cmdline_addr;
  info.rsdp_paddr = config.rsdp_addr;
  info.memmap_paddr = memmap_addr;
  info.memmap_entries = static_cast<uint32_t>(memmap.size());
  if (config.initrd_size > 0) {
    info.nr_modules = 1;
    info.modlist_paddr = modlist_addr;
    const HvmModlistEntry module{config.initrd_addr, config.initrd_size, 0, 0};
    std::memcpy(area->data() + (modlist_addr - kPvhStartInfoAddr), &module, sizeof module);
  }
  std::memcpy(area->data(), &info, sizeof info);
  std::memcpy(area->data() + sizeof info, memmap.data(), memmap.size() * sizeof(HvmMemmapEntry));
  return kPvhStartInfoAddr;
}

}  // namespace minivmm::boot
