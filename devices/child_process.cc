#include "devices/child_process.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

extern char** environ;

namespace minivmm::devices {
namespace {

// What the child failed at before the exec, through a close-on-exec pipe. `what` is a
// string literal of the parent's image (the child is a fork of it).
struct ChildFailure {
  const char* what;
  int err;
};

// The child, between fork and exec: async-signal-safe calls only (the VMM has threads).
[[noreturn]] void child_main(const ChildProcess::Spec& spec, int report_fd, char* const* argv) {
  auto die = [&report_fd](const char* what) {
    const ChildFailure f{what, errno};
    [[maybe_unused]] ssize_t n = ::write(report_fd, &f, sizeof(f));
    ::_exit(127);
  };
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) ::sigaction(sig, &dfl, nullptr);  // ignored ones too
  ::setsid();
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (spec.setup != nullptr) {
    if (const char* failed = spec.setup(spec.setup_context)) die(failed);
  }
  // The given fds become 3, 4, ...; the report pipe the one after them (close-on-exec);
  // nothing else stays. Everything is first moved above the targets, so that no dup2
  // overwrites a source not yet moved.
  const int count = static_cast<int>(spec.fds.size());
  const int above = std::max(64, 3 + count + 2);
  int high[64];
  if (count > 60) {
    errno = E2BIG;
    die("cannot set up its fds");
  }
  for (int i = 0; i < count; ++i) {
    high[i] = ::fcntl(spec.fds[static_cast<size_t>(i)], F_DUPFD, above);
    if (high[i] < 0) die("cannot set up its fds");
  }
  const int high_report = ::fcntl(report_fd, F_DUPFD_CLOEXEC, above);
  if (high_report < 0) die("cannot set up its fds");
  report_fd = high_report;
  for (int i = 0; i < count; ++i) {
    if (::dup2(high[i], 3 + i) != 3 + i) die("cannot set up its fds");
  }
  if (::dup3(high_report, 3 + count, O_CLOEXEC) != 3 + count) die("cannot set up its fds");
  report_fd = 3 + count;
  if (::syscall(SYS_close_range, static_cast<unsigned>(4 + count), ~0U, 0U) != 0) {
    die("cannot set up its fds");
  }
  ::execve(spec.program.c_str(), argv, environ);
  die("cannot execute it");
  ::_exit(127);  // not reached: die() exits
}

std::string describe(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  return "was killed by signal " + std::to_string(info.si_status) + " (" +
         ::strsignal(info.si_status) + ")";
}

}  // namespace

Result<ChildProcess, std::string> ChildProcess::spawn(const Spec& spec) {
  const std::string name = spec.program.substr(spec.program.rfind('/') + 1);
  std::vector<std::string> args = spec.args;
  args.insert(args.begin(), spec.program);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return "cannot start " + name + ": pipe: " + std::strerror(errno);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    return "cannot start " + name + ": fork: " + std::strerror(err);
  }
  if (pid == 0) {
    ::close(report[0]);
    child_main(spec, report[1], argv.data());
  }
  ::close(report[1]);
  vmm::UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
  const int pidfd_errno = errno;
  ChildFailure failure{};
  ssize_t got;
  do {
    got = ::read(report[0], &failure, sizeof(failure));
  } while (got < 0 && errno == EINTR);
  ::close(report[0]);
  if (got == static_cast<ssize_t>(sizeof(failure)) || !pidfd.valid()) {
    if (!pidfd.valid()) ::kill(pid, SIGKILL);
    int status;
    ::waitpid(pid, &status, 0);
    if (!pidfd.valid()) return name + ": pidfd_open: " + std::strerror(pidfd_errno);
    return name + " " + failure.what + ": " + std::strerror(failure.err);
  }
  return ChildProcess(pid, std::move(pidfd));
}

ChildProcess::ChildProcess(ChildProcess&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      reaped_(std::exchange(other.reaped_, true)) {}

std::optional<std::string> ChildProcess::reap() {
  if (reaped_ || pid_ < 0) return std::nullopt;
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  reaped_ = true;
  return describe(info);
}

std::optional<std::string> ChildProcess::reap_within(int timeout_ms) {
  if (reaped_ || pid_ < 0) return std::nullopt;
  pollfd p{pidfd_.get(), POLLIN, 0};
  ::poll(&p, 1, timeout_ms);
  return reap();
}

void ChildProcess::stop(int grace_ms) {
  if (reaped_ || pid_ < 0) return;
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGTERM, nullptr, 0);
  wait_or_kill(grace_ms);
}

ChildProcess::~ChildProcess() {
  if (reaped_ || pid_ < 0) return;
  wait_or_kill(2000);
}

void ChildProcess::wait_or_kill(int grace_ms) {
  pollfd p{pidfd_.get(), POLLIN, 0};
  if (::poll(&p, 1, grace_ms) <= 0) {
    ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  }
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0 && errno == EINTR) {
  }
  reaped_ = true;
}

}  // namespace minivmm::devices
