// Virtqueue micro-benchmark: the device pops a 3-descriptor chain (header, data, status,
// the shape of a virtio-blk request) and puts it on the used ring. The driver side of each
// iteration is two stores into the avail ring. Target: below 50 ns per chain.
#include <benchmark/benchmark.h>

#include <vector>

#include "tests/support/fake_guest.h"
#include "virtio/queue.h"

using namespace minivmm::virtio;
using minivmm::test::Buf;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;

namespace {

const std::vector<Buf> kRequest{{0x10000, 16}, {0x11000, 4096, true}, {0x12000, 1, true}};

// The measured loop: publish, pop, add_used and, optionally, the notification decision.
void pop_add_used(benchmark::State& state, bool event_idx, bool indirect, bool notify) {
  FakeGuestMemory guest(0x100000);
  DriverQueue driver(guest, 256, 0x1000);
  Queue queue(256);
  driver.configure(queue, event_idx, true);
  const GuestMemory& mem = guest.mem();
  const uint16_t head =
      indirect ? driver.add_indirect(0x8000, kRequest) : driver.add_descriptors(kRequest);

  for (auto _ : state) {
    driver.publish(head);
    auto popped = queue.pop(mem);
    DescriptorChain& chain = **popped;
    benchmark::DoNotOptimize(chain.writable_bytes());
    (void)queue.add_used(mem, chain.head_index(), 4097);
    if (notify) benchmark::DoNotOptimize(queue.needs_notification(mem).value());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_PopAddUsed3(benchmark::State& state) {
  pop_add_used(state, state.range(0) != 0, false, state.range(1) != 0);
}
BENCHMARK(BM_PopAddUsed3)->ArgsProduct({{0, 1}, {0, 1}})->ArgNames({"event_idx", "notify_check"});

void BM_PopAddUsed3Indirect(benchmark::State& state) { pop_add_used(state, true, true, false); }
BENCHMARK(BM_PopAddUsed3Indirect);

}  // namespace

BENCHMARK_MAIN();
