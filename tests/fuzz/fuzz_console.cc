// libFuzzer target: virtio-console's request handling -- both ports' receive and transmit
// queues and the control queues -- with every queue's rings, tables and buffers, and the
// control messages, taken from the input (anywhere in guest RAM, a hole like the MMIO gap).
// Each input activates the device (its worker serves every queue once at start, in order:
// port 0, the control queues, which run the handshake messages in the ring, port 1) and
// resets it. Host input waits for port 0 before. No crash, no hang, no sanitizer report,
// and DEVICE_NEEDS_RESET only for broken rings, which the transport would handle.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio_console.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using namespace minivmm;

namespace {
constexpr uint64_t kRam = 0x30000;
constexpr test::FakeGuestMemory::Hole kHole{0x20000, 0x28000};
constexpr size_t kQueues = 6;  // port 0, control, port 1

struct QueueHeader {
  uint8_t size_log2;
  uint8_t flags;  // bit 0: EVENT_IDX, bit 1: INDIRECT_DESC, bit 2: not ready
  uint16_t desc;
  uint16_t avail;
  uint16_t used;
};
struct Header {
  uint8_t features;  // bit 0: MULTIPORT, bit 1: host input waiting, bit 2: resize
  uint8_t pad[3];
  std::array<QueueHeader, kQueues> queues;
};

class Interrupt final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t) override {}
  bool set_needs_reset() override { return true; }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(Header)) return 0;
  Header h;
  std::memcpy(&h, data, sizeof(h));
  data += sizeof(h);
  size -= sizeof(h);

  static test::FakeGuestMemory guest(kRam, kHole);
  std::memset(guest.host(0), 0, kHole.start);
  std::memset(guest.host(kHole.end), 0, kRam - kHole.end);
  std::memcpy(guest.host(0), data, std::min<size_t>(size, kHole.start));
  const virtio::GuestMemory& mem = guest.mem();

  std::vector<virtio::Queue> queues;
  for (size_t i = 0; i < kQueues; ++i) {
    const QueueHeader& qh = h.queues[i];
    virtio::Queue& q = queues.emplace_back(devices::VirtioConsole::kQueueSize);
    q.set_size(static_cast<uint16_t>(1u << (qh.size_log2 % 9)));
    q.set_desc_table((uint64_t{qh.desc} << 2) & ~uint64_t{15});
    q.set_avail_ring((uint64_t{qh.avail} << 2) & ~uint64_t{1});
    q.set_used_ring((uint64_t{qh.used} << 2) & ~uint64_t{3});
    q.set_event_idx(qh.flags & 1);
    q.set_indirect(qh.flags & 2);
    q.set_ready(!(qh.flags & 4));
    if (q.ready() && !q.is_valid(mem)) q.set_ready(false);  // the transport refuses these
  }
  std::vector<virtio::EventFd> events(kQueues);

  static const int null_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  devices::ConsolePortConfig console;
  console.output = std::make_shared<devices::HostOutput>(::dup(null_fd), false, "null");
  console.host_input = true;
  devices::ConsolePortConfig named;
  named.name = "fuzz.port";
  devices::VirtioConsole dev(console, {named});
  if (h.features & 2) {
    static const std::array<uint8_t, 3000> typed{};
    dev.enqueue_input(typed);
  }
  if (h.features & 4) dev.resize(132, 43);
  uint64_t features = dev.device_features();
  if (!(h.features & 1)) features &= ~virtio::feature_bit(devices::VirtioConsole::kFMultiport);
  dev.set_acked_features(features);
  Interrupt irq;
  if (dev.activate(virtio::ActivateContext{mem, queues, events, irq})) __builtin_trap();
  dev.reset();
  return 0;
}
