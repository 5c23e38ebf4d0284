// The PVH boot ABI's start info (Xen's xen/include/public/arch-x86/hvm/start_info.h, version
// 1), which a PVH entry gets in EBX: the command line, the initrd as module 0, the RSDP and
// the memory map. Called from the main thread during VM setup.
#pragma once

#include <cstdint>
#include <span>

#include "boot/result.h"

namespace minivmm::boot {

inline constexpr uint32_t kHvmStartMagic = 0x336ec578;

#pragma pack(push, 1)
struct HvmStartInfo {
  uint32_t magic;
  uint32_t version;
  uint32_t flags;
  uint32_t nr_modules;
  uint64_t modlist_paddr;
  uint64_t cmdline_paddr;
  uint64_t rsdp_paddr;
  uint64_t memmap_paddr;  // version 1 and later
  uint32_t memmap_entries;
  uint32_t reserved;
};
struct HvmModlistEntry {
  uint64_t paddr;
  uint64_t size;
  uint64_t cmdline_paddr;
  uint64_t reserved;
};
struct HvmMemmapEntry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;  // the e820 types: 1 RAM, 2 reserved
  uint32_t reserved;
};
#pragma pack(pop)
static_assert(sizeof(HvmStartInfo) == 56);
static_assert(sizeof(HvmModlistEntry) == 32);
static_assert(sizeof(HvmMemmapEntry) == 24);

struct PvhConfig {
  uint64_t mem_size = 0;
  uint64_t cmdline_addr = 0;
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;  // 0: no module
  uint64_t rsdp_addr = 0;    // 0: none
};

// Writes the start info at kPvhStartInfoAddr, followed by its memory map (e820_map) and the
// module list; returns the start info's address.
Result<uint64_t> write_pvh_start_info(std::span<uint8_t> low_ram, const PvhConfig& config);

}  // namespace minivmm::boot
