#include "vmm/jail.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string_view>

#include "devices/thread_class.h"
#include "vmm/fd.h"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#include <sanitizer/lsan_interface.h>
#define MINIVMM_LSAN 1
#endif
#endif

namespace minivmm::vmm {
namespace {

// Access rights by Landlock ABI version (Documentation/userspace-api/landlock.rst); the
// later ones are spelled out because Debian 12's headers stop at REFER.
constexpr uint64_t kFsV1 = (1ULL << 13) - 1;  // EXECUTE .. MAKE_SYM
constexpr uint64_t kFsRefer = 1ULL << 13;     // v2
constexpr uint64_t kFsTruncate = 1ULL << 14;  // v3
constexpr uint64_t kFsIoctlDev = 1ULL << 15;  // v5
constexpr uint64_t kNetBindTcp = 1ULL << 0;   // v4
constexpr uint64_t kNetConnectTcp = 1ULL << 1;

// struct landlock_ruleset_attr as of ABI 4 (handled_access_net); the kernel takes the size.
struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
};

std::optional<UserIds> g_user;
#if MINIVMM_FAULT_INJECTION
// Test builds only: the thread class named by MINIVMM_TEST_SECCOMP_VIOLATION (read once, in
// init_confinement) makes one forbidden call, openat, right after its filter is installed,
// so that tests can see the real binary's reporter end it (tests/vmm/e2e_test.cc). A
// release build has no such variable: no path to a violation exists there by design.
std::string g_violating_class;
#endif
UniqueFd g_ruleset_all;   // every file-system access denied
UniqueFd g_ruleset_main;  // the same, but files may be removed in `removable_dirs`

uint64_t fs_rights(int abi) {
  uint64_t rights = kFsV1;
  if (abi >= 2) rights |= kFsRefer;
  if (abi >= 3) rights |= kFsTruncate;
  if (abi >= 5) rights |= kFsIoctlDev;
  return rights;
}

UniqueFd make_ruleset(int abi, const std::vector<std::string>& removable_dirs) {
  RulesetAttr attr{fs_rights(abi), abi >= 4 ? kNetBindTcp | kNetConnectTcp : 0};
  const size_t size = abi >= 4 ? sizeof(RulesetAttr) : sizeof(uint64_t);
  UniqueFd ruleset(static_cast<int>(::syscall(SYS_landlock_create_ruleset, &attr, size, 0)));
  if (!ruleset.valid()) {
    throw std::runtime_error(std::string("landlock_create_ruleset: ") + std::strerror(errno));
  }
  for (const std::string& dir : removable_dirs) {
    UniqueFd parent(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!parent.valid()) {
      throw std::runtime_error("landlock: cannot open " + dir + ": " + std::strerror(errno));
    }
    landlock_path_beneath_attr rule{};
    rule.allowed_access = LANDLOCK_ACCESS_FS_REMOVE_FILE;
    rule.parent_fd = parent.get();
    if (::syscall(SYS_landlock_add_rule, ruleset.get(), LANDLOCK_RULE_PATH_BENEATH, &rule, 0) !=
        0) {
      throw std::runtime_error("landlock_add_rule " + dir + ": " + std::strerror(errno));
    }
  }
  return ruleset;
}

void hook(const char* thread_class, int own_fd) {
  confine_thread(thread_class, own_fd);
}

}  // namespace

void jail_at_start() {
  // Nothing minivmm did not open itself: a leaked fd (a socket, a directory) is a way out.
  if (::syscall(SYS_close_range, 3U, ~0U, 0U) != 0) {
    for (int fd = 3; fd < 1024; ++fd) ::close(fd);
  }
  const rlimit no_core{0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);
  ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
  ::signal(SIGXFSZ, SIG_IGN);
}

int landlock_abi() {
  const long abi =
      ::syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  return abi > 0 ? static_cast<int>(abi) : 0;
}

