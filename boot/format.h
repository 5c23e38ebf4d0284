// Number formatting for boot/'s one-line error messages: addresses in hex, sizes in MiB.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>

#include "boot/layout.h"

namespace minivmm::boot {

inline std::string hex(uint64_t value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value));
  return buf;
}

// Rounded up: "1 MiB" for one byte.
inline std::string mib(uint64_t bytes) {
  return std::to_string((bytes + kMiB - 1) / kMiB) + " MiB";
}

}  // namespace minivmm::boot
