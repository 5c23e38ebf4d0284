// NetBackend: where a virtio-net device's frames go and come from on the host, and the
// three kinds minivmm has:
//  - TapBackend: an existing tap device (IFF_TAP | IFF_NO_PI | IFF_VNET_HDR), one frame per
//    read/write with the 12-byte virtio_net_hdr in front (TUNSETVNETHDRSZ 12), so that the
//    guest's checksum and segmentation offloads pass through (TUNSETOFFLOAD follows what
//    the guest acked);
//  - StreamBackend: a stream socket to passt or any QEMU "stream" netdev peer: each frame
//    prefixed by its length (4 bytes, big-endian), no virtio header, so no offloads;
//  - Passt::start: minivmm's own passt on a socketpair (`--fd`), a StreamBackend.
// The backend is hostile like the guest: a frame length out of range from a stream peer
// breaks the connection (logged once), never the VMM.
//
// Threads: made on the VMM's main thread; used on the device's worker (thread class "net").
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "devices/child_process.h"
#include "virtio/result.h"
#include "vmm/fd.h"

namespace minivmm::devices {

// virtio 1.2 §5.1.3: virtio-net feature bits (bit numbers).
namespace net_features {
inline constexpr unsigned kCsum = 0;
inline constexpr unsigned kGuestCsum = 1;
inline constexpr unsigned kMac = 5;
inline constexpr unsigned kGuestTso4 = 7;
inline constexpr unsigned kGuestTso6 = 8;
inline constexpr unsigned kHostTso4 = 11;
inline constexpr unsigned kHostTso6 = 12;
inline constexpr unsigned kMrgRxbuf = 15;
inline constexpr unsigned kStatus = 16;
constexpr uint64_t bit(unsigned b) { return uint64_t{1} << b; }
}  // namespace net_features

// virtio 1.2 §5.1.6: the header in front of every frame (with VIRTIO_F_VERSION_1 it always
// has num_buffers). Little-endian fields; this is an x86 host.
struct VirtioNetHdr {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t hdr_len;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(VirtioNetHdr) == 12);

class NetBackend {
 public:
  // An Ethernet frame of at most this many bytes (without the virtio header) passes: 64 KiB
  // segmentation-offload frames and passt's 65520-byte MTU with their Ethernet header.
  static constexpr size_t kMaxFrame = 65550;

  virtual ~NetBackend() = default;
  virtual const char* kind() const = 0;  // "tap", "passt", "socket"
  virtual int fd() const = 0;            // pollable: readable when a frame may be waiting

  // virtio-net feature bits (§5.1.3) of the offloads this backend can carry; 0 for none.
  virtual uint64_t offload_features() const { return 0; }
  // The driver acked `features`: what the backend may hand us from now on. Empty or why not.
  virtual std::optional<std::string> set_offloads(uint64_t) { return std::nullopt; }

  // A received frame, valid until the next receive().
  struct Frame {
    VirtioNetHdr hdr;  // num_buffers 0
    std::span<const uint8_t> data;
  };
  enum class RxStatus { kFrame, kNone, kClosed };
  // The next frame, kNone when none is waiting (EAGAIN), kClosed when the backend is gone or
  // broke its protocol (`error()` says why).
  virtual RxStatus receive(Frame& frame) = 0;

