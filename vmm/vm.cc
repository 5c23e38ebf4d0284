#include "vmm/vm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysinfo.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <set>
#include <system_error>

#include "boot/cmdline.h"
#include "boot/hostroot/initramfs.h"
#include "boot/kernel_version.h"
#include "boot/layout.h"
#include "boot/linux_boot.h"
#include "devices/virtio_vsock.h"
#include "virtio/spec.h"
#include "vmm/cpuid.h"
#include "vmm/exit_status.h"
#include "vmm/jail.h"
#include "vmm/seccomp.h"

namespace minivmm::vmm {
namespace {

// Addresses KVM needs for its real-mode helpers on Intel (three pages for the TSS, one for
// the EPT identity map), just below the 4 GiB boundary in the MMIO gap, as other VMMs do.
constexpr uint64_t kTssAddr = 0xfffb'd000;
constexpr uint64_t kIdentityMapAddr = 0xfffb'c000;
constexpr uint64_t kMaxImageSize = 1ULL << 30;  // kernels and initrds above 1 GiB are refused

// An image file opened for reading, its size checked: a regular file, not empty, at most 1 GiB.
struct ImageFile {
  UniqueFd fd;
  uint64_t size = 0;
};

ImageFile open_image(const std::string& path, const char* what) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    throw VmError(std::string("cannot open ") + what + " " + path + ": " + std::strerror(errno),
                  kExitVmmError);
  }
  ImageFile file{UniqueFd(fd), 0};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw VmError(std::string("cannot stat ") + what + " " + path + ": " + std::strerror(errno),
                  kExitVmmError);
  }
  if (S_ISDIR(st.st_mode)) {
    throw VmError(std::string(what) + " " + path + " is a directory", kExitVmmError);
  }
  if (!S_ISREG(st.st_mode)) {
    throw VmError(std::string(what) + " " + path + " is not a regular file", kExitVmmError);
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxImageSize) {
    throw VmError(std::string(what) + " " + path + " is larger than 1 GiB", kExitVmmError);
  }
  if (st.st_size == 0) throw VmError(std::string(what) + " " + path + " is empty", kExitVmmError);
  file.size = static_cast<uint64_t>(st.st_size);
  return file;
}

// Reads [offset, offset + out.size()) of the file; false on an error or when the file ends
// early (it shrank since it was opened). errno tells which.
bool pread_all(int fd, uint64_t offset, std::span<uint8_t> out) {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t n =
        ::pread(fd, out.data() + done, out.size() - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    if (n == 0) {
      errno = 0;
      return false;
    }
    done += static_cast<size_t>(n);
  }
  return true;
}

std::vector<uint8_t> read_whole(const ImageFile& file, const std::string& path, const char* what) {
  std::vector<uint8_t> data(file.size);
  if (!pread_all(file.fd.get(), 0, data)) {
    throw VmError(std::string("cannot read ") + what + " " + path + ": " +
                      (errno != 0 ? std::strerror(errno) : "the file shrank while being read"),
                  kExitVmmError);
  }
  return data;
}

// Highest guest physical address width the host's vCPUs support (CPUID 0x80000008 EAX[7:0]).
uint32_t phys_address_bits(const std::vector<kvm_cpuid_entry2>& cpuid) {
  for (const auto& e : cpuid) {
    if (e.function == 0x80000008 && (e.eax & 0xff) != 0) return e.eax & 0xff;
  }
  return 36;
}

// The limits the jail holds the VM to (vmm/jail.h): RLIMIT_FSIZE is the largest writable
// disk image when nothing else is written to a file (console files grow without bound), and
// the fds still to come are the clients of socket ports (one at a time each, plus the one
// being replaced).
JailLimits jail_limits_for(const VmConfig& config) {
  JailLimits limits;
  bool files_grow = config.serial.mode == SerialMode::kFile ||
                    (config.console && config.console->mode == SerialMode::kFile);
  // stdout or stderr redirected to a file (a CI log: the console, an --exec command's
  // output, minivmm's own lines) grows as well.
  for (int fd : {STDOUT_FILENO, STDERR_FILENO}) {
    struct stat st {};
    if (::fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) files_grow = true;
  }
  for (const PortConfig& port : config.ports) {
    if (port.socket.empty()) {
      files_grow = true;
    } else {
      limits.extra_fds += 2;
    }
  }
  // vsock: its connections, and a host client it accepts only to refuse.
  if (config.vsock) limits.extra_fds += devices::VirtioVsock::Options{}.max_connections + 1;
  if (!files_grow) {
    uint64_t largest = 64 * 1024;  // room for the status file's line
    for (const devices::BlockConfig& disk : config.disks) {
      struct stat st {};
      if (!disk.read_only && ::stat(disk.path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
        largest = std::max(largest, static_cast<uint64_t>(st.st_size));
      }
    }
    limits.fsize = largest;
  }
  return limits;
}

// A stream connection to the unix socket at `path` (a backend someone else started); the
// error says "cannot connect to <what> PATH: why".
Result<UniqueFd, std::string> connect_unix(const std::string& path, const char* what) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) return "socket=" + path + " is too long a path";
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd socket(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!socket.valid() ||
      ::connect(socket.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return std::string("cannot connect to ") + what + " " + path + ": " + std::strerror(errno);
  }
  return socket;
}

}  // namespace

