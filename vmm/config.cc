#include "vmm/config.h"

#include <CLI/CLI.hpp>

#include <charconv>
#include <limits>
#include <set>

#include "boot/layout.h"
#include "devices/virtio_blk_request.h"
#include "mmio/virtio_mmio.h"

namespace minivmm::vmm {

// The guest layout (boot/) gives each virtio-mmio device a slot the size of the transport's
// register window (mmio/). One definition is impossible without an include against the
// dependency arrows (boot and mmio know nothing of each other), so vmm, which uses both, checks
// that they agree.
static_assert(boot::kVirtioMmioSlotSize == mmio::VirtioMmioTransport::kDeviceWindowSize);

namespace {

std::optional<uint64_t> parse_u64(std::string_view text) {
  uint64_t value = 0;
  if (text.empty()) return std::nullopt;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<bool> parse_on_off(std::string_view text) {
  if (text == "on" || text == "true" || text == "yes" || text == "1") return true;
  if (text == "off" || text == "false" || text == "no" || text == "0") return false;
  return std::nullopt;
}

std::string quoted(std::string_view text) {
  return "'" + std::string(text) + "'";
}

}  // namespace

std::variant<uint64_t, ConfigError> parse_memory_size(std::string_view text) {
  const std::string bad = "invalid memory size " + quoted(text) +
                          " (expected a number with an optional K, M or G suffix, e.g. 512M)";
  uint64_t shift = 20;  // bare number: MiB
  std::string_view digits = text;
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        shift = 10;
        break;
      case 'M':
      case 'm':
        shift = 20;
        break;
      case 'G':
      case 'g':
        shift = 30;
        break;
      case 'B':
      case 'b':
        shift = 0;
        break;
      default:
        shift = 99;
        break;
    }
    if (shift != 99) {
      digits.remove_suffix(1);
    } else {
      shift = 20;
    }
  }
  const std::optional<uint64_t> number = parse_u64(digits);
  if (!number) return ConfigError{bad};
  if (*number == 0) return ConfigError{"memory size must not be zero"};
  if (*number > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return ConfigError{"memory size " + quoted(text) + " is too large"};
  }
  const uint64_t bytes = *number << shift;
  if (bytes % 4096 != 0) {
    return ConfigError{"memory size " + quoted(text) + " is not a multiple of 4 KiB"};
  }
  return bytes;
}

std::variant<DiskConfig, ConfigError> parse_disk(std::string_view text) {
  DiskConfig disk;
  std::set<std::string, std::less<>> seen;
  bool have_path = false;
  std::string_view rest = text;
  while (true) {
    const size_t comma = rest.find(',');
    const std::string_view item = rest.substr(0, comma);
    const size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return ConfigError{"--disk " + quoted(text) + ": expected key=value, got " + quoted(item)};
    }
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = item.substr(eq + 1);
    if (!seen.insert(std::string(key)).second) {
      return ConfigError{"--disk " + quoted(text) + ": " + quoted(key) + " given twice"};
    }
    auto bad_value = [&](const char* expected) {
      return ConfigError{"--disk " + quoted(text) + ": invalid " + std::string(key) + " " +
                         quoted(value) + " (expected " + expected + ")"};
    };
    if (key == "path") {
      if (value.empty()) return bad_value("a file name");
      disk.path = value;
      have_path = true;
    } else if (key == "readonly" || key == "direct") {
      const std::optional<bool> on = parse_on_off(value);
      if (!on) return bad_value("on or off");
      (key == "readonly" ? disk.readonly : disk.direct) = *on;
    } else if (key == "serial") {
      if (value.size() > devices::kBlkIdBytes) return bad_value("at most 20 characters");
      disk.serial = value;
    } else if (key == "engine") {
      if (value == "io_uring") {
        disk.engine = DiskEngine::kIoUring;
      } else if (value == "sync") {
        disk.engine = DiskEngine::kSync;
      } else {
        return bad_value("io_uring or sync");
      }
    } else if (key == "queues") {
      const std::optional<uint64_t> n = parse_u64(value);
      if (!n || *n == 0 || *n > kMaxDiskQueues) return bad_value("a number from 1 to 16");
      disk.queues = static_cast<uint32_t>(*n);
    } else if (key == "poll_us") {
      const std::optional<uint64_t> n = parse_u64(value);
      if (!n || *n > kMaxDiskPollUs) {
        const std::string range = "a number of microseconds from 0 to " + std::to_string(kMaxDiskPollUs);
        return bad_value(range.c_str());
      }
      disk.poll_us = static_cast<uint32_t>(*n);
    } else {
      return ConfigError{"--disk " + quoted(text) + ": unknown key " + quoted(key) +
                         " (known: path, readonly, serial, direct, engine, queues, poll_us)"};
    }
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  if (!have_path) return ConfigError{"--disk " + quoted(text) + ": path=FILE is required"};
  return disk;
}

