// Per-thread seccomp filters. Every thread that runs while the guest does belongs to one
// class -- "main", "vcpu", or a device worker's (seccomp_thread_classes(): "blk", "rng",
// "console", "vhost", ...) -- and runs under that class's allowlist, built with libseccomp
// when the thread enters its class so that arguments can be pinned: KVM_RUN only on the
// thread's own vCPU fd, io_uring_enter only on a blk worker's own ring, terminal ioctls only
// the harmless ones on fds 0-2, mmap/mprotect never with PROT_EXEC, signals only to
// minivmm's own threads. No class may open a file, create a thread, exec, set up or
// register an io_uring, or make a KVM setup ioctl: everything of that kind happens before
// the guest's first instruction. Device workers enter their class when they are spawned
// (devices/thread_class.h), vCPUs before their first KVM_RUN, the main thread last; the Vm
// lets the guest run only once all of them have.
//
// A forbidden call (mode kOn) raises SIGSYS; the reporter writes one line naming the call
// and the thread class to stderr (and the --status-file), and the process exits with
// kExitSeccomp at once. Mode kLog lets the call through and the kernel logs it (audit /
// dmesg); kOff installs nothing.
//
// Threads: init_seccomp() once on the main thread before any thread enters a class;
// install_seccomp_filter() on the thread that is to be confined.
#pragma once

#include <string>
#include <vector>

namespace minivmm::vmm {

enum class SeccompMode { kOn, kLog, kOff };

// The mode; the SIGSYS reporter and its table of system call names (vmm/jail.h's
// init_confinement calls it, and sets the hook through which device workers are confined).
// `status_fd`, if >= 0, is the --status-file opened for writing: the reporter writes
// "<status> seccomp <message>" there.
void init_seccomp(SeccompMode mode, int status_fd = -1);
SeccompMode seccomp_mode();

// Confines the calling thread to `thread_class`'s allowlist (nothing in mode kOff).
// `own_fd` is the thread's own fd its calls are pinned to: for "vcpu" its vCPU fd
// (KVM_RUN), for "blk" its io_uring ring (io_uring_enter; -1 for a disk without a ring,
// which then may not enter any). Throws std::runtime_error for a class without a filter (a
// new kind of thread must come with its filter) or when the kernel refuses the filter.
void install_seccomp_filter(const char* thread_class, int own_fd = -1);

// Every class that has a filter, for tests and --help.
std::vector<const char*> seccomp_thread_classes();

// "on", "log" or "off"; false for anything else.
bool parse_seccomp_mode(const std::string& text, SeccompMode& mode);

}  // namespace minivmm::vmm
