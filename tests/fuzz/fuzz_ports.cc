// libFuzzer target: the legacy port devices -- the UART at COM1, the i8042, the boot-progress
// port, pvpanic, both exit ports (minivmm's at 0xf4, QEMU's formula at 0x501) and the PCI
// host bridge -- on a port I/O bus laid out as the VMM lays it out (vmm/vm.cc), driven by
// fuzz-chosen accesses: which device, a port near its range (so that accesses straddling or
// missing a range are tried too), size 1/2/4, read or write, a value and a repeat count; and
// host input for the UART. A small model of each device's documented behaviour runs beside
// it and every access is checked against it:
//   UART: exactly the THR writes (DLAB clear, no loopback) reach the sink, byte for byte; the
//     receive FIFO never holds more than kInputCapacity (host input and loopback alike); LSR
//     always shows an empty transmitter and "data ready" exactly when bytes wait; IIR is one
//     of the documented values; an interrupt only while IER enables one;
//   i8042: the reset callback runs exactly for a pulse command with bit 0 clear or an output
//     port write with bit 0 clear; the bytes read from the data port are the answers of the
//     commands, in order, at most kOutputCapacity of them; the status register's flags;
//   exit ports: a status only for a 1/2/4-byte write at the base, the documented formula (QEMU's
//     is always odd), the value as written; pvpanic: PANICKED and CRASH_LOADED as documented;
//   boot-progress port: one entry per write, the record capped at kMaxEntries;
//   PCI: the address latch reads back masked, data reads are config_dword() of the latch;
//   every byte a read does not define is 0 (or 0xff where the device says so).
// No crash, no sanitizer report.
#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <vector>

#include "boot/layout.h"
#include "devices/debug_exit.h"
#include "devices/debug_port.h"
#include "devices/i8042.h"
#include "devices/pci_host.h"
#include "devices/pvpanic.h"
#include "devices/serial.h"
#include "mmio/bus.h"

using namespace minivmm;
using devices::DebugExit;
using devices::DebugPort;
using devices::I8042;
using devices::PciHostBridge;
using devices::Serial;

