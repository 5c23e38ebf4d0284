#include "devices/virtio_console.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>
#include <stdexcept>
#include <system_error>

#include "virtio/spec.h"

namespace minivmm::devices {
namespace {

constexpr size_t kChunk = 4096;

// Linux's udev rule and our init turn the name into a path: keep it a file name.
bool valid_port_name(const std::string& name) {
  if (name.empty() || name.size() > VirtioConsole::kMaxNameLength) return false;
  if (name == "." || name == "..") return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
  });
}

void put_le16(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v);
  p[1] = static_cast<uint8_t>(v >> 8);
}

void put_le32(uint8_t* p, uint32_t v) {
  put_le16(p, v);
  put_le16(p + 2, v >> 16);
}

}  // namespace

VirtioConsole::VirtioConsole(std::optional<ConsolePortConfig> console,
                             std::vector<ConsolePortConfig> named) {
  if (named.size() > kMaxNamedPorts) {
    throw std::invalid_argument("at most " + std::to_string(kMaxNamedPorts) +
                                " named ports are supported");
  }
  std::set<std::string> names;
  for (const ConsolePortConfig& p : named) {
    if (!valid_port_name(p.name)) {
      throw std::invalid_argument("port name \"" + p.name +
                                  "\" must be 1-127 characters of A-Z a-z 0-9 . _ -");
    }
    if (!names.insert(p.name).second) {
      throw std::invalid_argument("port name \"" + p.name + "\" is given more than once");
    }
  }
  ports_.resize(1 + named.size());
  if (console) {
    ports_[0].present = true;
    ports_[0].config = std::move(*console);
  }
  for (size_t i = 0; i < named.size(); ++i) {
    ports_[i + 1].present = true;
    ports_[i + 1].config = std::move(named[i]);
  }
  queue_sizes_.assign(2 * (ports_.size() + 1), kQueueSize);
  worker_.spawn("console");
}

VirtioConsole::~VirtioConsole() {
  reset();
  for (Port& p : ports_) {
    if (p.client_fd >= 0) ::close(p.client_fd);
    if (p.config.listen_fd >= 0) ::close(p.config.listen_fd);
    if (!p.config.socket_path.empty()) ::unlink(p.config.socket_path.c_str());
  }
  const uint64_t lost = bytes_dropped();
  if (lost > 0) spdlog::warn("virtio-console: {} bytes of guest output were dropped in all", lost);
}

int VirtioConsole::listen_unix(const std::string& path) {
  sockaddr_un addr{};
  if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
    throw std::system_error(ENAMETOOLONG, std::generic_category(),
                            path + ": a unix socket path must be 1-107 bytes");
  }
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      throw std::system_error(EEXIST, std::generic_category(),
                              path + ": exists and is not a socket");
    }
    ::unlink(path.c_str());  // a stale socket of an earlier run
  }
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), path);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::listen(fd, 4) != 0) {
    const int saved = errno;
    ::close(fd);
    throw std::system_error(saved, std::generic_category(), path);
  }
  return fd;
}

uint64_t VirtioConsole::device_features() const {
  return virtio::feature_bit(virtio::kFVersion1) | virtio::feature_bit(virtio::kFEventIdx) |
         virtio::feature_bit(virtio::kFIndirectDesc) | virtio::feature_bit(kFSize) |
         virtio::feature_bit(kFMultiport) | virtio::feature_bit(kFEmergWrite);
}

void VirtioConsole::read_config(uint64_t offset, std::span<uint8_t> data) const {
  // struct virtio_console_config { le16 cols; le16 rows; le32 max_nr_ports; le32 emerg_wr; }
  std::array<uint8_t, 12> config{};
  put_le16(&config[0], cols_.load(std::memory_order_relaxed));
  put_le16(&config[2], rows_.load(std::memory_order_relaxed));
  put_le32(&config[4], max_ports());
  virtio::read_config_window(config, offset, data);
}

