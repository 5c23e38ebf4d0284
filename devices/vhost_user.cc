#include "devices/vhost_user.h"

#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

namespace minivmm::devices {

namespace vhost_user {

const char* request_name(uint32_t request) {
  switch (request) {
    case kGetFeatures: return "GET_FEATURES";
    case kSetFeatures: return "SET_FEATURES";
    case kSetOwner: return "SET_OWNER";
    case kResetOwner: return "RESET_OWNER";
    case kSetMemTable: return "SET_MEM_TABLE";
    case kSetVringNum: return "SET_VRING_NUM";
    case kSetVringAddr: return "SET_VRING_ADDR";
    case kSetVringBase: return "SET_VRING_BASE";
    case kGetVringBase: return "GET_VRING_BASE";
    case kSetVringKick: return "SET_VRING_KICK";
    case kSetVringCall: return "SET_VRING_CALL";
    case kSetVringErr: return "SET_VRING_ERR";
    case kGetProtocolFeatures: return "GET_PROTOCOL_FEATURES";
    case kSetProtocolFeatures: return "SET_PROTOCOL_FEATURES";
    case kGetQueueNum: return "GET_QUEUE_NUM";
    case kSetVringEnable: return "SET_VRING_ENABLE";
    default: return "unknown request";
  }
}

}  // namespace vhost_user

namespace vu = vhost_user;

namespace {

template <typename T>
std::span<const uint8_t> bytes_of(const T& value) {
  return {reinterpret_cast<const uint8_t*>(&value), sizeof(T)};
}

// The largest reply payload we ever expect (a u64 or a VringState): anything bigger in a
// header is refused before it is read.
constexpr uint32_t kMaxReplyPayload = 8;
// The most fds one message carries (SET_MEM_TABLE: one per region).
constexpr size_t kMaxFds = vu::kMaxMemRegions;

}  // namespace

VhostUserFrontend::VhostUserFrontend(vmm::UniqueFd socket, std::chrono::milliseconds reply_timeout)
    : socket_(std::move(socket)), reply_timeout_(reply_timeout) {}

VhostUserFrontend::Status VhostUserFrontend::fail(std::string message) {
  broken_ = true;
  return message;
}

VhostUserFrontend::Status VhostUserFrontend::handshake(uint64_t wanted_protocol, uint32_t queues) {
  auto features = get_u64(vu::kGetFeatures);
  if (!features) return features.error();
  backend_features_ = *features;
  if (speaks_protocol_features()) {
    auto offered = get_u64(vu::kGetProtocolFeatures);
    if (!offered) return offered.error();
    protocol_features_ = *offered & wanted_protocol;
    // No ack for this one: REPLY_ACK is only in force once it was set.
    if (auto s = send_u64(vu::kSetProtocolFeatures, protocol_features_, false); !s) return s;
    if (protocol_features_ & (uint64_t{1} << vu::kProtocolFMq)) {
      auto n = get_u64(vu::kGetQueueNum);
      if (!n) return n.error();
      if (*n < queues) {
        return fail("the backend serves " + std::to_string(*n) + " queues (GET_QUEUE_NUM), " +
                    std::to_string(queues) + " are needed");
      }
    }
  }
  return send(vu::kSetOwner, {});
}

VhostUserFrontend::Status VhostUserFrontend::set_features(uint64_t features) {
  if (speaks_protocol_features()) features |= uint64_t{1} << vu::kFProtocolFeatures;
  return send_u64(vu::kSetFeatures, features);
}

VhostUserFrontend::Status VhostUserFrontend::set_mem_table(
    std::span<const VhostUserMemory> regions) {
  if (regions.empty() || regions.size() > vu::kMaxMemRegions) {
    return "SET_MEM_TABLE: " + std::to_string(regions.size()) + " memory regions (1 to 8 fit)";
  }
  vu::MemTable table{};
  table.nregions = static_cast<uint32_t>(regions.size());
  std::vector<int> fds;
  for (size_t i = 0; i < regions.size(); ++i) {
    const VhostUserMemory& r = regions[i];
    if (r.fd < 0) return std::string("SET_MEM_TABLE: guest RAM is not shareable (no memfd)");
    table.regions[i] = {r.guest_addr, r.size, r.user_addr, r.fd_offset};
    fds.push_back(r.fd);
  }
  // The payload ends after the regions in use.
  const size_t size = 8 + regions.size() * sizeof(vu::MemRegion);
  return send(vu::kSetMemTable, bytes_of(table).first(size), fds);
}

VhostUserFrontend::Status VhostUserFrontend::set_vring(const VhostUserVring& ring) {
  if (ring.index > vu::kVringIndexMask) return std::string("vring index out of range");
  if (auto s = send(vu::kSetVringNum, bytes_of(vu::VringState{ring.index, ring.size})); !s) return s;
  if (auto s = send(vu::kSetVringBase, bytes_of(vu::VringState{ring.index, ring.base})); !s) {
    return s;
  }
  const vu::VringAddr addr{ring.index, 0, ring.desc, ring.used, ring.avail, 0};
  if (auto s = send(vu::kSetVringAddr, bytes_of(addr)); !s) return s;
  // CALL and ERR before KICK: the kick fd starts the ring, which may then signal at once.
  const uint64_t index = ring.index;
  for (auto [request, fd] : {std::pair{vu::kSetVringCall, ring.call_fd},
                             std::pair{vu::kSetVringErr, ring.err_fd},
                             std::pair{vu::kSetVringKick, ring.kick_fd}}) {
    const uint64_t value = fd >= 0 ? index : index | vu::kVringNoFd;
    const int fds[1] = {fd};
    if (auto s = send(request, bytes_of(value), fd >= 0 ? std::span<const int>(fds) : std::span<const int>{});
        !s) {
      return s;
    }
  }
  return {};
}

VhostUserFrontend::Status VhostUserFrontend::set_vring_enable(uint32_t index, bool enable) {
  if (!speaks_protocol_features()) return {};
  return send(vu::kSetVringEnable, bytes_of(vu::VringState{index, enable ? 1u : 0u}));
}

Result<uint16_t, std::string> VhostUserFrontend::get_vring_base(uint32_t index) {
  if (auto s = send(vu::kGetVringBase, bytes_of(vu::VringState{index, 0}), {}, false); !s) {
    return s.error();
  }
  vu::VringState state{};
  if (auto s = receive(vu::kGetVringBase, {reinterpret_cast<uint8_t*>(&state), sizeof(state)}); !s) {
    return s.error();
  }
  if (state.index != index) {
    return fail("GET_VRING_BASE: the backend replied for ring " + std::to_string(state.index) +
                ", not " + std::to_string(index))
        .error();
  }
  if (state.num > UINT16_MAX) {
    return fail("GET_VRING_BASE: ring index " + std::to_string(state.num) + " is not 16-bit")
        .error();
  }
  return static_cast<uint16_t>(state.num);
}

VhostUserFrontend::Status VhostUserFrontend::send_u64(uint32_t request, uint64_t value, bool ack) {
  return send(request, bytes_of(value), {}, ack);
}

Result<uint64_t, std::string> VhostUserFrontend::get_u64(uint32_t request) {
  if (auto s = send(request, {}, {}, false); !s) return s.error();
  uint64_t value = 0;
  if (auto s = receive(request, {reinterpret_cast<uint8_t*>(&value), sizeof(value)}); !s) {
    return s.error();
  }
  return value;
}

VhostUserFrontend::Status VhostUserFrontend::send(uint32_t request,
                                                  std::span<const uint8_t> payload,
                                                  std::span<const int> fds, bool ack) {
  const char* name = vu::request_name(request);
  if (broken_) return std::string(name) + ": the connection to the backend is broken";
  if (fds.size() > kMaxFds) return std::string(name) + ": too many fds";
  const bool want_ack = ack && (protocol_features_ & (uint64_t{1} << vu::kProtocolFReplyAck));
  vu::Header header{request, vu::kVersion | (want_ack ? vu::kFlagNeedReply : 0u),
                    static_cast<uint32_t>(payload.size())};
  iovec iov[2] = {{&header, sizeof(header)},
                  {const_cast<uint8_t*>(payload.data()), payload.size()}};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  const size_t total = sizeof(header) + payload.size();
  ssize_t n;
  do {
    // MSG_NOSIGNAL: a backend gone is an error here, not a SIGPIPE.
    n = ::sendmsg(socket_.get(), &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    return fail(std::string(name) + ": cannot send to the backend: " + std::strerror(errno));
  }
  if (static_cast<size_t>(n) != total) {
    // A unix stream socket with room takes a small message whole; a short send means the
    // backend stopped reading.
    return fail(std::string(name) + ": the backend took " + std::to_string(n) + " of " +
                std::to_string(total) + " bytes");
  }
  if (!want_ack) return {};
  uint64_t result = 0;
  if (auto s = receive(request, {reinterpret_cast<uint8_t*>(&result), sizeof(result)}); !s) return s;
  if (result != 0) {
    // The backend refused this one request; the connection itself is fine.
    return std::string(name) + ": the backend refused it (REPLY_ACK " + std::to_string(result) + ")";
  }
  return {};
}

VhostUserFrontend::Status VhostUserFrontend::receive(uint32_t request, std::span<uint8_t> out) {
  const char* name = vu::request_name(request);
  const auto deadline = std::chrono::steady_clock::now() + reply_timeout_;
  vu::Header header{};
  if (auto s = read_exact({reinterpret_cast<uint8_t*>(&header), sizeof(header)}, deadline); !s) {
    return fail(std::string(name) + ": " + s.error());
  }
  if (header.request != request) {
    return fail(std::string(name) + ": the backend replied to request " +
                std::to_string(header.request) + " instead");
  }
  if ((header.flags & vu::kVersionMask) != vu::kVersion || !(header.flags & vu::kFlagReply)) {
    return fail(std::string(name) + ": bad reply flags " + std::to_string(header.flags) +
                " (version 1 and the reply bit expected)");
  }
  if (header.size != out.size()) {
    // Not read on: an oversized header would make us read (or wait for) garbage.
    return fail(std::string(name) + ": reply of " + std::to_string(header.size) +
                " bytes, expected " + std::to_string(out.size()) +
                (header.size > kMaxReplyPayload ? " (refused unread)" : ""));
  }
  if (auto s = read_exact(out, deadline); !s) return fail(std::string(name) + ": " + s.error());
  return {};
}

// Reads exactly out.size() bytes by the deadline. Any fds the backend attaches are closed:
// no reply of this protocol carries one for the frontend.
VhostUserFrontend::Status VhostUserFrontend::read_exact(
    std::span<uint8_t> out, std::chrono::steady_clock::time_point deadline) {
  size_t done = 0;
  while (done < out.size()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return std::string("no reply from the backend in time");
    pollfd p{socket_.get(), POLLIN, 0};
    const int ready = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), INT32_MAX)));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return std::string("poll: ") + std::strerror(errno);
    if (ready == 0) continue;  // the deadline check above ends it
    iovec iov{out.data() + done, out.size() - done};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(socket_.get(), &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    for (cmsghdr* c = msg.msg_controllen > 0 ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr;
         c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          ::close(fd);
        }
      }
    }
    if (n < 0) return std::string("cannot read from the backend: ") + std::strerror(errno);
    if (n == 0) return std::string("the backend closed the connection");
    done += static_cast<size_t>(n);
  }
  return {};
}

}  // namespace minivmm::devices
