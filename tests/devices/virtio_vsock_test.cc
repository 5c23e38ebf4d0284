// virtio-vsock: host-initiated connections (CONNECT line, OK answer, RST, bad lines and
// timeouts), guest-initiated ones to PATH_P, data both ways, credit flow control in both
// directions, a guest with no receive buffers (no busy wait, delivered later), SHUTDOWN,
// hostile packets, and reset with connections open. The test is the driver, through
// DriverQueue; the device runs on its worker.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio_vsock.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using minivmm::devices::VirtioVsock;
using minivmm::devices::VsockHeader;
using minivmm::test::Buf;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;
namespace virtio = minivmm::virtio;
using V = VirtioVsock;

namespace {

constexpr uint64_t kRam = 16 << 20;
constexpr uint64_t kCid = 3;
constexpr uint32_t kRxBuf = 4096 + 44;

bool eventually(const std::function<bool()>& done, int ms = 5000) {
  for (int i = 0; i < ms; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

class Interrupts final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t) override { used.fetch_add(1); }
  bool set_needs_reset() override {
    needs_reset.fetch_add(1);
    return true;
  }
  std::atomic<int> used{0};
  std::atomic<int> needs_reset{0};
};

struct Packet {
  VsockHeader h;
  std::string data;
};

VsockHeader guest_hdr(uint16_t op, uint32_t src_port, uint32_t dst_port, uint32_t buf_alloc = 65536,
                      uint32_t fwd_cnt = 0) {
  VsockHeader h{};
  h.src_cid = kCid;
  h.dst_cid = V::kHostCid;
  h.src_port = src_port;
  h.dst_port = dst_port;
  h.type = V::kTypeStream;
  h.op = op;
  h.buf_alloc = buf_alloc;
  h.fwd_cnt = fwd_cnt;
  return h;
}

// A temporary directory for the sockets, removed with what is in it.
struct TempDir {
  TempDir() {
    char name[] = "/tmp/minivmm-vsock-XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() {
    if (DIR* d = ::opendir(path.c_str())) {
      while (dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") ::unlink((path + "/" + n).c_str());
      }
      ::closedir(d);
    }
    ::rmdir(path.c_str());
  }
  std::string path;
};

sockaddr_un unix_addr(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.c_str(), path.size());
  return a;
}

int connect_unix(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const sockaddr_un a = unix_addr(path);
  REQUIRE(::connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0);
  return fd;
}

int listen_at(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(fd >= 0);
  const sockaddr_un a = unix_addr(path);
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&a), sizeof(a)) == 0);
  REQUIRE(::listen(fd, 4) == 0);
  return fd;
}

void write_all(int fd, const std::string& s) {
  REQUIRE(::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(s.size()));
}

// Reads until `n` bytes, end of file or `ms` passed.
std::string read_some(int fd, size_t n, int ms = 5000) {
  std::string out;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (out.size() < n && std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10) <= 0) continue;
    char buf[65536];
    const ssize_t r = ::recv(fd, buf, std::min(sizeof(buf), n - out.size()), MSG_DONTWAIT);
    if (r == 0) break;
    if (r > 0) out.append(buf, static_cast<size_t>(r));
  }
  return out;
}

// True when the peer closed `fd` within `ms` (what was sent before is read and dropped).
bool sees_eof(int fd, int ms = 5000) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  while (std::chrono::steady_clock::now() < end) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 10) <= 0) continue;
    char buf[4096];
    const ssize_t r = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno == ECONNRESET)) return true;
  }
  return false;
}

// The driver: the three queues in fake guest RAM and a bump allocator for buffers.
class VsockDriver {
 public:
  explicit VsockDriver(VirtioVsock& dev) : dev_(dev) {
    for (size_t i = 0; i < 3; ++i) {
      queues_.emplace_back(V::kQueueSize);
      events_.emplace_back();
      drivers_.push_back(std::make_unique<DriverQueue>(guest_, 256, 0x10000 * (i + 1)));
    }
  }
  ~VsockDriver() { dev_.reset(); }

