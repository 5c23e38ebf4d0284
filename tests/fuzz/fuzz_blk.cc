// libFuzzer target: virtio-blk request parsing and execution. The input becomes the
// guest's descriptor table, avail ring and buffers; the real VirtioBlock (synchronous
// backend, on a memfd) is activated over it, processes every available chain on its I/O
// thread, and is reset. Checks: no crash / sanitizer report, nothing written past the
// disk's capacity, every used element names a head < queue size with a sane length (unless
// the guest aimed a device-writable buffer at the used ring itself, which is its own
// business), and a read-only disk is never modified.
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <algorithm>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/spdlog.h>

#include "devices/virtio_blk.h"
#include "tests/support/fake_guest.h"
#include "virtio/spec.h"

using namespace minivmm;

namespace {

constexpr uint64_t kRam = 1 << 20;
constexpr uint64_t kDiskSize = 64 * 1024;
constexpr uint64_t kDesc = 0;
constexpr uint64_t kAvail = 0x8000;
constexpr uint64_t kUsed = 0x9000;
constexpr uint64_t kPayload = 0x10000;  // the rest of the input lands here

class NullInterrupt final : public virtio::VirtioInterrupt {
 public:
  void signal(uint32_t) override {}
};

struct Disk {
  explicit Disk(bool read_only) {
    fd = ::memfd_create(read_only ? "fuzz-blk-ro" : "fuzz-blk", 0);
    if (fd < 0 || ::ftruncate(fd, kDiskSize) != 0) std::abort();
    std::vector<uint8_t> pattern(kDiskSize);
    for (uint64_t i = 0; i < kDiskSize; ++i) pattern[i] = static_cast<uint8_t>(i * 31);
    if (::pwrite(fd, pattern.data(), pattern.size(), 0) != static_cast<ssize_t>(kDiskSize)) {
      std::abort();
    }
    devices::BlockConfig cfg;
    cfg.path = "/proc/self/fd/" + std::to_string(fd);
    cfg.read_only = read_only;
    cfg.engine = devices::BlockConfig::Engine::kSync;
    cfg.serial = "fuzz";
    dev = std::make_unique<devices::VirtioBlock>(cfg);
  }
  int fd;
  std::unique_ptr<devices::VirtioBlock> dev;
};

struct State {
  test::FakeGuestMemory guest{kRam};
  Disk rw{false};
  Disk ro{true};
  virtio::Queue queue{256};
  NullInterrupt irq;
};

State& state() {
  static State* s = new State();  // never destroyed: the fuzzer exits without teardown
  return *s;
}

bool overlaps(uint64_t addr, uint64_t len, uint64_t start, uint64_t end) {
  return len != 0 && addr < end && addr + len > start;
}

virtio::VirtqDesc desc_at(const test::FakeGuestMemory& guest, uint64_t gpa) {
  virtio::VirtqDesc d;
  std::memcpy(&d, guest.host(gpa), sizeof(d));
  return d;
}

// Whether the device may write through some descriptor into the rings or a descriptor
// table: through a writable entry of the table, or of an indirect table one of its entries
// points to, covering part of [0, kPayload) (desc table, avail and used rings) or of an
// indirect table. If not, nothing the device writes can change what it reads next or what
// it published, so the used ring holds exactly what the device put there. Conservative:
// every entry counts, whether or not a chain reaches it.
bool device_may_write_rings(const test::FakeGuestMemory& guest, uint16_t qsize) {
  std::vector<virtio::VirtqDesc> writable;
  std::vector<std::pair<uint64_t, uint64_t>> tables{{0, kPayload}};
  for (uint64_t i = 0; i < qsize; ++i) {
    const virtio::VirtqDesc d = desc_at(guest, kDesc + i * sizeof(d));
    if (d.flags & virtio::kVirtqDescFWrite) writable.push_back(d);
    if (!(d.flags & virtio::kVirtqDescFIndirect) || d.addr >= kRam) continue;
    const uint64_t entries = std::min<uint64_t>(d.len, kRam - d.addr) / sizeof(d);
    tables.emplace_back(d.addr, d.addr + entries * sizeof(d));
    for (uint64_t j = 0; j < entries; ++j) {
      const virtio::VirtqDesc e = desc_at(guest, d.addr + j * sizeof(e));
      if (e.flags & virtio::kVirtqDescFWrite) writable.push_back(e);
    }
  }
  for (const auto& d : writable) {
    for (const auto& [start, end] : tables) {
      if (overlaps(d.addr, d.len, start, end)) return true;
    }
  }
  return false;
}

uint16_t take16(const uint8_t*& data, size_t& size) {
  uint16_t v = 0;
  const size_t n = size < 2 ? size : 2;
  std::memcpy(&v, data, n);
  data += n;
  size -= n;
  return v;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  spdlog::set_level(spdlog::level::off);  // broken queues are expected here
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  State& s = state();
  if (size < 4) return 0;
  const uint8_t flags = data[0];
  const uint8_t qshift = data[1] % 9;  // queue size 1..256
  data += 2;
  size -= 2;
  const uint16_t qsize = static_cast<uint16_t>(1u << qshift);
  const uint16_t avail_idx = take16(data, size);

  std::memset(s.guest.host(0), 0, kPayload + 0x10000);
  // Descriptor table and avail ring entries come first, then the payload.
  const size_t desc_bytes = std::min<size_t>(size, qsize * sizeof(virtio::VirtqDesc));
  std::memcpy(s.guest.host(kDesc), data, desc_bytes);
  data += desc_bytes;
  size -= desc_bytes;
  const size_t ring_bytes = std::min<size_t>(size, qsize * 2u);
  std::memcpy(s.guest.host(kAvail + 4), data, ring_bytes);
  data += ring_bytes;
  size -= ring_bytes;
  std::memcpy(s.guest.host(kPayload), data, std::min<size_t>(size, kRam - kPayload));
  std::memcpy(s.guest.host(kAvail + 2), &avail_idx, 2);

  Disk& disk = (flags & 1) ? s.ro : s.rw;
  std::vector<uint8_t> before;
  if (flags & 1) {
    before.resize(kDiskSize);
    if (::pread(disk.fd, before.data(), kDiskSize, 0) != static_cast<ssize_t>(kDiskSize)) {
      std::abort();
    }
  }

  s.queue.reset();
  s.queue.set_size(qsize);
  s.queue.set_desc_table(kDesc);
  s.queue.set_avail_ring(kAvail);
  s.queue.set_used_ring(kUsed);
  s.queue.set_event_idx(flags & 2);
  s.queue.set_indirect(flags & 4);
  s.queue.set_ready(true);
  uint64_t features = virtio::feature_bit(virtio::kFVersion1);
  if (flags & 2) features |= virtio::feature_bit(virtio::kFEventIdx);
  if (flags & 4) features |= virtio::feature_bit(virtio::kFIndirectDesc);
  if (flags & 8) features |= virtio::feature_bit(devices::kBlkFFlush);
  if (flags & 16) features |= virtio::feature_bit(devices::kBlkFDiscard);
  if (flags & 32) features |= virtio::feature_bit(devices::kBlkFWriteZeroes);
  disk.dev->set_acked_features(features & disk.dev->device_features());
  if (!s.queue.is_valid(s.guest.mem())) return 0;
  const bool used_ring_is_ours = !device_may_write_rings(s.guest, qsize);
  std::span<virtio::Queue> queues(&s.queue, 1);
  const std::vector<virtio::EventFd> events(1);
  if (disk.dev->activate(virtio::ActivateContext{s.guest.mem(), queues, events, s.irq})) {
    std::abort();
  }
  // The I/O thread processes everything available before it waits; reset() joins it.
  disk.dev->reset();

  uint16_t used_idx = 0;
  if (used_ring_is_ours) std::memcpy(&used_idx, s.guest.host(kUsed + 2), 2);
  if (used_idx > qsize) std::abort();  // at most one per head
  for (uint16_t i = 0; i < used_idx; ++i) {
    virtio::VirtqUsedElem e;
    std::memcpy(&e, s.guest.host(kUsed + 4 + uint64_t{i} * 8), sizeof(e));
    if (e.id >= qsize) std::abort();
    if (e.len > (1u << 31) + 1) std::abort();
  }
  struct stat st {};
  if (::fstat(disk.fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != kDiskSize) std::abort();
  if (flags & 1) {
    std::vector<uint8_t> after(kDiskSize);
    if (::pread(disk.fd, after.data(), kDiskSize, 0) != static_cast<ssize_t>(kDiskSize)) {
      std::abort();
    }
    if (after != before) std::abort();
  }
  return 0;
}
