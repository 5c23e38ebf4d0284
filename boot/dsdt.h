// The DSDT (ACPI 6.4 §5.2.11.1): \_SB_.COM1, \_SB_.PEVT (pvpanic), one \_SB_.Vnnn per
// virtio-mmio device and the \_S5_ sleep package, encoded with aml.h. Called from the main thread during VM setup.
#pragma once

#include <cstdint>
#include <vector>

#include "boot/acpi.h"

namespace minivmm::boot {

// "LNRO0005" is the _HID Linux's virtio_mmio driver matches (drivers/virtio/virtio_mmio.c).
inline constexpr char kVirtioMmioHid[] = "LNRO0005";
inline constexpr char kCom1Hid[] = "PNP0501";  // 16550A-compatible COM port
inline constexpr char kPvpanicHid[] = "QEMU0001";  // what Linux's pvpanic-mmio matches

// The AML body (without the table header): Scope(\_SB_) { COM1, V000.. } and \_S5_.
std::vector<uint8_t> build_dsdt_aml(const AcpiConfig& config);

// The full DSDT: header (revision 2: 64-bit integers) + build_dsdt_aml, checksum filled.
std::vector<uint8_t> build_dsdt(const AcpiConfig& config);

}  // namespace minivmm::boot