  void activate() {
    dev_.set_acked_features(dev_.device_features());
    for (size_t i = 0; i < 3; ++i) drivers_[i]->configure(queues_[i], true, true);
    REQUIRE_FALSE(dev_.activate(virtio::ActivateContext{guest_.mem(), queues_, events_, irq}));
  }
  uint64_t alloc(uint32_t len) {
    if (next_ + len >= kRam) next_ = 0x400000;  // reused: the test reads each packet once
    const uint64_t addr = next_;
    next_ += (len + 63) & ~uint64_t{63};
    return addr;
  }
  void post_rx(int n, uint32_t len = kRxBuf) {
    for (int i = 0; i < n; ++i) drivers_[V::kRxQueue]->add_chain({{alloc(len), len, true}});
    events_[V::kRxQueue].signal();
  }
  // A packet on the transmit queue: header and payload in one buffer, or in two.
  void send(VsockHeader h, const std::string& payload = "", bool split = false) {
    if (h.len == 0) h.len = static_cast<uint32_t>(payload.size());
    std::string bytes(reinterpret_cast<const char*>(&h), sizeof(h));
    const uint64_t a = alloc(static_cast<uint32_t>(sizeof(h) + payload.size()));
    if (split) {
      std::memcpy(guest_.host(a), &h, sizeof(h));
      const uint64_t b = alloc(static_cast<uint32_t>(payload.size() + 1));
      std::memcpy(guest_.host(b), payload.data(), payload.size());
      drivers_[V::kTxQueue]->add_chain(
          {{a, static_cast<uint32_t>(sizeof(h)), false},
           {b, static_cast<uint32_t>(payload.size()), false}});
    } else {
      bytes += payload;
      std::memcpy(guest_.host(a), bytes.data(), bytes.size());
      drivers_[V::kTxQueue]->add_chain({{a, static_cast<uint32_t>(bytes.size()), false}});
    }
    ++sent_;
    events_[V::kTxQueue].signal();
  }
  void send_raw(const std::vector<Buf>& bufs) {
    drivers_[V::kTxQueue]->add_chain(bufs);
    ++sent_;
    events_[V::kTxQueue].signal();
  }
  // Packets the device put on the rx queue, waiting up to `ms` for at least `n`.
  std::vector<Packet> packets(size_t n, int ms = 5000) {
    eventually(
        [&] {
          for (const auto& u : drivers_[V::kRxQueue]->take_used()) {
            const uint64_t addr = drivers_[V::kRxQueue]->read_desc(static_cast<uint16_t>(u.id)).addr;
            Packet p{};
            if (u.len >= sizeof(VsockHeader)) {
              std::memcpy(&p.h, guest_.host(addr), sizeof(VsockHeader));
              p.data.assign(reinterpret_cast<const char*>(guest_.host(addr)) + sizeof(VsockHeader),
                            u.len - sizeof(VsockHeader));
            }
            seen_.push_back(p);
          }
          return seen_.size() >= n;
        },
        ms);
    auto out = std::move(seen_);
    seen_.clear();
    return out;
  }
  Packet packet() {
    auto ps = packets(1);
    REQUIRE(ps.size() >= 1);
    if (ps.size() > 1) seen_.insert(seen_.end(), ps.begin() + 1, ps.end());
    return ps[0];
  }
  // Every transmit chain sent so far came back.
  bool tx_done(int ms = 5000) {
    return eventually(
        [&] {
          tx_used_ += drivers_[V::kTxQueue]->take_used().size();
          return tx_used_ == sent_;
        },
        ms);
  }

  FakeGuestMemory guest_{kRam};
  Interrupts irq;

 private:
  VirtioVsock& dev_;
  std::vector<virtio::Queue> queues_;
  std::vector<virtio::EventFd> events_;
  std::vector<std::unique_ptr<DriverQueue>> drivers_;
  std::vector<Packet> seen_;
  uint64_t next_ = 0x400000;
  size_t sent_ = 0;
  size_t tx_used_ = 0;
};

