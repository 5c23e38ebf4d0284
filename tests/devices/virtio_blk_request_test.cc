// Parse matrix for virtio-blk requests (devices/virtio_blk_request.h): pure, no disk.
#include <catch2/catch.hpp>

#include <cstring>

#include "devices/virtio_blk_request.h"
#include "tests/support/fake_guest.h"

using namespace minivmm;
using devices::kBlkSIoErr;
using devices::kBlkSOk;
using devices::kBlkSUnsupp;
using devices::RequestType;
using test::Buf;

namespace {

constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kHdr = 0x10000;
constexpr uint64_t kData = 0x20000;
constexpr uint64_t kStatus = 0x30000;
constexpr uint64_t kSegs = 0x31000;

struct ParseFixture {
  explicit ParseFixture(std::optional<test::FakeGuestMemory::Hole> hole = std::nullopt)
      : guest(kRam, hole), dq(guest, 256, 0x1000), queue(256) {
    dq.configure(queue, false, true);
    props.capacity_sectors = 100;
    props.discard = props.write_zeroes = true;
    props.max_discard_sectors = props.max_write_zeroes_sectors = 64;
    props.max_discard_seg = props.max_write_zeroes_seg = 4;
  }
  void header(uint32_t type, uint64_t sector) {
    devices::VirtioBlkReqHeader h{type, 0, sector};
    std::memcpy(guest.host(kHdr), &h, sizeof(h));
  }
  void segment(uint32_t i, uint64_t sector, uint32_t n, uint32_t flags = 0) {
    devices::VirtioBlkDiscardWriteZeroes s{sector, n, flags};
    std::memcpy(guest.host(kSegs + i * 16), &s, sizeof(s));
  }
  devices::ParseResult parse(const std::vector<Buf>& bufs) {
    dq.add_chain(bufs);
    auto chain = queue.pop(guest.mem());
    REQUIRE(chain);
    REQUIRE(chain->has_value());
    auto result = devices::parse(**chain, guest.mem(), props);
    // Give the head back so that later chains can reuse the descriptors.
    REQUIRE(queue.add_used(guest.mem(), (*chain)->head_index(), 0));
    return result;
  }
  devices::ParseResult simple(uint32_t type, uint64_t sector, std::vector<Buf> data) {
    header(type, sector);
    std::vector<Buf> bufs{{kHdr, 16, false}};
    bufs.insert(bufs.end(), data.begin(), data.end());
    bufs.push_back({kStatus, 1, true});
    return parse(bufs);
  }
  uint8_t* status_host() const { return guest.host(kStatus); }

  test::FakeGuestMemory guest;
  test::DriverQueue dq;
  virtio::Queue queue;
  devices::DiskProperties props;
};

}  // namespace

TEST_CASE("blk parse: valid IN and OUT", "[blk][parse]") {
  ParseFixture f;
  auto in = f.simple(devices::kBlkTIn, 3, {{kData, 1024, true}});
  REQUIRE(in.ok());
  CHECK(in.request.type == RequestType::kIn);
  CHECK(in.request.sector == 3);
  CHECK(in.request.data_len == 1024);
  REQUIRE(in.request.iov.size() == 1);
  CHECK(in.request.iov[0].iov_base == f.guest.host(kData));
  CHECK(in.outcome.status_ptr == f.status_host());

  auto out = f.simple(devices::kBlkTOut, 0, {{kData, 512, false}, {kData + 4096, 1536, false}});
  REQUIRE(out.ok());
  CHECK(out.request.type == RequestType::kOut);
  CHECK(out.request.data_len == 2048);
  CHECK(out.request.iov.size() == 2);
}

TEST_CASE("blk parse: any framing (virtio 1.2 §2.6.4)", "[blk][parse]") {
  ParseFixture f;
  SECTION("header split over two descriptors") {
    f.header(devices::kBlkTIn, 1);
    auto r =
        f.parse({{kHdr, 8, false}, {kHdr + 8, 8, false}, {kData, 512, true}, {kStatus, 1, true}});
    REQUIRE(r.ok());
    CHECK(r.request.sector == 1);
  }
  SECTION("header and data in one descriptor, data and status in one") {
    f.header(devices::kBlkTOut, 2);
    auto r = f.parse({{kHdr, 16 + 512, false}, {kStatus, 1, true}});
    REQUIRE(r.ok());
    CHECK(r.request.iov[0].iov_base == f.guest.host(kHdr + 16));
    f.header(devices::kBlkTIn, 2);
    auto r2 = f.parse({{kHdr, 16, false}, {kData, 513, true}});
    REQUIRE(r2.ok());
    CHECK(r2.request.data_len == 512);
    CHECK(r2.outcome.status_ptr == f.guest.host(kData + 512));
  }
}

