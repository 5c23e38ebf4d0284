// virtio-console: the multiport handshake as Linux drives it, port output and input, named
// ports on a file and on a unix socket (both directions, backpressure), the console's size,
// and hostile drivers (messages out of order, for unknown ports, too short, no buffers).
// The driver side is the test, through DriverQueue; the device runs on its worker.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "devices/virtio_console.h"
#include "tests/devices/blk_harness.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using minivmm::devices::ConsolePortConfig;
using minivmm::devices::HostOutput;
using minivmm::devices::VirtioConsole;
using minivmm::test::Buf;
using minivmm::test::DriverQueue;
using minivmm::test::FakeGuestMemory;
namespace virtio = minivmm::virtio;

namespace {

constexpr uint64_t kRam = 16 << 20;
constexpr uint32_t kBadId = 0xffffffff;

bool eventually(const std::function<bool()>& done, int ms = 5000) {
  for (int i = 0; i < ms; ++i) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

class Interrupts final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t reason) override {
    if (reason & virtio::kInterruptConfigChange) config.fetch_add(1);
    if (reason & virtio::kInterruptUsedBuffer) used.fetch_add(1);
  }
  bool set_needs_reset() override {
    needs_reset.fetch_add(1);
    return true;
  }
  std::atomic<int> used{0};
  std::atomic<int> config{0};
  std::atomic<int> needs_reset{0};
};

// A pipe whose write end a HostOutput owns; the test reads the other end.
struct PipeOutput {
  PipeOutput() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_NONBLOCK | O_CLOEXEC) == 0);
    read_fd = fds[0];
    output = std::make_shared<HostOutput>(fds[1], true, "test pipe");
  }
  ~PipeOutput() { ::close(read_fd); }
  std::string read_all() {
    std::string out;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(read_fd, buf, sizeof(buf))) > 0) out.append(buf, static_cast<size_t>(n));
    return out;
  }
  int read_fd;
  std::shared_ptr<HostOutput> output;
};

struct Message {
  uint32_t id;
  uint16_t event;
  uint16_t value;
  std::string extra;
};

// The driver: every queue of the device in fake guest RAM, a bump allocator for buffers.
class ConsoleDriver {
 public:
  explicit ConsoleDriver(VirtioConsole& dev) : dev_(dev) {
    const size_t n = dev.queue_max_sizes().size();
    queues_.reserve(n);
    for (size_t i = 0; i < n; ++i) {
      queues_.emplace_back(VirtioConsole::kQueueSize);
      events_.emplace_back();
      drivers_.push_back(std::make_unique<DriverQueue>(guest_, 64, 0x10000 * (i + 1)));
    }
  }
  ~ConsoleDriver() { dev_.reset(); }

  void activate(bool multiport = true) {
    uint64_t features = dev_.device_features();
    if (!multiport) features &= ~virtio::feature_bit(VirtioConsole::kFMultiport);
    dev_.set_acked_features(features);
    // Without MULTIPORT a driver sets up only port 0's two queues.
    const size_t ready = multiport ? queues_.size() : 2;
    for (size_t i = 0; i < ready; ++i) drivers_[i]->configure(queues_[i], false, true);
    REQUIRE_FALSE(dev_.activate(virtio::ActivateContext{guest_.mem(), queues_, events_, irq}));
  }

