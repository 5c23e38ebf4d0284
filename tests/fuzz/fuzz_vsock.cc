// libFuzzer target: virtio-vsock's transmit-queue packet handling, and the receive queue it
// answers on. The input is a few flags, then packets: each becomes one transmit chain (whole,
// or split inside its header and payload), in guest RAM like a driver's, so that the
// fuzzer works on the packets themselves (the rings are fuzz_chain's and fuzz_console's).
// Guest connections go to a real listening socket at PATH_1 (port 1; other ports have
// nobody and get RST). Each input activates the device -- its worker serves every queue
// once at start, the transmit queue within one budget -- and resets it.
// No crash, no hang, no sanitizer report; every transmit chain comes back; the rings are
// valid, so nothing may ask for a device reset.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "devices/virtio_vsock.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using namespace minivmm;

namespace {
constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kData = 0x40000;  // buffers from here; the rings below
constexpr uint16_t kRing = 128;
constexpr size_t kMaxPackets = devices::VirtioVsock::kBudget;
constexpr uint64_t kCid = 3;

struct Header {
  uint8_t flags;     // bit 0: EVENT_IDX, bit 1: INDIRECT_DESC, bit 2: fix the CIDs,
                     // bit 3: split chains
  uint8_t rx_count;  // receive buffers posted (mod 64)
  uint16_t rx_len;   // their size (mod 8192)
};

class Interrupt final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t) override {}
  bool set_needs_reset() override { __builtin_trap(); }
};

struct Harness {
  Harness() {
    char name[] = "/tmp/minivmm-fuzz-vsock-XXXXXX";
    if (::mkdtemp(name) == nullptr) __builtin_trap();
    dir = name;
    path = dir + "/v";
    listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    const std::string p1 = path + "_1";
    std::memcpy(a.sun_path, p1.c_str(), p1.size());
    if (::bind(listener, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) != 0 ||
        ::listen(listener, 128) != 0) {
      __builtin_trap();
    }
    dev = std::make_unique<devices::VirtioVsock>(kCid, devices::vsock_listen(path), path);
  }
  // What the device connected to PATH_1 is accepted and closed after each input.
  void drain() {
    int fd;
    while ((fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC)) >= 0) ::close(fd);
  }
  std::string dir, path;
  int listener = -1;
  std::unique_ptr<devices::VirtioVsock> dev;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(Header)) return 0;
  Header h;
  std::memcpy(&h, data, sizeof(h));
  data += sizeof(h);
  size -= sizeof(h);

  static Harness harness;
  static test::FakeGuestMemory guest(kRam);
  std::memset(guest.host(0), 0, kRam);

  std::vector<virtio::Queue> queues;
  std::vector<std::unique_ptr<test::DriverQueue>> drivers;
  for (uint16_t i = 0; i < 3; ++i) {
    queues.emplace_back(devices::VirtioVsock::kQueueSize);
    drivers.push_back(std::make_unique<test::DriverQueue>(guest, kRing, 0x8000 * (i + 1)));
    drivers.back()->configure(queues.back(), h.flags & 1, h.flags & 2);
  }
  uint64_t next = kData;
  auto alloc = [&](size_t len) {
    const uint64_t addr = next;
    next += (len + 15) & ~size_t{15};
    return addr;
  };
  const uint32_t rx_len = h.rx_len % 8192;
  for (int i = 0; i < h.rx_count % 64; ++i) {
    drivers[0]->add_chain({{alloc(rx_len), rx_len, true}});
  }
  size_t packets = 0;
  while (size >= 2 && packets < kMaxPackets && next + 8192 < kRam) {
    uint16_t len;
    std::memcpy(&len, data, 2);
    data += 2;
    size -= 2;
    const size_t n = std::min<size_t>(static_cast<size_t>(len % 8192), size);
    const uint64_t addr = alloc(n);
    std::memcpy(guest.host(addr), data, n);
    if ((h.flags & 4) && n >= 16) {
      std::memcpy(guest.host(addr), &kCid, 8);
      const uint64_t host = devices::VirtioVsock::kHostCid;
      std::memcpy(guest.host(addr + 8), &host, 8);
    }
    data += n;
    size -= n;
    const auto len32 = static_cast<uint32_t>(n);
    if ((h.flags & 8) && n > 1) {
      // Split where the input says: inside the header, or inside the payload.
      const uint32_t cut = 1 + static_cast<uint32_t>(len % (n - 1));
      drivers[1]->add_chain({{addr, cut, false}, {addr + cut, len32 - cut, false}});
    } else {
      drivers[1]->add_chain({{addr, len32, false}});
    }
    ++packets;
  }
  std::vector<virtio::EventFd> events(3);
  Interrupt irq;
  devices::VirtioVsock& dev = *harness.dev;
  dev.set_acked_features(dev.device_features());
  if (dev.activate(virtio::ActivateContext{guest.mem(), queues, events, irq})) __builtin_trap();
  dev.reset();
  if (drivers[1]->take_used().size() != packets) __builtin_trap();  // every chain came back
  for (const virtio::VirtqUsedElem& u : drivers[0]->take_used()) {
    if (u.len > rx_len) __builtin_trap();
  }
  harness.drain();
  return 0;
}
