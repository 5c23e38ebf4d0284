// The legacy port devices: 8250 UART registers and interrupts, i8042 reset, boot-progress
// port, PCI host bridge. Pure unit tests through the BusDevice interface.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "devices/debug_exit.h"
#include "devices/debug_port.h"
#include "devices/i8042.h"
#include "devices/pci_host.h"
#include "devices/pvpanic.h"
#include "devices/serial.h"

using minivmm::devices::DebugPort;
using minivmm::devices::I8042;
using minivmm::devices::PciHostBridge;
using minivmm::devices::Serial;

namespace {

class CountingIrq final : public minivmm::virtio::IrqLine {
 public:
  void trigger() override { ++count; }
  std::atomic<int> count{0};
};

uint8_t rd(minivmm::mmio::BusDevice& d, uint64_t offset) {
  uint8_t b = 0xaa;
  d.read(offset, {&b, 1});
  return b;
}

void wr(minivmm::mmio::BusDevice& d, uint64_t offset, uint8_t value) {
  d.write(offset, {&value, 1});
}

}  // namespace

TEST_CASE("serial: THR writes reach the sink, LSR always shows an empty transmitter") {
  CountingIrq irq;
  std::string out;
  Serial s(irq, [&](uint8_t b) { out.push_back(static_cast<char>(b)); });
  for (char c : std::string("hi\n")) wr(s, Serial::kRegData, static_cast<uint8_t>(c));
  CHECK(out == "hi\n");
  CHECK((rd(s, Serial::kRegLsr) & (Serial::kLsrThrEmpty | Serial::kLsrTransmitterEmpty)) ==
        (Serial::kLsrThrEmpty | Serial::kLsrTransmitterEmpty));
  CHECK(irq.count == 0);  // IER is 0: no interrupts
  CHECK(rd(s, Serial::kRegIir) == Serial::kIirNoInterrupt);
}

TEST_CASE("serial: divisor latch, LCR, MCR and scratch registers") {
  CountingIrq irq;
  std::string out;
  Serial s(irq, [&](uint8_t b) { out.push_back(static_cast<char>(b)); });
  wr(s, Serial::kRegLcr, 0x83);   // DLAB + 8N1
  wr(s, Serial::kRegData, 0x01);  // DLL: 115200 baud
  wr(s, Serial::kRegIer, 0x00);   // DLM
  CHECK(rd(s, Serial::kRegData) == 0x01);
  CHECK(rd(s, Serial::kRegIer) == 0x00);
  CHECK(out.empty());  // DLL writes are not data
  wr(s, Serial::kRegLcr, 0x03);
  CHECK(rd(s, Serial::kRegLcr) == 0x03);
  wr(s, Serial::kRegScr, 0x5a);
  CHECK(rd(s, Serial::kRegScr) == 0x5a);
  wr(s, Serial::kRegMcr, 0x0b);
  CHECK(rd(s, Serial::kRegMcr) == 0x0b);
  CHECK(rd(s, Serial::kRegMsr) == 0xb0);
}

TEST_CASE("serial: received bytes raise the data interrupt and are read from RBR") {
  CountingIrq irq;
  Serial s(irq, nullptr);
  wr(s, Serial::kRegIer, Serial::kIerRxData);
  CHECK(irq.count == 0);
  const uint8_t input[] = {'a', 'b'};
  CHECK(s.enqueue_input(input) == 2);
  CHECK(irq.count == 1);
  CHECK((rd(s, Serial::kRegLsr) & Serial::kLsrDataReady) != 0);
  CHECK((rd(s, Serial::kRegIir) & 0x0f) == Serial::kIirRxData);
  CHECK(rd(s, Serial::kRegData) == 'a');
  CHECK(rd(s, Serial::kRegData) == 'b');
  CHECK((rd(s, Serial::kRegLsr) & Serial::kLsrDataReady) == 0);
  CHECK((rd(s, Serial::kRegIir) & 0x0f) == Serial::kIirNoInterrupt);
}

TEST_CASE("serial: the THR-empty interrupt fires on enable and after each byte, cleared by IIR") {
  CountingIrq irq;
  Serial s(irq, nullptr);
  wr(s, Serial::kRegIer, Serial::kIerThrEmpty);
  CHECK(irq.count == 1);
  CHECK((rd(s, Serial::kRegIir) & 0x0f) == Serial::kIirThrEmpty);
  CHECK((rd(s, Serial::kRegIir) & 0x0f) == Serial::kIirNoInterrupt);  // reading cleared it
  wr(s, Serial::kRegData, 'x');
  CHECK(irq.count == 2);
  CHECK((rd(s, Serial::kRegIir) & 0x0f) == Serial::kIirThrEmpty);
}

