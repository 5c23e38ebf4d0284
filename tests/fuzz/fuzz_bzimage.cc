// libFuzzer target: the bzImage loader (boot/bzimage.h) and setup_linux_boot on a bzImage,
// over inputs that are whole kernel files (an ELF file is fuzz_elf's). The boot sector's
// first byte, which no loader reads, picks the guest's RAM size (16-96 MiB). Checks:
//   parse_bzimage accepts only what it documents (boot flag, HdrS, protocol >= 2.12,
//     XLF_KERNEL_64, LOADED_HIGH), and what it returns agrees with the file: header inside
//     the setup sectors, kernel part inside the file, the raw header copied verbatim;
//   load_bzimage copies exactly the protected-mode part to 1 MiB, and the memory the kernel
//     runs in -- init_size bytes from where it decompresses itself (computed here without
//     wrapping) -- lies inside low RAM;
//   setup_linux_boot succeeds only on a kernel load_bzimage takes, the same from bytes and
//     from a reader, refuses an ELF entry choice for a bzImage, and places the initrd page
//     aligned, above the kernel's memory and below initrd_addr_max and the end of RAM, with
//     the zero page and command line where it says.
// No crash, no sanitizer report.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

#include "boot/bzimage.h"
#include "boot/elf.h"
#include "boot/layout.h"
#include "boot/linux_boot.h"

using namespace minivmm::boot;

namespace {
constexpr uint64_t kMaxRam = 96 * kMiB;

void check_at(bool ok, const char* what, int line) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_bzimage.cc:%d: check failed: %s\n", line, what);
  __builtin_trap();
}
#define check(cond) check_at((cond), #cond, __LINE__)

template <typename T>
T field(std::span<const uint8_t> bytes, size_t offset) {
  T v;
  std::memcpy(&v, bytes.data() + offset, sizeof v);
  return v;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> image(data, size);
  if (is_elf(image)) return 0;
  const uint64_t mem = size == 0 ? 16 * kMiB : (16 + data[0] % 81) * kMiB;
  static std::vector<uint8_t> ram(kMaxRam);
  const std::span<uint8_t> low(ram.data(), low_ram_size(mem));

  auto parsed = parse_bzimage(image);
  if (parsed) {
    const BzImage& bz = *parsed;
    check(size >= 512);
    check(field<uint16_t>(image, 0x1fe) == kBootFlag);
    check(bz.header.header == kHdrSMagic);
    check(bz.protocol_version >= kMinBootProtocol);
    check(bz.header.xloadflags & kXlfKernel64);
    check(bz.header.loadflags & kLoadedHigh);
    check(bz.header_end == 0x202u + image[0x201]);
    check(bz.header_end >= kSetupHeaderOffset + sizeof(SetupHeader));
    check(bz.kernel_offset == (size_t{bz.setup_sects} + 1) * 512);
    check(bz.header_end <= bz.kernel_offset && bz.kernel_offset < size);
    check(bz.kernel_size == size - bz.kernel_offset);
    check(uint64_t{bz.header.syssize} * 16 <= bz.kernel_size);
    check(bz.init_size != 0);
    check(bz.raw_header_len == std::min(bz.header_end, kSetupHeaderMaxEnd) - kSetupHeaderOffset);
    check(std::memcmp(bz.raw_header.data(), data + kSetupHeaderOffset, bz.raw_header_len) == 0);
    if (bz.relocatable) {
      check(bz.kernel_alignment != 0 && (bz.kernel_alignment & (bz.kernel_alignment - 1)) == 0);
    }
  }

  auto loaded = load_bzimage(image, low);
  check(!loaded || parsed);
  if (loaded) {
    const LoadedKernel& k = *loaded;
    check(k.load_addr == kKernelLoadAddr);
    check(k.entry_point == kKernelLoadAddr + kKernelEntryOffset);
    // Where the decompressor runs, recomputed in 128 bits: it must not wrap past 2^64 into
    // a small number that looks like it fits.
    const BzImage& bz = k.image;
    unsigned __int128 start = bz.pref_address;
    if (bz.relocatable) {
      const unsigned __int128 align = bz.kernel_alignment;
      const unsigned __int128 aligned = (kKernelLoadAddr + align - 1) / align * align;
      if (aligned > start) start = aligned;
    }
    check(start + bz.init_size <= low.size());
    check(k.runtime_end >= start + bz.init_size);
    check(k.runtime_end >= k.load_addr + bz.kernel_size);
    check(k.runtime_end <= low.size());
    check(std::memcmp(low.data() + k.load_addr, data + bz.kernel_offset, bz.kernel_size) == 0);
  }

  static constexpr std::string_view kCmdline = "console=ttyS0 reboot=k panic=-1";
  static const uint8_t initrd[8192] = {1, 2, 3};
  const size_t initrd_size = size > 1 ? size_t{data[1]} * 32 : 0;  // a page or two, or none
  const auto config_for = [&](ImageSource source, ElfEntry entry) {
    LinuxBootConfig config;
    config.mem_size = mem;
    config.kernel = source;
    config.elf_entry = entry;
    config.initrd = std::span(initrd, initrd_size);
    config.cmdline = kCmdline;
    return config;
  };
  check(!setup_linux_boot(low, config_for(image, ElfEntry::kPvh)));
  check(!setup_linux_boot(low, config_for(image, ElfEntry::kLinux64)));

  // From a reader (as the VMM passes a file): the loader reads the file whole first.
  const ImageSource reader(size, [image](uint64_t offset, std::span<uint8_t> out) {
    std::memcpy(out.data(), image.data() + offset, out.size());
    return true;
  });
  auto via_reader = setup_linux_boot(low, config_for(reader, ElfEntry::kAuto));
  auto info = setup_linux_boot(low, config_for(image, ElfEntry::kAuto));
  check(!info || loaded);
  check(!info == !via_reader);
  if (!info) return 0;
  check(via_reader->initrd_addr == info->initrd_addr);
  check(info->protocol == LinuxBootInfo::Protocol::kBzImage);
  check(info->entry_point == kKernelLoadAddr + kKernelEntryOffset);
  check(info->zero_page_addr == kZeroPageAddr);
  if (initrd_size == 0) {
    check(info->initrd_addr == 0);
  } else {
    const uint64_t addr = info->initrd_addr;
    check(addr % kPageSize == 0);
    check(addr >= loaded->runtime_end);
    check(addr + initrd_size <= low.size());
    check(addr + initrd_size - 1 <= loaded->image.initrd_addr_max);
    check(std::memcmp(low.data() + addr, initrd, initrd_size) == 0);
  }
  // The zero page carries the setup header with the loader's fields filled in.
  const std::span<const uint8_t> zp(low.data() + kZeroPageAddr, kPageSize);
  check(field<uint32_t>(zp, 0x202) == kHdrSMagic);
  check(field<uint32_t>(zp, 0x228) == kCmdlineAddr);
  check(field<uint32_t>(zp, 0x218) == info->initrd_addr);
  check(field<uint32_t>(zp, 0x21c) == initrd_size);
  check(std::memcmp(low.data() + kCmdlineAddr, kCmdline.data(), kCmdline.size()) == 0);
  check(low[kCmdlineAddr + kCmdline.size()] == 0);
  return 0;
}
