// VirtioVsock: the socket device (virtio 1.2 §5.10), stream sockets only, in the "hybrid"
// style of Firecracker and Cloud Hypervisor: no vhost module; the host end of every guest
// connection is a unix stream socket.
//
//   host -> guest: a host process connects to the device's listening socket PATH and
//     writes "CONNECT <port>\n"; the device sends the guest a REQUEST from CID 2 (a host
//     port it allocates) to <port>. The guest's RESPONSE makes it answer "OK <host port>\n"
//     on the unix connection, and bytes then flow both ways; a RST (nobody listens in the
//     guest) closes it. A malformed line, one longer than kMaxConnectLine, or no line
//     within Options::handshake_timeout closes it too.
//   guest -> host: a guest connection to CID 2 port P becomes a connection to the unix
//     socket "PATH_P" (non-blocking connect); the guest gets RESPONSE, or RST when nobody
//     listens there.
//
// Flow control is the spec's credit scheme (§5.10.6.3) in both directions: every packet
// carries our buf_alloc (Options::buf_alloc: what the device buffers per connection for
// the unix socket) and fwd_cnt (what it handed to the socket); the device sends the
// guest no more payload than the guest's buf_alloc - (tx_cnt - fwd_cnt), answers
// CREDIT_REQUEST, and sends CREDIT_UPDATE when the guest may be waiting for room. A guest
// that sends past our credit is reset (RST), so host memory stays bounded: at most
// Options::max_connections connections of at most buf_alloc bytes each.
//
// Host data is read only when the guest has credit and a receive buffer: it is read from
// the socket straight into the guest's buffer. While none is posted, the socket is not
// polled for input and the device waits for the rx queue's notification (no busy wait).
// Each wake-up handles at most kBudget chains per queue, then yields to the other fds.
//
// Hostile drivers: a transmit chain shorter than the 44-byte header is completed unread; a
// header whose len exceeds the chain (CVE-2019-18960) or kMaxPayload, an unknown type or
// op, or a packet for an unknown connection is answered with RST (never a RST with a RST);
// a wrong src_cid or dst_cid is dropped. Every chain completes; nothing aborts.
//
// Threads: the VirtioDevice methods on the transport's thread (a vCPU, or the main thread
// at teardown); everything else -- the sockets, the connections, the queues -- on the
// worker (thread class "vsock"), which creates AF_UNIX stream sockets for guest-initiated
// connections while the guest runs (the one class that makes a socket after boot).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "devices/virtio_worker.h"
#include "virtio/event_fd.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

// struct virtio_vsock_hdr (virtio 1.2 §5.10.6), little-endian on the wire (x86_64 host).
struct __attribute__((packed)) VsockHeader {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};
static_assert(sizeof(VsockHeader) == 44);
static_assert(offsetof(VsockHeader, len) == 24 && offsetof(VsockHeader, op) == 30 &&
              offsetof(VsockHeader, fwd_cnt) == 40);

