// libFuzzer target for the virtio-mmio transport: the input is a program of register
// accesses (any offset, width and value), writes into guest RAM, device-side events and
// shortcuts through the initialisation sequence, run against a VirtioMmioTransport over
// a DummyDevice that pops and returns chains from its queues whenever it is activated or
// notified. Guest-controlled ring addresses and contents therefore reach Queue and
// DescriptorChain through the transport. After every step the transport's invariants are
// checked; a violation traps. Single-threaded.
#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstdint>
#include <cstring>
#include <memory>
#include <vector>

#include "mmio/virtio_mmio.h"
#include "tests/mmio/dummy_device.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

namespace {

using namespace minivmm;
using mmio::VirtioMmioTransport;

constexpr uint64_t kRamSize = 1 << 20;
constexpr size_t kMaxOps = 2048;

// Offsets worth hitting more often than a uniform pick would.
constexpr std::array<uint64_t, 26> kRegisters = {
    mmio::kRegMagicValue,
    mmio::kRegDeviceFeatures,
    mmio::kRegDeviceFeaturesSel,
    mmio::kRegDriverFeatures,
    mmio::kRegDriverFeaturesSel,
    mmio::kRegQueueSel,
    mmio::kRegQueueNumMax,
    mmio::kRegQueueNum,
    mmio::kRegQueueReady,
    mmio::kRegQueueNotify,
    mmio::kRegInterruptStatus,
    mmio::kRegInterruptAck,
    mmio::kRegStatus,
    mmio::kRegStatus,
    mmio::kRegQueueDescLow,
    mmio::kRegQueueDescHigh,
    mmio::kRegQueueDriverLow,
    mmio::kRegQueueDriverHigh,
    mmio::kRegQueueDeviceLow,
    mmio::kRegQueueDeviceHigh,
    mmio::kRegShmSel,
    mmio::kRegShmLenLow,
    mmio::kRegConfigGeneration,
    mmio::kRegConfig,
    mmio::kRegConfig + 8,
    mmio::kRegConfig + 15,
};

void check(bool ok) {
  if (!ok) __builtin_trap();
}

struct Harness {
  test::FakeGuestMemory guest{kRamSize};
  std::shared_ptr<test::DummyDevice> device = std::make_shared<test::DummyDevice>();
  test::CountingIrq irq;
  VirtioMmioTransport transport{device, guest.mem(), irq};

  Harness() { device->drain_on_activate = true; }

  uint32_t rd(uint64_t offset) {
    uint32_t v = 0;
    transport.read(offset, std::span(reinterpret_cast<uint8_t*>(&v), sizeof(v)));
    return v;
  }
  void wr(uint64_t offset, uint32_t value) {
    transport.write(offset, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(value)));
  }

  // What must hold between any two accesses.
  void check_invariants() {
    const uint32_t status = transport.status();
    const uint32_t steps = status & 0x0f;
    check(steps == 0 || steps == 1 || steps == 3 || steps == 11 || steps == 15);
    check((status & ~uint32_t{0x0f | virtio::kStatusDeviceNeedsReset | virtio::kStatusFailed}) ==
          0);
    if ((status & virtio::kStatusDeviceNeedsReset) != 0) {
      check((status & virtio::kStatusDriverOk) != 0);
    }
    check((transport.interrupt_status() & ~uint32_t{3}) == 0);
    if (status == 0) {
      check(device->mem == nullptr);
      check(device->acked == 0);
      for (size_t i = 0; i < transport.num_queues(); ++i) {
        const virtio::Queue& q = transport.queue(i);
        check(!q.ready() && q.desc_table() == 0 && q.size() == q.max_size());
      }
    }
    if (device->mem != nullptr) {  // active: DRIVER_OK was accepted
      check((status & virtio::kStatusDriverOk) != 0);
      check((device->acked & ~test::DummyDevice::kFeatures) == 0);
      check(virtio::has_feature(device->acked, virtio::kFVersion1));
    }
    check(rd(mmio::kRegMagicValue) == VirtioMmioTransport::kMagicValue);
  }

  void raw_access(FuzzedDataProvider& in, bool is_write) {
    const uint64_t offset =
        in.ConsumeBool() ? kRegisters[in.ConsumeIntegralInRange<size_t>(0, kRegisters.size() - 1)]
                         : in.ConsumeIntegralInRange<uint64_t>(0, 0xfff);
    static constexpr std::array<size_t, 5> kWidths = {4, 4, 1, 2, 8};
    size_t width = kWidths[in.ConsumeIntegralInRange<size_t>(0, kWidths.size() - 1)];
    width = std::min<size_t>(width, VirtioMmioTransport::kDeviceWindowSize - offset);
    std::array<uint8_t, 8> buf{};
    if (is_write) {
      const uint64_t value = in.ConsumeIntegral<uint64_t>();
      std::memcpy(buf.data(), &value, sizeof(value));
      transport.write(offset, std::span(buf).first(width));
    } else {
      transport.read(offset, std::span(buf).first(width));
    }
  }