TEST_CASE("blk parse: header and status rules", "[blk][parse]") {
  ParseFixture f;
  SECTION("header shorter than 16 bytes") {
    f.header(devices::kBlkTIn, 0);
    auto r = f.parse({{kHdr, 15, false}, {kStatus, 1, true}});
    CHECK(r.outcome.status == kBlkSIoErr);
    CHECK(r.outcome.status_ptr == f.status_host());
  }
  SECTION("header in a writable descriptor") {
    f.header(devices::kBlkTIn, 0);
    auto r = f.parse({{kHdr, 16, true}, {kStatus, 1, true}});
    CHECK(r.outcome.status == kBlkSIoErr);
  }
  SECTION("no writable descriptor: status unreachable") {
    f.header(devices::kBlkTFlush, 0);
    auto r = f.parse({{kHdr, 16, false}});
    CHECK(r.outcome.status == kBlkSIoErr);
    CHECK(r.outcome.status_ptr == nullptr);
  }
  SECTION("zero-length status descriptor") {
    f.header(devices::kBlkTFlush, 0);
    auto r = f.parse({{kHdr, 16, false}, {kStatus, 0, true}});
    CHECK(r.outcome.status_ptr == nullptr);
  }
  SECTION("status outside RAM") {
    f.header(devices::kBlkTFlush, 0);
    auto r = f.parse({{kHdr, 16, false}, {kRam + 10, 1, true}});
    CHECK(r.outcome.status == kBlkSIoErr);
    CHECK(r.outcome.status_ptr == nullptr);
  }
  SECTION("header outside RAM, status reachable") {
    auto r = f.parse({{kRam - 8, 16, false}, {kStatus, 1, true}});
    CHECK(r.outcome.status == kBlkSIoErr);
    CHECK(r.outcome.status_ptr == f.status_host());
  }
  SECTION("invalid chain (loop): status unreachable") {
    f.dq.write_desc(0, {kHdr, 16, virtio::kVirtqDescFNext, 1});
    f.dq.write_desc(1, {kStatus, 1, virtio::kVirtqDescFNext | virtio::kVirtqDescFWrite, 0});
    f.dq.publish(0);
    auto chain = f.queue.pop(f.guest.mem());
    REQUIRE(chain);
    REQUIRE(chain->has_value());
    REQUIRE_FALSE((*chain)->is_valid());
    auto r = devices::parse(**chain, f.guest.mem(), f.props);
    CHECK(r.outcome.status == kBlkSIoErr);
    CHECK(r.outcome.status_ptr == nullptr);
  }
}

