#include "devices/virtio_vsock.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "devices/virtio_console.h"
#include "virtio/spec.h"

namespace minivmm::devices {
namespace {

constexpr size_t kHdr = sizeof(VsockHeader);
constexpr auto kTick = std::chrono::milliseconds(250);  // the deadline timer's period

bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

// "CONNECT <port>" (the newline already stripped): the port, or nothing.
std::optional<uint32_t> parse_connect(const std::string& line) {
  constexpr std::string_view kVerb = "CONNECT ";
  if (line.size() <= kVerb.size() || line.compare(0, kVerb.size(), kVerb) != 0) return {};
  const std::string_view digits = std::string_view(line).substr(kVerb.size());
  if (digits.size() > 10) return {};
  uint64_t port = 0;
  for (char ch : digits) {
    if (ch < '0' || ch > '9') return {};
    port = port * 10 + static_cast<uint64_t>(ch - '0');
  }
  if (port >= 0xffffffffu) return {};  // VMADDR_PORT_ANY is no port
  return static_cast<uint32_t>(port);
}

}  // namespace

int vsock_listen(const std::string& path) {
  return VirtioConsole::listen_unix(path);
}

VirtioVsock::VirtioVsock(uint64_t guest_cid, int listen_fd, std::string socket_path,
                         Options options)
    : guest_cid_(guest_cid),
      listen_fd_(listen_fd),
      socket_path_(std::move(socket_path)),
      options_(options) {
  auto fail = [this](const std::string& why) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (timer_fd_ >= 0) ::close(timer_fd_);
    throw std::invalid_argument(why);
  };
  if (guest_cid_ < 3 || guest_cid_ >= 0xffffffffu) {
    fail("vsock: the guest's CID must be at least 3 and below 4294967295");
  }
  if (socket_path_.empty() || socket_path_.size() > kMaxSocketPath) {
    fail("vsock: the socket path must be 1-" + std::to_string(kMaxSocketPath) +
         " bytes (PATH_<port> must fit a unix socket address)");
  }
  if (options_.max_connections == 0 || options_.buf_alloc < kMaxPayload) {
    fail("vsock: bad options");
  }
  scratch_.resize(kMaxPayload);
  // The deadline timer is made now and runs for the device's life; the worker adds it to
  // its loop only while a deadline runs, so that no timer call is made after boot.
  timer_fd_ = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  itimerspec spec{};
  spec.it_interval.tv_nsec = std::chrono::nanoseconds(kTick).count();
  spec.it_value = spec.it_interval;
  if (timer_fd_ < 0 || ::timerfd_settime(timer_fd_, 0, &spec, nullptr) != 0) {
    const int err = errno;
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (timer_fd_ >= 0) ::close(timer_fd_);
    throw std::system_error(err, std::generic_category(), "vsock: timerfd");
  }
  try {
    worker_.spawn("vsock");
  } catch (...) {
    if (listen_fd_ >= 0) ::close(listen_fd_);
    ::close(timer_fd_);
    throw;
  }
}

VirtioVsock::~VirtioVsock() {
  reset();
  if (listen_fd_ >= 0) ::close(listen_fd_);
  ::close(timer_fd_);
  ::unlink(socket_path_.c_str());
}

uint64_t VirtioVsock::device_features() const {
  return virtio::feature_bit(virtio::kFVersion1) | virtio::feature_bit(virtio::kFEventIdx) |
         virtio::feature_bit(virtio::kFIndirectDesc) | virtio::feature_bit(kFStream);
}

void VirtioVsock::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_vsock_config { le64 guest_cid; } (§5.10.4)
  std::array<uint8_t, 8> config{};
  for (size_t i = 0; i < config.size(); ++i) {
    config[i] = static_cast<uint8_t>(guest_cid_ >> (8 * i));
  }
  virtio::read_config_window(config, offset, data);
}

