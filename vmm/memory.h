// GuestRam: owns the host mappings that back guest physical RAM, split around the 32-bit MMIO
// gap (boot/layout.h), registers them with KVM as memory slots, and hands out the checked
// virtio::GuestMemory view and the low-RAM byte span that the boot/ loader writes into.
//
// Threads: built and registered by the main thread; afterwards immutable, and every thread
// reads and writes guest bytes through the views. Outlives every vCPU and I/O thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "virtio/guest_memory.h"
#include "vmm/kvm.h"

namespace minivmm::vmm {

class GuestRam {
 public:
  // Every region's host mapping starts on this boundary (see the constructor).
  static constexpr uint64_t kHugePageSize = uint64_t{2} << 20;

  // How guest RAM is backed: private anonymous memory (transparent huge pages where the
  // host has them), or one memfd mapped MAP_SHARED that vhost-user backends map too (no
  // THP with shmem_enabled=never, DESIGN.md): only when a vhost-user device exists.
  enum class Backing { kPrivate, kShared };

  // Maps `size` bytes (a multiple of 4 KiB). Throws KvmError with a one-line message when the
  // host cannot provide that much memory.
  explicit GuestRam(uint64_t size, Backing backing = Backing::kPrivate);
  ~GuestRam();
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  // KVM_SET_USER_MEMORY_REGION for every region, slots 0, 1, ...
  void register_with(const VmFd& vm) const;

  uint64_t size() const { return size_; }
  const virtio::GuestMemory& memory() const { return memory_; }
  // The region at guest physical address 0, indexed by guest address.
  std::span<uint8_t> low() const;
  std::span<const virtio::MemoryRegion> regions() const { return memory_.regions(); }

 private:
  uint64_t size_;
  int memfd_ = -1;  // kShared: the file all regions map, at their offsets in guest order
  std::vector<virtio::MemoryRegion> mappings_;
  virtio::GuestMemory memory_;
};

}  // namespace minivmm::vmm
