// Vm: one virtual machine, built explicitly from a VmConfig. It owns, in construction order:
// the KVM handles, guest RAM, the port I/O and MMIO buses, the legacy devices (UART, i8042,
// PCI host bridge, boot-progress port, ACPI power control), the console outputs on the host
// (devices::HostOutput: non-blocking, flushed by the main loop), the virtio devices, each in
// its virtio-mmio window with its transport, irqfd and per-queue ioeventfds, and the vCPUs
// with their threads.
//
// Every virtio device, whatever its type, takes one path: add_virtio_device() gives it the
// next window and IRQ (disks first, so they stay /dev/vda, /dev/vdb, ...); those windows are
// what the ACPI DSDT and `virtio_mmio.device=` describe; attach_virtio_devices() makes each
// its irqfd, transport, bus range and queue ioeventfds; detach_virtio_devices() resets them
// (their workers finish in-flight work and stop) and has them sync to the host.
//
// Lifecycle: the constructor does all setup and throws VmError (one line, exit status) on any
// bad input or host failure; run() starts one thread per vCPU, waits on the main thread for a
// stop (guest power-off / reboot / crash, a host failure, SIGINT / SIGTERM via the signalfd),
// relays stdin to the console that owns it and flushes console output meanwhile, then kicks and
// joins every vCPU thread, resets the virtio devices (their I/O threads finish in-flight requests
// and stop), flushes writable disks, and returns the exit status.
//
// Threads: constructed, run() and destroyed on the main thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "boot/image_source.h"
#include "devices/console_input.h"
#include "devices/debug_port.h"
#include "devices/event_loop.h"
#include "devices/host_output.h"
#include "devices/i8042.h"
#include "devices/pci_host.h"
#include "devices/pvpanic.h"
#include "devices/serial.h"
#include "devices/virtiofsd.h"
#include "devices/virtio_blk.h"
#include "devices/virtio_console.h"
#include "devices/virtio_fs.h"
#include "devices/virtio_net.h"
#include "devices/virtio_rng.h"
#include "mmio/bus.h"
#include "mmio/virtio_mmio.h"
#include "virtio/virtio_device.h"
#include "vmm/acpi_pm.h"
#include "vmm/config.h"
#include "vmm/exit_status.h"
#include "vmm/fd.h"
#include "vmm/irq.h"
#include "vmm/jail.h"
#include "vmm/kvm.h"
#include "vmm/memory.h"
#include "vmm/outcome.h"
#include "vmm/stop.h"
#include "vmm/vcpu.h"

namespace minivmm::vmm {

class VmError : public std::runtime_error {
 public:
  VmError(const std::string& message, int status) : std::runtime_error(message), status_(status) {}
  int status() const { return status_; }

 private:
  int status_;
};

class Vm {
 public:
  // `start` is when the process started (for the boot-progress port).
  Vm(const VmConfig& config, std::chrono::steady_clock::time_point start);
  ~Vm();
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  // Runs the guest until it stops; returns the process exit status. `signal_fd` is a signalfd
  // for SIGINT / SIGTERM (blocked in every thread), or -1.
  int run(int signal_fd);

  // How the run ended (vmm/outcome.h), for --status-file. After run().
  const Outcome& outcome() const { return outcome_; }

 private:
  // A backend process of minivmm's own (virtiofsd for --fs path=, passt for --net passt),
  // destroyed after the devices (a device's connection closing is what ends its daemon).
  // One that ends while the VM runs gets one warning, and `gone` tells its device.
  struct Daemon {
    std::string name;         // "virtio-fs tag=share: virtiofsd"
    std::string consequence;  // "the share is gone, its device needs a reset"
    devices::ChildProcess process;
    std::function<void()> gone;
  };

  // One virtio device in its virtio-mmio window.
  struct VirtioSlot {
    std::string name;  // for log lines: "disk rootfs.img"
    std::shared_ptr<virtio::VirtioDevice> device;
    boot::VirtioMmioDeviceInfo window;
    std::unique_ptr<KvmIrqLine> irq;
    std::shared_ptr<mmio::VirtioMmioTransport> transport;
  };