TEST_CASE("serial: FIFO enable shows in IIR, FCR clears the receive FIFO, input is bounded") {
  CountingIrq irq;
  Serial s(irq, nullptr);
  wr(s, Serial::kRegIir, Serial::kFcrEnableFifo);
  CHECK((rd(s, Serial::kRegIir) & 0xc0) == 0xc0);
  std::vector<uint8_t> lots(Serial::kInputCapacity + 10, 'z');
  CHECK(s.enqueue_input(lots) == Serial::kInputCapacity);
  CHECK(s.input_space() == 0);
  wr(s, Serial::kRegIir, Serial::kFcrEnableFifo | Serial::kFcrClearRx);
  CHECK(s.input_space() == Serial::kInputCapacity);
}

TEST_CASE("serial: loopback sends THR to RBR and not to the sink") {
  CountingIrq irq;
  std::string out;
  Serial s(irq, [&](uint8_t b) { out.push_back(static_cast<char>(b)); });
  wr(s, Serial::kRegMcr, Serial::kMcrLoopback | 0x0f);
  wr(s, Serial::kRegData, 0x42);
  CHECK(out.empty());
  CHECK(rd(s, Serial::kRegData) == 0x42);
  CHECK(rd(s, Serial::kRegMsr) == 0xf0);  // DTR/RTS/OUT1/OUT2 looped to DSR/CTS/RI/DCD
}

TEST_CASE("serial: looped-back bytes stop at the input capacity (fuzz_ports finding)") {
  CountingIrq irq;
  Serial s(irq, nullptr);
  wr(s, Serial::kRegMcr, Serial::kMcrLoopback);
  for (size_t i = 0; i < Serial::kInputCapacity + 100; ++i) {
    wr(s, Serial::kRegData, static_cast<uint8_t>(i));
  }
  CHECK(s.input_space() == 0);  // was SIZE_MAX - 99: the FIFO grew past its capacity
  for (size_t i = 0; i < Serial::kInputCapacity; ++i) {
    REQUIRE(rd(s, Serial::kRegData) == static_cast<uint8_t>(i));  // the first ones, in order
  }
  CHECK((rd(s, Serial::kRegLsr) & Serial::kLsrDataReady) == 0);
}

TEST_CASE("serial: out-of-range offsets and empty accesses are harmless") {
  CountingIrq irq;
  Serial s(irq, nullptr);
  CHECK(rd(s, 8) == 0xff);
  wr(s, 100, 1);
  s.read(0, {});
  s.write(0, {});
  uint8_t wide[4] = {1, 2, 3, 4};
  s.read(Serial::kRegLsr, wide);
  CHECK(wide[0] == (Serial::kLsrThrEmpty | Serial::kLsrTransmitterEmpty));
  CHECK(wide[1] == 0);
}

TEST_CASE("i8042: 0xFE on the command port resets, once per command") {
  int resets = 0;
  I8042 k([&] { ++resets; });
  wr(k, I8042::kCommandOffset, I8042::kCmdPulseReset);
  CHECK(resets == 1);
  CHECK(k.resets() == 1);
  wr(k, I8042::kCommandOffset, 0xff);  // pulses no line
  CHECK(resets == 1);
}

TEST_CASE("i8042: controller commands Linux uses answer sensibly") {
  int resets = 0;
  I8042 k([&] { ++resets; });
  CHECK((rd(k, I8042::kCommandOffset) & I8042::kStatusOutputFull) == 0);
  wr(k, I8042::kCommandOffset, I8042::kCmdSelfTest);
  CHECK((rd(k, I8042::kCommandOffset) & I8042::kStatusOutputFull) != 0);
  CHECK(rd(k, I8042::kDataOffset) == 0x55);
  wr(k, I8042::kCommandOffset, I8042::kCmdWriteConfig);
  wr(k, I8042::kDataOffset, 0x47);
  wr(k, I8042::kCommandOffset, I8042::kCmdReadConfig);
  CHECK(rd(k, I8042::kDataOffset) == 0x47);
  wr(k, I8042::kCommandOffset, I8042::kCmdTestKbd);
  CHECK(rd(k, I8042::kDataOffset) == 0x00);
  wr(k, I8042::kDataOffset, 0xf2);  // a keyboard command: nobody answers
  CHECK((rd(k, I8042::kCommandOffset) & I8042::kStatusOutputFull) == 0);
  // Writing the output port with the reset line (bit 0) low resets too.
  wr(k, I8042::kCommandOffset, I8042::kCmdWriteOutputPort);
  wr(k, I8042::kDataOffset, 0x00);
  CHECK(resets == 1);
}

