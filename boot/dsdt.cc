#include "boot/dsdt.h"

#include <cstring>
#include <string>

#include "boot/aml.h"

namespace minivmm::boot {
namespace {

constexpr uint8_t kDsdtRevision = 2;  // §5.2.11.1: revision 2+ means 64-bit AML integers

aml::Bytes com1_device() {
  const aml::Bytes terms[] = {
      aml::name("_HID", aml::eisa_id(kCom1Hid)),
      aml::name("_UID", aml::integer(0)),
      aml::name("_CRS", aml::resource_template({
                            aml::io_port(true, kCom1Port, kCom1Port, 0, kCom1PortCount),
                            aml::irq_no_flags(kCom1Irq),
                        })),
  };
  return aml::device("COM1", terms);
}

aml::Bytes pvpanic_device() {
  const aml::Bytes terms[] = {
      aml::name("_HID", aml::string(kPvpanicHid)),
      aml::name("_CRS", aml::resource_template({
                            aml::io_port(true, kPvpanicPort, kPvpanicPort, 1, 1),
                        })),
  };
  return aml::device("PEVT", terms);
}

aml::Bytes virtio_device(size_t index, const VirtioMmioDeviceInfo& dev) {
  // "V000".."V999": build_acpi_tables allows at most kIoapicPins devices.
  const std::string dev_name = {'V', static_cast<char>('0' + index / 100 % 10),
                                static_cast<char>('0' + index / 10 % 10),
                                static_cast<char>('0' + index % 10)};
  const aml::Bytes terms[] = {
      aml::name("_HID", aml::string(kVirtioMmioHid)),
      aml::name("_UID", aml::integer(index)),
      aml::name("_CCA", aml::integer(1)),  // §6.2.17: DMA is cache coherent
      aml::name("_CRS", aml::resource_template({
                            aml::memory32_fixed(true, static_cast<uint32_t>(dev.base),
                                                static_cast<uint32_t>(dev.size)),
                            aml::extended_interrupt({}, dev.irq),
                        })),
  };
  return aml::device(dev_name, terms);
}

}  // namespace

std::vector<uint8_t> build_dsdt_aml(const AcpiConfig& config) {
  std::vector<aml::Bytes> devices;
  if (config.serial) devices.push_back(com1_device());
  if (config.pvpanic) devices.push_back(pvpanic_device());
  for (size_t i = 0; i < config.devices.size(); ++i) {
    devices.push_back(virtio_device(i, config.devices[i]));
  }
  std::vector<uint8_t> out = aml::scope("\\_SB_", devices);
  // §7.4.2 \_S5: {SLP_TYPa, SLP_TYPb}. Hardware-reduced ACPI writes SLP_TYPa into the sleep
  // control register's SLP_TYP field (§4.8.3.7); the VMM powers off on kSleepControlPowerOff.
  const aml::Bytes s5 =
      aml::name("\\_S5_", aml::package({aml::integer(kSleepTypeS5), aml::integer(0)}));
  out.insert(out.end(), s5.begin(), s5.end());
  return out;
}

std::vector<uint8_t> build_dsdt(const AcpiConfig& config) {
  std::vector<uint8_t> table(sizeof(SdtHeader));
  const std::vector<uint8_t> body = build_dsdt_aml(config);
  table.insert(table.end(), body.begin(), body.end());
  finish_sdt(table, "DSDT", kDsdtRevision);
  return table;
}

}  // namespace minivmm::boot
