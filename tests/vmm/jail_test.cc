// The jail (vmm/jail.h), each part in a child process so that the test runner keeps its
// own fds, limits and file-system access: inherited fds closed, core dumps off, no new
// privileges; Landlock denying every file-system access to a confined thread, except the
// removal of files in the main thread's socket directories; the limits set after setup.
#include "vmm/jail.h"

#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>

namespace {

// Runs `body` in a child; the child's exit status comes back (its return value, or 100 +
// the line of a failed expectation).
int in_child(const std::function<int()>& body) {
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) ::_exit(body());
  int ws = 0;
  REQUIRE(::waitpid(pid, &ws, 0) == pid);
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
}

#define EXPECT(cond) \
  if (!(cond)) return 100 + (__LINE__ % 100)

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/minivmm-jail-XXXXXX";
    REQUIRE(::mkdtemp(tmpl) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    const std::string cmd = "rm -rf '" + path_ + "'";
    [[maybe_unused]] int rc = std::system(cmd.c_str());
  }
  std::string file(const std::string& name, bool create = false) const {
    const std::string p = path_ + "/" + name;
    if (create) ::close(::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    return p;
  }

 private:
  std::string path_;
};

bool exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace

TEST_CASE("jail at start: inherited fds closed, no core dumps, no new privileges", "[jail]") {
  CHECK(in_child([] {
          const int leaked = ::open("/dev/null", O_RDONLY);  // no O_CLOEXEC: inherited
          EXPECT(leaked >= 3);
          EXPECT(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 0);
          minivmm::vmm::jail_at_start();
          EXPECT(::fcntl(leaked, F_GETFD) == -1 && errno == EBADF);
          EXPECT(::fcntl(2, F_GETFD) != -1);  // stdio stays
          rlimit core{};
          EXPECT(::getrlimit(RLIMIT_CORE, &core) == 0 && core.rlim_cur == 0 && core.rlim_max == 0);
          EXPECT(::prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1);
          return 0;
        }) == 0);
}

TEST_CASE("jail after setup: fds limited to what is open, file size to the disk, not dumpable",
          "[jail]") {
  CHECK(in_child([] {
          minivmm::vmm::jail_at_start();  // fds 0-2 only: the count below is exact
          minivmm::vmm::JailLimits limits;
          limits.fsize = 1 << 20;
          limits.extra_fds = 2;
          minivmm::vmm::jail_after_setup(limits);
          rlimit files{};
          EXPECT(::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur == 3 + 2 + 8);
          // No new fds beyond the room it left.
          int opened = 0;
          while (::open("/dev/null", O_RDONLY | O_CLOEXEC) >= 0) ++opened;
          EXPECT(errno == EMFILE && opened == 2 + 8);
          rlimit fsize{};
          EXPECT(::getrlimit(RLIMIT_FSIZE, &fsize) == 0 && fsize.rlim_cur == (1 << 20));
          EXPECT(::prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0);
          return 0;
        }) == 0);
}

TEST_CASE("jail: past RLIMIT_FSIZE a write fails with EFBIG and minivmm lives", "[jail]") {
  TempDir dir;
  const std::string path = dir.file("grow");
  CHECK(in_child([&path] {
          minivmm::vmm::jail_at_start();  // SIGXFSZ ignored
          const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
          EXPECT(fd >= 0);
          const rlimit fsize{4096, 4096};
          EXPECT(::setrlimit(RLIMIT_FSIZE, &fsize) == 0);
          char block[4096] = {};
          EXPECT(::pwrite(fd, block, sizeof block, 0) == 4096);
          EXPECT(::pwrite(fd, block, 1, 4096) == -1 && errno == EFBIG);
          return 0;
        }) == 0);
}

TEST_CASE("jail: Landlock denies a confined thread every file-system access", "[jail]") {
  const int abi = minivmm::vmm::landlock_abi();
  if (abi == 0) {
    WARN("SKIPPED: this kernel has no Landlock (or it is disabled): nothing to check");
    return;
  }
  TempDir dir;
  const std::string sockets = dir.file("");
  const std::string mine = dir.file("port.sock", true);
  TempDir other;
  const std::string theirs = other.file("file", true);
  for (bool landlock : {true, false}) {
    INFO("landlock " << (landlock ? "on" : "off (the control)"));
    // A worker: no open, no unlink, no mkdir anywhere.
    CHECK(in_child([&] {
            minivmm::vmm::ConfinementOptions options;
            options.seccomp = minivmm::vmm::SeccompMode::kOff;  // Landlock alone
            options.landlock = landlock;
            minivmm::vmm::init_confinement(options);
            minivmm::vmm::confine_thread("rng");
            const int fd = ::open("/etc/hostname", O_RDONLY | O_CLOEXEC);
            if (fd >= 0) ::close(fd);
            const bool opened = fd >= 0;
            const bool made = ::mkdir((theirs + ".d").c_str(), 0755) == 0;
            EXPECT(opened == !landlock);
            EXPECT(made == !landlock);
            return 0;
          }) == 0);
    // The main thread: may remove files in its socket directories, and nothing else.
    CHECK(in_child([&] {
            minivmm::vmm::ConfinementOptions options;
            options.seccomp = minivmm::vmm::SeccompMode::kOff;
            options.landlock = landlock;
            options.removable_dirs = {sockets};
            minivmm::vmm::init_confinement(options);
            minivmm::vmm::confine_thread("main");
            EXPECT(::unlink(mine.c_str()) == 0);
            const bool removed_theirs = ::unlink(theirs.c_str()) == 0;
            EXPECT(removed_theirs == !landlock);
            EXPECT((::open("/etc/hostname", O_RDONLY | O_CLOEXEC) >= 0) == !landlock);
            return 0;
          }) == 0);
    CHECK_FALSE(exists(mine));
    CHECK(exists(theirs) == landlock);
    ::close(::open(mine.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ::close(::open(theirs.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ::rmdir((theirs + ".d").c_str());
  }
}

// The vsock worker connects guest connections to PATH_P after it is confined: Landlock's
// file-system rights (every one this kernel has, handled and denied) do not cover
// connecting to a unix socket by its path, and its seccomp filter allows the socket.
TEST_CASE("jail: a confined vsock worker can connect to a unix socket by path", "[jail]") {
  TempDir dir;
  const std::string path = dir.file("v.sock_5000");
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(listener >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.size());
  REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  for (bool landlock : {true, false}) {
    INFO("landlock " << (landlock ? "on" : "off (the control)"));
    CHECK(in_child([&] {
            minivmm::vmm::ConfinementOptions options;
            options.seccomp = minivmm::vmm::SeccompMode::kOn;
            options.landlock = landlock;
            minivmm::vmm::init_confinement(options);
            minivmm::vmm::confine_thread("vsock");
            const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            EXPECT(fd >= 0);
            EXPECT(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0);
            return 0;
          }) == 0);
    const int peer = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    CHECK(peer >= 0);
    ::close(peer);
  }
  ::close(listener);
}
