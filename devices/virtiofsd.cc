#include "devices/virtiofsd.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace minivmm::devices {
namespace {

// Where the host's root is bound for its daemon (see child_main).
constexpr const char* kRootShare = "/run/minivmm-root";

// What the child does before the exec: its own mount namespace with the share bound there.
struct MountPlan {
  const char* dir;
  unsigned long remount_flags;
};

// Between fork and exec: async-signal-safe calls only.
const char* mount_share(const void* context) {
  const auto& plan = *static_cast<const MountPlan*>(context);
  const char* dir = plan.dir;
  if (::unshare(CLONE_NEWNS) != 0) return "cannot make its mount namespace";
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return "cannot make its mount namespace";
  }
  // The share is DIR bound onto itself -- except the host's root: binding / onto / as well
  // leaves virtiofsd's own pivot_root(".", ".") failing (EBUSY). That one is bound at
  // kRootShare instead, on a tmpfs over /run in this namespace, which the share then shows
  // in place of the host's /run (a host-root guest mounts a fresh /run anyway).
  const char* target = dir;
  if (dir[0] == '/' && dir[1] == '\0') {
    target = kRootShare;
    if (::mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0700") != 0 ||
        ::mkdir(kRootShare, 0700) != 0) {
      return "cannot bind-mount the directory";
    }
  }
  if (::mount(dir, target, nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return "cannot bind-mount the directory";
  }
  if (::mount(nullptr, target, nullptr, MS_REMOUNT | MS_BIND | plan.remount_flags, nullptr) != 0) {
    return "cannot remount the directory nosuid,nodev";
  }
  return nullptr;
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
  const MountPlan plan{source.c_str(), flags};
  ChildProcess::Spec spec;
  spec.program = binary;
  spec.args = {"--fd=3",     "-o", "source=" + shared, "-o", "sandbox=namespace", "-o",
               "cache=auto", "-o", "log_level=err"};
  spec.fds = {listener.get()};
  spec.setup = mount_share;
  spec.setup_context = &plan;
  auto child = ChildProcess::spawn(spec);
  if (!child) return what + ": " + child.error();
  Started started{std::move(child).value(), {}};
  started.socket = vmm::UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!started.socket.valid() ||
      ::connect(started.socket.get(), reinterpret_cast<sockaddr*>(&addr), addr_len) != 0) {
    return what + ": cannot connect to virtiofsd: " + std::strerror(errno);
  }
  return started;
}

}  // namespace minivmm::devices