Vm::Vm(const VmConfig& config, std::chrono::steady_clock::time_point start)
    : start_(start),
      timeout_s_(config.timeout_s),
      exec_mode_(config.host_root.has_value()),
      jail_limits_(jail_limits_for(config)) {
  // Cheap checks of user input first, so that bad files are reported even without KVM.
  read_images(config);
  create_virtio_devices(config);
  open_kvm(config);
  setup_memory_and_boot(config);
  create_interrupt_controllers();
  setup_legacy_devices(config, start);
  attach_virtio_devices();
  setup_vcpus(config);
  // A daemon that failed at its start (passt without a default route, ...) said why on
  // stderr and is gone by now: the VM does not start without it.
  for (Daemon& daemon : daemons_) {
    if (auto how = daemon.process.reap()) {
      throw VmError(daemon.name + " " + *how + " at its start (see its messages above)",
                    kExitVmmError);
    }
  }
}

Vm::~Vm() {
  stop_.request(StopReason::kError, "VMM shutting down");
  stop_vcpus();
  detach_virtio_devices();
  if (vm_) vm_->set_closing();  // the members' teardown makes no KVM ioctl
}

void Vm::read_images(const VmConfig& config) {
  // An ELF vmlinux is read where it loads: its headers now, each segment straight into guest
  // RAM later (a vmlinux is 20-60 MB; reading it into a buffer first cost a second of boot in
  // the nested host). A bzImage (a few MB) and the initrd are read whole now.
  ImageFile kernel = open_image(config.kernel, "kernel");
  const int fd = kernel.fd.get();
  const boot::ImageSource file(kernel.size, [fd](uint64_t offset, std::span<uint8_t> out) {
    return pread_all(fd, offset, out);
  });
  if (boot::is_elf(file)) {
    auto parsed = boot::parse_elf_kernel(file, boot::low_ram_size(config.memory));
    if (!parsed) throw VmError("kernel " + config.kernel + ": " + parsed.error(), kExitVmmError);
    kernel_fd_ = std::move(kernel.fd);
    kernel_ = file;
  } else {
    kernel_image_ = read_whole(kernel, config.kernel, "kernel");
    if (auto parsed = boot::parse_bzimage(kernel_image_); !parsed) {
      throw VmError("kernel " + config.kernel + ": " + parsed.error() +
                        " (minivmm boots a bzImage or an ELF vmlinux)",
                    kExitVmmError);
    }
    kernel_ = boot::ImageSource(kernel_image_);
  }
  if (config.initrd)
    initrd_image_ = read_whole(open_image(*config.initrd, "initrd"), *config.initrd, "initrd");
  if (config.host_root) pack_host_root(config);
}

// --host-root: minivmm's init, the command and the kernel's modules become the initramfs.
void Vm::pack_host_root(const VmConfig& config) {
  const HostRootConfig& hr = *config.host_root;
  // The kernel's release picks its module tree and is checked against every module's.
  std::string release;
  {
    std::vector<uint8_t> whole;
    std::span<const uint8_t> image = kernel_image_;
    if (image.empty()) {  // an ELF vmlinux, read by segments elsewhere: its banner is needed
      whole = read_whole(open_image(config.kernel, "kernel"), config.kernel, "kernel");
      image = whole;
    }
    auto version = boot::kernel_version(image);
    if (version) {
      release = version->release;
    } else if (hr.modules.empty()) {
      throw VmError("--host-root: cannot tell the release of kernel " + config.kernel + " (" +
                        version.error() + "): pass --modules DIR, or --modules none",
                    kExitUsage);
    }
  }
  boot::HostRootOptions options;
  options.command = hr.command;
  if (!hr.cwd.empty()) {
    options.cwd = hr.cwd;
  } else if (char* here = ::getcwd(nullptr, 0)) {
    options.cwd = here;
    std::free(here);
  }
  options.kernel_version = release;
  if (hr.modules != "none") {
    auto tree = boot::find_module_tree(release, hr.modules);
    if (!tree) throw VmError(tree.error(), kExitUsage);
    options.module_tree = *tree;
  }
  // The command sees the host's environment where it matters to a shell.
  for (const char* name : {"PATH", "HOME", "USER", "LOGNAME", "LANG", "TERM", "TZ"}) {
    if (const char* value = std::getenv(name)) options.env.push_back(std::string(name) + "=" + value);
  }
  auto image = boot::build_host_root_initramfs(options);
  if (!image) throw VmError("--host-root: " + image.error(), kExitVmmError);
  initrd_image_ = std::move(image).value();
  spdlog::debug("--host-root: initramfs of {} KiB, modules from {}", initrd_image_.size() >> 10,
                options.module_tree.empty() ? "nowhere (--modules none)"
                                            : options.module_tree.string());
}

