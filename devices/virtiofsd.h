// Virtiofsd: one virtiofsd process that minivmm starts for a `--fs tag=TAG,path=DIR` share,
// watches and stops: QEMU's C daemon, /usr/lib/qemu/virtiofsd (Debian package
// qemu-system-common; MINIVMM_VIRTIOFSD names another binary, for tests).
//
// How it is started (each choice for a reason):
//  - `--fd=3`: a listening unix socket made here (an abstract address, so no file and no
//    pid file, which --socket-path needs) and connected to before the daemon runs; it
//    accepts that one connection, serves it, and exits when it closes.
//  - `-o source=DIR`, where DIR is first bind-mounted onto itself in a mount namespace of
//    the daemon's own, `nosuid,nodev` (and `ro` with readonly=on; the C daemon has no
//    read-only mode): the daemon runs as root with CAP_MKNOD and CAP_FSETID, so a guest
//    root could otherwise create setuid files or device nodes in the share.
//  - `-o sandbox=namespace` (its default; it pivots into DIR), `-o cache=auto` (close-to-
//    open consistency: the host may change the files), `-o log_level=err`: its errors reach
//    minivmm's stderr, its chatter does not (at warn it prints "fv_remove_watch: TODO!" at
//    every ring stop, which in --exec mode would land in the command's stderr).
//  - its own session (a Ctrl-C on minivmm's terminal is minivmm's to handle), every
//    signal reset, no fd of minivmm's but the socket, and SIGKILL when minivmm dies.
//
// Threads: the VMM's main thread.
#pragma once

#include <string>

#include "devices/child_process.h"

#include "virtio/result.h"
#include "vmm/fd.h"

namespace minivmm::devices {

class Virtiofsd {
 public:
  static constexpr const char* kDefaultPath = "/usr/lib/qemu/virtiofsd";

  struct Started {
    // virtiofsd answers SIGTERM (ChildProcess::stop) by exiting quietly; stop it before its
    // connection closes (a hang-up first makes it log "Unexpected poll revents"). Left
    // alone, it exits when its connection closes.
    ChildProcess daemon;
    vmm::UniqueFd socket;  // connected to the daemon
  };
  // Checks what can be checked first (root, the binary, the directory), then starts the
  // daemon. On success the socket connected to it; errors are one line for the user.
  static Result<Started, std::string> start(const std::string& tag, const std::string& dir,
                                            bool read_only);
};

}  // namespace minivmm::devices
