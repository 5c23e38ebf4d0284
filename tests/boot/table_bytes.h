// Byte helpers for the firmware-table tests (ACPI, MP table). The tests sum and decode the
// bytes themselves, independently of boot/firmware_table.h, which is what they check.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace minivmm::test {

// The 8-bit sum of `len` bytes: zero over a table with a correct checksum.
inline uint8_t sum(const uint8_t* bytes, size_t len) {
  uint8_t s = 0;
  for (size_t i = 0; i < len; ++i) s = static_cast<uint8_t>(s + bytes[i]);
  return s;
}

// A T read from unaligned bytes.
template <typename T>
T at(const uint8_t* bytes) {
  T value;
  std::memcpy(&value, bytes, sizeof value);
  return value;
}

}  // namespace minivmm::test