std::optional<virtio::ActivateError> VirtioVsock::activate(const virtio::ActivateContext& ctx) {
  if (ctx.queues.size() != 3 || ctx.queue_events.size() != 3) {
    return virtio::ActivateError{"virtio-vsock: expected 3 queues"};
  }
  VirtioWorker::Hooks hooks;
  hooks.on_start = [this](EventLoop& loop) {
    timer_added_ = false;
    loop.add(listen_fd_, EventLoop::kIn, [this](uint32_t) { on_accept(); });
    loop.add(wake_.fd(), EventLoop::kIn, [this](uint32_t) { on_wake(); });
  };
  hooks.on_queue = [this](uint16_t q) { on_queue(q); };
  hooks.on_stop = [this] { drop_all(); };
  try {
    worker_.start("virtio-vsock", ctx, std::move(hooks));
  } catch (const std::exception& e) {
    return virtio::ActivateError{std::string("virtio-vsock: cannot start its worker: ") +
                                 e.what()};
  }
  return std::nullopt;
}

void VirtioVsock::reset() {
  worker_.stop();  // on_stop closed every connection
  acked_features_ = 0;
}

// ---- worker: queues ----

void VirtioVsock::on_queue(uint16_t q) {
  if (q == kRxQueue) return serve_rx();
  if (q == kTxQueue) return serve_tx();
  // The event queue: the device has no event to send (TRANSPORT_RESET is for migration);
  // its buffers stay with the device.
}

void VirtioVsock::on_wake() {
  wake_.consume();
  serve_tx();
}

void VirtioVsock::serve_tx() {
  if (worker_.serve(
          kTxQueue, [this](const virtio::DescriptorChain& c) { return handle_tx(c); }, kBudget)) {
    wake_.signal();  // more waits: after the loop's other fds
  }
  serve_rx();
}

void VirtioVsock::serve_rx() {
  if (worker_.serve_while(
          kRxQueue, [this] { return rx_wanted(); },
          [this](const virtio::DescriptorChain& c) { return fill_rx(c); }, kBudget)) {
    wake_.signal();
  }
}

// Whether a packet waits for the guest; leaves the connection it is for at ready_'s front.
bool VirtioVsock::rx_wanted() {
  if (!rst_out_.empty()) return true;
  while (!ready_.empty()) {
    Conn* c = find(ready_.front());
    if (c != nullptr && c->pending != 0) return true;
    if (c != nullptr && data_ready(*c)) {
      // Data or an end of file makes a packet; an empty socket does not.
      char byte;
      const ssize_t n = ::recv(c->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n >= 0) return true;
      if (!would_block(errno)) {
        c->pending |= kPendRst;
        return true;
      }
      input_drained(*c);
      update_interest(*c);
    }
    if (c != nullptr) c->queued = false;
    ready_.pop_front();
  }
  return false;
}

