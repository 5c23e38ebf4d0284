// bzImage parsing and loading, Linux boot protocol (Documentation/arch/x86/boot.rst).
// Pure functions over byte spans; the kernel file is untrusted user input, so every failure is
// an Error with a one-line message. Called from the main thread during VM setup.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>

#include "boot/result.h"

namespace minivmm::boot {

// The real-mode kernel header, boot.rst "The Real-Mode Kernel Header", at file offset 0x1f1 and
// at boot_params offset 0x1f1. Offsets in comments are from the start of the file / zero page.
#pragma pack(push, 1)
struct SetupHeader {
  uint8_t setup_sects;             // 0x1f1
  uint16_t root_flags;             // 0x1f2
  uint32_t syssize;                // 0x1f4 protected-mode code size in 16-byte paragraphs
  uint16_t ram_size;               // 0x1f8
  uint16_t vid_mode;               // 0x1fa
  uint16_t root_dev;               // 0x1fc
  uint16_t boot_flag;              // 0x1fe 0xAA55
  uint16_t jump;                   // 0x200 short jmp; byte 0x201 + 0x202 = end of header
  uint32_t header;                 // 0x202 "HdrS"
  uint16_t version;                // 0x206 boot protocol version
  uint32_t realmode_swtch;         // 0x208
  uint16_t start_sys_seg;          // 0x20c
  uint16_t kernel_version;         // 0x20e
  uint8_t type_of_loader;          // 0x210
  uint8_t loadflags;               // 0x211
  uint16_t setup_move_size;        // 0x212
  uint32_t code32_start;           // 0x214
  uint32_t ramdisk_image;          // 0x218
  uint32_t ramdisk_size;           // 0x21c
  uint32_t bootsect_kludge;        // 0x220
  uint16_t heap_end_ptr;           // 0x224
  uint8_t ext_loader_ver;          // 0x226
  uint8_t ext_loader_type;         // 0x227
  uint32_t cmd_line_ptr;           // 0x228
  uint32_t initrd_addr_max;        // 0x22c
  uint32_t kernel_alignment;       // 0x230
  uint8_t relocatable_kernel;      // 0x234
  uint8_t min_alignment;           // 0x235
  uint16_t xloadflags;             // 0x236
  uint32_t cmdline_size;           // 0x238
  uint32_t hardware_subarch;       // 0x23c
  uint64_t hardware_subarch_data;  // 0x240
  uint32_t payload_offset;         // 0x248
  uint32_t payload_length;         // 0x24c
  uint64_t setup_data;             // 0x250
  uint64_t pref_address;           // 0x258
  uint32_t init_size;              // 0x260
  uint32_t handover_offset;        // 0x264
  uint32_t kernel_info_offset;     // 0x268
};
#pragma pack(pop)

inline constexpr size_t kSetupHeaderOffset = 0x1f1;
static_assert(sizeof(SetupHeader) == 0x26c - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, boot_flag) == 0x1fe - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, header) == 0x202 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, version) == 0x206 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, type_of_loader) == 0x210 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, loadflags) == 0x211 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, ramdisk_image) == 0x218 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, heap_end_ptr) == 0x224 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, cmd_line_ptr) == 0x228 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, initrd_addr_max) == 0x22c - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, xloadflags) == 0x236 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, cmdline_size) == 0x238 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, pref_address) == 0x258 - kSetupHeaderOffset);
static_assert(offsetof(SetupHeader, init_size) == 0x260 - kSetupHeaderOffset);

// The zero page has room for the setup header from 0x1f1 up to 0x290 (edd_mbr_sig_buffer).
inline constexpr size_t kSetupHeaderMaxEnd = 0x290;

inline constexpr uint16_t kBootFlag = 0xaa55;
inline constexpr uint32_t kHdrSMagic = 0x53726448;  // "HdrS" little-endian
// 64-bit entry at load address + 0x200 is available from protocol 2.12 on (xloadflags).
inline constexpr uint16_t kMinBootProtocol = 0x020c;
// loadflags (boot.rst "Details of Header Fields").
inline constexpr uint8_t kLoadedHigh = 0x01;
inline constexpr uint8_t kKeepSegments = 0x40;
inline constexpr uint8_t kCanUseHeap = 0x80;
// xloadflags.
inline constexpr uint16_t kXlfKernel64 = 0x01;
inline constexpr uint16_t kXlfCanBeLoadedAbove4G = 0x02;

// What a loader needs from a validated bzImage.
struct BzImage {
  SetupHeader header;  // copy of the file's setup header (fields as in the file)
  size_t header_end;   // file offset one past the setup header: 0x202 + byte[0x201]
  // The header bytes [0x1f1, min(header_end, 0x290)) verbatim, for copying into boot_params
  // (boot.rst "64-bit Boot Protocol": the setup header is loaded into boot_params as is).
  std::array<uint8_t, kSetupHeaderMaxEnd - kSetupHeaderOffset> raw_header;
  size_t raw_header_len;
  uint16_t protocol_version;  // header.version, e.g. 0x020f
  uint32_t setup_sects;       // effective: 0 in the file means 4
  size_t kernel_offset;       // file offset of the protected-mode kernel: (setup_sects+1)*512
  size_t kernel_size;         // bytes from kernel_offset to the end of the file
  uint32_t init_size;         // bytes of memory the kernel needs from its runtime start
  uint32_t cmdline_size;      // max command line length without the terminating NUL
  uint32_t initrd_addr_max;   // highest address the initrd's last byte may occupy
  uint32_t kernel_alignment;
  bool relocatable;
  uint64_t pref_address;
};

// Validates `image` as a bzImage a 64-bit loader can boot: boot flag 0xAA55, "HdrS", boot
// protocol >= 2.12, XLF_KERNEL_64, LOADED_HIGH, and a file long enough for its setup sectors
// and syssize.
Result<BzImage> parse_bzimage(std::span<const uint8_t> image);

struct LoadedKernel {
  BzImage image;
  uint64_t load_addr;    // where the protected-mode kernel was copied (kKernelLoadAddr)
  uint64_t entry_point;  // 64-bit entry: load_addr + 0x200
  // End of the memory the kernel uses while booting: the decompressor moves itself to
  // max(align_up(load_addr, kernel_alignment), pref_address) (or pref_address if not
  // relocatable) and uses init_size bytes from there (arch/x86/boot/compressed/head_64.S).
  // Anything placed in RAM (the initrd) must lie at or above this.
  uint64_t runtime_end;
};

// Where the decompressed kernel will run, as described for LoadedKernel::runtime_end.
uint64_t kernel_runtime_start(const BzImage& image, uint64_t load_addr);

// Parses `image`, checks that the kernel fits in low RAM including init_size, and copies the
// protected-mode part to kKernelLoadAddr. `low_ram` is the host view of guest RAM from guest
// physical address 0 (index == guest address) up to min(mem_size, kMmioGapStart).
Result<LoadedKernel> load_bzimage(std::span<const uint8_t> image, std::span<uint8_t> low_ram);

}  // namespace minivmm::boot
