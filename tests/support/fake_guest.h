// Driver-side test helpers: fake guest RAM and a split virtqueue built the way a guest
// driver builds it (descriptor table, avail ring, used ring in guest memory).
// Single-threaded; tests own both sides.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "virtio/guest_memory.h"
#include "virtio/queue.h"
#include "virtio/spec.h"

namespace minivmm::test {

// Guest RAM backed by anonymous host memory. By default one region [0, size); with
// `hole` the range [hole_start, hole_end) is left unbacked, like the MMIO gap. With
// `huge_pages` the mapping is 2 MiB-aligned and advised for transparent huge pages, as
// minivmm maps guest RAM (vmm/memory.cc).
class FakeGuestMemory {
 public:
  struct Hole {
    uint64_t start;
    uint64_t end;
  };
  explicit FakeGuestMemory(uint64_t size, std::optional<Hole> hole = std::nullopt,
                           bool huge_pages = false);
  ~FakeGuestMemory();
  FakeGuestMemory(const FakeGuestMemory&) = delete;
  FakeGuestMemory& operator=(const FakeGuestMemory&) = delete;

  const virtio::GuestMemory& mem() const { return mem_; }
  uint64_t size() const { return size_; }
  // Host pointer for a guest address that the test knows is backed.
  uint8_t* host(uint64_t gpa) const;

 private:
  uint64_t size_;
  uint8_t* base_ = nullptr;  // one host mapping for [0, size), holes included
  virtio::GuestMemory mem_;
};

// One buffer of a chain as the driver describes it.
struct Buf {
  uint64_t addr;
  uint32_t len;
  bool write = false;  // device-writable
};

class DriverQueue {
 public:
  // Lays out the rings at `base` (desc table, then avail ring, then used ring aligned to 4).
  DriverQueue(FakeGuestMemory& guest, uint16_t size, uint64_t base);

  // Programs a device-side queue the way a transport would after the driver wrote the
  // registers, and marks it ready.
  void configure(virtio::Queue& queue, bool event_idx = false, bool indirect = false) const;

  // Writes descriptors for `bufs` from the next free table slot and returns the head.
  // Does not publish it.
  uint16_t add_descriptors(const std::vector<Buf>& bufs);
  // Writes an indirect table at `table_addr` holding `bufs`, and one descriptor pointing
  // at it; returns its index. Does not publish.
  uint16_t add_indirect(uint64_t table_addr, const std::vector<Buf>& bufs);
  // Raw access for hostile cases.
  void write_desc(uint16_t index, const virtio::VirtqDesc& desc);
  virtio::VirtqDesc read_desc(uint16_t index) const;
  // Puts `head` on the avail ring and bumps avail->idx.
  void publish(uint16_t head);
  // add_descriptors + publish.
  uint16_t add_chain(const std::vector<Buf>& bufs);

  void set_avail_idx(uint16_t idx);
  uint16_t avail_idx() const;
  void set_avail_flags(uint16_t flags);
  void set_used_event(uint16_t value);
  uint16_t used_flags() const;
  uint16_t avail_event() const;
  uint16_t used_idx() const;
  // Used elements the device published since the last call.
  std::vector<virtio::VirtqUsedElem> take_used();

  uint16_t size() const { return size_; }
  uint64_t desc_addr() const { return desc_; }
  uint64_t avail_addr() const { return avail_; }
  uint64_t used_addr() const { return used_; }
  uint64_t end_addr() const { return used_ + virtio::used_ring_bytes(size_); }

 private:
  FakeGuestMemory& guest_;
  uint16_t size_;
  uint64_t desc_, avail_, used_;
  uint16_t next_desc_ = 0;
  uint16_t avail_idx_ = 0;
  uint16_t last_used_ = 0;
};

}  // namespace minivmm::test