  enum class TxStatus { kSent, kDropped, kClosed };
  // The most pieces a frame handed to send_iov() may have (the backends add one or two of
  // their own and stay within the kernel's IOV_MAX, 1024).
  static constexpr size_t kMaxFramePieces = 1000;
  // Sends one frame with the guest's header: `bytes` bytes in `frame`'s pieces, in order
  // (at most kMaxFramePieces of them; the device passes pieces of guest memory, which the
  // kernel reads once, so the frame is not copied in the VMM). kDropped: the backend refused
  // this frame (too large, a bad offload header, no room), counted by the device.
  virtual TxStatus send_iov(const VirtioNetHdr& hdr, std::span<const iovec> frame,
                            size_t bytes) = 0;
  TxStatus send(const VirtioNetHdr& hdr, std::span<const uint8_t> frame) {
    const iovec one{const_cast<uint8_t*>(frame.data()), frame.size()};
    return send_iov(hdr, std::span<const iovec>(&one, 1), frame.size());
  }
  // False while the backend holds bytes it could not write yet (a stream socket's backlog):
  // the device then takes no transmit buffers until flush() says it may again.
  virtual bool can_send() const { return true; }
  // The fd turned writable: writes what waits. True when nothing waits any more.
  virtual bool flush() { return true; }
  virtual bool wants_writable() const { return false; }

  const std::string& error() const { return error_; }

 protected:
  std::string error_;
};

class TapBackend final : public NetBackend {
 public:
  // Opens the existing tap device `name`; the error is one line for the user (missing, not a
  // tap, busy, needs CAP_NET_ADMIN).
  static Result<std::unique_ptr<TapBackend>, std::string> open(const std::string& name);
  // For tests: a datagram fd that behaves as a tap with IFF_VNET_HDR (each datagram one
  // header + frame), with or without offloads.
  TapBackend(vmm::UniqueFd fd, bool offloads, std::string name);

  const char* kind() const override { return "tap"; }
  int fd() const override { return fd_.get(); }
  uint64_t offload_features() const override;
  std::optional<std::string> set_offloads(uint64_t acked) override;
  RxStatus receive(Frame& frame) override;
  TxStatus send_iov(const VirtioNetHdr& hdr, std::span<const iovec> frame, size_t bytes) override;

 private:
  vmm::UniqueFd fd_;
  bool offloads_;
  bool is_tap_ = false;  // a real tap (TUNSETOFFLOAD), not a test's socket
  std::string name_;
  std::vector<uint8_t> buffer_;
  std::vector<iovec> iov_;
};

class StreamBackend final : public NetBackend {
 public:
  // `socket`: connected stream socket; `kind`: "passt" or "socket" (for log lines).
  StreamBackend(vmm::UniqueFd socket, const char* kind);

  const char* kind() const override { return kind_; }
  int fd() const override { return fd_.get(); }
  RxStatus receive(Frame& frame) override;
  TxStatus send_iov(const VirtioNetHdr& hdr, std::span<const iovec> frame, size_t bytes) override;
  bool can_send() const override;
  bool flush() override;
  bool wants_writable() const override { return out_sent_ < out_.size(); }

  // Bounds of what is buffered: one frame and a half in, four frames out.
  static constexpr size_t kInBuffer = 3 * (kMaxFrame + 4) / 2;
  static constexpr size_t kOutBacklog = 4 * (kMaxFrame + 4);

 private:
  vmm::UniqueFd fd_;
  const char* kind_;
  std::vector<uint8_t> in_;  // [in_start_, in_end_) unparsed bytes
  size_t in_start_ = 0;
  size_t in_end_ = 0;
  std::vector<uint8_t> out_;  // [out_sent_, out_.size()) waits for the socket
  size_t out_sent_ = 0;
  std::vector<iovec> iov_;
  bool closed_ = false;
};

// passt (Debian package passt; MINIVMM_PASST names another binary), started by minivmm on
// one end of a socketpair: `passt --fd 3 --foreground --quiet --stderr`, with
// `--tcp-ports SPEC` for inbound forwards. It runs in its own session, is killed when
// minivmm dies, and ends when its socket closes (--fd implies one client) or at SIGTERM.
struct Passt {
  static constexpr const char* kDefaultPath = "/usr/bin/passt";
  struct Started {
    ChildProcess process;
    vmm::UniqueFd socket;
  };
  // `tcp_ports`: passt's --tcp-ports specs ("8080:80"), empty for none.
  static Result<Started, std::string> start(const std::vector<std::string>& tcp_ports);
};

}  // namespace minivmm::devices