  uint64_t alloc(uint32_t len) {
    const uint64_t addr = next_;
    next_ += (len + 63) & ~uint64_t{63};
    REQUIRE(next_ < kRam);
    return addr;
  }
  // A device-writable buffer on queue q.
  uint64_t post(uint16_t q, uint32_t len) {
    const uint64_t addr = alloc(len);
    drivers_[q]->add_chain({{addr, len, true}});
    events_[q].signal();
    return addr;
  }
  // `bytes` as one device-readable buffer on queue q.
  void send(uint16_t q, const std::string& bytes) {
    const uint64_t addr = alloc(static_cast<uint32_t>(bytes.size()));
    std::memcpy(guest_.host(addr), bytes.data(), bytes.size());
    drivers_[q]->add_chain({{addr, static_cast<uint32_t>(bytes.size()), false}});
    events_[q].signal();
  }
  void control(uint32_t id, uint16_t event, uint16_t value) {
    VirtioConsole::Control c{id, event, value};
    send(VirtioConsole::kControlTxQueue,
         std::string(reinterpret_cast<const char*>(&c), sizeof(c)));
  }
  // Used elements of queue q, waiting up to `ms` for at least `n`.
  std::vector<virtio::VirtqUsedElem> used(uint16_t q, size_t n, int ms = 5000) {
    auto& seen = used_[q];
    eventually(
        [&] {
          auto u = drivers_[q]->take_used();
          seen.insert(seen.end(), u.begin(), u.end());
          return seen.size() >= n;
        },
        ms);
    auto out = seen;
    seen.clear();
    return out;
  }
  // Receive buffers for control messages, and what the device wrote into them.
  void post_control_buffers(int n, uint32_t len = 128) {
    for (int i = 0; i < n; ++i) post(VirtioConsole::kControlRxQueue, len);
  }
  std::vector<Message> messages(size_t n, int ms = 5000) {
    std::vector<Message> out;
    for (const auto& u : used(VirtioConsole::kControlRxQueue, n, ms)) {
      Message m{};
      const uint8_t* p = guest_.host(addr_of_head(static_cast<uint16_t>(u.id)));
      std::memcpy(&m.id, p, 4);
      std::memcpy(&m.event, p + 4, 2);
      std::memcpy(&m.value, p + 6, 2);
      if (u.len > 8) m.extra.assign(reinterpret_cast<const char*>(p + 8), u.len - 8);
      out.push_back(m);
    }
    return out;
  }
  std::string read(uint64_t addr, uint32_t len) {
    return std::string(reinterpret_cast<const char*>(guest_.host(addr)), len);
  }
  // The standard handshake: buffers, DEVICE_READY, PORT_READY for every port, PORT_OPEN.
  std::vector<Message> handshake(uint32_t ports) {
    post_control_buffers(32);
    control(kBadId, VirtioConsole::kDeviceReady, 1);
    auto adds = messages(ports);
    for (uint32_t id = 0; id < ports; ++id) control(id, VirtioConsole::kPortReady, 1);
    return adds;
  }

  FakeGuestMemory guest_{kRam};
  Interrupts irq;
  DriverQueue& driver(uint16_t q) { return *drivers_[q]; }
  virtio::EventFd& event(uint16_t q) { return events_[q]; }

 private:
  uint64_t addr_of_head(uint16_t head) { return drivers_[2]->read_desc(head).addr; }

  VirtioConsole& dev_;
  std::vector<virtio::Queue> queues_;
  std::vector<virtio::EventFd> events_;
  std::vector<std::unique_ptr<DriverQueue>> drivers_;
  std::map<uint16_t, std::vector<virtio::VirtqUsedElem>> used_;
  uint64_t next_ = 0x400000;
};

bool has(const std::vector<Message>& ms, uint32_t id, uint16_t event, uint16_t value) {
  for (const Message& m : ms) {
    if (m.id == id && m.event == event && m.value == value) return true;
  }
  return false;
}

ConsolePortConfig output_port(std::string name, std::shared_ptr<HostOutput> out) {
  ConsolePortConfig p;
  p.name = std::move(name);
  p.output = std::move(out);
  return p;
}

}  // namespace

TEST_CASE("console: features, config space and the size") {
  PipeOutput out;
  VirtioConsole dev(output_port("", out.output), {output_port("a", nullptr)});
  CHECK(dev.device_type() == virtio::kDeviceIdConsole);
  const uint64_t f = dev.device_features();
  CHECK(virtio::has_feature(f, virtio::kFVersion1));
  CHECK(virtio::has_feature(f, VirtioConsole::kFMultiport));
  CHECK(virtio::has_feature(f, VirtioConsole::kFSize));
  CHECK(virtio::has_feature(f, VirtioConsole::kFEmergWrite));
  CHECK(dev.queue_max_sizes().size() == 6);  // port 0, control, port 1
  uint8_t cfg[12];
  dev.read_config(0, cfg);
  CHECK((cfg[0] | cfg[1] << 8) == 80);
  CHECK((cfg[2] | cfg[3] << 8) == 25);
  CHECK(cfg[4] == 2);  // max_nr_ports
  const uint32_t gen = dev.config_generation();
  dev.resize(132, 43);
  dev.read_config(0, cfg);
  CHECK((cfg[0] | cfg[1] << 8) == 132);
  CHECK((cfg[2] | cfg[3] << 8) == 43);
  CHECK(dev.config_generation() != gen);
  // emerg_wr: one byte to the console at once, driver or not.
  const uint8_t a[4] = {'!', 0, 0, 0};
  dev.write_config(8, a);
  CHECK(out.read_all() == "!");
}

