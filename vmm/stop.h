// StopControl: how any thread asks the VM to stop and main learns why. The first request
// wins (a guest reset followed by the teardown's own kicks is still a reset). Waking the
// main thread goes through an eventfd that it polls next to its signalfd and stdin.
//
// Threads: request() from any thread (vCPU threads on guest exits, device callbacks, main on
// signals); the getters from main after the eventfd fired.
#pragma once

#include <sys/eventfd.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>

#include "vmm/fd.h"

namespace minivmm::vmm {

enum class StopReason : uint8_t {
  kNone,
  kPowerOff,    // ACPI S5, guest halted for good
  kReboot,      // i8042 reset, ACPI reset register, KVM_SYSTEM_EVENT_RESET
  kCrash,       // triple fault, KVM_SYSTEM_EVENT_CRASH
  kUnrunnable,  // the host KVM cannot run this guest
  kError,       // a VMM or host error while running
  kSignal,      // SIGINT / SIGTERM
  kGuestExit,   // the guest reported a status (the exit port)
  kTimeout,     // --timeout passed
  kPanic,       // the guest's kernel panicked (pvpanic)
};

class StopControl {
 public:
  StopControl() : event_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    if (!event_.valid()) throw std::runtime_error("eventfd failed");
  }

  // Records the reason (if none yet) and wakes the main thread. `value` is the signal number
  // for kSignal, the guest's status for kGuestExit. Safe from any thread; never throws.
  void request(StopReason reason, std::string message = {}, int value = 0) {
    {
      std::lock_guard lock(mutex_);
      if (reason_ != StopReason::kNone) return;
      reason_ = reason;
      message_ = std::move(message);
      value_ = value;
    }
    stopping_.store(true, std::memory_order_release);
    const uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(event_.get(), &one, sizeof(one));
  }

  bool stopping() const { return stopping_.load(std::memory_order_acquire); }
  int event_fd() const { return event_.get(); }

  StopReason reason() const {
    std::lock_guard lock(mutex_);
    return reason_;
  }
  std::string message() const {
    std::lock_guard lock(mutex_);
    return message_;
  }
  int value() const {
    std::lock_guard lock(mutex_);
    return value_;
  }

 private:
  UniqueFd event_;
  std::atomic<bool> stopping_{false};
  mutable std::mutex mutex_;
  StopReason reason_ = StopReason::kNone;
  std::string message_;
  int value_ = 0;
};

}  // namespace minivmm::vmm