void Vm::create_virtio_devices(const VmConfig& config) {
  // Every device takes a window; disks first, so that they are vda, vdb, ... in order.
  const bool console = config.console || !config.ports.empty() || config.exit_port;
  const size_t wanted = config.disks.size() + config.filesystems.size() + config.networks.size() +
                        (config.host_root ? 1 : 0) + (config.rng ? 1 : 0) + (console ? 1 : 0) +
                        (config.vsock ? 1 : 0);
  if (wanted > boot::kMaxVirtioMmioDevices) {
    std::string others;
    if (!config.filesystems.empty()) {
      others += ", " + std::to_string(config.filesystems.size()) + " shared directories (--fs)";
    }
    if (!config.networks.empty()) {
      others += ", " + std::to_string(config.networks.size()) + " network devices (--net)";
    }
    if (config.rng) others += ", the rng (--rng off leaves it out)";
    if (console) {
      others += ", the console (";
      others += config.console || !config.ports.empty()
                    ? "for --console and --port)"
                    : "for the exit port, which --exit-port off leaves out)";
    }
    throw VmError("at most " + std::to_string(boot::kMaxVirtioMmioDevices) +
                      " virtio devices fit in the virtio-mmio windows, disks and others "
                      "together; this VM asks for " +
                      std::to_string(wanted) + " (" + std::to_string(config.disks.size()) +
                      " disks" + others + ")",
                  kExitUsage);
  }
  open_disks(config);
  create_filesystems(config);
  create_networks(config);
  if (config.rng) add_virtio_device("rng", std::make_shared<devices::VirtioRng>());
  if (console) create_console(config);
  if (config.vsock) {
    try {
      add_virtio_device("vsock", std::make_shared<devices::VirtioVsock>(
                                     config.vsock->cid, devices::vsock_listen(config.vsock->socket),
                                     config.vsock->socket));
    } catch (const std::system_error& e) {
      throw VmError(std::string("--vsock: cannot listen on ") + e.what(), kExitVmmError);
    }
  }
}

std::shared_ptr<devices::HostOutput> Vm::open_output(const SerialConfig& mode, const char* what) {
  try {
    switch (mode.mode) {
      case SerialMode::kNull:
        return nullptr;
      case SerialMode::kStdio:
        if (!stdout_) {
          stdout_ = devices::HostOutput::open_stdout();
          outputs_.push_back(stdout_);
        }
        return stdout_;
      case SerialMode::kFile: {
        auto out = devices::HostOutput::open_path(mode.path);
        outputs_.push_back(out);
        return out;
      }
    }
  } catch (const std::system_error& e) {
    throw VmError(std::string("cannot open ") + what + " output " +
                      (mode.mode == SerialMode::kFile ? "file " : "") + e.what(),
                  kExitVmmError);
  }
  return nullptr;
}

void Vm::create_console(const VmConfig& config) {
  std::optional<devices::ConsolePortConfig> hvc0;
  const bool on_stdio = config.console && config.console->mode == SerialMode::kStdio;
  if (config.console) {
    hvc0.emplace();
    hvc0->output = open_output(*config.console, "console");
    hvc0->host_input = on_stdio;
  }
  std::vector<devices::ConsolePortConfig> named;
  for (const PortConfig& p : config.ports) {
    devices::ConsolePortConfig port;
    port.name = p.name;
    if (!p.path.empty()) {
      port.output = open_output(SerialConfig{SerialMode::kFile, p.path}, "port");
    } else {
      try {
        port.listen_fd = devices::VirtioConsole::listen_unix(p.socket);
      } catch (const std::system_error& e) {
        throw VmError("--port " + p.name + ": cannot listen on " + e.what(), kExitVmmError);
      }
      port.socket_path = p.socket;
    }
    named.push_back(std::move(port));
  }
  if (config.host_root) {
    // The command's stdout and stderr (the init relays them to these ports).
    try {
      devices::ConsolePortConfig out;
      out.name = boot::kHostRootStdoutPort;
      out.output = open_output(SerialConfig{SerialMode::kStdio, ""}, "--exec stdout");
      named.push_back(std::move(out));
      devices::ConsolePortConfig err;
      err.name = boot::kHostRootStderrPort;
      err.output = devices::HostOutput::open_stderr();
      outputs_.push_back(err.output);
      named.push_back(std::move(err));
    } catch (const std::system_error& e) {
      throw VmError(std::string("--exec: cannot set up stderr: ") + e.what(), kExitVmmError);
    }
  }
  if (config.exit_port) {
    devices::ConsolePortConfig port;
    port.name = kExitPortName;
    port.sink = [this](std::span<const uint8_t> bytes) {
      std::lock_guard lock(exit_text_mutex_);
      exit_text_.append(bytes.begin(), bytes.end());
      if (exit_text_.size() > kExitTextMax) exit_text_.erase(0, exit_text_.size() - kExitTextMax);
    };
    named.push_back(std::move(port));
  }
  std::shared_ptr<devices::VirtioConsole> console;
  try {
    console = std::make_shared<devices::VirtioConsole>(std::move(hvc0), std::move(named));
  } catch (const std::invalid_argument& e) {
    throw VmError(std::string("--port: ") + e.what(), kExitUsage);
  }
  if (on_stdio) stdin_sink_ = console.get();
  add_virtio_device("console", std::move(console));
}

