// VirtioBlock: the virtio-blk device (virtio 1.2 §5.2) on the in-tree Queue and
// VirtioDevice, with its disk image, a disk backend (io_uring or synchronous) and a
// VirtioWorker, its I/O thread (thread class "blk").
//
// Owns: the DiskImage (opened and locked at construction), and while active the worker
// with the disk backend, which the worker thread makes (io_uring's single-issuer mode wants
// its creator to submit). Each request is parsed by `parse_into`
// (devices/virtio_blk_request.h), executed on the backend with iovecs pointing into guest
// memory, and returned to the used ring only after the backend finished it; the status byte
// is written whenever it is reachable. Requests complete asynchronously, so the device runs
// its own queue loop (process_queue) instead of VirtioWorker::serve().
//
// Threads: the VirtioDevice methods are called by the transport on a vCPU thread
// (serialised by it) or by the VMM's main thread. Between activate() and reset() the worker
// alone touches the queues, the backend and guest memory. reset() stops the worker after
// in-flight I/O completed; the device can then be activated again.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <vector>

#include "devices/disk_backend.h"
#include "devices/fault_backend.h"
#include "devices/disk_image.h"
#include "devices/event_loop.h"
#include "devices/virtio_blk_request.h"
#include "devices/virtio_worker.h"
#include "virtio/virtio_device.h"

namespace minivmm::devices {

struct BlockConfig {
  enum class Engine : uint8_t { kIoUring, kSync };
  std::string path;
  bool read_only = false;
  bool direct = false;  // O_DIRECT: bypass the host page cache
  std::string serial;   // GET_ID answer, at most 20 bytes (longer is truncated)
  Engine engine = Engine::kIoUring;
  uint16_t num_queues = 1;
  uint16_t queue_size = 256;  // a power of two
  // How long the I/O thread keeps polling the queues after it handled work before it
  // sleeps (EventLoop's busy polling); 0 turns polling off.
  uint32_t poll_us = kDefaultPollUs;
  // Off by default: polling spends a host CPU while the disk is busy, and on a host with
  // few CPUs it competes with the vCPUs. 100 is what bench_blk's targets are measured with.
  static constexpr uint32_t kDefaultPollUs = 0;
  static constexpr uint32_t kSuggestedPollUs = 100;
  // Tests only (devices/fault_backend.h): faults injected between the device and its
  // backend. The command line reaches it only in a MINIVMM_FAULT_INJECTION build.
  std::vector<DiskFault> faults;
};

// virtio 1.2 §5.2.4 "struct virtio_blk_config".
struct VirtioBlkConfig {
  uint64_t capacity;  // in 512-byte sectors
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t geometry_cylinders;
  uint8_t geometry_heads;
  uint8_t geometry_sectors;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
  uint32_t max_secure_erase_sectors;
  uint32_t max_secure_erase_seg;
  uint32_t secure_erase_sector_alignment;
};
static_assert(sizeof(VirtioBlkConfig) == 72);
static_assert(offsetof(VirtioBlkConfig, capacity) == 0);
static_assert(offsetof(VirtioBlkConfig, size_max) == 8);
static_assert(offsetof(VirtioBlkConfig, seg_max) == 12);
static_assert(offsetof(VirtioBlkConfig, geometry_cylinders) == 16);
static_assert(offsetof(VirtioBlkConfig, blk_size) == 20);
static_assert(offsetof(VirtioBlkConfig, physical_block_exp) == 24);
static_assert(offsetof(VirtioBlkConfig, opt_io_size) == 28);
static_assert(offsetof(VirtioBlkConfig, writeback) == 32);
static_assert(offsetof(VirtioBlkConfig, num_queues) == 34);
static_assert(offsetof(VirtioBlkConfig, max_discard_sectors) == 36);
static_assert(offsetof(VirtioBlkConfig, max_discard_seg) == 40);
static_assert(offsetof(VirtioBlkConfig, discard_sector_alignment) == 44);
static_assert(offsetof(VirtioBlkConfig, max_write_zeroes_sectors) == 48);
static_assert(offsetof(VirtioBlkConfig, max_write_zeroes_seg) == 52);
static_assert(offsetof(VirtioBlkConfig, write_zeroes_may_unmap) == 56);
static_assert(offsetof(VirtioBlkConfig, max_secure_erase_sectors) == 60);
static_assert(offsetof(VirtioBlkConfig, secure_erase_sector_alignment) == 68);
static_assert(std::is_trivially_copyable_v<VirtioBlkConfig>);

// Limits the device advertises (and enforces) for discard / write-zeroes.
inline constexpr uint32_t kMaxDwzSectors = 1u << 22;  // 2 GiB per segment
inline constexpr uint32_t kMaxDwzSegments = 32;
inline constexpr uint32_t kMaxIovecs = 1024;  // IOV_MAX: preadv / io_uring readv limit

class VirtioBlock final : public virtio::VirtioDevice, private Poller {
 public:
  // Opens and locks the image. Throws DiskImageError (image problems, meant for the user)
  // or std::invalid_argument (bad config). The backend is set up at each activate(); io_uring
  // being unavailable then falls back to the synchronous backend with a warning.
  explicit VirtioBlock(const BlockConfig& config);
  ~VirtioBlock() override;
  VirtioBlock(const VirtioBlock&) = delete;
  VirtioBlock& operator=(const VirtioBlock&) = delete;

