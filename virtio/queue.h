// Queue: the device side of one split virtqueue (virtio 1.2 §2.7), in the shape of
// rust-vmm's virtio-queue: the transport sets the registers, the device pops descriptor
// chains with `iter` / `pop` and returns them with `add_used`.
//
// Threads: the transport (vCPU thread) writes the registers only while the device is not
// live (before DRIVER_OK, or after reset() returned); from activation until reset the
// device's I/O thread is the only user. Activation and reset are the hand-over points
// and provide the happens-before edges, so the Queue needs no lock of its own.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "virtio/descriptor_chain.h"
#include "virtio/guest_memory.h"
#include "virtio/error.h"

namespace minivmm::virtio {

class Queue;

// Chains made available between the last position and the avail index read when the
// iterator was made. Popping advances the queue, so an iterator is single-pass.
class AvailIter {
 public:
  // The next chain, or nullopt when the snapshot is exhausted.
  std::optional<DescriptorChain> next();

  // Range-for support: `for (DescriptorChain chain : *queue.iter(mem))`.
  class Iterator {
   public:
    explicit Iterator(AvailIter* owner) : owner_(owner) { advance(); }
    Iterator() = default;
    DescriptorChain& operator*() { return *current_; }
    Iterator& operator++() {
      advance();
      return *this;
    }
    bool operator==(const Iterator& other) const { return done() == other.done(); }

   private:
    bool done() const { return !current_.has_value(); }
    void advance() { current_ = owner_->next(); }
    AvailIter* owner_ = nullptr;
    std::optional<DescriptorChain> current_;
  };
  Iterator begin() { return Iterator(this); }
  Iterator end() { return Iterator(); }

 private:
  friend class Queue;
  AvailIter(Queue& queue, const GuestMemory& mem, uint16_t last_index)
      : queue_(&queue), mem_(&mem), last_index_(last_index) {}
  Queue* queue_;
  const GuestMemory* mem_;
  uint16_t last_index_;
};

class Queue {
 public:
  explicit Queue(uint16_t max_size);

  // ---- Transport side: the registers of virtio 1.2 §4.2.2 ----
  uint16_t max_size() const { return max_size_; }
  uint16_t size() const { return size_; }
  void set_size(uint16_t size) { size_ = size; }
  bool ready() const { return ready_; }
  void set_ready(bool ready) { ready_ = ready; }
  uint64_t desc_table() const { return desc_table_; }
  void set_desc_table(uint64_t addr) { desc_table_ = addr; }
  uint64_t avail_ring() const { return avail_ring_; }  // the "driver area"
  void set_avail_ring(uint64_t addr) { avail_ring_ = addr; }
  uint64_t used_ring() const { return used_ring_; }  // the "device area"
  void set_used_ring(uint64_t addr) { used_ring_ = addr; }
  // Negotiated features that change the ring protocol; set before activation.
  void set_event_idx(bool enabled) { event_idx_ = enabled; }
  void set_indirect(bool enabled) { indirect_ = enabled; }
  bool event_idx() const { return event_idx_; }

  // The activation check: ready, size a power of two in [1, max_size], rings aligned
  // (16 / 2 / 4) and wholly inside guest RAM (virtio 1.2 §2.7.10.1, §4.2.3.2).
  Result<void> validate(const GuestMemory& mem) const;
  bool is_valid(const GuestMemory& mem) const { return validate(mem).has_value(); }

  // Back to the state after construction (virtio 1.2 §2.4: on reset queues are disabled
  // and their registers cleared); max_size is kept.
  void reset();

  // ---- Device side ----
  // Snapshot of the chains the driver made available. kAvailIndexTooFar when avail->idx
  // claims more than `size` new entries (the queue is then broken: DEVICE_NEEDS_RESET).
  Result<AvailIter> iter(const GuestMemory& mem);
  // The next available chain, or nullopt when there is none.
  Result<std::optional<DescriptorChain>> pop(const GuestMemory& mem);