void Vm::create_filesystems(const VmConfig& config) {
  std::vector<FsConfig> all = config.filesystems;
  // --host-root: the host's / for the init to mount read-only.
  if (config.host_root) all.push_back({std::string(boot::kHostRootTag), "/", "", true});
  for (const FsConfig& fs : all) {
    const std::string name = "virtio-fs tag=" + fs.tag;
    std::optional<devices::ChildProcess> daemon;
    UniqueFd socket;
    if (!fs.path.empty()) {
      auto started = devices::Virtiofsd::start(fs.tag, fs.path, fs.read_only);
      if (!started) throw VmError(started.error(), kExitVmmError);
      daemon.emplace(std::move(started->daemon));
      socket = std::move(started->socket);
      spdlog::debug("{}: virtiofsd pid {} for {}{}", name, daemon->pid(), fs.path,
                    fs.read_only ? " (read-only)" : "");
    } else {
      auto connected = connect_unix(fs.socket, "the vhost-user socket");
      if (!connected) {
        throw VmError("--fs tag=" + fs.tag + ": " + connected.error(), kExitVmmError);
      }
      socket = std::move(connected).value();
    }
    devices::VirtioFs::Options options{fs.tag, name, daemon.has_value()};
    std::shared_ptr<devices::VirtioFs> device;
    try {
      device = std::make_shared<devices::VirtioFs>(std::move(options), std::move(socket));
    } catch (const std::exception& e) {
      std::string why = e.what();
      // A daemon that failed at start said why on stderr; it has exited, or is about to.
      if (daemon) {
        if (auto how = daemon->reap_within(1000)) why += " (virtiofsd " + *how + ": see its messages)";
      }
      throw VmError("--fs tag=" + fs.tag + ": " + why, kExitVmmError);
    }
    add_virtio_device(name, device);
    if (daemon) {
      add_daemon(name + ": virtiofsd", "the share is gone, its device needs a reset",
                 std::move(*daemon), [device] { device->backend_gone(); });
    }
  }
}

void Vm::create_networks(const VmConfig& config) {
  for (size_t i = 0; i < config.networks.size(); ++i) {
    const NetConfig& net = config.networks[i];
    std::unique_ptr<devices::NetBackend> backend;
    std::optional<devices::ChildProcess> passt;
    std::string name;
    if (!net.tap.empty()) {
      name = "virtio-net tap=" + net.tap;
      auto tap = devices::TapBackend::open(net.tap);
      if (!tap) throw VmError(tap.error(), kExitVmmError);
      backend = std::move(tap).value();
    } else if (net.passt) {
      name = "virtio-net passt";
      auto started = devices::Passt::start(net.forward);
      if (!started) throw VmError(started.error(), kExitVmmError);
      passt.emplace(std::move(started->process));
      backend = std::make_unique<devices::StreamBackend>(std::move(started->socket), "passt");
    } else {
      name = "virtio-net socket=" + net.socket;
      auto connected = connect_unix(net.socket, "the network peer at");
      if (!connected) throw VmError("--net: " + connected.error(), kExitVmmError);
      backend = std::make_unique<devices::StreamBackend>(std::move(connected).value(), "socket");
    }
    devices::VirtioNet::Options options;
    options.name = name;
    options.mac = net.mac.value_or(devices::VirtioNet::default_mac(net.spec, static_cast<unsigned>(i)));
    auto device = std::make_shared<devices::VirtioNet>(std::move(options), std::move(backend));
    spdlog::debug("{}: MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", name, device->mac()[0],
                  device->mac()[1], device->mac()[2], device->mac()[3], device->mac()[4],
                  device->mac()[5]);
    add_virtio_device(name, device);
    // The device sees passt's socket close and takes the link down; this says why.
    if (passt) add_daemon(name + ": passt", "the guest's link is down", std::move(*passt), {});
  }
}

void Vm::add_daemon(std::string name, std::string consequence, devices::ChildProcess process,
                    std::function<void()> gone) {
  daemons_.push_back({std::move(name), std::move(consequence), std::move(process), std::move(gone)});
}

// A daemon of ours that ends while the VM runs: one line, and its device is told.
void Vm::watch_daemons(devices::EventLoop& loop) {
  for (Daemon& daemon : daemons_) {
    const int fd = daemon.process.exit_fd();
    loop.add(fd, devices::EventLoop::kIn, [&loop, &daemon, fd](uint32_t) {
      loop.remove(fd);
      const std::string how = daemon.process.reap().value_or("ended");
      if (daemon.gone) daemon.gone();
      spdlog::warn("{} (pid {}) {}; {} (the VM goes on)", daemon.name, daemon.process.pid(), how,
                   daemon.consequence);
    });
  }
}

void Vm::add_virtio_device(std::string name, std::shared_ptr<virtio::VirtioDevice> device) {
  const auto window = boot::virtio_mmio_slot(static_cast<uint32_t>(virtio_.size()));
  if (!window) throw VmError("no virtio-mmio window left for " + name, kExitUsage);
  spdlog::debug("{}: virtio device type {}, virtio-mmio at {:#x} IRQ {}", name,
                device->device_type(), window->base, window->irq);
  virtio_.push_back(VirtioSlot{std::move(name), std::move(device), *window, nullptr, nullptr});
}

void Vm::open_disks(const VmConfig& config) {
  std::set<std::string> seen;
  for (size_t i = 0; i < config.disks.size(); ++i) {
    const devices::BlockConfig& d = config.disks[i];
    if (char* real = ::realpath(d.path.c_str(), nullptr)) {
      const bool fresh = seen.insert(real).second;
      std::free(real);
      if (!fresh) throw VmError("disk image " + d.path + " is given more than once", kExitUsage);
    }
    std::shared_ptr<devices::VirtioBlock> disk;
    try {
      disk = std::make_shared<devices::VirtioBlock>(d);
    } catch (const devices::DiskImageError& e) {
      throw VmError(e.what(), kExitVmmError);
    } catch (const std::invalid_argument& e) {
      throw VmError("disk " + d.path + ": " + e.what(), kExitUsage);
    }
    spdlog::debug("disk {}: {} sectors, engine {}", d.path, disk->config().capacity,
                  d.engine == devices::BlockConfig::Engine::kSync ? "sync" : "io_uring");
    add_virtio_device("disk " + d.path, std::move(disk));
  }
}