TEST_CASE("console: the multiport handshake as Linux drives it, then output and input") {
  PipeOutput hvc0, named;
  ConsolePortConfig console = output_port("", hvc0.output);
  console.host_input = true;
  VirtioConsole dev(console, {output_port("org.test.port", named.output)});
  ConsoleDriver drv(dev);
  drv.activate();

  drv.post_control_buffers(16);
  drv.control(kBadId, VirtioConsole::kDeviceReady, 1);
  auto ms = drv.messages(2);
  CHECK(has(ms, 0, VirtioConsole::kDeviceAdd, 0));
  CHECK(has(ms, 1, VirtioConsole::kDeviceAdd, 0));

  drv.control(0, VirtioConsole::kPortReady, 1);
  ms = drv.messages(2);
  CHECK(has(ms, 0, VirtioConsole::kConsolePort, 1));
  CHECK(has(ms, 0, VirtioConsole::kPortOpen, 1));  // an output is always connected

  drv.control(1, VirtioConsole::kPortReady, 1);
  ms = drv.messages(2);
  REQUIRE(ms.size() == 2);
  CHECK(ms[0].event == VirtioConsole::kPortName);
  CHECK(ms[0].extra == "org.test.port");
  CHECK(has(ms, 1, VirtioConsole::kPortOpen, 1));

  // Guest output: port 0 on queue 1, port 1 on queue 5.
  drv.send(1, "hello from hvc0\n");
  drv.send(5, "on the named port\n");
  CHECK(drv.used(1, 1).size() == 1);
  CHECK(drv.used(5, 1).size() == 1);
  CHECK(hvc0.read_all() == "hello from hvc0\n");
  CHECK(named.read_all() == "on the named port\n");

  // Host input waits until the guest opened the console, then fills its receive buffers.
  CHECK(dev.enqueue_input(std::span(reinterpret_cast<const uint8_t*>("typed"), 5)) == 5);
  const uint64_t rx = drv.post(0, 64);
  CHECK(drv.used(0, 1, 100).empty());
  drv.control(0, VirtioConsole::kPortOpen, 1);
  auto used = drv.used(0, 1);
  REQUIRE(used.size() == 1);
  CHECK(used[0].len == 5);
  CHECK(drv.read(rx, 5) == "typed");
  CHECK(dev.input_space() == VirtioConsole::kInputCapacity);
  CHECK(drv.irq.needs_reset == 0);
}

TEST_CASE("console: out-of-order, unknown and malformed control messages are ignored") {
  VirtioConsole dev(output_port("", nullptr), {output_port("p1", nullptr)});
  ConsoleDriver drv(dev);
  drv.activate();
  drv.post_control_buffers(8);
  // Before DEVICE_READY no port is added: PORT_READY and PORT_OPEN get no answer.
  drv.control(0, VirtioConsole::kPortReady, 1);
  drv.control(1, VirtioConsole::kPortOpen, 1);
  drv.control(99, VirtioConsole::kPortReady, 1);
  drv.send(VirtioConsole::kControlTxQueue, "abc");  // shorter than a header
  drv.control(kBadId, 0x7777, 0);                   // no such event
  CHECK(drv.used(VirtioConsole::kControlTxQueue, 5).size() == 5);  // every request completes
  CHECK(drv.messages(1, 100).empty());
  // A port that failed in the guest is not made ready.
  drv.control(kBadId, VirtioConsole::kDeviceReady, 1);
  CHECK(drv.messages(2).size() == 2);
  drv.control(1, VirtioConsole::kPortReady, 0);
  CHECK(drv.messages(1, 100).empty());
  // PORT_READY twice answers once.
  drv.control(0, VirtioConsole::kPortReady, 1);
  drv.control(0, VirtioConsole::kPortReady, 1);
  CHECK(drv.messages(3, 200).size() == 2);  // CONSOLE_PORT, PORT_OPEN
  CHECK(drv.irq.needs_reset == 0);
}

TEST_CASE("console: answers wait for control buffers, bounded, and too-small buffers lose one") {
  VirtioConsole dev(output_port("", nullptr), {});
  ConsoleDriver drv(dev);
  drv.activate();
  // No receive buffers: a driver repeating DEVICE_READY cannot make the queue grow unbounded.
  for (int batch = 0; batch < 6; ++batch) {  // DriverQueue holds 64 entries
    for (int i = 0; i < 50; ++i) drv.control(kBadId, VirtioConsole::kDeviceReady, 1);
    CHECK(drv.used(VirtioConsole::kControlTxQueue, 50).size() == 50);
  }
  drv.post_control_buffers(60);
  CHECK(drv.messages(60).size() == 60);
  // A 4-byte buffer cannot hold a message: used with length 0, the next buffer gets the next.
  drv.post_control_buffers(1, 4);
  auto u = drv.used(VirtioConsole::kControlRxQueue, 1);
  REQUIRE(u.size() == 1);
  CHECK(u[0].len == 0);
}

