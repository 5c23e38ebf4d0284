#include "boot/page_tables.h"

#include <array>
#include <cstring>

#include "boot/layout.h"

namespace minivmm::boot {
namespace {

constexpr uint64_t kEntriesPerTable = 512;
constexpr uint64_t kLargePageSize = 2 * kMiB;
constexpr uint32_t kFlatLimit = 0xffff'ffff;
constexpr uint8_t kTypeCodeExecReadAccessed = 0xb;
constexpr uint8_t kTypeDataReadWriteAccessed = 0x3;
constexpr uint8_t kTypeBusyTss64 = 0xb;
constexpr uint32_t kTssLimit = 0x67;  // minimal 104-byte 64-bit TSS (SDM Vol. 3A §8.7)

void put_u64(std::span<uint8_t> bytes, uint64_t index, uint64_t value) {
  std::memcpy(bytes.data() + index * sizeof value, &value, sizeof value);
}

}  // namespace

SegmentDescriptor boot_code_segment() {
  return {.base = 0,
          .limit = kFlatLimit,
          .selector = kBootCsSelector,
          .type = kTypeCodeExecReadAccessed,
          .present = 1,
          .dpl = 0,
          .db = 0,
          .s = 1,
          .l = 1,
          .g = 1};
}

SegmentDescriptor boot_data_segment() {
  return {.base = 0,
          .limit = kFlatLimit,
          .selector = kBootDsSelector,
          .type = kTypeDataReadWriteAccessed,
          .present = 1,
          .dpl = 0,
          .db = 1,
          .s = 1,
          .l = 0,
          .g = 1};
}

SegmentDescriptor boot_tss_segment() {
  return {.base = 0,
          .limit = kTssLimit,
          .selector = 0,
          .type = kTypeBusyTss64,
          .present = 1,
          .dpl = 0,
          .db = 0,
          .s = 0,
          .l = 0,
          .g = 0};
}

uint64_t gdt_entry(const SegmentDescriptor& seg) {
  // With G set the 20-bit limit field counts 4 KiB pages.
  const uint64_t limit = seg.g ? seg.limit >> 12 : seg.limit & 0xfffff;
  const uint64_t base = seg.base & 0xffff'ffff;
  return (limit & 0xffff) | ((base & 0xff'ffff) << 16) | (uint64_t{seg.type & 0xfu} << 40) |
         (uint64_t{seg.s & 1u} << 44) | (uint64_t{seg.dpl & 3u} << 45) |
         (uint64_t{seg.present & 1u} << 47) | (((limit >> 16) & 0xf) << 48) |
         (uint64_t{seg.l & 1u} << 53) | (uint64_t{seg.db & 1u} << 54) |
         (uint64_t{seg.g & 1u} << 55) | ((base >> 24) << 56);
}

BootCpuState long_mode_state() {
  return {.cr0 = kCr0Pe | kCr0Et | kCr0Pg,
          .cr3 = kPml4Addr,
          .cr4 = kCr4Pae,
          .efer = kEferLme | kEferLma,
          .gdt = {kGdtAddr, static_cast<uint16_t>(kGdtEntries * 8 - 1)},
          .idt = {kIdtAddr, 7},
          .code = boot_code_segment(),
          .data = boot_data_segment(),
          .tss = boot_tss_segment()};
}

BootCpuState pvh_state() {
  SegmentDescriptor code = boot_code_segment();
  code.l = 0;
  code.db = 1;  // 32-bit code
  return {.cr0 = kCr0Pe | kCr0Et,
          .cr3 = 0,
          .cr4 = 0,
          .efer = 0,
          .gdt = {kGdtAddr, static_cast<uint16_t>(kGdtEntries * 8 - 1)},
          .idt = {kIdtAddr, 7},
          .code = code,
          .data = boot_data_segment(),
          .tss = boot_tss_segment()};  // type 0xb is also the busy 32-bit TSS
}

Result<void> write_page_tables(std::span<uint8_t> low_ram) {
  static_assert(kPdCount * kEntriesPerTable * kLargePageSize == kIdentityMapSize);
  auto pml4 = guest_range(low_ram, kPml4Addr, kPageSize);
  auto pdpt = guest_range(low_ram, kPdptAddr, kPageSize);
  auto pds = guest_range(low_ram, kPdAddr, kPdCount * kPageSize);
  if (!pml4 || !pdpt || !pds) return Error{"guest memory too small for the page tables"};
  std::memset(pml4->data(), 0, pml4->size());
  std::memset(pdpt->data(), 0, pdpt->size());
  // SDM Vol. 3A §4.5: PML4E -> PDPT, PDPTE -> PD, PDE with PS -> 2 MiB page.
  put_u64(*pml4, 0, kPdptAddr | kPtePresent | kPteWritable);
  for (uint64_t gib = 0; gib < kPdCount; ++gib) {
    put_u64(*pdpt, gib, (kPdAddr + gib * kPageSize) | kPtePresent | kPteWritable);
  }
  for (uint64_t i = 0; i < kPdCount * kEntriesPerTable; ++i) {
    put_u64(*pds, i, (i * kLargePageSize) | kPtePresent | kPteWritable | kPtePageSize);
  }
  return {};
}

Result<void> write_gdt_and_idt(std::span<uint8_t> low_ram) {
  auto gdt = guest_range(low_ram, kGdtAddr, kGdtEntries * 8);
  auto idt = guest_range(low_ram, kIdtAddr, 8);
  if (!gdt || !idt) return Error{"guest memory too small for the GDT"};
  const std::array<uint64_t, kGdtEntries> entries = {0, 0, gdt_entry(boot_code_segment()),
                                                     gdt_entry(boot_data_segment())};
  static_assert(kBootCsSelector / 8 == 2 && kBootDsSelector / 8 == 3);
  std::memcpy(gdt->data(), entries.data(), sizeof entries);
  std::memset(idt->data(), 0, idt->size());
  return {};
}

}  // namespace minivmm::boot
