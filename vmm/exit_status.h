// Process exit statuses of minivmm (documented in README.md, "Exit status"). main() maps every way
// a run can end to exactly one of these.
#pragma once

namespace minivmm::vmm {

enum ExitStatus : int {
  kExitGuestStopped = 0,     // the guest powered off (ACPI S5) or rebooted (i8042 / ACPI reset)
  kExitVmmError = 1,         // a VMM or host error: bad file, KVM ioctl failure, out of memory
  kExitUsage = 2,            // bad command line
  kExitGuestCrashed = 3,     // the guest triple-faulted (KVM_EXIT_SHUTDOWN) or reported a crash
  kExitGuestUnrunnable = 4,  // the host KVM could not run the guest (emulation failure,
                             // internal error, failed VM entry)
  kExitGuestPanicked = 5,    // the guest's kernel panicked (pvpanic)
  kExitTimeout = 124,        // --timeout passed (as coreutils timeout)
  kExitSeccomp = 159,        // a thread made a system call its seccomp filter forbids
                             // (128 + SIGSYS, what a shell shows for a process SIGSYS killed)
  // Stopped by SIGINT / SIGTERM: 128 + the signal number (130 / 143), as shells report.
  kExitSignalBase = 128,
  // A status the guest reports through the exit port is the exit status itself (0-255);
  // --status-file and the last stderr line tell it from the outcomes above.
};

}  // namespace minivmm::vmm
