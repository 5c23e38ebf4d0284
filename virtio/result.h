// Error values of the virtio library and a small Result type: guest-caused failures are
// values, never exceptions (DESIGN.md "Style").
#pragma once

#include <cstdint>
#include <utility>
#include <variant>

namespace minivmm::virtio {

enum class Error : uint8_t {
  kGuestMemory,            // an address range is not backed by guest RAM
  kQueueNotReady,          // the queue is not enabled or failed its activation check
  kAvailIndexTooFar,       // avail->idx moved more than the queue size past our position
  kInvalidHead,            // an avail ring entry names a descriptor >= queue size
  kInvalidNext,            // a descriptor's next field is >= the table size
  kChainTooLong,           // more descriptors than the table holds: a loop
  kIndirectNotNegotiated,  // VIRTQ_DESC_F_INDIRECT without VIRTIO_F_INDIRECT_DESC
  kNestedIndirect,         // an indirect descriptor inside an indirect table
  kIndirectWithNext,       // INDIRECT and NEXT together (virtio 1.2 §2.7.5.3.1)
  kInvalidIndirectLength,  // indirect table length 0, not a multiple of 16, or > 65535 entries
  kAddressOverflow,        // addr + len wraps around 2^64
  kLengthOverflow,         // the chain's lengths add up past 2^32 - 1
  kReadableAfterWritable,  // a device-readable descriptor after a writable one (§2.7.4.2)
  kHeadInFlight,           // the driver made a head available again before it was used
  kInvalidUsedHead,        // add_used with a head that is out of range or not in flight
  kShortBuffer,            // a reader or writer ran out of descriptor space
};

const char* to_string(Error error);

// A value or an Error. Deliberately small: has_value / value / error, like std::expected.
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T&& value) : data_(std::in_place_index<0>, std::move(value)) {}  // NOLINT
  Result(const T& value) : data_(std::in_place_index<0>, value) {}        // NOLINT
  Result(Error error) : data_(std::in_place_index<1>, error) {}           // NOLINT
  // Constructs the value in place (no move): Result<T>(std::in_place, args...).
  template <typename... Args>
  explicit Result(std::in_place_t, Args&&... args)
      : data_(std::in_place_index<0>, std::forward<Args>(args)...) {}

  bool has_value() const { return data_.index() == 0; }
  explicit operator bool() const { return has_value(); }
  T& value() & { return std::get<0>(data_); }
  const T& value() const& { return std::get<0>(data_); }
  T&& value() && { return std::get<0>(std::move(data_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  Error error() const { return std::get<1>(data_); }

 private:
  std::variant<T, Error> data_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  Result(Error error) : error_(error), ok_(false) {}  // NOLINT(google-explicit-constructor)

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  Error error() const { return error_; }

 private:
  Error error_{};
  bool ok_ = true;
};

}  // namespace minivmm::virtio
