#include "vmm/seccomp.h"

#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/if_tun.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string_view>
#include <vector>

#include "vmm/exit_status.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer)
#define MINIVMM_SANITIZER_RUNTIME 1
#endif
#endif
#if !defined(MINIVMM_SANITIZER_RUNTIME) && defined(__SANITIZE_ADDRESS__)
#define MINIVMM_SANITIZER_RUNTIME 1
#endif
#ifndef MINIVMM_SANITIZER_RUNTIME
#define MINIVMM_SANITIZER_RUNTIME 0
#endif

namespace minivmm::vmm {
namespace {

std::atomic<SeccompMode> g_mode{SeccompMode::kOff};
int g_status_fd = -1;
thread_local const char* t_class = nullptr;

// System call names by number, resolved before any filter exists: the reporter runs in a
// signal handler and may not allocate.
constexpr int kMaxSyscall = 512;
std::array<const char*, kMaxSyscall> g_names{};

// The reporter's line, built without allocation: async-signal-safe pieces only.
class LineBuffer {
 public:
  void add(std::string_view s) {
    for (char c : s) {
      if (len_ < sizeof(buf_)) buf_[len_++] = c;
    }
  }
  void add_number(long n) {
    char digits[24];
    size_t i = 0;
    const bool negative = n < 0;
    unsigned long u =
        negative ? 0UL - static_cast<unsigned long>(n) : static_cast<unsigned long>(n);
    do {
      digits[i++] = static_cast<char>('0' + u % 10);
      u /= 10;
    } while (u != 0 && i < sizeof(digits));
    if (negative) add("-");
    while (i > 0) add(std::string_view(&digits[--i], 1));
  }
  std::string_view view() const { return {buf_, len_}; }

 private:
  char buf_[256];
  size_t len_ = 0;
};

void write_all(int fd, std::string_view s) {
  while (!s.empty()) {
    const ssize_t n = ::write(fd, s.data(), s.size());
    if (n <= 0) return;
    s.remove_prefix(static_cast<size_t>(n));
  }
}

void on_sigsys(int, siginfo_t* info, void*) {
  const int nr = info->si_syscall;
  const char* name = nr >= 0 && nr < kMaxSyscall && g_names[static_cast<size_t>(nr)] != nullptr
                         ? g_names[static_cast<size_t>(nr)]
                         : "unknown";
  LineBuffer message;
  message.add("seccomp: the ");
  message.add(t_class != nullptr ? t_class : "unconfined");
  message.add(" thread made a forbidden system call: ");
  message.add(name);
  message.add(" (");
  message.add_number(nr);
  message.add(")");
  LineBuffer line;
  line.add("minivmm: error: ");
  line.add(message.view());
  line.add("\n");
  write_all(STDERR_FILENO, line.view());
  if (g_status_fd >= 0) {
    LineBuffer status;
    status.add_number(kExitSeccomp);
    status.add(" seccomp ");
    status.add(message.view());
    status.add("\n");
    write_all(g_status_fd, status.view());
  }
  ::_exit(kExitSeccomp);
}

// An argument comparison (libseccomp's SCMP_A0..SCMP_A5 leave datum_b out, which clang's
// -Wmissing-field-initializers rejects).
scmp_arg_cmp arg(unsigned index, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
  return scmp_arg_cmp{index, op, a, b};
}

// One filter under construction: libseccomp's context with rules added by name.
class Filter {
 public:
  explicit Filter(uint32_t default_action) : ctx_(seccomp_init(default_action)) {
    if (ctx_ == nullptr) throw std::runtime_error("seccomp_init failed");
  }
  ~Filter() { seccomp_release(ctx_); }
  Filter(const Filter&) = delete;
  Filter& operator=(const Filter&) = delete;

  void allow(int nr) { add(nr, {}); }
  void allow(int nr, std::initializer_list<scmp_arg_cmp> args) { add(nr, args); }
  void load() {
    if (const int r = seccomp_load(ctx_); r != 0) {
      throw std::runtime_error(std::string("seccomp_load: ") + std::strerror(-r));
    }
  }

