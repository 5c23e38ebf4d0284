#include "boot/page_tables.h"

#include <catch2/catch.hpp>
#include <cstring>
#include <optional>
#include <vector>

#include "boot/layout.h"

using namespace minivmm::boot;

namespace {

uint64_t read_u64(const std::vector<uint8_t>& ram, uint64_t addr) {
  uint64_t value;
  std::memcpy(&value, ram.data() + addr, sizeof value);
  return value;
}

// A 4-level walk (SDM Vol. 3A §4.5) over the tables in `ram`; nullopt if not present.
std::optional<uint64_t> translate(const std::vector<uint8_t>& ram, uint64_t cr3, uint64_t va) {
  constexpr uint64_t kAddrMask = 0x000f'ffff'ffff'f000;
  const uint64_t pml4e = read_u64(ram, (cr3 & kAddrMask) + ((va >> 39) & 0x1ff) * 8);
  if (!(pml4e & kPtePresent)) return std::nullopt;
  const uint64_t pdpte = read_u64(ram, (pml4e & kAddrMask) + ((va >> 30) & 0x1ff) * 8);
  if (!(pdpte & kPtePresent) || (pdpte & kPtePageSize)) return std::nullopt;
  const uint64_t pde = read_u64(ram, (pdpte & kAddrMask) + ((va >> 21) & 0x1ff) * 8);
  if (!(pde & kPtePresent) || !(pde & kPtePageSize)) return std::nullopt;
  return (pde & 0x000f'ffff'ffe0'0000) | (va & 0x1f'ffff);
}

}  // namespace

TEST_CASE("page tables identity-map the first 4 GiB with 2 MiB pages", "[boot][paging]") {
  std::vector<uint8_t> ram(2 * kMiB, 0xcc);  // garbage must be overwritten
  REQUIRE(write_page_tables(ram));
  const uint64_t cr3 = long_mode_state().cr3;
  CHECK(cr3 == 0x9000);
  for (uint64_t va :
       {uint64_t{0}, uint64_t{0x7000}, uint64_t{0x100200}, uint64_t{0x1234'5678}, kMmioGapStart,
        kVirtioMmioBase + 0x70, kIoapicAddr, kLapicAddr + 0x20, kIdentityMapSize - 1}) {
    INFO("va " << std::hex << va);
    auto pa = translate(ram, cr3, va);
    REQUIRE(pa);
    CHECK(*pa == va);
  }
  CHECK_FALSE(translate(ram, cr3, kIdentityMapSize));
  CHECK_FALSE(translate(ram, cr3, uint64_t{1} << 39));
  // Every entry is writable.
  CHECK((read_u64(ram, kPml4Addr) & kPteWritable));
  CHECK((read_u64(ram, kPdAddr + 8 * 100) & kPteWritable));
}

TEST_CASE("page tables need RAM up to the last page directory", "[boot][paging]") {
  std::vector<uint8_t> ram(kPdAddr + kPdCount * kPageSize - 1);
  CHECK_FALSE(write_page_tables(ram));
  ram.resize(kPdAddr + kPdCount * kPageSize);
  CHECK(write_page_tables(ram));
}

TEST_CASE("GDT holds Linux's __BOOT_CS and __BOOT_DS", "[boot][gdt]") {
  std::vector<uint8_t> ram(64 * kKiB, 0xcc);
  REQUIRE(write_gdt_and_idt(ram));
  CHECK(read_u64(ram, kGdtAddr + 0x00) == 0);
  CHECK(read_u64(ram, kGdtAddr + 0x08) == 0);
  CHECK(read_u64(ram, kGdtAddr + 0x10) == 0x00af'9b00'0000'ffff);  // code: 64-bit, exec/read
  CHECK(read_u64(ram, kGdtAddr + 0x18) == 0x00cf'9300'0000'ffff);  // data: 4 GiB, read/write
  CHECK(read_u64(ram, kIdtAddr) == 0);
}

TEST_CASE("segment descriptors for the VMM", "[boot][gdt]") {
  const SegmentDescriptor code = boot_code_segment();
  CHECK(code.selector == 0x10);
  CHECK(code.base == 0);
  CHECK(code.limit == 0xffff'ffff);
  CHECK(code.type == 0xb);
  CHECK(code.present == 1);
  CHECK(code.s == 1);
  CHECK(code.l == 1);
  CHECK(code.db == 0);
  CHECK(code.g == 1);
  const SegmentDescriptor data = boot_data_segment();
  CHECK(data.selector == 0x18);
  CHECK(data.type == 0x3);
  CHECK(data.db == 1);
  CHECK(data.l == 0);
  const SegmentDescriptor tss = boot_tss_segment();
  CHECK(tss.type == 0xb);
  CHECK(tss.s == 0);
  CHECK(tss.present == 1);
  CHECK(gdt_entry(SegmentDescriptor{}) == 0);
  CHECK(gdt_entry({.base = 0x12345678, .limit = 0xabcde, .type = 0x2, .present = 1}) ==
        0x120a'8234'5678'bcde);
}

TEST_CASE("long-mode register state", "[boot][gdt]") {
  const BootCpuState s = long_mode_state();
  CHECK((s.cr0 & (kCr0Pe | kCr0Pg)) == (kCr0Pe | kCr0Pg));
  CHECK(s.cr4 & kCr4Pae);
  CHECK(s.efer == (kEferLme | kEferLma));
  CHECK(s.gdt.base == kGdtAddr);
  CHECK(s.gdt.limit == 31);
  CHECK(s.idt.base == kIdtAddr);
  CHECK(s.code == boot_code_segment());
  CHECK(s.data == boot_data_segment());
}