uint32_t VirtioVsock::fill_rx(const virtio::DescriptorChain& chain) {
  virtio::ChainWriter writer(worker_.context().mem, chain);
  if (writer.remaining() < kHdr) {
    warn_once("a receive buffer is shorter than the 44-byte packet header");
    return 0;
  }
  auto put = [&](const VsockHeader& h, std::span<const uint8_t> payload) {
    if (!writer.write_obj(h) || !writer.write(payload)) {
      warn_once("a receive buffer lies outside guest RAM; a packet was lost");
      return false;
    }
    return true;
  };
  if (!rst_out_.empty()) {
    const VsockHeader h = rst_out_.front();
    rst_out_.pop_front();
    put(h, {});
    return static_cast<uint32_t>(writer.bytes_written());
  }
  if (ready_.empty()) return 0;
  const Key key = ready_.front();
  Conn* found = find(key);
  if (found == nullptr) return 0;
  Conn& c = *found;
  // The connection goes to the back (round robin), or out when it has nothing more.
  ready_.pop_front();
  c.queued = false;

  if (c.pending & kPendRst) {
    const VsockHeader h = header_for(c, kOpRst);
    close_conn(key);
    put(h, {});
    return static_cast<uint32_t>(writer.bytes_written());
  }
  bool ok = true;
  uint16_t op = 0;
  for (auto [bit, o] : {std::pair{kPendRequest, kOpRequest}, std::pair{kPendResponse, kOpResponse},
                        std::pair{kPendCreditUpdate, kOpCreditUpdate},
                        std::pair{kPendCreditRequest, kOpCreditRequest}}) {
    if (c.pending & bit) {
      c.pending &= ~bit;
      op = o;
      break;
    }
  }
  if (op != 0) {
    const VsockHeader h = header_for(c, op);
    ok = put(h, {});
  } else if (data_ready(c)) {
    const uint64_t room =
        std::min<uint64_t>({writer.remaining() - kHdr, kMaxPayload, peer_credit(c)});
    if (room > 0) {
      const ssize_t n = ::recv(c.fd, scratch_.data(), static_cast<size_t>(room), MSG_DONTWAIT);
      if (n > 0) {
        VsockHeader h = header_for(c, kOpRw);
        h.len = static_cast<uint32_t>(n);
        c.tx_cnt += static_cast<uint32_t>(n);
        ok = put(h, std::span<const uint8_t>(scratch_.data(), static_cast<size_t>(n)));
        if (static_cast<uint64_t>(n) < room) input_drained(c);  // most likely
      } else if (n == 0) {
        // The host end sends no more: tell the guest (§5.10.6.5).
        c.host_eof = true;
        VsockHeader h = header_for(c, kOpShutdown);
        h.flags = kShutdownSend;
        ok = put(h, {});
      } else if (would_block(errno)) {
        input_drained(c);
      } else {
        ok = false;
      }
    }
  }
  if (!ok) {
    reset_conn(c);  // the stream lost bytes, or its socket failed
    return static_cast<uint32_t>(writer.bytes_written());
  }
  refresh(c);
  if (find(key) != nullptr) check_done(*find(key));
  return static_cast<uint32_t>(writer.bytes_written());
}

// ---- worker: packets from the guest ----

uint32_t VirtioVsock::handle_tx(const virtio::DescriptorChain& chain) {
  virtio::ChainReader reader(worker_.context().mem, chain);
  if (reader.remaining() < kHdr) {
    warn_once("a transmit chain is shorter than the 44-byte packet header");
    return 0;
  }
  auto hdr = reader.read_obj<VsockHeader>();
  if (!hdr) {
    warn_once("a transmit buffer lies outside guest RAM");
    return 0;
  }
  const VsockHeader h = *hdr;
  const uint64_t src_cid = h.src_cid;
  const uint64_t dst_cid = h.dst_cid;
  const uint32_t len = h.len;
  const uint16_t op = h.op;
  const uint16_t type = h.type;
  if (src_cid != guest_cid_ || dst_cid != kHostCid) {
    // Not from this guest, or not for the host: nobody to answer (§5.10.6.2).
    warn_once("a packet with a wrong source or destination CID was dropped");
    return 0;
  }
  const bool bad_len = len > reader.remaining() || len > kMaxPayload;
  const bool bad_type = type != kTypeStream;
  if (bad_len || bad_type) {
    warn_once(bad_len ? "a packet's len exceeds its buffers or 64 KiB; connection reset"
                      : "a packet of a type other than stream; connection reset");
    if (op == kOpRst) return 0;  // never a RST for a RST
    if (Conn* c = find({h.dst_port, h.src_port}); c != nullptr && !bad_type) {
      reset_conn(*c);
    } else {
      queue_rst_for(h);
    }
    return 0;
  }
  handle_packet(h, reader);
  return 0;  // the device writes nothing into a transmit chain
}

void VirtioVsock::handle_packet(const VsockHeader& h, virtio::ChainReader& reader) {
  const uint16_t op = h.op;
  const Key key{h.dst_port, h.src_port};
  Conn* found = find(key);
  if (found == nullptr) {
    if (op == kOpRequest) return guest_request(h);
    if (op != kOpRst) queue_rst_for(h);  // no such connection (§5.10.6.3)
    return;
  }
  Conn& c = *found;
  // Every packet updates the guest's credit (§5.10.6.3).
  c.peer_buf_alloc = h.buf_alloc;
  c.peer_fwd_cnt = h.fwd_cnt;
  c.credit_requested = false;
  switch (op) {
    case kOpRst:
      close_conn(key);
      return;
    case kOpResponse:
      if (c.state != State::kConnecting) return reset_conn(c);
      establish(c);
      return;
    case kOpRw:
      if (c.state != State::kEstablished) return reset_conn(c);
      guest_rw(c, h, reader);
      return;
    case kOpShutdown:
      if (c.state != State::kEstablished) return reset_conn(c);
      guest_shutdown(c, h.flags);
      return;
    case kOpCreditUpdate:
      break;
    case kOpCreditRequest:
      c.pending |= kPendCreditUpdate;
      break;
    default:  // a REQUEST for a connection that exists, or an unknown op
      warn_once("unexpected op " + std::to_string(op) + " on a connection; reset");
      return reset_conn(c);
  }
  refresh(c);
}

