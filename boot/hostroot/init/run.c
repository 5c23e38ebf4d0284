/* The command and its three virtio-console ports (virtio 1.2 §5.3.6.3: a port's name comes
 * with VIRTIO_CONSOLE_PORT_NAME; Linux shows it in /sys/class/virtio-ports/vportNpM/name):
 *   minivmm.stdout, minivmm.stderr  the command's stdout and stderr
 *   minivmm.exit                    its exit status, decimal and a newline (README "Exit
 *                                   status": minivmm's own status becomes that)
 *
 * The command does not write to the ports itself: it gets a pipe for each, which the init
 * relays. Linux lets only one process open a port at a time (EBUSY), so a command that
 * reopens /dev/stdout (`tee /dev/stderr`, `echo >/dev/stdout`) would fail on a port, and on
 * a pipe does not. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "init.h"

static const char kPortsDir[] = "/sys/class/virtio-ports";
/* The port names arrive just after virtio_console adds each port. */
static const long kPortWaitMs = 2000;

/* Opens /dev/<vport> for the port called `name`; -1 when there is none (yet). */
static int open_named_port(struct Init* init, const char* name) {
  DIR* dir = opendir(kPortsDir);
  if (dir == NULL) return -1;
  int fd = -1;
  struct dirent* e;
  while (fd < 0 && (e = readdir(dir)) != NULL) {
    if (strncmp(e->d_name, "vport", 5) != 0) continue;
    char path[512];
    snprintf(path, sizeof path, "%s/%s/name", kPortsDir, e->d_name);
    char* port = read_file(path, 256, NULL);
    if (port == NULL) continue;
    port[strcspn(port, "\n")] = '\0';
    if (strcmp(port, name) == 0) {
      snprintf(path, sizeof path, "/dev/%s", e->d_name);
      fd = open(path, O_WRONLY | O_CLOEXEC | O_NOCTTY);
      if (fd < 0) fatal(init, "open %s (port %s): %s", path, name, strerror(errno));
    }
    free(port);
  }
  closedir(dir);
  return fd;
}

void open_ports(struct Init* init) {
  const long deadline = now_ms() + kPortWaitMs;
  for (;;) {
    if (init->exit_port < 0) init->exit_port = open_named_port(init, "minivmm.exit");
    if (init->stdout_port < 0) init->stdout_port = open_named_port(init, "minivmm.stdout");
    if (init->stderr_port < 0) init->stderr_port = open_named_port(init, "minivmm.stderr");
    if ((init->exit_port >= 0 && init->stdout_port >= 0 && init->stderr_port >= 0) ||
        now_ms() >= deadline) {
      break;
    }
    sleep_ms(20);
  }
  if (init->exit_port < 0)
    say(init, "warning", "no port minivmm.exit: the status goes to the console");
  if (init->stdout_port < 0)
    say(init, "warning", "no port minivmm.stdout: stdout goes to the console");
  if (init->stderr_port < 0)
    say(init, "warning", "no port minivmm.stderr: stderr goes to the console");
}

void report_status(struct Init* init, int status) {
  char line[16];
  const int n = snprintf(line, sizeof line, "%d\n", status);
  if (init->exit_port < 0) {
    say(init, "info", "exit status %d", status);
    return;
  }
  if (write(init->exit_port, line, (size_t)n) != n) {
    say(init, "error", "writing the exit status to port minivmm.exit: %s", strerror(errno));
  }
}

/* Best effort: a host name and a loopback interface, which many programs expect. */
static void set_up_system(struct Init* init) {
  const char* name = init->config.hostname;
  if (sethostname(name, strlen(name)) != 0)
    say(init, "warning", "sethostname: %s", strerror(errno));
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return;
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strcpy(ifr.ifr_name, "lo");
  if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
    ifr.ifr_flags |= IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) != 0) say(init, "warning", "lo up: %s", strerror(errno));
  }
  close(s);
}

/* The child, between fork and exec: stdin /dev/null, stdout and stderr the pipes, cwd from
 * the config, a clean environment. Its failures go to the console and end it with 125. */
