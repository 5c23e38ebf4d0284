#include "vmm/outcome.h"

#include "vmm/exit_status.h"
#include "vmm/suboptions.h"

namespace minivmm::vmm {

std::optional<int> parse_reported_status(std::string_view text) {
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return std::nullopt;
  const size_t last = text.find_last_not_of(" \t\r\n");
  const std::optional<uint64_t> n = parse_u64(text.substr(first, last - first + 1));
  if (!n || *n > 255) return std::nullopt;
  return static_cast<int>(*n);
}

Outcome outcome_of(StopReason reason, int value, const std::string& message,
                   std::optional<int> reported) {
  switch (reason) {
    case StopReason::kPowerOff:
    case StopReason::kReboot:
      // A status written to minivmm.exit before the power-off or reboot is the result.
      if (reported) {
        return Outcome{*reported, "guest-exit",
                       "the guest reported status " + std::to_string(*reported) +
                           " through minivmm.exit (" + message + ")"};
      }
      return Outcome{kExitGuestStopped, reason == StopReason::kPowerOff ? "poweroff" : "reboot",
                     message};
    case StopReason::kCrash:
      return Outcome{kExitGuestCrashed, "crash", message};
    case StopReason::kUnrunnable:
      return Outcome{kExitGuestUnrunnable, "unrunnable", message};
    case StopReason::kSignal:
      return Outcome{kExitSignalBase + value, "signal", message};
    case StopReason::kGuestExit:
      return Outcome{value, "guest-exit", message};
    case StopReason::kTimeout:
      return Outcome{kExitTimeout, "timeout", message};
    case StopReason::kPanic:
      return Outcome{kExitGuestPanicked, "panic", message};
    case StopReason::kNone:
    case StopReason::kError:
      break;
  }
  return Outcome{kExitVmmError, "error", message};
}

}  // namespace minivmm::vmm
