// Outcome: how a run ended, as the exit status, a reason word and a one-line message
// (README "Exit status"; --status-file writes "<status> <reason> <message>"). The one table
// from a stop reason to all three, and the parser for what a guest writes to minivmm.exit.
// Pure functions; main thread.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "vmm/stop.h"

namespace minivmm::vmm {

struct Outcome {
  int status;
  std::string reason;  // poweroff reboot guest-exit crash panic unrunnable error usage timeout
                       // signal; "seccomp" is written by the SIGSYS reporter (vmm/seccomp.h)
  std::string message;
  bool operator==(const Outcome&) const = default;
};

// The status in what the guest wrote to minivmm.exit: one decimal number 0-255, blanks and
// newlines around it allowed; nullopt for anything else (and for nothing).
std::optional<int> parse_reported_status(std::string_view text);

// `value` is StopControl::value() (the signal, or the exit port's status); `reported` what
// the guest wrote to minivmm.exit, which turns a power-off or reboot into its status.
Outcome outcome_of(StopReason reason, int value, const std::string& message,
                   std::optional<int> reported);

}  // namespace minivmm::vmm
