#include "devices/virtiofsd.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <vector>

extern char** environ;

namespace minivmm::devices {
namespace {

// Where the host's root is bound for its daemon (see child_main).
constexpr const char* kRootShare = "/run/minivmm-root";

// What the child failed at before exec, reported through a close-on-exec pipe.
enum ChildStep : int { kStepMountNs = 1, kStepBind, kStepRemount, kStepFds, kStepExec };
struct ChildFailure {
  int step;
  int err;
};

const char* step_text(int step) {
  switch (step) {
    case kStepMountNs: return "cannot make its mount namespace";
    case kStepBind: return "cannot bind-mount the directory";
    case kStepRemount: return "cannot remount the directory nosuid,nodev";
    case kStepFds: return "cannot set up its fds";
    case kStepExec: return "cannot execute it";
    default: return "failed to start";
  }
}

// The child, between fork and exec: async-signal-safe calls only (the VMM has threads).
[[noreturn]] void child_main(int listen_fd, int report_fd, const char* dir,
                             unsigned long remount_flags, const char* path, char* const* argv) {
  auto die = [&report_fd](int step) {
    const ChildFailure f{step, errno};
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
  if (::unshare(CLONE_NEWNS) != 0) die(kStepMountNs);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) die(kStepMountNs);
  // The share is DIR bound onto itself -- except the host's root: binding / onto / as well
  // leaves virtiofsd's own pivot_root(".", ".") failing (EBUSY). That one is bound at
  // kRootShare instead, on a tmpfs over /run in this namespace, which the share then shows
  // in place of the host's /run (a host-root guest mounts a fresh /run anyway).
  const char* target = dir;
  if (dir[0] == '/' && dir[1] == '\0') {
    target = kRootShare;
    if (::mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0 ||
        ::mkdir(kRootShare, 0700) != 0) {
      die(kStepBind);
    }
  }
  if (::mount(dir, target, nullptr, MS_BIND | MS_REC, nullptr) != 0) die(kStepBind);
  if (::mount(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | remount_flags, nullptr) != 0) {
    die(kStepRemount);
  }
  // The socket becomes fd 3 and the report pipe fd 4 (close-on-exec); nothing else stays.
  const int high_listen = ::fcntl(listen_fd, F_DUPFD, 10);
  const int high_report = ::fcntl(report_fd, F_DUPFD_CLOEXEC, 10);
  if (high_listen < 0 || high_report < 0) die(kStepFds);
  report_fd = high_report;
  if (::dup2(high_listen, 3) != 3 || ::dup3(high_report, 4, O_CLOEXEC) != 4) die(kStepFds);
  report_fd = 4;
  if (::syscall(SYS_close_range, 5U, ~0U, 0U) != 0) die(kStepFds);
  ::execve(path, argv, environ);
  die(kStepExec);
  ::_exit(127);
}

std::string describe(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return "exited with status " + std::to_string(info.si_status);
  return "was killed by signal " + std::to_string(info.si_status) + " (" +
         ::strsignal(info.si_status) + ")";
}

}  // namespace

Result<Virtiofsd::Started, std::string> Virtiofsd::start(const std::string& tag,
                                                           const std::string& dir,
                                                           bool read_only) {
  const std::string what = "--fs tag=" + tag;
  const char* env = std::getenv("MINIVMM_VIRTIOFSD");
  const std::string binary = env != nullptr && *env != '\0' ? env : kDefaultPath;
  if (::access(binary.c_str(), X_OK) != 0) {
    return what + ": virtiofsd is not installed: " + binary + ": " + std::strerror(errno) +
           (env == nullptr ? " (Debian package qemu-system-common)" : " (MINIVMM_VIRTIOFSD)");
  }
  if (::geteuid() != 0) {
    return what + ": virtiofsd must run as root (it sandboxes itself in namespaces); start it "
                  "yourself and pass socket=PATH instead of path=DIR";
  }
  char* real = ::realpath(dir.c_str(), nullptr);
  if (real == nullptr) return what + ": path=" + dir + ": " + std::strerror(errno);
  const std::string source = real;
  std::free(real);
  struct stat st {};
  if (::stat(source.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
    return what + ": path=" + dir + " is not a directory";
  }
  if (source.find(',') != std::string::npos) {
    return what + ": path=" + dir + ": virtiofsd cannot take a directory with a comma in its path";
  }
  // The bind mount keeps the flags the directory's file system has, and adds nosuid,nodev.
  unsigned long flags = MS_NOSUID | MS_NODEV | (read_only ? MS_RDONLY : 0);
  struct statvfs vfs {};
  if (::statvfs(source.c_str(), &vfs) == 0) {
    if (vfs.f_flag & ST_RDONLY) flags |= MS_RDONLY;
    if (vfs.f_flag & ST_NOEXEC) flags |= MS_NOEXEC;
    if (vfs.f_flag & ST_NOATIME) flags |= MS_NOATIME;
    if (vfs.f_flag & ST_NODIRATIME) flags |= MS_NODIRATIME;
    if (vfs.f_flag & ST_RELATIME) flags |= MS_RELATIME;
  }

  // A listening socket at an abstract address the kernel picks (autobind).
  vmm::UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listener.valid()) return what + ": socket: " + std::strerror(errno);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(sa_family_t)) != 0 ||
      ::listen(listener.get(), 1) != 0) {
    return what + ": cannot listen for virtiofsd: " + std::strerror(errno);
  }
  socklen_t addr_len = sizeof(addr);
  if (::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &addr_len) != 0) {
    return what + ": getsockname: " + std::strerror(errno);
  }

  const std::string shared = source == "/" ? kRootShare : source;
  std::vector<std::string> args = {binary,       "--fd=3",          "-o",
                                   "source=" + shared, "-o",         "sandbox=namespace",
                                   "-o",         "cache=auto",      "-o",
                                   "log_level=err"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int report[2];
  if (::pipe2(report, O_CLOEXEC) != 0) return what + ": pipe: " + std::strerror(errno);
  const pid_t pid = ::fork();
  if (pid < 0) {
    const int err = errno;
    ::close(report[0]);
    ::close(report[1]);
    return what + ": cannot start virtiofsd: fork: " + std::strerror(err);
  }
  if (pid == 0) {
    ::close(report[0]);
    child_main(listener.get(), report[1], source.c_str(), flags, binary.c_str(), argv.data());
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
    if (!pidfd.valid()) return what + ": pidfd_open: " + std::strerror(pidfd_errno);
    return what + ": virtiofsd " + step_text(failure.step) + ": " + std::strerror(failure.err);
  }
  Started started{Virtiofsd(pid, std::move(pidfd)), {}};
  started.socket = vmm::UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!started.socket.valid() ||
      ::connect(started.socket.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    return what + ": cannot connect to virtiofsd: " + std::strerror(errno);
  }
  return started;
}