// The "start:" debug lines before each KVM step say how far a start got when the host
// freezes in it (the nested KVM host of this project's machines, README "Known issues").
void Vm::open_kvm(const VmConfig& config) {
  spdlog::debug("start: {:.1f} ms: KVM_CREATE_VM, KVM_SET_TSS_ADDR, KVM_SET_IDENTITY_MAP_ADDR",
                ms_since_start());
  kvm_.emplace(Kvm::open());
  const int max_vcpus = kvm_->max_vcpus();
  if (config.cpus > static_cast<uint32_t>(max_vcpus)) {
    throw VmError("--cpus " + std::to_string(config.cpus) + " exceeds this host's limit of " +
                      std::to_string(max_vcpus) + " vCPUs",
                  kExitVmmError);
  }
  vm_.emplace(kvm_->create_vm());
  vm_->set_tss_addr(kTssAddr);
  vm_->set_identity_map_addr(kIdentityMapAddr);
}

void Vm::create_interrupt_controllers() {
  spdlog::debug("start: {:.1f} ms: KVM_CREATE_IRQCHIP, KVM_CREATE_PIT2", ms_since_start());
  // After the RAM is registered: registering memory once the in-kernel irqchip exists costs
  // KVM about 20 times more (6.9 ms instead of 0.3 ms measured here, bench/RESULTS.md).
  vm_->create_irqchip();
  vm_->create_pit2();
}

void Vm::setup_memory_and_boot(const VmConfig& config) {
  spdlog::debug("start: {:.1f} ms: guest RAM ({} MiB) and memory slots, boot images",
                ms_since_start(), config.memory >> 20);
  const uint64_t top = boot::ram_regions(config.memory).back().guest_addr +
                       boot::ram_regions(config.memory).back().size;
  const uint32_t bits = phys_address_bits(kvm_->supported_cpuid());
  if (bits < 64 && top > (uint64_t{1} << bits)) {
    throw VmError("--memory " + std::to_string(config.memory >> 20) +
                      "M is more than this host's " + std::to_string(bits) +
                      "-bit guest physical address space can hold",
                  kExitVmmError);
  }
  struct sysinfo host_info {};
  if (::sysinfo(&host_info) == 0) {
    const uint64_t host = (uint64_t{host_info.totalram} + host_info.totalswap) * host_info.mem_unit;
    if (config.memory > host) {
      throw VmError("--memory " + std::to_string(config.memory >> 20) +
                        "M is more than the host has (" + std::to_string(host >> 20) +
                        " MiB of RAM and swap)",
                    kExitVmmError);
    }
  }
  try {
    // vhost-user backends map guest RAM themselves: a memfd then, private memory otherwise.
    const bool shared = std::any_of(virtio_.begin(), virtio_.end(), [](const VirtioSlot& v) {
      return v.device->needs_shared_memory();
    });
    ram_ = std::make_unique<GuestRam>(
        config.memory, shared ? GuestRam::Backing::kShared : GuestRam::Backing::kPrivate);
  } catch (const KvmError& e) {
    throw VmError(e.what(), kExitVmmError);
  }
  ram_->register_with(*vm_);

  std::string cmdline = config.cmdline;
  std::vector<boot::VirtioMmioDeviceInfo> slots;
  for (const VirtioSlot& v : virtio_) slots.push_back(v.window);
  if (config.virtio_cmdline && !slots.empty()) {
    if (!cmdline.empty()) cmdline += ' ';
    cmdline += boot::virtio_mmio_cmdline(slots);
  }

  boot::LinuxBootConfig boot_config;
  boot_config.mem_size = config.memory;
  boot_config.kernel = kernel_;
  boot_config.elf_entry = config.elf_entry;
  boot_config.initrd = initrd_image_;
  boot_config.cmdline = cmdline;
  boot_config.num_cpus = config.cpus;
  boot_config.acpi = config.acpi;
  boot_config.acpi_config.num_cpus = config.cpus;
  boot_config.acpi_config.devices = slots;
  boot_config.acpi_config.pvpanic = config.pvpanic;
  auto info = boot::setup_linux_boot(ram_->low(), boot_config);
  if (!info) throw VmError(info.error(), kExitVmmError);
  boot_info_ = *info;
  spdlog::info("kernel: {}, entry {:#x}", boot::protocol_name(info->protocol), info->entry_point);
  spdlog::debug(
      "kernel: {}, entry {:#x}, zero page {:#x}, PVH start info {:#x}, initrd at {:#x}, RSDP at "
      "{:#x}, cmdline \"{}\"",
      boot::protocol_name(info->protocol), info->entry_point, info->zero_page_addr,
      info->start_info_addr, info->initrd_addr, info->rsdp_addr, cmdline);
  // The images are in guest RAM now.
  kernel_ = {};
  kernel_fd_.reset();
  kernel_image_ = {};
  initrd_image_ = {};
}