std::variant<SerialConfig, ConfigError> parse_serial(std::string_view text) {
  if (text == "stdio") return SerialConfig{SerialMode::kStdio, {}};
  if (text == "null") return SerialConfig{SerialMode::kNull, {}};
  if (text.starts_with("file=") && text.size() > 5) {
    return SerialConfig{SerialMode::kFile, std::string(text.substr(5))};
  }
  return ConfigError{"invalid --serial " + quoted(text) + " (expected stdio, null or file=PATH)"};
}

std::variant<VmConfig, ParseExit> parse_command_line(int argc, const char* const* argv) {
  VmConfig config;
  std::string memory = "512M";
  std::vector<std::string> disks;
  std::string serial = "stdio";
  bool no_acpi = false;

  CLI::App app{"minivmm: a minimal KVM virtual machine monitor that boots a Linux bzImage"};
  app.name("minivmm");
  app.add_option("--kernel", config.kernel, "Linux kernel image (bzImage) to boot")
      ->required()
      ->type_name("PATH");
  app.add_option("--initrd", config.initrd, "Initial ramdisk (initramfs) image")->type_name("PATH");
  app.add_option("--cmdline", config.cmdline, "Kernel command line")
      ->type_name("STR")
      ->default_str(kDefaultCmdline);
  app.add_option("--memory", memory, "Guest RAM; a number with a K, M or G suffix (bare: MiB)")
      ->type_name("SIZE")
      ->default_str("512M");
  app.add_option("--cpus", config.cpus, "Number of vCPUs")
      ->type_name("N")
      ->default_str("1")
      ->check(CLI::Range(1U, boot::kMaxCpus));
  app.add_option("--disk", disks,
                 "virtio-blk disk (repeatable): path=FILE[,readonly=on][,serial=ID][,direct=on]"
                 "[,engine=io_uring|sync][,queues=N][,poll_us=N]")
      ->type_name("SPEC")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--serial", serial, "Where the serial console goes: stdio, null or file=PATH")
      ->type_name("MODE")
      ->default_str("stdio");
  app.add_flag("--no-acpi", no_acpi, "Do not build ACPI tables");
  app.add_flag("--virtio-cmdline", config.virtio_cmdline,
               "Also describe virtio-mmio devices on the kernel command line "
               "(virtio_mmio.device=...)");
  app.add_option("--log-level", config.log_level,
                 "VMM log level on stderr: trace, debug, info, warn, error, off")
      ->type_name("LEVEL")
      ->default_str("warn")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  app.footer(
      "Example:\n"
      "  minivmm --kernel bzImage --initrd initrd.img --memory 1G --cpus 2 \\\n"
      "          --disk path=rootfs.img,serial=root --cmdline \"console=ttyS0 root=/dev/vda\"\n"
      "\n"
      "Disk keys (--disk, comma-separated):\n"
      "  path=FILE             raw disk image (required); locked against a second writer\n"
      "  readonly=on|off       read-only disk: the file is opened O_RDONLY (default off)\n"
      "  serial=ID             the serial the guest reads (GET_ID), up to 20 characters\n"
      "  direct=on|off         O_DIRECT, bypassing the host page cache (default off)\n"
      "  engine=io_uring|sync  backend (default io_uring; sync where io_uring is refused)\n"
      "  queues=N              request queues, 1-16 (default 1)\n"
      "  poll_us=N             the disk's I/O thread keeps polling the queues for N us after\n"
      "                        work before it sleeps (default 0 = off; 100 suits busy disks;\n"
      "                        at most 10000)\n"
      "\n"
      "Exit status: 0 guest powered off or rebooted, 1 VMM or host error, 2 bad usage,\n"
      "3 guest crashed (triple fault), 4 host KVM cannot run the guest, 130/143 stopped by\n"
      "SIGINT/SIGTERM.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return ParseExit{0, app.help()};
  } catch (const CLI::CallForAllHelp&) {
    return ParseExit{0, app.help()};
  } catch (const CLI::ParseError& e) {
    return ParseExit{2, std::string(e.what()) + " (see minivmm --help)"};
  }

  if (config.kernel.empty()) return ParseExit{2, "--kernel: the path must not be empty"};
  if (config.initrd && config.initrd->empty()) {
    return ParseExit{2, "--initrd: the path must not be empty"};
  }
  auto mem = parse_memory_size(memory);
  if (auto* err = std::get_if<ConfigError>(&mem)) return ParseExit{2, err->message};
  config.memory = std::get<uint64_t>(mem);
  for (const std::string& spec : disks) {
    auto disk = parse_disk(spec);
    if (auto* err = std::get_if<ConfigError>(&disk)) return ParseExit{2, err->message};
    config.disks.push_back(std::get<DiskConfig>(std::move(disk)));
  }
  auto ser = parse_serial(serial);
  if (auto* err = std::get_if<ConfigError>(&ser)) return ParseExit{2, err->message};
  config.serial = std::get<SerialConfig>(std::move(ser));
  config.acpi = !no_acpi;
  return config;
}

}  // namespace minivmm::vmm
