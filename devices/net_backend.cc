#include "devices/net_backend.h"

#include <fcntl.h>
#include <linux/if_tun.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace minivmm::devices {
namespace {

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

// ---- tap ----

Result<std::unique_ptr<TapBackend>, std::string> TapBackend::open(const std::string& name) {
  const std::string what = "--net tap=" + name;
  if (name.empty() || name.size() >= IFNAMSIZ) {
    return what + ": a network interface name has 1 to " + std::to_string(IFNAMSIZ - 1) +
           " characters";
  }
  // TUNSETIFF would create a missing tap (with CAP_NET_ADMIN): only an existing one is used.
  if (::if_nametoindex(name.c_str()) == 0) {
    return what + ": no such network interface (make it first, e.g. ip tuntap add " + name +
           " mode tap user $USER; ip link set " + name + " up)";
  }
  struct stat st {};
  if (::stat(("/sys/class/net/" + name + "/tun_flags").c_str(), &st) != 0) {
    return what + ": " + name + " is not a tap device";
  }
  vmm::UniqueFd fd(::open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return what + ": cannot open /dev/net/tun: " + errno_text(errno);
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, name.data(), name.size());
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
  if (::ioctl(fd.get(), TUNSETIFF, &ifr) != 0) {
    const int err = errno;
    if (err == EPERM) {
      return what + ": not allowed to attach to " + name +
             ": it needs CAP_NET_ADMIN, or a tap owned by this user (ip tuntap add " + name +
             " mode tap user $USER)";
    }
    if (err == EBUSY) return what + ": " + name + " is busy: another process has it open";
    if (err == EINVAL) {
      return what + ": " + name +
             " cannot be attached as a single-queue tap with a virtio header (is it a "
             "multi-queue tap or a tun?)";
    }
    return what + ": cannot attach to " + name + ": " + errno_text(err);
  }
  int hdr_size = sizeof(VirtioNetHdr);
  if (::ioctl(fd.get(), TUNSETVNETHDRSZ, &hdr_size) != 0) {
    return what + ": TUNSETVNETHDRSZ: " + errno_text(errno);
  }
  // What the kernel takes: checksum offload with both TSOs (it refuses TSO without CSUM).
  const bool offloads = ::ioctl(fd.get(), TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) == 0;
  if (::ioctl(fd.get(), TUNSETOFFLOAD, 0) != 0) return what + ": TUNSETOFFLOAD: " + errno_text(errno);
  auto tap = std::make_unique<TapBackend>(std::move(fd), offloads, name);
  tap->is_tap_ = true;
  return tap;
}

TapBackend::TapBackend(vmm::UniqueFd fd, bool offloads, std::string name)
    : fd_(std::move(fd)), offloads_(offloads), name_(std::move(name)),
      buffer_(sizeof(VirtioNetHdr) + kMaxFrame) {}

uint64_t TapBackend::offload_features() const {
  if (!offloads_) return 0;
  using namespace net_features;
  return bit(kCsum) | bit(kGuestCsum) | bit(kGuestTso4) | bit(kGuestTso6) | bit(kHostTso4) |
         bit(kHostTso6);
}

std::optional<std::string> TapBackend::set_offloads(uint64_t acked) {
  using namespace net_features;
  // What the tap may hand us is what the guest takes (virtio 1.2 §5.1.6.4); the kernel
  // wants checksum offload under any segmentation offload.
  unsigned flags = 0;
  if (acked & bit(kGuestCsum)) {
    flags |= TUN_F_CSUM;
    if (acked & bit(kGuestTso4)) flags |= TUN_F_TSO4;
    if (acked & bit(kGuestTso6)) flags |= TUN_F_TSO6;
  }
  if (!is_tap_) return std::nullopt;
  if (::ioctl(fd_.get(), TUNSETOFFLOAD, flags) != 0) {
    return "TUNSETOFFLOAD " + std::to_string(flags) + ": " + errno_text(errno);
  }
  return std::nullopt;
}

NetBackend::RxStatus TapBackend::receive(Frame& frame) {
  while (true) {
    const ssize_t n = ::read(fd_.get(), buffer_.data(), buffer_.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return RxStatus::kNone;
    if (n < 0) {
      error_ = "read: " + errno_text(errno);
      return RxStatus::kClosed;
    }
    if (n == 0) {
      if (is_tap_) return RxStatus::kNone;  // not a frame; a tap does not end
      error_ = "the peer closed";
      return RxStatus::kClosed;
    }
    // Shorter than a header: not a frame (a tap never does this); skip it.
    if (static_cast<size_t>(n) <= sizeof(VirtioNetHdr)) continue;
    std::memcpy(&frame.hdr, buffer_.data(), sizeof(VirtioNetHdr));
    frame.hdr.num_buffers = 0;
    frame.data = std::span<const uint8_t>(buffer_.data() + sizeof(VirtioNetHdr),
                                          static_cast<size_t>(n) - sizeof(VirtioNetHdr));
    return RxStatus::kFrame;
  }
}

NetBackend::TxStatus TapBackend::send_iov(const VirtioNetHdr& hdr, std::span<const iovec> frame,
                                          size_t) {
  if (frame.size() > kMaxFramePieces) return TxStatus::kDropped;
  VirtioNetHdr out = hdr;
  out.num_buffers = 0;
  iov_.clear();
  iov_.push_back({&out, sizeof(out)});
  iov_.insert(iov_.end(), frame.begin(), frame.end());
  while (true) {
    const ssize_t n = ::writev(fd_.get(), iov_.data(), static_cast<int>(iov_.size()));
    if (n >= 0) return TxStatus::kSent;
    if (errno == EINTR) continue;
    // EINVAL: the kernel refused the guest's offload header; EAGAIN/ENOBUFS: no room. The
    // frame is dropped either way, as a full NIC queue drops it.
    if (errno == EIO || errno == EBADFD) {
      error_ = "write: " + errno_text(errno);
      return TxStatus::kClosed;
    }
    if (!is_tap_ && (errno == ECONNREFUSED || errno == ENOTCONN || errno == EPIPE)) {
      error_ = "write: " + errno_text(errno);
      return TxStatus::kClosed;
    }
    return TxStatus::kDropped;
  }
}

// ---- stream (passt, QEMU -netdev stream) ----

StreamBackend::StreamBackend(vmm::UniqueFd socket, const char* kind)
    : fd_(std::move(socket)), kind_(kind), in_(kInBuffer) {
  const int flags = ::fcntl(fd_.get(), F_GETFL);
  if (flags >= 0) ::fcntl(fd_.get(), F_SETFL, flags | O_NONBLOCK);
  out_.reserve(kOutBacklog);
}

NetBackend::RxStatus StreamBackend::receive(Frame& frame) {
  if (closed_) return RxStatus::kClosed;
  while (true) {
    const size_t have = in_end_ - in_start_;
    if (have >= 4) {
      const uint8_t* p = in_.data() + in_start_;
      const uint32_t len = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) |
                           (uint32_t{p[2]} << 8) | uint32_t{p[3]};
      if (len == 0 || len > kMaxFrame) {
        error_ = "the peer sent a frame of " + std::to_string(len) + " bytes (1 to " +
                 std::to_string(kMaxFrame) + " allowed)";
        closed_ = true;
        return RxStatus::kClosed;
      }
      if (have >= 4 + size_t{len}) {
        frame.hdr = VirtioNetHdr{};
        frame.data = std::span<const uint8_t>(p + 4, len);
        in_start_ += 4 + len;
        return RxStatus::kFrame;
      }
    }
    // Not a whole frame yet: move what is left to the front, then read more. The frame
    // handed out last is no longer used (the contract of receive()).
    if (in_start_ > 0) {
      std::memmove(in_.data(), in_.data() + in_start_, have);
      in_start_ = 0;
      in_end_ = have;
    }
    const ssize_t n = ::recv(fd_.get(), in_.data() + in_end_, in_.size() - in_end_, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return RxStatus::kNone;
    if (n <= 0) {
      error_ = n == 0 ? "the peer closed the connection" : "recv: " + errno_text(errno);
      closed_ = true;
      return RxStatus::kClosed;
    }
    in_end_ += static_cast<size_t>(n);
  }
}

bool StreamBackend::can_send() const {
  return !closed_ && out_.size() - out_sent_ + 4 + kMaxFrame <= kOutBacklog;
}

NetBackend::TxStatus StreamBackend::send_iov(const VirtioNetHdr&, std::span<const iovec> frame,
                                             size_t bytes) {
  if (closed_) return TxStatus::kClosed;
  if (bytes == 0 || bytes > kMaxFrame || frame.size() > kMaxFramePieces) return TxStatus::kDropped;
  const uint32_t len = static_cast<uint32_t>(bytes);
  const uint8_t prefix[4] = {static_cast<uint8_t>(len >> 24), static_cast<uint8_t>(len >> 16),
                             static_cast<uint8_t>(len >> 8), static_cast<uint8_t>(len)};
  size_t sent = 0;
  if (out_sent_ == out_.size()) {
    // Nothing waits: straight to the socket; what does not fit waits in the backlog.
    out_.clear();
    out_sent_ = 0;
    iov_.clear();
    iov_.push_back({const_cast<uint8_t*>(prefix), 4});
    iov_.insert(iov_.end(), frame.begin(), frame.end());
    msghdr msg{};
    msg.msg_iov = iov_.data();
    msg.msg_iovlen = iov_.size();
    ssize_t n;
    do {
      n = ::sendmsg(fd_.get(), &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
      error_ = "send: " + errno_text(errno);
      closed_ = true;
      return TxStatus::kClosed;
    }
    sent = n > 0 ? static_cast<size_t>(n) : 0;
    if (sent == 4 + bytes) return TxStatus::kSent;
  } else if (out_.size() - out_sent_ + 4 + bytes > kOutBacklog) {
    return TxStatus::kDropped;  // the device checks can_send() first; a guard only
  }
  // The rest of the frame waits (a stream carries no partial frame boundary: all of it).
  for (size_t i = sent; i < 4; ++i) out_.push_back(prefix[i]);
  size_t skip = sent > 4 ? sent - 4 : 0;
  for (const iovec& piece : frame) {
    const auto* p = static_cast<const uint8_t*>(piece.iov_base);
    const size_t s = std::min(skip, piece.iov_len);
    skip -= s;
    out_.insert(out_.end(), p + s, p + piece.iov_len);
  }
  return TxStatus::kSent;
}

bool StreamBackend::flush() {
  while (out_sent_ < out_.size() && !closed_) {
    const ssize_t n = ::send(fd_.get(), out_.data() + out_sent_, out_.size() - out_sent_,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    if (n <= 0) {
      error_ = "send: " + errno_text(errno);
      closed_ = true;
      break;
    }
    out_sent_ += static_cast<size_t>(n);
  }
  if (out_sent_ == out_.size()) {
    out_.clear();
    out_sent_ = 0;
  }
  return true;
}

// ---- passt ----

Result<Passt::Started, std::string> Passt::start(const std::vector<std::string>& tcp_ports) {
  const char* env = std::getenv("MINIVMM_PASST");
  const std::string binary = env != nullptr && *env != '\0' ? env : kDefaultPath;
  if (::access(binary.c_str(), X_OK) != 0) {
    return "--net passt: passt is not installed: " + binary + ": " + errno_text(errno) +
           (env == nullptr ? " (Debian package passt)" : " (MINIVMM_PASST)");
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return "--net passt: socketpair: " + errno_text(errno);
  }
  vmm::UniqueFd ours(pair[0]);
  vmm::UniqueFd theirs(pair[1]);
  ChildProcess::Spec spec;
  spec.program = binary;
  spec.args = {"--fd", "3", "--foreground", "--quiet", "--stderr"};
  for (const std::string& ports : tcp_ports) {
    spec.args.push_back("--tcp-ports");
    spec.args.push_back(ports);
  }
  spec.fds = {theirs.get()};
  auto child = ChildProcess::spawn(spec);
  if (!child) return "--net passt: " + child.error();
  return Started{std::move(child).value(), std::move(ours)};
}

}  // namespace minivmm::devices