TEST_CASE("i8042: answers nobody reads stop at kOutputCapacity (fuzz_ports finding)") {
  I8042 k(nullptr);
  for (int i = 0; i < 1000; ++i) wr(k, I8042::kCommandOffset, I8042::kCmdSelfTest);
  size_t answers = 0;
  while (rd(k, I8042::kCommandOffset) & I8042::kStatusOutputFull) {
    CHECK(rd(k, I8042::kDataOffset) == 0x55);
    ++answers;
  }
  CHECK(answers == I8042::kOutputCapacity);  // was 1000
}

TEST_CASE("debug port: records each value with its time and calls back") {
  const auto start = std::chrono::steady_clock::now();
  std::vector<uint8_t> seen;
  DebugPort p(start, [&](const DebugPort::Entry& e) { seen.push_back(e.value); });
  wr(p, 0, 0x41);
  wr(p, 0, 0x42);
  CHECK(seen == std::vector<uint8_t>{0x41, 0x42});
  const auto entries = p.entries();
  REQUIRE(entries.size() == 2);
  CHECK(entries[0].since_start.count() >= 0);
  CHECK(entries[1].since_start >= entries[0].since_start);
  CHECK(rd(p, 0) == 0);
}

namespace {

uint32_t rd32(minivmm::mmio::BusDevice& d, uint64_t offset) {
  uint8_t b[4] = {0xaa, 0xaa, 0xaa, 0xaa};
  d.read(offset, b);
  return uint32_t{b[0]} | uint32_t{b[1]} << 8 | uint32_t{b[2]} << 16 | uint32_t{b[3]} << 24;
}

void wr32(minivmm::mmio::BusDevice& d, uint64_t offset, uint32_t value) {
  const uint8_t b[4] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8),
                        static_cast<uint8_t>(value >> 16), static_cast<uint8_t>(value >> 24)};
  d.write(offset, b);
}

// CONFIG_ADDRESS for bus/device/function/register.
uint32_t cfg(uint32_t bus, uint32_t dev, uint32_t fn, uint32_t reg) {
  return PciHostBridge::kAddressEnable | bus << 16 | dev << 11 | fn << 8 | reg;
}

}  // namespace

