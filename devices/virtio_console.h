// VirtioConsole: the console device (virtio 1.2 §5.3) with VIRTIO_CONSOLE_F_MULTIPORT,
// F_SIZE and F_EMERG_WRITE. Port 0 is the console (hvc0 in a Linux guest), present when the
// VM has one; ports 1..N are named ports, which Linux shows as /dev/vportNpM with the name
// in /sys/class/virtio-ports/*/name (udev, or the project's init, links
// /dev/virtio-ports/NAME to it).
//
// Queues: receiveq/transmitq of port 0 (0, 1), the control receiveq/transmitq (2, 3), then
// receiveq/transmitq of port p at 2 + 2p, 3 + 2p. Without MULTIPORT the driver sets up only
// the first two and only port 0 exists.
//
// The control protocol (§5.3.6.2, as Linux drives it): the driver sends DEVICE_READY; the
// device answers PORT_ADD for each port; the driver answers PORT_READY per port; the device
// then sends CONSOLE_PORT (port 0), PORT_NAME (named ports) and PORT_OPEN when the host side
// is connected. The driver reports the guest side with PORT_OPEN. Messages out of order or
// for unknown ports are logged once and ignored; the device's answers wait in a bounded
// queue for control receive buffers.
//
// Host side of a port:
//   - an output (HostOutput: stdout, a file): guest bytes are handed to it, never blocking;
//     the output drops what it cannot buffer (counted). Always connected. Or a sink in the
//     VMM (the guest's exit status port), also always connected.
//   - a listening unix socket: one client at a time, both directions. Connected while a
//     client is; guest output waits in the transmit queue while the socket is full (nothing
//     is dropped), and host input is read only as fast as the guest takes it.
//   - host input for port 0 from the main loop through ConsoleInput (stdin).
// Host data for a port is delivered once the guest has opened it (bytes sent to a closed
// port would be thrown away by Linux), at most kInputCapacity bytes wait per port.
// When the device stops (the VM ends, or the driver resets it) its worker serves every
// transmit queue once more, so that what the guest wrote just before powering off (its
// last console lines, its exit status) is not left in the ring.
//
// Hostile drivers: every request completes; a chain's bytes are read up to kMaxChainBytes
// (the rest is dropped and counted), control messages shorter than their header are
// ignored, and nothing the driver sends makes the host allocate more than the bounds above.
//
// Threads: the VirtioDevice methods on the transport's thread (a vCPU); enqueue_input(),
// input_space() and resize() from the main thread; the queues, the sockets and all port
// state on the worker (thread class "console").
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "devices/console_input.h"
#include "devices/host_output.h"
#include "devices/virtio_worker.h"
#include "virtio/event_fd.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

// The host side of one port (see the file comment).
struct ConsolePortConfig {
  std::string name;                    // announced with PORT_NAME; empty for the console
  std::shared_ptr<HostOutput> output;  // guest output; null: discarded (unless a socket)
  // Or guest output to the VMM itself (minivmm.exit), called on the worker thread.
  std::function<void(std::span<const uint8_t>)> sink;
  int listen_fd = -1;                  // a listening unix socket, owned by the device
  std::string socket_path;             // removed when the device is destroyed
  bool host_input = false;             // enqueue_input() feeds this port (port 0 only)
};

class VirtioConsole final : public virtio::VirtioDevice, public ConsoleInput {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint32_t kMaxNamedPorts = 30;
  static constexpr size_t kMaxNameLength = 127;
  static constexpr size_t kInputCapacity = 64 * 1024;   // host bytes waiting per port
  static constexpr uint32_t kMaxChainBytes = 1 << 20;   // read of one transmit chain
  static constexpr size_t kMaxPendingControl = 256;     // answers waiting for buffers

  // virtio 1.2 §5.3.3
  static constexpr unsigned kFSize = 0;
  static constexpr unsigned kFMultiport = 1;
  static constexpr unsigned kFEmergWrite = 2;
  // §5.3.6.2 control events
  static constexpr uint16_t kDeviceReady = 0;
  static constexpr uint16_t kDeviceAdd = 1;
  static constexpr uint16_t kDeviceRemove = 2;
  static constexpr uint16_t kPortReady = 3;
  static constexpr uint16_t kConsolePort = 4;
  static constexpr uint16_t kResize = 5;
  static constexpr uint16_t kPortOpen = 6;
  static constexpr uint16_t kPortName = 7;
  static constexpr uint16_t kControlRxQueue = 2;
  static constexpr uint16_t kControlTxQueue = 3;