void init_confinement(const ConfinementOptions& options) {
  if (options.user && ::geteuid() != 0) {
    throw std::runtime_error("--user drops root's privileges, but minivmm runs as uid " +
                             std::to_string(::geteuid()));
  }
  g_user = options.user;
#if MINIVMM_FAULT_INJECTION
  if (const char* c = std::getenv("MINIVMM_TEST_SECCOMP_VIOLATION")) g_violating_class = c;
#endif
  init_seccomp(options.seccomp, options.status_fd);
  if (options.landlock) {
    const int abi = landlock_abi();
    if (abi == 0) {
      spdlog::info(
          "Landlock: not available on this kernel ({}); file-system access is "
          "limited by seccomp alone",
          std::strerror(errno));
    } else {
      g_ruleset_all = make_ruleset(abi, {});
      g_ruleset_main = make_ruleset(abi, options.removable_dirs);
      spdlog::debug("Landlock ABI {}: every thread denies file-system access", abi);
    }
  }
  devices::set_thread_class_hook(hook);
}

void confine_thread(const char* thread_class, int own_fd) {
  const bool main = std::string_view(thread_class) == "main";
  if (g_user) {
    // This thread only (raw system calls), groups first while it may still change them.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0 ||
        ::syscall(SYS_setresgid, g_user->gid, g_user->gid, g_user->gid) != 0 ||
        ::syscall(SYS_setresuid, g_user->uid, g_user->uid, g_user->uid) != 0) {
      throw std::runtime_error(std::string("--user: cannot drop to ") +
                               std::to_string(g_user->uid) + ":" + std::to_string(g_user->gid) +
                               ": " + std::strerror(errno));
    }
  }
  const UniqueFd& ruleset = main ? g_ruleset_main : g_ruleset_all;
  if (ruleset.valid() && ::syscall(SYS_landlock_restrict_self, ruleset.get(), 0) != 0) {
    throw std::runtime_error(std::string("landlock_restrict_self: ") + std::strerror(errno));
  }
  install_seccomp_filter(thread_class, own_fd);
#if MINIVMM_FAULT_INJECTION
  if (g_violating_class == thread_class) {
    const long fd = ::syscall(SYS_openat, AT_FDCWD, "/", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) ::close(static_cast<int>(fd));  // --seccomp off or log: nothing happens
  }
#endif
  if (main) {
    // The main thread is confined last: nothing needs the rulesets any more.
    g_ruleset_all.reset();
    g_ruleset_main.reset();
  }
}

void jail_after_setup(const JailLimits& limits) {
#ifdef MINIVMM_LSAN
  // LeakSanitizer's check at exit stops the world with ptrace from a cloned thread, which
  // the main thread's filter forbids (and, once minivmm is not dumpable, ptrace too): check
  // now, while it still may, which also turns the exit-time check off. Sanitizer builds only.
  __lsan_do_leak_check();
#endif
  // Every fd the VM needs is open; at most `extra_fds` more come (accepted port clients).
  int highest = 2;
  if (DIR* dir = ::opendir("/proc/self/fd")) {
    const int own = ::dirfd(dir);
    while (const dirent* entry = ::readdir(dir)) {
      const int fd = std::atoi(entry->d_name);
      if (fd > highest && fd != own) highest = fd;
    }
    ::closedir(dir);
  } else {
    highest = 1023;
  }
  const rlim_t files = static_cast<rlim_t>(highest) + 1 + limits.extra_fds + 8;
  const rlimit nofile{files, files};
  if (::setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
    spdlog::warn("jail: cannot lower RLIMIT_NOFILE: {}", std::strerror(errno));
  }
  if (limits.fsize > 0) {
    const rlimit fsize{limits.fsize, limits.fsize};
    if (::setrlimit(RLIMIT_FSIZE, &fsize) != 0) {
      spdlog::warn("jail: cannot set RLIMIT_FSIZE: {}", std::strerror(errno));
    }
  }
  ::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
}

}  // namespace minivmm::vmm
