// CPUID normalisation: turns the host's KVM_GET_SUPPORTED_CPUID list into what one vCPU of
// an N-vCPU guest should see: its own APIC id, a topology of N cores with one thread each,
// and the hypervisor bit. Pure: no KVM calls, unit-testable.
//
// Threads: main thread (vCPU setup).
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

namespace minivmm::vmm {

// What the host's KVM can do beyond its KVM_GET_SUPPORTED_CPUID list. KVM leaves out the
// features it emulates only with help from user space or the in-kernel irqchip and expects
// the VMM to set them after checking a capability (KVM API, KVM_GET_SUPPORTED_CPUID).
struct CpuidHostCaps {
  // KVM_CAP_TSC_DEADLINE_TIMER: the in-kernel LAPIC emulates the TSC-deadline timer mode
  // (IA32_TSC_DEADLINE, SDM Vol. 3A §11.5.4.1). Without the CPUID bit Linux falls back to
  // the one-shot LAPIC timer.
  bool tsc_deadline_timer = false;
};

// Leaves touched (Intel SDM Vol. 2A CPUID; AMD APM Vol. 3 E.4):
//   0x1          EBX[31:24] initial APIC id, EBX[23:16] logical processors, ECX[31] hypervisor,
//                ECX[24] TSC-deadline when the host emulates it, EDX[28] HTT when more than one
//   0x4          EAX[31:26] cores per package - 1, EAX[25:14] threads sharing the cache - 1
//   0xB, 0x1F    x2APIC topology: SMT level (1 thread), core level (N cores), EDX = APIC id
//   0x80000008   ECX[7:0] NC: cores - 1
void normalize_cpuid(std::vector<kvm_cpuid_entry2>& entries, uint32_t cpu_index, uint32_t cpu_count,
                     const CpuidHostCaps& caps = {});

}  // namespace minivmm::vmm