void VirtioVsock::guest_request(const VsockHeader& h) {
  const uint32_t port = h.dst_port;
  if (conns_.size() + handshakes_.size() >= options_.max_connections) {
    warn_once("too many vsock connections; a guest connection was refused");
    return queue_rst_for(h);
  }
  const std::string path = socket_path_ + "_" + std::to_string(port);
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return queue_rst_for(h);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());  // fits: kMaxSocketPath
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    // Nobody listens there (ENOENT, ECONNREFUSED), or its backlog is full (EAGAIN).
    spdlog::debug("virtio-vsock: guest connection to port {}: {}: {}", port, path,
                  std::strerror(errno));
    ::close(fd);
    return queue_rst_for(h);
  }
  Conn c;
  c.fd = fd;
  c.state = State::kEstablished;
  c.local_port = port;
  c.peer_port = h.src_port;
  c.peer_buf_alloc = h.buf_alloc;
  c.peer_fwd_cnt = h.fwd_cnt;
  c.pending = kPendResponse;
  const Key key{c.local_port, c.peer_port};
  Conn& conn = conns_.emplace(key, std::move(c)).first->second;
  open_.store(static_cast<uint32_t>(conns_.size()), std::memory_order_relaxed);
  worker_.loop().add(fd, EventLoop::kIn,
                     [this, key](uint32_t events) { on_conn_event(key, events); });
  spdlog::debug("virtio-vsock: guest port {} connected to {}", conn.peer_port, path);
  refresh(conn);
}

void VirtioVsock::guest_rw(Conn& c, const VsockHeader& h, virtio::ChainReader& reader) {
  const uint32_t len = h.len;
  if (c.guest_shut_send) {
    warn_once("data after the guest's SHUTDOWN SEND; connection reset");
    return reset_conn(c);
  }
  const size_t buffered = c.out.size() - c.out_head;
  if (buffered + len > options_.buf_alloc) {
    warn_once("the guest sent past the device's credit; connection reset");
    return reset_conn(c);
  }
  const std::span<uint8_t> payload(scratch_.data(), len);
  if (!reader.read(payload)) {
    warn_once("a transmit buffer lies outside guest RAM; connection reset");
    return reset_conn(c);
  }
  c.rx_cnt += len;
  if (c.out_head == c.out.size()) {
    c.out.clear();
    c.out_head = 0;
  } else if (c.out_head > options_.buf_alloc / 2) {
    c.out.erase(c.out.begin(), c.out.begin() + static_cast<std::ptrdiff_t>(c.out_head));
    c.out_head = 0;
  }
  c.out.insert(c.out.end(), payload.begin(), payload.end());
  if (!flush(c)) return reset_conn(c);
  refresh(c);
  if (Conn* still = find({c.local_port, c.peer_port})) check_done(*still);
}

void VirtioVsock::guest_shutdown(Conn& c, uint32_t flags) {
  if (flags & kShutdownRcv) c.guest_shut_rcv = true;
  if (flags & kShutdownSend) c.guest_shut_send = true;
  const Key key{c.local_port, c.peer_port};
  refresh(c);
  if (Conn* still = find(key)) check_done(*still);
}