void Vm::setup_legacy_devices(const VmConfig& config, std::chrono::steady_clock::time_point start) {
  devices::Serial::Sink sink;
  if (auto out = open_output(config.serial, "serial")) {
    sink = [out](uint8_t byte) { out->write(std::span(&byte, 1)); };
  }
  serial_irq_ = std::make_unique<KvmIrqLine>(*vm_, boot::kCom1Irq);
  serial_ = std::make_shared<devices::Serial>(*serial_irq_, std::move(sink));
  // stdin goes to hvc0 when the virtio console is on stdio, else to the UART on stdio.
  if (stdin_sink_ == nullptr && config.serial.mode == SerialMode::kStdio) {
    stdin_sink_ = serial_.get();
  }
  pio_bus_.insert(boot::kCom1Port, boot::kCom1PortCount, serial_);

  auto i8042 = std::make_shared<devices::I8042>(
      [this] { stop_.request(StopReason::kReboot, "the guest rebooted (i8042 reset)"); });
  pio_bus_.insert(devices::I8042::kBasePort, devices::I8042::kPortRange, i8042);

  pio_bus_.insert(devices::PciHostBridge::kBasePort, devices::PciHostBridge::kPortRange,
                  std::make_shared<devices::PciHostBridge>());

  auto progress =
      std::make_shared<devices::DebugPort>(start, [](const devices::DebugPort::Entry& e) {
        spdlog::info("boot progress {:#04x} at {:.3f} ms", e.value,
                     static_cast<double>(e.since_start.count()) / 1e6);
      });
  pio_bus_.insert(devices::DebugPort::kPort, 1, progress);

  auto acpi_pm = std::make_shared<AcpiPowerControl>(
      [this] { stop_.request(StopReason::kPowerOff, "the guest powered off (ACPI S5)"); });
  pio_bus_.insert(AcpiPowerControl::kBase, AcpiPowerControl::kLength, acpi_pm);

  if (config.pvpanic) {
    pio_bus_.insert(
        boot::kPvpanicPort, 1,
        std::make_shared<devices::PvPanic>(
            [this] { stop_.request(StopReason::kPanic, "the guest's kernel panicked (pvpanic)"); },
            [] {
              spdlog::info(
                  "the guest panicked; its crash kernel takes over "
                  "(pvpanic CRASH_LOADED)");
            }));
  }

  if (const DebugExitConfig& dx = config.debug_exit; dx.enabled) {
    const bool qemu = dx.formula == devices::DebugExit::Formula::kQemu;
    auto exit_port = std::make_shared<devices::DebugExit>(
        dx.formula, [this, port = dx.iobase, qemu](uint8_t status, uint32_t value) {
          stop_.request(StopReason::kGuestExit,
                        fmt::format("the guest reported status {} (wrote {:#x} to {} exit port "
                                    "{:#x})",
                                    status, value, qemu ? "the QEMU-formula" : "the", port),
                        status);
        });
    if (!pio_bus_.insert(dx.iobase, dx.iosize, exit_port)) {
      throw VmError(fmt::format("--debug-exit: ports {:#x}-{:#x} overlap another device of the "
                                "machine (COM1 0x3f8, i8042 0x60/0x64, 0x80, ACPI 0x3c0, PCI "
                                "0xcf8)",
                                dx.iobase, dx.iobase + dx.iosize - 1),
                    kExitUsage);
    }
  }
}

void Vm::attach_virtio_devices() {
  for (VirtioSlot& v : virtio_) {
    v.irq = std::make_unique<KvmIrqLine>(*vm_, v.window.irq);
    v.transport = std::make_shared<mmio::VirtioMmioTransport>(v.device, ram_->memory(), *v.irq);
    v.transport->set_error_handler(
        [name = v.name](const std::string& message) { spdlog::warn("{}: {}", name, message); });
    if (!mmio_bus_.insert(v.window.base, v.window.size, v.transport)) {
      throw VmError("virtio-mmio window overlap at " + std::to_string(v.window.base),
                    kExitVmmError);
    }
    // virtio 1.2 §4.2.3.3: the driver writes the queue index to QueueNotify. With one
    // ioeventfd per queue (datamatch on the index) the notification reaches the device's
    // worker without an exit to user space.
    const uint64_t notify = v.window.base + mmio::VirtioMmioTransport::kQueueNotifyOffset;
    for (uint16_t q = 0; q < v.transport->num_queues(); ++q) {
      vm_->register_ioeventfd(v.transport->queue_event_fd(q), notify, 4, q, false);
    }
  }
}

void Vm::setup_vcpus(const VmConfig& config) {
  spdlog::debug("start: {:.1f} ms: {} vCPU(s): KVM_CREATE_VCPU, CPUID, MSRs, registers",
                ms_since_start(), config.cpus);
  install_vcpu_kick_handler();
  const std::vector<kvm_cpuid_entry2> supported = kvm_->supported_cpuid();
  CpuidHostCaps caps;
  caps.tsc_deadline_timer = kvm_->check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  for (uint32_t i = 0; i < config.cpus; ++i) {
    auto vcpu = std::make_unique<Vcpu>(*vm_, i, pio_bus_, mmio_bus_, stop_);
    std::vector<kvm_cpuid_entry2> cpuid = supported;
    normalize_cpuid(cpuid, i, config.cpus, caps);
    vcpu->configure(cpuid);
    if (i == 0) vcpu->set_boot_state(boot_info_);
    vcpus_.push_back(std::move(vcpu));
  }
}