namespace {

// A failed check names itself, so that a finding in CI says which invariant broke.
void check_at(bool ok, const char* what, int line) {
  if (ok) return;
  std::fprintf(stderr, "fuzz_ports.cc:%d: check failed: %s\n", line, what);
  __builtin_trap();
}
#define check(cond) check_at((cond), #cond, __LINE__)

class CountingIrq final : public virtio::IrqLine {
 public:
  void trigger() override { ++count; }
  uint64_t count = 0;
};

// Where each device sits, as in Vm::setup_legacy_devices.
enum Target : uint8_t { kUart, kI8042, kProgress, kPvPanic, kExitMinivmm, kExitQemu, kPci };
struct Range {
  uint16_t base;
  uint16_t len;
};
constexpr Range kRanges[] = {
    {boot::kCom1Port, boot::kCom1PortCount},
    {I8042::kBasePort, I8042::kPortRange},
    {DebugPort::kPort, 1},
    {boot::kPvpanicPort, 1},
    {DebugExit::kMinivmmPort, 4},  // VmConfig's default iosize
    {DebugExit::kQemuPort, DebugExit::kQemuSize},
    {PciHostBridge::kBasePort, PciHostBridge::kPortRange},
};
constexpr size_t kTargets = sizeof(kRanges) / sizeof(kRanges[0]);

// One step, 7 bytes: what, where, and a little-endian value.
struct Op {
  uint8_t what;   // bits 0-2: target (7: host input to the UART); 3-4: size 1/2/4/4;
                  // bit 5: write; bits 6-7: repeat 1, 2, 17 or 1100 times
  uint8_t where;  // port = base + where % (len + 4) - 2
  uint8_t value[4];
  uint8_t extra;  // host input: how many bytes
};

// What the devices told their callbacks.
struct Observed {
  std::vector<uint8_t> sink;
  uint64_t resets = 0;
  uint64_t progress = 0;
  uint8_t last_progress = 0;
  uint64_t panics = 0;
  uint64_t crash_loaded = 0;
  uint64_t exits = 0;
  uint8_t exit_status = 0;
  uint32_t exit_value = 0;
  DebugExit::Formula exit_formula = DebugExit::Formula::kMinivmm;
};

// The models: the state the documented behaviour depends on.
struct UartModel {
  uint8_t ier = 0, lcr = 0x03, mcr = 0x08, fcr = 0;
  size_t rx = 0;  // bytes waiting
  std::vector<uint8_t> expected_sink;
};
struct I8042Model {
  std::deque<uint8_t> output;
  uint8_t config = 0x45, output_port = 0x01, pending = 0;
  bool last_was_command = false;
  uint64_t resets = 0;
  void push(uint8_t b) {
    if (output.size() < I8042::kOutputCapacity) output.push_back(b);
  }
};

uint32_t le(const uint8_t* p, size_t n) {
  uint32_t v = 0;
  for (size_t i = 0; i < n; ++i) v |= uint32_t{p[i]} << (8 * i);
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Observed seen;
  CountingIrq irq;
  auto uart = std::make_shared<Serial>(irq, [&](uint8_t b) { seen.sink.push_back(b); });
  auto i8042 = std::make_shared<I8042>([&] { ++seen.resets; });
  auto progress =
      std::make_shared<DebugPort>(std::chrono::steady_clock::now(), [&](const DebugPort::Entry& e) {
        ++seen.progress;
        seen.last_progress = e.value;
      });
  auto pvpanic =
      std::make_shared<devices::PvPanic>([&] { ++seen.panics; }, [&] { ++seen.crash_loaded; });
  const auto exit_callback = [&](DebugExit::Formula f) {
    return [&seen, f](uint8_t status, uint32_t value) {
      ++seen.exits;
      seen.exit_status = status;
      seen.exit_value = value;
      seen.exit_formula = f;
    };
  };
  auto exit_minivmm = std::make_shared<DebugExit>(DebugExit::Formula::kMinivmm,
                                                  exit_callback(DebugExit::Formula::kMinivmm));
  auto exit_qemu = std::make_shared<DebugExit>(DebugExit::Formula::kQemu,
                                               exit_callback(DebugExit::Formula::kQemu));
  auto pci = std::make_shared<PciHostBridge>();
  mmio::Bus bus;
  const std::shared_ptr<mmio::BusDevice> devices[kTargets] = {
      uart, i8042, progress, pvpanic, exit_minivmm, exit_qemu, pci};
  for (size_t t = 0; t < kTargets; ++t)
    check(bus.insert(kRanges[t].base, kRanges[t].len, devices[t]));

  UartModel um;
  I8042Model km;
  uint64_t progress_writes = 0;
  uint64_t panics = 0, crash_loaded = 0, exits = 0;
  uint32_t pci_latch = 0;

  for (; size >= sizeof(Op); data += sizeof(Op), size -= sizeof(Op)) {
    Op op;
    std::memcpy(&op, data, sizeof(op));
    static constexpr size_t kRepeats[] = {1, 2, 17, 1100};
    const size_t repeat = kRepeats[op.what >> 6];
    const size_t target = op.what & 7;
    if (target == kTargets) {  // host input, on the main thread in the VMM
      const uint8_t bytes[4] = {op.value[0], op.value[1], op.value[2], op.value[3]};
      const size_t n = std::min<size_t>(op.extra % 5, sizeof(bytes));
      for (size_t r = 0; r < repeat; ++r) {
        const uint64_t irqs = irq.count;
        const size_t queued = uart->enqueue_input(std::span(bytes, n));
        if (um.mcr & Serial::kMcrLoopback) {
          check(queued == n);  // the line is disconnected: taken and dropped
        } else {
          check(queued == std::min(n, Serial::kInputCapacity - um.rx));
          um.rx += queued;
        }
        check(irq.count == irqs || (um.ier & Serial::kIerRxData));
        check(uart->input_space() == Serial::kInputCapacity - um.rx);
      }
      continue;
    }
    static constexpr size_t kSizes[] = {1, 2, 4, 4};
    const size_t len = kSizes[(op.what >> 3) & 3];
    const bool is_write = (op.what & 0x20) != 0;
    const Range range = kRanges[target];
    const uint16_t port = static_cast<uint16_t>(range.base + op.where % (range.len + 4u) - 2u);
    const uint32_t value = le(op.value, len);
    // The bus hands an access to a device only when the device's range covers all of it.
    const bool inside = port >= range.base && port + len <= uint32_t{range.base} + range.len;
    const uint64_t offset = port - range.base;

    for (size_t r = 0; r < repeat; ++r) {
      const uint64_t irqs = irq.count;
      uint8_t buf[4];
      std::memcpy(buf, op.value, sizeof(buf));
      bool hit;
      if (is_write) {
        hit = bus.write(port, std::span<const uint8_t>(buf, len));
      } else {
        hit = bus.read(port, std::span(buf, len));
      }
      if (!inside) {
        // No other device lies within the ports tried around a range, so an access not
        // wholly inside it reaches no device (the bus drops it) and a read gives 0xff.
        check(!hit);
        if (!is_write) {
          for (size_t i = 0; i < len; ++i) check(buf[i] == 0xff);
        }
        continue;
      }
      check(hit);
      switch (target) {
        case kUart: {
          const bool dlab = (um.lcr & Serial::kLcrDlab) != 0;
          const uint8_t v = static_cast<uint8_t>(value);
          for (size_t i = 1; i < len && !is_write; ++i) check(buf[i] == 0);
          if (is_write) {
            switch (offset) {
              case Serial::kRegData:
                if (dlab) break;
                if (um.mcr & Serial::kMcrLoopback) {
                  if (um.rx < Serial::kInputCapacity) ++um.rx;  // a full FIFO overruns
                } else {
                  um.expected_sink.push_back(v);
                }
                break;
              case Serial::kRegIer:
                if (!dlab) um.ier = v & 0x0f;
                break;
              case Serial::kRegIir:
                um.fcr = v & Serial::kFcrEnableFifo;
                if (v & Serial::kFcrClearRx) um.rx = 0;
                break;
              case Serial::kRegLcr:
                um.lcr = v;
                break;
              case Serial::kRegMcr:
                um.mcr = v & 0x1f;
                break;
            }
          } else {
            const uint8_t got = buf[0];
            switch (offset) {
              case Serial::kRegData:
                if (!dlab && um.rx > 0) --um.rx;
                break;
              case Serial::kRegIir: {
                const uint8_t fifo = um.fcr ? Serial::kIirFifoEnabled : 0;
                check((got & 0xc0) == fifo);
                const uint8_t id = got & 0x3f;
                check(id == Serial::kIirNoInterrupt || id == Serial::kIirThrEmpty ||
                      id == Serial::kIirRxData);
                // Received data has priority while it is enabled and waiting.
                if ((um.ier & Serial::kIerRxData) && um.rx > 0) check(id == Serial::kIirRxData);
                if (id == Serial::kIirThrEmpty) check(um.ier & Serial::kIerThrEmpty);
                break;
              }
              case Serial::kRegLcr:
                check(got == um.lcr);
                break;
              case Serial::kRegMcr:
                check(got == um.mcr);
                break;
              case Serial::kRegLsr:
                check((got & (Serial::kLsrThrEmpty | Serial::kLsrTransmitterEmpty)) ==
                      (Serial::kLsrThrEmpty | Serial::kLsrTransmitterEmpty));
                check(((got & Serial::kLsrDataReady) != 0) == (um.rx > 0));
                break;
            }
          }
          // An interrupt only for a source IER enables.
          check(irq.count == irqs || (um.ier & (Serial::kIerRxData | Serial::kIerThrEmpty)));
          check(uart->input_space() == Serial::kInputCapacity - um.rx);
          check(seen.sink.size() == um.expected_sink.size());
          break;
        }
        case kI8042: {
          const uint8_t v = static_cast<uint8_t>(value);
          if (is_write && offset == I8042::kCommandOffset) {
            km.last_was_command = true;
            km.pending = 0;
            switch (v) {
              case I8042::kCmdReadConfig:
                km.push(km.config);
                break;
              case I8042::kCmdWriteConfig:
              case I8042::kCmdWriteOutputPort:
                km.pending = v;
                break;
              case I8042::kCmdSelfTest:
                km.push(0x55);
                break;
              case I8042::kCmdTestAux:
              case I8042::kCmdTestKbd:
                km.push(0x00);
                break;
              case I8042::kCmdReadOutputPort:
                km.push(km.output_port);
                break;
              default:
                if (v >= 0xf0 && (v & 1) == 0) ++km.resets;
            }
          } else if (is_write && offset == I8042::kDataOffset) {
            km.last_was_command = false;
            if (km.pending == I8042::kCmdWriteConfig) km.config = v;
            if (km.pending == I8042::kCmdWriteOutputPort) {
              km.output_port = v;
              if ((v & 1) == 0) ++km.resets;
            }
            km.pending = 0;
          } else if (!is_write) {
            for (size_t i = 1; i < len; ++i) check(buf[i] == 0);
            if (offset == I8042::kDataOffset) {
              check(buf[0] == (km.output.empty() ? 0 : km.output.front()));
              if (!km.output.empty()) km.output.pop_front();
            } else if (offset == I8042::kCommandOffset) {
              const uint8_t want = static_cast<uint8_t>(
                  I8042::kStatusSystemFlag | (km.last_was_command ? I8042::kStatusCommand : 0) |
                  (km.output.empty() ? 0 : I8042::kStatusOutputFull));
              check(buf[0] == want);
            } else {
              check(buf[0] == 0xff);
            }
          }
          check(seen.resets == km.resets);
          check(i8042->resets() == km.resets);
          break;
        }
        case kProgress:
          if (is_write) {
            ++progress_writes;
            check(seen.last_progress == op.value[0]);
          } else {
            for (size_t i = 0; i < len; ++i) check(buf[i] == 0);
          }
          check(seen.progress == progress_writes);
          break;
        case kPvPanic:
          if (is_write) {
            if (op.value[0] & devices::PvPanic::kPanicked) {
              ++panics;
            } else if (op.value[0] & devices::PvPanic::kCrashLoaded) {
              ++crash_loaded;
            }
          } else {
            check(buf[0] == (devices::PvPanic::kPanicked | devices::PvPanic::kCrashLoaded));
            for (size_t i = 1; i < len; ++i) check(buf[i] == 0);
          }
          check(seen.panics == panics && seen.crash_loaded == crash_loaded);
          break;
        case kExitMinivmm:
        case kExitQemu: {
          const auto formula =
              target == kExitQemu ? DebugExit::Formula::kQemu : DebugExit::Formula::kMinivmm;
          if (is_write && offset == 0) {
            ++exits;
            check(seen.exit_formula == formula);
            check(seen.exit_value == value);
            // The documented statuses: v & 0xff, or QEMU's ((v << 1) | 1) & 0xff (odd).
            if (formula == DebugExit::Formula::kQemu) {
              check(seen.exit_status == static_cast<uint8_t>((value << 1) | 1));
              check(seen.exit_status & 1);
            } else {
              check(seen.exit_status == static_cast<uint8_t>(value));
            }
          } else if (!is_write) {
            for (size_t i = 0; i < len; ++i) check(buf[i] == 0xff);
          }
          check(seen.exits == exits);
          break;
        }
        case kPci:
          if (is_write && offset == PciHostBridge::kAddressOffset && len == 4) {
            pci_latch = value & PciHostBridge::kAddressWritable;
          } else if (!is_write) {
            uint32_t want = 0;
            bool defined = false;
            if (offset == PciHostBridge::kAddressOffset && len == 4) {
              want = pci_latch;
              defined = true;
            } else if (offset >= PciHostBridge::kDataOffset) {
              want = static_cast<uint32_t>(uint64_t{PciHostBridge::config_dword(pci_latch)} >>
                                           (8 * (offset - PciHostBridge::kDataOffset)));
              defined = true;
            }
            for (size_t i = 0; i < len; ++i) {
              check(buf[i] == (defined ? static_cast<uint8_t>(want >> (8 * i)) : 0xff));
            }
          }
          break;
      }
    }
  }
  // What the guest typed reached the sink in its order; the record of the progress port is
  // capped.
  check(seen.sink == um.expected_sink);
  check(progress->entries().size() == std::min<uint64_t>(progress_writes, DebugPort::kMaxEntries));
  // Drain the i8042: what is left is exactly what the model holds, and never more than fits.
  check(km.output.size() <= I8042::kOutputCapacity);
  while (!km.output.empty()) {
    uint8_t b = 0;
    check(bus.read(I8042::kBasePort, std::span(&b, 1)));
    check(b == km.output.front());
    km.output.pop_front();
  }
  uint8_t status = 0;
  check(bus.read(I8042::kBasePort + I8042::kCommandOffset, std::span(&status, 1)));
  check((status & I8042::kStatusOutputFull) == 0);
  return 0;
}