Virtiofsd::Virtiofsd(Virtiofsd&& other) noexcept
    : pid_(std::exchange(other.pid_, -1)),
      pidfd_(std::move(other.pidfd_)),
      reaped_(std::exchange(other.reaped_, true)) {}

std::optional<std::string> Virtiofsd::reap() {
  if (reaped_ || pid_ < 0) return std::nullopt;
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG) != 0 || info.si_pid == 0) {
    return std::nullopt;
  }
  reaped_ = true;
  return describe(info);
}

void Virtiofsd::stop(int grace_ms) {
  if (reaped_ || pid_ < 0) return;
  ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGTERM, nullptr, 0);
  wait_or_kill(grace_ms);
}

Virtiofsd::~Virtiofsd() {
  if (reaped_ || pid_ < 0) return;
  wait_or_kill(2000);  // its connection is closed by now, which ends it
}

void Virtiofsd::wait_or_kill(int grace_ms) {
  pollfd p{pidfd_.get(), POLLIN, 0};
  if (::poll(&p, 1, grace_ms) <= 0) ::syscall(SYS_pidfd_send_signal, pidfd_.get(), SIGKILL, nullptr, 0);
  siginfo_t info{};
  while (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED) != 0 && errno == EINTR) {
  }
  reaped_ = true;
}

}  // namespace minivmm::devices