struct Fixture {
  explicit Fixture(V::Options o = {})
      : path(dir.path + "/v.sock"),
        dev(kCid, minivmm::devices::vsock_listen(path), path, o),
        drv(dev) {
    drv.activate();
  }
  // A host connection through CONNECT to guest `port`, answered by the guest: returns the
  // client fd and the host port.
  std::pair<int, uint32_t> host_connect(uint32_t port, uint32_t guest_buf = 65536) {
    const int fd = connect_unix(path);
    write_all(fd, "CONNECT " + std::to_string(port) + "\n");
    const Packet req = drv.packet();
    REQUIRE(req.h.op == V::kOpRequest);
    REQUIRE(req.h.dst_port == port);
    const uint32_t host_port = req.h.src_port;
    drv.send(guest_hdr(V::kOpResponse, port, host_port, guest_buf));
    REQUIRE(read_some(fd, 3 + std::to_string(host_port).size() + 1) ==
            "OK " + std::to_string(host_port) + "\n");
    return {fd, host_port};
  }
  TempDir dir;
  std::string path;
  VirtioVsock dev;
  VsockDriver drv;
};

}  // namespace

TEST_CASE("vsock: device type, features, config and bad arguments") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  VirtioVsock dev(7, minivmm::devices::vsock_listen(path), path);
  CHECK(dev.device_type() == 19);
  CHECK(dev.queue_max_sizes().size() == 3);
  const uint64_t f = dev.device_features();
  CHECK(virtio::has_feature(f, virtio::kFVersion1));
  CHECK(virtio::has_feature(f, V::kFStream));
  CHECK_FALSE(virtio::has_feature(f, 1));  // no SEQPACKET
  uint8_t cfg[8];
  dev.read_config(0, cfg);
  CHECK(cfg[0] == 7);
  CHECK(cfg[1] == 0);
  uint8_t hi[4];
  dev.read_config(4, hi);
  CHECK(hi[0] == 0);
  CHECK_THROWS_AS(VirtioVsock(2, -1, path + "x"), std::invalid_argument);
  CHECK_THROWS_AS(VirtioVsock(0xffffffff, -1, path + "x"), std::invalid_argument);
  CHECK_THROWS_AS(VirtioVsock(3, -1, std::string(100, 'a')), std::invalid_argument);
  CHECK_THROWS_AS(minivmm::devices::vsock_listen("/tmp"), std::system_error);  // not a socket
}

TEST_CASE("vsock: a host connection with CONNECT, data both ways") {
  Fixture f;
  f.drv.post_rx(16);
  auto [fd, host_port] = f.host_connect(5000);
  CHECK(host_port >= V::kFirstHostPort);
  CHECK(f.dev.connections() == 1);
  // host -> guest
  write_all(fd, "hello");
  Packet p = f.drv.packet();
  CHECK(p.h.op == V::kOpRw);
  CHECK(p.h.src_cid == V::kHostCid);
  CHECK(p.h.dst_cid == kCid);
  CHECK(p.h.src_port == host_port);
  CHECK(p.h.dst_port == 5000);
  CHECK(p.h.type == V::kTypeStream);
  CHECK(p.h.buf_alloc == V::Options{}.buf_alloc);
  CHECK(p.data == "hello");
  // guest -> host, in one buffer and split
  f.drv.send(guest_hdr(V::kOpRw, 5000, host_port), "world");
  f.drv.send(guest_hdr(V::kOpRw, 5000, host_port), "!!", true);
  CHECK(read_some(fd, 7) == "world!!");
  CHECK(f.drv.tx_done());
  // The host closes: the guest is told it sends no more, and a guest close ends it.
  ::close(fd);
  p = f.drv.packet();
  CHECK(p.h.op == V::kOpShutdown);
  CHECK(p.h.flags == V::kShutdownSend);
  VsockHeader close_both = guest_hdr(V::kOpShutdown, 5000, host_port);
  close_both.flags = V::kShutdownRcv | V::kShutdownSend;
  f.drv.send(close_both);
  p = f.drv.packet();
  CHECK(p.h.op == V::kOpRst);
  CHECK(eventually([&] { return f.dev.connections() == 0; }));
}

