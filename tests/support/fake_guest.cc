#include "tests/support/fake_guest.h"

#include <sys/mman.h>

#include <atomic>
#include <cstring>
#include <stdexcept>

namespace minivmm::test {

using virtio::VirtqDesc;
using virtio::VirtqUsedElem;

FakeGuestMemory::FakeGuestMemory(uint64_t size, std::optional<Hole> hole, bool huge_pages)
    : size_(size) {
  constexpr uint64_t kHuge = 2ull << 20;
  if (huge_pages && size % 4096 != 0) throw std::invalid_argument("huge-page fake RAM: size");
  const uint64_t slack = huge_pages ? kHuge : 0;
  void* p = mmap(nullptr, size + slack, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) throw std::runtime_error("mmap of fake guest memory failed");
  base_ = static_cast<uint8_t*>(p);
  if (huge_pages) {
    // Keep the 2 MiB-aligned [base, base + size) and give back the slack around it.
    const auto addr = reinterpret_cast<uintptr_t>(p);
    const uintptr_t aligned = (addr + kHuge - 1) & ~uintptr_t{kHuge - 1};
    if (aligned > addr) munmap(p, aligned - addr);
    if (aligned + size < addr + size + slack) {
      munmap(reinterpret_cast<void*>(aligned + size), addr + size + slack - aligned - size);
    }
    base_ = reinterpret_cast<uint8_t*>(aligned);
    madvise(base_, size, MADV_HUGEPAGE);  // best effort, as for guest RAM
  }
  std::vector<virtio::MemoryRegion> regions;
  if (hole) {
    regions.push_back({0, hole->start, base_});
    if (hole->end < size) regions.push_back({hole->end, size - hole->end, base_ + hole->end});
  } else {
    regions.push_back({0, size, base_});
  }
  mem_ = virtio::GuestMemory(std::move(regions));
}

FakeGuestMemory::~FakeGuestMemory() {
  munmap(base_, size_);
}

uint8_t* FakeGuestMemory::host(uint64_t gpa) const {
  if (gpa >= size_) throw std::out_of_range("fake guest address out of range");
  return base_ + gpa;
}

DriverQueue::DriverQueue(FakeGuestMemory& guest, uint16_t size, uint64_t base)
    : guest_(guest), size_(size) {
  desc_ = base;
  avail_ = desc_ + virtio::desc_table_bytes(size);
  used_ = (avail_ + virtio::avail_ring_bytes(size) + 3) & ~uint64_t{3};
  std::memset(guest_.host(desc_), 0, end_addr() - desc_);
}

void DriverQueue::configure(virtio::Queue& queue, bool event_idx, bool indirect) const {
  queue.set_size(size_);
  queue.set_desc_table(desc_);
  queue.set_avail_ring(avail_);
  queue.set_used_ring(used_);
  queue.set_event_idx(event_idx);
  queue.set_indirect(indirect);
  queue.set_ready(true);
}

void DriverQueue::write_desc(uint16_t index, const VirtqDesc& desc) {
  std::memcpy(guest_.host(desc_ + uint64_t{index} * sizeof(VirtqDesc)), &desc, sizeof(desc));
}

VirtqDesc DriverQueue::read_desc(uint16_t index) const {
  VirtqDesc d;
  std::memcpy(&d, guest_.host(desc_ + uint64_t{index} * sizeof(VirtqDesc)), sizeof(d));
  return d;
}

namespace {
// The descriptor a driver writes for `buf`: linked to `next` unless it is the last one.
VirtqDesc make_desc(const Buf& buf, bool last, uint16_t next) {
  const auto flags = static_cast<uint16_t>((buf.write ? virtio::kVirtqDescFWrite : 0) |
                                           (last ? 0 : virtio::kVirtqDescFNext));
  return VirtqDesc{buf.addr, buf.len, flags, last ? uint16_t{0} : next};
}
}  // namespace

uint16_t DriverQueue::add_descriptors(const std::vector<Buf>& bufs) {
  const uint16_t head = next_desc_;
  for (size_t i = 0; i < bufs.size(); ++i) {
    const auto index = static_cast<uint16_t>((head + i) % size_);
    write_desc(index, make_desc(bufs[i], i + 1 == bufs.size(),
                                static_cast<uint16_t>((index + 1) % size_)));
  }
  next_desc_ = static_cast<uint16_t>((head + bufs.size()) % size_);
  return head;
}

uint16_t DriverQueue::add_indirect(uint64_t table_addr, const std::vector<Buf>& bufs) {
  for (size_t i = 0; i < bufs.size(); ++i) {
    const VirtqDesc d = make_desc(bufs[i], i + 1 == bufs.size(), static_cast<uint16_t>(i + 1));
    std::memcpy(guest_.host(table_addr + i * sizeof(VirtqDesc)), &d, sizeof(d));
  }
  const uint16_t index = next_desc_;
  write_desc(index, VirtqDesc{table_addr, static_cast<uint32_t>(bufs.size() * sizeof(VirtqDesc)),
                              virtio::kVirtqDescFIndirect, 0});
  next_desc_ = static_cast<uint16_t>((index + 1) % size_);
  return index;
}

void DriverQueue::publish(uint16_t head) {
  const uint64_t slot = avail_idx_ % size_;
  std::memcpy(guest_.host(avail_ + 4 + slot * 2), &head, sizeof(head));
  set_avail_idx(static_cast<uint16_t>(avail_idx_ + 1));
}

uint16_t DriverQueue::add_chain(const std::vector<Buf>& bufs) {
  const uint16_t head = add_descriptors(bufs);
  publish(head);
  return head;
}

namespace {
uint16_t load16(const uint8_t* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void store16(uint8_t* p, uint16_t v) {
  std::memcpy(p, &v, sizeof(v));
}
}  // namespace

void DriverQueue::set_avail_idx(uint16_t idx) {
  avail_idx_ = idx;
  // A release store, as a driver's: the ring entry and descriptors before it are visible to
  // a device that finds the new index by polling, without a notification in between.
  std::atomic_ref<uint16_t>(*reinterpret_cast<uint16_t*>(guest_.host(avail_ + 2)))
      .store(idx, std::memory_order_release);
}
uint16_t DriverQueue::avail_idx() const {
  return avail_idx_;
}
void DriverQueue::set_avail_flags(uint16_t flags) {
  store16(guest_.host(avail_), flags);
}
void DriverQueue::set_used_event(uint16_t value) {
  store16(guest_.host(avail_ + 4 + uint64_t{size_} * 2), value);
}
uint16_t DriverQueue::used_flags() const {
  return load16(guest_.host(used_));
}
uint16_t DriverQueue::avail_event() const {
  return load16(guest_.host(used_ + 4 + uint64_t{size_} * 8));
}
uint16_t DriverQueue::used_idx() const {
  return load16(guest_.host(used_ + 2));
}

std::vector<VirtqUsedElem> DriverQueue::take_used() {
  std::vector<VirtqUsedElem> out;
  const uint16_t idx = used_idx();
  while (last_used_ != idx) {
    VirtqUsedElem e;
    std::memcpy(&e, guest_.host(used_ + 4 + static_cast<uint64_t>(last_used_ % size_) * 8),
                sizeof(e));
    out.push_back(e);
    ++last_used_;
  }
  return out;
}

}  // namespace minivmm::test
