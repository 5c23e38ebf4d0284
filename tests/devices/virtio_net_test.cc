// virtio-net: the device on its worker against fake backends -- a datagram socketpair that
// stands in for a tap (one header + frame per datagram), and a stream socketpair that
// speaks passt's framing. Frames both ways, the receive stall (host data first, buffers
// later), merged receive buffers, frames that do not fit, hostile chains, offloads the
// driver did not negotiate, a hostile stream peer, reset.
#include <catch2/catch.hpp>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#include "devices/net_backend.h"
#include "devices/virtio_net.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

namespace devices = minivmm::devices;
namespace virtio = minivmm::virtio;
using devices::VirtioNet;
using devices::VirtioNetHdr;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;
using minivmm::vmm::UniqueFd;

namespace {

constexpr uint64_t kRam = 8 << 20;
constexpr uint64_t kRxRings = 0x1000;
constexpr uint64_t kTxRings = 0x10000;
constexpr uint64_t kRxData = 0x100000;
constexpr uint64_t kTxData = 0x400000;
constexpr uint16_t kRing = 16;

class NetInterrupt final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t reason) override {
    if (reason == virtio::kInterruptUsedBuffer) used.fetch_add(1);
    if (reason == virtio::kInterruptConfigChange) config.fetch_add(1);
  }
  bool set_needs_reset() override {
    needs_reset.fetch_add(1);
    return true;
  }
  std::atomic<int> used{0};
  std::atomic<int> config{0};
  std::atomic<int> needs_reset{0};
};