void VirtioVsock::queue_rst_for(const VsockHeader& h) {
  if (rst_out_.size() >= kMaxPendingRst) return;  // the guest's own timeout ends it
  VsockHeader rst{};
  rst.src_cid = kHostCid;
  rst.dst_cid = guest_cid_;
  rst.src_port = h.dst_port;
  rst.dst_port = h.src_port;
  rst.type = kTypeStream;
  rst.op = kOpRst;
  rst_out_.push_back(rst);
}

// ---- worker: connection state ----

VirtioVsock::Conn* VirtioVsock::find(Key key) {
  const auto it = conns_.find(key);
  return it == conns_.end() ? nullptr : &it->second;
}

void VirtioVsock::make_ready(Conn& c) {
  if (c.queued) return;
  c.queued = true;
  ready_.emplace_back(c.local_port, c.peer_port);
}

bool VirtioVsock::data_ready(const Conn& c) const {
  return c.state == State::kEstablished && c.host_readable && !c.host_eof && !c.guest_shut_rcv &&
         peer_credit(c) > 0;
}

uint32_t VirtioVsock::peer_credit(const Conn& c) const {
  const uint32_t in_flight = c.tx_cnt - c.peer_fwd_cnt;  // wraps as the counters do
  return in_flight >= c.peer_buf_alloc ? 0 : c.peer_buf_alloc - in_flight;
}

void VirtioVsock::refresh(Conn& c) {
  const bool wants_data = c.state == State::kEstablished && c.host_readable && !c.host_eof &&
                          !c.guest_shut_rcv;
  if (wants_data && peer_credit(c) == 0 && !c.credit_requested) {
    c.credit_requested = true;  // the guest's buffer is full: ask when it has room
    c.pending |= kPendCreditRequest;
  }
  if (c.pending != 0 || data_ready(c)) make_ready(c);
  update_interest(c);
}

void VirtioVsock::input_drained(Conn& c) {
  // After a hangup the socket is out of the loop, and nothing would say when to read again:
  // it is read until its end of file instead (a closed peer's socket never blocks). The
  // caller updates the fd's interest.
  if (c.polled) c.host_readable = false;
}

void VirtioVsock::update_interest(Conn& c) {
  if (!c.polled || c.fd < 0) return;
  uint32_t interest = 0;
  const bool reading = c.state == State::kEstablished && !c.guest_shut_rcv;
  if (reading && !c.host_readable && !c.host_eof) interest |= EventLoop::kIn;
  if (c.out_head < c.out.size()) interest |= EventLoop::kOut;
  worker_.loop().modify(c.fd, interest);
}

void VirtioVsock::check_done(Conn& c) {
  if (c.out_head < c.out.size()) return;  // guest data still waits for the socket
  if (c.guest_shut_send && !c.wr_shut) {
    ::shutdown(c.fd, SHUT_WR);
    c.wr_shut = true;
  }
  // Both directions over (the guest closed, or each side stopped sending): end it with RST,
  // as a peer does once it has nothing left to read (§5.10.6.5).
  if (c.guest_shut_send && (c.guest_shut_rcv || c.host_eof)) reset_conn(c);
}