void VirtioConsole::write_config(uint64_t offset, std::span<const uint8_t> data) {
  // emerg_wr (§5.3.4): one byte for the console, even before the driver is ready.
  constexpr uint64_t kEmergWr = 8;
  if (offset > kEmergWr || offset + data.size() <= kEmergWr) return;
  const Port& console = ports_[0];
  if (console.present && console.config.output) {
    console.config.output->write(data.subspan(static_cast<size_t>(kEmergWr - offset), 1));
  }
}

bool VirtioConsole::multiport() const {
  return virtio::has_feature(acked_features_, kFMultiport);
}

bool VirtioConsole::host_connected(const Port& p) const {
  return p.config.listen_fd < 0 || p.client_fd >= 0;
}

bool VirtioConsole::deliverable(uint32_t id) const {
  const Port& p = ports_[id];
  if (!p.present) return false;
  return multiport() ? p.ready && p.guest_open : id == 0;
}

std::optional<virtio::ActivateError> VirtioConsole::activate(const virtio::ActivateContext& ctx) {
  if (ctx.queues.size() != queue_sizes_.size() || ctx.queue_events.size() != queue_sizes_.size()) {
    return virtio::ActivateError{"virtio-console: expected " +
                                 std::to_string(queue_sizes_.size()) + " queues"};
  }
  VirtioWorker::Hooks hooks;
  hooks.on_start = [this](EventLoop& loop) {
    loop.add(wake_.fd(), EventLoop::kIn, [this](uint32_t) { on_wake(); });
    for (uint32_t id = 0; id < ports_.size(); ++id) {
      const Port& p = ports_[id];
      if (p.config.listen_fd >= 0) {
        loop.add(p.config.listen_fd, EventLoop::kIn, [this, id](uint32_t) { accept_client(id); });
      }
      if (p.client_fd >= 0) {
        loop.add(p.client_fd, EventLoop::kIn,
                 [this, id](uint32_t events) { on_client(id, events); });
      }
    }
  };
  hooks.on_queue = [this](uint16_t q) { on_queue(q); };
  hooks.on_stop = [this] {
    for (uint32_t id = 0; id < ports_.size(); ++id) {
      if (id == 0 || multiport()) serve_transmit(id);
    }
  };
  try {
    worker_.start("virtio-console", ctx, std::move(hooks));
  } catch (const std::exception& e) {
    return virtio::ActivateError{std::string("virtio-console: cannot start its worker: ") +
                                 e.what()};
  }
  return std::nullopt;
}

void VirtioConsole::reset() {
  worker_.stop();
  for (Port& p : ports_) {
    p.added = false;
    p.ready = false;
    p.guest_open = false;
  }
  control_out_.clear();
  acked_features_ = 0;
}

size_t VirtioConsole::enqueue_input(std::span<const uint8_t> bytes) {
  size_t taken;
  {
    std::lock_guard lock(input_mutex_);
    Port& console = ports_[0];
    if (!console.present || !console.config.host_input) return bytes.size();
    taken = std::min(bytes.size(), kInputCapacity - console.input.size());
    console.input.insert(console.input.end(), bytes.begin(),
                         bytes.begin() + static_cast<std::ptrdiff_t>(taken));
  }
  if (taken > 0) wake_.signal();
  return taken;
}

size_t VirtioConsole::input_space() const {
  std::lock_guard lock(input_mutex_);
  return kInputCapacity - ports_[0].input.size();
}

