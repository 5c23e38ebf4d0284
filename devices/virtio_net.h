// VirtioNet: the network device (virtio 1.2 §5.1) on one NetBackend (devices/net_backend.h:
// a tap, passt, or a stream socket). One receive and one transmit queue, no control queue.
//
// Features: VIRTIO_NET_F_MAC, _STATUS (link up), _MRG_RXBUF, and the checksum and TSO4/TSO6
// offloads both ways only where the backend carries them (a tap does; passt's stream has
// no virtio header, so none).
//
// Receive. The device holds at most one frame it read from the backend and could not place
// yet. It reads the backend only while that slot is empty, and stops watching the backend
// while the frame waits for receive buffers -- no busy spin -- until the driver makes
// buffers available (its notification), so that data the backend has is never stranded
// when buffers come later (Firecracker CVE-2020-16843). A frame takes as many chains as it
// needs with MRG_RXBUF (one without); it is placed only once enough are there, otherwise
// they go back to the ring untouched (Queue::undo_pop); they are published together. A frame
// that could never fit (larger than every buffer the ring can hold) is dropped and counted.
//
// Transmit. Each chain is one header and one frame. The header is copied out of guest
// memory once and checked; the frame is handed to the backend as pieces of guest memory
// (translated and bounds-checked), which the kernel copies once in writev/sendmsg: the VMM
// never reads it (a chain in more pieces than a writev takes is copied instead). A frame
// larger than the backend carries, or shorter than an Ethernet header, is dropped and
// counted; the chain still completes.
// While a stream backend's backlog is full the device takes no transmit buffers and waits
// for the socket to drain.
//
// Each wake-up does a bounded amount of work (kBudget frames per direction) and comes back
// through its own eventfd when more waits, so that one busy direction cannot starve the
// other.
//
// Threads: the constructor on the VMM's main thread; VirtioDevice methods on the transport's
// thread; everything else on the worker (thread class "net").
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "devices/net_backend.h"
#include "devices/virtio_worker.h"
#include "virtio/event_fd.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

class VirtioNet final : public virtio::VirtioDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint32_t kBudget = 64;  // frames per direction per wake-up
  static constexpr uint16_t kRxQueue = 0;
  static constexpr uint16_t kTxQueue = 1;

  struct Options {
    std::string name;             // for log lines: "virtio-net passt"
    std::array<uint8_t, 6> mac{};
  };
  struct Counters {
    std::atomic<uint64_t> rx_frames{0};
    std::atomic<uint64_t> rx_bytes{0};
    std::atomic<uint64_t> rx_dropped{0};  // no buffer could ever hold it
    std::atomic<uint64_t> tx_frames{0};
    std::atomic<uint64_t> tx_bytes{0};
    std::atomic<uint64_t> tx_dropped{0};  // too large or short, or the backend refused it
  };

  VirtioNet(Options options, std::unique_ptr<NetBackend> backend);
  ~VirtioNet() override;

  uint32_t device_type() const override { return virtio::kDeviceIdNet; }
  std::span<const uint16_t> queue_max_sizes() const override { return kQueueSizes; }
  uint64_t device_features() const override;
  void set_acked_features(uint64_t features) override { acked_features_ = features; }
  uint64_t acked_features() const override { return acked_features_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}  // MAC is read-only here
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override;
  void reset() override;
  uint32_t config_generation() const override {
    return generation_.load(std::memory_order_acquire);
  }

  const Counters& counters() const { return counters_; }
  const std::array<uint8_t, 6>& mac() const { return options_.mac; }
  // A stable MAC (52:54:00:xx:xx:xx, QEMU's prefix) from a VM's seed text and the device's
  // index: the same command line gives the guest the same address every run.
  static std::array<uint8_t, 6> default_mac(const std::string& seed, unsigned index);

 private:
  static constexpr uint16_t kQueueSizes[2] = {kQueueSize, kQueueSize};
  enum class Placed { kDone, kNoRoom, kBroken };

  void start(EventLoop& loop);      // worker
  void on_backend(uint32_t events);  // worker: readable, writable, hung up
  void receive();                   // worker: frames from the backend into rx buffers
  Placed place(const NetBackend::Frame& frame);
  void transmit();                  // worker: tx buffers to the backend
  uint32_t send_chain(const virtio::DescriptorChain& chain);
  void update_interest();
  void backend_lost();
  void notify_rx();

  Options options_;
  std::unique_ptr<NetBackend> backend_;
  uint64_t acked_features_ = 0;
  Counters counters_;
  // Worker state for one activation.
  const virtio::ActivateContext* ctx_ = nullptr;
  EventLoop* loop_ = nullptr;
  bool mergeable_ = false;
  bool pending_ = false;      // frame_ waits for receive buffers
  NetBackend::Frame frame_{};
  bool lost_ = false;         // the backend is gone: tx frames are dropped, rx is quiet
  uint32_t interest_ = 0;
  bool rx_used_ = false;      // rx buffers used since the last interrupt
  virtio::EventFd more_;      // "come back": a direction ran out of budget
  bool more_rx_ = false;
  bool more_tx_ = false;
  std::vector<uint8_t> tx_buffer_;  // a frame in more pieces than a writev takes
  std::vector<iovec> tx_iov_;       // the frame's pieces of guest memory
  std::vector<virtio::DescriptorChain> rx_chains_;
  std::atomic<bool> link_up_{true};
  std::atomic<uint32_t> generation_{0};
  std::vector<virtio::VirtqUsedElem> used_;
  std::vector<uint16_t> heads_;
  VirtioWorker worker_;  // last: stopped first
};

}  // namespace minivmm::devices