TEST_CASE("vsock: a host connection to a guest port nobody listens on is closed") {
  Fixture f;
  f.drv.post_rx(8);
  const int fd = connect_unix(f.path);
  write_all(fd, "CONNECT 5001\n");
  const Packet req = f.drv.packet();
  REQUIRE(req.h.op == V::kOpRequest);
  f.drv.send(guest_hdr(V::kOpRst, 5001, req.h.src_port, 0));
  CHECK(sees_eof(fd));
  CHECK(eventually([&] { return f.dev.connections() == 0; }));
  ::close(fd);
}

TEST_CASE("vsock: a bad or long CONNECT line, no line, or no answer closes the connection") {
  V::Options o;
  o.handshake_timeout = std::chrono::milliseconds(300);
  Fixture f(o);
  f.drv.post_rx(8);
  for (const std::string& line :
       {std::string("HELLO 5000\n"), std::string("CONNECT 5x\n"), std::string("CONNECT \n"),
        std::string("CONNECT 4294967295\n"), std::string("CONNECT 99999999999\n"),
        std::string(40, '1')}) {
    INFO(line);
    const int fd = connect_unix(f.path);
    write_all(fd, line);
    CHECK(sees_eof(fd, 2000));
    ::close(fd);
  }
  // No line at all: the timeout.
  const int quiet = connect_unix(f.path);
  CHECK(sees_eof(quiet, 3000));
  ::close(quiet);
  // A REQUEST the guest never answers: the client is closed, the guest gets RST.
  const int fd = connect_unix(f.path);
  write_all(fd, "CONNECT 5002\n");
  const Packet req = f.drv.packet();
  CHECK(req.h.op == V::kOpRequest);
  CHECK(sees_eof(fd, 3000));
  const Packet rst = f.drv.packet();
  CHECK(rst.h.op == V::kOpRst);
  CHECK(rst.h.src_port == req.h.src_port);
  CHECK(rst.h.dst_port == 5002);
  ::close(fd);
  f.drv.packets(0, 10);
  CHECK(f.dev.connections() == 0);
}

TEST_CASE("vsock: a guest connection goes to PATH_P, both ways, RST when nobody listens") {
  Fixture f;
  f.drv.post_rx(16);
  const int listener = listen_at(f.path + "_6000");
  f.drv.send(guest_hdr(V::kOpRequest, 1234, 6000));
  Packet p = f.drv.packet();
  CHECK(p.h.op == V::kOpResponse);
  CHECK(p.h.src_port == 6000);
  CHECK(p.h.dst_port == 1234);
  const int peer = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(peer >= 0);
  f.drv.send(guest_hdr(V::kOpRw, 1234, 6000), "ping");
  CHECK(read_some(peer, 4) == "ping");
  write_all(peer, "pong");
  p = f.drv.packet();
  CHECK(p.h.op == V::kOpRw);
  CHECK(p.data == "pong");
  CHECK(p.h.fwd_cnt == 4);  // the guest's "ping" reached the socket
  // Nobody at PATH_6001.
  f.drv.send(guest_hdr(V::kOpRequest, 1235, 6001));
  p = f.drv.packet();
  CHECK(p.h.op == V::kOpRst);
  CHECK(p.h.src_port == 6001);
  CHECK(p.h.dst_port == 1235);
  CHECK(f.dev.connections() == 1);
  // The guest shuts its sending side: the host reads the end of file and may still write.
  VsockHeader sh = guest_hdr(V::kOpShutdown, 1234, 6000);
  sh.flags = V::kShutdownSend;
  f.drv.send(sh);
  CHECK(sees_eof(peer));
  write_all(peer, "late");
  p = f.drv.packet();
  CHECK(p.data == "late");
  // Then the host closes too: SHUTDOWN to the guest, and RST since both sides are done.
  ::close(peer);
  auto ps = f.drv.packets(2);
  REQUIRE(ps.size() == 2);
  CHECK(ps[0].h.op == V::kOpShutdown);
  CHECK(ps[1].h.op == V::kOpRst);
  CHECK(eventually([&] { return f.dev.connections() == 0; }));
  ::close(listener);
}

