// Command-line parsing: sizes, disk specs, serial modes, defaults and bad input (exit 2 with
// one line). No KVM needed.
#include <catch2/catch.hpp>

#include <string>
#include <variant>
#include <vector>

#include "vmm/config.h"

using namespace minivmm::vmm;

namespace {

std::variant<VmConfig, ParseExit> parse(std::vector<std::string> args) {
  args.insert(args.begin(), "minivmm");
  std::vector<const char*> argv;
  for (const auto& a : args) argv.push_back(a.c_str());
  return parse_command_line(static_cast<int>(argv.size()), argv.data());
}

ParseExit parse_error(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  REQUIRE(std::holds_alternative<ParseExit>(r));
  return std::get<ParseExit>(r);
}

VmConfig parse_ok(std::vector<std::string> args) {
  auto r = parse(std::move(args));
  if (auto* e = std::get_if<ParseExit>(&r)) FAIL("unexpected parse exit: " << e->output);
  return std::get<VmConfig>(r);
}

uint64_t size_of(const char* text) {
  auto r = parse_memory_size(text);
  REQUIRE(std::holds_alternative<uint64_t>(r));
  return std::get<uint64_t>(r);
}

bool size_fails(const char* text) {
  return std::holds_alternative<ConfigError>(parse_memory_size(text));
}

}  // namespace

TEST_CASE("memory sizes take K, M and G suffixes and a bare number is MiB") {
  CHECK(size_of("512M") == 512ULL << 20);
  CHECK(size_of("512m") == 512ULL << 20);
  CHECK(size_of("4096K") == 4ULL << 20);
  CHECK(size_of("2G") == 2ULL << 30);
  CHECK(size_of("256") == 256ULL << 20);
  CHECK(size_of("8192B") == 8192);
}

TEST_CASE("bad memory sizes are rejected") {
  CHECK(size_fails(""));
  CHECK(size_fails("M"));
  CHECK(size_fails("0"));
  CHECK(size_fails("0G"));
  CHECK(size_fails("-1M"));
  CHECK(size_fails("12X"));
  CHECK(size_fails("1.5G"));
  CHECK(size_fails("100B"));                   // not a multiple of 4 KiB
  CHECK(size_fails("99999999999999999999G"));  // does not fit 64 bits
  CHECK(size_fails("17179869184G"));           // 2^34 GiB = 2^64 bytes: overflows
}

TEST_CASE("disk specs") {
  auto r = parse_disk("path=/tmp/a.img");
  REQUIRE(std::holds_alternative<DiskConfig>(r));
  DiskConfig d = std::get<DiskConfig>(r);
  CHECK(d.path == "/tmp/a.img");
  CHECK_FALSE(d.readonly);
  CHECK_FALSE(d.direct);
  CHECK(d.engine == DiskEngine::kIoUring);
  CHECK(d.queues == 1);
  CHECK_FALSE(d.poll_us.has_value());

  r = parse_disk(
      "path=b.img,readonly=on,serial=ROOT-1,direct=on,engine=sync,queues=4,poll_us=0");
  REQUIRE(std::holds_alternative<DiskConfig>(r));
  d = std::get<DiskConfig>(r);
  CHECK(d.path == "b.img");
  CHECK(d.readonly);
  CHECK(d.direct);
  CHECK(d.serial == "ROOT-1");
  CHECK(d.engine == DiskEngine::kSync);
  CHECK(d.queues == 4);
  CHECK(d.poll_us == 0u);

  r = parse_disk("path=c.img,poll_us=10000");
  REQUIRE(std::holds_alternative<DiskConfig>(r));
  CHECK(std::get<DiskConfig>(r).poll_us == 10000u);
}