TEST_CASE("pci host bridge: Linux's mechanism #1 probe succeeds (pci_check_type1)") {
  PciHostBridge pci;
  // arch/x86/pci/direct.c: outb(0x01, 0xcfb); tmp = inl(0xcf8); outl(0x80000000, 0xcf8);
  // works if inl(0xcf8) reads it back and bus 0 has a host bridge; then outl(tmp, 0xcf8).
  wr(pci, 3, 0x01);
  const uint32_t saved = rd32(pci, PciHostBridge::kAddressOffset);
  wr32(pci, PciHostBridge::kAddressOffset, 0x8000'0000);
  CHECK(rd32(pci, PciHostBridge::kAddressOffset) == 0x8000'0000);
  wr32(pci, PciHostBridge::kAddressOffset, saved);
  CHECK(rd32(pci, PciHostBridge::kAddressOffset) == saved);
  // pci_sanity_check: some devfn on bus 0 has class "host bridge".
  wr32(pci, PciHostBridge::kAddressOffset, cfg(0, 0, 0, 0x08));
  CHECK(rd32(pci, PciHostBridge::kDataOffset) >> 16 == 0x0600);
}

TEST_CASE("pci host bridge: 00:00.0 is the bridge, every other function is absent") {
  PciHostBridge pci;
  wr32(pci, 0, cfg(0, 0, 0, 0x00));
  CHECK(rd32(pci, 4) == (uint32_t{PciHostBridge::kDeviceId} << 16 | PciHostBridge::kVendorId));
  wr32(pci, 0, cfg(0, 0, 0, 0x0c));
  CHECK(rd32(pci, 4) == 0);  // header type 0, single function
  wr32(pci, 0, cfg(0, 0, 0, 0x10));
  CHECK(rd32(pci, 4) == 0);  // no BARs
  for (const uint32_t a : {cfg(0, 1, 0, 0), cfg(0, 0, 1, 0), cfg(1, 0, 0, 0), cfg(255, 31, 7, 0)}) {
    wr32(pci, 0, a);
    CHECK(rd32(pci, 4) == 0xffff'ffff);
  }
  wr32(pci, 0, cfg(0, 0, 0, 0) & ~PciHostBridge::kAddressEnable);
  CHECK(rd32(pci, 4) == 0xffff'ffff);  // enable bit clear: no config cycle
}

TEST_CASE("pci host bridge: byte and word data reads, read-only header, latch bits") {
  PciHostBridge pci;
  wr32(pci, 0, cfg(0, 0, 0, 0x00));
  CHECK(rd(pci, 4) == (PciHostBridge::kVendorId & 0xff));
  CHECK(rd(pci, 5) == (PciHostBridge::kVendorId >> 8));
  CHECK(rd(pci, 6) == (PciHostBridge::kDeviceId & 0xff));
  CHECK(rd(pci, 7) == (PciHostBridge::kDeviceId >> 8));
  uint8_t word[2] = {};
  pci.read(6, word);
  CHECK((word[0] | word[1] << 8) == PciHostBridge::kDeviceId);
  // BAR sizing and command writes change nothing.
  wr32(pci, 0, cfg(0, 0, 0, 0x10));
  wr32(pci, 4, 0xffff'ffff);
  CHECK(rd32(pci, 4) == 0);
  // Reserved latch bits read as 0; byte and word accesses to 0xcf8-0xcfb miss the latch.
  wr32(pci, 0, 0xffff'ffff);
  CHECK(rd32(pci, 0) == PciHostBridge::kAddressWritable);
  wr(pci, 0, 0x00);
  CHECK(rd32(pci, 0) == PciHostBridge::kAddressWritable);
  CHECK(rd(pci, 1) == 0xff);
}

TEST_CASE("exit port: 1-, 2- and 4-byte writes give the status, in both formulas") {
  using minivmm::devices::DebugExit;
  std::vector<std::pair<uint8_t, uint32_t>> seen;
  auto record = [&](uint8_t status, uint32_t value) { seen.emplace_back(status, value); };
  DebugExit mine(DebugExit::Formula::kMinivmm, record);
  const uint8_t one[1] = {7};
  const uint8_t two[2] = {0x03, 0x01};
  const uint8_t four[4] = {0xff, 0x01, 0, 0};
  mine.write(0, one);
  mine.write(0, two);
  mine.write(0, four);
  REQUIRE(seen.size() == 3);
  CHECK(seen[0] == std::pair<uint8_t, uint32_t>{7, 7});
  CHECK(seen[1] == std::pair<uint8_t, uint32_t>{3, 0x103});
  CHECK(seen[2] == std::pair<uint8_t, uint32_t>{0xff, 0x1ff});
  // Other offsets and widths are not exit requests.
  const uint8_t three[3] = {1, 2, 3};
  mine.write(1, one);
  mine.write(0, three);
  CHECK(seen.size() == 3);
  uint8_t r[2] = {0, 0};
  mine.read(0, r);
  CHECK(r[0] == 0xff);
  seen.clear();
  DebugExit qemu(DebugExit::Formula::kQemu, record);
  const uint8_t zero[1] = {0};
  qemu.write(0, zero);
  qemu.write(0, two);
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first == 1);  // QEMU: (0 << 1) | 1, 0 is unreachable
  CHECK(seen[1].first == 7);  // (0x103 << 1 | 1) & 0xff
}

TEST_CASE("pvpanic: reads the supported events, PANICKED stops, CRASH_LOADED does not") {
  using minivmm::devices::PvPanic;
  int panics = 0, crash_loaded = 0;
  PvPanic dev([&] { ++panics; }, [&] { ++crash_loaded; });
  uint8_t r[1] = {0};
  dev.read(0, r);
  CHECK(r[0] == (PvPanic::kPanicked | PvPanic::kCrashLoaded));
  const uint8_t crash[1] = {PvPanic::kCrashLoaded};
  dev.write(0, crash);
  CHECK(crash_loaded == 1);
  CHECK(panics == 0);
  const uint8_t panicked[1] = {PvPanic::kPanicked};
  dev.write(0, panicked);
  CHECK(panics == 1);
  const uint8_t unknown[1] = {0x80};
  dev.write(0, unknown);
  CHECK(panics == 1);
  CHECK(crash_loaded == 1);
}
