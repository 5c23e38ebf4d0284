// Builds synthetic bzImage files for the boot tests: a boot sector with a setup header
// (boot.rst "The Real-Mode Kernel Header") and a recognizable protected-mode payload.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "boot/bzimage.h"

namespace minivmm::boot::test {

struct FakeBzImage {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint8_t loadflags = kLoadedHigh;
  uint16_t xloadflags = kXlfKernel64 | kXlfCanBeLoadedAbove4G;
  uint32_t init_size = 0x40'0000;  // 4 MiB
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fff'ffff;
  uint32_t kernel_alignment = 0x20'0000;
  uint8_t relocatable = 1;
  uint64_t pref_address = 0x100'0000;  // 16 MiB, Linux's default LOAD_PHYSICAL_ADDR
  size_t kernel_size = 0x3000;         // protected-mode part
  uint8_t header_length_byte = 0x6a;   // 0x202 + 0x6a = 0x26c, the end of protocol 2.15 header

  std::vector<uint8_t> build() const {
    const size_t kernel_offset = (size_t{setup_sects == 0 ? 4u : setup_sects} + 1) * 512;
    std::vector<uint8_t> image(kernel_offset + kernel_size, 0);
    SetupHeader hdr{};
    hdr.setup_sects = setup_sects;
    hdr.syssize = static_cast<uint32_t>(kernel_size / 16);
    hdr.boot_flag = kBootFlag;
    hdr.jump = static_cast<uint16_t>(0xeb | (header_length_byte << 8));
    hdr.header = kHdrSMagic;
    hdr.version = version;
    hdr.loadflags = loadflags;
    hdr.code32_start = 0x100000;
    hdr.initrd_addr_max = initrd_addr_max;
    hdr.kernel_alignment = kernel_alignment;
    hdr.relocatable_kernel = relocatable;
    hdr.xloadflags = xloadflags;
    hdr.cmdline_size = cmdline_size;
    hdr.pref_address = pref_address;
    hdr.init_size = init_size;
    std::memcpy(image.data() + kSetupHeaderOffset, &hdr, sizeof hdr);
    for (size_t i = 0; i < kernel_size; ++i) {
      image[kernel_offset + i] = static_cast<uint8_t>(i * 7 + 3);
    }
    return image;
  }
};

}  // namespace minivmm::boot::test
