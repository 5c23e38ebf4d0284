// virtio-net: transmit chains of several pieces (header alone, header and frame in one
// buffer, a frame split across buffers) reach a tap-like datagram peer and a stream peer
// byte for byte; a chain pointing outside guest RAM is dropped but completed; a frame from
// the backend lands in a receive buffer behind its header. The test is the driver, through
// DriverQueue; the device runs on its worker.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/net_backend.h"
#include "devices/virtio_net.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using minivmm::devices::NetBackend;
using minivmm::devices::StreamBackend;
using minivmm::devices::TapBackend;
using minivmm::devices::VirtioNet;
using minivmm::devices::VirtioNetHdr;
using minivmm::test::Buf;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;
namespace virtio = minivmm::virtio;

namespace {

constexpr uint64_t kRam = 16 << 20;

bool eventually(const std::function<bool()>& done, int ms = 5000) {
  for (int i = 0; i < ms; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

class Interrupts final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t) override { used.fetch_add(1); }
  bool set_needs_reset() override { return true; }
  std::atomic<int> used{0};
};

std::string read_peer(int fd, size_t n, int ms = 5000) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (out.size() < n && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10) <= 0) continue;
    char buf[70000];
    const ssize_t r = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r > 0) out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

struct NetRig {
  explicit NetRig(int type) {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, sv) == 0);
    // The device's end is non-blocking, as TapBackend::open makes a tap's fd.
    REQUIRE(::fcntl(sv[0], F_SETFL, ::fcntl(sv[0], F_GETFL) | O_NONBLOCK) == 0);
    peer = sv[1];
    std::unique_ptr<NetBackend> backend;
    if (type == SOCK_DGRAM) {
      backend = std::make_unique<TapBackend>(minivmm::vmm::UniqueFd(sv[0]), false, "test");
    } else {
      backend = std::make_unique<StreamBackend>(minivmm::vmm::UniqueFd(sv[0]), "socket");
    }
    dev = std::make_unique<VirtioNet>(VirtioNet::Options{"virtio-net test", {2, 0, 0, 0, 0, 1}},
                                      std::move(backend));
    for (size_t i = 0; i < 2; ++i) {
      queues.emplace_back(VirtioNet::kQueueSize);
      events.emplace_back();
      drivers.push_back(std::make_unique<DriverQueue>(guest, VirtioNet::kQueueSize, 0x10000 * (i + 1)));
    }
    dev->set_acked_features(dev->device_features());
    for (size_t i = 0; i < 2; ++i) drivers[i]->configure(queues[i], true, true);
    REQUIRE_FALSE(dev->activate(virtio::ActivateContext{guest.mem(), queues, events, irq}));
  }
  ~NetRig() {
    dev->reset();
    ::close(peer);
  }
  void put(uint64_t addr, const std::string& bytes) { std::memcpy(guest.host(addr), bytes.data(), bytes.size()); }
  void send(const std::vector<Buf>& bufs) {
    drivers[VirtioNet::kTxQueue]->add_chain(bufs);
    events[VirtioNet::kTxQueue].signal();
  }
  size_t tx_used(size_t n) {
    eventually([&] {
      got += drivers[VirtioNet::kTxQueue]->take_used().size();
      return got >= n;
    });
    return got;
  }

  FakeGuestMemory guest{kRam};
  std::vector<virtio::Queue> queues;
  std::vector<virtio::EventFd> events;
  std::vector<std::unique_ptr<DriverQueue>> drivers;
  Interrupts irq;
  std::unique_ptr<VirtioNet> dev;
  int peer = -1;
  size_t got = 0;
};

std::string header_bytes() {
  VirtioNetHdr h{};
  return std::string(reinterpret_cast<const char*>(&h), sizeof(h));
}

std::string frame_of(size_t n) {
  std::string f(n, '\0');
  for (size_t i = 0; i < n; ++i) f[i] = static_cast<char>('a' + i % 26);
  return f;
}

}  // namespace