  uint32_t device_type() const override { return virtio::kDeviceIdBlock; }
  std::span<const uint16_t> queue_max_sizes() const override { return queue_sizes_; }
  uint64_t device_features() const override { return device_features_; }
  void set_acked_features(uint64_t features) override { acked_features_ = features; }
  uint64_t acked_features() const override { return acked_features_; }
  void read_config(uint64_t offset, std::span<uint8_t> data) const override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  std::optional<virtio::ActivateError> activate(const virtio::ActivateContext& ctx) override;
  void reset() override;
  // fdatasync of a writable image.
  void sync_to_host() override;
  // A queue broken by the driver (avail index too far, a bad head, rings outside RAM) is
  // reported from the I/O thread through VirtioInterrupt::set_needs_reset().

  const VirtioBlkConfig& config() const { return config_; }
  // "io_uring" or "sync" once activated ("none" before): io_uring falls back to sync where
  // the kernel refuses it.
  const char* backend_name() const { return backend_name_; }
  bool active() const { return worker_.running(); }

 private:
  // Per (queue, head): the request being executed. One DiskOp at a time; segments and the
  // write-through flush follow one another.
  struct Slot {
    Request req;
    DiskOp op;
    uint16_t queue = 0;
    uint16_t head = 0;
    uint8_t status = kBlkSOk;
    uint32_t written = 0;  // bytes written to the guest on success
    size_t next_segment = 0;
    bool flushing = false;  // the write-through fdatasync of a write is running
  };

  void start_backend(EventLoop& loop);  // worker hooks
  void stop_backend();
  void process_queue(uint16_t q);
  // Poller: the avail rings, with notifications off while the I/O thread polls.
  void poll_begin() override;
  bool poll() override;
  void poll_end() override;
  void handle_chain(uint16_t q, virtio::DescriptorChain chain);
  void start_segment(Slot& s);
  void on_complete(DiskOp& op, int64_t result);
  void finish(Slot& s, uint8_t status, uint32_t written);
  void reap_completions();
  void flush_notifications();

  BlockConfig cfg_;
  DiskImage image_;
  std::unique_ptr<DiskBackend> backend_;  // made by the I/O thread at spawn, used only there
  const char* backend_name_ = "none";
  std::vector<uint16_t> queue_sizes_;
  VirtioBlkConfig config_{};
  uint64_t device_features_ = 0;
  uint64_t acked_features_ = 0;
  DiskBackend::CompletionFn on_complete_fn_;

  // Set by activate(), cleared by reset(); used by the I/O thread in between.
  const virtio::GuestMemory* mem_ = nullptr;
  std::span<virtio::Queue> queues_;
  virtio::VirtioInterrupt* interrupt_ = nullptr;
  DiskProperties props_;
  bool writethrough_ = false;  // VIRTIO_BLK_F_FLUSH not negotiated
  bool stopping_ = false;
  bool flush_failed_ = false;  // sticky: see on_complete
  bool warned_short_ = false;
  bool polling_ = false;  // between poll_begin() and poll_end(): notifications stay off
  std::vector<std::vector<Slot>> slots_;  // [queue][head]
  std::vector<uint8_t> stalled_, dirty_;
  VirtioWorker worker_;  // last: stopped first when the device is destroyed
};

}  // namespace minivmm::devices
