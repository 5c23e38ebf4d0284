#include "virtio/descriptor_chain.h"

#include <limits>

namespace minivmm::virtio {

DescriptorChain DescriptorChain::invalid(uint16_t head, Error error) {
  DescriptorChain chain;
  chain.head_ = head;
  chain.error_ = error;
  return chain;
}

void DescriptorChain::push(const Descriptor& d) {
  if (count_ < kInline) {
    inline_[count_] = d;
  } else {
    if (heap_.empty()) heap_.assign(inline_.begin(), inline_.end());
    heap_.push_back(d);
  }
  ++count_;
}

// virtio 1.2 §2.7.5 (descriptor table), §2.7.5.3 (indirect descriptors), §2.7.4.2
// (readable before writable).
DescriptorChain DescriptorChain::parse(const GuestMemory& mem, uint64_t desc_table,
                                       uint16_t queue_size, uint16_t head, bool indirect_allowed) {
  if (head >= queue_size) return invalid(head, Error::kInvalidHead);

  DescriptorChain chain;
  chain.head_ = head;
  chain.owned_ = true;
  auto fail = [&chain](Error e) -> DescriptorChain {
    chain.count_ = 0;
    chain.first_writable_ = 0;
    chain.readable_bytes_ = chain.writable_bytes_ = 0;
    chain.heap_.clear();
    chain.error_ = e;
    return std::move(chain);
  };

  uint64_t table = desc_table;
  uint32_t table_size = queue_size;
  uint32_t index = head;
  // Each table can contribute at most its own size in descriptors: one more is a loop.
  uint32_t ttl = table_size;
  bool in_indirect = false;
  bool seen_writable = false;
  uint64_t total = 0;

  while (true) {
    if (ttl == 0) return fail(Error::kChainTooLong);
    --ttl;
    // index < table_size <= 65535, so this cannot overflow; the read checks the range.
    auto raw = mem.read_obj<VirtqDesc>(table + uint64_t{index} * sizeof(VirtqDesc));
    if (!raw) return fail(Error::kGuestMemory);
    const VirtqDesc d = *raw;

    if (d.flags & kVirtqDescFIndirect) {
      if (!indirect_allowed) return fail(Error::kIndirectNotNegotiated);
      if (in_indirect) return fail(Error::kNestedIndirect);
      if (d.flags & kVirtqDescFNext) return fail(Error::kIndirectWithNext);
      if (d.len == 0 || d.len % sizeof(VirtqDesc) != 0 ||
          d.len / sizeof(VirtqDesc) > kMaxIndirectEntries) {
        return fail(Error::kInvalidIndirectLength);
      }
      if (d.addr + d.len < d.addr) return fail(Error::kAddressOverflow);
      table = d.addr;
      table_size = static_cast<uint32_t>(d.len / sizeof(VirtqDesc));
      ttl = table_size;
      index = 0;
      in_indirect = true;
      continue;
    }

    if (d.len != 0 && d.addr + d.len - 1 < d.addr) return fail(Error::kAddressOverflow);
    total += d.len;
    if (total > std::numeric_limits<uint32_t>::max()) return fail(Error::kLengthOverflow);
    const bool write_only = (d.flags & kVirtqDescFWrite) != 0;
    if (write_only) {
      if (!seen_writable) chain.first_writable_ = chain.count_;
      seen_writable = true;
      chain.writable_bytes_ += d.len;
    } else {
      if (seen_writable) return fail(Error::kReadableAfterWritable);
      chain.readable_bytes_ += d.len;
    }
    chain.push(Descriptor{d.addr, d.len, write_only});

    if (!(d.flags & kVirtqDescFNext)) break;
    if (d.next >= table_size) return fail(Error::kInvalidNext);
    index = d.next;
  }
  if (!seen_writable) chain.first_writable_ = chain.count_;
  return chain;
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
  return walk(len, [&](uint64_t addr, uint64_t, uint64_t piece) {
    return mem_->contains(addr, piece);
  });
}

}  // namespace minivmm::virtio