  struct Control {  // struct virtio_console_control
    uint32_t id;
    uint16_t event;
    uint16_t value;
  };
  static_assert(sizeof(Control) == 8);

  // `console`: port 0 (hvc0), or none. `named`: ports 1..N in order. Throws
  // std::invalid_argument for more than kMaxNamedPorts or a bad or duplicate name.
  VirtioConsole(std::optional<ConsolePortConfig> console, std::vector<ConsolePortConfig> named);
  ~VirtioConsole() override;

  // A unix socket listening at `path` (a stale socket file there is replaced; anything else
  // is refused). Throws std::system_error naming the path.
  static int listen_unix(const std::string& path);

  uint32_t device_type() const override { return virtio::kDeviceIdConsole; }
  std::span<const uint16_t> queue_max_sizes() const override { return queue_sizes_; }
  uint64_t device_features() const override;
  void set_acked_features(uint64_t features) override { acked_features_ = features; }
  uint64_t acked_features() const override { return acked_features_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  uint32_t config_generation() const override {
    return generation_.load(std::memory_order_acquire);
  }
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override;
  void reset() override;

  // ConsoleInput: host input for port 0.
  size_t enqueue_input(std::span<const uint8_t> bytes) override;
  size_t input_space() const override;
  // The host terminal's size changed: tell the guest's console (config space and, with
  // MULTIPORT, a RESIZE message).
  void resize(uint16_t cols, uint16_t rows) override;

  uint32_t max_ports() const { return static_cast<uint32_t>(ports_.size()); }
  uint64_t bytes_dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  struct Port {
    ConsolePortConfig config;
    bool present = false;
    int client_fd = -1;  // socket ports: the connected client
    // Guest side, reset with the device.
    bool added = false;
    bool ready = false;
    bool guest_open = false;
    // Host -> guest bytes waiting for receive buffers (input_mutex_).
    std::deque<uint8_t> input;
    // Guest -> host bytes waiting for the socket (worker only).
    std::vector<uint8_t> pending_out;
    size_t pending_head = 0;
  };

  static uint16_t rx_queue(uint32_t port) {
    return port == 0 ? 0 : static_cast<uint16_t>(2 + 2 * port);
  }
  bool multiport() const;
  bool host_connected(const Port& p) const;
  bool deliverable(uint32_t id) const;  // the guest takes host data on this port now

  // Worker side.
  void on_queue(uint16_t q);
  void serve_receive(uint32_t id);
  void serve_transmit(uint32_t id);
  void serve_control_rx();
  void serve_control_tx();
  uint32_t handle_transmit(uint32_t id, const virtio::DescriptorChain& chain);
  uint32_t handle_receive(Port& port, const virtio::DescriptorChain& chain);
  void handle_control(const Control& msg);
  void send_size();  // RESIZE for port 0
  void send_control(uint32_t id, uint16_t event, uint16_t value,
                    std::span<const uint8_t> extra = {});
  void on_wake();
  void accept_client(uint32_t id);
  void on_client(uint32_t id, uint32_t events);
  void disconnect(uint32_t id);
  bool flush_socket(Port& port);  // true when nothing waits for the socket
  void update_client_interest(uint32_t id);
  void count_dropped(uint64_t n, const char* why);
  void warn_once(const std::string& what);  // a driver error, logged once

  std::vector<uint16_t> queue_sizes_;
  std::vector<Port> ports_;  // index = port id
  uint64_t acked_features_ = 0;
  std::atomic<uint32_t> cols_{80};
  std::atomic<uint32_t> rows_{25};
  std::atomic<uint32_t> generation_{0};
  std::atomic<bool> size_set_{false};        // resize() was called: the size is the host's
  std::atomic<bool> resize_pending_{false};
  virtio::EventFd wake_;  // host input or a resize for the worker
  mutable std::mutex input_mutex_;
  std::atomic<uint64_t> dropped_{0};
  bool drop_logged_ = false;
  uint32_t warnings_ = 0;          // driver errors logged (at most 8, each once)
  std::set<std::string> warned_;
  std::deque<std::vector<uint8_t>> control_out_;  // worker only
  VirtioWorker worker_;  // last: stopped first
};

}  // namespace minivmm::devices
