// Byte-level helpers shared by the firmware tables boot/ writes into guest RAM (ACPI in
// acpi.cc, the MP table in mptable.cc): both are packed structs appended to a byte vector
// and protected by a checksum byte that makes a range sum to zero.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

namespace minivmm::boot {

// resize + memcpy rather than vector::insert: g++ 12 at -O3 reports false array-bounds
// and stringop-overflow warnings for the inlined insert.
template <typename T>
void append_struct(std::vector<uint8_t>& out, const T& value) {
  static_assert(std::is_trivially_copyable_v<T>);
  const size_t old = out.size();
  out.resize(old + sizeof value);
  std::memcpy(out.data() + old, &value, sizeof value);
}

// The checksum byte value that makes `bytes` (with that byte 0) sum to zero mod 256: the
// rule of ACPI 6.4 §5.2.5.3 / §5.2.6 and of MP spec 1.4 §4.1 / §4.2.
inline uint8_t zero_sum_checksum(std::span<const uint8_t> bytes) {
  uint8_t sum = 0;
  for (uint8_t b : bytes) sum = static_cast<uint8_t>(sum + b);
  return static_cast<uint8_t>(0x100 - sum);
}

}  // namespace minivmm::boot
