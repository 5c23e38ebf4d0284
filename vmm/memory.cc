#include "vmm/memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "boot/layout.h"

namespace minivmm::vmm {
namespace {

// Maps `size` bytes of anonymous memory whose start is a multiple of `align` (a power of two),
// or returns MAP_FAILED with errno set: maps `size + align`, then unmaps the unaligned head
// and the tail.
void* map_aligned(uint64_t size, uint64_t align) {
  const uint64_t padded = size + align;
  void* raw = ::mmap(nullptr, padded, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return MAP_FAILED;
  const auto start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + align - 1) & ~static_cast<uintptr_t>(align - 1);
  const uint64_t head = aligned - start;
  const uint64_t tail = padded - head - size;
  if (head != 0) ::munmap(raw, head);
  if (tail != 0) ::munmap(reinterpret_cast<void*>(aligned + size), tail);
  return reinterpret_cast<void*>(aligned);
}

}  // namespace

GuestRam::GuestRam(uint64_t size, Backing backing) : size_(size) {
  auto fail = [this, size](const char* what, int err) {
    for (const auto& m : mappings_) ::munmap(m.host, m.size);
    if (memfd_ >= 0) ::close(memfd_);
    throw KvmError("cannot allocate " + std::to_string(size >> 20) + " MiB of " + what +
                   " guest memory: " + std::strerror(err));
  };
  if (backing == Backing::kShared) {
    memfd_ = ::memfd_create("minivmm-guest-ram", MFD_CLOEXEC);
    if (memfd_ < 0) fail("shared", errno);
    // Pages are allocated when first touched, as with private memory (no fallocate: that
    // would commit all of guest RAM at start, as QEMU's memfd backend does not either).
    if (::ftruncate(memfd_, static_cast<off_t>(size)) != 0) fail("shared", errno);
  }
  uint64_t fd_offset = 0;
  for (const boot::RamRegion& r : boot::ram_regions(size)) {
    // No MAP_NORESERVE: the host's overcommit policy decides whether this much memory is
    // available now, so an impossible --memory fails here with a clear message instead of the
    // guest being killed later. Pages are still only populated when touched.
    // Host address ≡ guest address modulo 2 MiB (every region starts 2 MiB-aligned in guest
    // physical space): only then can the host back a guest 2 MiB block with one transparent
    // huge page and KVM map it with one large nested page table entry. Otherwise every 4 KiB
    // guest page costs its own nested page fault, which dominated Linux boot time in the
    // nested KVM host (bench/RESULTS.md, section 3).
    void* host = map_aligned(r.size, kHugePageSize);
    if (host == MAP_FAILED) fail(backing == Backing::kShared ? "shared" : "private", errno);
    if (memfd_ >= 0 && ::mmap(host, r.size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
                              memfd_, static_cast<off_t>(fd_offset)) == MAP_FAILED) {
      const int err = errno;
      ::munmap(host, r.size);
      fail("shared", err);
    }
    ::madvise(host, r.size, MADV_HUGEPAGE);   // best effort: THP may be "madvise" only
    ::madvise(host, r.size, MADV_MERGEABLE);  // best effort
    // The guest's memory is the guest's: never in a core dump of minivmm (the jail turns
    // core dumps off too, but an operator may turn them back on to debug the VMM).
    ::madvise(host, r.size, MADV_DONTDUMP);
    mappings_.push_back({r.guest_addr, r.size, static_cast<uint8_t*>(host), memfd_, fd_offset});
    fd_offset += r.size;
  }
  memory_ = virtio::GuestMemory(mappings_);
}

GuestRam::~GuestRam() {
  for (const auto& m : mappings_) ::munmap(m.host, m.size);
  if (memfd_ >= 0) ::close(memfd_);
}

void GuestRam::register_with(const VmFd& vm) const {
  uint32_t slot = 0;
  for (const auto& m : mappings_) vm.set_user_memory_region(slot++, m.guest_base, m.size, m.host);
}

std::span<uint8_t> GuestRam::low() const {
  if (mappings_.empty() || mappings_[0].guest_base != 0) return {};
  return {mappings_[0].host, static_cast<size_t>(mappings_[0].size)};
}

}  // namespace minivmm::vmm
