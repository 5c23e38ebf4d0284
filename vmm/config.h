// VmConfig: the plain description of one VM, built from the command line by
// parse_command_line() and consumed by Vm. Parsing is pure (no KVM, no files opened) so that
// it is unit-testable; files are checked when the VM is built.
//
// Threads: main thread only.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "boot/linux_boot.h"
#include "devices/debug_exit.h"
#include "devices/virtio_blk.h"
#include "virtio/result.h"
#include "vmm/seccomp.h"

namespace minivmm::vmm {

inline constexpr const char* kDefaultCmdline = "console=ttyS0 reboot=k panic=-1";
inline constexpr uint64_t kDefaultMemory = 512ULL << 20;
inline constexpr uint32_t kMaxDiskQueues = 16;
inline constexpr uint32_t kMaxDiskPollUs = 10'000;

enum class SerialMode { kStdio, kNull, kFile };

struct SerialConfig {
  SerialMode mode = SerialMode::kStdio;
  std::string path;  // for kFile
  bool operator==(const SerialConfig&) const = default;
};

// A named virtio-console port (--port): the guest sees /dev/virtio-ports/NAME; its host side
// is a file that guest output is written to, or a unix socket minivmm listens on (one client,
// both directions).
struct PortConfig {
  std::string name;
  std::string path;    // path=FILE
  std::string socket;  // socket=PATH
  bool operator==(const PortConfig&) const = default;
};

// A host directory shared with the guest over virtio-fs (--fs): minivmm's own virtiofsd for
// `path`, or a vhost-user daemon the user started, at `socket`. The guest mounts it with
// `mount -t virtiofs TAG DIR`.
struct FsConfig {
  std::string tag;
  std::string path;      // path=DIR: minivmm starts virtiofsd for it
  std::string socket;    // socket=PATH: connect to a running daemon
  bool read_only = false;  // readonly=on (path= only)
  bool operator==(const FsConfig&) const = default;
};

// A virtio-net device (--net) and its backend: an existing tap, minivmm's own passt, or a
// stream socket of a passt / QEMU "stream" peer someone started.
struct NetConfig {
  std::string tap;                   // tap=NAME
  bool passt = false;                // passt
  std::string socket;                // socket=PATH
  std::vector<std::string> forward;  // forward=P[:Q][+...]: passt's --tcp-ports, one each
  std::optional<std::array<uint8_t, 6>> mac;  // mac=52:54:00:12:34:56; nullopt: stable default
  std::string spec;                  // the option's text, the default MAC's seed
  bool operator==(const NetConfig&) const = default;
};

// virtio-vsock (--vsock): the guest's CID, and the unix socket minivmm listens on for host
// connections ("CONNECT <port>"); guest connections to host port P go to PATH_P.
struct VsockConfig {
  uint64_t cid = 0;
  std::string socket;
  bool operator==(const VsockConfig&) const = default;
};

// --host-root --exec CMD: boot the kernel on the host's own root (read-only over virtio-fs,
// minivmm's virtiofsd) with minivmm's initramfs and init, run CMD there; its stdout and
// stderr are minivmm's, its status minivmm's exit status.
struct HostRootConfig {
  std::string command;  // --exec: run as /bin/sh -c COMMAND
  std::string cwd;      // --cwd: the command's working directory; empty: minivmm's own
  std::string modules;  // --modules DIR; empty: /lib/modules/<the kernel's release>
  bool operator==(const HostRootConfig&) const = default;
};

// The exit port (--debug-exit): minivmm's formula at 0xf4 by default, QEMU's at 0x501.
struct DebugExitConfig {
  bool enabled = true;
  devices::DebugExit::Formula formula = devices::DebugExit::Formula::kMinivmm;
  uint16_t iobase = devices::DebugExit::kMinivmmPort;
  uint16_t iosize = 4;  // 0xf4-0xf7: a 1-, 2- or 4-byte write at 0xf4
  bool operator==(const DebugExitConfig&) const = default;
};

inline constexpr uint32_t kMaxTimeoutSeconds = 7 * 24 * 3600;
// The virtio-console port a Linux guest writes its status to (--exit-port).
inline constexpr const char* kExitPortName = "minivmm.exit";

// --user UID:GID, numeric.
struct UserIds {
  uint32_t uid = 0;
  uint32_t gid = 0;
  bool operator==(const UserIds&) const = default;
};
struct VmConfig {
  std::string kernel;  // a bzImage or an ELF vmlinux
  boot::ElfEntry elf_entry = boot::ElfEntry::kAuto;
  std::optional<std::string> initrd;
  std::string cmdline = kDefaultCmdline;
  uint64_t memory = kDefaultMemory;
  uint32_t cpus = 1;
  std::vector<devices::BlockConfig> disks;  // filled by parse_disk
  SerialConfig serial;
  std::optional<SerialConfig> console;  // virtio-console port 0 (hvc0); nullopt: --console off
  std::vector<PortConfig> ports;        // virtio-console named ports, ids 1..N
  std::vector<FsConfig> filesystems;    // --fs shares, in order
  std::vector<NetConfig> networks;      // --net devices, in order (eth0, eth1, ...)
  std::optional<VsockConfig> vsock;     // --vsock cid=N,socket=PATH
  std::optional<HostRootConfig> host_root;  // --host-root --exec CMD
  bool exit_port = true;                // the minivmm.exit port for the guest's status
  bool pvpanic = true;                  // QEMU's pvpanic device at 0x505 (--pvpanic)
  bool acpi = true;
  bool rng = true;  // virtio-rng (--rng on|off)
  DebugExitConfig debug_exit;
  std::optional<uint32_t> timeout_s;  // --timeout: stop the VM after this many seconds
  std::string status_file;            // --status-file: "<status> <reason> <message>" at exit
  bool virtio_cmdline = false;        // append virtio_mmio.device=... for each device
  std::string log_level = "warn";
  SeccompMode seccomp = SeccompMode::kOn;  // --seccomp on|log|off
  std::optional<UserIds> user;             // --user UID:GID: drop root's privileges to them
};

// A parse failure: one line for stderr, without a trailing newline.
struct ConfigError {
  std::string message;
};

template <typename T>
using ConfigResult = Result<T, ConfigError>;

// "512M", "1G", "4096K", "1073741824B"; a bare number is MiB (as QEMU's -m). Nonzero and a
// multiple of 4 KiB.
ConfigResult<uint64_t> parse_memory_size(std::string_view text);
// "path=FILE[,readonly=on|off][,serial=ID][,direct=on|off][,engine=io_uring|sync][,queues=N]
//  [,poll_us=N]" (disk_synopsis()); keys not given keep BlockConfig's defaults (poll_us:
// BlockConfig::kDefaultPollUs).
ConfigResult<devices::BlockConfig> parse_disk(std::string_view text);
// The --disk synopsis and per-key help lines, generated from the same table as parse_disk.
std::string disk_synopsis();
std::string disk_help();
// "stdio", "null" or "file=PATH".
ConfigResult<SerialConfig> parse_serial(std::string_view text);
// --console: "off" (nullopt) or what parse_serial takes.
ConfigResult<std::optional<SerialConfig>> parse_console(std::string_view text);
// --user: "UID:GID", both decimal, neither 0 (dropping to root is no drop).
ConfigResult<UserIds> parse_user(std::string_view text);
// "minivmm" (0xf4), "qemu[,iobase=N][,iosize=N]" (N decimal or 0x-hex) or "off".
ConfigResult<DebugExitConfig> parse_debug_exit(std::string_view text);
// "name=NAME,path=FILE" or "name=NAME,socket=PATH" (port_synopsis()).
ConfigResult<PortConfig> parse_port(std::string_view text);
std::string port_synopsis();
std::string port_help();
// "tag=TAG,path=DIR[,readonly=on]" or "tag=TAG,socket=PATH" (fs_synopsis()).
ConfigResult<FsConfig> parse_fs(std::string_view text);
std::string fs_synopsis();
std::string fs_help();
// "tap=NAME", "passt[,forward=PORTS]" or "socket=PATH", each with an optional ",mac=MAC".
ConfigResult<NetConfig> parse_net(std::string_view text);
std::string net_synopsis();
std::string net_help();
// "cid=N,socket=PATH" (vsock_synopsis()): N in [3, 2^32 - 2].
ConfigResult<VsockConfig> parse_vsock(std::string_view text);
std::string vsock_synopsis();
std::string vsock_help();

// What the command line asks for: run a VM, or exit now with `status` after printing
// `output` (help text, to stdout) or an error line (to stderr).
struct ParseExit {
  int status;
  std::string output;  // for status 0: help text; otherwise the one-line error
};
Result<VmConfig, ParseExit> parse_command_line(int argc, const char* const* argv);

}  // namespace minivmm::vmm