TEST_CASE("vsock: host data never exceeds the guest's credit, and resumes after CREDIT_UPDATE") {
  Fixture f;
  f.drv.post_rx(32);
  auto [fd, host_port] = f.host_connect(5000, 1000);  // the guest buffers 1000 bytes
  write_all(fd, std::string(5000, 'x'));
  auto received = [&](int ms) {
    size_t got = 0;
    bool asked = false;
    for (const Packet& p : f.drv.packets(64, ms)) {
      if (p.h.op == V::kOpRw) got += p.data.size();
      if (p.h.op == V::kOpCreditRequest) asked = true;
    }
    return std::pair{got, asked};
  };
  const auto [first, asked] = received(300);
  CHECK(first == 1000);  // exactly the credit, not a byte more
  CHECK(asked);          // and the device asks for more
  // The guest read 600 bytes.
  f.drv.send(guest_hdr(V::kOpCreditUpdate, 5000, host_port, 1000, 600));
  CHECK(received(300).first == 600);
  // It read them all and grew its buffer.
  f.drv.send(guest_hdr(V::kOpCreditUpdate, 5000, host_port, 100000, 1600));
  CHECK(received(300).first == 3400);
  // Its CREDIT_REQUEST gets our buf_alloc and fwd_cnt.
  f.drv.send(guest_hdr(V::kOpRw, 5000, host_port, 100000, 5000), "abc");
  CHECK(read_some(fd, 3) == "abc");
  f.drv.send(guest_hdr(V::kOpCreditRequest, 5000, host_port, 100000, 5000));
  const Packet up = f.drv.packet();
  CHECK(up.h.op == V::kOpCreditUpdate);
  CHECK(up.h.fwd_cnt == 3);
  CHECK(up.h.buf_alloc == V::Options{}.buf_alloc);
  ::close(fd);
}

// The host writes and closes while the guest has no credit: what is left in the socket
// after the hangup arrives in short reads, and the end of file still follows (it once did
// not: a short read after the hangup stopped the reading, and the guest waited forever).
TEST_CASE("vsock: after the host closes, the rest of its data and the end of file arrive") {
  Fixture f;
  f.drv.post_rx(32);
  auto [fd, host_port] = f.host_connect(5000, 1000);  // the guest buffers 1000 bytes
  write_all(fd, std::string(1500, 'y'));
  size_t got = 0;
  for (const Packet& p : f.drv.packets(64, 300)) {
    if (p.h.op == V::kOpRw) got += p.data.size();
  }
  CHECK(got == 1000);
  ::close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the device sees the hangup
  f.drv.send(guest_hdr(V::kOpCreditUpdate, 5000, host_port, 1000, 1000));
  bool shutdown = false;
  for (const Packet& p : f.drv.packets(64, 500)) {
    if (p.h.op == V::kOpRw) got += p.data.size();
    if (p.h.op == V::kOpShutdown && p.h.flags == V::kShutdownSend) shutdown = true;
  }
  CHECK(got == 1500);
  CHECK(shutdown);
}

TEST_CASE("vsock: a guest that sends past the device's credit is reset") {
  V::Options o;
  o.buf_alloc = 64 * 1024;
  Fixture f(o);
  f.drv.post_rx(8);
  const int listener = listen_at(f.path + "_7000");
  f.drv.send(guest_hdr(V::kOpRequest, 1, 7000));
  REQUIRE(f.drv.packet().h.op == V::kOpResponse);
  const int peer = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(peer >= 0);
  int small = 4096;
  ::setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  // The host does not read; the guest ignores the credit (64 KiB) and keeps sending.
  const std::string chunk(32 * 1024, 'y');
  for (int i = 0; i < 64; ++i) f.drv.send(guest_hdr(V::kOpRw, 1, 7000), chunk);
  CHECK(f.drv.tx_done());
  // CREDIT_UPDATEs may come first, as the socket took some.
  bool reset = false;
  for (const Packet& p : f.drv.packets(64, 300)) {
    CHECK((p.h.op == V::kOpRst || p.h.op == V::kOpCreditUpdate));
    reset = reset || (p.h.op == V::kOpRst && p.h.src_port == 7000);
  }
  CHECK(reset);
  CHECK(sees_eof(peer));
  ::close(peer);
  ::close(listener);
}

