// PciHostBridge: PCI configuration mechanism #1 (PCI Local Bus 3.0 §3.2.2.3.2) with a single
// host bridge at 00:00.0 and nothing else on the bus. The machine has no PCI devices (all of
// them are virtio-mmio), but a Linux kernel built with PCI support looks for a config space
// at boot and, finding none, logs "PCI: Fatal: No config space access function found" on
// every boot, with or without pci=off. Linux accepts mechanism #1 when the CONFIG_ADDRESS
// latch reads back what was written and bus 0 holds a host bridge (pci_sanity_check), so
// that is what this device gives. With ACPI the DSDT names no PCI root bridge and Linux
// scans nothing; without ACPI it scans bus 0 and finds the bridge alone.
//
// Inserted on the port I/O bus as one range [0xcf8, 0xd00): offset 0 is CONFIG_ADDRESS,
// which only 4-byte accesses reach (byte and word accesses to 0xcf8-0xcfb are other ports
// on real chipsets, e.g. the reset control register at 0xcf9; here they read 0xff and are
// ignored), offsets 4-7 are CONFIG_DATA. The bridge's header is read-only: writes (BAR
// sizing, command register) change nothing, and every register not listed reads 0.
//
// Threads: read()/write() on vCPU threads. The latch is an atomic; a guest that races two
// vCPUs through it gets what real hardware would give it (Linux serialises with a lock).
#pragma once

#include <atomic>
#include <cstdint>
#include <span>

#include "mmio/bus.h"

namespace minivmm::devices {

class PciHostBridge final : public mmio::BusDevice {
 public:
  static constexpr uint16_t kBasePort = 0xcf8;
  static constexpr uint64_t kPortRange = 8;
  static constexpr uint64_t kAddressOffset = 0;
  static constexpr uint64_t kDataOffset = 4;

  // CONFIG_ADDRESS: bit 31 enable, 23:16 bus, 15:11 device, 10:8 function, 7:2 register.
  static constexpr uint32_t kAddressEnable = 0x8000'0000;
  static constexpr uint32_t kAddressWritable = 0x80ff'fffc;  // 30:24 and 1:0 read as 0

  // The bridge's identity: Red Hat's ID for a generic virtual PCI host bridge (1b36:0008),
  // class 06/00/00 (bridge, host bridge).
  static constexpr uint16_t kVendorId = 0x1b36;
  static constexpr uint16_t kDeviceId = 0x0008;
  static constexpr uint32_t kClassCode = 0x06'00'00;

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // The 32-bit config register `reg` (a multiple of 4) of bus/device/function selected by a
  // CONFIG_ADDRESS value; 0xffffffff for an absent function.
  static uint32_t config_dword(uint32_t address);

 private:
  std::atomic<uint32_t> address_{0};
};

}  // namespace minivmm::devices
