// RAII wrappers for /dev/kvm, a VM fd and a vCPU fd, with typed ioctls.
//
// Every failure of the host (no /dev/kvm, permission denied, a missing capability, an ioctl
// the host rejects) throws KvmError with a one-line message for the user; these are VMM or
// host errors, never guest-caused, and main() turns them into exit status 1.
//
// Threads: Kvm and VmFd are used by the main thread during setup and teardown; the ioeventfd
// and irqfd registrations are made there too. A VcpuFd is used by its own vCPU thread, except
// kick-related fields of kvm_run (immediate_exit), which the main thread may set.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "vmm/fd.h"

namespace minivmm::vmm {

class KvmError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class VmFd;
class VcpuFd;

class Kvm {
 public:
  // Opens `path` (normally /dev/kvm) and checks the API version and every capability minivmm
  // needs. Throws KvmError naming the path, the errno text and what to do.
  static Kvm open(const std::string& path = "/dev/kvm");

  int check_extension(unsigned long cap) const;
  // Throws KvmError("host KVM lacks <name>") when `cap` is not available.
  void require_extension(unsigned long cap, const char* name) const;
  int vcpu_mmap_size() const { return vcpu_mmap_size_; }
  int max_vcpus() const;
  std::vector<kvm_cpuid_entry2> supported_cpuid() const;
  VmFd create_vm() const;

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  int vcpu_mmap_size_ = 0;
};

class VmFd {
 public:
  VmFd(UniqueFd fd, int vcpu_mmap_size) : fd_(std::move(fd)), vcpu_mmap_size_(vcpu_mmap_size) {}

  void set_tss_addr(uint64_t addr) const;
  void set_identity_map_addr(uint64_t addr) const;
  void create_irqchip() const;
  void create_pit2() const;
  void set_user_memory_region(uint32_t slot, uint64_t guest_addr, uint64_t size, void* host) const;

  // KVM_IOEVENTFD: a guest write of `len` bytes to `addr` (port I/O when `pio`) signals
  // `event_fd` without leaving the kernel; with `datamatch` only writes of that value do.
  void register_ioeventfd(int event_fd, uint64_t addr, uint32_t len,
                          std::optional<uint64_t> datamatch, bool pio) const;
  void unregister_ioeventfd(int event_fd, uint64_t addr, uint32_t len,
                            std::optional<uint64_t> datamatch, bool pio) const;
  // KVM_IRQFD: a write to `event_fd` injects an edge on `gsi`.
  void register_irqfd(int event_fd, uint32_t gsi) const;
  void unregister_irqfd(int event_fd, uint32_t gsi) const;
  // The VM is being torn down: closing its fd releases every irqfd and ioeventfd, so the
  // unregister calls above do nothing from now on (the main thread's seccomp filter allows
  // no KVM ioctl).
  void set_closing() const { closing_ = true; }

  VcpuFd create_vcpu(uint32_t id) const;

 private:
  UniqueFd fd_;
  int vcpu_mmap_size_;
  mutable bool closing_ = false;
};

// What KVM_RUN returned.
enum class RunResult {
  kExit,         // kvm_run->exit_reason says why
  kInterrupted,  // EINTR / immediate_exit: a signal kicked the vCPU
};

class VcpuFd {
 public:
  VcpuFd(UniqueFd fd, kvm_run* run, size_t run_size);
  ~VcpuFd();
  VcpuFd(VcpuFd&& other) noexcept;
  VcpuFd& operator=(VcpuFd&&) = delete;
  VcpuFd(const VcpuFd&) = delete;
  VcpuFd& operator=(const VcpuFd&) = delete;

  RunResult run() const;
  int fd() const { return fd_.get(); }
  kvm_run* run_data() const { return run_; }
  size_t run_size() const { return run_size_; }

  kvm_regs get_regs() const;
  void set_regs(const kvm_regs& regs) const;
  kvm_sregs get_sregs() const;
  void set_sregs(const kvm_sregs& sregs) const;
  void set_fpu(const kvm_fpu& fpu) const;
  void set_cpuid2(const std::vector<kvm_cpuid_entry2>& entries) const;
  // Returns how many of `msrs` KVM accepted (it stops at the first one it rejects).
  size_t set_msrs(const std::vector<kvm_msr_entry>& msrs) const;
  kvm_lapic_state get_lapic() const;
  void set_lapic(const kvm_lapic_state& lapic) const;

 private:
  UniqueFd fd_;
  kvm_run* run_;
  size_t run_size_;
};

}  // namespace minivmm::vmm
