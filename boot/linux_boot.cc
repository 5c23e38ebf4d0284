#include "boot/linux_boot.h"

#include <string>

#include "boot/layout.h"
#include "boot/mptable.h"
#include "boot/zero_page.h"

namespace minivmm::boot {

Result<LinuxBootInfo> setup_linux_boot(std::span<uint8_t> low_ram, const LinuxBootConfig& config) {
  if (low_ram.size() != low_ram_size(config.mem_size)) {
    return Error{"low RAM span is " + std::to_string(low_ram.size()) + " bytes, expected " +
                 std::to_string(low_ram_size(config.mem_size))};
  }
  auto kernel = load_bzimage(config.kernel, low_ram);
  if (!kernel) return Error{kernel.error()};
  if (auto ok = write_cmdline(low_ram, kernel->image, config.cmdline); !ok) {
    return Error{ok.error()};
  }
  auto initrd_addr = place_initrd(*kernel, config.initrd.size(), config.mem_size);
  if (!initrd_addr) return Error{initrd_addr.error()};
  if (auto ok = load_initrd(low_ram, config.initrd, *initrd_addr); !ok) return Error{ok.error()};

  LinuxBootInfo info;
  if (auto ok = write_mptable(low_ram, config.num_cpus); !ok) return Error{ok.error()};
  if (config.acpi) {
    auto rsdp = write_acpi_tables(low_ram, config.acpi_config);
    if (!rsdp) return Error{rsdp.error()};
    info.rsdp_addr = *rsdp;
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
  if (auto ok = write_gdt_and_idt(low_ram); !ok) return Error{ok.error()};

  info.entry_point = kernel->entry_point;
  info.zero_page_addr = kZeroPageAddr;
  info.stack_pointer = kBootStackPointer;
  info.initrd_addr = *initrd_addr;
  info.cpu = long_mode_state();
  return info;
}

}  // namespace minivmm::boot