void VirtioVsock::establish(Conn& c) {
  c.state = State::kEstablished;
  const std::string ok = "OK " + std::to_string(c.local_port) + "\n";
  if (::send(c.fd, ok.data(), ok.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
      static_cast<ssize_t>(ok.size())) {
    return reset_conn(c);  // the client went away (a fresh socket takes 16 bytes)
  }
  spdlog::debug("virtio-vsock: host port {} connected to guest port {}", c.local_port,
                c.peer_port);
  refresh(c);
}

void VirtioVsock::reset_conn(Conn& c) {
  VsockHeader h{};
  h.src_port = c.peer_port;  // as if from the guest: queue_rst_for swaps them
  h.dst_port = c.local_port;
  queue_rst_for(h);
  close_conn({c.local_port, c.peer_port});
}

void VirtioVsock::close_conn(Key key) {
  const auto it = conns_.find(key);
  if (it == conns_.end()) return;
  Conn& c = it->second;
  if (c.fd >= 0) {
    if (c.polled) worker_.loop().remove(c.fd);
    ::close(c.fd);
  }
  conns_.erase(it);  // a stale entry in ready_ is skipped
  open_.store(static_cast<uint32_t>(conns_.size()), std::memory_order_relaxed);
}

bool VirtioVsock::flush(Conn& c) {
  while (c.out_head < c.out.size()) {
    const ssize_t n = ::send(c.fd, c.out.data() + c.out_head, c.out.size() - c.out_head,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      c.out_head += static_cast<size_t>(n);
      c.fwd_cnt += static_cast<uint32_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
    return false;
  }
  if (c.out_head == c.out.size()) {
    c.out.clear();
    c.out_head = 0;
  }
  // The guest may wait for room: tell it once its view of our buffer is half used up.
  const uint32_t guest_view_used = c.rx_cnt - c.last_fwd_cnt_sent;
  if (c.fwd_cnt != c.last_fwd_cnt_sent && guest_view_used > options_.buf_alloc / 2) {
    c.pending |= kPendCreditUpdate;
  }
  return true;
}

VsockHeader VirtioVsock::header_for(Conn& c, uint16_t op) {
  VsockHeader h{};
  h.src_cid = kHostCid;
  h.dst_cid = guest_cid_;
  h.src_port = c.local_port;
  h.dst_port = c.peer_port;
  h.type = kTypeStream;
  h.op = op;
  h.buf_alloc = options_.buf_alloc;
  h.fwd_cnt = c.fwd_cnt;
  c.last_fwd_cnt_sent = c.fwd_cnt;  // every packet tells the guest our credit
  c.pending &= ~kPendCreditUpdate;
  return h;
}

// ---- worker: host sockets ----

void VirtioVsock::on_accept() {
  for (uint32_t i = 0; i < kBudget; ++i) {
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;  // EAGAIN, or the client already gave up
    if (conns_.size() + handshakes_.size() >= options_.max_connections) {
      spdlog::warn("virtio-vsock: {} connections are open; refused a host connection",
                   options_.max_connections);
      ::close(fd);
      continue;
    }
    const uint64_t id = next_handshake_++;
    Conn c;
    c.fd = fd;
    c.host_initiated = true;
    c.deadline = std::chrono::steady_clock::now() + options_.handshake_timeout;
    handshakes_.emplace(id, std::move(c));
    worker_.loop().add(fd, EventLoop::kIn,
                       [this, id](uint32_t events) { on_handshake_event(id, events); });
    arm_timer();
  }
}

// The CONNECT line, read a byte at a time so that nothing after it is taken from the socket.
void VirtioVsock::on_handshake_event(uint64_t id, uint32_t events) {
  const auto it = handshakes_.find(id);
  if (it == handshakes_.end()) return;
  Conn& h = it->second;
  while (h.line.size() < kMaxConnectLine) {
    char ch;
    const ssize_t n = ::recv(h.fd, &ch, 1, MSG_DONTWAIT);
    if (n < 0 && would_block(errno)) {
      if (events & (EventLoop::kHangup | EventLoop::kError)) close_handshake(id);
      return;
    }
    if (n <= 0) return close_handshake(id);  // closed, or failed, before its line
    if (ch != '\n') {
      h.line.push_back(ch);
      continue;
    }
    const std::optional<uint32_t> port = parse_connect(h.line);
    if (!port) {
      spdlog::warn("virtio-vsock: a host connection sent no CONNECT <port> line; closed");
      return close_handshake(id);
    }
    Conn c = std::move(h);
    handshakes_.erase(it);
    worker_.loop().remove(c.fd);
    c.line.clear();
    c.state = State::kConnecting;
    c.local_port = alloc_host_port();
    c.peer_port = *port;
    c.deadline = std::chrono::steady_clock::now() + options_.handshake_timeout;
    c.pending = kPendRequest;
    const Key key{c.local_port, c.peer_port};
    const int fd = c.fd;
    Conn& conn = conns_.emplace(key, std::move(c)).first->second;
    open_.store(static_cast<uint32_t>(conns_.size()), std::memory_order_relaxed);
    worker_.loop().add(fd, 0, [this, key](uint32_t ev) { on_conn_event(key, ev); });
    refresh(conn);
    serve_rx();
    return;
  }
  spdlog::warn("virtio-vsock: a host connection's CONNECT line is over {} bytes; closed",
               kMaxConnectLine);
  close_handshake(id);
}

void VirtioVsock::close_handshake(uint64_t id) {
  const auto it = handshakes_.find(id);
  if (it == handshakes_.end()) return;
  worker_.loop().remove(it->second.fd);
  ::close(it->second.fd);
  handshakes_.erase(it);
}

void VirtioVsock::on_conn_event(Key key, uint32_t events) {
  Conn* c = find(key);
  if (c == nullptr) return;
  if (events & EventLoop::kError) return reset_conn(*c);
  if (events & EventLoop::kOut) {
    if (!flush(*c)) return reset_conn(*c);
  }
  if (events & EventLoop::kIn) c->host_readable = true;
  if (events & EventLoop::kHangup) {
    // The peer closed: what it sent is read to the end of file; the socket is not polled
    // any more (a hangup is reported for as long as the fd is in the loop).
    worker_.loop().remove(c->fd);
    c->polled = false;
    c->host_readable = true;
    if (c->out_head < c->out.size()) return reset_conn(*c);  // guest data has nowhere to go
  }
  refresh(*c);
  if ((c = find(key)) != nullptr) check_done(*c);
  serve_rx();
}

void VirtioVsock::arm_timer() {
  if (timer_added_) return;
  worker_.loop().add(timer_fd_, EventLoop::kIn, [this](uint32_t) { on_timer(); });
  timer_added_ = true;
}

void VirtioVsock::on_timer() {
  uint64_t ticks;
  [[maybe_unused]] const ssize_t n = ::read(timer_fd_, &ticks, sizeof(ticks));
  const auto now = std::chrono::steady_clock::now();
  std::vector<uint64_t> late_lines;
  for (const auto& [id, h] : handshakes_) {
    if (h.deadline <= now) late_lines.push_back(id);
  }
  for (uint64_t id : late_lines) {
    spdlog::warn("virtio-vsock: a host connection sent no CONNECT line in time; closed");
    close_handshake(id);
  }
  std::vector<Key> late;
  for (const auto& [key, c] : conns_) {
    if (c.state == State::kConnecting && c.deadline <= now) late.push_back(key);
  }
  for (const Key& key : late) {
    spdlog::debug("virtio-vsock: guest port {} did not answer in time", key.second);
    if (Conn* c = find(key)) reset_conn(*c);  // the unix client sees its socket close
  }
  const bool waiting =
      !handshakes_.empty() || std::any_of(conns_.begin(), conns_.end(), [](const auto& kv) {
        return kv.second.state == State::kConnecting;
      });
  if (!waiting) {
    worker_.loop().remove(timer_fd_);
    timer_added_ = false;
  }
  serve_rx();
}

uint32_t VirtioVsock::alloc_host_port() {
  // At most max_connections ports are in use, so a free one comes within that many tries.
  while (true) {
    const uint32_t port = next_host_port_;
    next_host_port_ = next_host_port_ >= 0xfffffffe ? kFirstHostPort : next_host_port_ + 1;
    const auto it = conns_.lower_bound({port, 0});
    if (it == conns_.end() || it->first.first != port) return port;
  }
}

void VirtioVsock::drop_all() {
  for (auto& [key, c] : conns_) {
    if (c.polled) worker_.loop().remove(c.fd);
    ::close(c.fd);
  }
  for (auto& [id, h] : handshakes_) {
    worker_.loop().remove(h.fd);
    ::close(h.fd);
  }
  conns_.clear();
  handshakes_.clear();
  ready_.clear();
  rst_out_.clear();
  open_.store(0, std::memory_order_relaxed);
}

void VirtioVsock::warn_once(const std::string& what) {
  constexpr uint32_t kMaxWarnings = 8;
  if (warnings_ >= kMaxWarnings || !warned_.insert(what).second) return;
  ++warnings_;
  spdlog::warn("virtio-vsock: {}{}", what,
               warnings_ == kMaxWarnings ? " (further driver errors are not logged)" : "");
}

}  // namespace minivmm::devices
