// GuestRam's host mappings, without KVM (mmap only).
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

#include "vmm/memory.h"

using minivmm::vmm::GuestRam;

TEST_CASE("guest RAM is mapped 2 MiB-aligned, so the host can back it with huge pages") {
  // Several sizes, so that an aligned start is not a lucky first mmap.
  for (uint64_t size : {uint64_t{4} << 10, (uint64_t{6} << 20) + 4096, uint64_t{64} << 20}) {
    GuestRam ram(size);
    REQUIRE(!ram.regions().empty());
    for (const auto& r : ram.regions()) {
      CHECK(reinterpret_cast<uintptr_t>(r.host) % GuestRam::kHugePageSize ==
            r.guest_base % GuestRam::kHugePageSize);
      // The whole region is mapped and writable: first and last byte.
      r.host[0] = 1;
      r.host[r.size - 1] = 2;
      CHECK(r.host[0] == 1);
    }
    CHECK(ram.low().size() == size);
  }
}

TEST_CASE("guest RAM is left out of core dumps (MADV_DONTDUMP)") {
  GuestRam ram(uint64_t{8} << 20);
  const auto start = reinterpret_cast<uintptr_t>(ram.regions().front().host);
  // /proc/self/smaps: the mapping's header line "lo-hi ...", later its "VmFlags: ... dd ...".
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool in_ram = false;
  std::string flags;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0;
    uintptr_t hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(' ') < 30) {
      in_ram = start >= lo && start < hi;
    } else if (in_ram && line.rfind("VmFlags:", 0) == 0) {
      flags = line + " ";
      break;
    }
  }
  INFO(flags);
  CHECK(flags.find(" dd ") != std::string::npos);
}