int Vm::run(int signal_fd) {
  for (auto& vcpu : vcpus_) {
    Vcpu* v = vcpu.get();
    threads_.emplace_back([v, this] {
      const std::string name = "vcpu" + std::to_string(v->index());
      ::pthread_setname_np(::pthread_self(), name.c_str());
      if (confine_vcpu(*v)) v->run(start_);
    });
  }
  wait_for_stop(signal_fd);
  stop_vcpus();
  // A guest stopped from outside may have hung: where its virtqueues stood tells a lost
  // interrupt from a stuck backend from a guest that waits on nothing of ours.
  if (stop_.reason() == StopReason::kTimeout || stop_.reason() == StopReason::kSignal) {
    log_virtqueues();
  }
  detach_virtio_devices();
  // The guest's last lines reach the host before we say why it stopped; a reader that takes
  // nothing for half a second is not waited for.
  for (auto& out : outputs_) out->drain(std::chrono::milliseconds(500));
  outcome_ = outcome_of(stop_.reason(), stop_.value(), stop_.message(), reported_status());
  if (outcome_.reason == "poweroff" || outcome_.reason == "reboot" || outcome_.reason == "signal") {
    spdlog::info("{}", outcome_.message);
  } else if (outcome_.reason == "guest-exit" && exec_mode_) {
    // --exec: the status is the command's, and stderr is the command's too.
    spdlog::info("{}", outcome_.message);
  } else if (outcome_.reason == "guest-exit" && outcome_.status == 0) {
    // A guest test's result is always one line, a passing one without "warning".
    if (spdlog::should_log(spdlog::level::warn)) {
      std::fprintf(stderr, "minivmm: %s\n", outcome_.message.c_str());
    }
  } else if (outcome_.reason == "guest-exit") {
    spdlog::warn("{}", outcome_.message);  // a failing guest test says so on stderr
  } else {
    spdlog::error("{}", outcome_.message);
  }
  return outcome_.status;
}