namespace {
// CPU time (user + system, clock ticks) of this process's thread named `name`.
long thread_cpu(const std::string& name) {
  DIR* d = ::opendir("/proc/self/task");
  long total = -1;
  while (dirent* e = ::readdir(d)) {
    const std::string tid = e->d_name;
    if (tid == "." || tid == "..") continue;
    std::ifstream comm("/proc/self/task/" + tid + "/comm");
    std::string n;
    std::getline(comm, n);
    if (n != name) continue;
    std::ifstream stat("/proc/self/task/" + tid + "/stat");
    std::string s((std::istreambuf_iterator<char>(stat)), {});
    const std::string rest = s.substr(s.rfind(')') + 2);
    std::vector<std::string> fields;
    size_t pos = 0;
    while (pos < rest.size()) {
      const size_t sp = rest.find(' ', pos);
      fields.push_back(rest.substr(pos, sp - pos));
      if (sp == std::string::npos) break;
      pos = sp + 1;
    }
    total = std::max(total, 0L) + std::stol(fields[11]) + std::stol(fields[12]);  // utime, stime
  }
  ::closedir(d);
  return total;
}
}  // namespace

TEST_CASE("vsock: host data waits for receive buffers without a busy wait, then arrives") {
  Fixture f;
  f.drv.post_rx(1);
  auto [fd, host_port] = f.host_connect(5000);
  // No receive buffer is posted now; host data arrives.
  write_all(fd, "waiting data");
  const long before = thread_cpu("vsock");
  REQUIRE(before >= 0);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const long spent = thread_cpu("vsock") - before;
  CHECK(spent <= 5);  // clock ticks (10 ms each): the worker sleeps
  CHECK(f.drv.packets(1, 10).empty());
  // The guest posts buffers later: the device delivers (woken by the rx notification).
  f.drv.post_rx(4);
  const Packet p = f.drv.packet();
  CHECK(p.h.op == V::kOpRw);
  CHECK(p.data == "waiting data");
  ::close(fd);
}

