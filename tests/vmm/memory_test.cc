// GuestRam's host mappings, without KVM (mmap only).
#include <catch2/catch.hpp>

#include <cstdint>

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
