#include "vmm/vcpu.h"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>
#include <span>

#include "boot/layout.h"
#include "boot/page_tables.h"

namespace minivmm::vmm {
namespace {

// MSR numbers (SDM Vol. 4).
constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
constexpr uint64_t kMiscEnableFastString = 1;
constexpr uint64_t kMtrrEnable = 1U << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;

// LAPIC register offsets and LVT delivery modes (SDM Vol. 3A §10.5.1).
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicModeNmi = 4;
constexpr uint32_t kApicModeExtInt = 7;

// The PVM flavour of KVM runs guest kernel code through KVM's instruction emulator.
constexpr const char* kPvmModule = "/sys/module/kvm_pvm";

kvm_segment to_kvm_segment(const boot::SegmentDescriptor& s) {
  kvm_segment k{};
  k.base = s.base;
  k.limit = s.limit;
  k.selector = s.selector;
  k.type = s.type;
  k.present = s.present;
  k.dpl = s.dpl;
  k.db = s.db;
  k.s = s.s;
  k.l = s.l;
  k.g = s.g;
  return k;
}

void set_lvt_mode(kvm_lapic_state& lapic, size_t offset, uint32_t mode) {
  uint32_t reg;
  std::memcpy(&reg, lapic.regs + offset, sizeof(reg));
  reg = (reg & ~0x700U) | (mode << 8);
  std::memcpy(lapic.regs + offset, &reg, sizeof(reg));
}

void kick_handler(int) {}

bool is_pvm_host() {
  struct stat st {};
  return ::stat(kPvmModule, &st) == 0;
}

}  // namespace

int vcpu_kick_signal() {
  return SIGRTMIN;
}

void install_vcpu_kick_handler() {
  struct sigaction sa {};
  sa.sa_handler = kick_handler;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  ::sigaction(vcpu_kick_signal(), &sa, nullptr);
}

Vcpu::Vcpu(const VmFd& vm, uint32_t index, const mmio::Bus& pio_bus, const mmio::Bus& mmio_bus,
           StopControl& stop)
    : index_(index),
      fd_(vm.create_vcpu(index)),
      pio_bus_(pio_bus),
      mmio_bus_(mmio_bus),
      stop_(stop),
      pvm_host_(is_pvm_host()) {}

void Vcpu::configure(const std::vector<kvm_cpuid_entry2>& cpuid) {
  fd_.set_cpuid2(cpuid);

  const std::vector<kvm_msr_entry> msrs = {
      {kMsrSysenterCs, 0, 0},
      {kMsrSysenterEsp, 0, 0},
      {kMsrSysenterEip, 0, 0},
      {kMsrStar, 0, 0},
      {kMsrCstar, 0, 0},
      {kMsrKernelGsBase, 0, 0},
      {kMsrSyscallMask, 0, 0},
      {kMsrLstar, 0, 0},
      {kMsrTsc, 0, 0},
      {kMsrMiscEnable, 0, kMiscEnableFastString},
      {kMsrMtrrDefType, 0, kMtrrEnable | kMtrrTypeWriteBack},
  };
  // One at a time, so that a host that refuses one (PVM has no MTRRs, for instance) still
  // gets the others; Linux copes with any of them at its reset value.
  for (const kvm_msr_entry& msr : msrs) {
    if (fd_.set_msrs({msr}) != 1) {
      spdlog::debug("vCPU {}: host KVM refused MSR {:#x}", index_, msr.index);
    }
  }

  kvm_fpu fpu{};
  fpu.fcw = 0x37f;     // x87 default control word (FNINIT)
  fpu.mxcsr = 0x1f80;  // SSE default: all exceptions masked
  fd_.set_fpu(fpu);

  // Virtual wire mode: LINT0 takes the PIC's ExtINT, LINT1 the NMI (MP spec §3.6.1; what
  // BIOSes leave behind and Linux expects).
  kvm_lapic_state lapic = fd_.get_lapic();
  set_lvt_mode(lapic, kApicLvtLint0, kApicModeExtInt);
  set_lvt_mode(lapic, kApicLvtLint1, kApicModeNmi);
  fd_.set_lapic(lapic);
}

void Vcpu::set_boot_state(const boot::LinuxBootInfo& boot) {
  const boot::BootCpuState& lm = boot.cpu;
  kvm_sregs sregs = fd_.get_sregs();
  sregs.cr0 = lm.cr0;
  sregs.cr3 = lm.cr3;
  sregs.cr4 = lm.cr4;
  sregs.efer = lm.efer;
  sregs.gdt.base = lm.gdt.base;
  sregs.gdt.limit = lm.gdt.limit;
  sregs.idt.base = lm.idt.base;
  sregs.idt.limit = lm.idt.limit;
  sregs.cs = to_kvm_segment(lm.code);
  const kvm_segment data = to_kvm_segment(lm.data);
  sregs.ds = data;
  sregs.es = data;
  sregs.fs = data;
  sregs.gs = data;
  sregs.ss = data;
  sregs.tr = to_kvm_segment(lm.tss);
  fd_.set_sregs(sregs);

  kvm_regs regs{};
  regs.rflags = boot::kBootRflags;
  regs.rip = boot.entry_point;
  regs.rsp = boot.stack_pointer;
  regs.rbp = boot.stack_pointer;
  regs.rsi = boot.zero_page_addr;
  regs.rbx = boot.start_info_addr;  // PVH: the hvm_start_info
  fd_.set_regs(regs);
}

void Vcpu::run(std::chrono::steady_clock::time_point start) {
  try {
    if (index_ == 0 && !stop_.stopping()) {
      // The first instruction runs between these two instants: a start-up figure that the
      // boot-progress port can only bound from above.
      auto ms = [start] {
        return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count();
      };
      const double entered = ms();
      spdlog::debug("start: vCPU 0 first KVM_RUN at {:.3f} ms", entered);
      const RunResult r = fd_.run();
      spdlog::info(
          "vCPU 0 entered the guest at {:.3f} ms; first exit (KVM exit reason {}) at {:.3f} ms",
          entered, fd_.run_data()->exit_reason, ms());
      if (r != RunResult::kInterrupted && !handle_exit()) return;
    }
    while (!stop_.stopping()) {
      if (fd_.run() == RunResult::kInterrupted) continue;
      if (!handle_exit()) break;
    }
  } catch (const std::exception& e) {
    stop_.request(StopReason::kError, "vCPU " + std::to_string(index_) + ": " + e.what());
  }
}

void Vcpu::kick(pthread_t thread) {
  // immediate_exit closes the race with a thread about to enter KVM_RUN; the signal
  // interrupts one already inside it.
  __atomic_store_n(&fd_.run_data()->immediate_exit, uint8_t{1}, __ATOMIC_SEQ_CST);
  ::pthread_kill(thread, vcpu_kick_signal());
}

uint64_t Vcpu::rip() const {
  try {
    return fd_.get_regs().rip;
  } catch (const KvmError&) {
    return 0;
  }
}

bool Vcpu::handle_exit() {
  kvm_run* run = fd_.run_data();
  switch (run->exit_reason) {
    case KVM_EXIT_IO:
      handle_io();
      return true;
    case KVM_EXIT_MMIO:
      handle_mmio();
      return true;
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
    case KVM_EXIT_DEBUG:
      return true;
    case KVM_EXIT_HLT:
      // Only without an in-kernel LAPIC, or with interrupts off for good: nothing can wake it.
      stop_.request(StopReason::kPowerOff, "the guest halted");
      return false;
    case KVM_EXIT_SHUTDOWN: {
      char rip_text[32];
      std::snprintf(rip_text, sizeof(rip_text), "%#llx", static_cast<unsigned long long>(rip()));
      stop_.request(StopReason::kCrash,
                    "the guest crashed: triple fault (KVM_EXIT_SHUTDOWN) on vCPU " +
                        std::to_string(index_) + " at RIP " + rip_text);
      return false;
    }
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN:
          stop_.request(StopReason::kPowerOff, "the guest powered off");
          break;
        case KVM_SYSTEM_EVENT_RESET:
          stop_.request(StopReason::kReboot, "the guest rebooted");
          break;
        case KVM_SYSTEM_EVENT_CRASH:
          stop_.request(StopReason::kCrash, "the guest reported a crash");
          break;
        default:
          stop_.request(StopReason::kError,
                        "unexpected KVM system event " + std::to_string(run->system_event.type));
          break;
      }
      return false;
    case KVM_EXIT_INTERNAL_ERROR: {
      char text[160];
      const bool emulation = run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION;
      std::snprintf(text, sizeof(text),
                    "KVM could not run the guest: %s (suberror %u) at RIP %#llx",
                    emulation ? "instruction emulation failed" : "internal error",
                    run->internal.suberror, static_cast<unsigned long long>(rip()));
      std::string message = text;
      if (emulation &&
          (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES)) {
        message += ", instruction bytes";
        const unsigned n = std::min<unsigned>(run->emulation_failure.insn_size, 15);
        for (unsigned i = 0; i < n; ++i) {
          char byte[4];
          std::snprintf(byte, sizeof(byte), " %02x", run->emulation_failure.insn_bytes[i]);
          message += byte;
        }
      }
      if (pvm_host_) {
        message +=
            ". This host's KVM is PVM (/sys/module/kvm_pvm), which runs guest kernel code "
            "through KVM's instruction emulator and cannot run unmodified guest kernels; use "
            "a host with VT-x/AMD-V or nested KVM";
      }
      stop_.request(StopReason::kUnrunnable, message);
      return false;
    }
    case KVM_EXIT_FAIL_ENTRY: {
      char text[128];
      std::snprintf(text, sizeof(text),
                    "KVM could not enter the guest: hardware entry failure reason %#llx",
                    static_cast<unsigned long long>(run->fail_entry.hardware_entry_failure_reason));
      stop_.request(StopReason::kUnrunnable, text);
      return false;
    }
    case KVM_EXIT_UNKNOWN: {
      char text[128];
      std::snprintf(text, sizeof(text),
                    "KVM could not run the guest: unknown exit, hardware reason %#llx",
                    static_cast<unsigned long long>(run->hw.hardware_exit_reason));
      stop_.request(StopReason::kUnrunnable, text);
      return false;
    }
    default:
      stop_.request(StopReason::kError,
                    "unhandled KVM exit reason " + std::to_string(run->exit_reason));
      return false;
  }
}