  // Puts `head` on the used ring with `len` bytes written and publishes used->idx.
  // kInvalidUsedHead when `head` was not popped (or was already used).
  Result<void> add_used(const GuestMemory& mem, uint16_t head, uint32_t len);
  // Puts every element on the used ring, then publishes used->idx once: a driver that
  // reads one of them sees them all (a merged receive buffer, virtio 1.2 §5.1.6.4.2, must
  // not be seen in part). kInvalidUsedHead, before anything is written, when a head was not
  // popped or appears twice.
  Result<void> add_used_many(const GuestMemory& mem, std::span<const VirtqUsedElem> elems);
  // Gives back the chain popped last (its head), unused: the next pop returns it again. For
  // a device that took more chains than it could fill (a receive buffer too small) and
  // wants to leave them to the driver untouched. kInvalidUsedHead when `head` is not in
  // flight.
  Result<void> undo_pop(uint16_t head);

  // Whether the driver wants an interrupt for the buffers used since the previous call (virtio 1.2
  // §2.7.7.2 without, §2.7.10 with VIRTIO_F_EVENT_IDX).
  Result<bool> needs_notification(const GuestMemory& mem);
  // Asks the driver to notify again; returns true when more chains arrived meanwhile, in
  // which case the device must process them (virtio 1.2 §2.7.7.1, §2.7.10).
  Result<bool> enable_notification(const GuestMemory& mem);
  // Asks the driver not to notify (a hint; it is free to ignore it).
  Result<void> disable_notification(const GuestMemory& mem);

  // How many chains the driver made available past next_avail_ (checked against size).
  Result<uint16_t> pending(const GuestMemory& mem) const;

  // The ring's indices as guest memory holds them now, for diagnostics (the VMM's log when a
  // guest is stopped from outside): avail->idx, used->idx and, with EVENT_IDX, used_event.
  // Each is nullopt when it cannot be read (or, for used_event, without EVENT_IDX).
  struct RingIndices {
    std::optional<uint16_t> avail, used, used_event;
  };
  RingIndices ring_indices(const GuestMemory& mem) const;

  uint16_t next_avail() const { return next_avail_; }
  uint16_t next_used() const { return next_used_; }
  // Chains popped and not yet used.
  uint32_t in_flight() const { return in_flight_count_; }

 private:
  friend class AvailIter;
  Result<uint16_t> avail_idx(const GuestMemory& mem) const;
  // used_event lives after the avail ring's entries (virtio 1.2 §2.7.6).
  uint64_t used_event_addr() const {
    return avail_ring_ + kRingEntriesOffset + uint64_t{size_} * kAvailEntrySize;
  }
  // avail_event lives after the used ring's entries (virtio 1.2 §2.7.8).
  uint64_t avail_event_addr() const {
    return used_ring_ + kRingEntriesOffset + uint64_t{size_} * kUsedEntrySize;
  }
  // Takes the next head off the avail ring and marks it in flight; an Error (with the head,
  // where it could be read) when the head cannot be used at all.
  Result<uint16_t> take_head(const GuestMemory& mem, uint16_t& head);
  bool test_in_flight(uint16_t head) const;
  void set_in_flight(uint16_t head, bool value);

  uint16_t max_size_;
  uint16_t size_;
  bool ready_ = false;
  uint64_t desc_table_ = 0;
  uint64_t avail_ring_ = 0;
  uint64_t used_ring_ = 0;
  bool event_idx_ = false;
  bool indirect_ = false;

  uint16_t next_avail_ = 0;
  uint16_t next_used_ = 0;
  std::optional<uint16_t> signalled_used_;  // used->idx at the last needs_notification
  uint32_t used_since_check_ = 0;           // add_used calls since then
  std::vector<uint64_t> in_flight_;         // bitmap of heads popped and not yet used
  uint32_t in_flight_count_ = 0;
};

}  // namespace minivmm::virtio
