// Decompiles the generated tables with ACPICA's iasl (package acpica-tools): an independent
// check that the AML and the table layouts are what the spec says.
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "boot/acpi.h"
#include "boot/dsdt.h"
#include "boot/layout.h"

using namespace minivmm::boot;
namespace fs = std::filesystem;

namespace {

std::optional<fs::path> find_iasl() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    fs::path candidate = fs::path(dir.empty() ? "." : dir) / "iasl";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return std::nullopt;
}

// A fresh directory under the system temp dir, removed at scope exit.
struct TempDir {
  fs::path path;
  TempDir() {
    std::string templ = (fs::temp_directory_path() / "minivmm-iasl-XXXXXX").string();
    if (::mkdtemp(templ.data()) != nullptr) path = templ;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path.empty()) fs::remove_all(path, ec);
  }
};

void write_file(const fs::path& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  REQUIRE(out.good());
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `iasl -d <name>.dat` in `dir`; returns the decompiled .dsl text.
std::string decompile(const fs::path& iasl, const fs::path& dir, const std::string& name,
                      const std::vector<uint8_t>& table) {
  const fs::path dat = dir / (name + ".dat");
  write_file(dat, table);
  const std::string cmd = "cd '" + dir.string() + "' && '" + iasl.string() + "' -d '" +
                          dat.filename().string() + "' > '" + name + ".log' 2>&1";
  const int status = std::system(cmd.c_str());
  INFO("iasl output:\n" << read_file(dir / (name + ".log")));
  REQUIRE(WIFEXITED(status));
  REQUIRE(WEXITSTATUS(status) == 0);
  const fs::path dsl = dir / (name + ".dsl");
  REQUIRE(fs::exists(dsl));
  return read_file(dsl);
}

std::string hex16(uint64_t value) {
  char buf[24];
  snprintf(buf, sizeof buf, "%016llX", static_cast<unsigned long long>(value));
  return buf;
}

bool has(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

}  // namespace

TEST_CASE("iasl -d decompiles the generated ACPI tables", "[boot][acpi][iasl]") {
  const auto iasl = find_iasl();
  if (!iasl) {
    WARN("SKIPPED: iasl not found (apt-get install acpica-tools)");
    return;
  }
  TempDir dir;
  REQUIRE_FALSE(dir.path.empty());
  AcpiConfig config;
  config.num_cpus = 2;
  config.devices = {*virtio_mmio_slot(0), *virtio_mmio_slot(1)};
  auto tables = build_acpi_tables(config);
  REQUIRE(tables);

  const std::string dsdt = decompile(*iasl, dir.path, "dsdt", tables->dsdt);
  INFO(dsdt);
  CHECK(has(dsdt, "\"LNRO0005\""));
  CHECK(has(dsdt, "Device (V000)"));
  CHECK(has(dsdt, "Device (V001)"));
  CHECK(has(dsdt, "0xD0000000"));  // Memory32Fixed base of device 0
  CHECK(has(dsdt, "0xD0001000"));
  CHECK(has(dsdt, "0x00001000"));  // window size
  CHECK(has(dsdt, "0x00000005"));  // device 0's Interrupt
  CHECK(has(dsdt, "0x00000006"));
  CHECK(has(dsdt, "Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive"));
  CHECK(has(dsdt, "Memory32Fixed (ReadWrite"));
  CHECK(has(dsdt, "EisaId (\"PNP0501\")"));
  CHECK(has(dsdt, "IO (Decode16"));
  CHECK(has(dsdt, "0x03F8"));
  CHECK(has(dsdt, "IRQNoFlags ()"));
  CHECK(has(dsdt, "{4}"));
  CHECK(has(dsdt, "_S5_"));
  CHECK_FALSE(has(dsdt, "Incorrect checksum"));

  const std::string fadt = decompile(*iasl, dir.path, "facp", tables->fadt);
  INFO(fadt);
  CHECK(has(fadt, "Hardware Reduced (V5) : 1"));
  CHECK(has(fadt, "DSDT Address : " + hex16(tables->dsdt_addr)));
  CHECK(has(fadt, "Reset Register Supported (V2) : 1"));
  CHECK(has(fadt, "8042 Present on ports 60/64 (V2) : 0"));
  CHECK(has(fadt, "Address : 00000000000003C0"));        // sleep control
  CHECK(has(fadt, "Address : 00000000000003C1"));        // sleep status
  CHECK(has(fadt, "Address : 0000000000000064"));        // reset register
  CHECK(has(fadt, "Hypervisor ID : 204D4D56494E494D"));  // "MINIVMM "
  CHECK_FALSE(has(fadt, "Incorrect checksum"));

  const std::string madt = decompile(*iasl, dir.path, "apic", tables->madt);
  INFO(madt);
  CHECK(has(madt, "Local Apic Address : FEE00000"));
  CHECK(has(madt, "Address : FEC00000"));
  CHECK_FALSE(has(madt, "Incorrect checksum"));

  const std::string xsdt = decompile(*iasl, dir.path, "xsdt", tables->xsdt);
  CHECK_FALSE(has(xsdt, "Incorrect checksum"));
  INFO(xsdt);
  CHECK(has(xsdt, "ACPI Table Address   0 : " + hex16(tables->fadt_addr)));
  CHECK(has(xsdt, "ACPI Table Address   1 : " + hex16(tables->madt_addr)));
  // The RSDP alone is not a table iasl 20200925 accepts from a file ("Binary file does not
  // contain a valid ACPI table"); acpi_test.cc checks it field by field.
}