void Vcpu::handle_io() {
  kvm_run* run = fd_.run_data();
  const auto& io = run->io;
  const uint64_t bytes = uint64_t{io.size} * io.count;
  // KVM lays the data out inside the run area; check anyway, it costs nothing.
  if (io.size == 0 || io.size > 8 || io.data_offset + bytes > fd_.run_size()) {
    return;
  }
  auto* data = reinterpret_cast<uint8_t*>(run) + io.data_offset;
  for (uint32_t i = 0; i < io.count; ++i) {
    std::span<uint8_t> chunk(data + size_t{i} * io.size, io.size);
    if (io.direction == KVM_EXIT_IO_OUT) {
      pio_bus_.write(io.port, chunk);
    } else {
      pio_bus_.read(io.port, chunk);
    }
  }
}

void Vcpu::handle_mmio() {
  kvm_run* run = fd_.run_data();
  auto& mmio = run->mmio;
  const uint32_t len = std::min<uint32_t>(mmio.len, sizeof(mmio.data));
  std::span<uint8_t> data(mmio.data, len);
  if (mmio.is_write) {
    mmio_bus_.write(mmio.phys_addr, data);
  } else {
    mmio_bus_.read(mmio.phys_addr, data);
  }
}

}  // namespace minivmm::vmm
