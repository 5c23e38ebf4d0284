// libFuzzer target: the ELF kernel loader (boot/elf.h) and setup_linux_boot on an ELF kernel,
// over inputs that are whole kernel files. Checks that whatever parses lies where it must
// (segments within [1 MiB, end of RAM), sorted, apart; entries inside them) and that loading
// and both entry setups never crash. No crash, no sanitizer report.
#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "boot/elf.h"
#include "boot/layout.h"
#include "boot/linux_boot.h"

using namespace minivmm::boot;

namespace {
constexpr uint64_t kRam = 96 * kMiB;  // room for Linux-like segments at 16 MiB and an initrd

void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> image(data, size);
  auto kernel = parse_elf_kernel(image, kRam);
  if (!kernel) return 0;
  uint64_t prev_end = kKernelLoadAddr;
  for (const ElfSegment& s : kernel->segments) {
    check(s.paddr >= prev_end);
    check(s.filesz <= s.memsz);
    check(s.paddr + s.memsz <= kRam);
    prev_end = s.paddr + s.memsz;
  }
  check(kernel->entry >= kernel->start && kernel->entry < kernel->end);
  static std::vector<uint8_t> ram(kRam);
  const uint8_t initrd[64] = {};
  for (ElfEntry entry : {ElfEntry::kAuto, ElfEntry::kLinux64}) {
    LinuxBootConfig config;
    config.mem_size = kRam;
    config.kernel = image;
    config.initrd = initrd;
    config.cmdline = "console=ttyS0";
    config.elf_entry = entry;
    auto info = setup_linux_boot(ram, config);
    if (info && info->initrd_addr != 0) check(info->initrd_addr >= kernel->end);
  }
  return 0;
}