 private:
  void add(int nr, std::initializer_list<scmp_arg_cmp> args) {
    const std::vector<scmp_arg_cmp> v(args);
    const int r = seccomp_rule_add_array(ctx_, SCMP_ACT_ALLOW, nr, static_cast<unsigned>(v.size()),
                                         v.empty() ? nullptr : v.data());
    if (r != 0) {
      throw std::runtime_error("seccomp_rule_add(" + std::to_string(nr) +
                               "): " + std::strerror(-r));
    }
  }
  scmp_filter_ctx ctx_;
};

// What every thread does while the guest runs: memory, locks, time, its own fds, epoll,
// logging, signals to its own process, and ending.
void allow_common(Filter& f) {
  const auto no_exec = arg(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, 0);
  for (int nr : {SCMP_SYS(read),
                 SCMP_SYS(write),
                 SCMP_SYS(readv),
                 SCMP_SYS(writev),
                 SCMP_SYS(close),
                 SCMP_SYS(futex),
                 SCMP_SYS(restart_syscall),
                 SCMP_SYS(rt_sigreturn),
                 SCMP_SYS(rt_sigprocmask),
                 SCMP_SYS(exit),
                 SCMP_SYS(exit_group),
                 SCMP_SYS(sched_yield),
                 SCMP_SYS(nanosleep),
                 SCMP_SYS(clock_nanosleep),
                 SCMP_SYS(clock_gettime),
                 SCMP_SYS(gettimeofday),
                 SCMP_SYS(getpid),
                 SCMP_SYS(gettid),
                 SCMP_SYS(madvise),
                 SCMP_SYS(munmap),
                 SCMP_SYS(brk),
                 SCMP_SYS(mremap),
                 SCMP_SYS(epoll_wait),
                 SCMP_SYS(epoll_pwait),
                 SCMP_SYS(epoll_ctl),
                 SCMP_SYS(fstat)}) {
    f.allow(nr);
  }
  f.allow(SCMP_SYS(mmap), {no_exec});
  f.allow(SCMP_SYS(mprotect), {no_exec});
  // glibc's fstat(): newfstatat(fd, "", buf, AT_EMPTY_PATH), on an fd we hold.
  f.allow(SCMP_SYS(newfstatat), {arg(3, SCMP_CMP_EQ, AT_EMPTY_PATH)});
#if MINIVMM_SANITIZER_RUNTIME
  // Sanitizer builds (tests only): what the ASan/UBSan runtime calls on its own -- an
  // alternate signal stack per thread, and a pipe to probe memory while it reports.
  for (int nr : {SCMP_SYS(sigaltstack), SCMP_SYS(pipe2)}) f.allow(nr);
#endif
  // pthread_kill / raise: only to threads of this process.
  f.allow(SCMP_SYS(tgkill), {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(::getpid()))});
}

// Each class's own allowlist, on top of allow_common, given the thread's own fd (vcpu: its
// vCPU fd; blk: its io_uring ring, or -1).
void allow_main(Filter& f, int) {
  // The terminal (isatty, raw mode and its restore, the window size) on stdin/stdout/
  // stderr; never TIOCSTI or TIOCLINUX.
  for (int fd = 0; fd <= 2; ++fd) {
    for (scmp_datum_t request :
         std::initializer_list<scmp_datum_t>{TCGETS, TCSETS, TCSETSW, TCSETSF, TIOCGWINSZ}) {
      f.allow(SCMP_SYS(ioctl),
              {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(fd)), arg(1, SCMP_CMP_EQ, request)});
    }
  }
  // Output drains (poll), O_NONBLOCK restored on exit, disks flushed at the stop, the
  // status file (opened before the guest ran) written, and the sockets of named console
  // ports removed at exit (unlink: the one file-system change the main thread may make).
  for (int nr : {SCMP_SYS(poll), SCMP_SYS(ppoll), SCMP_SYS(fdatasync), SCMP_SYS(fsync),
                 SCMP_SYS(pwrite64), SCMP_SYS(unlink)}) {
    f.allow(nr);
  }
  f.allow(SCMP_SYS(flock), {arg(1, SCMP_CMP_EQ, LOCK_UN)});  // disk images, at exit
  // minivmm's virtiofsd processes: reaped when they end, stopped at exit (SIGTERM, then
  // SIGKILL if they linger) through their pidfds, so that no pid can be reused under us.
  f.allow(SCMP_SYS(waitid));
  for (int sig : {SIGTERM, SIGKILL}) {
    f.allow(SCMP_SYS(pidfd_send_signal), {arg(1, SCMP_CMP_EQ, static_cast<scmp_datum_t>(sig))});
  }
  for (int cmd : {F_GETFL, F_SETFL}) {
    f.allow(SCMP_SYS(fcntl), {arg(1, SCMP_CMP_EQ, static_cast<scmp_datum_t>(cmd))});
  }
}

void allow_vcpu(Filter& f, int vcpu_fd) {
  if (vcpu_fd < 0) throw std::runtime_error("seccomp: the vcpu filter needs the vCPU's fd");
  const auto own = arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(vcpu_fd));
  f.allow(SCMP_SYS(ioctl), {own, arg(1, SCMP_CMP_EQ, KVM_RUN)});
  f.allow(SCMP_SYS(ioctl), {own, arg(1, SCMP_CMP_EQ, KVM_GET_REGS)});  // crash reports
}

void allow_blk(Filter& f, int ring_fd) {
  // io_uring_enter only on the disk's own ring (restricted: devices/uring_backend.cc); a
  // disk on the sync engine has none.
  if (ring_fd >= 0) {
    f.allow(SCMP_SYS(io_uring_enter), {arg(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(ring_fd))});
  }
  for (int nr : {SCMP_SYS(pread64), SCMP_SYS(pwrite64), SCMP_SYS(preadv),
                 SCMP_SYS(pwritev), SCMP_SYS(preadv2), SCMP_SYS(pwritev2), SCMP_SYS(fdatasync),
                 SCMP_SYS(fsync), SCMP_SYS(fallocate)}) {
    f.allow(nr);
  }
}

