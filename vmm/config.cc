#include "vmm/config.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <limits>
#include <map>
#include <tuple>

#include "boot/hostroot/initramfs.h"
#include "boot/layout.h"
#include "devices/virtio_console.h"
#include "devices/virtio_fs.h"
#include "devices/virtio_vsock.h"
#include "mmio/virtio_mmio.h"
#include "vmm/suboptions.h"

namespace minivmm::vmm {

// The guest layout (boot/) gives each virtio-mmio device a slot the size of the transport's
// register window (mmio/). One definition is impossible without an include against the
// dependency arrows (boot and mmio know nothing of each other), so vmm, which uses both, checks
// that they agree.
static_assert(boot::kVirtioMmioSlotSize == mmio::VirtioMmioTransport::kDeviceWindowSize);

namespace {

std::string quoted(std::string_view text) {
  return "'" + std::string(text) + "'";
}

std::string on_off(bool on) {
  return on ? "on" : "off";
}

// The --disk keys: parsing, checks, synopsis and help all come from this table. In a
// fault-injection build (tests only) it also has `fault=SPEC`, whose text goes to
// `fault_spec` for parse_disk to check.
SubOptions<devices::BlockConfig> disk_options(std::string* fault_spec = nullptr) {
  using devices::BlockConfig;
  using Engine = BlockConfig::Engine;
  static_assert(BlockConfig::kDefaultPollUs == 0, "the poll_us help says the default is off");
  const BlockConfig defaults;
  std::vector<SubOptions<BlockConfig>::Key> test_only;
#if MINIVMM_FAULT_INJECTION
  test_only.push_back(
      {{.name = "fault",
        .spec = StringSpec{.hint = "SPEC", .allow_empty = false},
        .help = "test builds only: inject disk faults, WHAT:OP[:FIRST-LAST][:COUNT] joined by "
                "+ (devices/fault_backend.h)"},
       [fault_spec](BlockConfig&, const SubOptionValue& v) {
         if (fault_spec != nullptr) *fault_spec = std::get<std::string>(v);
       }});
#else
  (void)fault_spec;
#endif
  std::vector<SubOptions<BlockConfig>::Key> keys({
      bind({.name = "path",
            .spec = StringSpec{.hint = "FILE", .allow_empty = false},
            .help = "raw disk image; locked against a second writer",
            .required = true},
           &BlockConfig::path),
      bind({.name = "readonly",
            .spec = BoolSpec{},
            .help = "read-only disk: the file is opened O_RDONLY",
            .default_text = on_off(defaults.read_only)},
           &BlockConfig::read_only),
      bind({.name = "serial",
            .spec = StringSpec{.hint = "ID", .max_length = devices::kBlkIdBytes},
            .help = "the serial the guest reads with GET_ID"},
           &BlockConfig::serial),
      bind({.name = "direct",
            .spec = BoolSpec{},
            .help = "O_DIRECT, bypassing the host page cache",
            .default_text = on_off(defaults.direct)},
           &BlockConfig::direct),
      bind({.name = "engine",
            .spec = ChoiceSpec{{{"io_uring", static_cast<uint64_t>(Engine::kIoUring)},
                                {"sync", static_cast<uint64_t>(Engine::kSync)}}},
            .help = "backend; io_uring falls back to sync where the kernel refuses it",
            .default_text = defaults.engine == Engine::kSync ? "sync" : "io_uring"},
           &BlockConfig::engine),
      bind({.name = "queues",
            .spec = UnsignedSpec{.min = 1, .max = kMaxDiskQueues},
            .help = "request queues",
            .default_text = std::to_string(defaults.num_queues)},
           &BlockConfig::num_queues),
      bind({.name = "poll_us",
            .spec = UnsignedSpec{.max = kMaxDiskPollUs},
            .help = "the disk's I/O thread keeps polling the queues for N us after work "
                    "before it sleeps; 0 = off, " +
                    std::to_string(BlockConfig::kSuggestedPollUs) + " suits busy disks",
            .default_text = std::to_string(defaults.poll_us)},
           &BlockConfig::poll_us),
  });
  for (auto& k : test_only) keys.push_back(std::move(k));
  return SubOptions<BlockConfig>("--disk", std::move(keys));
}

// The --port keys.
SubOptions<PortConfig> port_options() {
  return SubOptions<PortConfig>(
      "--port",
      {
          bind({.name = "name",
                .spec = StringSpec{.hint = "NAME",
                                   .max_length = devices::VirtioConsole::kMaxNameLength,
                                   .allow_empty = false},
                .help = "the port's name: /dev/virtio-ports/NAME in the guest (A-Z a-z 0-9 . _ -)",
                .required = true},
               &PortConfig::name),
          bind({.name = "path",
                .spec = StringSpec{.hint = "FILE", .allow_empty = false},
                .help = "host file the guest's writes go to (created or truncated)"},
               &PortConfig::path),
          bind({.name = "socket",
                .spec = StringSpec{.hint = "PATH", .allow_empty = false},
                .help = "unix socket minivmm listens on; one client at a time, both directions"},
               &PortConfig::socket),
      },
      {{"path", "socket"}});
}

// The --fs keys.
SubOptions<FsConfig> fs_options() {
  return SubOptions<FsConfig>(
      "--fs",
      {
          bind({.name = "tag",
                .spec = StringSpec{.hint = "TAG",
                                   .max_length = devices::VirtioFs::kTagSize,
                                   .allow_empty = false},
                .help = "the name the guest mounts: mount -t virtiofs TAG DIR",
                .required = true},
               &FsConfig::tag),
          bind({.name = "path",
                .spec = StringSpec{.hint = "DIR", .allow_empty = false},
                .help = "host directory; minivmm runs virtiofsd for it (as root), exported "
                        "nosuid,nodev"},
               &FsConfig::path),
          bind({.name = "socket",
                .spec = StringSpec{.hint = "PATH", .allow_empty = false},
                .help = "vhost-user socket of a virtiofsd you started (--socket-path=PATH)"},
               &FsConfig::socket),
          bind({.name = "readonly",
                .spec = BoolSpec{},
                .help = "with path=: the guest may not change the share",
                .default_text = "off"},
               &FsConfig::read_only),
      },
      {{"path", "socket"}});
}

// The --net keys.
SubOptions<NetConfig> net_options() {
  return SubOptions<NetConfig>(
      "--net",
      {
          bind({.name = "tap",
                .spec = StringSpec{.hint = "NAME", .max_length = 15, .allow_empty = false},
                .help = "an existing tap device (ip tuntap add NAME mode tap user $USER); "
                        "checksum and TSO offloads pass through"},
               &NetConfig::tap),
          bind({.name = "passt",
                .spec = BoolSpec{},
                .help = "minivmm runs passt for the guest (no root needed): DHCP, the host's "
                        "address, the gateway reaches the host's 127.0.0.1; `passt` alone "
                        "means passt=on"},
               &NetConfig::passt),
          bind({.name = "socket",
                .spec = StringSpec{.hint = "PATH", .allow_empty = false},
                .help = "unix socket of a passt or QEMU stream peer you started (frames with a "
                        "4-byte length)"},
               &NetConfig::socket),
          {{.name = "forward",
            .spec = StringSpec{.hint = "PORTS", .allow_empty = false},
            .help = "with passt: host TCP ports forwarded to the guest, e.g. 8080 or 8080:80, "
                    "several joined by +"},
           [](NetConfig& c, const SubOptionValue& v) {
             const std::string& text = std::get<std::string>(v);
             size_t from = 0;
             while (from <= text.size()) {
               const size_t plus = std::min(text.find('+', from), text.size());
               c.forward.push_back(text.substr(from, plus - from));
               from = plus + 1;
             }
           }},
          {{.name = "mac",
            .spec = StringSpec{.hint = "MAC", .allow_empty = false},
            .help = "the guest's MAC address, e.g. 52:54:00:12:34:56",
            .default_text = "a stable one from the option's text"},
           [](NetConfig& c, const SubOptionValue& v) {
             // Checked in parse_net (a setter cannot fail); kept as text until then.
             c.spec = std::get<std::string>(v);
           }},
      },
      {{"tap", "passt", "socket"}});
}

// The --vsock keys.
SubOptions<VsockConfig> vsock_options() {
  return SubOptions<VsockConfig>(
      "--vsock",
      {
          bind({.name = "cid",
                .spec = UnsignedSpec{.hint = "N", .min = 3, .max = 0xfffffffe},
                .help = "the guest's context ID (0-2 are reserved)",
                .required = true},
               &VsockConfig::cid),
          bind({.name = "socket",
                .spec = StringSpec{.hint = "PATH",
                                   .max_length = devices::VirtioVsock::kMaxSocketPath,
                                   .allow_empty = false},
                .help = "unix socket minivmm listens on for host connections (CONNECT <port>); "
                        "guest connections to port P go to PATH_P",
                .required = true},
               &VsockConfig::socket),
      });
}

// What --host-root --exec needs of the rest of the command line; the error line, if any.
// Without an explicit --serial the kernel's console goes nowhere: stdout is the command's.
std::optional<std::string> check_host_root(bool host_root, const std::optional<std::string>& exec,
                                           VmConfig& config, bool serial_given,
                                           bool cmdline_given) {
  if (!exec) return "--host-root: give the command to run there with --exec CMD";
  if (!host_root) return "--exec runs a command on the host's root: add --host-root";
  if (exec->empty()) return "--exec: the command must not be empty";
  if (config.initrd) {
    return "--host-root packs its own initramfs (init and modules); leave out --initrd";
  }
  for (const FsConfig& fs : config.filesystems) {
    if (fs.tag == boot::kHostRootTag) {
      return "--fs: tag=" + fs.tag + " is the host root's own with --host-root";
    }
  }
  for (const PortConfig& port : config.ports) {
    if (port.name == boot::kHostRootStdoutPort || port.name == boot::kHostRootStderrPort) {
      return "--port: name=" + port.name + " is the command's own with --exec";
    }
  }
  if (!serial_given) config.serial = SerialConfig{SerialMode::kNull, ""};
  // Every byte of the kernel's log is a UART exit, even when it goes nowhere: the default
  // command line is quiet here (--cmdline replaces it, as always).
  if (!cmdline_given) config.cmdline = std::string(kDefaultCmdline) + " quiet";
  return std::nullopt;
}

}  // namespace

ConfigResult<FsConfig> parse_fs(std::string_view text) {
  auto fs = fs_options().parse(text);
  if (!fs) return ConfigError{std::move(fs).error()};
  if (fs->read_only && !fs->socket.empty()) {
    return ConfigError{"--fs: readonly= goes with path=; a daemon you started (socket=) "
                       "decides itself whether its share is read-only"};
  }
  return std::move(fs).value();
}

std::string fs_synopsis() {
  return fs_options().synopsis();
}

std::string fs_help() {
  return fs_options().help();
}

ConfigResult<NetConfig> parse_net(std::string_view text) {
  // `passt` alone is passt=on.
  std::string spec(text);
  if (spec == "passt" || spec.starts_with("passt,")) spec.insert(5, "=on");
  auto net = net_options().parse(spec);
  if (!net) return ConfigError{std::move(net).error()};
  NetConfig config = std::move(net).value();
  const std::string mac_text = std::exchange(config.spec, std::string(text));
  if (config.tap.empty() && config.socket.empty() && !config.passt) {
    return ConfigError{"--net: passt=off leaves no backend: give tap=NAME, passt or socket=PATH"};
  }
  if (!config.forward.empty() && !config.passt) {
    return ConfigError{"--net: forward= goes with passt (a tap or socket peer forwards by itself)"};
  }
  for (const std::string& ports : config.forward) {
    const bool ok = !ports.empty() && ports.find_first_not_of("0123456789:-~") == std::string::npos &&
                    std::isdigit(static_cast<unsigned char>(ports.front())) != 0;
    if (!ok) {
      return ConfigError{"--net: forward=" + ports +
                         " is not a port or range (e.g. 8080, 8080:80, 8000-8010)"};
    }
  }
  if (!mac_text.empty()) {
    std::array<uint8_t, 6> mac{};
    bool ok = mac_text.size() == 17;
    for (size_t i = 0; ok && i < 6; ++i) {
      const std::string_view byte = std::string_view(mac_text).substr(i * 3, 2);
      ok = std::isxdigit(static_cast<unsigned char>(byte[0])) &&
           std::isxdigit(static_cast<unsigned char>(byte[1])) &&
           (i == 5 || mac_text[i * 3 + 2] == ':');
      if (ok) mac[i] = static_cast<uint8_t>(std::stoul(std::string(byte), nullptr, 16));
    }
    if (!ok) {
      return ConfigError{"--net: mac=" + mac_text +
                         " is not a MAC address (six hex bytes: 52:54:00:12:34:56)"};
    }
    if (mac[0] & 1) {
      return ConfigError{"--net: mac=" + mac_text + " is a multicast address; a NIC needs a "
                         "unicast one (even first byte)"};
    }
    if (mac == std::array<uint8_t, 6>{}) return ConfigError{"--net: mac=00:00:00:00:00:00 is not an address"};
    config.mac = mac;
  }
  return config;
}

std::string net_synopsis() {
  return net_options().synopsis();
}

std::string net_help() {
  return net_options().help();
}

ConfigResult<VsockConfig> parse_vsock(std::string_view text) {
  auto vsock = vsock_options().parse(text);
  if (!vsock) return ConfigError{std::move(vsock).error()};
  return std::move(vsock).value();
}

std::string vsock_synopsis() {
  return vsock_options().synopsis();
}

std::string vsock_help() {
  return vsock_options().help();
}

ConfigResult<uint64_t> parse_memory_size(std::string_view text) {
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

ConfigResult<PortConfig> parse_port(std::string_view text) {
  auto port = port_options().parse(text);
  if (!port) return ConfigError{std::move(port).error()};
  const std::string& name = port->name;
  const bool ok = std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
  if (!ok || name == "." || name == "..") {
    return ConfigError{"--port: name=" + name +
                       " may use only A-Z a-z 0-9 . _ - (it becomes a file name in the guest)"};
  }
  return std::move(port).value();
}

std::string port_synopsis() {
  return port_options().synopsis();
}

std::string port_help() {
  return port_options().help();
}

ConfigResult<devices::BlockConfig> parse_disk(std::string_view text) {
  std::string fault_spec;
  auto disk = disk_options(&fault_spec).parse(text);
  if (!disk) return ConfigError{std::move(disk).error()};
  if (!fault_spec.empty()) {
    auto faults = devices::parse_disk_faults(fault_spec);
    if (!faults) return ConfigError{"--disk: " + faults.error()};
    disk->faults = std::move(faults).value();
  }
  return std::move(disk).value();
}

std::string disk_synopsis() {
  return disk_options().synopsis();
}

std::string disk_help() {
  return disk_options().help();
}

ConfigResult<SerialConfig> parse_serial(std::string_view text) {
  if (text == "stdio") return SerialConfig{SerialMode::kStdio, {}};
  if (text == "null") return SerialConfig{SerialMode::kNull, {}};
  if (text.starts_with("file=") && text.size() > 5) {
    return SerialConfig{SerialMode::kFile, std::string(text.substr(5))};
  }
  return ConfigError{"invalid --serial " + quoted(text) + " (expected stdio, null or file=PATH)"};
}

ConfigResult<DebugExitConfig> parse_debug_exit(std::string_view text) {
  using devices::DebugExit;
  const std::string bad = "invalid --debug-exit " + quoted(text) +
                          " (expected minivmm, off or qemu[,iobase=N][,iosize=N])";
  DebugExitConfig c;
  if (text == "minivmm") return c;
  if (text == "off") {
    c.enabled = false;
    return c;
  }
  if (text != "qemu" && !text.starts_with("qemu,")) return ConfigError{bad};
  c.formula = DebugExit::Formula::kQemu;
  c.iobase = DebugExit::kQemuPort;
  c.iosize = DebugExit::kQemuSize;
  std::string_view rest = text.substr(4);
  while (!rest.empty()) {
    rest.remove_prefix(1);  // the comma
    const std::string_view item = rest.substr(0, rest.find(','));
    rest.remove_prefix(item.size());
    const size_t eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    std::string_view digits = eq == std::string_view::npos ? "" : item.substr(eq + 1);
    int base = 10;
    if (digits.starts_with("0x") || digits.starts_with("0X")) {
      digits.remove_prefix(2);
      base = 16;
    }
    uint64_t value = 0;
    const auto [end, ec] =
        std::from_chars(digits.data(), digits.data() + digits.size(), value, base);
    if (digits.empty() || ec != std::errc() || end != digits.data() + digits.size()) {
      return ConfigError{"--debug-exit: " + quoted(item) + " needs a number (decimal or 0x-hex)"};
    }
    if (key == "iobase" && value <= 0xffff) {
      c.iobase = static_cast<uint16_t>(value);
    } else if (key == "iosize" && (value == 1 || value == 2 || value == 4)) {
      c.iosize = static_cast<uint16_t>(value);
    } else if (key == "iobase" || key == "iosize") {
      return ConfigError{"--debug-exit: " + quoted(item) +
                         " is out of range (iobase 0-0xffff, iosize 1, 2 or 4)"};
    } else {
      return ConfigError{bad};
    }
  }
  if (uint32_t{c.iobase} + c.iosize > 0x10000) {
    return ConfigError{"--debug-exit: the port range ends past 0xffff"};
  }
  return c;
}

ConfigResult<std::optional<SerialConfig>> parse_console(std::string_view text) {
  if (text == "off") return std::optional<SerialConfig>();
  auto mode = parse_serial(text);
  if (!mode) {
    return ConfigError{"invalid --console " + quoted(text) +
                       " (expected stdio, null, file=PATH or off)"};
  }
  return std::optional<SerialConfig>(*mode);
}

ConfigResult<UserIds> parse_user(std::string_view text) {
  const size_t colon = text.find(':');
  auto number = [](std::string_view digits) -> std::optional<uint32_t> {
    if (digits.empty() || digits.size() > 10) return std::nullopt;
    uint64_t v = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return std::nullopt;
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    // (uid_t)-1 means "unchanged" to setresuid.
    if (v >= UINT32_MAX) return std::nullopt;
    return static_cast<uint32_t>(v);
  };
  const std::string shown(text.substr(0, 64));
  if (colon == std::string_view::npos) {
    return ConfigError{"--user: '" + shown + "' is not UID:GID (numbers, e.g. 65534:65534)"};
  }
  const auto uid = number(text.substr(0, colon));
  const auto gid = number(text.substr(colon + 1));
  if (!uid || !gid) {
    return ConfigError{"--user: '" + shown + "' is not UID:GID (numbers, e.g. 65534:65534)"};
  }
  if (*uid == 0 || *gid == 0) {
    return ConfigError{"--user: '" + shown + "' keeps root's user or group; give another"};
  }
  return UserIds{*uid, *gid};
}

Result<VmConfig, ParseExit> parse_command_line(int argc, const char* const* argv) {
  VmConfig config;
  std::string memory = "512M";
  std::vector<std::string> disks;
  std::string serial = "stdio";
  std::string console = "off";
  std::string debug_exit = "minivmm";
  std::string elf_entry = "auto";
  std::string rng = "on";
  std::string exit_port = "on";
  std::string pvpanic = "on";
  std::string seccomp = "on";
  std::string user;
  uint32_t timeout_s = 0;
  std::vector<std::string> ports;
  std::vector<std::string> filesystems;
  std::vector<std::string> networks;
  std::vector<std::string> vsock;
  bool host_root = false;
  std::optional<std::string> exec;
  std::string cwd;
  std::string modules;
  bool no_acpi = false;

  CLI::App app{
      "minivmm: a minimal KVM virtual machine monitor that boots Linux (a bzImage or an "
      "ELF vmlinux) directly"};
  app.name("minivmm");
  app.add_option("--kernel", config.kernel,
                 "Linux kernel to boot: a bzImage, or an ELF vmlinux (loaded by its program "
                 "headers, entered through PVH when it has the note)")
      ->required()
      ->type_name("PATH");
  app.add_option("--elf-entry", elf_entry,
                 "How an ELF kernel is entered: auto (PVH if the kernel has the note, else the "
                 "64-bit boot protocol at its ELF entry), pvh, or 64bit")
      ->type_name("auto|pvh|64bit")
      ->default_str("auto");
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
  app.add_option("--disk", disks, "virtio-blk disk (repeatable): " + disk_synopsis())
      ->type_name("SPEC")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--serial", serial,
                 "Where the serial console (ttyS0) goes: stdio, null or file=PATH")
      ->type_name("MODE")
      ->default_str("stdio");
  app.add_option("--console", console,
                 "virtio-console hvc0 (boot with console=hvc0): stdio, null, file=PATH or off. "
                 "stdin goes to hvc0 when this is stdio, else to ttyS0 when --serial is stdio")
      ->type_name("MODE")
      ->default_str("off");
  app.add_option(
         "--port", ports,
         "Named virtio-console port, /dev/virtio-ports/NAME (repeatable): " + port_synopsis())
      ->type_name("SPEC")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--fs", filesystems,
                 "Host directory shared over virtio-fs (repeatable): " + fs_synopsis() +
                     ". The guest mounts it: mount -t virtiofs TAG DIR")
      ->type_name("SPEC")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--net", networks,
                 "Network device, eth0, eth1, ... (repeatable): " + net_synopsis() +
                     ". `--net passt` needs nothing but passt installed")
      ->type_name("SPEC")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_option("--vsock", vsock,
                 "virtio-vsock: " + vsock_synopsis() +
                     ". A host process connects to PATH and writes 'CONNECT <port>' to reach "
                     "a guest port; a guest connection to CID 2 port P goes to PATH_P")
      ->type_name("SPEC")
      ->expected(1)
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeAll);
  app.add_flag("--host-root", host_root,
               "Boot the kernel on the host's own root file system (read-only over virtio-fs, "
               "writable tmpfs where a system needs it) with minivmm's initramfs and init; "
               "needs --exec and root (virtiofsd)");
  app.add_option("--exec", exec,
                 "With --host-root: run CMD (/bin/sh -c CMD) in the guest; its stdout and stderr "
                 "are minivmm's, its exit status is minivmm's")
      ->type_name("CMD");
  app.add_option("--cwd", cwd,
                 "With --exec: the command's working directory (default: minivmm's)")
      ->type_name("DIR");
  app.add_option("--modules", modules,
                 "With --host-root: the kernel's module tree, whose virtio-mmio, virtio-console, "
                 "virtiofs and overlay modules go into the initramfs (default: "
                 "/lib/modules/<the kernel's release>)")
      ->type_name("DIR");
  app.add_option("--rng", rng,
                 "virtio-rng: entropy for the guest from the host's getrandom(), on or off")
      ->type_name("on|off")
      ->default_str("on");
  app.add_option("--debug-exit", debug_exit,
                 "Exit port: a guest write of v to port 0xf4 ends the VM with status v & 0xff "
                 "(minivmm); qemu[,iobase=N][,iosize=N]: QEMU's isa-debug-exit, status "
                 "(v << 1) | 1, at 0x501 by default; off")
      ->type_name("MODE")
      ->default_str("minivmm");
  app.add_option("--exit-port", exit_port,
                 "virtio-console port minivmm.exit: a status 0-255 the guest writes there in "
                 "decimal before it powers off or reboots is minivmm's exit status")
      ->type_name("on|off")
      ->default_str("on");
  app.add_option("--pvpanic", pvpanic,
                 "pvpanic device (port 0x505, ACPI QEMU0001; Linux's pvpanic-mmio): a guest "
                 "panic ends the VM at once with status 5")
      ->type_name("on|off")
      ->default_str("on");
  app.add_option("--seccomp", seccomp,
                 "Per-thread seccomp filters (main, vcpu, and each device worker's class), "
                 "installed before the guest runs: on (a forbidden system call ends minivmm "
                 "with status 159 and one line naming the call and the thread), log (allowed; "
                 "the kernel logs it), off")
      ->type_name("on|log|off")
      ->default_str("on");
  app.add_option("--user", user,
                 "When started as root: every thread drops to this user and group (and no "
                 "supplementary groups) once the VM's files and devices are open, before the "
                 "guest runs")
      ->type_name("UID:GID");
  app.add_option("--timeout", timeout_s,
                 "Stop the VM after this many seconds of wall-clock time and exit 124")
      ->type_name("SECONDS")
      ->check(CLI::Range(1U, kMaxTimeoutSeconds));
  app.add_option("--status-file", config.status_file,
                 "At exit, write '<status> <reason> <message>' there (reasons: see below)")
      ->type_name("PATH");
  app.add_flag("--no-acpi", no_acpi, "Do not build ACPI tables");
  app.add_flag("--virtio-cmdline", config.virtio_cmdline,
               "Also describe virtio-mmio devices on the kernel command line "
               "(virtio_mmio.device=...)");
  app.add_option("--log-level", config.log_level,
                 "VMM log level on stderr: trace, debug, info, warn, error, off")
      ->type_name("LEVEL")
      ->default_str("warn")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}));
  // --config FILE (TOML or INI): the same options, one per line; the command line overrides
  // the file, and a key that is not an option is an error.
  app.set_config("--config", "",
                 "Read options from a TOML file: key = value per option "
                 "(without the dashes); the command line overrides it")
      ->type_name("FILE");
  app.allow_config_extras(false);
  app.footer(
      "Example:\n"
      "  minivmm --kernel bzImage --initrd initrd.img --memory 1G --cpus 2 \\\n"
      "          --disk path=rootfs.img,serial=root --cmdline \"console=ttyS0 root=/dev/vda\"\n"
      "The same as --config vm.toml with vm.toml holding:\n"
      "  kernel = \"bzImage\"\n"
      "  initrd = \"initrd.img\"\n"
      "  memory = \"1G\"\n"
      "  cpus = 2\n"
      "  disk = [\"path=rootfs.img,serial=root\"]\n"
      "  cmdline = \"console=ttyS0 root=/dev/vda\"\n"
      "\n"
      "Disk keys (--disk, comma-separated):\n" +
      disk_help() +
      "\n"
      "Port keys (--port, comma-separated):\n" +
      port_help() +
      "\n"
      "Shared directory keys (--fs, comma-separated):\n" +
      fs_help() +
      "\n"
      "Network keys (--net, comma-separated):\n" +
      net_help() +
      "\n"
      "vsock keys (--vsock, comma-separated):\n" +
      vsock_help() +
      "\n"
      "Exit status: 0 guest powered off or rebooted, 1 VMM or host error, 2 bad usage,\n"
      "3 guest crashed (triple fault), 4 host KVM cannot run the guest, 5 guest panicked,\n"
      "124 --timeout passed, 130/143 stopped by SIGINT/SIGTERM, 159 a minivmm thread made a\n"
      "system call its seccomp filter forbids; or the status the guest reported (exit port\n"
      "0xf4, virtio-console port minivmm.exit). Reasons in --status-file: poweroff reboot\n"
      "guest-exit crash panic unrunnable error usage timeout signal seccomp.");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    return ParseExit{0, app.help()};
  } catch (const CLI::CallForAllHelp&) {
    return ParseExit{0, app.help()};
  } catch (const CLI::ConfigError& e) {
    // CLI11 says "INI was not able to parse KEY" for a key that is no option.
    std::string what = e.what();
    const std::string extra = "INI was not able to parse ";
    if (what.starts_with(extra)) what = "no option is named '" + what.substr(extra.size()) + "'";
    return ParseExit{2, "--config: " + what + " (see minivmm --help)"};
  } catch (const CLI::ParseError& e) {
    return ParseExit{2, std::string(e.what()) + " (see minivmm --help)"};
  }

  if (config.kernel.empty()) return ParseExit{2, "--kernel: the path must not be empty"};
  if (config.initrd && config.initrd->empty()) {
    return ParseExit{2, "--initrd: the path must not be empty"};
  }
  auto mem = parse_memory_size(memory);
  if (!mem) return ParseExit{2, mem.error().message};
  config.memory = *mem;
  for (const std::string& spec : disks) {
    auto disk = parse_disk(spec);
    if (!disk) return ParseExit{2, disk.error().message};
    config.disks.push_back(std::move(disk).value());
  }
  auto ser = parse_serial(serial);
  if (!ser) return ParseExit{2, ser.error().message};
  config.serial = *ser;
  auto con = parse_console(console);
  if (!con) return ParseExit{2, con.error().message};
  config.console = *con;
  if (ports.size() + 1 > devices::VirtioConsole::kMaxNamedPorts) {
    return ParseExit{2, "--port: at most " +
                            std::to_string(devices::VirtioConsole::kMaxNamedPorts - 1) +
                            " named ports (one more is minivmm.exit), " +
                            std::to_string(ports.size()) + " given"};
  }
  for (const std::string& spec : ports) {
    auto port = parse_port(spec);
    if (!port) return ParseExit{2, port.error().message};
    if (port->name == kExitPortName) {
      return ParseExit{2, std::string("--port: name=") + kExitPortName +
                              " is minivmm's own exit port (--exit-port)"};
    }
    for (const PortConfig& other : config.ports) {
      if (other.name == port->name) {
        return ParseExit{2, "--port: name=" + port->name + " is given more than once"};
      }
      if (!port->socket.empty() && other.socket == port->socket) {
        return ParseExit{2, "--port: socket=" + port->socket + " is given more than once"};
      }
    }
    config.ports.push_back(std::move(port).value());
  }
  for (const std::string& spec : filesystems) {
    auto fs = parse_fs(spec);
    if (!fs) return ParseExit{2, fs.error().message};
    for (const FsConfig& other : config.filesystems) {
      if (other.tag == fs->tag) {
        return ParseExit{2, "--fs: tag=" + fs->tag + " is given more than once"};
      }
    }
    config.filesystems.push_back(std::move(fs).value());
  }
  for (const std::string& spec : networks) {
    auto net = parse_net(spec);
    if (!net) return ParseExit{2, net.error().message};
    for (const NetConfig& other : config.networks) {
      if (!net->tap.empty() && other.tap == net->tap) {
        return ParseExit{2, "--net: tap=" + net->tap + " is given more than once"};
      }
      if (net->mac && other.mac == net->mac) {
        return ParseExit{2, "--net: two devices with the MAC address of " + spec};
      }
    }
    config.networks.push_back(std::move(net).value());
  }
  if (vsock.size() > 1) return ParseExit{2, "--vsock: one vsock device at most"};
  if (!vsock.empty()) {
    auto v = parse_vsock(vsock.front());
    if (!v) return ParseExit{2, v.error().message};
    for (const PortConfig& port : config.ports) {
      if (port.socket == v->socket) {
        return ParseExit{2, "--vsock: socket=" + v->socket + " is a --port's socket too"};
      }
    }
    config.vsock = std::move(v).value();
  }
  // on|off options, checked here so that --help shows "on|off" and nothing else; a TOML
  // --config file may say true / false.
  for (auto [name, text, out] : {std::tuple{"--rng", &rng, &config.rng},
                                 std::tuple{"--exit-port", &exit_port, &config.exit_port},
                                 std::tuple{"--pvpanic", &pvpanic, &config.pvpanic}}) {
    const bool on = *text == "on" || *text == "true";
    if (!on && *text != "off" && *text != "false") {
      return ParseExit{2, std::string(name) + ": '" + *text + "' is not on or off"};
    }
    *out = on;
  }
  if (host_root || exec) {
    if (auto bad = check_host_root(host_root, exec, config, app.count("--serial") > 0,
                                   app.count("--cmdline") > 0)) {
      return ParseExit{2, *bad};
    }
    if (!config.exit_port) {
      return ParseExit{2, "--host-root reports the command's status through the exit port: "
                          "leave --exit-port on"};
    }
    config.host_root = HostRootConfig{*exec, cwd, modules};
  } else if (!cwd.empty() || !modules.empty()) {
    return ParseExit{2, std::string(!cwd.empty() ? "--cwd" : "--modules") +
                            " goes with --host-root --exec CMD"};
  }
  if (!user.empty()) {
    auto ids = parse_user(user);
    if (!ids) return ParseExit{2, ids.error().message};
    config.user = *ids;
  }
  if (!parse_seccomp_mode(seccomp, config.seccomp)) {
    return ParseExit{2, "--seccomp: '" + seccomp + "' is not on, log or off"};
  }
  if (elf_entry == "auto") {
    config.elf_entry = boot::ElfEntry::kAuto;
  } else if (elf_entry == "pvh") {
    config.elf_entry = boot::ElfEntry::kPvh;
  } else if (elf_entry == "64bit") {
    config.elf_entry = boot::ElfEntry::kLinux64;
  } else {
    return ParseExit{2, "--elf-entry: '" + elf_entry + "' is not auto, pvh or 64bit"};
  }
  auto dexit = parse_debug_exit(debug_exit);
  if (!dexit) return ParseExit{2, dexit.error().message};
  config.debug_exit = *dexit;
  if (timeout_s > 0) config.timeout_s = timeout_s;
  config.acpi = !no_acpi;
  return config;
}

}  // namespace minivmm::vmm
