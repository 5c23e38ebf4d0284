// Vcpu: one virtual CPU. Setup follows the Linux 64-bit boot protocol (boot.rst "64-bit Boot
// Protocol"): normalised CPUID, boot MSRs, FPU, LAPIC LINT0 = ExtINT / LINT1 = NMI, and for
// the boot vCPU long mode with the identity page tables and GDT written by boot/, RIP = the
// kernel's 64-bit entry, RSI = the zero page. Secondary vCPUs wait in KVM for INIT/SIPI.
//
// run() is the vCPU thread's body: KVM_RUN until the VM stops, dispatching port I/O and
// MMIO exits synchronously to the buses and turning every other exit into a StopControl
// request. kick() (any thread) makes KVM_RUN return so that the thread sees the stop.
//
// Threads: constructed and configured on the main thread; run() on its own thread; kick()
// from the main thread.
#pragma once

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <vector>

#include "boot/linux_boot.h"
#include "mmio/bus.h"
#include "vmm/kvm.h"
#include "vmm/stop.h"

namespace minivmm::vmm {

// The signal used to kick vCPU threads out of KVM_RUN. Its handler does nothing; it only
// interrupts the ioctl.
int vcpu_kick_signal();
// Installs the no-op handler (once per process, main thread, before vCPU threads start).
void install_vcpu_kick_handler();

class Vcpu {
 public:
  Vcpu(const VmFd& vm, uint32_t index, const mmio::Bus& pio_bus, const mmio::Bus& mmio_bus,
       StopControl& stop);

  // CPUID (already normalised for this vCPU), MSRs, FPU and LAPIC.
  void configure(const std::vector<kvm_cpuid_entry2>& cpuid);
  // Long mode and the boot registers from boot/'s setup; the boot vCPU only.
  void set_boot_state(const boot::LinuxBootInfo& boot);

  // Thread body: runs until a stop was requested. Never throws. The boot vCPU logs (info)
  // when it first entered the guest and when the guest first exited, in ms since `start`.
  void run(std::chrono::steady_clock::time_point start);
  // Interrupts KVM_RUN; `thread` is the thread executing run().
  void kick(pthread_t thread);

  uint32_t index() const { return index_; }
  int fd() const { return fd_.fd(); }  // for the vCPU thread's seccomp filter

 private:
  // Handles one exit; false when the vCPU must stop.
  bool handle_exit();
  void handle_io();
  void handle_mmio();
  uint64_t rip() const;

  uint32_t index_;
  VcpuFd fd_;
  const mmio::Bus& pio_bus_;
  const mmio::Bus& mmio_bus_;
  StopControl& stop_;
  // Read at construction: the exit that needs it runs under the vCPU's seccomp filter.
  bool pvm_host_;
};

}  // namespace minivmm::vmm
