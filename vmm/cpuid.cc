#include "vmm/cpuid.h"

#include <bit>

namespace minivmm::vmm {
namespace {

constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParams = 0x4;
constexpr uint32_t kLeafTopology = 0xb;
constexpr uint32_t kLeafTopologyV2 = 0x1f;
constexpr uint32_t kLeafAddressSizes = 0x80000008;

constexpr uint32_t kEcxHypervisor = 1U << 31;
constexpr uint32_t kEcxTscDeadline = 1U << 24;
constexpr uint32_t kEdxHtt = 1U << 28;

// x2APIC level types (SDM CPUID.0BH:ECX[15:8]).
constexpr uint32_t kLevelSmt = 1;
constexpr uint32_t kLevelCore = 2;

void set_topology(kvm_cpuid_entry2& e, uint32_t apic_id, uint32_t cpu_count) {
  const uint32_t core_shift = static_cast<uint32_t>(std::bit_width(cpu_count - 1));
  e.edx = apic_id;
  switch (e.index) {
    case 0:  // SMT: one thread per core; shift 0 to the next level id
      e.eax = 0;
      e.ebx = 1;
      e.ecx = (kLevelSmt << 8) | e.index;
      break;
    case 1:  // core: cpu_count cores per package
      e.eax = core_shift;
      e.ebx = cpu_count;
      e.ecx = (kLevelCore << 8) | e.index;
      break;
    default:  // invalid level: ends the enumeration
      e.eax = 0;
      e.ebx = 0;
      e.ecx = e.index;
      break;
  }
}

}  // namespace

void normalize_cpuid(std::vector<kvm_cpuid_entry2>& entries, uint32_t cpu_index, uint32_t cpu_count,
                     const CpuidHostCaps& caps) {
  const uint32_t apic_id = cpu_index;
  for (kvm_cpuid_entry2& e : entries) {
    switch (e.function) {
      case kLeafFeatures:
        e.ebx = (e.ebx & 0x0000ffff) | (apic_id << 24) | ((cpu_count & 0xff) << 16);
        e.ecx |= kEcxHypervisor;
        if (caps.tsc_deadline_timer) e.ecx |= kEcxTscDeadline;
        if (cpu_count > 1) {
          e.edx |= kEdxHtt;
        } else {
          e.edx &= ~kEdxHtt;
        }
        break;
      case kLeafCacheParams: {
        if ((e.eax & 0x1f) == 0) break;  // no cache at this index
        const uint32_t level = (e.eax >> 5) & 0x7;
        const uint32_t sharing = level >= 3 ? cpu_count - 1 : 0;
        e.eax = (e.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (((cpu_count - 1) & 0x3f) << 26);
        break;
      }
      case kLeafTopology:
      case kLeafTopologyV2:
        set_topology(e, apic_id, cpu_count);
        break;
      case kLeafAddressSizes:
        e.ecx = (e.ecx & ~0xffU) | ((cpu_count - 1) & 0xff);
        break;
      default:
        break;
    }
  }
}

}  // namespace minivmm::vmm