void VirtioConsole::resize(uint16_t cols, uint16_t rows) {
  cols_.store(cols, std::memory_order_relaxed);
  rows_.store(rows, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
  size_set_.store(true, std::memory_order_release);
  resize_pending_.store(true, std::memory_order_release);
  wake_.signal();
}

// ---- worker ----

void VirtioConsole::on_queue(uint16_t q) {
  if (q == kControlRxQueue) return serve_control_rx();
  if (q == kControlTxQueue) return serve_control_tx();
  const uint32_t id = q < 2 ? 0 : static_cast<uint32_t>((q - 2) / 2);
  if (id >= ports_.size()) return;
  if (q % 2 == 0) {
    serve_receive(id);
  } else {
    serve_transmit(id);
  }
}

void VirtioConsole::on_wake() {
  wake_.consume();
  if (resize_pending_.exchange(false, std::memory_order_acq_rel)) {
    if (!multiport()) {
      worker_.context().interrupt.signal(virtio::kInterruptConfigChange);
    } else if (ports_[0].ready) {
      send_size();
      serve_control_rx();
    }
  }
  serve_receive(0);
}

void VirtioConsole::serve_receive(uint32_t id) {
  Port& port = ports_[id];
  worker_.serve_while(
      rx_queue(id),
      [this, id, &port] {
        if (!deliverable(id)) return false;
        std::lock_guard lock(input_mutex_);
        return !port.input.empty();
      },
      [this, &port](const virtio::DescriptorChain& chain) { return handle_receive(port, chain); });
  update_client_interest(id);
}

uint32_t VirtioConsole::handle_receive(Port& port, const virtio::DescriptorChain& chain) {
  virtio::ChainWriter writer(worker_.context().mem, chain);
  std::array<uint8_t, kChunk> buf;
  std::lock_guard lock(input_mutex_);
  while (writer.remaining() > 0 && !port.input.empty()) {
    const size_t n = static_cast<size_t>(
        std::min<uint64_t>({writer.remaining(), port.input.size(), buf.size()}));
    std::copy_n(port.input.begin(), n, buf.begin());
    port.input.erase(port.input.begin(), port.input.begin() + static_cast<std::ptrdiff_t>(n));
    if (!writer.write(std::span(buf.data(), n))) {
      warn_once("a receive buffer lies outside guest RAM; host input was lost");
      break;
    }
  }
  return static_cast<uint32_t>(writer.bytes_written());
}

void VirtioConsole::serve_transmit(uint32_t id) {
  Port& port = ports_[id];
  const uint16_t q = static_cast<uint16_t>(rx_queue(id) + 1);
  auto handle = [this, id](const virtio::DescriptorChain& chain) {
    return handle_transmit(id, chain);
  };
  if (port.config.listen_fd >= 0) {
    // While the socket holds back bytes, the rest waits in the ring.
    worker_.serve_while(
        q, [&port] { return port.pending_head == port.pending_out.size(); }, handle);
  } else {
    worker_.serve(q, handle);
  }
}

uint32_t VirtioConsole::handle_transmit(uint32_t id, const virtio::DescriptorChain& chain) {
  Port& port = ports_[id];
  virtio::ChainReader reader(worker_.context().mem, chain);
  uint64_t left = reader.remaining();
  if (left > kMaxChainBytes) {
    count_dropped(left - kMaxChainBytes, "a transmit buffer over 1 MiB was cut");
    left = kMaxChainBytes;
  }
  const bool socket = port.config.listen_fd >= 0;
  if (!port.present || (socket && port.client_fd < 0)) {
    // No port (the guest wrote to one the device never added) or no client: nowhere to go.
    if (left > 0) count_dropped(left, socket ? "no client on the port's socket" : "no such port");
    return 0;
  }
  std::array<uint8_t, kChunk> buf;
  while (left > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
    if (!reader.read(std::span(buf.data(), n))) {
      warn_once("a transmit buffer lies outside guest RAM");
      break;
    }
    if (socket) {
      port.pending_out.insert(port.pending_out.end(), buf.begin(),
                              buf.begin() + static_cast<std::ptrdiff_t>(n));
    } else if (port.config.output) {
      port.config.output->write(std::span(buf.data(), n));
    } else if (port.config.sink) {
      port.config.sink(std::span<const uint8_t>(buf.data(), n));
    }
    left -= n;
  }
  if (socket && !flush_socket(port)) update_client_interest(id);
  return 0;  // the device writes nothing into a transmit buffer
}

void VirtioConsole::serve_control_rx() {
  worker_.serve_while(
      kControlRxQueue, [this] { return !control_out_.empty(); },
      [this](const virtio::DescriptorChain& chain) {
        virtio::ChainWriter writer(worker_.context().mem, chain);
        const std::vector<uint8_t> msg = std::move(control_out_.front());
        control_out_.pop_front();
        if (writer.remaining() < msg.size()) {
          warn_once("a control receive buffer is too small for a message; message lost");
          return 0u;
        }
        if (!writer.write(msg)) warn_once("a control receive buffer lies outside guest RAM");
        return static_cast<uint32_t>(writer.bytes_written());
      });
}

void VirtioConsole::serve_control_tx() {
  worker_.serve(kControlTxQueue, [this](const virtio::DescriptorChain& chain) {
    virtio::ChainReader reader(worker_.context().mem, chain);
    auto msg = reader.read_obj<Control>();
    if (!msg) {
      warn_once("a control message shorter than its 8-byte header");
    } else {
      handle_control(*msg);
    }
    return 0u;
  });
  serve_control_rx();
  // A port the guest just opened gets what waited for it.
  for (uint32_t id = 0; id < ports_.size(); ++id) {
    if (deliverable(id)) serve_receive(id);
  }
}

void VirtioConsole::handle_control(const Control& msg) {
  if (!multiport()) {
    warn_once("a control message without VIRTIO_CONSOLE_F_MULTIPORT");
    return;
  }
  if (msg.event == kDeviceReady) {
    if (msg.value != 1) {
      warn_once("the guest's driver could not set up the device (DEVICE_READY 0)");
      return;
    }
    for (uint32_t id = 0; id < ports_.size(); ++id) {
      if (!ports_[id].present) continue;
      ports_[id].added = true;
      send_control(id, kDeviceAdd, 0);
    }
    return;
  }
  if (msg.id >= ports_.size() || !ports_[msg.id].present || !ports_[msg.id].added) {
    warn_once("control event " + std::to_string(msg.event) + " for port " +
              std::to_string(msg.id) + ", which the device has not added");
    return;
  }
  Port& port = ports_[msg.id];
  switch (msg.event) {
    case kPortReady: {
      if (msg.value != 1) {
        warn_once("the guest could not set up port " + std::to_string(msg.id));
        return;
      }
      if (port.ready) return;  // once per device reset
      port.ready = true;
      if (msg.id == 0) {
        send_control(0, kConsolePort, 1);
        // With MULTIPORT the console learns its size only from RESIZE messages.
        if (size_set_.load(std::memory_order_acquire)) send_size();
      }
      if (!port.config.name.empty()) {
        const std::string& name = port.config.name;
        send_control(msg.id, kPortName, 1,
                     std::span(reinterpret_cast<const uint8_t*>(name.data()), name.size()));
      }
      if (host_connected(port)) send_control(msg.id, kPortOpen, 1);
      return;
    }
    case kPortOpen:
      if (!port.ready) {
        warn_once("PORT_OPEN for port " + std::to_string(msg.id) + " before PORT_READY");
        return;
      }
      port.guest_open = msg.value != 0;
      return;
    default:
      warn_once("unexpected control event " + std::to_string(msg.event) + " from the driver");
      return;
  }
}

void VirtioConsole::send_size() {
  // Linux reads the RESIZE payload as { rows, cols } (drivers/char/virtio_console.c).
  std::array<uint8_t, 4> size{};
  put_le16(&size[0], rows_.load(std::memory_order_relaxed));
  put_le16(&size[2], cols_.load(std::memory_order_relaxed));
  send_control(0, kResize, 0, size);
}

void VirtioConsole::send_control(uint32_t id, uint16_t event, uint16_t value,
                                 std::span<const uint8_t> extra) {
  if (control_out_.size() >= kMaxPendingControl) {
    warn_once("the driver takes no control messages; dropping them");
    return;
  }
  std::vector<uint8_t> msg(sizeof(Control) + extra.size());
  put_le32(&msg[0], id);
  put_le16(&msg[4], event);
  put_le16(&msg[6], value);
  std::copy(extra.begin(), extra.end(), msg.begin() + sizeof(Control));
  control_out_.push_back(std::move(msg));
}

void VirtioConsole::accept_client(uint32_t id) {
  Port& port = ports_[id];
  const int fd = ::accept4(port.config.listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  if (fd < 0) return;  // EAGAIN, or the client already gave up
  const std::string& name = port.config.name.empty() ? "console" : port.config.name;
  if (port.client_fd >= 0) {
    spdlog::warn("virtio-console port {}: a client is already connected; refused another", name);
    ::close(fd);
    return;
  }
  port.client_fd = fd;
  worker_.loop().add(fd, EventLoop::kIn, [this, id](uint32_t events) { on_client(id, events); });
  spdlog::info("virtio-console port {}: client connected", name);
  if (port.ready) {
    send_control(id, kPortOpen, 1);
    serve_control_rx();
  }
}

void VirtioConsole::on_client(uint32_t id, uint32_t events) {
  Port& port = ports_[id];
  if (events & EventLoop::kOut) {
    if (flush_socket(port)) serve_transmit(id);
  }
  if (port.client_fd >= 0 && (events & EventLoop::kIn)) {
    std::array<uint8_t, kChunk> buf;
    while (true) {
      size_t room;
      {
        std::lock_guard lock(input_mutex_);
        room = kInputCapacity - port.input.size();
      }
      if (room == 0) break;
      const ssize_t n = ::recv(port.client_fd, buf.data(), std::min(room, buf.size()), 0);
      if (n > 0) {
        std::lock_guard lock(input_mutex_);
        port.input.insert(port.input.end(), buf.begin(), buf.begin() + n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      disconnect(id);  // EOF or an error
      break;
    }
    serve_receive(id);
  }
  if (port.client_fd >= 0 && (events & (EventLoop::kHangup | EventLoop::kError)) &&
      !(events & EventLoop::kIn)) {
    disconnect(id);
  }
  update_client_interest(id);
}

void VirtioConsole::disconnect(uint32_t id) {
  Port& port = ports_[id];
  if (port.client_fd < 0) return;
  worker_.loop().remove(port.client_fd);
  ::close(port.client_fd);
  port.client_fd = -1;
  if (port.pending_head < port.pending_out.size()) {
    count_dropped(port.pending_out.size() - port.pending_head, "the socket's client went away");
  }
  port.pending_out.clear();
  port.pending_head = 0;
  spdlog::info("virtio-console port {}: client disconnected", port.config.name);
  if (port.ready) {
    send_control(id, kPortOpen, 0);
    serve_control_rx();
  }
  serve_transmit(id);  // what the guest sends now is dropped, not held
}

bool VirtioConsole::flush_socket(Port& port) {
  while (port.pending_head < port.pending_out.size()) {
    const ssize_t n = ::send(port.client_fd, port.pending_out.data() + port.pending_head,
                             port.pending_out.size() - port.pending_head,
                             MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) {
      port.pending_head += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return false;
    // The client is going away; its hangup comes through the loop.
    count_dropped(port.pending_out.size() - port.pending_head, "the socket's client went away");
    break;
  }
  port.pending_out.clear();
  port.pending_head = 0;
  return true;
}

void VirtioConsole::update_client_interest(uint32_t id) {
  Port& port = ports_[id];
  if (port.client_fd < 0) return;
  bool room;
  {
    std::lock_guard lock(input_mutex_);
    room = port.input.size() < kInputCapacity;
  }
  const bool pending = port.pending_head < port.pending_out.size();
  worker_.loop().modify(port.client_fd,
                        (room ? EventLoop::kIn : 0u) | (pending ? EventLoop::kOut : 0u));
}

void VirtioConsole::count_dropped(uint64_t n, const char* why) {
  dropped_.fetch_add(n, std::memory_order_relaxed);
  if (!drop_logged_) {
    drop_logged_ = true;
    spdlog::warn("virtio-console: guest output dropped ({}); the total is reported at exit", why);
  }
}

void VirtioConsole::warn_once(const std::string& what) {
  constexpr uint32_t kMaxWarnings = 8;
  if (warnings_ >= kMaxWarnings || !warned_.insert(what).second) return;
  ++warnings_;
  spdlog::warn("virtio-console: {}{}", what,
               warnings_ == kMaxWarnings ? " (further driver errors are not logged)" : "");
}

}  // namespace minivmm::devices
