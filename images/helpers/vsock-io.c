/* vsock-io: copy stdin to a stream socket and the socket to stdout, for the network and vsock
 * e2e cases and bench/net.sh. Built static into the test initramfs (images/build-initramfs.sh)
 * and for the host side of the same cases (build_helper in images/lib/common.sh).
 *
 *   vsock-io [OPTIONS] connect CID PORT      AF_VSOCK stream to CID:PORT
 *   vsock-io [OPTIONS] listen PORT           AF_VSOCK, any CID: accept one connection
 *   vsock-io [OPTIONS] connect ADDR          ADDR: tcp:IPV4:PORT, unix:PATH, vsock:CID:PORT,
 *                                            hybrid:PATH:PORT (a Firecracker-style hybrid
 *                                            vsock socket: "CONNECT PORT\n", then "OK ...\n")
 *   vsock-io [OPTIONS] listen ADDR           ADDR: tcp:PORT (0.0.0.0), unix:PATH, vsock:PORT
 *   vsock-io [OPTIONS] echo LISTEN-ADDR      accept one connection, send back what it reads
 *   vsock-io cid                             print this machine's vsock CID (/dev/vsock)
 *   vsock-io [OPTIONS] rr COUNT SIZE ADDR    request/response: COUNT times write SIZE bytes and
 *                                            read SIZE back (against `echo`); prints
 *                                            "rr count=N size=S min_us= p50_us= p99_us= mean_us="
 *                                            for all but the first 10% (warm-up)
 * Copying: stdin to the socket and, at once, the socket to stdout; at stdin's EOF the socket's
 * write side is shut down (shutdown(SHUT_WR)), so the peer sees EOF, and it goes on reading
 * until the peer's EOF. Exit 0 when both directions ended cleanly, 1 on an error, 2 usage.
 * Options:
 *   -t SECS   connect: retry a refused / absent peer for up to SECS s; listen: wait up to SECS
 *             s for the connection (default 60)
 *   -z BYTES  send BYTES zero bytes instead of stdin (throughput; suffixes K, M, G)
 *   -d        discard what arrives instead of writing it to stdout
 *   -s        print "vsock-io: sent=N received=M seconds=T send_MBps=X recv_MBps=Y" on stderr
 *             (MB = 10^6 bytes; each direction from the first to the last byte it moved)
 *   -r FILE   listen: write "ready\n" to FILE once listening (FILE - : stderr)
 * busybox's nc has no half-close at stdin's EOF and no AF_VSOCK, hence this tool. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/vm_sockets.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int timeout_s = 60;
static long long zero_bytes = -1;
static int discard = 0, stats = 0;
static const char* ready_file = NULL;

static void usage(void) {
  fprintf(stderr,
          "usage: vsock-io [-t SECS] [-z BYTES] [-d] [-s] [-r FILE] connect CID PORT | listen PORT |\n"
          "       connect tcp:IP:PORT|unix:PATH|vsock:CID:PORT|hybrid:PATH:PORT |\n"
          "       listen tcp:PORT|unix:PATH|vsock:PORT | echo LISTEN-ADDR | rr COUNT SIZE ADDR | cid\n");
  exit(2);
}
static void die(const char* what) {
  fprintf(stderr, "vsock-io: %s: %s\n", what, strerror(errno));
  exit(1);
}
static void fail(const char* what) {
  fprintf(stderr, "vsock-io: %s\n", what);
  exit(1);
}
static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}
static unsigned long num(const char* s, unsigned long max) {
  char* end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 0);
  if (errno || end == s || *end || v > max) usage();
  return v;
}

/* An address: family plus the sockaddr; hybrid = unix + a CONNECT line. */
struct addr {
  int family;
  union {
    struct sockaddr_in in;
    struct sockaddr_un un;
    struct sockaddr_vm vm;
  } sa;
  socklen_t len;
  long hybrid_port; /* -1: not hybrid */
};

