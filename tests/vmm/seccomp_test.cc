// The seccomp probe table: for each thread class, one child process installs that class's
// filter (vmm/seccomp.h) exactly as minivmm does, makes one system call, and exits 0 if it
// returned. Allowed calls must return; forbidden calls and forbidden arguments must end
// the child with kExitSeccomp and the reporter's one line naming the call and the class.
// The same table with --seccomp off (and log) is the control: there every call returns.
#include "vmm/seccomp.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/io_uring.h>
#include <linux/if_tun.h>
#include <linux/kvm.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <functional>
#include <string>
#include <vector>

#include "vmm/exit_status.h"

using minivmm::vmm::SeccompMode;

namespace {

// The probe's own fd (install_seccomp_filter's `own_fd`: a vCPU's vCPU fd, a blk worker's
// io_uring ring): a dup of /dev/null.
constexpr int kOwnFd = 100;
constexpr int kOtherFd = 101;     // another fd it holds (another disk's ring, say)
constexpr int kStatusFd = 102;    // the --status-file

struct Probe {
  const char* thread_class;
  const char* what;          // the call, for the report
  bool allowed;              // under mode on
  const char* syscall_name;  // what the reporter must name when it is forbidden
  std::function<void()> call;
};

void mmap_with(int prot) {
  void* p = ::mmap(nullptr, 4096, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p != MAP_FAILED) ::munmap(p, 4096);
}

// Calls that no class may make after boot. Each is harmless when it returns (the control).
std::vector<Probe> forbidden_everywhere(const char* c) {
  return {
      {c, "openat a file", false, "openat",
       [] {
         ::close(static_cast<int>(::syscall(SYS_openat, AT_FDCWD, "/etc/hostname", O_RDONLY)));
       }},
      {c, "execve", false, "execve",
       [] {
         const char* argv[] = {"/bin/true", nullptr};
         ::syscall(SYS_execve, "/nonexistent/minivmm-probe", argv, nullptr);
       }},
      {c, "clone (a thread or process)", false, "clone",
       [] {
         const long r = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
         if (r == 0) ::_exit(0);
         if (r > 0) ::waitpid(static_cast<pid_t>(r), nullptr, 0);
       }},
      {c, "io_uring_setup", false, "io_uring_setup",
       [] {
         io_uring_params p{};
         const long fd = ::syscall(SYS_io_uring_setup, 2, &p);
         if (fd >= 0) ::close(static_cast<int>(fd));
       }},
      {c, "io_uring_register", false, "io_uring_register",
       [] { ::syscall(SYS_io_uring_register, kOtherFd, IORING_UNREGISTER_FILES, nullptr, 0); }},
      {c, "mmap with PROT_EXEC", false, "mmap", [] { mmap_with(PROT_READ | PROT_EXEC); }},
      {c, "mprotect to PROT_EXEC", false, "mprotect",
       [] {
         void* p = ::mmap(nullptr, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
         ::mprotect(p, 4096, PROT_READ | PROT_EXEC);
       }},
      {c, "ioctl TIOCSTI", false, "ioctl",
       [] {
         char ch = 'x';
         ::ioctl(kOtherFd, TIOCSTI, &ch);
       }},
      {c, "ioctl TIOCLINUX on stdin", false, "ioctl",
       [] {
         char sub = 0;
         ::ioctl(0, TIOCLINUX, &sub);
       }},
      {c, "ioctl KVM_CREATE_VM", false, "ioctl", [] { ::ioctl(kOtherFd, KVM_CREATE_VM, 0); }},
      {c, "socket", false, "socket",
       [] { ::close(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)); }},
      {c, "kill another process", false, "kill", [] { ::kill(1, 0); }},
      {c, "tgkill a thread of another process", false, "tgkill",
       [] { ::syscall(SYS_tgkill, 1, 1, 0); }},
      // What every class does.
      {c, "mmap without PROT_EXEC", true, "", [] { mmap_with(PROT_READ | PROT_WRITE); }},
      {c, "write", true, "", [] { [[maybe_unused]] ssize_t n = ::write(kOtherFd, "x", 1); }},
      {c, "tgkill itself with signal 0", true, "",
       [] { ::syscall(SYS_tgkill, ::getpid(), ::gettid(), 0); }},
  };
}

std::vector<Probe> probe_table() {
  std::vector<Probe> table;
  for (const char* c : minivmm::vmm::seccomp_thread_classes()) {
    for (Probe& p : forbidden_everywhere(c)) table.push_back(std::move(p));
  }
  auto add = [&table](Probe p) { table.push_back(std::move(p)); };
  // vcpu: KVM_RUN, and KVM_GET_REGS for crash reports, on its own fd only.
  add({"vcpu", "ioctl KVM_RUN on its own vCPU fd", true, "",
       [] { ::ioctl(kOwnFd, KVM_RUN, 0); }});
  add({"vcpu", "ioctl KVM_RUN on another fd", false, "ioctl",
       [] { ::ioctl(kOtherFd, KVM_RUN, 0); }});
  add({"vcpu", "ioctl KVM_SET_REGS on its own fd", false, "ioctl", [] {
         kvm_regs regs{};
         ::ioctl(kOwnFd, KVM_SET_REGS, &regs);
       }});
  add({"vcpu", "getrandom", false, "getrandom", [] {
         char b;
         ::syscall(SYS_getrandom, &b, 1, 0);
       }});
  // main: harmless terminal ioctls on stdin/stdout/stderr only, the status file, poll.
  add({"main", "ioctl TIOCGWINSZ on stdout", true, "", [] {
         winsize ws{};
         ::ioctl(1, TIOCGWINSZ, &ws);
       }});
  add({"main", "ioctl TCGETS on fd 101", false, "ioctl", [] {
         termios t{};
         ::ioctl(kOtherFd, TCGETS, &t);
       }});
  add({"main", "ioctl KVM_RUN", false, "ioctl", [] { ::ioctl(kOwnFd, KVM_RUN, 0); }});
  add({"main", "pwrite64 (the status file)", true, "",
       [] { [[maybe_unused]] ssize_t n = ::pwrite(kOtherFd, "x", 1, 0); }});
  add({"main", "io_uring_enter", false, "io_uring_enter",
       [] { ::syscall(SYS_io_uring_enter, kOtherFd, 0, 0, 0, nullptr, 0); }});
  // blk: io_uring_enter on its own ring only, and the synchronous backend's calls.
  add({"blk", "io_uring_enter on its own ring", true, "",
       [] { ::syscall(SYS_io_uring_enter, kOwnFd, 0, 0, 0, nullptr, 0); }});
  add({"blk", "io_uring_enter on another disk's ring", false, "io_uring_enter",
       [] { ::syscall(SYS_io_uring_enter, kOtherFd, 0, 0, 0, nullptr, 0); }});
  add({"blk", "pread64", true, "", [] {
         char b;
         [[maybe_unused]] ssize_t n = ::pread(kOtherFd, &b, 1, 0);
       }});
  add({"blk", "fdatasync", true, "", [] { ::fdatasync(kOtherFd); }});
  add({"blk", "getrandom", false, "getrandom", [] {
         char b;
         ::syscall(SYS_getrandom, &b, 1, 0);
       }});
  add({"blk", "ioctl KVM_RUN", false, "ioctl", [] { ::ioctl(kOwnFd, KVM_RUN, 0); }});
  // rng: getrandom only.
  add({"rng", "getrandom", true, "", [] {
         char b;
         ::syscall(SYS_getrandom, &b, 1, 0);
       }});
  add({"rng", "pread64", false, "pread64", [] {
         char b;
         [[maybe_unused]] ssize_t n = ::pread(kOtherFd, &b, 1, 0);
       }});
  // console: its sockets.
  add({"console", "accept4", true, "", [] { ::accept4(kOtherFd, nullptr, nullptr, 0); }});
  add({"console", "recvfrom", true, "", [] {
         char b;
         ::recv(kOtherFd, &b, 1, MSG_DONTWAIT);
       }});
  add({"console", "io_uring_enter", false, "io_uring_enter",
       [] { ::syscall(SYS_io_uring_enter, kOtherFd, 0, 0, 0, nullptr, 0); }});
  add({"console", "unlink", false, "unlink", [] { ::unlink("/nonexistent/minivmm-probe"); }});
  // vhost: its messages to the backend and the waits for replies.
  add({"vhost", "sendmsg", true, "", [] {
         msghdr m{};
         ::sendmsg(kOtherFd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
       }});
  add({"vhost", "recvmsg", true, "", [] {
         msghdr m{};
         ::recvmsg(kOtherFd, &m, MSG_DONTWAIT);
       }});
  add({"vhost", "poll", true, "", [] { ::poll(nullptr, 0, 0); }});
  add({"vhost", "accept4", false, "accept4", [] { ::accept4(kOtherFd, nullptr, nullptr, 0); }});
  add({"vhost", "getrandom", false, "getrandom", [] {
         char b;
         ::syscall(SYS_getrandom, &b, 1, 0);
       }});
  // net: frames to and from its backend (a tap: read/writev; a stream socket: recvfrom,
  // sendmsg, sendto), and the tap's offloads; no other ioctl, no socket, no accept.
  add({"net", "ioctl TUNSETOFFLOAD", true, "", [] { ::ioctl(kOtherFd, TUNSETOFFLOAD, 0); }});
  add({"net", "ioctl TUNSETIFF", false, "ioctl", [] {
         ifreq ifr{};
         ::ioctl(kOtherFd, TUNSETIFF, &ifr);
       }});
  add({"net", "sendmsg", true, "", [] {
         msghdr m{};
         ::sendmsg(kOtherFd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
       }});
  add({"net", "recvfrom", true, "", [] {
         char b;
         ::recv(kOtherFd, &b, 1, MSG_DONTWAIT);
       }});
  add({"net", "socket AF_UNIX stream", false, "socket",
       [] { ::close(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)); }});
  add({"net", "connect", false, "connect", [] { ::connect(kOtherFd, nullptr, 0); }});
  add({"net", "accept4", false, "accept4", [] { ::accept4(kOtherFd, nullptr, nullptr, 0); }});
  // vsock: its host sockets, and AF_UNIX stream sockets (non-blocking, close-on-exec) for
  // the guest's connections to PATH_P; no other socket.
  add({"vsock", "socket AF_UNIX stream, non-blocking", true, "", [] {
         ::close(::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
       }});
  add({"vsock", "socket AF_INET", false, "socket", [] {
         ::close(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
       }});
  add({"vsock", "socket AF_UNIX datagram", false, "socket", [] {
         ::close(::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
       }});
  add({"vsock", "connect a unix address", true, "", [] {
         sockaddr_un a{};
         a.sun_family = AF_UNIX;
         ::connect(kOtherFd, reinterpret_cast<const sockaddr*>(&a), sizeof(a));
       }});
  add({"vsock", "connect an inet address", false, "connect", [] {
         sockaddr_in a{};
         a.sin_family = AF_INET;
         ::connect(kOtherFd, reinterpret_cast<const sockaddr*>(&a), sizeof(a));
       }});
  add({"vsock", "accept4", true, "", [] { ::accept4(kOtherFd, nullptr, nullptr, 0); }});
  add({"vsock", "recvfrom (MSG_PEEK)", true, "", [] {
         char b;
         ::recv(kOtherFd, &b, 1, MSG_DONTWAIT | MSG_PEEK);
       }});
  add({"vsock", "sendto", true, "",
       [] { ::send(kOtherFd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL); }});
  add({"vsock", "shutdown", true, "", [] { ::shutdown(kOtherFd, SHUT_WR); }});
  add({"vsock", "bind", false, "bind", [] {
         sockaddr_un a{};
         a.sun_family = AF_UNIX;
         ::bind(kOtherFd, reinterpret_cast<const sockaddr*>(&a), sizeof(a));
       }});
  add({"vsock", "unlink", false, "unlink", [] { ::unlink("/nonexistent/minivmm-probe"); }});
  add({"vsock", "getrandom", false, "getrandom", [] {
         char b;
         ::syscall(SYS_getrandom, &b, 1, 0);
       }});
  // main: its virtiofsd processes are reaped and, if they linger at exit, SIGKILLed.
  add({"main", "waitid", true, "", [] {
         siginfo_t info{};
         ::waitid(P_PID, 999999, &info, WEXITED | WNOHANG);
       }});
  add({"main", "pidfd_send_signal SIGTERM", true, "",
       [] { ::syscall(SYS_pidfd_send_signal, kOtherFd, SIGTERM, nullptr, 0); }});
  add({"main", "pidfd_send_signal SIGSTOP", false, "pidfd_send_signal",
       [] { ::syscall(SYS_pidfd_send_signal, kOtherFd, SIGSTOP, nullptr, 0); }});
  return table;
}

struct Outcome {
  int status = -1;  // exit status, or 128 + signal
  std::string err;
  std::string status_file;  // what the reporter wrote to the --status-file
};

// Runs `probe` in a child under `mode`; its stderr comes back.
Outcome run_probe(const Probe& probe, SeccompMode mode) {
  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  // The --status-file, opened before the filter as minivmm's is.
  char status_path[] = "/tmp/minivmm-seccomp-status-XXXXXX";
  const int status_fd = ::mkstemp(status_path);
  REQUIRE(status_fd >= 0);
  ::unlink(status_path);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(pipe_fds[1], STDERR_FILENO);
    const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(null_fd, kOwnFd);
    ::dup2(null_fd, kOtherFd);
    ::dup2(status_fd, kStatusFd);
    minivmm::vmm::init_seccomp(mode, kStatusFd);
    try {
      minivmm::vmm::install_seccomp_filter(probe.thread_class, kOwnFd);
    } catch (...) {
      ::_exit(99);
    }
    probe.call();
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  Outcome out;
  char buf[512];
  ssize_t n;
  while ((n = ::read(pipe_fds[0], buf, sizeof buf)) > 0)
    out.err.append(buf, static_cast<size_t>(n));
  ::close(pipe_fds[0]);
  int ws = 0;
  REQUIRE(::waitpid(pid, &ws, 0) == pid);
  out.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  off_t at = 0;
  while ((n = ::pread(status_fd, buf, sizeof buf, at)) > 0) {
    out.status_file.append(buf, static_cast<size_t>(n));
    at += n;
  }
  ::close(status_fd);
  return out;
}

}  // namespace

TEST_CASE("seccomp: each thread class's allowed calls work and forbidden ones end minivmm",
          "[seccomp]") {
  size_t forbidden = 0;
  for (const Probe& probe : probe_table()) {
    INFO(probe.thread_class << ": " << probe.what);
    const Outcome on = run_probe(probe, SeccompMode::kOn);
    INFO("stderr: " << on.err);
    INFO("status file: " << on.status_file);
    if (probe.allowed) {
      CHECK(on.status == 0);
      CHECK(on.err.empty());
      CHECK(on.status_file.empty());
      continue;
    }
    ++forbidden;
    CHECK(on.status == minivmm::vmm::kExitSeccomp);
    const std::string prefix = std::string("minivmm: error: seccomp: the ") + probe.thread_class +
                               " thread made a forbidden system call: " + probe.syscall_name + " (";
    CHECK(on.err.rfind(prefix, 0) == 0);
    CHECK(on.err.size() > prefix.size());
    CHECK(on.err.find('\n') == on.err.size() - 1);  // one line
    // The --status-file: "159 seccomp <the same message>", one line.
    CHECK(on.status_file == std::to_string(minivmm::vmm::kExitSeccomp) + " seccomp " +
                                on.err.substr(std::string("minivmm: error: ").size()));
  }
  CHECK(forbidden > 60);
}

TEST_CASE("seccomp: with --seccomp off or log every probe's call returns (the control)",
          "[seccomp]") {
  for (SeccompMode mode : {SeccompMode::kOff, SeccompMode::kLog}) {
    for (const Probe& probe : probe_table()) {
      INFO(probe.thread_class << ": " << probe.what
                              << (mode == SeccompMode::kOff ? " (off)" : " (log)"));
      const Outcome r = run_probe(probe, mode);
      INFO("stderr: " << r.err);
      CHECK(r.status == 0);
      CHECK(r.err.empty());
      CHECK(r.status_file.empty());
    }
  }
}

TEST_CASE("seccomp: a thread class without a filter is refused", "[seccomp]") {
  const Probe probe{"gpu", "nothing", true, "", [] {}};
  CHECK(run_probe(probe, SeccompMode::kOn).status == 99);
}
