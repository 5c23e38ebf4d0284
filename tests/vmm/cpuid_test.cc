// CPUID normalisation on a synthetic host list. No KVM needed.
#include <catch2/catch.hpp>

#include <vector>

#include "vmm/cpuid.h"

using minivmm::vmm::normalize_cpuid;

namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index = 0) {
  kvm_cpuid_entry2 e{};
  e.function = function;
  e.index = index;
  return e;
}

const kvm_cpuid_entry2& find(const std::vector<kvm_cpuid_entry2>& v, uint32_t function,
                             uint32_t index = 0) {
  for (const auto& e : v) {
    if (e.function == function && e.index == index) return e;
  }
  FAIL("leaf missing");
  return v.front();
}

}  // namespace

TEST_CASE("leaf 1 carries the APIC id, the CPU count and the hypervisor bit") {
  std::vector<kvm_cpuid_entry2> v = {leaf(1)};
  v[0].ebx = 0xff00'0800;  // stale APIC id, CLFLUSH size 8
  normalize_cpuid(v, 3, 4);
  CHECK(v[0].ebx >> 24 == 3);
  CHECK(((v[0].ebx >> 16) & 0xff) == 4);
  CHECK((v[0].ebx & 0xffff) == 0x0800);
  CHECK((v[0].ecx & (1U << 31)) != 0);
  CHECK((v[0].edx & (1U << 28)) != 0);

  normalize_cpuid(v, 0, 1);
  CHECK(v[0].ebx >> 24 == 0);
  CHECK((v[0].edx & (1U << 28)) == 0);
}

TEST_CASE("leaf 1 offers the TSC-deadline timer only when the host KVM emulates it") {
  std::vector<kvm_cpuid_entry2> v = {leaf(1)};
  normalize_cpuid(v, 0, 2);
  CHECK((v[0].ecx & (1U << 24)) == 0);

  minivmm::vmm::CpuidHostCaps caps;
  caps.tsc_deadline_timer = true;
  normalize_cpuid(v, 0, 2, caps);
  CHECK((v[0].ecx & (1U << 24)) != 0);
  CHECK((v[0].ecx & (1U << 31)) != 0);
}

TEST_CASE("leaf 0xB describes N cores with one thread each") {
  std::vector<kvm_cpuid_entry2> v = {leaf(0xb, 0), leaf(0xb, 1), leaf(0xb, 2)};
  normalize_cpuid(v, 2, 3);
  const auto& smt = find(v, 0xb, 0);
  CHECK(smt.eax == 0);
  CHECK(smt.ebx == 1);
  CHECK(smt.ecx == 0x100);
  CHECK(smt.edx == 2);
  const auto& core = find(v, 0xb, 1);
  CHECK(core.eax == 2);  // ceil(log2(3))
  CHECK(core.ebx == 3);
  CHECK(core.ecx == 0x201);
  CHECK(core.edx == 2);
  const auto& end = find(v, 0xb, 2);
  CHECK(end.ebx == 0);
  CHECK(((end.ecx >> 8) & 0xff) == 0);
}

TEST_CASE("leaf 4 and 0x80000008 count the cores") {
  std::vector<kvm_cpuid_entry2> v = {leaf(4, 0), leaf(4, 1), leaf(0x80000008)};
  v[0].eax = (1 << 5) | 1;  // L1 data cache
  v[1].eax = (3 << 5) | 3;  // L3 unified
  v[2].ecx = 0x7;
  normalize_cpuid(v, 0, 4);
  CHECK(v[0].eax >> 26 == 3);
  CHECK(((v[0].eax >> 14) & 0xfff) == 0);
  CHECK(((v[1].eax >> 14) & 0xfff) == 3);
  CHECK((v[2].ecx & 0xff) == 3);
}
