#include "boot/zero_page.h"

#include <cstdio>
#include <cstring>
#include <string>

#include "boot/format.h"
#include "boot/layout.h"

namespace minivmm::boot {
namespace {

uint32_t low32(uint64_t value) {
  return static_cast<uint32_t>(value);
}
uint32_t high32(uint64_t value) {
  return static_cast<uint32_t>(value >> 32);
}

}  // namespace

std::vector<E820Entry> e820_map(uint64_t mem_size) {
  std::vector<E820Entry> map;
  const uint64_t low_end = low_ram_size(mem_size);
  const uint64_t base_end = low_end < kEbdaStart ? low_end : kEbdaStart;
  if (base_end > 0) map.push_back({0, base_end, kE820Ram});
  map.push_back({kEbdaStart, kKernelLoadAddr - kEbdaStart, kE820Reserved});
  if (low_end > kKernelLoadAddr)
    map.push_back({kKernelLoadAddr, low_end - kKernelLoadAddr, kE820Ram});
  if (mem_size > low_end) map.push_back({kHighRamStart, mem_size - low_end, kE820Ram});
  return map;
}

Result<uint64_t> place_initrd(const LoadedKernel& kernel, uint64_t initrd_size, uint64_t mem_size) {
  if (initrd_size == 0) return uint64_t{0};
  // boot.rst initrd_addr_max: "the address of the last byte" the initrd may occupy.
  uint64_t limit = uint64_t{kernel.image.initrd_addr_max} + 1;
  const uint64_t low_end = low_ram_size(mem_size);
  if (limit > low_end) limit = low_end;
  const uint64_t floor = (kernel.runtime_end + kPageSize - 1) / kPageSize * kPageSize;
  if (initrd_size > limit || (limit - initrd_size) / kPageSize * kPageSize < floor) {
    const uint64_t room = limit > floor ? limit - floor : 0;
    return Error{"initrd of " + mib(initrd_size) + " does not fit in guest memory below " +
                 hex(limit) + ": the kernel uses RAM up to " + hex(kernel.runtime_end) +
                 ", leaving " + std::to_string(room / kMiB) + " MiB"};
  }
  return (limit - initrd_size) / kPageSize * kPageSize;
}

Result<void> load_initrd(std::span<uint8_t> low_ram, std::span<const uint8_t> initrd,
                         uint64_t addr) {
  auto dest = guest_range(low_ram, addr, initrd.size());
  if (!dest) {
    return Error{"initrd of " + mib(initrd.size()) + " at " + hex(addr) +
                 " is outside guest memory"};
  }
  if (!initrd.empty()) std::memcpy(dest->data(), initrd.data(), initrd.size());
  return {};
}

Result<void> check_cmdline(const BzImage& kernel, std::string_view cmdline) {
  if (cmdline.find('\0') != std::string_view::npos) {
    return Error{"kernel command line contains a NUL byte"};
  }
  if (cmdline.size() > kernel.cmdline_size) {
    return Error{"kernel command line is " + std::to_string(cmdline.size()) +
                 " bytes; this kernel accepts at most " + std::to_string(kernel.cmdline_size)};
  }
  if (cmdline.size() + 1 > kCmdlineMaxSize) {
    return Error{"kernel command line is " + std::to_string(cmdline.size()) +
                 " bytes; minivmm passes at most " + std::to_string(kCmdlineMaxSize - 1)};
  }
  return {};
}

Result<void> write_cmdline(std::span<uint8_t> low_ram, const BzImage& kernel,
                           std::string_view cmdline) {
  if (auto ok = check_cmdline(kernel, cmdline); !ok) return ok;
  auto dest = guest_range(low_ram, kCmdlineAddr, cmdline.size() + 1);
  if (!dest) return Error{"guest memory too small for the kernel command line"};
  if (!cmdline.empty()) std::memcpy(dest->data(), cmdline.data(), cmdline.size());
  (*dest)[cmdline.size()] = 0;
  return {};
}

Result<BootParams> build_zero_page(const BzImage& kernel, const ZeroPageConfig& config) {
  if (config.cmdline_len > kernel.cmdline_size || config.cmdline_len + 1 > kCmdlineMaxSize) {
    return Error{"kernel command line is " + std::to_string(config.cmdline_len) +
                 " bytes; this kernel accepts at most " + std::to_string(kernel.cmdline_size)};
  }
  const auto map = e820_map(config.mem_size);
  if (map.size() > kE820MaxEntries) return Error{"too many e820 entries"};

  BootParams params;
  std::memset(&params, 0, sizeof params);
  // boot.rst "64-bit Boot Protocol": the setup header from the image goes into boot_params at
  // 0x1f1 as is; the loader then fills in its fields ("Details of Header Fields").
  std::memcpy(reinterpret_cast<uint8_t*>(&params) + kSetupHeaderOffset, kernel.raw_header.data(),
              kernel.raw_header_len);
  SetupHeader hdr;
  std::memcpy(&hdr, &params.hdr, sizeof hdr);
  hdr.type_of_loader = kLoaderTypeUndefined;
  hdr.loadflags = static_cast<uint8_t>(hdr.loadflags | kLoadedHigh | kCanUseHeap);
  hdr.heap_end_ptr = kHeapEndPtr;
  hdr.cmd_line_ptr = low32(config.cmdline_addr);
  hdr.ramdisk_image = low32(config.initrd_addr);
  hdr.ramdisk_size = low32(config.initrd_size);
  std::memcpy(&params.hdr, &hdr, sizeof hdr);
  params.ext_cmd_line_ptr = high32(config.cmdline_addr);
  params.ext_ramdisk_image = high32(config.initrd_addr);
  params.ext_ramdisk_size = high32(config.initrd_size);
  params.acpi_rsdp_addr = config.rsdp_addr;
  params.e820_entries = static_cast<uint8_t>(map.size());
  std::memcpy(params.e820_table, map.data(), map.size() * sizeof(E820Entry));
  return params;
}

Result<void> write_zero_page(std::span<uint8_t> low_ram, const BootParams& params) {
  auto dest = guest_range(low_ram, kZeroPageAddr, sizeof params);
  if (!dest) return Error{"guest memory too small for the zero page"};
  std::memcpy(dest->data(), &params, sizeof params);
  return {};
}

}  // namespace minivmm::boot