TEST_CASE("blk parse: data direction and length", "[blk][parse]") {
  ParseFixture f;
  CHECK(f.simple(devices::kBlkTIn, 0, {{kData, 512, false}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTOut, 0, {{kData, 512, true}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTIn, 0, {{kData, 511, true}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTOut, 0, {{kData, 1000, false}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTIn, 0, {}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTOut, 0, {}).outcome.status == kBlkSIoErr);
}

TEST_CASE("blk parse: sector range and overflow", "[blk][parse]") {
  ParseFixture f;  // capacity 100 sectors
  CHECK(f.simple(devices::kBlkTIn, 99, {{kData, 512, true}}).ok());
  CHECK(f.simple(devices::kBlkTIn, 98, {{kData, 1024, true}}).ok());
  CHECK(f.simple(devices::kBlkTIn, 99, {{kData, 1024, true}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTIn, 100, {{kData, 512, true}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTOut, ~uint64_t{0}, {{kData, 512, false}}).outcome.status ==
        kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTIn, ~uint64_t{0} - 1, {{kData, 1024, true}}).outcome.status ==
        kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTIn, uint64_t{1} << 55, {{kData, 512, true}}).outcome.status ==
        kBlkSIoErr);
}

TEST_CASE("blk parse: flush, get-id, unsupported types", "[blk][parse]") {
  ParseFixture f;
  CHECK(f.simple(devices::kBlkTFlush, 0, {}).ok());
  CHECK(f.simple(devices::kBlkTFlush, 1, {}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTFlush, 0, {{kData, 512, true}}).outcome.status == kBlkSIoErr);
  auto id = f.simple(devices::kBlkTGetId, 0, {{kData, 20, true}});
  REQUIRE(id.ok());
  CHECK(id.request.data_len == 20);
  CHECK(f.simple(devices::kBlkTGetId, 0, {{kData, 19, true}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTGetId, 0, {{kData, 10, true}, {kData + 100, 10, true}}).ok());
  for (uint32_t type :
       {devices::kBlkTGetLifetime, devices::kBlkTSecureErase, 2u, 5u, 0xffffffffu}) {
    auto r = f.simple(type, 0, {{kData, 512, true}});
    CHECK(r.outcome.status == kBlkSUnsupp);
    CHECK(r.outcome.status_ptr == f.status_host());
  }
}

TEST_CASE("blk parse: read-only disk", "[blk][parse]") {
  ParseFixture f;
  f.props.read_only = true;
  CHECK(f.simple(devices::kBlkTIn, 0, {{kData, 512, true}}).ok());
  CHECK(f.simple(devices::kBlkTOut, 0, {{kData, 512, false}}).outcome.status == kBlkSIoErr);
  f.segment(0, 0, 8);
  CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 16, false}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTWriteZeroes, 0, {{kSegs, 16, false}}).outcome.status == kBlkSIoErr);
  CHECK(f.simple(devices::kBlkTFlush, 0, {}).ok());
}

TEST_CASE("blk parse: discard and write-zeroes segments", "[blk][parse]") {
  ParseFixture f;
  f.segment(0, 0, 8);
  f.segment(1, 50, 50, devices::kBlkDwzFUnmap);
  auto wz = f.simple(devices::kBlkTWriteZeroes, 0, {{kSegs, 32, false}});
  REQUIRE(wz.ok());
  REQUIRE(wz.request.segments.size() == 2);
  CHECK(wz.request.segments[1].sector == 50);
  CHECK(wz.request.segments[1].unmap);
  // virtio 1.2 §5.2.6.2: unmap on discard is UNSUPP.
  CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 32, false}}).outcome.status == kBlkSUnsupp);
  CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 16, false}}).ok());
  SECTION("not negotiated") {
    f.props.discard = f.props.write_zeroes = false;
    CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 16, false}}).outcome.status == kBlkSUnsupp);
    CHECK(f.simple(devices::kBlkTWriteZeroes, 0, {{kSegs, 16, false}}).outcome.status ==
          kBlkSUnsupp);
  }
  SECTION("malformed") {
    CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 15, false}}).outcome.status == kBlkSIoErr);
    CHECK(f.simple(devices::kBlkTDiscard, 0, {}).outcome.status == kBlkSIoErr);
    CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 5 * 16, false}}).outcome.status ==
          kBlkSIoErr);  // more than max_discard_seg
    CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 16, true}}).outcome.status == kBlkSIoErr);
    f.segment(0, 0, 8, 2);  // reserved flag
    CHECK(f.simple(devices::kBlkTWriteZeroes, 0, {{kSegs, 16, false}}).outcome.status ==
          kBlkSUnsupp);
    f.segment(0, 96, 8);  // past capacity
    CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 16, false}}).outcome.status == kBlkSIoErr);
    f.segment(0, ~uint64_t{0} - 2, 8);  // overflow
    CHECK(f.simple(devices::kBlkTWriteZeroes, 0, {{kSegs, 16, false}}).outcome.status ==
          kBlkSIoErr);
    f.segment(0, 0, 65);  // more than max sectors
    CHECK(f.simple(devices::kBlkTDiscard, 0, {{kSegs, 16, false}}).outcome.status == kBlkSIoErr);
  }
}

TEST_CASE("blk parse: data buffers and guest memory", "[blk][parse]") {
  SECTION("buffer in an MMIO hole, straddling it, and ending at the top of RAM") {
    ParseFixture f(test::FakeGuestMemory::Hole{0x80000, 0x90000});
    CHECK(f.simple(devices::kBlkTIn, 0, {{0x80000, 512, true}}).outcome.status == kBlkSIoErr);
    CHECK(f.simple(devices::kBlkTOut, 0, {{0x80000 - 256, 512, false}}).outcome.status ==
          kBlkSIoErr);
    CHECK(f.simple(devices::kBlkTIn, 0, {{kRam - 512, 512, true}}).ok());
    CHECK(f.simple(devices::kBlkTIn, 0, {{kRam - 256, 512, true}}).outcome.status == kBlkSIoErr);
    // The status byte is still reachable, so the error can be reported.
    CHECK(f.simple(devices::kBlkTIn, 0, {{0x80000, 512, true}}).outcome.status_ptr ==
          f.status_host());
  }
  SECTION("more buffers than IOV_MAX") {
    ParseFixture f;
    f.props.max_iovecs = 4;
    std::vector<Buf> data;
    for (int i = 0; i < 5; ++i) data.push_back({kData + static_cast<uint64_t>(i) * 512, 512, true});
    CHECK(f.simple(devices::kBlkTIn, 0, data).outcome.status == kBlkSIoErr);
    data.pop_back();
    CHECK(f.simple(devices::kBlkTIn, 0, data).ok());
  }
}

TEST_CASE("blk write_serial pads and truncates to 20 bytes", "[blk][parse]") {
  uint8_t buf[32];
  std::memset(buf, 0xaa, sizeof(buf));
  std::vector<iovec> iov{{buf, 7}, {buf + 7, 25}};
  CHECK(devices::write_serial(iov, "abc", 3) == 20);
  CHECK(std::memcmp(buf, "abc", 3) == 0);
  CHECK(buf[3] == 0);
  CHECK(buf[19] == 0);
  CHECK(buf[20] == 0xaa);
  const char* longer = "0123456789abcdefghijKLMN";
  CHECK(devices::write_serial(iov, longer, std::strlen(longer)) == 20);
  CHECK(std::memcmp(buf, longer, 20) == 0);
}
