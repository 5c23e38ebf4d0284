// Error values of the virtio library: every guest-caused failure of a queue or chain is one of
// these, returned in a virtio::Result, never thrown (DESIGN.md "Style").
//
// Threads: plain values; to_string() is pure.
#pragma once

#include <cstdint>

#include "virtio/result.h"

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
  kAvailIndexMovedBack,    // re-checked after notifications were back on, avail->idx had
                           // moved, then it had not: the device's own ring writes change it
                           // (overlapping rings) or the driver rewrote it
};

const char* to_string(Error error);

// A value of type T or an Error.
template <typename T>
using Result = ::minivmm::Result<T, Error>;

}  // namespace minivmm::virtio