bool eventually(const std::function<bool()>& done, int ms = 5000) {
  for (int i = 0; i < ms; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

std::vector<uint8_t> pattern(size_t n, uint8_t seed) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(seed + i * 7);
  return v;
}

enum class Kind { kTap, kStream };

// The device, a fake guest driving both queues, and the backend's far end (`peer`).
struct Rig {
  explicit Rig(Kind kind = Kind::kTap, bool mergeable = true, bool tap_offloads = false) {
    int sv[2];
    const int type = kind == Kind::kTap ? SOCK_SEQPACKET : SOCK_STREAM;
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) == 0);
    peer = UniqueFd(sv[1]);
    std::unique_ptr<devices::NetBackend> backend;
    if (kind == Kind::kTap) {
      backend = std::make_unique<devices::TapBackend>(UniqueFd(sv[0]), tap_offloads, "test0");
    } else {
      backend = std::make_unique<devices::StreamBackend>(UniqueFd(sv[0]), "socket");
    }
    VirtioNet::Options options{"virtio-net test", {0x52, 0x54, 0, 1, 2, 3}};
    net = std::make_unique<VirtioNet>(options, std::move(backend));
    rx.configure(queues[0], /*event_idx=*/false, /*indirect=*/true);
    tx.configure(queues[1], false, true);
    uint64_t features = net->device_features();
    if (!mergeable) features &= ~devices::net_features::bit(devices::net_features::kMrgRxbuf);
    net->set_acked_features(features);
  }
  ~Rig() { net->reset(); }
  void activate() {
    REQUIRE_FALSE(net->activate(virtio::ActivateContext{guest.mem(), queues, events, irq}));
  }
  // One rx buffer per size, then a notification.
  void post_rx(const std::vector<uint32_t>& sizes, bool notify = true) {
    for (uint32_t size : sizes) {
      rx.add_chain({{kRxData + rx_next, size, true}});
      rx_next += (size + 0xfff) & ~0xfffu;
    }
    if (notify) events[0].signal();
  }
  // One frame from the guest: its header and the frame in two descriptors.
  void send(const VirtioNetHdr& hdr, std::span<const uint8_t> frame) {
    std::memcpy(guest.host(kTxData + tx_next), &hdr, sizeof(hdr));
    std::memcpy(guest.host(kTxData + tx_next + 64), frame.data(), frame.size());
    tx.add_chain({{kTxData + tx_next, sizeof(hdr), false},
                  {kTxData + tx_next + 64, static_cast<uint32_t>(frame.size()), false}});
    tx_next += (64 + frame.size() + 0xfff) & ~size_t{0xfff};
    events[1].signal();
  }
  std::vector<virtio::VirtqUsedElem> wait_used(DriverQueue& q, size_t n) {
    std::vector<virtio::VirtqUsedElem> all;
    eventually([&] {
      auto u = q.take_used();
      all.insert(all.end(), u.begin(), u.end());
      return all.size() >= n;
    });
    return all;
  }
  // What the backend's far end reads: one datagram / one length-framed frame; empty if none.
  std::vector<uint8_t> peer_read(int wait_ms = 2000) {
    std::vector<uint8_t> buf(70000);
    for (int i = 0; i < wait_ms; ++i) {
      const ssize_t n = ::recv(peer.get(), buf.data(), buf.size(), 0);
      if (n > 0) {
        buf.resize(static_cast<size_t>(n));
        return buf;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    return {};
  }
  void peer_send_tap(const VirtioNetHdr& hdr, std::span<const uint8_t> frame) {
    std::vector<uint8_t> d(sizeof(hdr) + frame.size());
    std::memcpy(d.data(), &hdr, sizeof(hdr));
    std::memcpy(d.data() + sizeof(hdr), frame.data(), frame.size());
    REQUIRE(::send(peer.get(), d.data(), d.size(), 0) == static_cast<ssize_t>(d.size()));
  }
  void peer_send_stream(std::span<const uint8_t> frame, uint32_t len_field) {
    std::vector<uint8_t> d{static_cast<uint8_t>(len_field >> 24), static_cast<uint8_t>(len_field >> 16),
                           static_cast<uint8_t>(len_field >> 8), static_cast<uint8_t>(len_field)};
    d.insert(d.end(), frame.begin(), frame.end());
    REQUIRE(::send(peer.get(), d.data(), d.size(), 0) == static_cast<ssize_t>(d.size()));
  }
  // The header the device wrote at the start of rx buffer `offset`.
  VirtioNetHdr rx_hdr(uint64_t offset = 0) {
    VirtioNetHdr hdr;
    std::memcpy(&hdr, guest.host(kRxData + offset), sizeof(hdr));
    return hdr;
  }

  FakeGuestMemory guest{kRam};
  std::vector<virtio::Queue> queues{virtio::Queue(VirtioNet::kQueueSize),
                                    virtio::Queue(VirtioNet::kQueueSize)};
  std::vector<virtio::EventFd> events = std::vector<virtio::EventFd>(2);
  DriverQueue rx{guest, kRing, kRxRings};
  DriverQueue tx{guest, kRing, kTxRings};
  NetInterrupt irq;
  UniqueFd peer;
  std::unique_ptr<VirtioNet> net;
  uint64_t rx_next = 0;
  size_t tx_next = 0;
};

double cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

TEST_CASE("net: features, MAC and link status in the config space") {
  Rig plain;
  using namespace devices::net_features;
  const uint64_t f = plain.net->device_features();
  CHECK(virtio::has_feature(f, virtio::kFVersion1));
  CHECK(virtio::has_feature(f, kMac));
  CHECK(virtio::has_feature(f, kStatus));
  CHECK(virtio::has_feature(f, kMrgRxbuf));
  CHECK_FALSE(virtio::has_feature(f, kCsum));  // this backend carries no offloads
  CHECK_FALSE(virtio::has_feature(f, kHostTso4));
  uint8_t config[10] = {};
  plain.net->read_config(0, config);
  CHECK(config[0] == 0x52);
  CHECK(config[5] == 3);
  CHECK(config[6] == 1);  // VIRTIO_NET_S_LINK_UP
  Rig offloads(Kind::kTap, true, /*tap_offloads=*/true);
  const uint64_t g = offloads.net->device_features();
  CHECK(virtio::has_feature(g, kCsum));
  CHECK(virtio::has_feature(g, kGuestCsum));
  CHECK(virtio::has_feature(g, kHostTso4));
  CHECK(virtio::has_feature(g, kGuestTso6));
  Rig stream(Kind::kStream);
  CHECK_FALSE(virtio::has_feature(stream.net->device_features(), kGuestCsum));
  CHECK(VirtioNet::default_mac("passt", 0) == VirtioNet::default_mac("passt", 0));
  CHECK(VirtioNet::default_mac("passt", 0) != VirtioNet::default_mac("passt", 1));
  CHECK(VirtioNet::default_mac("passt", 0)[0] == 0x52);
}

TEST_CASE("net: frames both ways through a tap-like backend") {
  Rig r;
  r.activate();
  const auto out = pattern(60, 1);
  r.send(VirtioNetHdr{}, out);
  const auto got = r.peer_read();
  REQUIRE(got.size() == sizeof(VirtioNetHdr) + out.size());
  CHECK(std::equal(out.begin(), out.end(), got.begin() + sizeof(VirtioNetHdr)));
  auto used = r.wait_used(r.tx, 1);
  REQUIRE(used.size() == 1);
  CHECK(used[0].len == 0);

  r.post_rx({2048});
  const auto in = pattern(100, 9);
  r.peer_send_tap(VirtioNetHdr{}, in);
  used = r.wait_used(r.rx, 1);
  REQUIRE(used.size() == 1);
  CHECK(used[0].len == sizeof(VirtioNetHdr) + in.size());
  CHECK(r.rx_hdr().num_buffers == 1);
  CHECK(std::memcmp(r.guest.host(kRxData + sizeof(VirtioNetHdr)), in.data(), in.size()) == 0);
  CHECK(r.irq.used >= 2);
  CHECK(r.net->counters().tx_frames == 1);
  CHECK(r.net->counters().rx_frames == 1);
  CHECK(r.irq.needs_reset == 0);
}

TEST_CASE("net: host frames that arrive before the guest's buffers are delivered, without spinning") {
  Rig r;
  r.activate();
  for (uint8_t i = 0; i < 3; ++i) r.peer_send_tap(VirtioNetHdr{}, pattern(200, i));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // The device holds a frame and has nowhere to put it: it must sleep, not poll the backend.
  const double before = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const double spent = cpu_seconds() - before;
  CHECK(spent < 0.1);
  CHECK(r.rx.take_used().empty());
  // Buffers come later (CVE-2020-16843: a device that only reads on backend readiness
  // strands these frames forever).
  r.post_rx({2048, 2048, 2048});
  const auto used = r.wait_used(r.rx, 3);
  REQUIRE(used.size() == 3);
  for (uint8_t i = 0; i < 3; ++i) {
    const auto want = pattern(200, i);
    CHECK(std::memcmp(r.guest.host(kRxData + uint64_t{i} * 0x1000 + sizeof(VirtioNetHdr)), want.data(),
                      want.size()) == 0);
  }
}

TEST_CASE("net: a frame spans merged receive buffers, published together") {
  Rig r;
  r.activate();
  r.post_rx({256, 256});  // not enough for 1012 bytes
  const auto in = pattern(1000, 3);
  r.peer_send_tap(VirtioNetHdr{}, in);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK(r.rx.used_idx() == 0);  // the two are given back untouched, not used in part
  r.post_rx({256, 256});
  const auto used = r.wait_used(r.rx, 4);
  REQUIRE(used.size() == 4);
  CHECK(used[0].id == 0);  // the first buffer the driver posted holds the header
  CHECK(used[0].len == 256);
  CHECK(used[3].len == 1012 - 3 * 256);
  CHECK(r.rx_hdr().num_buffers == 4);
  std::vector<uint8_t> joined;
  for (size_t i = 0; i < 4; ++i) {
    const uint8_t* p = r.guest.host(kRxData + i * 0x1000);
    joined.insert(joined.end(), p, p + used[i].len);
  }
  CHECK(std::equal(in.begin(), in.end(), joined.begin() + sizeof(VirtioNetHdr)));
}

TEST_CASE("net: a frame no buffer can hold is dropped and the ring stays usable") {
  SECTION("without MRG_RXBUF one buffer must hold the frame") {
    Rig r(Kind::kTap, /*mergeable=*/false);
    r.activate();
    r.post_rx({256});
    r.peer_send_tap(VirtioNetHdr{}, pattern(1000, 1));
    REQUIRE(eventually([&] { return r.net->counters().rx_dropped == 1; }));
    r.peer_send_tap(VirtioNetHdr{}, pattern(100, 2));
    const auto used = r.wait_used(r.rx, 1);
    REQUIRE(used.size() == 1);
    CHECK(used[0].len == 112);  // the same buffer, for the frame that fits
  }
  SECTION("with MRG_RXBUF: every buffer of the ring together is too small") {
    Rig r;
    r.activate();
    std::vector<uint32_t> tiny(kRing, 16);
    r.post_rx(tiny);
    r.peer_send_tap(VirtioNetHdr{}, pattern(1000, 1));
    REQUIRE(eventually([&] { return r.net->counters().rx_dropped == 1; }));
    r.peer_send_tap(VirtioNetHdr{}, pattern(20, 2));
    const auto used = r.wait_used(r.rx, 2);
    REQUIRE(used.size() == 2);  // 12 + 20 bytes in two 16-byte buffers
    CHECK(r.rx_hdr().num_buffers == 2);
  }
}

TEST_CASE("net: hostile chains complete and the device keeps serving") {
  Rig r;
  r.activate();
  // Transmit: no room for an Ethernet header; larger than any frame; a readable-only
  // receive buffer is not a receive buffer.
  VirtioNetHdr hdr{};
  std::memcpy(r.guest.host(kTxData), &hdr, sizeof(hdr));
  r.tx.add_chain({{kTxData, 20, false}});
  r.tx.add_chain({{kTxData, sizeof(VirtioNetHdr) + devices::NetBackend::kMaxFrame + 1, false}});
  r.tx.add_chain({{kTxData, 100, false}, {kTxData + 0x1000, 100, true}});  // a write part: still one
  r.events[1].signal();
  auto used = r.wait_used(r.tx, 3);
  REQUIRE(used.size() == 3);
  for (const auto& u : used) CHECK(u.len == 0);
  CHECK(r.net->counters().tx_dropped == 2);
  // A segmentation offload the driver did not negotiate (no CSUM on this backend).
  VirtioNetHdr gso{};
  gso.gso_type = 1;  // TCPv4
  gso.flags = 1;     // NEEDS_CSUM
  r.send(gso, pattern(100, 4));
  used = r.wait_used(r.tx, 1);
  REQUIRE(used.size() == 1);
  CHECK(r.net->counters().tx_dropped == 3);
  (void)r.peer_read(50);  // the 100-byte chain above went out (its write part ignored)
  CHECK(r.peer_read(50).empty());
  // Receive: a buffer the device may only read goes back empty; the next one is used.
  r.rx.add_chain({{kRxData, 2048, false}});
  r.post_rx({2048});
  r.peer_send_tap(VirtioNetHdr{}, pattern(64, 5));
  used = r.wait_used(r.rx, 2);
  REQUIRE(used.size() == 2);
  CHECK(used[0].len == 0);
  CHECK(used[1].len == 76);
  CHECK(r.irq.needs_reset == 0);
  // And a good frame still goes out.
  r.send(VirtioNetHdr{}, pattern(60, 6));
  CHECK(r.peer_read().size() == 72);
}

TEST_CASE("net: passt framing both ways, and a hostile length takes the link down") {
  Rig r(Kind::kStream);
  r.activate();
  const auto out = pattern(90, 1);
  r.send(VirtioNetHdr{}, out);
  const auto got = r.peer_read();
  REQUIRE(got.size() == 4 + out.size());
  CHECK(got[0] == 0);
  CHECK(got[3] == out.size());
  CHECK(std::equal(out.begin(), out.end(), got.begin() + 4));

  r.post_rx({2048, 2048});
  const auto in = pattern(300, 2);
  r.peer_send_stream(in, static_cast<uint32_t>(in.size()));
  auto used = r.wait_used(r.rx, 1);
  REQUIRE(used.size() == 1);
  CHECK(used[0].len == sizeof(VirtioNetHdr) + in.size());
  const VirtioNetHdr hdr = r.rx_hdr();
  CHECK(hdr.flags == 0);
  CHECK(hdr.gso_type == 0);
  CHECK(hdr.num_buffers == 1);
  CHECK(std::memcmp(r.guest.host(kRxData + sizeof(VirtioNetHdr)), in.data(), in.size()) == 0);

  r.peer_send_stream({}, 0x7fffffff);
  REQUIRE(eventually([&] { return r.irq.config == 1; }));
  uint8_t status[2] = {1, 1};
  r.net->read_config(6, status);
  CHECK(status[0] == 0);  // link down
  CHECK(r.net->config_generation() != 0);
  r.send(VirtioNetHdr{}, out);  // dropped, completed
  used = r.wait_used(r.tx, 2);
  CHECK(used.size() == 2);
  CHECK(r.irq.needs_reset == 0);
}

TEST_CASE("net: reset with a frame waiting, then a new activation serves again") {
  Rig r;
  r.activate();
  r.peer_send_tap(VirtioNetHdr{}, pattern(100, 1));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  r.net->reset();
  CHECK(r.net->acked_features() == 0);
  // The driver sets the device up again (its rings from scratch).
  for (auto& q : r.queues) q.reset();
  DriverQueue rx2(r.guest, kRing, 0x20000);
  DriverQueue tx2(r.guest, kRing, 0x30000);
  rx2.configure(r.queues[0], false, true);
  tx2.configure(r.queues[1], false, true);
  r.net->set_acked_features(r.net->device_features());
  r.activate();
  rx2.add_chain({{kRxData, 2048, true}});
  r.events[0].signal();
  r.peer_send_tap(VirtioNetHdr{}, pattern(80, 2));
  std::vector<virtio::VirtqUsedElem> used;
  REQUIRE(eventually([&] {
    auto u = rx2.take_used();
    used.insert(used.end(), u.begin(), u.end());
    return !used.empty();
  }));
  CHECK(used[0].len == 92);  // the new frame (the one waiting at reset was dropped)
  CHECK(std::memcmp(r.guest.host(kRxData + sizeof(VirtioNetHdr)), pattern(80, 2).data(), 80) == 0);
}

TEST_CASE("net: a receive queue the driver broke asks for a reset and leaves the worker asleep") {
  Rig r;
  r.activate();
  r.rx.set_avail_idx(static_cast<uint16_t>(r.rx.avail_idx() + 100));  // more than the ring
  r.events[0].signal();
  // The device finds out when it has a frame to place.
  for (uint8_t i = 0; i < 4; ++i) r.peer_send_tap(VirtioNetHdr{}, pattern(100, i));
  REQUIRE(eventually([&] { return r.irq.needs_reset == 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const double before = cpu_seconds();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(cpu_seconds() - before < 0.1);
  // Transmit still works until the driver resets the device.
  r.send(VirtioNetHdr{}, pattern(60, 9));
  CHECK(r.peer_read().size() == 72);
}

TEST_CASE("net: a transmit buffer outside guest RAM is dropped, its chain completes") {
  Rig r;
  r.activate();
  VirtioNetHdr hdr{};
  std::memcpy(r.guest.host(kTxData), &hdr, sizeof(hdr));
  r.tx.add_chain({{kTxData, sizeof(hdr), false}, {kRam - 100, 1000, false}});  // runs past RAM
  r.events[1].signal();
  const auto used = r.wait_used(r.tx, 1);
  REQUIRE(used.size() == 1);
  CHECK(used[0].len == 0);
  CHECK(eventually([&] { return r.net->counters().tx_dropped == 1; }));
  CHECK(r.net->counters().tx_frames == 0);
  CHECK(r.peer_read(50).empty());
}