static void set_unix(struct addr* a, const char* path) {
  a->family = AF_UNIX;
  a->sa.un.sun_family = AF_UNIX;
  if (strlen(path) >= sizeof a->sa.un.sun_path) fail("unix socket path too long");
  strcpy(a->sa.un.sun_path, path);
  a->len = sizeof a->sa.un;
}
static void set_vsock(struct addr* a, unsigned cid, unsigned port) {
  a->family = AF_VSOCK;
  a->sa.vm.svm_family = AF_VSOCK;
  a->sa.vm.svm_cid = cid;
  a->sa.vm.svm_port = port;
  a->len = sizeof a->sa.vm;
}
/* parse "KIND:..." (listening: no host part for tcp/vsock) */
static struct addr parse(const char* s, int listening) {
  struct addr a;
  memset(&a, 0, sizeof a);
  a.hybrid_port = -1;
  char buf[256];
  if (strlen(s) >= sizeof buf) usage();
  strcpy(buf, s);
  char* rest = strchr(buf, ':');
  if (!rest) usage();
  *rest++ = 0;
  if (!strcmp(buf, "unix")) {
    set_unix(&a, rest);
  } else if (!strcmp(buf, "hybrid") && !listening) {
    char* p = strrchr(rest, ':');
    if (!p) usage();
    *p++ = 0;
    set_unix(&a, rest);
    a.hybrid_port = (long)num(p, 0xffffffffUL);
  } else if (!strcmp(buf, "tcp")) {
    a.family = AF_INET;
    a.sa.in.sin_family = AF_INET;
    a.len = sizeof a.sa.in;
    char* port = rest;
    if (!listening) {
      port = strrchr(rest, ':');
      if (!port) usage();
      *port++ = 0;
      if (inet_pton(AF_INET, rest, &a.sa.in.sin_addr) != 1) usage();
    } else {
      a.sa.in.sin_addr.s_addr = htonl(INADDR_ANY);
    }
    a.sa.in.sin_port = htons((uint16_t)num(port, 65535));
  } else if (!strcmp(buf, "vsock")) {
    if (listening) {
      set_vsock(&a, VMADDR_CID_ANY, (unsigned)num(rest, 0xffffffffUL));
    } else {
      char* p = strchr(rest, ':');
      if (!p) usage();
      *p++ = 0;
      set_vsock(&a, (unsigned)num(rest, 0xffffffffUL), (unsigned)num(p, 0xffffffffUL));
    }
  } else {
    usage();
  }
  return a;
}

static void tune(int fd, int family) {
  if (family == AF_INET) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
}

static int do_connect(const struct addr* a) {
  double deadline = now() + timeout_s;
  for (;;) {
    int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (const struct sockaddr*)&a->sa, a->len) == 0) {
      tune(fd, a->family);
      if (a->hybrid_port >= 0) {
        char line[64];
        int n = snprintf(line, sizeof line, "CONNECT %ld\n", a->hybrid_port);
        if (write(fd, line, (size_t)n) != n) die("write CONNECT");
        size_t i = 0;
        for (;;) { /* the reply, byte by byte: nothing after its newline is ours to eat */
          char c;
          ssize_t r = read(fd, &c, 1);
          if (r <= 0) fail("hybrid vsock: no OK reply to CONNECT (no listener on that port?)");
          if (c == '\n') break;
          if (i < sizeof line - 1) line[i++] = c;
        }
        line[i] = 0;
        if (strncmp(line, "OK ", 3) != 0) {
          fprintf(stderr, "vsock-io: hybrid vsock: reply '%s' to CONNECT %ld\n", line, a->hybrid_port);
          exit(1);
        }
      }
      return fd;
    }
    int e = errno;
    close(fd);
    if ((e != ECONNREFUSED && e != ENOENT && e != ECONNRESET && e != ETIMEDOUT && e != ENODEV) ||
        now() >= deadline) {
      errno = e;
      die("connect");
    }
    usleep(100000);
  }
}

