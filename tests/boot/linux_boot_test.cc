#include "boot/linux_boot.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "boot/cmdline.h"
#include "boot/layout.h"
#include "boot/zero_page.h"
#include "tests/boot/fake_bzimage.h"

using namespace minivmm::boot;
using minivmm::boot::test::FakeBzImage;

TEST_CASE("setup_linux_boot prepares all of low memory", "[boot][linux_boot]") {
  const auto kernel = FakeBzImage{}.build();
  const std::vector<uint8_t> initrd(3 * kMiB + 5, 0x5a);
  LinuxBootConfig config;
  config.mem_size = 64 * kMiB;
  config.kernel = kernel;
  config.initrd = initrd;
  config.acpi_config.num_cpus = 2;
  config.acpi_config.devices = {*virtio_mmio_slot(0)};
  const std::string cmdline = "console=ttyS0 " + virtio_mmio_cmdline(config.acpi_config.devices);
  config.cmdline = cmdline;
  std::vector<uint8_t> ram(config.mem_size, 0);
  auto info = setup_linux_boot(ram, config);
  REQUIRE(info);
  CHECK(info->entry_point == 0x100200);
  CHECK(info->zero_page_addr == 0x7000);
  CHECK(info->stack_pointer == 0x8ff0);
  CHECK(info->rsdp_addr == 0xe0000);
  CHECK(info->initrd_addr == (64 * kMiB - initrd.size()) / kPageSize * kPageSize);
  CHECK(info->cpu.cr3 == kPml4Addr);

  BootParams params;
  std::memcpy(&params, ram.data() + 0x7000, sizeof params);
  const uint32_t cmd_line_ptr = params.hdr.cmd_line_ptr;
  const uint32_t ramdisk_image = params.hdr.ramdisk_image;
  const uint32_t ramdisk_size = params.hdr.ramdisk_size;
  const uint64_t rsdp = params.acpi_rsdp_addr;
  CHECK(cmd_line_ptr == kCmdlineAddr);
  CHECK(std::string(reinterpret_cast<const char*>(ram.data() + cmd_line_ptr)) == cmdline);
  CHECK(ramdisk_image == info->initrd_addr);
  CHECK(ramdisk_size == initrd.size());
  CHECK(ram[ramdisk_image] == 0x5a);
  CHECK(ram[ramdisk_image + ramdisk_size - 1] == 0x5a);
  CHECK(rsdp == 0xe0000);
  CHECK(std::memcmp(ram.data() + rsdp, "RSD PTR ", 8) == 0);
  CHECK(static_cast<int>(params.e820_entries) == 3);
  CHECK(ram[0x100000] == kernel[5 * 512]);
}

TEST_CASE("setup_linux_boot reads a bzImage from a file reader whole", "[boot][linux_boot]") {
  const auto kernel = FakeBzImage{}.build();
  bool fail = false;
  const ImageSource reader(kernel.size(), [&](uint64_t offset, std::span<uint8_t> out) {
    if (fail && out.size() > 4) return false;
    std::memcpy(out.data(), kernel.data() + offset, out.size());
    return true;
  });
  LinuxBootConfig config;
  config.mem_size = 32 * kMiB;
  config.kernel = reader;
  std::vector<uint8_t> ram(config.mem_size, 0);
  auto info = setup_linux_boot(ram, config);
  REQUIRE(info);
  CHECK(info->protocol == LinuxBootInfo::Protocol::kBzImage);
  CHECK(ram[0x100000] == kernel[5 * 512]);
  fail = true;
  auto r = setup_linux_boot(ram, config);
  REQUIRE_FALSE(r);
  CHECK(r.error() == "cannot read the kernel file");
}

TEST_CASE("setup_linux_boot reports bad input as errors", "[boot][linux_boot]") {
  const auto kernel = FakeBzImage{}.build();
  LinuxBootConfig config;
  config.mem_size = 32 * kMiB;
  config.kernel = kernel;
  std::vector<uint8_t> ram(config.mem_size, 0);

  SECTION("span does not match mem_size") {
    std::vector<uint8_t> short_ram(16 * kMiB);
    CHECK_FALSE(setup_linux_boot(short_ram, config));
  }
  SECTION("not a kernel") {
    const std::vector<uint8_t> junk(4096, 0x90);
    config.kernel = junk;
    auto r = setup_linux_boot(ram, config);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "not a bzImage: missing boot flag 0xAA55 at offset 0x1fe");
  }
  SECTION("initrd too big") {
    const std::vector<uint8_t> initrd(16 * kMiB, 0);
    config.initrd = initrd;
    auto r = setup_linux_boot(ram, config);
    REQUIRE_FALSE(r);
    CHECK(r.error().starts_with("initrd of 16 MiB does not fit in guest memory below 0x2000000"));
  }
  SECTION("command line too long") {
    const std::string cmdline(3000, 'a');
    config.cmdline = cmdline;
    CHECK_FALSE(setup_linux_boot(ram, config));
  }
  SECTION("no ACPI") {
    config.acpi = false;
    auto r = setup_linux_boot(ram, config);
    REQUIRE(r);
    CHECK(r->rsdp_addr == 0);
  }
}