class VirtioVsock final : public virtio::VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 19;  // virtio 1.2 §5.10.1
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;
  static constexpr uint16_t kEventQueue = 2;
  static constexpr unsigned kFStream = 0;  // VIRTIO_VSOCK_F_STREAM (§5.10.3)
  static constexpr uint64_t kHostCid = 2;
  static constexpr uint16_t kTypeStream = 1;
  // §5.10.6 operations
  static constexpr uint16_t kOpRequest = 1;
  static constexpr uint16_t kOpResponse = 2;
  static constexpr uint16_t kOpRst = 3;
  static constexpr uint16_t kOpShutdown = 4;
  static constexpr uint16_t kOpRw = 5;
  static constexpr uint16_t kOpCreditUpdate = 6;
  static constexpr uint16_t kOpCreditRequest = 7;
  static constexpr uint32_t kShutdownRcv = 1;
  static constexpr uint32_t kShutdownSend = 2;

  static constexpr uint32_t kMaxPayload = 64 * 1024;  // one packet, as Linux's
  static constexpr size_t kMaxConnectLine = 32;       // "CONNECT 4294967295\n" fits
  static constexpr uint32_t kBudget = 64;             // chains per queue per wake-up
  static constexpr size_t kMaxPendingRst = 256;       // RSTs for unknown connections
  static constexpr uint32_t kFirstHostPort = 49152;   // host ports of host connections

  struct Options {
    uint32_t max_connections = 64;
    uint32_t buf_alloc = 256 * 1024;  // per connection, guest -> host
    std::chrono::milliseconds handshake_timeout{5000};  // CONNECT line, and RESPONSE
  };

  // `guest_cid` in [3, 2^32 - 2]; `listen_fd` a listening unix stream socket at
  // `socket_path` (listen_unix), owned by the device, which removes the path when it is
  // destroyed. Throws std::invalid_argument for a bad CID or a path too long for PATH_P,
  // std::system_error when the worker or its timer cannot be made.
  VirtioVsock(uint64_t guest_cid, int listen_fd, std::string socket_path, Options options);
  VirtioVsock(uint64_t guest_cid, int listen_fd, std::string socket_path)
      : VirtioVsock(guest_cid, listen_fd, std::move(socket_path), Options{}) {}
  ~VirtioVsock() override;

  // The longest PATH: PATH_4294967295 must fit in sun_path.
  static constexpr size_t kMaxSocketPath = 107 - 11;

  uint32_t device_type() const override { return kDeviceId; }
  std::span<const uint16_t> queue_max_sizes() const override { return kQueueSizes; }
  uint64_t device_features() const override;
  void set_acked_features(uint64_t features) override { acked_features_ = features; }
  uint64_t acked_features() const override { return acked_features_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override;
  void reset() override;

  // One transmit chain (the worker's handler; the fuzzer's entry point): read, checked,
  // acted on. Returns the used length (always 0).
  uint32_t handle_tx(const virtio::DescriptorChain& chain);

  // Tests: connections open now (set on the worker, read anywhere).
  uint32_t connections() const { return open_.load(std::memory_order_relaxed); }

 private:
  enum class State {
    kHandshake,   // host client accepted, its CONNECT line not read yet
    kConnecting,  // host-initiated: REQUEST queued or sent, waiting for RESPONSE
    kEstablished,
  };
  // Control packets waiting for a receive buffer (bit set per connection).
  static constexpr uint32_t kPendRequest = 1;
  static constexpr uint32_t kPendResponse = 2;
  static constexpr uint32_t kPendCreditUpdate = 4;
  static constexpr uint32_t kPendCreditRequest = 8;
  static constexpr uint32_t kPendRst = 16;  // then the connection is closed

  struct Conn {
    int fd = -1;
    State state = State::kHandshake;
    uint32_t local_port = 0;  // the host's port
    uint32_t peer_port = 0;   // the guest's port
    bool host_initiated = false;
    std::string line;         // kHandshake: the CONNECT line so far
    std::chrono::steady_clock::time_point deadline{};  // kHandshake, kConnecting
    uint32_t pending = 0;     // kPend* bits
    bool queued = false;      // in ready_
    bool polled = true;       // fd in the loop (false after a hangup)
    bool host_readable = false;  // epoll said kIn; not polled for input until drained
    bool host_eof = false;       // the unix peer will send no more (SHUTDOWN SEND sent)
    bool guest_shut_rcv = false;   // guest takes no more data
    bool guest_shut_send = false;  // guest sends no more data
    bool credit_requested = false;  // CREDIT_REQUEST sent since the guest's last packet
    bool wr_shut = false;           // shutdown(SHUT_WR) done on the socket
    // Credit (§5.10.6.3). The guest's side as last told:
    uint32_t peer_buf_alloc = 0;
    uint32_t peer_fwd_cnt = 0;
    uint32_t tx_cnt = 0;  // payload bytes sent to the guest
    // Ours:
    uint32_t rx_cnt = 0;            // payload bytes taken from the guest
    uint32_t fwd_cnt = 0;           // of them, written to the unix socket
    uint32_t last_fwd_cnt_sent = 0;  // fwd_cnt in our last packet
    std::vector<uint8_t> out;  // bytes for the unix socket (an "OK" line, guest data)
    size_t out_head = 0;
  };
  using Key = std::pair<uint32_t, uint32_t>;  // (local_port, peer_port)

  // Worker side.
  void on_queue(uint16_t q);
  void serve_rx();
  void serve_tx();
  bool rx_wanted();
  uint32_t fill_rx(const virtio::DescriptorChain& chain);
  void on_accept();
  void on_conn_event(Key key, uint32_t events);
  void on_handshake_event(uint64_t id, uint32_t events);
  void on_timer();
  void on_wake();

  void handle_packet(const VsockHeader& h, virtio::ChainReader& reader);
  void guest_request(const VsockHeader& h);
  void guest_rw(Conn& c, const VsockHeader& h, virtio::ChainReader& reader);
  void guest_shutdown(Conn& c, uint32_t flags);
  void queue_rst_for(const VsockHeader& h);  // to an unknown connection

  Conn* find(Key key);
  void mark(Conn& c, uint32_t pend);  // queue a control packet
  void make_ready(Conn& c);
  bool data_ready(const Conn& c) const;
  uint32_t peer_credit(const Conn& c) const;
  void refresh(Conn& c);  // after a change: queue what is now ready, the fd's interest
  void check_done(Conn& c);  // shut the socket / end the connection when both sides are done
  void establish(Conn& c);
  void reset_conn(Conn& c);  // RST to the guest and closed: `c` is gone
  void close_conn(Key key);
  void close_handshake(uint64_t id);
  bool flush(Conn& c);  // false: the socket failed
  void update_interest(Conn& c);
  void input_drained(Conn& c);  // the socket has no input now: poll it for more (see .cc)
  void maybe_credit_update(Conn& c);
  VsockHeader header_for(Conn& c, uint16_t op);
  void arm_timer();
  uint32_t alloc_host_port();
  void warn_once(const std::string& what);
  void drop_all();

  static constexpr uint16_t kQueueSizes[3] = {kQueueSize, kQueueSize, kQueueSize};
  uint64_t guest_cid_;
  int listen_fd_;
  std::string socket_path_;
  Options options_;
  uint64_t acked_features_ = 0;

  // Worker only.
  std::map<Key, Conn> conns_;
  std::map<uint64_t, Conn> handshakes_;  // accepted host clients before their CONNECT line
  uint64_t next_handshake_ = 0;
  std::deque<Key> ready_;             // connections with a packet for the guest
  std::deque<VsockHeader> rst_out_;   // RSTs to unknown connections
  uint32_t next_host_port_ = kFirstHostPort;
  bool timer_added_ = false;
  std::vector<uint8_t> scratch_;      // one payload, kMaxPayload
  uint32_t warnings_ = 0;
  std::set<std::string> warned_;
  std::atomic<uint32_t> open_{0};

  int timer_fd_ = -1;     // periodic; in the loop only while a deadline runs
  virtio::EventFd wake_;  // the worker's own: more work after a budget ran out
  VirtioWorker worker_;   // last: stopped first
};

// A listening unix stream socket at `path` for --vsock (a stale socket there is
// replaced; anything else is refused). Throws std::system_error naming the path.
int vsock_listen(const std::string& path);

}  // namespace minivmm::devices
