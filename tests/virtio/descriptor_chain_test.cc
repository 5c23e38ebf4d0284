// Descriptor chain validation (virtio 1.2 §2.7.5) and the hostile cases of docs/architecture.md.
#include <catch2/catch.hpp>

#include <array>
#include <cstring>
#include <numeric>
#include <vector>

#include "tests/support/fake_guest.h"
#include "virtio/descriptor_chain.h"
#include "virtio/queue.h"

using namespace minivmm::virtio;
using minivmm::test::Buf;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;

namespace {

constexpr uint64_t kRam = 0x100000;
constexpr uint64_t kRings = 0x1000;
constexpr uint64_t kTable = 0x8000;
constexpr uint64_t kData = 0x10000;
constexpr uint16_t kSize = 16;

struct Fixture {
  FakeGuestMemory guest{kRam};
  DriverQueue driver{guest, kSize, kRings};
  Queue queue{kSize};
  explicit Fixture(bool indirect = true) { driver.configure(queue, false, indirect); }

  DescriptorChain pop() {
    auto r = queue.pop(guest.mem());
    REQUIRE(r.has_value());
    REQUIRE(r->has_value());
    return std::move(**r);
  }
};

}  // namespace

TEST_CASE("a valid chain splits into readable and writable parts") {
  Fixture f;
  const uint16_t head = f.driver.add_chain(
      {{kData, 16}, {kData + 0x100, 512}, {kData + 0x1000, 512, true}, {kData + 0x2000, 1, true}});
  DescriptorChain chain = f.pop();
  REQUIRE(chain.is_valid());
  CHECK(chain.must_be_used());
  CHECK(chain.head_index() == head);
  REQUIRE(chain.iter().size() == 4);
  REQUIRE(chain.readable().size() == 2);
  REQUIRE(chain.writable().size() == 2);
  CHECK(chain.readable()[1].addr == kData + 0x100);
  CHECK(chain.writable()[0].write_only);
  CHECK(chain.readable_bytes() == 528);
  CHECK(chain.writable_bytes() == 513);
}

TEST_CASE("a long chain spills out of the inline storage intact") {
  Fixture f;
  std::vector<Buf> bufs;
  for (uint32_t i = 0; i < kSize; ++i) bufs.push_back({kData + i * 0x100, i + 1, i >= 10});
  f.driver.add_chain(bufs);
  DescriptorChain chain = f.pop();
  REQUIRE(chain.is_valid());
  REQUIRE(chain.iter().size() == kSize);
  for (uint32_t i = 0; i < kSize; ++i) CHECK(chain.iter()[i].len == i + 1);
  CHECK(chain.readable().size() == 10);
  CHECK(chain.writable().size() == 6);
}

TEST_CASE("a descriptor loop ends with kChainTooLong") {
  Fixture f;
  f.driver.write_desc(0, {kData, 8, kVirtqDescFNext, 1});
  f.driver.write_desc(1, {kData, 8, kVirtqDescFNext, 0});
  f.driver.publish(0);
  DescriptorChain chain = f.pop();
  CHECK(chain.error() == Error::kChainTooLong);
  CHECK(chain.must_be_used());
  CHECK(chain.iter().empty());
}

TEST_CASE("a self-referencing descriptor is a loop") {
  Fixture f;
  f.driver.write_desc(3, {kData, 8, kVirtqDescFNext, 3});
  f.driver.publish(3);
  CHECK(f.pop().error() == Error::kChainTooLong);
}

TEST_CASE("next >= queue size is rejected") {
  Fixture f;
  f.driver.write_desc(0, {kData, 8, kVirtqDescFNext, kSize});
  f.driver.publish(0);
  CHECK(f.pop().error() == Error::kInvalidNext);
}

TEST_CASE("head >= queue size is rejected and not returnable") {
  Fixture f;
  f.driver.publish(kSize + 3);
  DescriptorChain chain = f.pop();
  CHECK(chain.error() == Error::kInvalidHead);
  CHECK_FALSE(chain.must_be_used());
}

TEST_CASE("readable after writable violates virtio 1.2 §2.7.4.2") {
  Fixture f;
  f.driver.add_chain({{kData, 8, true}, {kData + 8, 8, false}});
  CHECK(f.pop().error() == Error::kReadableAfterWritable);
}

