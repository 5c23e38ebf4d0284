#include "boot/linux_boot.h"

#include <cstring>
#include <string>
#include <vector>

#include "boot/layout.h"
#include "boot/mptable.h"
#include "boot/pvh.h"
#include "boot/zero_page.h"

namespace minivmm::boot {
namespace {

// An ELF kernel has no setup header; its 64-bit entry gets boot_params with one made up the
// way other VMMs do it: the magic values, protocol 2.15, a command line as long as our area
// allows, initrds anywhere below 2 GiB.
BzImage elf_setup_header() {
  BzImage image{};
  SetupHeader& hdr = image.header;
  hdr.boot_flag = kBootFlag;
  hdr.header = kHdrSMagic;
  hdr.version = 0x020f;
  hdr.initrd_addr_max = 0x7fff'ffff;
  hdr.kernel_alignment = 0x20'0000;
  hdr.xloadflags = kXlfKernel64;
  hdr.cmdline_size = static_cast<uint32_t>(kCmdlineMaxSize - 1);
  image.raw_header_len = sizeof(SetupHeader);
  std::memcpy(image.raw_header.data(), &hdr, sizeof(SetupHeader));
  image.protocol_version = hdr.version;
  image.cmdline_size = hdr.cmdline_size;
  image.initrd_addr_max = hdr.initrd_addr_max;
  image.kernel_alignment = hdr.kernel_alignment;
  return image;
}

Result<LoadedKernel> load_kernel(std::span<uint8_t> low_ram, const LinuxBootConfig& config,
                                 LinuxBootInfo& info) {
  if (!is_elf(config.kernel)) {
    if (config.elf_entry != ElfEntry::kAuto) {
      return Error{"the kernel is a bzImage: an entry choice is for ELF (vmlinux) kernels"};
    }
    // A bzImage is loaded from bytes in memory; a reader's file is read whole first.
    std::vector<uint8_t> whole;
    std::span<const uint8_t> bytes = config.kernel.bytes();
    if (bytes.empty() && !config.kernel.empty()) {
      whole.resize(config.kernel.size());
      if (!config.kernel.read(0, whole)) return Error{"cannot read the kernel file"};
      bytes = whole;
    }
    auto kernel = load_bzimage(bytes, low_ram);
    if (!kernel) return Error{kernel.error()};
    info.protocol = LinuxBootInfo::Protocol::kBzImage;
    return *kernel;
  }
  auto elf = load_elf_kernel(config.kernel, low_ram);
  if (!elf) return Error{elf.error()};
  const bool pvh = config.elf_entry == ElfEntry::kPvh ||
                   (config.elf_entry == ElfEntry::kAuto && elf->pvh_entry.has_value());
  if (pvh && !elf->pvh_entry) {
    return Error{"ELF kernel: no PVH entry note (XEN_ELFNOTE_PHYS32_ENTRY; Linux: CONFIG_PVH)"};
  }
  info.protocol = pvh ? LinuxBootInfo::Protocol::kElfPvh : LinuxBootInfo::Protocol::kElf64;
  LoadedKernel kernel{};
  kernel.image = elf_setup_header();
  kernel.load_addr = elf->start;
  kernel.entry_point = pvh ? *elf->pvh_entry : elf->entry;
  kernel.runtime_end = elf->end;  // the segments' memsz includes bss and brk
  return kernel;
}

}  // namespace

const char* protocol_name(LinuxBootInfo::Protocol protocol) {
  switch (protocol) {
    case LinuxBootInfo::Protocol::kBzImage:
      return "bzImage";
    case LinuxBootInfo::Protocol::kElf64:
      return "ELF 64-bit entry";
    case LinuxBootInfo::Protocol::kElfPvh:
      return "ELF PVH entry";
  }
  return "?";
}

Result<LinuxBootInfo> setup_linux_boot(std::span<uint8_t> low_ram, const LinuxBootConfig& config) {
  if (low_ram.size() != low_ram_size(config.mem_size)) {
    return Error{"low RAM span is " + std::to_string(low_ram.size()) + " bytes, expected " +
                 std::to_string(low_ram_size(config.mem_size))};
  }
  LinuxBootInfo info;
  auto kernel = load_kernel(low_ram, config, info);
  if (!kernel) return Error{kernel.error()};
  if (auto ok = write_cmdline(low_ram, kernel->image, config.cmdline); !ok) {
    return Error{ok.error()};
  }
  auto initrd_addr = place_initrd(*kernel, config.initrd.size(), config.mem_size);
  if (!initrd_addr) return Error{initrd_addr.error()};
  if (auto ok = load_initrd(low_ram, config.initrd, *initrd_addr); !ok) return Error{ok.error()};

  if (auto ok = write_mptable(low_ram, config.num_cpus); !ok) return Error{ok.error()};
  if (config.acpi) {
    auto rsdp = write_acpi_tables(low_ram, config.acpi_config);
    if (!rsdp) return Error{rsdp.error()};
    info.rsdp_addr = *rsdp;
  }
  if (auto ok = write_gdt_and_idt(low_ram); !ok) return Error{ok.error()};
  info.entry_point = kernel->entry_point;
  info.stack_pointer = kBootStackPointer;
  info.initrd_addr = *initrd_addr;

  if (info.protocol == LinuxBootInfo::Protocol::kElfPvh) {
    PvhConfig pvh;
    pvh.mem_size = config.mem_size;
    pvh.cmdline_addr = kCmdlineAddr;
    pvh.initrd_addr = *initrd_addr;
    pvh.initrd_size = config.initrd.size();
    pvh.rsdp_addr = info.rsdp_addr;
    auto start_info = write_pvh_start_info(low_ram, pvh);
    if (!start_info) return Error{start_info.error()};
    info.start_info_addr = *start_info;
    info.cpu = pvh_state();
    return info;
  }
  ZeroPageConfig zp;
  zp.mem_size = config.mem_size;
  zp.cmdline_addr = kCmdlineAddr;
  zp.cmdline_len = config.cmdline.size();
  zp.initrd_addr = *initrd_addr;
  zp.initrd_size = config.initrd.size();
  zp.rsdp_addr = info.rsdp_addr;
  auto params = build_zero_page(kernel->image, zp);
  if (!params) return Error{params.error()};
  if (auto ok = write_zero_page(low_ram, *params); !ok) return Error{ok.error()};
  if (auto ok = write_page_tables(low_ram); !ok) return Error{ok.error()};
  info.zero_page_addr = kZeroPageAddr;
  info.cpu = long_mode_state();
  return info;
}

}  // namespace minivmm::boot
