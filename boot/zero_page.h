// The zero page (struct boot_params, Documentation/arch/x86/zero-page.rst and boot.rst), the
// e820 memory map, the kernel command line and initrd placement. Pure functions over byte
// spans; called from the main thread during VM setup.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "boot/bzimage.h"
#include "boot/layout.h"
#include "boot/result.h"

namespace minivmm::boot {

// e820 address range types (ACPI 6.4 §15, Table 15.1).
inline constexpr uint32_t kE820Ram = 1;
inline constexpr uint32_t kE820Reserved = 2;
inline constexpr size_t kE820MaxEntries = 128;  // E820_MAX_ENTRIES_ZEROPAGE

#pragma pack(push, 1)
struct E820Entry {
  uint64_t addr;
  uint64_t size;
  uint32_t type;
  bool operator==(const E820Entry&) const = default;
};
static_assert(sizeof(E820Entry) == 20);

// struct boot_params (arch/x86/include/uapi/asm/bootparam.h, zero-page.rst). Only the fields a
// 64-bit loader sets are typed; the rest are byte arrays left zero.
struct BootParams {
  uint8_t screen_info[0x40];        // 0x000
  uint8_t apm_bios_info[0x14];      // 0x040
  uint8_t pad2[4];                  // 0x054
  uint64_t tboot_addr;              // 0x058
  uint8_t ist_info[0x10];           // 0x060
  uint64_t acpi_rsdp_addr;          // 0x070 (protocol 2.14+)
  uint8_t pad3[8];                  // 0x078
  uint8_t hd0_info[0x10];           // 0x080
  uint8_t hd1_info[0x10];           // 0x090
  uint8_t sys_desc_table[0x10];     // 0x0a0
  uint8_t olpc_ofw_header[0x10];    // 0x0b0
  uint32_t ext_ramdisk_image;       // 0x0c0
  uint32_t ext_ramdisk_size;        // 0x0c4
  uint32_t ext_cmd_line_ptr;        // 0x0c8
  uint8_t pad4[0x70];               // 0x0cc
  uint32_t cc_blob_address;         // 0x13c
  uint8_t edid_info[0x80];          // 0x140
  uint8_t efi_info[0x20];           // 0x1c0
  uint32_t alt_mem_k;               // 0x1e0
  uint32_t scratch;                 // 0x1e4
  uint8_t e820_entries;             // 0x1e8
  uint8_t eddbuf_entries;           // 0x1e9
  uint8_t edd_mbr_sig_buf_entries;  // 0x1ea
  uint8_t kbd_status;               // 0x1eb
  uint8_t secure_boot;              // 0x1ec
  uint8_t pad5[2];                  // 0x1ed
  uint8_t sentinel;                 // 0x1ef
  uint8_t pad6[1];                  // 0x1f0
  SetupHeader hdr;                  // 0x1f1
  uint8_t pad7[kSetupHeaderMaxEnd - kSetupHeaderOffset - sizeof(SetupHeader)];
  uint32_t edd_mbr_sig_buffer[16];        // 0x290
  E820Entry e820_table[kE820MaxEntries];  // 0x2d0
  uint8_t pad8[0x30];                     // 0xcd0
  uint8_t eddbuf[0x1ec];                  // 0xd00
  uint8_t pad9[0x114];                    // 0xeec
};
#pragma pack(pop)
static_assert(sizeof(BootParams) == 4096);
static_assert(offsetof(BootParams, acpi_rsdp_addr) == 0x070);
static_assert(offsetof(BootParams, ext_ramdisk_image) == 0x0c0);
static_assert(offsetof(BootParams, ext_ramdisk_size) == 0x0c4);
static_assert(offsetof(BootParams, ext_cmd_line_ptr) == 0x0c8);
static_assert(offsetof(BootParams, cc_blob_address) == 0x13c);
static_assert(offsetof(BootParams, alt_mem_k) == 0x1e0);
static_assert(offsetof(BootParams, e820_entries) == 0x1e8);
static_assert(offsetof(BootParams, sentinel) == 0x1ef);
static_assert(offsetof(BootParams, hdr) == kSetupHeaderOffset);
static_assert(offsetof(BootParams, edd_mbr_sig_buffer) == 0x290);
static_assert(offsetof(BootParams, e820_table) == 0x2d0);
static_assert(offsetof(BootParams, eddbuf) == 0xd00);

inline constexpr uint8_t kLoaderTypeUndefined = 0xff;  // boot.rst type_of_loader
// boot.rst "Sample Boot Configuration": heap_end = setup stack end - 0x200. Only the real-mode
// setup code uses the heap; set for completeness since we set CAN_USE_HEAP.
inline constexpr uint16_t kHeapEndPtr = 0xfe00;

// The e820 map for mem_size bytes of RAM: [0, 0x9fc00) RAM, [0x9fc00, 1 MiB) reserved (EBDA,
// VGA, BIOS, our ACPI tables), [1 MiB, min(mem, 3 GiB)) RAM, [4 GiB, 4 GiB + rest) RAM.
std::vector<E820Entry> e820_map(uint64_t mem_size);

// Guest address for an initrd of `initrd_size` bytes: page-aligned, as high as possible below
// min(initrd_addr_max + 1, RAM end, MMIO gap), and at or above the kernel's runtime_end.
Result<uint64_t> place_initrd(const LoadedKernel& kernel, uint64_t initrd_size, uint64_t mem_size);

// Copies an initrd to guest address `addr` (from place_initrd).
Result<void> load_initrd(std::span<uint8_t> low_ram, std::span<const uint8_t> initrd,
                         uint64_t addr);

// Checks the command line against the kernel's cmdline_size (boot.rst: "maximum size of the
// command line without the terminating zero") and our kCmdlineMaxSize area; no NUL inside.
Result<void> check_cmdline(const BzImage& kernel, std::string_view cmdline);

// check_cmdline, then writes the command line and its NUL at kCmdlineAddr.
Result<void> write_cmdline(std::span<uint8_t> low_ram, const BzImage& kernel,
                           std::string_view cmdline);

struct ZeroPageConfig {
  uint64_t mem_size = 0;
  uint64_t cmdline_addr = kCmdlineAddr;
  uint64_t cmdline_len = 0;  // without the NUL, for the cmdline_size check
  uint64_t initrd_addr = 0;
  uint64_t initrd_size = 0;  // 0: no initrd
  uint64_t rsdp_addr = 0;    // 0: let the kernel search 0xe0000-0xfffff
};

// boot_params for a 64-bit boot: the kernel's setup header, type_of_loader 0xff, LOADED_HIGH |
// CAN_USE_HEAP, command line, initrd, e820 map and RSDP address.
Result<BootParams> build_zero_page(const BzImage& kernel, const ZeroPageConfig& config);

// Copies `params` to kZeroPageAddr.
Result<void> write_zero_page(std::span<uint8_t> low_ram, const BootParams& params);

}  // namespace minivmm::boot
