#include "mmio/bus.h"

#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <vector>

namespace minivmm::mmio {
namespace {

// Records every access; reads return the low byte of (offset + i).
class RecordingDevice final : public BusDevice {
 public:
  struct Access {
    bool write;
    uint64_t offset;
    std::vector<uint8_t> data;
  };
  void read(uint64_t offset, std::span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(offset + i);
    accesses.push_back({false, offset, {data.begin(), data.end()}});
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    accesses.push_back({true, offset, {data.begin(), data.end()}});
  }
  std::vector<Access> accesses;
};

TEST_CASE("Bus::insert rejects empty, wrapping and overlapping ranges", "[bus]") {
  Bus bus;
  auto dev = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(0x1000, 0x1000, dev));

  SECTION("zero length") {
    CHECK_FALSE(bus.insert(0x5000, 0, dev));
  }
  SECTION("null device") {
    CHECK_FALSE(bus.insert(0x5000, 0x10, nullptr));
  }
  SECTION("wrapping past 2^64") {
    CHECK_FALSE(bus.insert(UINT64_MAX - 0xf, 0x11, dev));
    CHECK_FALSE(bus.insert(UINT64_MAX, UINT64_MAX, dev));
  }
  SECTION("ending exactly at 2^64 is fine") {
    CHECK(bus.insert(UINT64_MAX - 0xf, 0x10, dev));
    CHECK(bus.size() == 2);
  }
  SECTION("adjacent below and above are fine") {
    CHECK(bus.insert(0x0, 0x1000, dev));
    CHECK(bus.insert(0x2000, 0x1000, dev));
    CHECK(bus.size() == 3);
  }
  SECTION("overlapping the start") {
    CHECK_FALSE(bus.insert(0x800, 0x801, dev));
    CHECK(bus.insert(0x800, 0x800, dev));
  }
  SECTION("overlapping the end") {
    CHECK_FALSE(bus.insert(0x1fff, 0x10, dev));
    CHECK_FALSE(bus.insert(0x1800, 0x1000, dev));
  }
  SECTION("contained and containing") {
    CHECK_FALSE(bus.insert(0x1100, 0x10, dev));
    CHECK_FALSE(bus.insert(0x1000, 0x1000, dev));
    CHECK_FALSE(bus.insert(0x0, 0x10000, dev));
  }
  SECTION("a rejected insert leaves the bus unchanged") {
    CHECK_FALSE(bus.insert(0x0, 0x10000, dev));
    CHECK(bus.size() == 1);
  }
}

TEST_CASE("Bus dispatches with offsets from the range base", "[bus]") {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(0xd000'0000, 0x1000, a));
  REQUIRE(bus.insert(0xd000'1000, 0x1000, b));

  std::array<uint8_t, 4> buf{};
  CHECK(bus.read(0xd000'1010, buf));
  CHECK(buf == std::array<uint8_t, 4>{0x10, 0x11, 0x12, 0x13});
  REQUIRE(b->accesses.size() == 1);
  CHECK_FALSE(b->accesses[0].write);
  CHECK(b->accesses[0].offset == 0x10);
  CHECK(a->accesses.empty());

  const std::array<uint8_t, 2> w{0xaa, 0xbb};
  CHECK(bus.write(0xd000'0ffe, w));
  REQUIRE(a->accesses.size() == 1);
  CHECK(a->accesses[0].write);
  CHECK(a->accesses[0].offset == 0xffe);
  CHECK(a->accesses[0].data == std::vector<uint8_t>{0xaa, 0xbb});

  // The first and last byte of a range.
  std::array<uint8_t, 1> one{};
  CHECK(bus.read(0xd000'0000, one));
  CHECK(a->accesses.back().offset == 0);
  CHECK(bus.read(0xd000'1fff, one));
  CHECK(b->accesses.back().offset == 0xfff);
}

TEST_CASE("Bus misses read as all-ones and reach no device", "[bus]") {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  auto b = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(0x1000, 0x100, a));
  REQUIRE(bus.insert(0x1100, 0x100, b));
  std::array<uint8_t, 4> buf{1, 2, 3, 4};
  const std::array<uint8_t, 4> ones{0xff, 0xff, 0xff, 0xff};

  SECTION("below every range") {
    CHECK_FALSE(bus.read(0xffc, buf));
    CHECK(buf == ones);
  }
  SECTION("in a gap") {
    CHECK_FALSE(bus.read(0x1200, buf));
    CHECK(buf == ones);
    CHECK_FALSE(bus.write(0x1200, buf));
  }
  SECTION("straddling two adjacent ranges") {
    CHECK_FALSE(bus.read(0x10fe, buf));
    CHECK(buf == ones);
    CHECK_FALSE(bus.write(0x10fe, buf));
  }
  SECTION("straddling the start of a range") {
    CHECK_FALSE(bus.write(0xffe, buf));
  }
  SECTION("past the top of the address space") {
    CHECK_FALSE(bus.read(UINT64_MAX - 1, buf));
    CHECK(buf == ones);
  }
  SECTION("empty access") {
    CHECK_FALSE(bus.read(0x1000, std::span<uint8_t>()));
  }
  CHECK(a->accesses.empty());
  CHECK(b->accesses.empty());
}

TEST_CASE("Bus covers a range ending at 2^64", "[bus]") {
  Bus bus;
  auto a = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(UINT64_MAX - 7, 8, a));
  std::array<uint8_t, 8> buf{};
  CHECK(bus.read(UINT64_MAX - 7, buf));
  CHECK(a->accesses.back().offset == 0);
  std::array<uint8_t, 2> two{};
  CHECK_FALSE(bus.read(UINT64_MAX, two));  // would wrap
  CHECK(bus.read(UINT64_MAX - 1, two));
  CHECK(a->accesses.back().offset == 6);
}

}  // namespace
}  // namespace minivmm::mmio