TEST_CASE("virtio-net: transmit chains of any layout reach a tap peer byte for byte") {
  NetRig rig(SOCK_DGRAM);
  const std::string hdr = header_bytes();
  const std::string frame = frame_of(1514);
  // Header and frame in one buffer.
  rig.put(0x400000, hdr + frame);
  rig.send({{0x400000, static_cast<uint32_t>(hdr.size() + frame.size())}});
  CHECK(read_peer(rig.peer, 1) == hdr + frame);
  // Header alone, then the frame in three pieces.
  rig.put(0x500000, hdr);
  rig.put(0x510000, frame.substr(0, 100));
  rig.put(0x520000, frame.substr(100, 1000));
  rig.put(0x530000, frame.substr(1100));
  rig.send({{0x500000, 12}, {0x510000, 100}, {0x520000, 1000}, {0x530000, 414}});
  CHECK(read_peer(rig.peer, 1) == hdr + frame);
  // The header split across two buffers, the second carrying the frame's start too.
  rig.put(0x600000, hdr.substr(0, 5));
  rig.put(0x610000, hdr.substr(5) + frame);
  rig.send({{0x600000, 5}, {0x610000, static_cast<uint32_t>(7 + frame.size())}});
  CHECK(read_peer(rig.peer, 1) == hdr + frame);
  CHECK(rig.tx_used(3) == 3);
  CHECK(rig.dev->counters().tx_frames == 3);
  CHECK(rig.dev->counters().tx_bytes == 3 * frame.size());
  CHECK(rig.dev->counters().tx_dropped == 0);
}

TEST_CASE("virtio-net: a transmit buffer outside guest RAM is dropped, its chain completes") {
  NetRig rig(SOCK_DGRAM);
  rig.put(0x400000, header_bytes());
  rig.send({{0x400000, 12}, {kRam - 100, 1000}});
  CHECK(rig.tx_used(1) == 1);
  CHECK(eventually([&] { return rig.dev->counters().tx_dropped == 1; }));
  CHECK(rig.dev->counters().tx_frames == 0);
  CHECK(read_peer(rig.peer, 1, 50).empty());
}

TEST_CASE("virtio-net: a stream peer gets each frame behind its length, split chains too") {
  NetRig rig(SOCK_STREAM);
  const std::string frame = frame_of(3000);
  rig.put(0x500000, header_bytes());
  rig.put(0x510000, frame.substr(0, 1234));
  rig.put(0x520000, frame.substr(1234));
  rig.send({{0x500000, 12}, {0x510000, 1234}, {0x520000, static_cast<uint32_t>(frame.size() - 1234)}});
  const std::string want = std::string("\0\0\x0b\xb8", 4) + frame;
  CHECK(read_peer(rig.peer, want.size()) == want);
  CHECK(rig.tx_used(1) == 1);
}

TEST_CASE("virtio-net: a frame from the backend lands in a receive buffer behind its header") {
  NetRig rig(SOCK_DGRAM);
  const std::string frame = frame_of(600);
  rig.drivers[VirtioNet::kRxQueue]->add_chain({{0x700000, 2048, true}});
  rig.events[VirtioNet::kRxQueue].signal();
  const std::string datagram = header_bytes() + frame;
  REQUIRE(::send(rig.peer, datagram.data(), datagram.size(), 0) == static_cast<ssize_t>(datagram.size()));
  std::vector<virtio::VirtqUsedElem> used;
  REQUIRE(eventually([&] {
    for (const auto& u : rig.drivers[VirtioNet::kRxQueue]->take_used()) used.push_back(u);
    return !used.empty();
  }));
  REQUIRE(used[0].len == 12 + frame.size());
  VirtioNetHdr h;
  std::memcpy(&h, rig.guest.host(0x700000), sizeof(h));
  CHECK(h.num_buffers == 1);
  CHECK(std::string(reinterpret_cast<const char*>(rig.guest.host(0x700000 + 12)), frame.size()) == frame);
  CHECK(rig.dev->counters().rx_frames == 1);
}
