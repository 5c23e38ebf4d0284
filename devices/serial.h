// Serial: a 16550A-compatible UART (the "8250" Linux's serial driver binds to) on the port I/O
// bus, normally at COM1 (0x3f8, IRQ 4). It has the registers Linux uses: RBR/THR, IER, IIR,
// FCR, LCR, MCR, LSR, MSR, SCR and the divisor latch (DLL/DLM when LCR.DLAB is set).
// Transmission is instantaneous: every byte written to THR goes straight to the sink, so the
// transmitter is always empty. Received bytes wait in a FIFO until the guest reads RBR.
// Interrupts: "received data available" and "THR empty", through an edge-triggered IrqLine
// (KVM_IRQFD), raised when a condition becomes pending while enabled in IER.
//
// Threads: read()/write() on vCPU threads; enqueue_input()/input_space() on the main thread
// (stdin). One mutex guards the register state; the sink is called with it held so that
// output keeps the guest's byte order.
#pragma once

#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>

#include "devices/console_input.h"
#include "mmio/bus.h"
#include "virtio/interrupt.h"

namespace minivmm::devices {

class Serial final : public mmio::BusDevice, public ConsoleInput {
 public:
  // Register offsets from the base port.
  static constexpr uint64_t kRegData = 0;  // RBR (read) / THR (write); DLL when DLAB
  static constexpr uint64_t kRegIer = 1;   // DLM when DLAB
  static constexpr uint64_t kRegIir = 2;   // read: IIR; write: FCR
  static constexpr uint64_t kRegLcr = 3;
  static constexpr uint64_t kRegMcr = 4;
  static constexpr uint64_t kRegLsr = 5;
  static constexpr uint64_t kRegMsr = 6;
  static constexpr uint64_t kRegScr = 7;
  static constexpr uint64_t kRegisterCount = 8;

  static constexpr uint8_t kIerRxData = 0x01;
  static constexpr uint8_t kIerThrEmpty = 0x02;
  static constexpr uint8_t kIirNoInterrupt = 0x01;
  static constexpr uint8_t kIirThrEmpty = 0x02;
  static constexpr uint8_t kIirRxData = 0x04;
  static constexpr uint8_t kIirFifoEnabled = 0xc0;
  static constexpr uint8_t kFcrEnableFifo = 0x01;
  static constexpr uint8_t kFcrClearRx = 0x02;
  static constexpr uint8_t kLcrDlab = 0x80;
  static constexpr uint8_t kMcrLoopback = 0x10;
  static constexpr uint8_t kLsrDataReady = 0x01;
  static constexpr uint8_t kLsrThrEmpty = 0x20;
  static constexpr uint8_t kLsrTransmitterEmpty = 0x40;
  static constexpr size_t kInputCapacity = 1024;

  using Sink = std::function<void(uint8_t)>;

  // `irq` must outlive the device. An empty `sink` discards output.
  Serial(virtio::IrqLine& irq, Sink sink);

  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // Host input for the guest. Queues as many bytes as fit and returns that count.
  size_t enqueue_input(std::span<const uint8_t> bytes) override;
  size_t input_space() const override;

 private:
  uint8_t read_register(uint64_t offset);               // mutex held
  bool write_register(uint64_t offset, uint8_t value);  // mutex held; true: raise the IRQ
  bool rx_interrupt_pending() const;
  bool thr_interrupt_pending() const;
  bool push_rx(uint8_t byte);  // mutex held; true: raise the IRQ

  virtio::IrqLine& irq_;
  const Sink sink_;
  mutable std::mutex mutex_;
  std::deque<uint8_t> rx_;
  uint8_t ier_ = 0;
  uint8_t lcr_ = 0x03;  // 8N1
  uint8_t mcr_ = 0x08;  // OUT2
  uint8_t scr_ = 0;
  uint8_t fcr_ = 0;
  uint8_t dll_ = 0x0c;  // 9600 baud
  uint8_t dlm_ = 0;
  bool thr_empty_pending_ = false;  // "THR empty" interrupt not yet acknowledged
};

}  // namespace minivmm::devices
