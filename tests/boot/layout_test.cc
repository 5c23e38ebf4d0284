#include "boot/layout.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <vector>

#include "boot/cmdline.h"

using namespace minivmm::boot;

TEST_CASE("ram_regions splits memory around the MMIO gap", "[boot][layout]") {
  CHECK(ram_regions(0).empty());
  CHECK(ram_regions(256 * kMiB) == std::vector<RamRegion>{{0, 256 * kMiB}});
  CHECK(ram_regions(kMmioGapStart) == std::vector<RamRegion>{{0, kMmioGapStart}});
  CHECK(ram_regions(kMmioGapStart + kPageSize) ==
        std::vector<RamRegion>{{0, kMmioGapStart}, {kHighRamStart, kPageSize}});
  CHECK(ram_regions(8 * kGiB) == std::vector<RamRegion>{{0, 3 * kGiB}, {4 * kGiB, 5 * kGiB}});
  CHECK(low_ram_size(8 * kGiB) == 3 * kGiB);
  CHECK(low_ram_size(kMiB) == kMiB);
}

TEST_CASE("virtio-mmio slots are 4 KiB windows with IRQs from 5", "[boot][layout]") {
  auto first = virtio_mmio_slot(0);
  REQUIRE(first);
  CHECK(*first == VirtioMmioDeviceInfo{0xd000'0000, 0x1000, 5});
  auto last = virtio_mmio_slot(kMaxVirtioMmioDevices - 1);
  REQUIRE(last);
  CHECK(last->irq == kIoapicPins - 1);
  CHECK(last->base + last->size <= kIoapicAddr);
  CHECK_FALSE(virtio_mmio_slot(kMaxVirtioMmioDevices));
}

TEST_CASE("guest_range rejects ranges outside RAM and wrapping ranges", "[boot][layout]") {
  std::vector<uint8_t> ram(0x1000);
  CHECK(guest_range(ram, 0, 0x1000));
  CHECK(guest_range(ram, 0x1000, 0));  // empty range ending exactly at the top: valid
  CHECK(guest_range(ram, 0xff0, 0x10)->size() == 0x10);
  CHECK_FALSE(guest_range(ram, 0xff0, 0x11));
  CHECK_FALSE(guest_range(ram, 0x1001, 0));
  CHECK_FALSE(guest_range(ram, 0x10, UINT64_MAX));
  CHECK_FALSE(guest_range(ram, UINT64_MAX, 2));
}

TEST_CASE("virtio_mmio cmdline fragments use memparse sizes", "[boot][cmdline]") {
  CHECK(memparse_size(0x1000) == "4K");
  CHECK(memparse_size(0x200000) == "2M");
  CHECK(memparse_size(kGiB) == "1G");
  CHECK(memparse_size(0x200) == "512");
  const std::vector<VirtioMmioDeviceInfo> devices = {*virtio_mmio_slot(0), *virtio_mmio_slot(1)};
  CHECK(virtio_mmio_cmdline(devices) ==
        "virtio_mmio.device=4K@0xd0000000:5 virtio_mmio.device=4K@0xd0001000:6");
  CHECK(virtio_mmio_cmdline({}) == "");
}

TEST_CASE("power-off value is SLP_EN with SLP_TYP 5", "[boot][layout]") {
  CHECK(kSleepControlPowerOff == 0x34);
  CHECK((kSleepControlPowerOff & kSleepTypeMask) >> kSleepTypeShift == kSleepTypeS5);
}
