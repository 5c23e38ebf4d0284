#include "virtio/error.h"

namespace minivmm::virtio {

const char* to_string(Error error) {
  switch (error) {
    case Error::kGuestMemory:
      return "address range outside guest memory";
    case Error::kQueueNotReady:
      return "queue not ready or invalid";
    case Error::kAvailIndexTooFar:
      return "avail index moved more than the queue size";
    case Error::kInvalidHead:
      return "descriptor head index out of range";
    case Error::kInvalidNext:
      return "descriptor next index out of range";
    case Error::kChainTooLong:
      return "descriptor chain loops or exceeds its table";
    case Error::kIndirectNotNegotiated:
      return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
    case Error::kNestedIndirect:
      return "indirect descriptor inside an indirect table";
    case Error::kIndirectWithNext:
      return "indirect descriptor with NEXT set";
    case Error::kInvalidIndirectLength:
      return "indirect table length invalid";
    case Error::kAddressOverflow:
      return "descriptor address range wraps";
    case Error::kLengthOverflow:
      return "descriptor chain longer than 4 GiB";
    case Error::kReadableAfterWritable:
      return "device-readable descriptor after a writable one";
    case Error::kHeadInFlight:
      return "descriptor head made available twice";
    case Error::kInvalidUsedHead:
      return "used head not in flight";
    case Error::kAvailIndexMovedBack:
      return "the avail index moved back (rings overlapping, or rewritten by the driver)";
    case Error::kShortBuffer:
      return "descriptor buffers too short";
  }
  return "unknown virtio error";
}

}  // namespace minivmm::virtio
