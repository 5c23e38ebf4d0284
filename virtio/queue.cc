#include "virtio/queue.h"

#include <algorithm>
#include <atomic>
#include <bit>

namespace minivmm::virtio {

namespace {
bool is_aligned(uint64_t addr, uint64_t align) {
  return addr % align == 0;
}
}  // namespace

std::optional<DescriptorChain> AvailIter::next() {
  if (queue_->next_avail_ == last_index_) return std::nullopt;
  uint16_t head = 0;
  if (auto taken = queue_->take_head(*mem_, head); !taken) {
    return DescriptorChain::invalid(head, taken.error());
  }
  return std::optional<DescriptorChain>(std::in_place, *mem_, queue_->desc_table_, queue_->size_,
                                        head, queue_->indirect_);
}

Queue::Queue(uint16_t max_size)
    : max_size_(max_size), size_(max_size), in_flight_((max_size + 63u) / 64u, 0) {}

Result<void> Queue::validate(const GuestMemory& mem) const {
  if (!ready_ || size_ == 0 || size_ > max_size_ || !std::has_single_bit(size_)) {
    return Error::kQueueNotReady;
  }
  if (!is_aligned(desc_table_, kDescTableAlign) || !is_aligned(avail_ring_, kAvailRingAlign) ||
      !is_aligned(used_ring_, kUsedRingAlign)) {
    return Error::kQueueNotReady;
  }
  if (!mem.contains(desc_table_, desc_table_bytes(size_)) ||
      !mem.contains(avail_ring_, avail_ring_bytes(size_)) ||
      !mem.contains(used_ring_, used_ring_bytes(size_))) {
    return Error::kGuestMemory;
  }
  return {};
}

void Queue::reset() {
  size_ = max_size_;
  ready_ = false;
  desc_table_ = avail_ring_ = used_ring_ = 0;
  event_idx_ = indirect_ = false;
  next_avail_ = next_used_ = 0;
  signalled_used_.reset();
  used_since_check_ = 0;
  std::fill(in_flight_.begin(), in_flight_.end(), 0);
  in_flight_count_ = 0;
}

Result<uint16_t> Queue::avail_idx(const GuestMemory& mem) const {
  // virtio 1.2 §2.7.13.3: the driver writes ring entries, then (write barrier) avail->idx.
  // The acquire load pairs with that barrier, so entries up to idx are visible.
  auto idx = mem.load_acquire_u16(avail_ring_ + kRingIdxOffset);
  if (!idx) return Error::kGuestMemory;
  return *idx;
}

Queue::RingIndices Queue::ring_indices(const GuestMemory& mem) const {
  RingIndices r;
  r.avail = mem.read_obj<uint16_t>(avail_ring_ + kRingIdxOffset);
  r.used = mem.read_obj<uint16_t>(used_ring_ + kRingIdxOffset);
  if (event_idx_) r.used_event = mem.read_obj<uint16_t>(used_event_addr());
  return r;
}

Result<uint16_t> Queue::pending(const GuestMemory& mem) const {
  if (!ready_) return Error::kQueueNotReady;
  auto idx = avail_idx(mem);
  if (!idx) return idx.error();
  // Free-running 16-bit indices: the distance is taken modulo 2^16.
  const auto count = static_cast<uint16_t>(*idx - next_avail_);
  if (count > size_) return Error::kAvailIndexTooFar;
  return count;
}

Result<AvailIter> Queue::iter(const GuestMemory& mem) {
  auto count = pending(mem);
  if (!count) return count.error();
  return AvailIter(*this, mem, static_cast<uint16_t>(next_avail_ + *count));
}

Result<std::optional<DescriptorChain>> Queue::pop(const GuestMemory& mem) {
  auto count = pending(mem);
  if (!count) return count.error();
  if (*count == 0) return std::optional<DescriptorChain>();
  uint16_t head = 0;
  if (auto taken = take_head(mem, head); !taken) {
    return std::optional<DescriptorChain>(DescriptorChain::invalid(head, taken.error()));
  }
  // Built in place: the chain is not moved on its way out (this is the hot path).
  return Result<std::optional<DescriptorChain>>(std::in_place, std::in_place, mem, desc_table_,
                                                size_, head, indirect_);
}

Result<uint16_t> Queue::take_head(const GuestMemory& mem, uint16_t& head) {
  // size_ is a power of two, so the modulo is the ring wrap of virtio 1.2 §2.7.6.
  const uint64_t slot = next_avail_ % size_;
  ++next_avail_;
  auto entry = mem.read_obj<uint16_t>(avail_ring_ + kRingEntriesOffset + slot * kAvailEntrySize);
  head = entry.value_or(0xffff);
  if (!entry) return Error::kGuestMemory;
  if (head >= size_) return Error::kInvalidHead;
  if (test_in_flight(head)) return Error::kHeadInFlight;
  set_in_flight(head, true);
  return head;
}

bool Queue::test_in_flight(uint16_t head) const {
  return (in_flight_[head / 64u] >> (head % 64u)) & 1u;
}

void Queue::set_in_flight(uint16_t head, bool value) {
  const uint64_t bit = uint64_t{1} << (head % 64u);
  if (value) {
    in_flight_[head / 64u] |= bit;
    ++in_flight_count_;
  } else {
    in_flight_[head / 64u] &= ~bit;
    --in_flight_count_;
  }
}

Result<void> Queue::add_used(const GuestMemory& mem, uint16_t head, uint32_t len) {
  if (!ready_) return Error::kQueueNotReady;
  if (head >= size_ || !test_in_flight(head)) return Error::kInvalidUsedHead;
  const uint64_t slot = next_used_ % size_;
  const VirtqUsedElem elem{head, len};
  if (!mem.write_obj(used_ring_ + kRingEntriesOffset + slot * kUsedEntrySize, elem)) {
    return Error::kGuestMemory;
  }
  set_in_flight(head, false);
  ++next_used_;
  if (used_since_check_ < 0x10000) ++used_since_check_;  // saturates: only >= 2^16 matters
  // virtio 1.2 §2.7.8.2: the element must be visible before the new used->idx.
  if (!mem.store_release_u16(used_ring_ + kRingIdxOffset, next_used_)) return Error::kGuestMemory;
  return {};
}

Result<void> Queue::add_used_many(const GuestMemory& mem, std::span<const VirtqUsedElem> elems) {
  if (!ready_) return Error::kQueueNotReady;
  if (elems.empty()) return {};
  if (elems.size() > size_) return Error::kInvalidUsedHead;
  for (size_t i = 0; i < elems.size(); ++i) {
    const uint32_t head = elems[i].id;
    if (head >= size_ || !test_in_flight(static_cast<uint16_t>(head))) {
      return Error::kInvalidUsedHead;
    }
    for (size_t j = 0; j < i; ++j) {
      if (elems[j].id == head) return Error::kInvalidUsedHead;
    }
  }
  uint16_t used = next_used_;
  for (const VirtqUsedElem& elem : elems) {
    const uint64_t slot = used % size_;
    if (!mem.write_obj(used_ring_ + kRingEntriesOffset + slot * kUsedEntrySize, elem)) {
      return Error::kGuestMemory;
    }
    ++used;
  }
  for (const VirtqUsedElem& elem : elems) set_in_flight(static_cast<uint16_t>(elem.id), false);
  next_used_ = used;
  used_since_check_ = std::min<uint32_t>(used_since_check_ + static_cast<uint32_t>(elems.size()),
                                         0x10000);
  if (!mem.store_release_u16(used_ring_ + kRingIdxOffset, next_used_)) return Error::kGuestMemory;
  return {};
}

Result<void> Queue::undo_pop(uint16_t head) {
  if (head >= size_ || !test_in_flight(head)) return Error::kInvalidUsedHead;
  set_in_flight(head, false);
  --next_avail_;
  return {};
}

Result<bool> Queue::needs_notification(const GuestMemory& mem) {
  if (!ready_) return Error::kQueueNotReady;
  const uint16_t used = next_used_;
  const std::optional<uint16_t> old = signalled_used_;
  signalled_used_ = used;
  // 2^16 buffers or more used since the last check: `used - old` below has wrapped and
  // cannot tell whether used_event was crossed, so notify (Linux guards the same way).
  const bool wrapped = used_since_check_ >= 0x10000;
  used_since_check_ = 0;
  // Pairs with the driver's barrier between writing its flags / used_event and reading
  // used->idx: our used->idx store must be ordered before the loads below.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_idx_) {
    auto flags = mem.load_acquire_u16(avail_ring_ + kRingFlagsOffset);
    if (!flags) return Error::kGuestMemory;
    return (*flags & kVirtqAvailFNoInterrupt) == 0;
  }
  auto used_event = mem.load_acquire_u16(used_event_addr());
  if (!used_event) return Error::kGuestMemory;
  if (!old || wrapped) return true;
  // vring_need_event(): notify if used_event lies in (old, used].
  return static_cast<uint16_t>(used - *used_event - 1) < static_cast<uint16_t>(used - *old);
}

