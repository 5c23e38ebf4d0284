// libFuzzer target: virtio-net's frame handling both ways. The input is a few flags, then
// records: each is a frame the guest transmits (one chain, whole or split inside its
// virtio header or frame, with whatever header bytes the input has) or a frame the backend
// -- a datagram socketpair standing in for a tap -- hands the device to receive, with the
// guest's receive buffers of an input-chosen size. Each input activates the device (its
// worker serves both queues once at start: receive first, then transmit within one
// budget), then resets it. The rings are valid, so nothing may ask for a device reset;
// every transmit chain comes back with used length 0; no receive buffer gets more than its
// size, and a merged frame's header says how many buffers it took. No crash, no hang, no
// sanitizer report. (The rings are fuzz_chain's; the tap's own kernel checks are not here.)
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "devices/net_backend.h"
#include "devices/virtio_net.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using namespace minivmm;

namespace {
constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kData = 0x40000;  // buffers from here; the rings below
constexpr uint16_t kRing = 64;

struct Header {
  uint8_t flags;     // bit 0: EVENT_IDX, bit 1: INDIRECT_DESC, bit 2: split tx chains,
                     // bit 3: no MRG_RXBUF, bit 4: the backend has offloads (tap)
  uint8_t rx_count;  // receive buffers posted (mod kRing + 1)
  uint16_t rx_len;   // their size (mod 4096)
};

class Interrupt final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t) override {}
  bool set_needs_reset() override { __builtin_trap(); }
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(Header)) return 0;
  Header h;
  std::memcpy(&h, data, sizeof(h));
  data += sizeof(h);
  size -= sizeof(h);

  static test::FakeGuestMemory guest(kRam);
  std::memset(guest.host(0), 0, kRam);
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) != 0) return 0;
  vmm::UniqueFd peer(sv[1]);
  auto backend = std::make_unique<devices::TapBackend>(vmm::UniqueFd(sv[0]), h.flags & 16, "fuzz");
  devices::VirtioNet net({"virtio-net fuzz", {0x52, 0x54, 0, 0, 0, 1}}, std::move(backend));

  std::vector<virtio::Queue> queues;
  std::vector<std::unique_ptr<test::DriverQueue>> drivers;
  for (uint16_t i = 0; i < 2; ++i) {
    queues.emplace_back(devices::VirtioNet::kQueueSize);
    drivers.push_back(std::make_unique<test::DriverQueue>(guest, kRing, 0x8000 * (i + 1)));
    drivers.back()->configure(queues.back(), h.flags & 1, h.flags & 2);
  }
  uint64_t next = kData;
  auto alloc = [&](size_t len) {
    const uint64_t addr = next;
    next += (len + 15) & ~size_t{15};
    return addr;
  };
  const uint32_t rx_len = h.rx_len % 4096;
  const int rx_count = h.rx_count % (kRing + 1);
  for (int i = 0; i < rx_count; ++i) drivers[0]->add_chain({{alloc(rx_len), rx_len, true}});

  // Records: a 16-bit length whose top bit says which way (1: the backend receives it).
  size_t tx_chains = 0;
  std::vector<uint8_t> datagram;
  while (size >= 2 && tx_chains < devices::VirtioNet::kBudget && next + 8192 < kRam) {
    uint16_t len;
    std::memcpy(&len, data, 2);
    data += 2;
    size -= 2;
    const size_t n = std::min<size_t>(static_cast<size_t>(len % 4096), size);
    if (len & 0x8000) {
      // A datagram for the device: whatever the input says, header included.
      datagram.assign(data, data + n);
      if (!datagram.empty()) {
        [[maybe_unused]] ssize_t sent = ::send(peer.get(), datagram.data(), datagram.size(), 0);
      }
    } else {
      const uint64_t addr = alloc(n);
      std::memcpy(guest.host(addr), data, n);
      const auto len32 = static_cast<uint32_t>(n);
      if ((h.flags & 4) && n > 1) {
        const uint32_t cut = 1 + static_cast<uint32_t>(len % (n - 1));
        drivers[1]->add_chain({{addr, cut, false}, {addr + cut, len32 - cut, false}});
      } else {
        drivers[1]->add_chain({{addr, len32, false}});
      }
      ++tx_chains;
    }
    data += n;
    size -= n;
  }
  std::vector<virtio::EventFd> events(2);
  Interrupt irq;
  uint64_t features = net.device_features();
  if (h.flags & 8) features &= ~devices::net_features::bit(devices::net_features::kMrgRxbuf);
  net.set_acked_features(features);
  if (net.activate(virtio::ActivateContext{guest.mem(), queues, events, irq})) __builtin_trap();
  net.reset();
  const auto tx_used = drivers[1]->take_used();
  check(tx_used.size() == tx_chains);  // every chain came back
  for (const auto& u : tx_used) check(u.len == 0);
  const auto rx_used = drivers[0]->take_used();
  for (size_t i = 0; i < rx_used.size();) {
    check(rx_used[i].len <= rx_len);
    // Given back empty (not a receive buffer), or a header split over tiny buffers: no
    // header to read here.
    if (rx_used[i].len == 0 || rx_len < sizeof(devices::VirtioNetHdr)) {
      ++i;
      continue;
    }
    devices::VirtioNetHdr hdr;
    std::memcpy(&hdr, guest.host(kData + uint64_t{rx_used[i].id} * ((rx_len + 15) & ~15u)),
                sizeof(hdr));
    check(hdr.num_buffers >= 1 && i + hdr.num_buffers <= rx_used.size());
    check((h.flags & 8) == 0 || hdr.num_buffers == 1);
    i += hdr.num_buffers;
  }
  return 0;
}