static int do_listen(const struct addr* a) {
  int fd = socket(a->family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket");
  int one = 1;
  if (a->family == AF_INET) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (a->family == AF_UNIX) unlink(a->sa.un.sun_path);
  if (bind(fd, (const struct sockaddr*)&a->sa, a->len) != 0) die("bind");
  if (listen(fd, 1) != 0) die("listen");
  if (ready_file) {
    if (!strcmp(ready_file, "-")) {
      fprintf(stderr, "ready\n");
    } else {
      FILE* f = fopen(ready_file, "w");
      if (!f || fprintf(f, "ready\n") < 0 || fclose(f) != 0) die("ready file");
    }
  }
  struct pollfd p = {fd, POLLIN, 0};
  int r = poll(&p, 1, timeout_s * 1000);
  if (r < 0) die("poll");
  if (r == 0) fail("no connection within the timeout (-t)");
  int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
  if (c < 0) die("accept");
  close(fd);
  if (a->family == AF_UNIX) unlink(a->sa.un.sun_path);
  tune(c, a->family);
  return c;
}

static int write_all(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static char zeros[1 << 16];
static int copy(int s) {
  static char buf[1 << 17];
  int in_open = 1, out_open = 1;
  long long sent = 0, recvd = 0;
  double t_send0 = 0, t_send1 = 0, t_recv0 = 0, t_recv1 = 0;
  if (zero_bytes == 0) {
    shutdown(s, SHUT_WR);
    in_open = 0;
  }
  while (in_open || out_open) {
    struct pollfd p[2];
    int n = 0, is = -1, ss = -1;
    if (in_open) {
      if (zero_bytes >= 0) {
        p[n] = (struct pollfd){s, POLLOUT, 0};
      } else {
        p[n] = (struct pollfd){0, POLLIN, 0};
      }
      is = n++;
    }
    if (out_open) {
      p[n] = (struct pollfd){s, POLLIN, 0};
      ss = n++;
    }
    if (poll(p, (nfds_t)n, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (is >= 0 && p[is].revents) {
      if (zero_bytes >= 0) {
        size_t want = sizeof zeros;
        if ((long long)want > zero_bytes - sent) want = (size_t)(zero_bytes - sent);
        ssize_t w = send(s, zeros, want, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN && errno != EINTR) die("send");
        if (w > 0) {
          if (sent == 0) t_send0 = now();
          sent += w;
          t_send1 = now();
        }
        if (sent >= zero_bytes) {
          shutdown(s, SHUT_WR);
          in_open = 0;
        }
      } else {
        ssize_t r = read(0, buf, sizeof buf);
        if (r < 0 && errno != EINTR) die("read stdin");
        if (r == 0) {
          if (shutdown(s, SHUT_WR) != 0) die("shutdown");
          in_open = 0;
        } else if (r > 0) {
          if (sent == 0) t_send0 = now();
          if (write_all(s, buf, (size_t)r) != 0) die("write socket");
          sent += r;
          t_send1 = now();
        }
      }
    }
    if (ss >= 0 && p[ss].revents) {
      ssize_t r = read(s, buf, sizeof buf);
      if (r < 0 && errno != EINTR) die("read socket");
      if (r == 0) {
        out_open = 0;
      } else if (r > 0) {
        if (recvd == 0) t_recv0 = now();
        if (!discard && write_all(1, buf, (size_t)r) != 0) die("write stdout");
        recvd += r;
        t_recv1 = now();
      }
    }
  }
  if (stats) {
    double ts = t_send1 - t_send0, tr = t_recv1 - t_recv0, t = ts > tr ? ts : tr;
    fprintf(stderr, "vsock-io: sent=%lld received=%lld seconds=%.3f send_MBps=%.1f recv_MBps=%.1f\n",
            sent, recvd, t, ts > 0 ? (double)sent / ts / 1e6 : 0.0,
            tr > 0 ? (double)recvd / tr / 1e6 : 0.0);
  }
  return 0;
}

static int echo(int s) {
  static char buf[1 << 16];
  for (;;) {
    ssize_t r = read(s, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      die("read socket");
    }
    if (r == 0) return 0;
    if (write_all(s, buf, (size_t)r) != 0) die("write socket");
  }
}

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}
static int rr(int s, unsigned long count, unsigned long size) {
  char* buf = calloc(1, size);
  double* lat = calloc(count, sizeof *lat);
  if (!buf || !lat) fail("out of memory");
  for (unsigned long i = 0; i < count; i++) {
    double t0 = now();
    if (write_all(s, buf, size) != 0) die("write socket");
    size_t got = 0;
    while (got < size) {
      ssize_t r = read(s, buf + got, size - got);
      if (r < 0 && errno == EINTR) continue;
      if (r < 0) die("read socket");
      if (r == 0) fail("rr: the peer closed the connection early");
      got += (size_t)r;
    }
    lat[i] = (now() - t0) * 1e6;
  }
  shutdown(s, SHUT_WR);
  unsigned long skip = count / 10, n = count - skip;
  double* l = lat + skip;
  qsort(l, n, sizeof *l, cmp_double);
  double sum = 0;
  for (unsigned long i = 0; i < n; i++) sum += l[i];
  printf("rr count=%lu size=%lu min_us=%.1f p50_us=%.1f p99_us=%.1f mean_us=%.1f\n", n, size, l[0],
         l[n / 2], l[(n * 99) / 100 < n ? (n * 99) / 100 : n - 1], sum / (double)n);
  return 0;
}

static long long bytes(const char* s) {
  char* end;
  long long v = strtoll(s, &end, 10);
  if (end == s || v < 0) usage();
  switch (*end) {
    case 'K': v <<= 10; end++; break;
    case 'M': v <<= 20; end++; break;
    case 'G': v <<= 30; end++; break;
  }
  if (*end) usage();
  return v;
}

int main(int argc, char** argv) {
  int o;
  while ((o = getopt(argc, argv, "+t:z:dsr:")) != -1) {
    switch (o) {
      case 't': timeout_s = (int)num(optarg, 86400); break;
      case 'z': zero_bytes = bytes(optarg); break;
      case 'd': discard = 1; break;
      case 's': stats = 1; break;
      case 'r': ready_file = optarg; break;
      default: usage();
    }
  }
  argc -= optind;
  argv += optind;
  if (argc == 1 && !strcmp(argv[0], "cid")) {
    unsigned cid = 0;
    int fd = open("/dev/vsock", O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("/dev/vsock");
    if (ioctl(fd, IOCTL_VM_SOCKETS_GET_LOCAL_CID, &cid) != 0) die("IOCTL_VM_SOCKETS_GET_LOCAL_CID");
    printf("%u\n", cid);
    return 0;
  }
  if (argc < 2) usage();
  const char* cmd = argv[0];
  struct addr a;
  memset(&a, 0, sizeof a); /* svm_zero must be zero (EINVAL from connect/bind otherwise) */
  if (!strcmp(cmd, "connect") && argc == 3) {
    set_vsock(&a, (unsigned)num(argv[1], 0xffffffffUL), (unsigned)num(argv[2], 0xffffffffUL));
    a.hybrid_port = -1;
    return copy(do_connect(&a));
  }
  if (!strcmp(cmd, "connect") && argc == 2) {
    a = parse(argv[1], 0);
    return copy(do_connect(&a));
  }
  if (!strcmp(cmd, "listen") && argc == 2) {
    if (strchr(argv[1], ':')) {
      a = parse(argv[1], 1);
    } else {
      set_vsock(&a, VMADDR_CID_ANY, (unsigned)num(argv[1], 0xffffffffUL));
      a.hybrid_port = -1;
    }
    return copy(do_listen(&a));
  }
  if (!strcmp(cmd, "echo") && argc == 2) {
    a = parse(argv[1], 1);
    return echo(do_listen(&a));
  }
  if (!strcmp(cmd, "rr") && argc == 4) {
    unsigned long count = num(argv[1], 100000000UL), size = num(argv[2], 1UL << 24);
    if (count == 0 || size == 0) usage();
    a = parse(argv[3], 0);
    return rr(do_connect(&a), count, size);
  }
  usage();
}
