#include "boot/mptable.h"

#include <cstring>
#include <string>

#include "boot/firmware_table.h"

namespace minivmm::boot {

namespace {

constexpr uint8_t kEntryProcessor = 0;
constexpr uint8_t kEntryBus = 1;
constexpr uint8_t kEntryIoApic = 2;
constexpr uint8_t kEntryIoInterrupt = 3;
constexpr uint8_t kEntryLocalInterrupt = 4;
constexpr uint8_t kSpecRev = 4;  // MP spec 1.4
constexpr uint8_t kCpuEnabled = 1;
constexpr uint8_t kCpuBootstrap = 2;
constexpr uint8_t kLocalApicVersion = 0x14;  // integrated xAPIC, as KVM's in-kernel LAPIC
constexpr uint8_t kIoApicVersion = 0x11;     // KVM's in-kernel IOAPIC
constexpr uint32_t kCpuSignature = 0x600;    // family 6; Linux does not use it
constexpr uint32_t kCpuFeatures = 0x201;     // CPUID.1:EDX FPU | APIC
constexpr uint8_t kIntInt = 0;
constexpr uint8_t kIntNmi = 1;
constexpr uint8_t kIntExtInt = 3;
constexpr uint8_t kIsaBus = 0;
constexpr uint8_t kAllLocalApics = 0xff;

}  // namespace

Result<std::vector<uint8_t>> build_mptable(uint32_t num_cpus, uint64_t addr) {
  if (num_cpus == 0 || num_cpus > kMaxCpus) {
    return Error{"MP table: " + std::to_string(num_cpus) + " CPUs (1 to " +
                 std::to_string(kMaxCpus) + " fit)"};
  }
  if (addr % 16 != 0 || addr + sizeof(MpFloatingPointer) > 0xffffffffu) {
    return Error{"MP table: address must be 16-byte aligned and below 4 GiB"};
  }
  const auto ioapic_id = static_cast<uint8_t>(num_cpus);

  std::vector<uint8_t> config(sizeof(MpConfigHeader));
  uint16_t entries = 0;
  for (uint32_t cpu = 0; cpu < num_cpus; ++cpu, ++entries) {
    MpProcessor p{};
    p.type = kEntryProcessor;
    p.apic_id = static_cast<uint8_t>(cpu);  // KVM gives vCPU n APIC id n
    p.apic_version = kLocalApicVersion;
    p.flags = static_cast<uint8_t>(kCpuEnabled | (cpu == 0 ? kCpuBootstrap : 0));
    p.signature = kCpuSignature;
    p.features = kCpuFeatures;
    append_struct(config, p);
  }
  MpBus bus{kEntryBus, kIsaBus, {'I', 'S', 'A', ' ', ' ', ' '}};
  append_struct(config, bus);
  ++entries;
  append_struct(config, MpIoApic{kEntryIoApic, ioapic_id, kIoApicVersion, 1,
                                 static_cast<uint32_t>(kIoapicAddr)});
  ++entries;
  for (uint32_t pin = 0; pin < kIoapicPins; ++pin, ++entries) {
    append_struct(config,
                  MpInterrupt{kEntryIoInterrupt, kIntInt, 0, kIsaBus, static_cast<uint8_t>(pin),
                              ioapic_id, static_cast<uint8_t>(pin)});
  }
  append_struct(config,
                MpInterrupt{kEntryLocalInterrupt, kIntExtInt, 0, kIsaBus, 0, kAllLocalApics, 0});
  append_struct(config,
                MpInterrupt{kEntryLocalInterrupt, kIntNmi, 0, kIsaBus, 0, kAllLocalApics, 1});
  entries += 2;

  MpConfigHeader h{};
  std::memcpy(h.signature, "PCMP", 4);
  h.base_length = static_cast<uint16_t>(config.size());
  h.spec_rev = kSpecRev;
  std::memcpy(h.oem_id, "MINIVMM ", 8);
  std::memcpy(h.product_id, "MINIVMM     ", 12);
  h.entry_count = entries;
  h.local_apic_addr = static_cast<uint32_t>(kLapicAddr);
  std::memcpy(config.data(), &h, sizeof(h));
  config[offsetof(MpConfigHeader, checksum)] = zero_sum_checksum(config);

  MpFloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.config_addr = static_cast<uint32_t>(addr + sizeof(MpFloatingPointer));
  fp.length = 1;
  fp.spec_rev = kSpecRev;
  std::vector<uint8_t> out;
  append_struct(out, fp);
  out[offsetof(MpFloatingPointer, checksum)] =
      zero_sum_checksum(std::span<const uint8_t>(out.data(), sizeof(fp)));
  out.insert(out.end(), config.begin(), config.end());
  return out;
}

Result<void> write_mptable(std::span<uint8_t> low_ram, uint32_t num_cpus) {
  auto table = build_mptable(num_cpus, kMpTableAddr);
  if (!table) return Error{table.error()};
  if (table->size() > kMpTableAreaEnd - kMpTableAddr) return Error{"MP table: too large"};
  auto area = guest_range(low_ram, kMpTableAddr, kMpTableAreaEnd - kMpTableAddr);
  if (!area) return Error{"guest memory too small for the MP table"};
  std::memset(area->data(), 0, area->size());
  std::memcpy(area->data(), table->data(), table->size());
  return {};
}

}  // namespace minivmm::boot
