#include "virtio/descriptor_chain.h"

#include <algorithm>
#include <cstring>
#include <limits>

namespace minivmm::virtio {

DescriptorChain DescriptorChain::invalid(uint16_t head, Error error) {
  DescriptorChain chain;
  chain.head_ = head;
  chain.error_ = error;
  return chain;
}

DescriptorChain& DescriptorChain::operator=(DescriptorChain&& other) noexcept {
  if (this == &other) return *this;
  heap_ = std::move(other.heap_);
  // A fixed-size copy of the whole array compiles to a few vector moves; copying just
  // count_ entries costs a call to memmove.
  if (heap_.empty()) inline_ = other.inline_;
  count_ = other.count_;
  first_writable_ = other.first_writable_;
  readable_bytes_ = other.readable_bytes_;
  writable_bytes_ = other.writable_bytes_;
  head_ = other.head_;
  owned_ = other.owned_;
  error_ = other.error_;
  // Leave the source empty and not returnable, so that a use after move is harmless.
  other.count_ = other.first_writable_ = 0;
  other.readable_bytes_ = other.writable_bytes_ = 0;
  other.owned_ = false;
  return *this;
}

void DescriptorChain::push_slow(const Descriptor& d) {
  if (heap_.empty()) heap_.assign(inline_.begin(), inline_.end());
  heap_.push_back(d);
}

DescriptorChain::DescriptorChain(const GuestMemory& mem, uint64_t desc_table, uint16_t queue_size,
                                 uint16_t head, bool indirect_allowed)
    : head_(head) {
  std::optional<Error> error = head >= queue_size
                                   ? Error::kInvalidHead
                                   : walk(mem, desc_table, queue_size, indirect_allowed);
  if (error) {
    count_ = 0;
    first_writable_ = 0;
    readable_bytes_ = writable_bytes_ = 0;
    heap_.clear();
    error_ = error;
  }
  owned_ = head < queue_size;
}

// virtio 1.2 §2.7.5 (descriptor table), §2.7.5.3 (indirect descriptors), §2.7.4.2
// (readable before writable).
std::optional<Error> DescriptorChain::walk(const GuestMemory& mem, uint64_t desc_table,
                                           uint16_t queue_size, bool indirect_allowed) {
  // Each table is translated once, with its full length (the checked accessor), and the
  // descriptors are copied out of it; a table not wholly in RAM fails as kGuestMemory.
  const uint8_t* table = mem.translate(desc_table, desc_table_bytes(queue_size));
  if (table == nullptr) return Error::kGuestMemory;
  uint32_t table_size = queue_size;
  uint32_t index = head_;
  // Each table can contribute at most its own size in descriptors: one more is a loop.
  uint32_t ttl = table_size;
  bool in_indirect = false;
  bool seen_writable = false;
  // Accumulated in locals and stored once at the end: this loop is the hot path of a pop.
  size_t count = 0;
  uint64_t readable = 0;  // both sums stay <= 2^32 - 1, checked per descriptor
  uint64_t writable = 0;

  while (true) {
    if (ttl == 0) return Error::kChainTooLong;
    --ttl;
    VirtqDesc d;
    std::memcpy(&d, table + uint64_t{index} * sizeof(VirtqDesc), sizeof(d));

    if (d.flags & kVirtqDescFIndirect) {
      if (!indirect_allowed) return Error::kIndirectNotNegotiated;
      if (in_indirect) return Error::kNestedIndirect;
      if (d.flags & kVirtqDescFNext) return Error::kIndirectWithNext;
      if (d.len == 0 || d.len % sizeof(VirtqDesc) != 0 ||
          d.len / sizeof(VirtqDesc) > kMaxIndirectEntries) {
        return Error::kInvalidIndirectLength;
      }
      if (d.addr + d.len < d.addr) return Error::kAddressOverflow;
      table = mem.translate(d.addr, d.len);
      if (table == nullptr) return Error::kGuestMemory;
      table_size = static_cast<uint32_t>(d.len / sizeof(VirtqDesc));
      ttl = table_size;
      index = 0;
      in_indirect = true;
      continue;
    }

    if (d.len != 0 && d.addr + d.len - 1 < d.addr) return Error::kAddressOverflow;
    const bool write_only = (d.flags & kVirtqDescFWrite) != 0;
    if (write_only) {
      if (!seen_writable) first_writable_ = count;
      seen_writable = true;
      writable += d.len;
    } else {
      if (seen_writable) return Error::kReadableAfterWritable;
      readable += d.len;
    }
    if (readable + writable > std::numeric_limits<uint32_t>::max()) return Error::kLengthOverflow;
    // virtio 1.2 §2.7.5.3.1: no chain longer than the queue size, indirect tables
    // included. (The per-table TTL above catches loops; this caps the work per chain.)
    if (count == queue_size) return Error::kChainTooLong;
    if (count < kInline) {
      inline_[count] = Descriptor{d.addr, d.len, write_only};
    } else {
      push_slow(Descriptor{d.addr, d.len, write_only});
    }
    ++count;

    if (!(d.flags & kVirtqDescFNext)) break;
    if (d.next >= table_size) return Error::kInvalidNext;
    index = d.next;
  }
  count_ = count;
  if (!seen_writable) first_writable_ = count;
  readable_bytes_ = static_cast<uint32_t>(readable);
  writable_bytes_ = static_cast<uint32_t>(writable);
  return std::nullopt;
}

BufferCursor::BufferCursor(const GuestMemory& mem, std::span<const Descriptor> buffers)
    : mem_(&mem), buffers_(buffers) {
  for (const Descriptor& d : buffers_) remaining_ += d.len;
}

template <typename Fn>
Result<void> BufferCursor::walk(uint64_t len, Fn&& fn) {
  if (len > remaining_) return Error::kShortBuffer;
  uint64_t done = 0;
  while (done < len) {
    const Descriptor& d = buffers_[index_];
    const uint64_t piece = std::min<uint64_t>(d.len - offset_, len - done);
    if (piece > 0 && !fn(d.addr + offset_, done, piece)) return Error::kGuestMemory;
    done += piece;
    offset_ += static_cast<uint32_t>(piece);
    remaining_ -= piece;
    if (offset_ == d.len) {
      ++index_;
      offset_ = 0;
    }
  }
  return {};
}

Result<void> BufferCursor::read(std::span<uint8_t> out) {
  return walk(out.size(), [&](uint64_t addr, uint64_t done, uint64_t piece) {
    return mem_->read(addr, out.subspan(done, piece));
  });
}

Result<void> BufferCursor::write(std::span<const uint8_t> in) {
  return walk(in.size(), [&](uint64_t addr, uint64_t done, uint64_t piece) {
    return mem_->write(addr, in.subspan(done, piece));
  });
}

Result<void> BufferCursor::skip(uint64_t len) {
  return walk(len,
              [&](uint64_t addr, uint64_t, uint64_t piece) { return mem_->contains(addr, piece); });
}

}  // namespace minivmm::virtio
