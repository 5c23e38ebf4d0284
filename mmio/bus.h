// Bus: one guest address space (MMIO, or port I/O) as a set of disjoint ranges, each
// handled by a BusDevice. The vCPU exit handler turns a KVM_EXIT_MMIO / KVM_EXIT_IO into
// one read() or write() here.
//
// Threads: the main thread inserts every range before the vCPUs start; after that the Bus
// is never modified and read() / write() are called concurrently from all vCPU threads
// without a lock (const after setup; the thread start is the happens-before edge). Devices
// are reached from several vCPUs at once and serialise themselves.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>

namespace minivmm::mmio {

// A device reachable through a Bus. `offset` is relative to the base of the range the
// device was inserted at; the Bus guarantees [offset, offset + data.size()) lies inside
// that range. Called from vCPU threads, possibly several at once.
class BusDevice {
 public:
  virtual ~BusDevice() = default;
  virtual void read(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write(uint64_t offset, std::span<const uint8_t> data) = 0;
};

class Bus {
 public:
  // Maps [base, base + len) to `device`. False, and nothing inserted, when the range is
  // empty, wraps past 2^64 (a range ending exactly at 2^64 is fine), overlaps an existing
  // range, or `device` is null. One device may be inserted at several ranges.
  bool insert(uint64_t base, uint64_t len, std::shared_ptr<BusDevice> device);

  // Dispatches an access to the device whose range covers all of [addr, addr + size).
  // False when no single range does (or the access is empty): reads then fill `data`
  // with 0xff, the value of an unbacked bus; writes are dropped.
  bool read(uint64_t addr, std::span<uint8_t> data) const;
  bool write(uint64_t addr, std::span<const uint8_t> data) const;

  size_t size() const { return ranges_.size(); }

 private:
  struct Range {
    uint64_t last;  // inclusive, so that a range may end at 2^64
    std::shared_ptr<BusDevice> device;
  };
  struct Hit {
    BusDevice* device;
    uint64_t offset;
  };
  // The device and offset for an access of `size` bytes at `addr`, or device == nullptr.
  Hit lookup(uint64_t addr, uint64_t size) const;

  std::map<uint64_t, Range> ranges_;  // keyed by base
};

}  // namespace minivmm::mmio
