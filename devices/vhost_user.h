// VhostUserFrontend: the frontend ("master") side of the vhost-user protocol (QEMU's
// docs/interop/vhost-user.rst): messages with file descriptors over a unix stream socket,
// with which minivmm hands a virtio device's rings and guest memory to a backend process
// (virtiofsd) that then serves the queues itself.
//
// The backend is not trusted: every reply is checked -- its request code, version and reply
// flag, its payload size against what that request's reply must be, and the values in it --
// before anything in it is used; fds it attaches are closed, never used. Every wait for a
// reply has a deadline, so a stuck backend costs the caller at most `reply_timeout` per
// message, never a hang. After the first transport error (the backend closed the socket, a
// malformed reply, a deadline) the connection is broken: every later call fails at once.
// Errors are values (one line each, for the log), never exceptions.
//
// What it does not do: the backend-initiated channel (BACKEND_REQ), dirty logging,
// postcopy, inflight tracking. None is negotiated.
//
// Threads: one at a time (the VMM's main thread for the handshake, then the device's worker
// for each activation and its stop).
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <string>

#include "virtio/result.h"
#include "vmm/fd.h"

namespace minivmm::devices {

namespace vhost_user {

// Message header and payloads, as on the wire (native endian, vhost-user.rst "Message
// Specification").
struct Header {
  uint32_t request;
  uint32_t flags;
  uint32_t size;  // of the payload that follows
};
static_assert(sizeof(Header) == 12);

struct VringState {
  uint32_t index;
  uint32_t num;
};
static_assert(sizeof(VringState) == 8);

struct VringAddr {
  uint32_t index;
  uint32_t flags;
  uint64_t desc;   // frontend virtual addresses (not guest physical: vhost-user.rst
  uint64_t used;   // "Vring address description")
  uint64_t avail;
  uint64_t log;
};
static_assert(sizeof(VringAddr) == 40);

struct MemRegion {
  uint64_t guest_addr;
  uint64_t size;
  uint64_t user_addr;    // where the frontend maps it
  uint64_t mmap_offset;  // of the region in the attached fd
};
static_assert(sizeof(MemRegion) == 32);

inline constexpr uint32_t kMaxMemRegions = 8;  // VHOST_MEMORY_BASELINE_NREGIONS
struct MemTable {
  uint32_t nregions;
  uint32_t padding;
  MemRegion regions[kMaxMemRegions];
};
static_assert(sizeof(MemTable) == 8 + 8 * 32);

enum Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
};

inline constexpr uint32_t kVersion = 0x1;  // flags bits 0-1
inline constexpr uint32_t kVersionMask = 0x3;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;

// A virtio feature bit that is the backend's, not the device's: it speaks the protocol
// features (GET/SET_PROTOCOL_FEATURES), and its rings start disabled.
inline constexpr unsigned kFProtocolFeatures = 30;
inline constexpr unsigned kProtocolFMq = 0;
inline constexpr unsigned kProtocolFReplyAck = 3;
// SET_VRING_KICK/CALL/ERR: the ring index in bits 0-7; bit 8 = no fd attached.
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = 1u << 8;

const char* request_name(uint32_t request);

}  // namespace vhost_user

// A mapped piece of guest RAM the backend maps too (a memfd region).
struct VhostUserMemory {
  uint64_t guest_addr;
  uint64_t size;
  uint64_t user_addr;
  int fd;
  uint64_t fd_offset;
};

// Everything one ring needs: its size, where its three parts are mapped in this process,
// where the backend starts (the next avail index), and its three eventfds.
struct VhostUserVring {
  uint32_t index;
  uint16_t size;
  uint64_t desc;
  uint64_t avail;
  uint64_t used;
  uint16_t base;
  int kick_fd;  // the driver's notifications (KVM's ioeventfd): the backend reads it
  int call_fd;  // the backend's "used buffers" signal: the VMM relays it as an interrupt
  int err_fd;   // the backend's "this ring is broken"
};

class VhostUserFrontend {
 public:
  using Status = Result<void, std::string>;

  // Takes `socket`, connected to the backend. `name` prefixes nothing; it is for the
  // caller's messages.
  explicit VhostUserFrontend(vmm::UniqueFd socket,
                             std::chrono::milliseconds reply_timeout = std::chrono::seconds(5));

  // GET_FEATURES; when the backend offers kFProtocolFeatures: GET_PROTOCOL_FEATURES and
  // SET_PROTOCOL_FEATURES with what both speak of `wanted_protocol` (REPLY_ACK, MQ); with MQ,
  // GET_QUEUE_NUM, which must be at least `queues`; then SET_OWNER.
  Status handshake(uint64_t wanted_protocol, uint32_t queues);
  // The backend's virtio features (GET_FEATURES), kFProtocolFeatures included.
  uint64_t backend_features() const { return backend_features_; }
  uint64_t protocol_features() const { return protocol_features_; }

  // SET_FEATURES: `features` (a subset of the device's), plus kFProtocolFeatures when that
  // was negotiated.
  Status set_features(uint64_t features);
  // SET_MEM_TABLE: at most kMaxMemRegions regions, each with its fd.
  Status set_mem_table(std::span<const VhostUserMemory> regions);
  // SET_VRING_NUM, _BASE, _ADDR, _KICK, _CALL, _ERR for one ring (it starts with the kick).
  Status set_vring(const VhostUserVring& ring);
  // SET_VRING_ENABLE (only when protocol features were negotiated; else rings start
  // enabled and this does nothing).
  Status set_vring_enable(uint32_t index, bool enable);
  // GET_VRING_BASE: stops the ring; returns the backend's next avail index, checked to be
  // a 16-bit value.
  Result<uint16_t, std::string> get_vring_base(uint32_t index);

  int fd() const { return socket_.get(); }
  bool broken() const { return broken_; }

 private:
  // The backend offered kFProtocolFeatures: GET/SET_PROTOCOL_FEATURES, SET_VRING_ENABLE,
  // and the bit in SET_FEATURES.
  bool speaks_protocol_features() const {
    return (backend_features_ & (uint64_t{1} << vhost_user::kFProtocolFeatures)) != 0;
  }
  // One request; with `ack` and REPLY_ACK negotiated it asks for and checks the ack.
  Status send(uint32_t request, std::span<const uint8_t> payload, std::span<const int> fds = {},
              bool ack = true);
  // The reply to `request`, whose payload must be exactly out.size() bytes.
  Status receive(uint32_t request, std::span<uint8_t> out);
  Status read_exact(std::span<uint8_t> out, std::chrono::steady_clock::time_point deadline);
  Status fail(std::string message);
  Status send_u64(uint32_t request, uint64_t value, bool ack = true);
  Result<uint64_t, std::string> get_u64(uint32_t request);

  vmm::UniqueFd socket_;
  std::chrono::milliseconds reply_timeout_;
  uint64_t backend_features_ = 0;
  uint64_t protocol_features_ = 0;
  bool broken_ = false;
};

}  // namespace minivmm::devices
