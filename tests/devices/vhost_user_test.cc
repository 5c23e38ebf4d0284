// The vhost-user frontend and virtio-fs against a fake backend in the test: the order and
// content of messages and their fds, replies that break the protocol, a backend that goes
// away or never answers, and the call relay and ring stop of an activated VirtioFs.
#include <catch2/catch.hpp>
#include <fcntl.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <optional>
#include <thread>
#include <vector>

#include "blk_harness.h"
#include "devices/vhost_user.h"
#include "devices/virtio_fs.h"
#include "virtio/spec.h"

namespace {

using namespace minivmm;
using namespace std::chrono_literals;
namespace vu = devices::vhost_user;
using devices::VhostUserFrontend;
using vmm::UniqueFd;

constexpr uint64_t kProtocolBit = uint64_t{1} << vu::kFProtocolFeatures;
constexpr uint64_t kVersion1 = virtio::feature_bit(virtio::kFVersion1);
constexpr uint64_t kReplyAck = uint64_t{1} << vu::kProtocolFReplyAck;
constexpr uint64_t kMq = uint64_t{1} << vu::kProtocolFMq;

// The backend end of a socketpair, driven by the test: it reads what the frontend sends
// and answers as the test says.
class FakeBackend {
 public:
  struct Message {
    vu::Header header{};
    std::vector<uint8_t> payload;
    std::vector<UniqueFd> fds;
    template <typename T>
    T as() const {
      T value{};
      REQUIRE(payload.size() >= sizeof(T));
      std::memcpy(&value, payload.data(), sizeof(T));
      return value;
    }
    bool needs_reply() const { return (header.flags & vu::kFlagNeedReply) != 0; }
  };

