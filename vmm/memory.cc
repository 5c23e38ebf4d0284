#include "vmm/memory.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "boot/layout.h"

namespace minivmm::vmm {

GuestRam::GuestRam(uint64_t size) : size_(size) {
  for (const boot::RamRegion& r : boot::ram_regions(size)) {
    // No MAP_NORESERVE: the host's overcommit policy decides whether this much memory is
    // available now, so an impossible --memory fails here with a clear message instead of the
    // guest being killed later. Pages are still only populated when touched.
    void* host =
        ::mmap(nullptr, r.size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (host == MAP_FAILED) {
      const int err = errno;
      for (const auto& m : mappings_) ::munmap(m.host, m.size);
      throw KvmError("cannot allocate " + std::to_string(size >> 20) +
                     " MiB of guest memory: " + std::strerror(err));
    }
    ::madvise(host, r.size, MADV_MERGEABLE);  // best effort
    mappings_.push_back({r.guest_addr, r.size, static_cast<uint8_t*>(host)});
  }
  memory_ = virtio::GuestMemory(mappings_);
}

GuestRam::~GuestRam() {
  for (const auto& m : mappings_) ::munmap(m.host, m.size);
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
