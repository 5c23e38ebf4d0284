#include "devices/serial.h"

#include <algorithm>

namespace minivmm::devices {

Serial::Serial(virtio::IrqLine& irq, Sink sink) : irq_(irq), sink_(std::move(sink)) {}

void Serial::read(uint64_t offset, std::span<uint8_t> data) {
  if (data.empty()) return;
  std::lock_guard lock(mutex_);
  // Byte-wide registers: a wider access reads the register at `offset` in its low byte.
  std::fill(data.begin(), data.end(), uint8_t{0});
  data[0] = offset < kRegisterCount ? read_register(offset) : uint8_t{0xff};
}

void Serial::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.empty() || offset >= kRegisterCount) return;
  bool raise;
  {
    std::lock_guard lock(mutex_);
    raise = write_register(offset, data[0]);
  }
  if (raise) irq_.trigger();
}

size_t Serial::enqueue_input(std::span<const uint8_t> bytes) {
  size_t queued = 0;
  bool raise = false;
  {
    std::lock_guard lock(mutex_);
    // In loopback mode the line is disconnected from the outside world (16550A MCR bit 4).
    if (mcr_ & kMcrLoopback) return bytes.size();
    for (uint8_t b : bytes) {
      if (rx_.size() >= kInputCapacity) break;
      raise |= push_rx(b);
      ++queued;
    }
  }
  if (raise) irq_.trigger();
  return queued;
}

size_t Serial::input_space() const {
  std::lock_guard lock(mutex_);
  return kInputCapacity - rx_.size();
}

bool Serial::rx_interrupt_pending() const {
  return (ier_ & kIerRxData) && !rx_.empty();
}

bool Serial::thr_interrupt_pending() const {
  return (ier_ & kIerThrEmpty) && thr_empty_pending_;
}

bool Serial::push_rx(uint8_t byte) {
  const bool was_pending = rx_interrupt_pending();
  rx_.push_back(byte);
  return !was_pending && rx_interrupt_pending();
}

uint8_t Serial::read_register(uint64_t offset) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kRegData: {
      if (dlab) return dll_;
      if (rx_.empty()) return 0;
      const uint8_t byte = rx_.front();
      rx_.pop_front();
      return byte;
    }
    case kRegIer:
      return dlab ? dlm_ : ier_;
    case kRegIir: {
      const uint8_t fifo = (fcr_ & kFcrEnableFifo) ? kIirFifoEnabled : 0;
      // Priority (16550A datasheet, IIR table): received data before THR empty.
      if (rx_interrupt_pending()) return fifo | kIirRxData;
      if (thr_interrupt_pending()) {
        thr_empty_pending_ = false;  // reading IIR with this source clears it
        return fifo | kIirThrEmpty;
      }
      return fifo | kIirNoInterrupt;
    }
    case kRegLcr:
      return lcr_;
    case kRegMcr:
      return mcr_;
    case kRegLsr:
      return static_cast<uint8_t>((rx_.empty() ? 0 : kLsrDataReady) | kLsrThrEmpty |
                                  kLsrTransmitterEmpty);
    case kRegMsr:
      if (mcr_ & kMcrLoopback) {
        // Loopback: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return static_cast<uint8_t>(((mcr_ & 0x01) << 5) | ((mcr_ & 0x02) << 3) |
                                    ((mcr_ & 0x04) << 4) | ((mcr_ & 0x08) << 4));
      }
      return 0xb0;  // DCD, DSR, CTS: a connected line
    case kRegScr:
      return scr_;
    default:
      return 0xff;
  }
}

bool Serial::write_register(uint64_t offset, uint8_t value) {
  const bool dlab = (lcr_ & kLcrDlab) != 0;
  switch (offset) {
    case kRegData:
      if (dlab) {
        dll_ = value;
        return false;
      }
      if (mcr_ & kMcrLoopback) {
        // The byte comes back as input, which has room for kInputCapacity bytes like host
        // input; into a full FIFO it is lost (a 16550A's overrun), so that a guest cannot
        // grow the queue without bound by looping bytes back without reading them.
        if (rx_.size() < kInputCapacity) push_rx(value);
      } else if (sink_) {
        sink_(value);
      }
      // The byte left at once: THR is empty again.
      thr_empty_pending_ = true;
      return rx_interrupt_pending() || thr_interrupt_pending();
    case kRegIer: {
      if (dlab) {
        dlm_ = value;
        return false;
      }
      const bool thre_was_enabled = (ier_ & kIerThrEmpty) != 0;
      ier_ = value & 0x0f;
      // Enabling the THR-empty interrupt while THR is empty raises it at once (Linux's
      // serial8250 relies on this to start transmission).
      if (!thre_was_enabled && (ier_ & kIerThrEmpty)) thr_empty_pending_ = true;
      return rx_interrupt_pending() || thr_interrupt_pending();
    }
    case kRegIir:  // FCR
      fcr_ = value & kFcrEnableFifo;
      if (value & kFcrClearRx) rx_.clear();
      return false;
    case kRegLcr:
      lcr_ = value;
      return false;
    case kRegMcr:
      mcr_ = value & 0x1f;
      return false;
    case kRegScr:
      scr_ = value;
      return false;
    default:  // LSR and MSR writes are ignored (factory test only)
      return false;
  }
}

}  // namespace minivmm::devices
