/* fs-bench: the timing half of images/scenarios/fs-bench (bench/fs.sh), built static into the
 * test initramfs by images/build-initramfs.sh. Busybox has no clock finer than /proc/uptime's
 * 10 ms and no random-read tool.
 *   fs-bench now                       CLOCK_MONOTONIC in seconds, 6 decimals
 *   fs-bench randread FILE SECS [SEED] 4 KiB preads at random 4 KiB-aligned offsets of FILE,
 *                                      one at a time, for SECS s; O_DIRECT when the
 *                                      filesystem takes it (else buffered, said so). Prints
 *                                      "reads=N seconds=S iops=I direct=0|1"
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: the same offsets for the same seed on every run and VMM. */
static uint64_t next(uint64_t* s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 2685821657736338717ULL;
}

static int randread(const char* path, double secs, uint64_t seed) {
  int direct = 1;
  int fd = open(path, O_RDONLY | O_DIRECT);
  if (fd < 0 && errno == EINVAL) {
    direct = 0;
    fd = open(path, O_RDONLY);
  }
  if (fd < 0) {
    fprintf(stderr, "fs-bench: open %s: %s\n", path, strerror(errno));
    return 1;
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || st.st_size < 4096) {
    fprintf(stderr, "fs-bench: %s: smaller than 4 KiB\n", path);
    return 1;
  }
  void* buf;
  if (posix_memalign(&buf, 4096, 4096) != 0) return 1;
  const uint64_t blocks = (uint64_t)st.st_size / 4096;
  uint64_t s = seed ? seed : 1;
  unsigned long n = 0;
  const double t0 = now();
  double t = t0;
  while (t - t0 < secs) {
    const off_t off = (off_t)(next(&s) % blocks) * 4096;
    ssize_t r = pread(fd, buf, 4096, off);
    if (r < 0 && errno == EINVAL && direct) {
      /* O_DIRECT accepted at open, refused at read: go on buffered. */
      close(fd);
      fd = open(path, O_RDONLY);
      direct = 0;
      if (fd < 0) return 1;
      continue;
    }
    if (r != 4096) {
      fprintf(stderr, "fs-bench: pread at %lld: %s\n", (long long)off, r < 0 ? strerror(errno) : "short");
      return 1;
    }
    n++;
    if ((n & 15) == 0) t = now();
  }
  t = now();
  printf("reads=%lu seconds=%.3f iops=%.0f direct=%d\n", n, t - t0, (double)n / (t - t0), direct);
  return 0;
}

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "now") == 0) {
    printf("%.6f\n", now());
    return 0;
  }
  if ((argc == 4 || argc == 5) && strcmp(argv[1], "randread") == 0)
    return randread(argv[2], atof(argv[3]), argc == 5 ? strtoull(argv[4], NULL, 0) : 1);
  fprintf(stderr, "usage: fs-bench now | fs-bench randread FILE SECS [SEED]\n");
  return 2;
}
