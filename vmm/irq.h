// Interrupt lines into the guest, one GSI each (an IOAPIC pin under KVM's default routing).
//
// KvmIrqLine (the UART's, edge-triggered): an eventfd registered with KVM_IRQFD. trigger()
// is one eventfd write: KVM injects an edge without the VMM touching the vCPUs.
// KvmLevelIrqLine (virtio-mmio's, level-triggered): set_level() is one KVM_IRQ_LINE, which
// KVM handles in the calling thread (an irqfd to an IOAPIC pin goes through a kernel worker
// thread first).
//
// Threads: constructed and destroyed on the main thread (registration); trigger() and
// set_level() from any thread (vCPU threads for the UART and for InterruptAck, device I/O
// threads for virtio).
#pragma once

#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
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

class KvmLevelIrqLine final : public virtio::LevelIrqLine {
 public:
  // `vm` must outlive the line.
  KvmLevelIrqLine(const VmFd& vm, uint32_t gsi) : vm_(vm), gsi_(gsi) {}
  KvmLevelIrqLine(const KvmLevelIrqLine&) = delete;
  KvmLevelIrqLine& operator=(const KvmLevelIrqLine&) = delete;

  void set_level(bool high) override {
    if (const int err = vm_.set_irq_line(gsi_, high); err != 0 && !failed_.exchange(true)) {
      spdlog::error("KVM_IRQ_LINE for GSI {} failed: {}; the device's interrupts are lost",
                    gsi_, std::strerror(err));
    }
  }

  uint32_t gsi() const { return gsi_; }

 private:
  const VmFd& vm_;
  uint32_t gsi_;
  std::atomic<bool> failed_{false};  // logged once
};

}  // namespace minivmm::vmm