void allow_rng(Filter& f, int) {
  f.allow(SCMP_SYS(getrandom));
}

void allow_console(Filter& f, int) {
  // Host sockets of named ports: one client at a time is accepted and talked to.
  for (int nr : {SCMP_SYS(accept4), SCMP_SYS(recvfrom), SCMP_SYS(sendto)}) f.allow(nr);
}

void allow_vhost(Filter& f, int) {
  // vhost-user messages (fds attached) to and from the backend, each reply awaited with a
  // deadline.
  for (int nr : {SCMP_SYS(sendmsg), SCMP_SYS(recvmsg), SCMP_SYS(poll), SCMP_SYS(ppoll)}) {
    f.allow(nr);
  }
}

void allow_net(Filter& f, int) {
  // Frames to and from the backend: a tap (read/writev, in allow_common; its offloads set
  // when the guest acked them), or a stream socket to passt or a peer (recvfrom/sendmsg/
  // sendto, never connect or accept).
  f.allow(SCMP_SYS(ioctl), {arg(1, SCMP_CMP_EQ, TUNSETOFFLOAD)});
  for (int nr : {SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(sendmsg)}) f.allow(nr);
}

void allow_vsock(Filter& f, int) {
  // virtio-vsock: host clients accepted on its listening socket, and the guest's
  // connections to PATH_P, for which it makes AF_UNIX stream sockets (non-blocking,
  // close-on-exec: the one socket() any class may call after boot) and connects them.
  for (int nr : {SCMP_SYS(accept4), SCMP_SYS(recvfrom), SCMP_SYS(sendto), SCMP_SYS(shutdown)}) {
    f.allow(nr);
  }
  f.allow(SCMP_SYS(socket),
          {arg(0, SCMP_CMP_EQ, AF_UNIX),
           arg(1, SCMP_CMP_EQ, static_cast<scmp_datum_t>(SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC)),
           arg(2, SCMP_CMP_EQ, 0)});
  f.allow(SCMP_SYS(connect), {arg(2, SCMP_CMP_EQ, sizeof(sockaddr_un))});
}

// The classes: a new kind of thread comes with its row here, and the probe table
// (tests/vmm/seccomp_test.cc) covers every row.
struct ClassFilter {
  const char* name;
  void (*allow)(Filter& f, int vcpu_fd);
};
constexpr ClassFilter kClassFilters[] = {{"main", allow_main},
                                         {"vcpu", allow_vcpu},
                                         {"blk", allow_blk},
                                         {"rng", allow_rng},
                                         {"console", allow_console},
                                         {"vhost", allow_vhost},
                                         {"net", allow_net},
                                         {"vsock", allow_vsock}};

void allow_class(Filter& f, std::string_view thread_class, int vcpu_fd) {
  for (const ClassFilter& c : kClassFilters) {
    if (thread_class == c.name) return c.allow(f, vcpu_fd);
  }
  throw std::runtime_error("seccomp: no filter for thread class '" + std::string(thread_class) +
                           "'");
}

}  // namespace

void init_seccomp(SeccompMode mode, int status_fd) {
  g_mode.store(mode, std::memory_order_release);
  g_status_fd = status_fd;
  if (mode == SeccompMode::kOff) return;
  for (int nr = 0; nr < kMaxSyscall; ++nr) {
    g_names[static_cast<size_t>(nr)] = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
  }
  struct sigaction sa {};
  sa.sa_sigaction = on_sigsys;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGSYS, &sa, nullptr);
}

SeccompMode seccomp_mode() {
  return g_mode.load(std::memory_order_acquire);
}

void install_seccomp_filter(const char* thread_class, int vcpu_fd) {
  const SeccompMode mode = seccomp_mode();
  t_class = thread_class;
  if (mode == SeccompMode::kOff) return;
  Filter f(mode == SeccompMode::kOn ? SCMP_ACT_TRAP : SCMP_ACT_LOG);
  allow_common(f);
  allow_class(f, thread_class, vcpu_fd);
  f.load();
}

std::vector<const char*> seccomp_thread_classes() {
  std::vector<const char*> names;
  for (const ClassFilter& c : kClassFilters) names.push_back(c.name);
  return names;
}

bool parse_seccomp_mode(const std::string& text, SeccompMode& mode) {
  if (text == "on" || text == "true") {
    mode = SeccompMode::kOn;
  } else if (text == "log") {
    mode = SeccompMode::kLog;
  } else if (text == "off" || text == "false") {
    mode = SeccompMode::kOff;
  } else {
    return false;
  }
  return true;
}

}  // namespace minivmm::vmm