  // Any bytes anywhere in RAM (and, rarely, a range that runs off its end).
  void poke_ram(FuzzedDataProvider& in) {
    const uint64_t addr = in.ConsumeIntegralInRange<uint64_t>(0, kRamSize + 16);
    const std::vector<uint8_t> bytes =
        in.ConsumeBytes<uint8_t>(in.ConsumeIntegralInRange<size_t>(0, 64));
    (void)guest.mem().write(addr, bytes);
  }

  // The driver's side of a ring, at whatever addresses the transport currently holds:
  // a descriptor, an avail entry, or avail->idx.
  void poke_ring(FuzzedDataProvider& in) {
    const virtio::Queue& q = transport.queue(in.ConsumeIntegralInRange<size_t>(0, 1));
    const uint16_t slot = in.ConsumeIntegral<uint16_t>();
    switch (in.ConsumeIntegralInRange(0, 2)) {
      case 0: {
        virtio::VirtqDesc d{};
        d.addr = in.ConsumeBool() ? in.ConsumeIntegralInRange<uint64_t>(0, kRamSize)
                                  : in.ConsumeIntegral<uint64_t>();
        d.len = in.ConsumeIntegral<uint32_t>();
        d.flags = in.ConsumeIntegralInRange<uint16_t>(0, 7);
        d.next = in.ConsumeIntegral<uint16_t>();
        (void)guest.mem().write_obj(q.desc_table() + (uint64_t{slot} % 64) * sizeof(d), d);
        break;
      }
      case 1:
        (void)guest.mem().write_obj(q.avail_ring() + 4 + (uint64_t{slot} % 64) * 2,
                                    in.ConsumeIntegral<uint16_t>());
        break;
      default:
        (void)guest.mem().write_obj(q.avail_ring() + 2, slot);
        break;
    }
  }

  // Shortcut through virtio 1.2 §3.1.1 so that short inputs reach DRIVER_OK.
  void init(FuzzedDataProvider& in) {
    wr(mmio::kRegStatus, 0);
    wr(mmio::kRegStatus, virtio::kStatusAcknowledge);
    wr(mmio::kRegStatus, virtio::kStatusAcknowledge | virtio::kStatusDriver);
    const uint64_t features =
        in.ConsumeBool() ? test::DummyDevice::kFeatures : in.ConsumeIntegral<uint64_t>();
    wr(mmio::kRegDriverFeaturesSel, 0);
    wr(mmio::kRegDriverFeatures, static_cast<uint32_t>(features));
    wr(mmio::kRegDriverFeaturesSel, 1);
    wr(mmio::kRegDriverFeatures, static_cast<uint32_t>(features >> 32));
    wr(mmio::kRegStatus, 11);
    for (uint32_t i = 0; i < 2; ++i) {
      if (!in.ConsumeBool()) continue;
      wr(mmio::kRegQueueSel, i);
      wr(mmio::kRegQueueNum, in.ConsumeIntegralInRange<uint32_t>(0, 17));
      // Mostly aligned addresses inside RAM, sometimes anything.
      for (uint64_t reg :
           {mmio::kRegQueueDescLow, mmio::kRegQueueDriverLow, mmio::kRegQueueDeviceLow}) {
        const uint64_t addr = in.ConsumeBool()
                                  ? in.ConsumeIntegralInRange<uint64_t>(0, kRamSize / 16) * 16
                                  : in.ConsumeIntegral<uint64_t>();
        wr(reg, static_cast<uint32_t>(addr));
        wr(reg + 4, static_cast<uint32_t>(addr >> 32));
      }
      wr(mmio::kRegQueueReady, 1);
    }
    wr(mmio::kRegStatus, 15);
  }

  void run(FuzzedDataProvider& in) {
    for (size_t n = 0; n < kMaxOps && in.remaining_bytes() > 0; ++n) {
      switch (in.ConsumeIntegralInRange(0, 9)) {
        case 0:
        case 1:
          raw_access(in, true);
          break;
        case 2:
          raw_access(in, false);
          break;
        case 3:
          poke_ram(in);
          break;
        case 4:
          poke_ring(in);
          break;
        case 5:
          init(in);
          break;
        case 6:
          wr(mmio::kRegQueueNotify, in.ConsumeIntegralInRange<uint32_t>(0, 2));
          device->service();
          break;
        case 7:
          transport.signal(in.ConsumeIntegral<uint32_t>());
          wr(mmio::kRegInterruptAck, rd(mmio::kRegInterruptStatus));
          break;
        case 8:
          // A device that saw its queue break asks for a reset.
          if (device->broken > 0) (void)transport.set_needs_reset();
          break;
        default:
          if (in.ConsumeBool()) {
            transport.reset();
          } else {
            wr(mmio::kRegStatus, in.ConsumeIntegral<uint8_t>());
          }
          break;
      }
      check_invariants();
    }
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  Harness harness;
  harness.run(in);
  return 0;
}
