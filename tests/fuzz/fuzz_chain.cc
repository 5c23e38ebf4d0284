// libFuzzer target: the device side of a split virtqueue walking guest-controlled rings
// and descriptor tables. The input becomes the contents of a small guest RAM (with a hole,
// like the MMIO gap) plus the queue configuration; the target pops every chain, reads and
// writes through it and returns it. No crash, no hang, no sanitizer report.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#include "tests/support/fake_guest.h"
#include "virtio/descriptor_chain.h"
#include "virtio/queue.h"

using namespace minivmm::virtio;

namespace {
constexpr uint64_t kRam = 0x30000;
constexpr minivmm::test::FakeGuestMemory::Hole kHole{0x20000, 0x28000};

struct Header {
  uint8_t size_log2;
  uint8_t max_size_log2;
  uint8_t flags;  // bit 0: EVENT_IDX, bit 1: INDIRECT_DESC
  uint8_t rounds;
  uint32_t desc;
  uint32_t avail;
  uint32_t used;
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < sizeof(Header)) return 0;
  Header h;
  std::memcpy(&h, data, sizeof(h));
  data += sizeof(h);
  size -= sizeof(h);

  static minivmm::test::FakeGuestMemory guest(kRam, kHole);
  std::memset(guest.host(0), 0, kHole.start);
  std::memset(guest.host(kHole.end), 0, kRam - kHole.end);
  // Spread the input over RAM so rings and tables at small addresses see fuzz bytes.
  std::memcpy(guest.host(0), data, std::min<size_t>(size, kHole.start));
  const GuestMemory& mem = guest.mem();

  // Mostly-valid configurations, so that the fuzzer spends its time inside the rings;
  // the activation check itself still sees odd sizes and misaligned rings now and then.
  Queue queue(static_cast<uint16_t>(1u << (h.max_size_log2 % 9)));
  queue.set_size(static_cast<uint16_t>(1u << (h.size_log2 % 10)));
  queue.set_desc_table((h.desc % kRam) & ((h.flags & 4) ? ~uint64_t{0} : ~uint64_t{15}));
  queue.set_avail_ring((h.avail % kRam) & ~uint64_t{1});
  queue.set_used_ring((h.used % kRam) & ((h.flags & 8) ? ~uint64_t{0} : ~uint64_t{3}));
  queue.set_event_idx(h.flags & 1);
  queue.set_indirect(h.flags & 2);
  queue.set_ready(true);
  if (!queue.is_valid(mem)) return 0;

  std::vector<uint8_t> buf(4096);
  for (unsigned round = 0; round < 1u + (h.rounds & 3u); ++round) {
    auto it = queue.iter(mem);
    if (!it) break;
    for (DescriptorChain& chain : *it) {
      if (!chain.must_be_used()) continue;
      uint32_t written = 0;
      if (chain.is_valid()) {
        ChainReader reader(mem, chain);
        const size_t n = std::min<uint64_t>(reader.remaining(), buf.size());
        (void)reader.read(std::span(buf.data(), n));
        ChainWriter writer(mem, chain);
        const size_t m = std::min<uint64_t>(writer.remaining(), buf.size());
        if (writer.write(std::span(buf.data(), m))) written = static_cast<uint32_t>(m);
      }
      (void)queue.add_used(mem, chain.head_index(), written);
    }
    (void)queue.needs_notification(mem);
    (void)queue.enable_notification(mem);
    (void)queue.disable_notification(mem);
  }
  return 0;
}