TEST_CASE("addr + len wrapping around 2^64 is rejected") {
  Fixture f;
  f.driver.add_chain({{0xffff'ffff'ffff'f000, 0x2000}});
  CHECK(f.pop().error() == Error::kAddressOverflow);
}

TEST_CASE("a buffer ending exactly at 2^64 is not a wrap") {
  Fixture f;
  f.driver.add_chain({{0xffff'ffff'ffff'f000, 0x1000, true}});
  DescriptorChain chain = f.pop();
  CHECK(chain.is_valid());  // structurally fine; access is checked later
  ChainWriter writer(f.guest.mem(), chain);
  const std::array<uint8_t, 4> bytes{1, 2, 3, 4};
  auto r = writer.write(bytes);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error() == Error::kGuestMemory);
}

TEST_CASE("lengths summing past 2^32 are rejected") {
  Fixture f;
  f.driver.add_chain({{kData, 0x8000'0000}, {kData, 0x8000'0000}});
  CHECK(f.pop().error() == Error::kLengthOverflow);
}

TEST_CASE("lengths summing to exactly 2^32 - 1 are accepted") {
  Fixture f;
  f.driver.add_chain({{kData, 0x8000'0000}, {kData, 0x7fff'ffff}});
  CHECK(f.pop().is_valid());
}

TEST_CASE("indirect tables") {
  SECTION("a valid indirect chain") {
    Fixture f;
    const uint16_t idx = f.driver.add_indirect(
        kTable, {{kData, 16}, {kData + 0x100, 4096}, {kData + 0x2000, 1, true}});
    f.driver.publish(idx);
    DescriptorChain chain = f.pop();
    REQUIRE(chain.is_valid());
    CHECK(chain.head_index() == idx);
    CHECK(chain.readable().size() == 2);
    CHECK(chain.writable().size() == 1);
    CHECK(chain.readable_bytes() == 4112);
  }
  SECTION("without VIRTIO_F_INDIRECT_DESC") {
    Fixture f(false);
    f.driver.publish(f.driver.add_indirect(kTable, {{kData, 16}}));
    CHECK(f.pop().error() == Error::kIndirectNotNegotiated);
  }
  SECTION("indirect inside indirect") {
    Fixture f;
    VirtqDesc inner{kTable + 0x100, 16, kVirtqDescFIndirect, 0};
    std::memcpy(f.guest.host(kTable), &inner, sizeof(inner));
    f.driver.write_desc(0, {kTable, 16, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kNestedIndirect);
  }
  SECTION("length not a multiple of 16") {
    Fixture f;
    f.driver.write_desc(0, {kTable, 24, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kInvalidIndirectLength);
  }
  SECTION("length zero") {
    Fixture f;
    f.driver.write_desc(0, {kTable, 0, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kInvalidIndirectLength);
  }
  SECTION("more than 65535 entries") {
    Fixture f;
    f.driver.write_desc(0, {kTable, 65536 * 16, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kInvalidIndirectLength);
  }
  SECTION("INDIRECT together with NEXT") {
    Fixture f;
    f.driver.add_indirect(kTable, {{kData, 16}});
    f.driver.write_desc(0, {kTable, 16, kVirtqDescFIndirect | kVirtqDescFNext, 1});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kIndirectWithNext);
  }
  SECTION("a loop inside the indirect table") {
    Fixture f;
    VirtqDesc d0{kData, 8, kVirtqDescFNext, 1};
    VirtqDesc d1{kData, 8, kVirtqDescFNext, 0};
    std::memcpy(f.guest.host(kTable), &d0, sizeof(d0));
    std::memcpy(f.guest.host(kTable + 16), &d1, sizeof(d1));
    f.driver.write_desc(0, {kTable, 32, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kChainTooLong);
  }
  SECTION("next beyond the indirect table") {
    Fixture f;
    VirtqDesc d0{kData, 8, kVirtqDescFNext, 2};
    std::memcpy(f.guest.host(kTable), &d0, sizeof(d0));
    f.driver.write_desc(0, {kTable, 32, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kInvalidNext);
  }
  SECTION("an indirect table outside guest memory") {
    Fixture f;
    f.driver.write_desc(0, {kRam, 32, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kGuestMemory);
  }
  SECTION("an indirect table whose address wraps") {
    Fixture f;
    f.driver.write_desc(0, {0xffff'ffff'ffff'fff0, 32, kVirtqDescFIndirect, 0});
    f.driver.publish(0);
    CHECK(f.pop().error() == Error::kAddressOverflow);
  }
}

TEST_CASE("reader and writer copy across descriptor boundaries") {
  Fixture f;
  for (uint32_t i = 0; i < 64; ++i) f.guest.host(kData)[i] = static_cast<uint8_t>(i);
  f.driver.add_chain({{kData, 10},
                      {kData + 10, 0},
                      {kData + 10, 54},
                      {kData + 0x1000, 3, true},
                      {kData + 0x2000, 5, true}});
  DescriptorChain chain = f.pop();
  REQUIRE(chain.is_valid());

  ChainReader reader(f.guest.mem(), chain);
  CHECK(reader.remaining() == 64);
  std::array<uint8_t, 20> head{};
  REQUIRE(reader.read(head).has_value());
  CHECK(head[19] == 19);
  REQUIRE(reader.skip(40).has_value());
  CHECK(reader.read_obj<uint32_t>().value() == 0x3f3e3d3cu);
  CHECK(reader.bytes_read() == 64);
  auto more = reader.read_obj<uint8_t>();
  REQUIRE_FALSE(more.has_value());
  CHECK(more.error() == Error::kShortBuffer);

  ChainWriter writer(f.guest.mem(), chain);
  const std::array<uint8_t, 6> out{0xa, 0xb, 0xc, 0xd, 0xe, 0xf};
  REQUIRE(writer.write(out).has_value());
  CHECK(writer.bytes_written() == 6);
  CHECK(f.guest.host(kData + 0x1000)[2] == 0xc);
  CHECK(f.guest.host(kData + 0x2000)[0] == 0xd);
  CHECK(writer.write(out).error() == Error::kShortBuffer);
  CHECK(writer.bytes_written() == 6);  // a short write copies nothing
}

TEST_CASE("buffers straddling the end of RAM or a hole fail on access, not on parse") {
  FakeGuestMemory guest(0x30000, FakeGuestMemory::Hole{0x10000, 0x20000});
  DriverQueue driver(guest, kSize, kRings);
  Queue queue(kSize);
  driver.configure(queue);
  driver.add_chain({{0xfff0, 0x20}, {0x2fff0, 0x10, true}, {0x2fff0, 0x11, true}});
  auto popped = queue.pop(guest.mem());
  REQUIRE(popped.has_value());
  REQUIRE(popped->has_value());
  DescriptorChain& chain = **popped;
  REQUIRE(chain.is_valid());

  ChainReader reader(guest.mem(), chain);
  std::array<uint8_t, 0x20> buf{};
  CHECK(reader.read(buf).error() == Error::kGuestMemory);

  // The buffer ending exactly at the top of RAM is valid; the next one is not.
  ChainWriter writer(guest.mem(), chain);
  std::array<uint8_t, 0x10> ok{};
  CHECK(writer.write(ok).has_value());
  std::array<uint8_t, 0x11> bad{};
  CHECK(writer.write(bad).error() == Error::kGuestMemory);
}

TEST_CASE("no chain is longer than the queue size, indirect tables included") {
  std::vector<Buf> bufs;
  for (uint32_t i = 0; i < kSize + 1; ++i) bufs.push_back({kData + i * 16, 16});
  SECTION("an indirect table of exactly the queue size is accepted") {
    Fixture f;
    bufs.pop_back();
    f.driver.publish(f.driver.add_indirect(kTable, bufs));
    DescriptorChain chain = f.pop();
    REQUIRE(chain.is_valid());
    CHECK(chain.iter().size() == kSize);
  }
  SECTION("one more is rejected") {
    Fixture f;
    f.driver.publish(f.driver.add_indirect(kTable, bufs));
    CHECK(f.pop().error() == Error::kChainTooLong);
  }
  SECTION("direct descriptors plus an indirect table count together") {
    Fixture f;
    bufs.resize(kSize - 1);
    const uint16_t table = f.driver.add_indirect(kTable, bufs);
    f.driver.write_desc(5, {kData, 8, kVirtqDescFNext, table});
    f.driver.publish(5);
    DescriptorChain ok = f.pop();
    REQUIRE(ok.is_valid());
    CHECK(ok.iter().size() == kSize);
    CHECK(ok.iter()[0].len == 8);

    f.driver.write_desc(6, {kData, 8, kVirtqDescFNext, 5});
    f.driver.publish(6);
    CHECK(f.pop().error() == Error::kChainTooLong);
  }
}

TEST_CASE("the WRITE flag on the indirect descriptor itself is ignored (§2.7.5.3.2)") {
  Fixture f;
  f.driver.add_indirect(kTable, {{kData, 16}, {kData + 0x100, 1, true}});
  f.driver.write_desc(0, {kTable, 32, kVirtqDescFIndirect | kVirtqDescFWrite, 0});
  f.driver.publish(0);
  DescriptorChain chain = f.pop();
  REQUIRE(chain.is_valid());
  CHECK(chain.readable().size() == 1);
  CHECK(chain.writable().size() == 1);
}

TEST_CASE("a moved-from chain is empty and not returnable") {
  Fixture f;
  f.driver.add_chain({{kData, 16}, {kData + 0x100, 1, true}});
  DescriptorChain a = f.pop();
  DescriptorChain b = std::move(a);
  CHECK(b.iter().size() == 2);
  CHECK(b.must_be_used());
  CHECK(a.iter().empty());  // NOLINT(bugprone-use-after-move): that is the point
  CHECK_FALSE(a.must_be_used());
}
