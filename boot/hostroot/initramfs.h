// The initramfs of host-root mode (README "The host's root and one command"): minivmm's guest
// init (boot/hostroot/init/, built static and embedded into minivmm), the command, the init's
// config and the kernel modules the init needs, as an uncompressed cpio "newc" archive in
// memory. The layout is the contract with the init: boot/hostroot/init/init.h.
//
// Host side, main thread, during VM setup; reads the module tree and, for tests, an init
// binary from disk. Failures are one-line Errors naming the file or option at fault.
#pragma once

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "boot/hostroot/modules.h"
#include "boot/result.h"

namespace minivmm::boot {

// The virtio-fs tag the init mounts as the root, and the console ports it writes to.
inline constexpr std::string_view kHostRootTag = "hostroot";
inline constexpr std::string_view kHostRootStdoutPort = "minivmm.stdout";
inline constexpr std::string_view kHostRootStderrPort = "minivmm.stderr";
inline constexpr std::string_view kHostRootExitPort = "minivmm.exit";
// The status the init reports when it fails itself (cannot mount the root, ...).
inline constexpr int kHostRootInitFailure = 125;

// What the init needs from the kernel: virtio-mmio (the transport), virtiofs (with fuse),
// virtio_console (the ports, and hvc0), overlay (writable /etc, /var, ...) and pvpanic-mmio
// (minivmm's panic report), with their dependencies. Built-in ones are skipped.
inline constexpr ModuleRequest kHostRootModules[] = {
    {"virtio_mmio", true}, {"virtio_console", true}, {"virtiofs", true},
    {"overlay", false},    {"pvpanic_mmio", false},
};

struct HostRootOptions {
  std::string command;            // run as /bin/sh -c COMMAND; not empty
  std::string cwd = "/";          // the command's working directory, absolute
  std::string tag{kHostRootTag};  // the virtio-fs tag (1-36 bytes)
  std::string hostname = "minivmm";
  uint32_t fs_wait_ms = 5000;    // how long the init waits for the virtio-fs device
  std::vector<std::string> env;  // KEY=VALUE for the command, over the init's defaults
  // The kernel's module tree (a /lib/modules/<release> directory, with modules.dep); empty:
  // pack no modules (a kernel with virtio-fs, virtio-mmio and virtio-console built in).
  std::filesystem::path module_tree;
  // When set, every packed (uncompressed) module's vermagic must start with it: the kernel
  // would refuse a module built for another release, so say it before the boot.
  std::string kernel_version;
  // The init to pack; empty: the one built into minivmm (embedded_host_root_init()).
  std::filesystem::path init_binary;
};

// The archive, or the first problem: bad options, a missing or unreadable module or module
// index, a module of another kernel release, a compressed module tree is accepted (the init
// loads it with MODULE_INIT_COMPRESSED_FILE; the kernel needs CONFIG_MODULE_DECOMPRESS).
Result<std::vector<uint8_t>> build_host_root_initramfs(const HostRootOptions& options);

// The module files build_host_root_initramfs packs for `module_tree`, in load order (paths
// relative to the tree). For messages and tests.
Result<std::vector<std::string>> host_root_module_list(const std::filesystem::path& module_tree);

// The module tree for a kernel of release `kernel_version`: `modules_option` when given
// (--modules DIR: it must hold modules.dep), else <lib_modules>/<kernel_version>. Errors say
// which releases the host has instead:
//   "--modules: no module tree for kernel 6.1.0-X; the host has 6.1.0-Y: pass --modules DIR"
Result<std::filesystem::path> find_module_tree(
    std::string_view kernel_version, const std::filesystem::path& modules_option,
    const std::filesystem::path& lib_modules = "/lib/modules");

// The static init minivmm carries (boot/hostroot/init/, linked in at build time).
std::span<const uint8_t> embedded_host_root_init();

// The vermagic release of a module file ("6.1.0-57-cloud-amd64"): the first word of its
// .modinfo "vermagic=" string; empty when there is none.
std::string module_vermagic_release(std::span<const uint8_t> module);

}  // namespace minivmm::boot