static _Noreturn void exec_command(struct Init* init, int out, int err, const sigset_t* mask) {
  sigprocmask(SIG_SETMASK, mask, NULL);
  setsid();
  int null = open("/dev/null", O_RDONLY);
  if (null < 0 || dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(err, 2) < 0) {
    say(init, "error", "setting up the command's stdio: %s", strerror(errno));
    _exit(INIT_FAILURE_STATUS);
  }
  if (chdir(init->config.cwd) != 0) {
    say(init, "error", "cd %s: %s", init->config.cwd, strerror(errno));
    _exit(INIT_FAILURE_STATUS);
  }
  clearenv();
  setenv("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", 1);
  setenv("HOME", "/root", 1);
  setenv("USER", "root", 1);
  setenv("LOGNAME", "root", 1);
  setenv("SHELL", "/bin/sh", 1);
  setenv("PWD", init->config.cwd, 1);
  for (size_t i = 0; i < init->config.env_count; ++i) putenv(init->config.env[i]);
  char* const argv[] = {"sh", "-c", init->command, NULL};
  execv("/bin/sh", argv);
  say(init, "error", "exec /bin/sh: %s", strerror(errno));
  _exit(errno == ENOENT ? 127 : 126);
}

static void write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return; /* the host side is gone: drop, as a closed terminal would */
    buf += n;
    len -= (size_t)n;
  }
}

/* Moves what the pipe holds now to `to`; returns 0 at EOF. */
static int relay(int from, int to) {
  char buf[16384];
  for (;;) {
    ssize_t n = read(from, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno == EAGAIN;
    if (n == 0) return 0;
    write_all(to, buf, (size_t)n);
  }
}

static int status_of(int wstatus) {
  if (WIFEXITED(wstatus)) return WEXITSTATUS(wstatus);
  if (WIFSIGNALED(wstatus)) return 128 + WTERMSIG(wstatus); /* as a shell reports it */
  return INIT_FAILURE_STATUS;
}

int run_command(struct Init* init) {
  set_up_system(init);
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) {
    fatal(init, "pipe: %s", strerror(errno));
  }
  sigset_t chld, old;
  sigemptyset(&chld);
  sigaddset(&chld, SIGCHLD);
  sigprocmask(SIG_BLOCK, &chld, &old);
  const int sfd = signalfd(-1, &chld, SFD_CLOEXEC | SFD_NONBLOCK);
  if (sfd < 0) fatal(init, "signalfd: %s", strerror(errno));
  const pid_t pid = fork();
  if (pid < 0) fatal(init, "fork: %s", strerror(errno));
  if (pid == 0) exec_command(init, out[1], err[1], &old);
  close(out[1]);
  close(err[1]);
  fcntl(out[0], F_SETFL, O_NONBLOCK);
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  const int to_out =
      init->stdout_port >= 0 ? init->stdout_port : (init->console >= 0 ? init->console : 1);
  const int to_err =
      init->stderr_port >= 0 ? init->stderr_port : (init->console >= 0 ? init->console : 2);
  struct pollfd fds[3] = {{sfd, POLLIN, 0}, {out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int status = -1;
  /* Until the command has ended: relay, and reap every child (we are PID 1: orphans are
   * ours). Its output is all in the pipes once it has exited; what background processes
   * it left write later is not waited for (they end at the power-off). */
  while (status < 0) {
    if (poll(fds, 3, -1) < 0 && errno != EINTR) fatal(init, "poll: %s", strerror(errno));
    if ((fds[1].revents & (POLLIN | POLLHUP)) && !relay(out[0], to_out)) fds[1].fd = -1;
    if ((fds[2].revents & (POLLIN | POLLHUP)) && !relay(err[0], to_err)) fds[2].fd = -1;
    if (fds[0].revents & POLLIN) {
      struct signalfd_siginfo info;
      while (read(sfd, &info, sizeof info) == (ssize_t)sizeof info) {
      }
      int wstatus;
      pid_t done;
      while ((done = waitpid(-1, &wstatus, WNOHANG)) > 0) {
        if (done == pid) status = status_of(wstatus);
      }
    }
  }
  if (fds[1].fd >= 0) relay(out[0], to_out);
  if (fds[2].fd >= 0) relay(err[0], to_err);
  close(out[0]);
  close(err[0]);
  close(sfd);
  return status;
}
