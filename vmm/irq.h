// KvmIrqLine: an interrupt line into the guest backed by an eventfd registered with
// KVM_IRQFD for one GSI (an IOAPIC pin under KVM's default routing). trigger() is one
// eventfd write: KVM injects an edge without the VMM touching the vCPUs.
//
// Threads: constructed and destroyed on the main thread (registration); trigger() from any
// thread (vCPU threads for the UART, device I/O threads for virtio).
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "virtio/interrupt.h"
#include "vmm/fd.h"
#include "vmm/kvm.h"

namespace minivmm::vmm {

class KvmIrqLine final : public virtio::IrqLine {
 public:
  // `vm` must outlive the line.
  KvmIrqLine(const VmFd& vm, uint32_t gsi)
      : vm_(vm), gsi_(gsi), event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!event_.valid()) throw KvmError(std::string("eventfd failed: ") + std::strerror(errno));
    vm_.register_irqfd(event_.get(), gsi_);
  }
  ~KvmIrqLine() override {
    try {
      vm_.unregister_irqfd(event_.get(), gsi_);
    } catch (const KvmError&) {  // the VM is going away anyway
    }
  }
  KvmIrqLine(const KvmIrqLine&) = delete;
  KvmIrqLine& operator=(const KvmIrqLine&) = delete;

  void trigger() override {
    const uint64_t one = 1;
    // EAGAIN means the counter is saturated: an interrupt is pending anyway.
    [[maybe_unused]] ssize_t n = ::write(event_.get(), &one, sizeof(one));
  }

  uint32_t gsi() const { return gsi_; }

 private:
  const VmFd& vm_;
  uint32_t gsi_;
  UniqueFd event_;
};

}  // namespace minivmm::vmm
