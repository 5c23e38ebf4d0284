#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <limits>
#include <vector>

#include "tests/support/fake_guest.h"
#include "virtio/guest_memory.h"

using minivmm::test::FakeGuestMemory;
using minivmm::virtio::GuestMemory;
using minivmm::virtio::MemoryRegion;

TEST_CASE("translate accepts ranges inside RAM, including one ending at the top") {
  FakeGuestMemory guest(0x10000);
  const GuestMemory& mem = guest.mem();
  CHECK(mem.translate(0, 0x10000) == guest.host(0));
  CHECK(mem.translate(0xfff0, 0x10) == guest.host(0xfff0));
  CHECK(mem.translate(0x10000, 0) != nullptr);  // empty range at the very end
  CHECK(mem.translate(0xfff0, 0x11) == nullptr);
  CHECK(mem.translate(0x10000, 1) == nullptr);
}

TEST_CASE("translate never wraps around 2^64") {
  FakeGuestMemory guest(0x10000);
  const GuestMemory& mem = guest.mem();
  const uint64_t max = std::numeric_limits<uint64_t>::max();
  CHECK(mem.translate(0x100, max) == nullptr);
  CHECK(mem.translate(max, 2) == nullptr);
  CHECK(mem.translate(max - 0xf, 0x20) == nullptr);
}

TEST_CASE("a range straddling a hole between regions is rejected") {
  FakeGuestMemory guest(0x30000, FakeGuestMemory::Hole{0x10000, 0x20000});
  const GuestMemory& mem = guest.mem();
  CHECK(mem.contains(0xff00, 0x100));
  CHECK_FALSE(mem.contains(0xff00, 0x101));
  CHECK_FALSE(mem.contains(0x18000, 1));
  CHECK(mem.contains(0x20000, 0x10000));
  CHECK_FALSE(mem.contains(0x1ffff, 2));
}

TEST_CASE("typed and byte accesses copy through the checked translation") {
  FakeGuestMemory guest(0x1000);
  const GuestMemory& mem = guest.mem();
  REQUIRE(mem.write_obj<uint32_t>(0x100, 0xdeadbeef));
  CHECK(mem.read_obj<uint32_t>(0x100) == 0xdeadbeefu);
  CHECK_FALSE(mem.read_obj<uint64_t>(0xffc).has_value());
  CHECK_FALSE(mem.write_obj<uint64_t>(0xffc, 1));

  std::array<uint8_t, 4> out{};
  CHECK(mem.read(0x100, out));
  CHECK(out == std::array<uint8_t, 4>{0xef, 0xbe, 0xad, 0xde});
  const std::array<uint8_t, 8> in{1, 2, 3, 4, 5, 6, 7, 8};
  CHECK_FALSE(mem.write(0xffc, in));
  CHECK(*guest.host(0xffc) == 0);  // nothing partially written
}

TEST_CASE("atomic 16-bit accesses need alignment and range") {
  FakeGuestMemory guest(0x1000);
  const GuestMemory& mem = guest.mem();
  CHECK(mem.store_release_u16(0x10, 0x1234));
  CHECK(mem.load_acquire_u16(0x10) == uint16_t{0x1234});
  CHECK_FALSE(mem.load_acquire_u16(0x11).has_value());
  CHECK_FALSE(mem.store_release_u16(0x11, 1));
  CHECK_FALSE(mem.load_acquire_u16(0x1000).has_value());
}

TEST_CASE("overlapping or empty regions are a configuration error") {
  alignas(8) static uint8_t buf[0x2000];
  CHECK_THROWS_AS(GuestMemory({{0, 0x1000, buf}, {0x800, 0x1000, buf + 0x1000}}),
                  std::invalid_argument);
  CHECK_THROWS_AS(GuestMemory({{0, 0, buf}}), std::invalid_argument);
  CHECK_THROWS_AS(GuestMemory({{1, 0x10, buf}}), std::invalid_argument);  // misaligned
  CHECK_NOTHROW(GuestMemory({{0x1000, 0x1000, buf + 0x1000}, {0, 0x1000, buf}}));
}
