#include "boot/bzimage.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <string>

#include "boot/format.h"
#include "boot/layout.h"

namespace minivmm::boot {
namespace {

constexpr size_t kSectorSize = 512;
constexpr size_t kDefaultSetupSects = 4;  // boot.rst: "If this field is 0, the real value is 4."
constexpr size_t kHeaderLengthByte = 0x201;
constexpr size_t kHeaderBase = 0x202;

std::string version_string(uint16_t version) {
  return std::to_string(version >> 8) + "." + std::to_string(version & 0xff);
}

uint64_t align_up(uint64_t value, uint64_t alignment) {
  return (value + alignment - 1) / alignment * alignment;
}

}  // namespace

Result<BzImage> parse_bzimage(std::span<const uint8_t> image) {
  const size_t size = image.size();
  if (size < kSectorSize) {
    return Error{"not a bzImage: file is " + std::to_string(size) +
                 " bytes, smaller than the 512-byte boot sector"};
  }
  uint16_t boot_flag;
  std::memcpy(&boot_flag, image.data() + 0x1fe, sizeof boot_flag);
  if (boot_flag != kBootFlag) {
    return Error{"not a bzImage: missing boot flag 0xAA55 at offset 0x1fe"};
  }
  if (size < kSetupHeaderOffset + sizeof(SetupHeader)) {
    return Error{"truncated kernel image: " + std::to_string(size) +
                 " bytes is too short for the setup header"};
  }
  BzImage out{};
  std::memcpy(&out.header, image.data() + kSetupHeaderOffset, sizeof(SetupHeader));
  const SetupHeader& hdr = out.header;
  if (hdr.header != kHdrSMagic) return Error{"not a bzImage: missing HdrS magic at offset 0x202"};
  if (hdr.version < kMinBootProtocol) {
    return Error{"kernel boot protocol " + version_string(hdr.version) +
                 " is too old: 64-bit boot needs " + version_string(kMinBootProtocol)};
  }
  if ((hdr.xloadflags & kXlfKernel64) == 0) {
    return Error{"kernel does not support 64-bit entry (XLF_KERNEL_64)"};
  }
  if ((hdr.loadflags & kLoadedHigh) == 0) {
    return Error{"not a bzImage: zImage kernels (LOADED_HIGH clear) are not supported"};
  }
  // boot.rst "The Real-Mode Kernel Header": the header ends at 0x202 + the byte at 0x201.
  out.header_end = kHeaderBase + image[kHeaderLengthByte];
  if (out.header_end < kSetupHeaderOffset + sizeof(SetupHeader)) {
    return Error{"invalid setup header: its length byte at 0x201 says it ends at " +
                 hex(out.header_end) + ", before the protocol 2.12 fields"};
  }
  out.protocol_version = hdr.version;
  out.setup_sects = hdr.setup_sects == 0 ? kDefaultSetupSects : hdr.setup_sects;
  out.kernel_offset = (size_t{out.setup_sects} + 1) * kSectorSize;
  if (out.header_end > out.kernel_offset) {
    return Error{"invalid setup header: it extends past the " + std::to_string(out.setup_sects) +
                 " setup sectors"};
  }
  if (out.kernel_offset >= size) {
    return Error{"truncated kernel image: " + std::to_string(out.setup_sects) +
                 " setup sectors but the file is only " + std::to_string(size) + " bytes"};
  }
  out.kernel_size = size - out.kernel_offset;
  // header_end <= kernel_offset < size, so the whole header is inside the file.
  out.raw_header_len = (out.header_end < kSetupHeaderMaxEnd ? out.header_end : kSetupHeaderMaxEnd) -
                       kSetupHeaderOffset;
  std::memcpy(out.raw_header.data(), image.data() + kSetupHeaderOffset, out.raw_header_len);
  // syssize (protocol 2.04+): protected-mode code size in 16-byte paragraphs.
  const uint64_t syssize_bytes = uint64_t{hdr.syssize} * 16;
  if (syssize_bytes > out.kernel_size) {
    return Error{"truncated kernel image: the protected-mode kernel needs " +
                 std::to_string(syssize_bytes) + " bytes, the file has " +
                 std::to_string(out.kernel_size)};
  }
  out.init_size = hdr.init_size;
  if (out.init_size == 0) return Error{"invalid setup header: init_size is 0"};
  out.cmdline_size = hdr.cmdline_size;
  out.initrd_addr_max = hdr.initrd_addr_max;
  out.kernel_alignment = hdr.kernel_alignment;
  out.relocatable = hdr.relocatable_kernel != 0;
  out.pref_address = hdr.pref_address;
  const uint32_t align = out.kernel_alignment;
  if (out.relocatable && (align == 0 || (align & (align - 1)) != 0)) {
    return Error{"invalid setup header: kernel_alignment " + hex(align) + " is not a power of two"};
  }
  return out;
}

uint64_t kernel_runtime_start(const BzImage& image, uint64_t load_addr) {
  if (!image.relocatable) return image.pref_address;
  const uint64_t aligned = align_up(load_addr, image.kernel_alignment);
  return aligned > image.pref_address ? aligned : image.pref_address;
}

Result<LoadedKernel> load_bzimage(std::span<const uint8_t> image, std::span<uint8_t> low_ram) {
  auto parsed = parse_bzimage(image);
  if (!parsed) return Error{parsed.error()};
  LoadedKernel out{std::move(parsed).value(), kKernelLoadAddr, kKernelLoadAddr + kKernelEntryOffset,
                   0};
  const BzImage& bz = out.image;
  const uint64_t start = kernel_runtime_start(bz, out.load_addr);
  // start is the file's pref_address when that is higher, any 64-bit value: start + init_size
  // must not wrap past 2^64 to an address that seems to fit in RAM.
  if (bz.init_size > std::numeric_limits<uint64_t>::max() - start) {
    return Error{"invalid setup header: init_size " + mib(bz.init_size) + " at " + hex(start) +
                 " ends past the 64-bit address space"};
  }
  out.runtime_end = start + bz.init_size;
  if (out.runtime_end < out.load_addr + bz.kernel_size) {
    out.runtime_end = out.load_addr + bz.kernel_size;
  }
  if (out.runtime_end > low_ram.size()) {
    return Error{"guest memory too small for the kernel: it needs RAM up to " +
                 hex(out.runtime_end) + " (init_size " + mib(bz.init_size) + " at " + hex(start) +
                 "), the guest has " + mib(low_ram.size()) + " below the MMIO gap"};
  }
  auto dest = guest_range(low_ram, out.load_addr, bz.kernel_size);
  if (!dest) return Error{"guest memory too small for the " + mib(bz.kernel_size) + " kernel"};
  std::memcpy(dest->data(), image.data() + bz.kernel_offset, bz.kernel_size);
  return out;
}

}  // namespace minivmm::boot