Result<bool> Queue::enable_notification(const GuestMemory& mem) {
  if (!ready_) return Error::kQueueNotReady;
  if (event_idx_) {
    if (!mem.store_release_u16(avail_event_addr(), next_avail_)) return Error::kGuestMemory;
  } else {
    if (!mem.store_release_u16(used_ring_ + kRingFlagsOffset, 0)) return Error::kGuestMemory;
  }
  // The flag / event store must be visible before we look at avail->idx again, or a
  // notification the driver suppressed because of our old value could be lost.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  auto idx = avail_idx(mem);
  if (!idx) return idx.error();
  return *idx != next_avail_;
}

Result<void> Queue::disable_notification(const GuestMemory& mem) {
  if (!ready_) return Error::kQueueNotReady;
  if (event_idx_) {
    // The driver notifies when avail->idx moves past avail_event (virtio 1.2 §2.7.10);
    // one behind what we have taken is behind anything it can still publish.
    if (!mem.store_release_u16(avail_event_addr(), static_cast<uint16_t>(next_avail_ - 1))) {
      return Error::kGuestMemory;
    }
    return {};
  }
  if (!mem.store_release_u16(used_ring_ + kRingFlagsOffset, kVirtqUsedFNoNotify)) {
    return Error::kGuestMemory;
  }
  return {};
}

}  // namespace minivmm::virtio
