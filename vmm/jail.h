// The small jail around minivmm: what the process gives up besides the seccomp filters.
//
//   at start (jail_at_start, first thing in main): inherited fds other than 0-2 closed,
//     core dumps off (RLIMIT_CORE 0), PR_SET_NO_NEW_PRIVS, SIGXFSZ ignored (a write past
//     RLIMIT_FSIZE fails with EFBIG instead of killing minivmm);
//   after setup (jail_after_setup, main thread, every file open): RLIMIT_NOFILE down to what
//     is open plus room for port clients, RLIMIT_FSIZE down to the largest writable disk
//     when no console writes to a file, PR_SET_DUMPABLE 0;
//   per thread (confine_thread, where each thread enters its class): with --user, the
//     thread's user and groups dropped (Linux credentials are per thread: each drops its
//     own with the raw system calls, glibc's all-threads setuid would run into the filters
//     of threads already confined); Landlock, where the kernel has it, denying every
//     file-system access (the main thread may still remove files in the directories of its
//     port sockets); then the class's seccomp filter.
//
// Not done here: cgroups, namespaces, chroot: the operator's.
//
// Threads: jail_at_start, init_confinement and jail_after_setup on the main thread;
// confine_thread on the thread being confined.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "vmm/config.h"
#include "vmm/seccomp.h"

namespace minivmm::vmm {

void jail_at_start();

struct ConfinementOptions {
  SeccompMode seccomp = SeccompMode::kOn;
  int status_fd = -1;  // the --status-file, for the seccomp reporter
  bool landlock = true;
  // Directories in which the main thread may remove files at exit (its port sockets').
  std::vector<std::string> removable_dirs;
  // --user: each thread drops to these ids (and no supplementary groups) when it is
  // confined. minivmm must run as root.
  std::optional<UserIds> user;
};

// Before any thread is confined (so before the Vm, whose device workers are confined as
// they are made): the seccomp mode and reporter, the Landlock rulesets, and the hook through
// which device workers call confine_thread.
void init_confinement(const ConfinementOptions& options);

// Landlock, then the seccomp filter of `thread_class`, on the calling thread. `own_fd` as
// for install_seccomp_filter. Throws std::runtime_error when a filter cannot be installed.
void confine_thread(const char* thread_class, int own_fd = -1);

struct JailLimits {
  uint64_t fsize = 0;      // RLIMIT_FSIZE, 0 = leave it
  uint32_t extra_fds = 0;  // fds the VM may still make (accepted port clients)
};
void jail_after_setup(const JailLimits& limits);

// The Landlock ABI version of this kernel, 0 when it has none (or it is disabled).
int landlock_abi();

}  // namespace minivmm::vmm