// The main thread's loop: the stop request, the signalfd (SIGINT, SIGTERM, SIGWINCH), stdin
// for the console that owns it, and the console outputs that wait for a slow reader.
void Vm::wait_for_stop(int signal_fd) {
  using devices::EventLoop;
  EventLoop loop;
  loop.add(stop_.event_fd(), EventLoop::kIn, [&loop](uint32_t) { loop.stop(); });
  if (signal_fd >= 0) {
    loop.add(signal_fd, EventLoop::kIn, [this, signal_fd](uint32_t) { on_signal(signal_fd); });
  }
  for (auto& out : outputs_) watch_output(loop, *out);
  watch_daemons(loop);
  update_console_size();
  UniqueFd timer;
  if (timeout_s_) {
    timer = UniqueFd(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
    itimerspec at{};
    // --timeout counts from the process start, like coreutils timeout around it would.
    const auto since_start = std::chrono::steady_clock::now() - start_;
    const auto left = std::chrono::seconds(*timeout_s_) - since_start;
    const auto ns =
        std::max<int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
    at.it_value.tv_sec = static_cast<time_t>(ns / 1'000'000'000);
    at.it_value.tv_nsec = static_cast<long>(ns % 1'000'000'000);
    if (!timer.valid() || ::timerfd_settime(timer.get(), 0, &at, nullptr) != 0) {
      throw VmError(std::string("--timeout: no timer: ") + std::strerror(errno), kExitVmmError);
    }
    loop.add(timer.get(), EventLoop::kIn, [this](uint32_t) {
      stop_.request(StopReason::kTimeout, "timed out: the guest still ran after --timeout " +
                                              std::to_string(*timeout_s_) + " s");
    });
  }

  confine_main_and_start_guest();

  // stdin: read while the console takes input; paused (interest 0) while its buffer is full
  // and retried every 10 ms. epoll refuses regular files and /dev/null: those are read on
  // the same 10 ms tick instead, until EOF.
  constexpr int kRetryMs = 10;
  devices::ConsoleInput* sink = stdin_sink_;
  bool stdin_open = sink != nullptr;
  bool polled = false;
  bool paused = false;
  auto read_stdin = [&] {
    const size_t room = sink->input_space();
    if (room == 0) {
      if (polled && !paused) loop.modify(STDIN_FILENO, 0);
      paused = true;
      return;
    }
    uint8_t buf[4096];
    const ssize_t got = ::read(STDIN_FILENO, buf, std::min(sizeof(buf), room));
    if (got > 0) {
      sink->enqueue_input({buf, static_cast<size_t>(got)});
    } else if (got == 0 || (errno != EINTR && errno != EAGAIN)) {
      stdin_open = false;  // EOF or an unreadable stdin: the guest just gets no more input
      if (polled) loop.remove(STDIN_FILENO);
    }
  };
  if (stdin_open) {
    try {
      loop.add(STDIN_FILENO, EventLoop::kIn, [&](uint32_t events) {
        if (paused && (events & (EventLoop::kHangup | EventLoop::kError))) {
          // Closed while paused: read the rest on the tick instead of waking for the hangup.
          loop.remove(STDIN_FILENO);
          polled = false;
          return;
        }
        read_stdin();
      });
      polled = true;
    } catch (const std::system_error&) {
      polled = false;
    }
  }
  while (!stop_.stopping() && !loop.stop_requested()) {
    const bool ticking = stdin_open && (paused || !polled);
    loop.run_once(ticking ? kRetryMs : -1);
    if (!stdin_open || loop.stop_requested()) continue;
    if (!polled) {
      read_stdin();
    } else if (paused && sink->input_space() > 0) {
      paused = false;
      loop.modify(STDIN_FILENO, EventLoop::kIn);
    }
  }
}

void Vm::watch_output(devices::EventLoop& loop, devices::HostOutput& out) {
  using devices::EventLoop;
  if (!out.pollable()) return;  // a regular file: written straight through
  try {
    loop.add(out.fd(), 0, [&loop, &out](uint32_t events) {
      if (events & (EventLoop::kHangup | EventLoop::kError)) {
        out.close_sink();  // the reader is gone
        loop.remove(out.fd());
        return;
      }
      if (out.flush()) loop.modify(out.fd(), 0);
    });
  } catch (const std::system_error&) {
    return;  // epoll cannot wait on it (/dev/null): its writes never wait either
  }
  loop.add(out.pending_event().fd(), EventLoop::kIn, [&loop, &out](uint32_t) {
    out.pending_event().consume();
    if (!out.flush()) loop.modify(out.fd(), EventLoop::kOut);
  });
}

void Vm::on_signal(int signal_fd) {
  signalfd_siginfo si{};
  while (::read(signal_fd, &si, sizeof(si)) == sizeof(si)) {
    const int sig = static_cast<int>(si.ssi_signo);
    if (sig == SIGWINCH) {
      update_console_size();
      continue;
    }
    stop_.request(StopReason::kSignal,
                  std::string("stopped by ") + (sig == SIGINT ? "SIGINT" : "SIGTERM"), sig);
  }
}

// The console on a terminal gets the terminal's size (and every change of it, SIGWINCH).
void Vm::update_console_size() {
  if (stdin_sink_ == nullptr || !::isatty(STDOUT_FILENO)) return;
  winsize ws{};
  if (::ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 && ws.ws_row > 0) {
    stdin_sink_->resize(ws.ws_col, ws.ws_row);
  }
}

bool Vm::confine_vcpu(const Vcpu& vcpu) {
  try {
    confine_thread("vcpu", vcpu.fd());
  } catch (const std::exception& e) {
    stop_.request(StopReason::kError,
                  "vCPU " + std::to_string(vcpu.index()) + ": cannot confine: " + e.what());
  }
  std::unique_lock lock(gate_mutex_);
  ++confined_vcpus_;
  gate_cv_.notify_all();
  gate_cv_.wait(lock, [this] { return gate_open_; });
  return !stop_.stopping();
}

// Every device worker entered its class when it was spawned; the vCPUs wait at the gate
// with their filters; the main thread is confined last, then the guest may run.
void Vm::confine_main_and_start_guest() {
  spdlog::debug("start: {:.1f} ms: confining the threads", ms_since_start());
  {
    std::unique_lock lock(gate_mutex_);
    gate_cv_.wait(lock, [this] { return confined_vcpus_ == threads_.size(); });
  }
  try {
    jail_after_setup(jail_limits_);
    confine_thread("main");
  } catch (const std::exception& e) {
    stop_.request(StopReason::kError, std::string("cannot confine the main thread: ") + e.what());
  }
  open_gate();
}

void Vm::open_gate() {
  {
    std::lock_guard lock(gate_mutex_);
    gate_open_ = true;
  }
  gate_cv_.notify_all();
}

void Vm::stop_vcpus() {
  open_gate();  // vCPUs still at the gate see the stop and end
  for (size_t i = 0; i < threads_.size(); ++i) {
    if (threads_[i].joinable()) vcpus_[i]->kick(threads_[i].native_handle());
  }
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

// One info line per active virtio device: InterruptStatus and, per ready queue, the ring
// indices as guest memory holds them (avail idx: what the driver posted; used idx: what the
// device completed; used_event: where the driver asked to be interrupted, with EVENT_IDX).
// Only plain reads of guest RAM: the vCPUs are stopped, the workers may still run.
void Vm::log_virtqueues() const {
  if (!spdlog::should_log(spdlog::level::info)) return;
  auto text = [](std::optional<uint16_t> index) {
    return index ? std::to_string(*index) : std::string("?");
  };
  for (const VirtioSlot& v : virtio_) {
    if (!v.transport || !(v.transport->status() & virtio::kStatusDriverOk)) continue;
    std::string line = fmt::format("{} (IRQ {}): InterruptStatus {:#x}", v.name, v.window.irq,
                                   v.transport->interrupt_status());
    for (size_t i = 0; i < v.transport->num_queues(); ++i) {
      const virtio::Queue& q = v.transport->queue(i);
      if (!q.ready()) continue;
      const virtio::Queue::RingIndices r = q.ring_indices(ram_->memory());
      line += fmt::format("; queue {}: avail {} used {}", i, text(r.avail), text(r.used));
      if (q.event_idx()) line += " used_event " + text(r.used_event);
    }
    spdlog::info("at the stop: {}", line);
  }
}

void Vm::detach_virtio_devices() {
  if (virtio_detached_) return;
  virtio_detached_ = true;
  for (VirtioSlot& v : virtio_) {
    // Stops the device's worker once its in-flight requests completed.
    if (v.transport) v.transport->reset();
    // What the guest wrote is durable before we report that the VM is done.
    v.device->sync_to_host();
  }
  // The devices are stopped: their daemons may go, before their connections close.
  for (Daemon& daemon : daemons_) daemon.process.stop();
}

// The guest's status through minivmm.exit, if it wrote one; text that is not a status is
// ignored with a warning.
std::optional<int> Vm::reported_status() const {
  std::string text;
  {
    std::lock_guard lock(exit_text_mutex_);
    text = exit_text_;
  }
  if (text.empty()) return std::nullopt;
  const std::optional<int> status = parse_reported_status(text);
  if (!status) {
    spdlog::warn("minivmm.exit: the guest wrote '{}', not a status 0-255; ignored",
                 text.substr(0, 32));
  }
  return status;
}

}  // namespace minivmm::vmm
