// libFuzzer target: the vhost-user frontend against a hostile backend. The input is
// everything the backend ever sends, written into the socket before the frontend starts
// (then the backend's side stops sending: EOF after the input). The frontend runs the
// sequence a virtio-fs activation makes -- handshake, SET_FEATURES, SET_MEM_TABLE, a ring,
// SET_VRING_ENABLE, GET_VRING_BASE for two rings -- stopping where a call fails. Checks: no
// crash, no hang (every wait ends at EOF or the short deadline), no sanitizer report, no fd
// leaked from the input's SCM_RIGHTS (none can be sent this way) or by the frontend, and once
// the connection is broken every call fails at once.
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>

#include "devices/vhost_user.h"

using namespace minivmm;
using namespace std::chrono_literals;

namespace {

// The most the backend's side may hold unread: what the frontend sends stays there.
constexpr size_t kMaxInput = 16 * 1024;

int open_fds() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) {
    if (::fcntl(fd, F_GETFD) >= 0) ++n;
  }
  return n;
}

void check(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > kMaxInput) return 0;
  const int fds_before = open_fds();
  {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return 0;
    vmm::UniqueFd backend(sv[1]);
    size_t done = 0;
    while (done < size) {
      const ssize_t n = ::send(backend.get(), data + done, size - done, MSG_NOSIGNAL);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
    ::shutdown(backend.get(), SHUT_WR);  // the frontend reads the input, then EOF

    devices::VhostUserFrontend fe(vmm::UniqueFd(sv[0]), 20ms);
    vmm::UniqueFd memfd(::memfd_create("fuzz-vhost", MFD_CLOEXEC));
    const devices::VhostUserMemory region{0, 1 << 20, 0x7000'0000, memfd.get(), 0};
    const devices::VhostUserVring ring{1, 128, 0x1000, 0x2000, 0x3000, 0,
                                       memfd.get(), memfd.get(), -1};
    bool ok = static_cast<bool>(fe.handshake((1u << 3) | 1u, 2)) &&
              static_cast<bool>(fe.set_features(uint64_t{1} << 32)) &&
              static_cast<bool>(fe.set_mem_table({&region, 1})) &&
              static_cast<bool>(fe.set_vring(ring)) &&
              static_cast<bool>(fe.set_vring_enable(1, true));
    if (ok) {
      for (uint32_t q = 0; q < 2 && ok; ++q) ok = static_cast<bool>(fe.get_vring_base(q));
    }
    if (fe.broken()) {
      const auto t0 = std::chrono::steady_clock::now();
      check(!fe.get_vring_base(0));
      check(!fe.set_features(0));
      check(std::chrono::steady_clock::now() - t0 < 10ms);
    }
  }
  check(open_fds() == fds_before);
  return 0;
}