  FakeBackend() {
    int sv[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
    frontend_ = UniqueFd(sv[0]);
    backend_ = UniqueFd(sv[1]);
  }
  UniqueFd take_frontend() { return std::move(frontend_); }

  // The next message, or nullopt if none comes within 2 s or the frontend closed.
  std::optional<Message> read() {
    Message m;
    if (!read_exact(&m.header, sizeof(m.header), &m.fds)) return std::nullopt;
    m.payload.resize(m.header.size);
    if (m.header.size > 0 && !read_exact(m.payload.data(), m.payload.size(), &m.fds)) {
      return std::nullopt;
    }
    return m;
  }
  // Reads a message that must be `request`, and acks it if the frontend asked for that.
  Message expect(uint32_t request) {
    auto m = read();
    REQUIRE(m.has_value());
    INFO("expected " << vu::request_name(request) << ", got "
                     << vu::request_name(m->header.request));
    REQUIRE(m->header.request == request);
    CHECK((m->header.flags & vu::kVersionMask) == vu::kVersion);
    if (m->needs_reply()) ack(request);
    return std::move(*m);
  }
  void reply(uint32_t request, const void* payload, uint32_t size,
             uint32_t flags = vu::kVersion | vu::kFlagReply, int fd = -1) {
    vu::Header h{request, flags, size};
    std::vector<uint8_t> bytes(sizeof(h) + size);
    std::memcpy(bytes.data(), &h, sizeof(h));
    if (size > 0) std::memcpy(bytes.data() + sizeof(h), payload, size);
    iovec iov{bytes.data(), bytes.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (fd >= 0) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      cmsghdr* c = CMSG_FIRSTHDR(&msg);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    REQUIRE(::sendmsg(backend_.get(), &msg, MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  void reply_u64(uint32_t request, uint64_t value) { reply(request, &value, sizeof(value)); }
  void ack(uint32_t request, uint64_t status = 0) { reply_u64(request, status); }
  void close() { backend_.reset(); }
  void write_raw(const void* bytes, size_t n) {
    REQUIRE(::send(backend_.get(), bytes, n, MSG_NOSIGNAL) == static_cast<ssize_t>(n));
  }

  // Answers the handshake the way QEMU 7.2's virtiofsd does: VERSION_1 and the protocol
  // features, REPLY_ACK and MQ offered, `queues` queues.
  void serve_handshake(uint64_t features = kVersion1 | kProtocolBit, uint64_t queues = 2) {
    expect(vu::kGetFeatures);
    reply_u64(vu::kGetFeatures, features);
    if (!(features & kProtocolBit)) {
      expect(vu::kSetOwner);
      return;
    }
    expect(vu::kGetProtocolFeatures);
    reply_u64(vu::kGetProtocolFeatures, kReplyAck | kMq | (uint64_t{1} << 9));
    auto set = expect(vu::kSetProtocolFeatures);
    CHECK(set.as<uint64_t>() == (kReplyAck | kMq));  // only what the frontend speaks
    CHECK_FALSE(set.needs_reply());                  // REPLY_ACK is not in force yet
    expect(vu::kGetQueueNum);
    reply_u64(vu::kGetQueueNum, queues);
    auto owner = expect(vu::kSetOwner);
    CHECK(owner.needs_reply());
  }

 private:
  bool read_exact(void* out, size_t size, std::vector<UniqueFd>* fds) {
    size_t done = 0;
    while (done < size) {
      pollfd p{backend_.get(), POLLIN, 0};
      if (::poll(&p, 1, 2000) <= 0) return false;
      iovec iov{static_cast<uint8_t*>(out) + done, size - done};
      alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
      msghdr msg{};
      msg.msg_iov = &iov;
      msg.msg_iovlen = 1;
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
      const ssize_t n = ::recvmsg(backend_.get(), &msg, MSG_CMSG_CLOEXEC);
      if (n <= 0) return false;
      for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          fds->emplace_back(fd);
        }
      }
      done += static_cast<size_t>(n);
    }
    return true;
  }

  UniqueFd frontend_;
  UniqueFd backend_;
};

// Runs a frontend call on another thread while the test plays the backend.
template <typename F>
auto async(F&& f) {
  return std::async(std::launch::async, std::forward<F>(f));
}

TEST_CASE("vhost-user: the handshake asks, negotiates and takes ownership in order") {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 2s);
  auto done = async([&] { return fe.handshake(kReplyAck | kMq, 2); });
  be.serve_handshake();
  auto s = done.get();
  REQUIRE(s);
  CHECK(fe.backend_features() == (kVersion1 | kProtocolBit));
  CHECK(fe.protocol_features() == (kReplyAck | kMq));
}

TEST_CASE("vhost-user: a backend without protocol features gets GET_FEATURES and SET_OWNER") {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 2s);
  auto done = async([&] { return fe.handshake(kReplyAck, 2); });
  be.serve_handshake(kVersion1);
  REQUIRE(done.get());
  CHECK(fe.protocol_features() == 0);
  // Without protocol features rings start enabled: SET_VRING_ENABLE is never sent.
  REQUIRE(fe.set_vring_enable(0, true));
}

TEST_CASE("vhost-user: too few queues (GET_QUEUE_NUM) fail the handshake") {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 2s);
  auto done = async([&] { return fe.handshake(kReplyAck | kMq, 3); });
  be.expect(vu::kGetFeatures);
  be.reply_u64(vu::kGetFeatures, kVersion1 | kProtocolBit);
  be.expect(vu::kGetProtocolFeatures);
  be.reply_u64(vu::kGetProtocolFeatures, kReplyAck | kMq);
  be.expect(vu::kSetProtocolFeatures);
  be.expect(vu::kGetQueueNum);
  be.reply_u64(vu::kGetQueueNum, 2);
  auto s = done.get();
  REQUIRE_FALSE(s);
  CHECK_THAT(s.error(), Catch::Contains("serves 2 queues") && Catch::Contains("3 are needed"));
  CHECK(fe.broken());
}

TEST_CASE("vhost-user: features, memory table and a ring go out with their fds, in order") {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 2s);
  {
    auto done = async([&] { return fe.handshake(kReplyAck | kMq, 2); });
    be.serve_handshake();
    REQUIRE(done.get());
  }
  SECTION("SET_FEATURES carries the protocol-features bit, acked") {
    auto done = async([&] { return fe.set_features(kVersion1); });
    auto m = be.expect(vu::kSetFeatures);
    CHECK(m.needs_reply());
    CHECK(m.as<uint64_t>() == (kVersion1 | kProtocolBit));
    REQUIRE(done.get());
  }
  SECTION("SET_MEM_TABLE: one fd per region, the payload ends after the regions") {
    UniqueFd memfd(::memfd_create("vhost-test", MFD_CLOEXEC));
    REQUIRE(::ftruncate(memfd.get(), 3 << 20) == 0);
    const devices::VhostUserMemory regions[2] = {{0, 1 << 20, 0x7000'0000, memfd.get(), 0},
                                                 {0x1'0000'0000, 2 << 20, 0x7100'0000,
                                                  memfd.get(), 1 << 20}};
    auto done = async([&] { return fe.set_mem_table(regions); });
    auto m = be.expect(vu::kSetMemTable);
    REQUIRE(done.get());
    CHECK(m.payload.size() == 8 + 2 * sizeof(vu::MemRegion));
    REQUIRE(m.fds.size() == 2);
    struct stat st {};
    REQUIRE(::fstat(m.fds[1].get(), &st) == 0);
    CHECK(st.st_size == (3 << 20));  // the memfd itself
    vu::MemRegion second{};
    std::memcpy(&second, m.payload.data() + 8 + sizeof(vu::MemRegion), sizeof(second));
    CHECK(second.guest_addr == 0x1'0000'0000);
    CHECK(second.size == (2 << 20));
    CHECK(second.user_addr == 0x7100'0000);
    CHECK(second.mmap_offset == (1 << 20));
  }
  SECTION("private memory (no fd) is refused before anything is sent") {
    const devices::VhostUserMemory region{0, 1 << 20, 0x7000'0000, -1, 0};
    auto s = fe.set_mem_table({&region, 1});
    REQUIRE_FALSE(s);
    CHECK_THAT(s.error(), Catch::Contains("not shareable"));
    CHECK_FALSE(fe.broken());
  }
  SECTION("a ring: NUM, BASE, ADDR, then CALL and ERR before the KICK that starts it") {
    int kick[2], call[2], err[2];
    REQUIRE(::pipe(kick) == 0);
    REQUIRE(::pipe(call) == 0);
    REQUIRE(::pipe(err) == 0);
    const devices::VhostUserVring ring{1, 256, 0x1000, 0x2000, 0x3000, 7, kick[0], call[1], -1};
    auto done = async([&] { return fe.set_vring(ring); });
    auto num = be.expect(vu::kSetVringNum).as<vu::VringState>();
    CHECK((num.index == 1 && num.num == 256));
    auto base = be.expect(vu::kSetVringBase).as<vu::VringState>();
    CHECK((base.index == 1 && base.num == 7));
    auto addr = be.expect(vu::kSetVringAddr).as<vu::VringAddr>();
    CHECK((addr.desc == 0x1000 && addr.avail == 0x2000 && addr.used == 0x3000));
    auto c = be.expect(vu::kSetVringCall);
    CHECK(c.as<uint64_t>() == 1);
    CHECK(c.fds.size() == 1);
    auto e = be.expect(vu::kSetVringErr);
    CHECK(e.as<uint64_t>() == (1 | vu::kVringNoFd));  // no err fd given: the "no fd" bit
    CHECK(e.fds.empty());
    auto k = be.expect(vu::kSetVringKick);
    CHECK(k.as<uint64_t>() == 1);
    REQUIRE(k.fds.size() == 1);
    REQUIRE(done.get());
    for (int fd : {kick[0], kick[1], call[0], call[1], err[0], err[1]}) ::close(fd);
  }
  SECTION("GET_VRING_BASE returns the backend's index") {
    auto done = async([&] { return fe.get_vring_base(1); });
    auto m = be.expect(vu::kGetVringBase);
    CHECK_FALSE(m.needs_reply());  // it has its own reply
    const vu::VringState state{1, 42};
    be.reply(vu::kGetVringBase, &state, sizeof(state));
    auto r = done.get();
    REQUIRE(r);
    CHECK(*r == 42);
  }
  SECTION("a refused request (REPLY_ACK nonzero) is an error, the connection stays usable") {
    auto done = async([&] { return fe.set_features(kVersion1); });
    auto m = be.read();
    REQUIRE(m);
    be.ack(vu::kSetFeatures, 1);
    auto s = done.get();
    REQUIRE_FALSE(s);
    CHECK_THAT(s.error(), Catch::Contains("refused"));
    CHECK_FALSE(fe.broken());
  }
}

// A frontend past its handshake with REPLY_ACK, and a backend that answers GET_VRING_BASE
// with `reply` (called on the backend side).
void bad_reply_case(const std::function<void(FakeBackend&)>& reply, const char* expected) {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 500ms);
  {
    auto done = async([&] { return fe.handshake(kReplyAck | kMq, 2); });
    be.serve_handshake();
    REQUIRE(done.get());
  }
  auto done = async([&] { return fe.get_vring_base(0); });
  REQUIRE(be.read());
  reply(be);
  auto r = done.get();
  REQUIRE_FALSE(r);
  CHECK_THAT(r.error(), Catch::Contains(expected));
  CHECK(fe.broken());
  // Broken for good: the next call fails at once, without sending.
  const auto t0 = std::chrono::steady_clock::now();
  auto again = fe.set_features(kVersion1);
  REQUIRE_FALSE(again);
  CHECK_THAT(again.error(), Catch::Contains("broken"));
  CHECK(std::chrono::steady_clock::now() - t0 < 100ms);
}

TEST_CASE("vhost-user: replies that break the protocol are refused and break the connection") {
  const vu::VringState good{0, 5};
  SECTION("a reply to another request") {
    bad_reply_case([&](FakeBackend& be) { be.reply(vu::kGetFeatures, &good, sizeof(good)); },
                   "replied to request 1 instead");
  }
  SECTION("no reply flag") {
    bad_reply_case(
        [&](FakeBackend& be) { be.reply(vu::kGetVringBase, &good, sizeof(good), vu::kVersion); },
        "bad reply flags");
  }
  SECTION("version 2") {
    bad_reply_case(
        [&](FakeBackend& be) {
          be.reply(vu::kGetVringBase, &good, sizeof(good), 0x2 | vu::kFlagReply);
        },
        "bad reply flags");
  }
  SECTION("a payload size that is not the reply's (huge: refused unread)") {
    bad_reply_case(
        [&](FakeBackend& be) {
          const vu::Header h{vu::kGetVringBase, vu::kVersion | vu::kFlagReply, 0xffff'fff0};
          be.write_raw(&h, sizeof(h));  // and no payload: it must not be waited for
        },
        "bytes, expected 8 (refused unread)");
  }
  SECTION("the reply names another ring") {
    const vu::VringState other{3, 5};
    bad_reply_case([&](FakeBackend& be) { be.reply(vu::kGetVringBase, &other, sizeof(other)); },
                   "replied for ring 3");
  }
  SECTION("an index that is not 16-bit") {
    const vu::VringState big{0, 0x1'0000};
    bad_reply_case([&](FakeBackend& be) { be.reply(vu::kGetVringBase, &big, sizeof(big)); },
                   "not 16-bit");
  }
  SECTION("the backend closes the connection mid-request") {
    bad_reply_case([](FakeBackend& be) { be.close(); }, "closed the connection");
  }
  SECTION("the backend never answers: the deadline ends the wait") {
    const auto t0 = std::chrono::steady_clock::now();
    bad_reply_case([](FakeBackend&) {}, "no reply from the backend in time");
    CHECK(std::chrono::steady_clock::now() - t0 < 3s);
  }
}

TEST_CASE("vhost-user: a reply split over several writes is read whole") {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 2s);
  auto done = async([&] { return fe.get_vring_base(0); });
  REQUIRE(be.read());
  const vu::Header h{vu::kGetVringBase, vu::kVersion | vu::kFlagReply, 8};
  const vu::VringState state{0, 9};
  be.write_raw(&h, 6);  // half a header
  std::this_thread::sleep_for(20ms);
  be.write_raw(reinterpret_cast<const uint8_t*>(&h) + 6, sizeof(h) - 6);
  std::this_thread::sleep_for(20ms);
  be.write_raw(&state, sizeof(state));
  auto r = done.get();
  REQUIRE(r);
  CHECK(*r == 9);
}

TEST_CASE("vhost-user: fds attached to a reply are closed, never kept") {
  FakeBackend be;
  VhostUserFrontend fe(be.take_frontend(), 2s);
  int p[2];
  REQUIRE(::pipe2(p, O_CLOEXEC) == 0);
  auto done = async([&] { return fe.get_vring_base(0); });
  REQUIRE(be.read());
  const vu::VringState state{0, 1};
  be.reply(vu::kGetVringBase, &state, sizeof(state), vu::kVersion | vu::kFlagReply, p[1]);
  ::close(p[1]);  // our copy: the frontend's is the only write end left, if it kept one
  REQUIRE(done.get());
  pollfd pf{p[0], POLLIN, 0};
  REQUIRE(::poll(&pf, 1, 1000) == 1);
  char c;
  CHECK(::read(p[0], &c, 1) == 0);  // EOF: no write end is open any more
  ::close(p[0]);
}

// ---- VirtioFs on top of the frontend ------------------------------------------------------

// 4 MiB of guest RAM in a memfd, as minivmm maps it with a vhost-user device.
struct SharedGuest {
  SharedGuest() : fd(::memfd_create("vhost-test-ram", MFD_CLOEXEC)) {
    REQUIRE(::ftruncate(fd.get(), kSize) == 0);
    host = static_cast<uint8_t*>(
        ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0));
    REQUIRE(host != MAP_FAILED);
    mem = virtio::GuestMemory({{0, kSize, host, fd.get(), 0}});
  }
  ~SharedGuest() { ::munmap(host, kSize); }
  static constexpr uint64_t kSize = 4 << 20;
  UniqueFd fd;
  uint8_t* host = nullptr;
  virtio::GuestMemory mem;
};

struct FsHarness {
  // The backend goes first: a reset in the device's destructor then fails at once instead
  // of waiting for acks nobody sends.
  ~FsHarness() { be.close(); }
  FsHarness() {
    auto made = async([this] {
      devices::VirtioFs::Options o{"share", "virtio-fs tag=share", false, 2s};
      return std::make_unique<devices::VirtioFs>(std::move(o), be.take_frontend());
    });
    be.serve_handshake(kVersion1 | kProtocolBit | virtio::feature_bit(virtio::kFEventIdx) |
                       virtio::feature_bit(virtio::kFRingPacked) | 1);
    dev = made.get();
    for (uint16_t q = 0; q < 2; ++q) {
      queues.emplace_back(devices::VirtioFs::kQueueSize);
      events.emplace_back();
      virtio::Queue& queue = queues.back();
      queue.set_size(128);
      queue.set_desc_table(0x10000 + q * 0x10000ull);
      queue.set_avail_ring(0x14000 + q * 0x10000ull);
      queue.set_used_ring(0x18000 + q * 0x10000ull);
      queue.set_ready(true);
    }
  }
  // Activates; the test's backend answers every setup message and keeps the rings' fds.
  void activate() {
    dev->set_acked_features(kVersion1);
    auto done = async([this] {
      return dev->activate(virtio::ActivateContext{guest.mem, queues, events, irq});
    });
    CHECK(be.expect(vu::kSetFeatures).as<uint64_t>() == (kVersion1 | kProtocolBit));
    auto table = be.expect(vu::kSetMemTable);
    CHECK(table.fds.size() == 1);
    for (uint32_t q = 0; q < 2; ++q) {
      CHECK(be.expect(vu::kSetVringNum).as<vu::VringState>().num == 128);
      be.expect(vu::kSetVringBase);
      auto addr = be.expect(vu::kSetVringAddr).as<vu::VringAddr>();
      // Addresses in the frontend's address space: host = guest RAM mapping + guest address.
      CHECK(addr.desc == reinterpret_cast<uint64_t>(guest.host + 0x10000 + q * 0x10000ull));
      auto call = be.expect(vu::kSetVringCall);
      REQUIRE(call.fds.size() == 1);
      calls.push_back(std::move(call.fds[0]));
      be.expect(vu::kSetVringErr);
      auto kick = be.expect(vu::kSetVringKick);
      REQUIRE(kick.fds.size() == 1);
      kicks.push_back(std::move(kick.fds[0]));
      CHECK(be.expect(vu::kSetVringEnable).as<vu::VringState>().num == 1);
    }
    auto err = done.get();
    REQUIRE_FALSE(err);
  }

  FakeBackend be;
  std::unique_ptr<devices::VirtioFs> dev;
  SharedGuest guest;
  std::vector<virtio::Queue> queues;
  std::vector<virtio::EventFd> events;
  test::CountingInterrupt irq;
  std::vector<UniqueFd> calls;
  std::vector<UniqueFd> kicks;
};

bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

TEST_CASE("virtio-fs: the guest sees the ring features the backend offers, nothing else") {
  FsHarness h;
  CHECK(h.dev->device_features() ==
        (kVersion1 | virtio::feature_bit(virtio::kFEventIdx)));  // no packed ring, no bit 0/30
  uint8_t config[44] = {};
  h.dev->read_config(0, config);
  CHECK(std::string(reinterpret_cast<char*>(config)) == "share");
  uint32_t queues = 0;
  std::memcpy(&queues, config + 36, 4);
  CHECK(queues == 1);
  CHECK(config[40] == 0);  // past the end: zeroes
}

TEST_CASE("virtio-fs: activation hands the rings over, calls become interrupts, reset stops") {
  FsHarness h;
  h.activate();
  // The synthetic kick of each ring at start: buffers queued before DRIVER_OK are seen.
  for (auto& k : h.kicks) CHECK(readable_within(k.get(), 1000));
  // The driver's notification reaches the backend's kick fd directly.
  uint64_t one = 1;
  // The backend signals "used buffers": the worker relays it as the used-buffer interrupt.
  REQUIRE(::write(h.calls[1].get(), &one, sizeof(one)) == sizeof(one));
  const auto t0 = std::chrono::steady_clock::now();
  while (h.irq.count() == 0 && std::chrono::steady_clock::now() - t0 < 2s) {
    std::this_thread::sleep_for(1ms);
  }
  CHECK(h.irq.count() == 1);
  // reset: each ring disabled and stopped with GET_VRING_BASE.
  auto done = async([&] { h.dev->reset(); });
  for (uint32_t q = 0; q < 2; ++q) {
    CHECK(h.be.expect(vu::kSetVringEnable).as<vu::VringState>().num == 0);
    auto get = h.be.expect(vu::kGetVringBase);
    CHECK(get.as<vu::VringState>().index == q);
    const vu::VringState state{q, 0};
    h.be.reply(vu::kGetVringBase, &state, sizeof(state));
  }
  done.get();
  CHECK(h.irq.needs_reset == 0);
  // A reboot: the same connection serves the next activation.
  h.calls.clear();
  h.kicks.clear();
  h.activate();
}

TEST_CASE("virtio-fs: the backend hanging up breaks the device, which asks for a reset") {
  FsHarness h;
  h.activate();
  h.be.close();
  const auto t0 = std::chrono::steady_clock::now();
  while (h.irq.needs_reset == 0 && std::chrono::steady_clock::now() - t0 < 2s) {
    std::this_thread::sleep_for(1ms);
  }
  CHECK(h.irq.needs_reset == 1);
  CHECK_FALSE(h.dev->backend_alive());
  h.dev->reset();  // nothing to stop: the backend is gone (and it returns at once)
  auto again = h.dev->activate(virtio::ActivateContext{h.guest.mem, h.queues, h.events, h.irq});
  REQUIRE(again.has_value());
  CHECK_THAT(again->message, Catch::Contains("gone"));
}

TEST_CASE("virtio-fs: private guest memory cannot be handed to a backend") {
  FsHarness h;
  test::FakeGuestMemory private_ram(4 << 20);
  h.dev->set_acked_features(kVersion1);
  auto done = async([&] {
    return h.dev->activate(virtio::ActivateContext{private_ram.mem(), h.queues, h.events, h.irq});
  });
  h.be.expect(vu::kSetFeatures);
  auto err = done.get();
  REQUIRE(err.has_value());
  CHECK_THAT(err->message, Catch::Contains("not shareable"));
}

TEST_CASE("virtio-fs: a tag must be 1 to 36 bytes") {
  FakeBackend be;
  devices::VirtioFs::Options o{std::string(37, 'x'), "fs", false, 1s};
  CHECK_THROWS_AS(devices::VirtioFs(std::move(o), be.take_frontend()), std::invalid_argument);
}

}  // namespace