TEST_CASE("vsock: hostile packets are dropped or answered with RST, every chain completes") {
  Fixture f;
  f.drv.post_rx(64);
  auto [fd, host_port] = f.host_connect(5000);

  SECTION("len larger than the chain (CVE-2019-18960) resets the connection") {
    VsockHeader h = guest_hdr(V::kOpRw, 5000, host_port);
    h.len = 1 << 20;
    f.drv.send(h, "short");
    const Packet p = f.drv.packet();
    CHECK(p.h.op == V::kOpRst);
    CHECK(p.h.dst_port == 5000);
    CHECK(sees_eof(fd));
  }
  SECTION("len past 64 KiB in a chain that holds it resets too") {
    VsockHeader h = guest_hdr(V::kOpRw, 5000, host_port);
    h.len = V::kMaxPayload + 1;
    f.drv.send(h, std::string(V::kMaxPayload + 1, 'z'));
    CHECK(f.drv.packet().h.op == V::kOpRst);
    CHECK(sees_eof(fd));
  }
  SECTION("short headers, wrong CIDs and RSTs for nothing get no answer") {
    const uint64_t a = f.drv.alloc(64);
    f.drv.send_raw({{a, 20, false}});              // shorter than a header
    f.drv.send_raw({{a, 44, true}});               // a device-writable buffer only
    f.drv.send_raw({{0xffff0000, 44, false}});     // outside guest RAM
    VsockHeader wrong_src = guest_hdr(V::kOpRequest, 1, 2);
    wrong_src.src_cid = 4;
    f.drv.send(wrong_src);
    VsockHeader wrong_dst = guest_hdr(V::kOpRequest, 1, 2);
    wrong_dst.dst_cid = 5;
    f.drv.send(wrong_dst);
    f.drv.send(guest_hdr(V::kOpRst, 77, 88));      // never a RST for a RST
    CHECK(f.drv.tx_done());
    CHECK(f.drv.packets(1, 200).empty());
    CHECK(f.dev.connections() == 1);
  }
  SECTION("unknown connections, bad ops and bad types get RST") {
    f.drv.send(guest_hdr(V::kOpRw, 9, 10), "data");
    f.drv.send(guest_hdr(V::kOpShutdown, 9, 11));
    f.drv.send(guest_hdr(V::kOpCreditRequest, 9, 12));
    f.drv.send(guest_hdr(99, 9, 13));
    VsockHeader seq = guest_hdr(V::kOpRequest, 9, 14);
    seq.type = 2;  // SEQPACKET, not offered
    f.drv.send(seq);
    auto ps = f.drv.packets(5);
    REQUIRE(ps.size() == 5);
    for (uint32_t i = 0; i < 5; ++i) {
      CHECK(ps[i].h.op == V::kOpRst);
      CHECK(ps[i].h.src_port == 10 + i);
      CHECK(ps[i].h.dst_port == 9);
    }
    // A bad op on a live connection resets it.
    f.drv.send(guest_hdr(0, 5000, host_port));
    CHECK(f.drv.packet().h.op == V::kOpRst);
    CHECK(sees_eof(fd));
  }
  CHECK(f.drv.tx_done());
  CHECK(f.drv.irq.needs_reset == 0);
  ::close(fd);
}

TEST_CASE("vsock: reset with connections open closes them, the device works again after") {
  Fixture f;
  f.drv.post_rx(16);
  auto [fd, host_port] = f.host_connect(5000);
  const int listener = listen_at(f.path + "_6000");
  f.drv.send(guest_hdr(V::kOpRequest, 1234, 6000));
  CHECK(f.drv.packet().h.op == V::kOpResponse);
  const int peer = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  REQUIRE(peer >= 0);
  const int waiting = connect_unix(f.path);  // before its CONNECT line
  CHECK(eventually([&] { return f.dev.connections() == 2; }));
  f.dev.reset();
  CHECK(f.dev.connections() == 0);
  CHECK(sees_eof(fd));
  CHECK(sees_eof(peer));
  CHECK(sees_eof(waiting));
  for (int x : {fd, peer, waiting, listener}) ::close(x);
  // The path still listens; a new activation serves it.
  VsockDriver again(f.dev);
  again.activate();
  again.post_rx(4);
  const int c = connect_unix(f.path);
  write_all(c, "CONNECT 42\n");
  const Packet req = again.packet();
  CHECK(req.h.op == V::kOpRequest);
  CHECK(req.h.dst_port == 42);
  ::close(c);
}

TEST_CASE("vsock: the device removes its socket, too many connections are refused") {
  TempDir dir;
  const std::string path = dir.path + "/v.sock";
  {
    V::Options o;
    o.max_connections = 2;
    VirtioVsock dev(kCid, minivmm::devices::vsock_listen(path), path, o);
    VsockDriver drv(dev);
    drv.activate();
    drv.post_rx(16);
    const int l = listen_at(path + "_1");
    for (uint32_t port : {100u, 101u, 102u}) drv.send(guest_hdr(V::kOpRequest, port, 1));
    std::map<uint32_t, uint16_t> op_to;  // guest port -> the answer
    for (const Packet& p : drv.packets(3)) op_to[p.h.dst_port] = p.h.op;
    CHECK(op_to == std::map<uint32_t, uint16_t>{
                       {100, V::kOpResponse}, {101, V::kOpResponse}, {102, V::kOpRst}});
    const int host = connect_unix(path);  // refused: closed at once
    CHECK(sees_eof(host));
    ::close(host);
    ::close(l);
  }
  CHECK(::access(path.c_str(), F_OK) != 0);
}