TEST_CASE("console: the size goes to the guest as RESIZE with multiport, config change without") {
  SECTION("multiport") {
    VirtioConsole dev(output_port("", nullptr), {});
    ConsoleDriver drv(dev);
    drv.activate();
    drv.handshake(1);
    CHECK(drv.messages(2).size() == 2);
    dev.resize(100, 40);
    auto ms = drv.messages(1);
    REQUIRE(ms.size() == 1);
    CHECK(ms[0].event == VirtioConsole::kResize);
    REQUIRE(ms[0].extra.size() == 4);
    // Linux reads { rows, cols }.
    CHECK((static_cast<uint8_t>(ms[0].extra[0]) | static_cast<uint8_t>(ms[0].extra[1]) << 8) ==
          40);
    CHECK((static_cast<uint8_t>(ms[0].extra[2]) | static_cast<uint8_t>(ms[0].extra[3]) << 8) ==
          100);
  }
  SECTION("a size set before the driver is ready is sent with CONSOLE_PORT") {
    VirtioConsole dev(output_port("", nullptr), {});
    dev.resize(120, 50);
    ConsoleDriver drv(dev);
    drv.activate();
    drv.handshake(1);
    auto ms = drv.messages(3);
    CHECK(has(ms, 0, VirtioConsole::kConsolePort, 1));
    CHECK(has(ms, 0, VirtioConsole::kResize, 0));
  }
  SECTION("single port") {
    PipeOutput out;
    VirtioConsole dev(output_port("", out.output), {output_port("ignored", nullptr)});
    ConsoleDriver drv(dev);
    drv.activate(/*multiport=*/false);
    dev.resize(90, 30);
    CHECK(eventually([&] { return drv.irq.config >= 1; }));
    // Port 0 works without any control message.
    drv.send(1, "plain");
    CHECK(drv.used(1, 1).size() == 1);
    CHECK(out.read_all() == "plain");
  }
}

TEST_CASE("console: a named port on a unix socket, both directions, with backpressure") {
  ::signal(SIGPIPE, SIG_IGN);
  char dir_template[] = "/tmp/minivmm-console-XXXXXX";
  REQUIRE(::mkdtemp(dir_template) != nullptr);
  const std::string path = std::string(dir_template) + "/port.sock";
  ConsolePortConfig sock;
  sock.name = "sock";
  sock.listen_fd = VirtioConsole::listen_unix(path);
  sock.socket_path = path;
  auto dev = std::make_unique<VirtioConsole>(std::nullopt, std::vector{sock});
  {
    ConsoleDriver drv(*dev);
    drv.activate();
    // Only port 1 exists: no console.
    drv.post_control_buffers(32);
    drv.control(kBadId, VirtioConsole::kDeviceReady, 1);
    auto ms = drv.messages(1);
    REQUIRE(ms.size() == 1);
    CHECK(has(ms, 1, VirtioConsole::kDeviceAdd, 0));
    drv.control(1, VirtioConsole::kPortReady, 1);
    ms = drv.messages(1);
    REQUIRE(ms.size() == 1);
    CHECK(ms[0].event == VirtioConsole::kPortName);  // no PORT_OPEN: no client yet

    const int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0);
    ms = drv.messages(1);
    CHECK(has(ms, 1, VirtioConsole::kPortOpen, 1));

    // host -> guest, once the guest opened the port.
    REQUIRE(::write(client, "ping", 4) == 4);
    const uint64_t rx = drv.post(4, 64);
    CHECK(drv.used(4, 1, 100).empty());
    drv.control(1, VirtioConsole::kPortOpen, 1);
    auto used = drv.used(4, 1);
    REQUIRE(used.size() == 1);
    CHECK(drv.read(rx, used[0].len) == "ping");

    // guest -> host: 48 chains of 32 KiB, far more than the socket buffers hold while the
    // client does not read. The device stops taking chains instead of dropping bytes.
    std::string chunk(32 * 1024, 'x');
    for (int i = 0; i < 48; ++i) {
      chunk[0] = static_cast<char>('A' + i % 26);
      drv.send(5, chunk);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    auto early = drv.used(5, 48, 10);
    CHECK(early.size() < 48);
    std::string got;
    char buf[65536];
    eventually([&] {
      ssize_t n;
      while ((n = ::recv(client, buf, sizeof(buf), MSG_DONTWAIT)) > 0) {
        got.append(buf, static_cast<size_t>(n));
      }
      return got.size() >= 48u * chunk.size();
    });
    CHECK(got.size() == 48u * chunk.size());
    CHECK(got[0] == 'A');
    CHECK(got[47 * chunk.size()] == 'A' + 47 % 26);
    CHECK(early.size() + drv.used(5, 48 - early.size()).size() == 48);
    CHECK(dev->bytes_dropped() == 0);

    // The client leaves: the guest is told the host side closed.
    ::close(client);
    ms = drv.messages(1);
    CHECK(has(ms, 1, VirtioConsole::kPortOpen, 0));
  }
  dev.reset();
  CHECK(::access(path.c_str(), F_OK) != 0);  // the device removes its socket
  ::rmdir(dir_template);
}