TEST_CASE("bad disk specs say what is wrong") {
  auto message = [](const char* spec) {
    auto r = parse_disk(spec);
    REQUIRE(std::holds_alternative<ConfigError>(r));
    return std::get<ConfigError>(r).message;
  };
  CHECK_THAT(message("readonly=on"), Catch::Contains("path=FILE is required"));
  CHECK_THAT(message("path="), Catch::Contains("invalid path"));
  CHECK_THAT(message("path=a,readonly=maybe"), Catch::Contains("on or off"));
  CHECK_THAT(message("path=a,engine=aio"), Catch::Contains("io_uring or sync"));
  CHECK_THAT(message("path=a,queues=0"), Catch::Contains("1 to 16"));
  CHECK_THAT(message("path=a,queues=17"), Catch::Contains("1 to 16"));
  CHECK_THAT(message("path=a,queues=x"), Catch::Contains("1 to 16"));
  CHECK_THAT(message("path=a,poll_us=10001"), Catch::Contains("from 0 to 10000"));
  CHECK_THAT(message("path=a,poll_us=-1"), Catch::Contains("from 0 to 10000"));
  CHECK_THAT(message("path=a,serial=123456789012345678901"), Catch::Contains("20 characters"));
  CHECK_THAT(message("path=a,color=red"), Catch::Contains("unknown key 'color'"));
  CHECK_THAT(message("path=a,path=b"), Catch::Contains("given twice"));
  CHECK_THAT(message("path=a,,readonly=on"), Catch::Contains("key=value"));
  CHECK_THAT(message("a.img"), Catch::Contains("key=value"));
}

TEST_CASE("serial modes") {
  auto ok = [](const char* text) {
    auto r = parse_serial(text);
    REQUIRE(std::holds_alternative<SerialConfig>(r));
    return std::get<SerialConfig>(r);
  };
  CHECK(ok("stdio").mode == SerialMode::kStdio);
  CHECK(ok("null").mode == SerialMode::kNull);
  CHECK(ok("file=/tmp/x.log") == SerialConfig{SerialMode::kFile, "/tmp/x.log"});
  CHECK(std::holds_alternative<ConfigError>(parse_serial("file=")));
  CHECK(std::holds_alternative<ConfigError>(parse_serial("tty")));
}

TEST_CASE("defaults") {
  const VmConfig c = parse_ok({"--kernel", "bzImage"});
  CHECK(c.kernel == "bzImage");
  CHECK_FALSE(c.initrd.has_value());
  CHECK(c.cmdline == "console=ttyS0 reboot=k panic=-1");
  CHECK(c.memory == 512ULL << 20);
  CHECK(c.cpus == 1);
  CHECK(c.disks.empty());
  CHECK(c.serial.mode == SerialMode::kStdio);
  CHECK(c.acpi);
  CHECK_FALSE(c.virtio_cmdline);
}

TEST_CASE("every option") {
  const VmConfig c = parse_ok({"--kernel",    "k",
                               "--initrd",    "i",
                               "--cmdline",   "root=/dev/vda",
                               "--memory",    "1G",
                               "--cpus",      "4",
                               "--disk",      "path=a.img",
                               "--disk",      "path=b.img,readonly=on",
                               "--serial",    "null",
                               "--no-acpi",   "--virtio-cmdline",
                               "--log-level", "debug"});
  CHECK(c.initrd == "i");
  CHECK(c.cmdline == "root=/dev/vda");
  CHECK(c.memory == 1ULL << 30);
  CHECK(c.cpus == 4);
  REQUIRE(c.disks.size() == 2);
  CHECK(c.disks[0].path == "a.img");
  CHECK(c.disks[1].readonly);
  CHECK(c.serial.mode == SerialMode::kNull);
  CHECK_FALSE(c.acpi);
  CHECK(c.virtio_cmdline);
  CHECK(c.log_level == "debug");
}

TEST_CASE("bad usage exits with status 2 and one line") {
  const std::vector<std::vector<std::string>> cases = {
      {},                                          // --kernel missing
      {"--kernel", "k", "--bogus"},                // unknown option
      {"--kernel", "k", "--memory", "lots"},       // bad size
      {"--kernel", "k", "--cpus", "0"},            // out of range
      {"--kernel", "k", "--cpus", "many"},         // not a number
      {"--kernel", "k", "--disk", "readonly=on"},  // no path
      {"--kernel", "k", "--serial", "tty"},        // bad serial
      {"--kernel", "k", "--log-level", "loud"},    // bad level
      {"--kernel", ""},                            // empty path
      {"--kernel", "k", "extra"},                  // stray argument
  };
  for (const auto& args : cases) {
    const ParseExit e = parse_error(args);
    INFO("message: " << e.output);
    CHECK(e.status == 2);
    CHECK_FALSE(e.output.empty());
    CHECK(e.output.find('\n') == std::string::npos);
  }
}

TEST_CASE("--help exits 0 and shows an example") {
  const ParseExit e = parse_error({"--help"});
  CHECK(e.status == 0);
  CHECK_THAT(e.output, Catch::Contains("Example:"));
  CHECK_THAT(e.output, Catch::Contains("--disk"));
  CHECK_THAT(e.output, Catch::Contains("Exit status"));
}
