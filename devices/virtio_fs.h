// VirtioFs: the virtio file-system device (virtio 1.2 §5.11) with its queues served by a
// vhost-user backend process (virtiofsd) through VhostUserFrontend. minivmm keeps the
// config space (the tag, one request queue) and the transport; the backend reads the
// driver's notifications straight from the queues' ioeventfds and serves the rings in
// guest memory (shared: a memfd).
//
// What stays with minivmm, on the device's worker (thread class "vhost"):
//  - each activation: SET_FEATURES, SET_MEM_TABLE and the rings (NUM, BASE, ADDR, CALL,
//    ERR, KICK, ENABLE), in that order;
//  - the call relay: with virtio-mmio the guest's driver looks at its rings only when
//    InterruptStatus says so, which a backend cannot set. So the backend signals an eventfd
//    of ours and the worker raises the interrupt through the transport;
//  - each reset: GET_VRING_BASE per ring, which is what stops a ring in virtiofsd; a
//    later activation (the driver unbound and bound again) uses the same connection;
//  - the backend's death (its socket hangs up, a ring's err eventfd, or the VMM telling
//    backend_gone()): the device sets DEVICE_NEEDS_RESET and is not used again. Requests
//    the backend had taken never complete (the guest's processes that wait for them block);
//    the VM goes on.
//
// Threads: the constructor on the VMM's main thread (the handshake happens there, before
// any seccomp filter); VirtioDevice methods on the transport's thread; backend_gone() on
// the main thread; the relay and the ring setup on the worker.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "devices/vhost_user.h"
#include "devices/virtio_worker.h"
#include "virtio/event_fd.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

class VirtioFs final : public virtio::VirtioDevice {
 public:
  static constexpr uint32_t kDeviceId = 26;  // virtio 1.2 §5.11
  static constexpr size_t kTagSize = 36;     // §5.11.4: UTF-8, NUL-padded, no NUL needed
  // hiprio + one request queue: QEMU 7.2's C virtiofsd serves no more (DESIGN.md).
  static constexpr uint32_t kNumRequestQueues = 1;
  static constexpr uint16_t kQueueSize = 1024;

  struct Options {
    std::string tag;
    std::string name;  // for log lines: "virtio-fs share"
    // The backend is minivmm's own virtiofsd: its exit is reported by the VMM
    // (backend_gone), so a hang-up is not logged again here.
    bool own_daemon = false;
    std::chrono::milliseconds reply_timeout{std::chrono::seconds(5)};
  };

  // Handshakes with the backend on `socket` (connected). Throws std::runtime_error with a
  // one-line message when the backend does not answer as a virtio-fs backend must
  // (no VIRTIO_F_VERSION_1, too few queues, a bad reply), and std::invalid_argument for a
  // tag that is empty or longer than kTagSize bytes.
  VirtioFs(Options options, vmm::UniqueFd socket);
  ~VirtioFs() override;

  uint32_t device_type() const override { return kDeviceId; }
  std::span<const uint16_t> queue_max_sizes() const override { return kQueueSizes; }
  uint64_t device_features() const override { return device_features_; }
  void set_acked_features(uint64_t features) override { acked_features_ = features; }
  uint64_t acked_features() const override { return acked_features_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}  // §5.11.4: read-only
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override;
  void reset() override;
  bool needs_shared_memory() const override { return true; }

  // The backend process ended: the device stops using it and asks the driver for a reset.
  void backend_gone();
  bool backend_alive() const { return !gone_.load(std::memory_order_acquire); }
  const std::string& tag() const { return options_.tag; }

 private:
  static constexpr uint16_t kQueueSizes[1 + kNumRequestQueues] = {kQueueSize, kQueueSize};
  void start_rings(const virtio::ActivateContext& ctx, EventLoop& loop);  // worker; throws
  void stop_rings();                                                      // worker
  // The backend is unusable: log once, ask for a reset. A hang-up of minivmm's own daemon is
  // the VMM's to report.
  void lost(const std::string& why, bool hangup = false);
  void ask_for_reset();  // DEVICE_NEEDS_RESET, once the device was activated

  Options options_;
  VhostUserFrontend frontend_;
  uint64_t device_features_ = 0;
  uint64_t acked_features_ = 0;
  std::vector<virtio::EventFd> calls_;  // one per queue, made before the guest runs
  std::vector<virtio::EventFd> errs_;
  std::vector<bool> started_;           // worker: rings the backend runs
  std::atomic<bool> gone_{false};
  std::atomic<bool> logged_{false};
  // The transport, from the first activation on (it outlives the device; after a reset its
  // set_needs_reset() does nothing).
  std::atomic<virtio::VirtioInterrupt*> interrupt_{nullptr};
  VirtioWorker worker_;  // last: stopped first
};

}  // namespace minivmm::devices
