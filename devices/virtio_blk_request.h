// virtio-blk wire structures (virtio 1.2 §5.2) and request parsing.
//
// `parse` is a pure validator in the shape of Firecracker's `Request::parse`: from a popped
// descriptor chain, the guest memory view and the disk's properties it produces either a
// Request ready for a backend (iovecs pointing into guest memory, zero-copy) or the status
// the device must write back. It never touches the disk and never writes guest memory.
//
// Framing: virtio 1.2 §2.6.4 says a device must not assume a particular arrangement of
// descriptors, so a request is read as two byte streams: the device-readable part is the
// 16-byte header followed by the driver's data (OUT, DISCARD, WRITE_ZEROES); the
// device-writable part is the device's data (IN, GET_ID) followed by the 1-byte status,
// which is always the last writable byte (virtio 1.2 §5.2.6).
//
// Threads: pure functions; called on the device's I/O thread, by tests and by the fuzzer.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <vector>

#include "virtio/descriptor_chain.h"
#include "virtio/guest_memory.h"

namespace minivmm::devices {

inline constexpr uint64_t kSectorSize = 512;
inline constexpr unsigned kSectorShift = 9;

// virtio 1.2 §5.2.3 feature bits.
inline constexpr unsigned kBlkFSizeMax = 1;
inline constexpr unsigned kBlkFSegMax = 2;
inline constexpr unsigned kBlkFGeometry = 4;
inline constexpr unsigned kBlkFRo = 5;
inline constexpr unsigned kBlkFBlkSize = 6;
inline constexpr unsigned kBlkFFlush = 9;
inline constexpr unsigned kBlkFTopology = 10;
inline constexpr unsigned kBlkFConfigWce = 11;
inline constexpr unsigned kBlkFMq = 12;
inline constexpr unsigned kBlkFDiscard = 13;
inline constexpr unsigned kBlkFWriteZeroes = 14;

// virtio 1.2 §5.2.6 request types.
inline constexpr uint32_t kBlkTIn = 0;
inline constexpr uint32_t kBlkTOut = 1;
inline constexpr uint32_t kBlkTFlush = 4;
inline constexpr uint32_t kBlkTGetId = 8;
inline constexpr uint32_t kBlkTGetLifetime = 10;
inline constexpr uint32_t kBlkTDiscard = 11;
inline constexpr uint32_t kBlkTWriteZeroes = 13;
inline constexpr uint32_t kBlkTSecureErase = 14;

// virtio 1.2 §5.2.6 status values.
inline constexpr uint8_t kBlkSOk = 0;
inline constexpr uint8_t kBlkSIoErr = 1;
inline constexpr uint8_t kBlkSUnsupp = 2;

// virtio 1.2 §5.2.6: GET_ID writes a 20-byte serial, NUL-padded.
inline constexpr uint32_t kBlkIdBytes = 20;

// virtio 1.2 §5.2.6 "struct virtio_blk_req": the device-readable header.
struct VirtioBlkReqHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(VirtioBlkReqHeader) == 16);
static_assert(offsetof(VirtioBlkReqHeader, type) == 0);
static_assert(offsetof(VirtioBlkReqHeader, reserved) == 4);
static_assert(offsetof(VirtioBlkReqHeader, sector) == 8);
static_assert(std::is_trivially_copyable_v<VirtioBlkReqHeader>);

// virtio 1.2 §5.2.6 "struct virtio_blk_discard_write_zeroes": one segment.
struct VirtioBlkDiscardWriteZeroes {
  uint64_t sector;
  uint32_t num_sectors;
  uint32_t flags;  // bit 0: unmap; the rest reserved
};
static_assert(sizeof(VirtioBlkDiscardWriteZeroes) == 16);
static_assert(offsetof(VirtioBlkDiscardWriteZeroes, sector) == 0);
static_assert(offsetof(VirtioBlkDiscardWriteZeroes, num_sectors) == 8);
static_assert(offsetof(VirtioBlkDiscardWriteZeroes, flags) == 12);
static_assert(std::is_trivially_copyable_v<VirtioBlkDiscardWriteZeroes>);
inline constexpr uint32_t kBlkDwzFUnmap = 1;

// What parse needs to know about the disk and the negotiated features.
struct DiskProperties {
  uint64_t capacity_sectors = 0;
  bool read_only = false;
  bool discard = false;       // VIRTIO_BLK_F_DISCARD negotiated
  bool write_zeroes = false;  // VIRTIO_BLK_F_WRITE_ZEROES negotiated
  uint32_t max_discard_sectors = 0;
  uint32_t max_discard_seg = 0;
  uint32_t max_write_zeroes_sectors = 0;
  uint32_t max_write_zeroes_seg = 0;
  // The most data buffers one request may have (IOV_MAX for preadv / io_uring readv).
  uint32_t max_iovecs = 1024;
};

enum class RequestType : uint8_t { kIn, kOut, kFlush, kGetId, kDiscard, kWriteZeroes };

// One discard / write-zeroes range, already bounds-checked, in sectors.
struct Segment {
  uint64_t sector = 0;
  uint32_t num_sectors = 0;
  bool unmap = false;
};

// A validated request. `iov` points into guest memory (IN / GET_ID: writable buffers,
// OUT: readable buffers after the header); `status` is the host address of the status byte.
struct Request {
  RequestType type = RequestType::kIn;
  uint64_t sector = 0;
  uint64_t data_len = 0;  // bytes in iov
  std::vector<iovec> iov;
  std::vector<Segment> segments;
  uint8_t* status = nullptr;
};

// The outcome of parsing: kBlkSOk with a Request filled in, or the status to report.
// `status` is set whenever the status byte is reachable, even on failure; when it is null
// the chain must still go back to the used ring (with length 0).
struct ParseOutcome {
  uint8_t status = kBlkSIoErr;
  uint8_t* status_ptr = nullptr;
};

// Parses into `out`, reusing its vectors' capacity (the I/O thread's hot path).
ParseOutcome parse_into(const virtio::DescriptorChain& chain, const virtio::GuestMemory& mem,
                        const DiskProperties& props, Request& out);

// A Request, or the status to write (and where).
struct ParseResult {
  ParseOutcome outcome;
  Request request;  // meaningful when outcome.status == kBlkSOk
  bool ok() const { return outcome.status == kBlkSOk; }
};
ParseResult parse(const virtio::DescriptorChain& chain, const virtio::GuestMemory& mem,
                  const DiskProperties& props);

// Writes the 20-byte GET_ID answer for `serial` (truncated, NUL-padded) to `iov`.
// Returns the bytes written.
uint32_t write_serial(const std::vector<iovec>& iov, const char* serial, size_t serial_len);

}  // namespace minivmm::devices
