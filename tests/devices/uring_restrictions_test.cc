// The io_uring backend's ring is locked down (devices/uring_backend.cc, create()): only
// readv, writev, fsync and fallocate, only on its registered files (IOSQE_FIXED_FILE
// required, IOSQE_IO_DRAIN the only other flag), and no register operation once it is
// enabled. seccomp does not look inside SQEs, so this is what keeps a confused blk worker
// from opening files or touching other fds through its ring. Each case submits one SQE
// straight onto the backend's ring and checks its CQE: the allowed operations complete,
// everything else fails with -EACCES before the kernel does anything.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "devices/disk_image.h"
#include "devices/uring_backend.h"
#include "tests/devices/blk_harness.h"

using namespace minivmm;
using test::TempImage;

namespace {

constexpr int kFixedImage = 0;  // the ring's registered file 0: the image

// Submits one SQE prepared by `prep` on `ring` and returns its CQE's result.
int submit_one(io_uring& ring, const std::function<void(io_uring_sqe*)>& prep) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  REQUIRE(sqe != nullptr);
  prep(sqe);
  io_uring_sqe_set_data64(sqe, 0x5eed);
  REQUIRE(io_uring_submit(&ring) == 1);
  io_uring_cqe* cqe = nullptr;
  REQUIRE(io_uring_wait_cqe(&ring, &cqe) == 0);
  CHECK(io_uring_cqe_get_data64(cqe) == 0x5eed);
  const int res = cqe->res;
  io_uring_cqe_seen(&ring, cqe);
  return res;
}

struct Case {
  const char* what;
  int expected;  // the CQE's result
  std::function<void(io_uring_sqe*)> prep;
};

}  // namespace

TEST_CASE("blk io_uring: the ring runs only readv/writev/fsync/fallocate on its fixed files",
          "[blk][uring][seccomp]") {
  std::string reason;
  if (!devices::io_uring_available(reason)) {
    WARN("SKIPPED: io_uring unavailable: " << reason);
    return;
  }
  TempImage img(1 << 16);
  devices::DiskImage image(img.path(), false, false);
  std::string err;
  auto backend = devices::UringBackend::create(image, 8, err);
  REQUIRE(backend);
  io_uring& ring = backend->ring_for_testing();
  CHECK(backend->ring_fd() == ring.ring_fd);

  // A file the ring never registered, which a forbidden SQE would read.
  TempImage other(4096);
  const int other_fd = ::open(other.path().c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(other_fd >= 0);

  std::vector<uint8_t> buf(4096);
  iovec iov{buf.data(), buf.size()};
  const std::vector<Case> cases = {
      // What virtio-blk issues.
      {"readv on the fixed image", 4096,
       [&](io_uring_sqe* s) {
         io_uring_prep_readv(s, kFixedImage, &iov, 1, 0);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
       }},
      {"writev on the fixed image", 4096,
       [&](io_uring_sqe* s) {
         io_uring_prep_writev(s, kFixedImage, &iov, 1, 4096);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
       }},
      {"fsync (datasync, drained) on the fixed image", 0,
       [&](io_uring_sqe* s) {
         io_uring_prep_fsync(s, kFixedImage, IORING_FSYNC_DATASYNC);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE | IOSQE_IO_DRAIN);
       }},
      {"fallocate (punch hole) on the fixed image", 0,
       [&](io_uring_sqe* s) {
         io_uring_prep_fallocate(s, kFixedImage, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                 8192, 4096);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
       }},
      // Everything else.
      {"openat", -EACCES,
       [&](io_uring_sqe* s) { io_uring_prep_openat(s, AT_FDCWD, "/etc/hostname", O_RDONLY, 0); }},
      {"openat with IOSQE_FIXED_FILE", -EACCES,
       [&](io_uring_sqe* s) {
         io_uring_prep_openat(s, AT_FDCWD, "/etc/hostname", O_RDONLY, 0);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
       }},
      {"readv on a plain (not registered) fd", -EACCES,
       [&](io_uring_sqe* s) { io_uring_prep_readv(s, other_fd, &iov, 1, 0); }},
      {"read (not readv) on the fixed image", -EACCES,
       [&](io_uring_sqe* s) {
         io_uring_prep_read(s, kFixedImage, buf.data(), 4096, 0);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE);
       }},
      {"readv on the fixed image with IOSQE_ASYNC", -EACCES,
       [&](io_uring_sqe* s) {
         io_uring_prep_readv(s, kFixedImage, &iov, 1, 0);
         io_uring_sqe_set_flags(s, IOSQE_FIXED_FILE | IOSQE_ASYNC);
       }},
      {"nop", -EACCES, [&](io_uring_sqe* s) { io_uring_prep_nop(s); }},
      {"close of the fixed image", -EACCES,
       [&](io_uring_sqe* s) { io_uring_prep_close_direct(s, kFixedImage); }},
      {"socket", -EACCES, [&](io_uring_sqe* s) { io_uring_prep_socket(s, AF_UNIX, SOCK_STREAM, 0, 0); }},
  };
  bool poisoned = false;
  for (const Case& c : cases) {
    INFO(c.what);
    if (c.expected == -EACCES && !poisoned) {
      // From here on nothing may touch the buffer.
      CHECK(img.read(4096, 4096) == buf);  // the writev wrote what the readv had read
      CHECK(buf == img.read(0, 4096));
      std::memset(buf.data(), 0xaa, buf.size());
      poisoned = true;
    }
    CHECK(submit_one(ring, c.prep) == c.expected);
  }
  CHECK(poisoned);
  CHECK(std::all_of(buf.begin(), buf.end(), [](uint8_t b) { return b == 0xaa; }));

  // No register operation after the ring was enabled.
  const int files[1] = {other_fd};
  CHECK(io_uring_register_files_update(&ring, 0, files, 1) == -EACCES);
  CHECK(io_uring_register_eventfd(&ring, other_fd) == -EACCES);
  CHECK(io_uring_unregister_files(&ring) == -EACCES);

  // And the backend still serves.
  devices::DiskOp op;
  std::vector<uint8_t> back(4096);
  iovec v{back.data(), back.size()};
  op.kind = devices::DiskOp::Kind::kRead;
  op.offset = 0;
  op.length = 4096;
  op.iov = &v;
  op.iov_count = 1;
  backend->enqueue(op);
  int64_t result = 0;
  backend->drain([&](devices::DiskOp&, int64_t r) { result = r; });
  CHECK(result == 4096);
  CHECK(back == img.read(0, 4096));
  ::close(other_fd);
}
