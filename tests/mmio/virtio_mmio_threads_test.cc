// Concurrency of the virtio-mmio transport: vCPU threads driving the register file while
// an I/O thread signals and asks for resets. Meant to run under ASan / TSan as well; the
// assertions check that the state stays consistent.
#include <atomic>
#include <catch2/catch.hpp>
#include <thread>
#include <vector>

#include "tests/mmio/transport_fixture.h"

namespace minivmm::test {
namespace {

using namespace mmio;  // kReg* offsets

TEST_CASE_METHOD(TransportFixture, "vCPUs and an I/O thread race on the transport",
                 "[virtio_mmio][threads]") {
  DriverQueue q0(guest, 16, 0x10000);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> needs_reset_set{0};
  std::atomic<uint64_t> bad_status{0};
  std::thread io([&] {
    virtio::VirtioInterrupt& interrupt = transport;
    while (!stop.load()) {
      interrupt.signal(virtio::kInterruptUsedBuffer);
      if (transport.set_needs_reset()) needs_reset_set.fetch_add(1);
    }
  });
  auto vcpu = [&](int rounds) {
    for (int i = 0; i < rounds; ++i) {
      negotiate();
      setup_queue(0, q0);
      wr(kRegStatus, kDriverOk);
      wr(kRegQueueNotify, 0);
      const uint32_t status = rd(kRegStatus);
      // Whatever the interleaving, the status is an ordered prefix plus device bits.
      const uint32_t steps = status & 0x0f;
      if (steps != 0 && steps != 1 && steps != 3 && steps != 11 && steps != 15) {
        bad_status.fetch_add(1);  // Catch2 assertions are not thread-safe
      }
      wr(kRegInterruptAck, rd(kRegInterruptStatus));
    }
  };
  std::vector<std::thread> vcpus;
  for (int i = 0; i < 2; ++i) vcpus.emplace_back(vcpu, 300);
  for (std::thread& t : vcpus) t.join();
  stop.store(true);
  io.join();

  CHECK(bad_status == 0);
  wr(kRegStatus, 0);
  CHECK(rd(kRegStatus) == 0);
  CHECK(device->mem == nullptr);
  CHECK(device->activate_calls >= 1);
  CHECK(device->reset_calls >= device->activate_calls);
  for (size_t i = 0; i < transport.num_queues(); ++i) CHECK_FALSE(transport.queue(i).ready());
  CHECK(rd(kRegInterruptStatus) == 0);
}

}  // namespace
}  // namespace minivmm::test
