// DescriptorChain: one validated chain of descriptors that the driver made available,
// plus ChainReader / ChainWriter that copy bytes across its buffers.
//
// A chain is walked and validated once, when it is popped from the avail ring
// (virtio 1.2 §2.7.5, §2.7.5.3): indices in range, a TTL so that loops end, indirect
// tables only when negotiated, never nested, a whole number of descriptors and at most
// 65535 of them, no address range that wraps, total length within 32 bits, and
// device-readable buffers before device-writable ones. Buffer addresses themselves are
// checked on access (ChainReader / ChainWriter / GuestMemory), so that a device can still
// write a status byte when a data buffer points outside RAM.
//
// A chain that fails validation still carries its head index (when that is in range),
// because the device must return it to the used ring. Move-only; used by the thread
// that processes the queue.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "virtio/guest_memory.h"
#include "virtio/error.h"
#include "virtio/spec.h"

namespace minivmm::virtio {

// One buffer of a chain, as the device sees it.
// (No default member initialisers: chains keep an uninitialised inline array of these.)
struct Descriptor {
  uint64_t addr;
  uint32_t len;
  bool write_only;  // VIRTQ_DESC_F_WRITE: the device writes, the driver reads
};

// The most entries an indirect table may have (virtio 1.2 §2.7.5.3.1: len/16 fits in le16).
inline constexpr uint32_t kMaxIndirectEntries = 65535;

class DescriptorChain {
 public:
  // Walks the chain whose head is `head` in the descriptor table at `desc_table` of a queue
  // with `queue_size` entries. Never fails outright: an invalid chain reports error().
  // (A constructor, so that Queue::pop can build the chain in place in its result.)
  DescriptorChain(const GuestMemory& mem, uint64_t desc_table, uint16_t queue_size, uint16_t head,
                  bool indirect_allowed);

  // A chain that could not be walked at all (its head was unreadable or out of range).
  static DescriptorChain invalid(uint16_t head, Error error);

  // Moves copy only the descriptors in use, not the whole inline array: chains are moved
  // a few times on the way out of Queue::pop, which is the hot path.
  DescriptorChain(DescriptorChain&& other) noexcept { *this = std::move(other); }
  DescriptorChain& operator=(DescriptorChain&& other) noexcept;
  DescriptorChain(const DescriptorChain&) = delete;
  DescriptorChain& operator=(const DescriptorChain&) = delete;

  uint16_t head_index() const { return head_; }
  bool is_valid() const { return !error_.has_value(); }
  // True when the device owns this head and must return it with Queue::add_used, valid or
  // not. False for a head that was out of range, unreadable or already in flight: those
  // mean the driver broke the queue, and the device should ask for a reset
  // (DEVICE_NEEDS_RESET) instead of touching the used ring for it.
  bool must_be_used() const { return owned_; }
  std::optional<Error> error() const { return error_; }

  // All descriptors in order (empty for an invalid chain).
  std::span<const Descriptor> iter() const { return all().first(count_); }
  // The device-readable prefix and the device-writable suffix.
  std::span<const Descriptor> readable() const { return all().first(first_writable_); }
  std::span<const Descriptor> writable() const {
    return all().subspan(first_writable_, count_ - first_writable_);
  }
  uint32_t readable_bytes() const { return readable_bytes_; }
  uint32_t writable_bytes() const { return writable_bytes_; }

 private:
  static constexpr size_t kInline = 8;

  DescriptorChain() = default;
  std::optional<Error> walk(const GuestMemory& mem, uint64_t desc_table, uint16_t queue_size,
                            bool indirect_allowed);
  std::span<const Descriptor> all() const {
    return heap_.empty() ? std::span<const Descriptor>(inline_)
                         : std::span<const Descriptor>(heap_);
  }
  // Appends a descriptor once the chain has outgrown inline_ (moves it to heap_ first).
  void push_slow(const Descriptor& d);

  std::array<Descriptor, kInline> inline_;  // the first count_ entries are set
  std::vector<Descriptor> heap_;            // used once a chain outgrows inline_
  size_t count_ = 0;
  size_t first_writable_ = 0;
  uint32_t readable_bytes_ = 0;
  uint32_t writable_bytes_ = 0;
  uint16_t head_ = 0;
  bool owned_ = false;
  std::optional<Error> error_;
};

// Position within a list of buffers; shared by ChainReader and ChainWriter.
class BufferCursor {
 public:
  BufferCursor(const GuestMemory& mem, std::span<const Descriptor> buffers);
  uint64_t remaining() const { return remaining_; }
  // Each call moves exactly the requested number of bytes or fails: kShortBuffer when
  // fewer remain (nothing is copied), kGuestMemory when a buffer lies outside guest RAM
  // (bytes before the bad buffer may have been copied).
  Result<void> read(std::span<uint8_t> out);
  Result<void> write(std::span<const uint8_t> in);
  Result<void> skip(uint64_t len);

 private:
  template <typename Fn>
  Result<void> walk(uint64_t len, Fn&& fn);

  const GuestMemory* mem_;
  std::span<const Descriptor> buffers_;
  size_t index_ = 0;
  uint32_t offset_ = 0;
  uint64_t remaining_ = 0;
};

// Reads the device-readable part of a chain front to back.
class ChainReader {
 public:
  ChainReader(const GuestMemory& mem, const DescriptorChain& chain)
      : cursor_(mem, chain.readable()), total_(chain.readable_bytes()) {}
  uint64_t remaining() const { return cursor_.remaining(); }
  uint64_t bytes_read() const { return total_ - cursor_.remaining(); }
  Result<void> read(std::span<uint8_t> out) { return cursor_.read(out); }
  Result<void> skip(uint64_t len) { return cursor_.skip(len); }
  template <typename T>
  Result<T> read_obj() {
    static_assert(std::is_trivially_copyable_v<T>);
    T value;
    auto r = cursor_.read(std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T)));
    if (!r) return r.error();
    return value;
  }

 private:
  BufferCursor cursor_;
  uint64_t total_;
};

// Writes the device-writable part of a chain front to back; bytes_written() is what the
// device reports as the used length.
class ChainWriter {
 public:
  ChainWriter(const GuestMemory& mem, const DescriptorChain& chain)
      : cursor_(mem, chain.writable()), total_(chain.writable_bytes()) {}
  uint64_t remaining() const { return cursor_.remaining(); }
  uint64_t bytes_written() const { return total_ - cursor_.remaining(); }
  Result<void> write(std::span<const uint8_t> in) { return cursor_.write(in); }
  Result<void> skip(uint64_t len) { return cursor_.skip(len); }
  template <typename T>
  Result<void> write_obj(const T& value) {
    static_assert(std::is_trivially_copyable_v<T>);
    return cursor_.write(std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }

 private:
  BufferCursor cursor_;
  uint64_t total_;
};

}  // namespace minivmm::virtio
