// libFuzzer target: virtio-rng's request handling through drain_queue, over guest RAM and a
// queue configuration taken from the input (rings, tables and buffers anywhere, a hole like
// the MMIO gap). Checks that no request gets more than kMaxBytesPerRequest or more than its
// writable bytes, and that drain_queue takes no more chains than its budget allows. No
// crash, no hang, no sanitizer report. (The used ring is not checked: the entropy written
// into a buffer that overlaps the rings is the guest's own doing.)
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "devices/virtio_rng.h"
#include "tests/support/fake_guest.h"
#include "virtio/queue_drain.h"
#include "virtio/spec.h"

using namespace minivmm;

namespace {
constexpr uint64_t kRam = 0x30000;
constexpr test::FakeGuestMemory::Hole kHole{0x20000, 0x28000};

struct Header {
  uint8_t size_log2;
  uint8_t flags;  // bit 0: EVENT_IDX, bit 1: INDIRECT_DESC
  uint8_t budget;
  uint8_t rounds;
  uint32_t desc;
  uint32_t avail;
  uint32_t used;
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

  static test::FakeGuestMemory guest(kRam, kHole);
  std::memset(guest.host(0), 0, kHole.start);
  std::memset(guest.host(kHole.end), 0, kRam - kHole.end);
  std::memcpy(guest.host(0), data, std::min<size_t>(size, kHole.start));
  const virtio::GuestMemory& mem = guest.mem();

  const auto qsize = static_cast<uint16_t>(1u << (h.size_log2 % 9));
  virtio::Queue queue(256);
  queue.set_size(qsize);
  queue.set_desc_table((h.desc % kRam) & ~uint64_t{15});
  queue.set_avail_ring((h.avail % kRam) & ~uint64_t{1});
  queue.set_used_ring((h.used % kRam) & ~uint64_t{3});
  queue.set_event_idx(h.flags & 1);
  queue.set_indirect(h.flags & 2);
  queue.set_ready(true);
  if (!queue.is_valid(mem)) return 0;

  devices::VirtioRng rng([](std::span<uint8_t> out) {
    std::fill(out.begin(), out.end(), uint8_t{0x5a});
    return true;
  });
  uint64_t handled = 0;
  const virtio::ChainHandler handle = [&](const virtio::DescriptorChain& chain) {
    const uint32_t n = rng.fill(mem, chain);
    check(n <= devices::VirtioRng::kMaxBytesPerRequest);
    check(n <= chain.writable_bytes());
    ++handled;
    return n;
  };
  // Bounded, so that entropy written over the avail ring cannot keep one input running.
  const uint32_t budget = h.budget == 0 ? 64 : h.budget;
  const unsigned rounds = 1u + (h.rounds & 3u);
  for (unsigned round = 0; round < rounds; ++round) {
    if (!virtio::drain_queue(queue, mem, handle, budget)) break;  // broken: stop, as a device
  }
  check(handled <= uint64_t{budget} * rounds);
  return 0;
}