TEST_CASE("console: hostile transmit buffers and reset") {
  PipeOutput out;
  VirtioConsole dev(output_port("", out.output), {});
  {
    ConsoleDriver drv(dev);
    drv.activate(false);
    // A buffer outside guest RAM, and one declared larger than the per-chain limit.
    drv.driver(1).add_chain({{kRam - 4, 4096, false}});
    drv.driver(1).add_chain({{0x800000, 2u << 20, false}});
    drv.event(1).signal();
    CHECK(drv.used(1, 2).size() == 2);
    CHECK(dev.bytes_dropped() == (2u << 20) - VirtioConsole::kMaxChainBytes);
    CHECK(drv.irq.needs_reset == 0);
  }
  CHECK(dev.acked_features() == 0);
  // Active again after a reset: the handshake starts over.
  ConsoleDriver again(dev);
  again.activate();
  auto adds = again.handshake(1);
  CHECK(has(adds, 0, VirtioConsole::kDeviceAdd, 0));
  CHECK(again.messages(2).size() == 2);
}

TEST_CASE("console: what the guest wrote just before the stop still reaches the host") {
  PipeOutput out;
  std::string captured;
  ConsolePortConfig exit_port;
  exit_port.name = "minivmm.exit";
  exit_port.sink = [&](std::span<const uint8_t> b) { captured.append(b.begin(), b.end()); };
  VirtioConsole dev(output_port("", out.output), {exit_port});
  ConsoleDriver drv(dev);
  drv.activate();
  drv.handshake(2);
  auto ms = drv.messages(5);
  CHECK(has(ms, 1, VirtioConsole::kPortOpen, 1));  // a sink is always connected
  // Made available, but the notification never reaches the worker before the stop (the
  // guest powered off right after): the stop serves the transmit queues once more.
  const std::string last = "last line\n";
  const uint64_t a = drv.alloc(64);
  std::memcpy(drv.guest_.host(a), last.data(), last.size());
  drv.driver(1).add_chain({{a, static_cast<uint32_t>(last.size()), false}});
  const uint64_t b = drv.alloc(64);
  std::memcpy(drv.guest_.host(b), "7\n", 2);
  drv.driver(5).add_chain({{b, 2, false}});
  dev.reset();
  CHECK(out.read_all() == last);
  CHECK(captured == "7\n");
}

TEST_CASE("console: bad port names and too many ports are refused") {
  CHECK_THROWS_AS(VirtioConsole(std::nullopt, {output_port("", nullptr)}), std::invalid_argument);
  CHECK_THROWS_AS(VirtioConsole(std::nullopt, {output_port("a/b", nullptr)}),
                  std::invalid_argument);
  CHECK_THROWS_AS(VirtioConsole(std::nullopt, {output_port("x", nullptr), output_port("x", nullptr)}),
                  std::invalid_argument);
  std::vector<ConsolePortConfig> many;
  for (uint32_t i = 0; i <= VirtioConsole::kMaxNamedPorts; ++i) {
    many.push_back(output_port("p" + std::to_string(i), nullptr));
  }
  CHECK_THROWS_AS(VirtioConsole(std::nullopt, many), std::invalid_argument);
  CHECK_THROWS_AS(VirtioConsole::listen_unix("/tmp"), std::system_error);  // not a socket
}
