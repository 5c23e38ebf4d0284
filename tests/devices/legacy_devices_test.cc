// The legacy port devices: 8250 UART registers and interrupts, i8042 reset, boot-progress
// port. Pure unit tests through the BusDevice interface.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <vector>

#include "devices/debug_port.h"
#include "devices/i8042.h"
#include "devices/serial.h"

using minivmm::devices::DebugPort;
using minivmm::devices::I8042;
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

TEST_CASE("serial: THR writes reach the sink; LSR always shows an empty transmitter") {
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
