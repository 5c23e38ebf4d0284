// ChildProcess: a helper process that minivmm starts, watches and stops itself -- the
// backends of its devices (virtiofsd for --fs, passt for --net), started the way their
// users start them.
//
// spawn() forks and, in the child: every signal back to its default and unblocked, a
// session of its own (a Ctrl-C on minivmm's terminal is minivmm's to handle), SIGKILL when
// minivmm dies (PR_SET_PDEATHSIG), the caller's `setup` step (a mount namespace, ...), the
// given fds as 3, 4, ... and no other fd of minivmm's, then execve. A failure before the
// exec reaches the parent as one line ("cannot bind-mount the directory: EPERM"); a failure
// after it (the program's own start-up) shows as its exit, which the caller may wait for.
// The process is held by a pidfd, so that no pid can be reused under us.
//
// Threads: the VMM's main thread (spawn, reap, stop, the destructor). The main thread's
// seccomp filter allows what reap() and stop() call (waitid, pidfd_send_signal with SIGTERM
// and SIGKILL, poll).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "virtio/result.h"
#include "vmm/fd.h"

namespace minivmm::devices {

class ChildProcess {
 public:
  // What the child does before the exec, after its session and before its fds are placed.
  // Runs between fork and exec in a process with threads: async-signal-safe calls only. On
  // failure it returns what failed (a string literal, e.g. "cannot make its mount
  // namespace") with errno set; nullptr when it succeeded.
  using Setup = const char* (*)(const void* context);

  struct Spec {
    std::string program;            // absolute path
    std::vector<std::string> args;  // argv[1...]
    std::vector<int> fds;           // become fds 3, 4, ... in the child
    Setup setup = nullptr;
    const void* setup_context = nullptr;
  };

  // Starts the process; the error is one line that names `spec.program`.
  static Result<ChildProcess, std::string> spawn(const Spec& spec);

  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  ChildProcess(ChildProcess&&) noexcept;
  ChildProcess& operator=(ChildProcess&&) = delete;
  // Waits up to 2 s for the process to end by itself (its connection to us closed), then
  // kills it; reaps it either way.
  ~ChildProcess();

  pid_t pid() const { return pid_; }
  // Readable once the process ended (a pidfd): the VMM's main loop waits on it.
  int exit_fd() const { return pidfd_.get(); }
  // Ends the process: SIGTERM, up to `grace_ms` for it to go, then SIGKILL; reaps it.
  // Nothing when it already ended and was reaped.
  void stop(int grace_ms = 2000);
  // Reaps the process if it ended: "exited with status N" / "was killed by signal N (...)".
  std::optional<std::string> reap();
  // As reap(), waiting up to `timeout_ms` for the end.
  std::optional<std::string> reap_within(int timeout_ms);

 private:
  ChildProcess(pid_t pid, vmm::UniqueFd pidfd) : pid_(pid), pidfd_(std::move(pidfd)) {}
  void wait_or_kill(int grace_ms);
  pid_t pid_ = -1;
  vmm::UniqueFd pidfd_;
  bool reaped_ = false;
};

}  // namespace minivmm::devices