  void read_images(const VmConfig& config);
  void pack_host_root(const VmConfig& config);
  void create_virtio_devices(const VmConfig& config);
  void open_disks(const VmConfig& config);
  void create_console(const VmConfig& config);
  void create_filesystems(const VmConfig& config);
  void create_networks(const VmConfig& config);
  void watch_daemons(devices::EventLoop& loop);
  void add_daemon(std::string name, std::string consequence, devices::ChildProcess process,
                  std::function<void()> gone);
  // Where a console's output goes (null for SerialMode::kNull); `what` names it in errors.
  std::shared_ptr<devices::HostOutput> open_output(const SerialConfig& mode, const char* what);
  void add_virtio_device(std::string name, std::shared_ptr<virtio::VirtioDevice> device);
  void open_kvm(const VmConfig& config);
  void setup_memory_and_boot(const VmConfig& config);
  void create_interrupt_controllers();
  void setup_legacy_devices(const VmConfig& config, std::chrono::steady_clock::time_point start);
  void attach_virtio_devices();
  void setup_vcpus(const VmConfig& config);
  void wait_for_stop(int signal_fd);
  // The vCPU threads' start: the thread's seccomp filter, then the gate, which the main
  // thread opens once every vCPU and itself are confined. False when the VM stops first.
  bool confine_vcpu(const Vcpu& vcpu);
  void confine_main_and_start_guest();
  void open_gate();
  void watch_output(devices::EventLoop& loop, devices::HostOutput& out);
  void on_signal(int signal_fd);
  void update_console_size();
  void stop_vcpus();
  void log_virtqueues() const;
  void detach_virtio_devices();
  std::optional<int> reported_status() const;

  std::chrono::steady_clock::time_point start_;  // process start, for start-up logs
  double ms_since_start() const {
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start_)
        .count();
  }
  std::optional<uint32_t> timeout_s_;
  bool exec_mode_;  // --host-root --exec: stderr belongs to the command
  JailLimits jail_limits_;  // what the main thread sets before it is confined
  Outcome outcome_{kExitVmmError, "error", "the VM did not run"};
  // What the guest wrote to minivmm.exit (its last kExitTextMax bytes), from the console's
  // worker.
  static constexpr size_t kExitTextMax = 64;
  mutable std::mutex exit_text_mutex_;
  std::string exit_text_;
  StopControl stop_;
  std::optional<Kvm> kvm_;
  std::optional<VmFd> vm_;
  std::unique_ptr<GuestRam> ram_;
  std::vector<Daemon> daemons_;  // after ram_, before virtio_: see Daemon
  mmio::Bus pio_bus_;
  mmio::Bus mmio_bus_;
  std::shared_ptr<devices::HostOutput> stdout_;                // made when a console uses it
  std::vector<std::shared_ptr<devices::HostOutput>> outputs_;  // every console output
  std::unique_ptr<KvmIrqLine> serial_irq_;
  std::shared_ptr<devices::Serial> serial_;
  // Who gets stdin and the terminal's size: hvc0 (--console stdio), else ttyS0 (--serial
  // stdio), else nobody. The device is owned by its VirtioSlot or serial_.
  devices::ConsoleInput* stdin_sink_ = nullptr;
  std::vector<VirtioSlot> virtio_;
  bool virtio_detached_ = false;
  std::vector<std::unique_ptr<Vcpu>> vcpus_;
  std::vector<std::thread> threads_;
  std::mutex gate_mutex_;
  std::condition_variable gate_cv_;
  size_t confined_vcpus_ = 0;  // vCPU threads that installed their filter (or failed to)
  bool gate_open_ = false;
  boot::LinuxBootInfo boot_info_;
  boot::ImageSource kernel_;  // over kernel_image_, or reads kernel_fd_ (a vmlinux)
  UniqueFd kernel_fd_;
  std::vector<uint8_t> kernel_image_;  // a bzImage
  std::vector<uint8_t> initrd_image_;
};

}  // namespace minivmm::vmm
