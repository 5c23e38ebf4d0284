/* minivmm-init's main flow, its configuration, its own messages and the module loading.
 * See init.h for the initramfs layout it reads. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "init.h"

/* finit_module(2) flag (include/uapi/linux/module.h, Linux 5.17+): the kernel decompresses
 * the module itself (CONFIG_MODULE_DECOMPRESS). */
#ifndef MODULE_INIT_COMPRESSED_FILE
#define MODULE_INIT_COMPRESSED_FILE 4
#endif

static const char kExecPath[] = "/minivmm/exec";
static const char kConfigPath[] = "/minivmm/config";
static const char kModuleList[] = "/minivmm/modules.load";
static const char kModuleDir[] = "/minivmm/modules/";
/* How long to wait for /dev/console when the console driver is a module (console=hvc0: the
 * kernel started us without one, and hvc0 registers after virtio_console's control
 * messages). */
static const long kConsoleWaitMs = 2000;

static void write_all(int fd, const char* buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    buf += n;
    len -= (size_t)n;
  }
}

void say(struct Init* init, const char* level, const char* fmt, ...) {
  char line[1024];
  int prefix = 0;
  int fd = init->console;
  int kmsg = -1;
  if (fd < 0) {
    /* No console yet: the kernel log, which reaches the console once one registers. */
    kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC | O_NOCTTY);
    fd = kmsg;
    prefix = snprintf(line, sizeof line, "<3>");
  }
  prefix += snprintf(line + prefix, sizeof line - (size_t)prefix, "minivmm-init: %s: ", level);
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(line + prefix, sizeof line - (size_t)prefix - 1, fmt, ap);
  va_end(ap);
  size_t len = (size_t)prefix + (n < 0 ? 0 : (size_t)n);
  if (len > sizeof line - 2) len = sizeof line - 2;
  line[len++] = '\n';
  if (fd >= 0) write_all(fd, line, len);
  if (kmsg >= 0) close(kmsg);
  /* Errors also go where the user reads the command's errors: minivmm's stderr, which may
   * be all they see when the console goes to a log or nowhere. */
  if (init->stderr_port >= 0 && strcmp(level, "error") == 0) {
    write_all(init->stderr_port, line + (kmsg >= 0 ? 3 : 0), len - (kmsg >= 0 ? 3 : 0));
  }
}

_Noreturn void power_off(struct Init* init) {
  sync();
  reboot(RB_POWER_OFF);
  /* Only reached if the platform ignores the power-off: idle rather than exit (an exiting
   * PID 1 panics the kernel). */
  say(init, "error", "reboot(RB_POWER_OFF) failed: %s", strerror(errno));
  for (;;) pause();
}

_Noreturn void fatal(struct Init* init, const char* fmt, ...) {
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  say(init, "error", "%s", msg);
  report_status(init, INIT_FAILURE_STATUS);
  power_off(init);
}

char* read_file(const char* path, size_t max, size_t* size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return NULL;
  char* buf = malloc(max + 1);
  size_t len = 0;
  while (buf != NULL && len < max) {
    ssize_t n = read(fd, buf + len, max - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      free(buf);
      buf = NULL;
      errno = saved;
      break;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  if (buf == NULL) return NULL;
  buf[len] = '\0';
  if (size != NULL) *size = len;
  return buf;
}

long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
  while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
  }
}

static void copy_value(struct Init* init, char* dst, size_t cap, const char* key,
                       const char* value) {
  if (strlen(value) >= cap)
    fatal(init, "%s: %s is longer than %zu bytes", kConfigPath, key, cap - 1);
  strcpy(dst, value);
}

/* /minivmm/config: "key=value" lines; an unknown key is an error (the packer and this init
 * are built together, so a mismatch is a bug to show, not to skip). */
static void read_config(struct Init* init) {
  struct InitConfig* c = &init->config;
  strcpy(c->tag, "hostroot");
  strcpy(c->cwd, "/");
  strcpy(c->hostname, "minivmm");
  c->wait_ms = 5000;
  char* text = read_file(kConfigPath, 256 * 1024, NULL);
  if (text == NULL) fatal(init, "cannot read %s: %s", kConfigPath, strerror(errno));
  char* save = NULL;
  for (char* line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
    char* eq = strchr(line, '=');
    if (eq == NULL) fatal(init, "%s: line without '=': %s", kConfigPath, line);
    *eq = '\0';
    const char* value = eq + 1;
    if (strcmp(line, "tag") == 0) {
      copy_value(init, c->tag, sizeof c->tag, line, value);
    } else if (strcmp(line, "cwd") == 0) {
      copy_value(init, c->cwd, sizeof c->cwd, line, value);
    } else if (strcmp(line, "hostname") == 0) {
      copy_value(init, c->hostname, sizeof c->hostname, line, value);
    } else if (strcmp(line, "wait_ms") == 0) {
      char* end = NULL;
      c->wait_ms = strtol(value, &end, 10);
      if (*value == '\0' || *end != '\0' || c->wait_ms < 0) {
        fatal(init, "%s: wait_ms is not a number of milliseconds: %s", kConfigPath, value);
      }
    } else if (strcmp(line, "env") == 0) {
      if (c->env_count == INIT_MAX_ENV)
        fatal(init, "%s: more than %d env lines", kConfigPath, INIT_MAX_ENV);
      if (strchr(value, '=') == NULL)
        fatal(init, "%s: env is not KEY=VALUE: %s", kConfigPath, value);
      c->env[c->env_count++] = (char*)value; /* points into `text`, kept for the run */
    } else {
      fatal(init, "%s: unknown key '%s'", kConfigPath, line);
    }
  }
  c->env[c->env_count] = NULL;
}

static int ends_with(const char* s, const char* suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* finit_module(2) on each file of /minivmm/modules.load, in its order (dependencies first).
 * EEXIST (already loaded, or built in under the same name) is success. */
static void load_modules(struct Init* init) {
  char* list = read_file(kModuleList, 64 * 1024, NULL);
  if (list == NULL) {
    if (errno == ENOENT) return; /* a kernel with everything built in */
    fatal(init, "cannot read %s: %s", kModuleList, strerror(errno));
  }
  char* save = NULL;
  for (char* name = strtok_r(list, "\n", &save); name != NULL; name = strtok_r(NULL, "\n", &save)) {
    char path[512];
    if ((size_t)snprintf(path, sizeof path, "%s%s", kModuleDir, name) >= sizeof path) {
      fatal(init, "module name too long: %s", name);
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) fatal(init, "cannot open module %s: %s", path, strerror(errno));
    const int compressed =
        ends_with(name, ".ko.xz") || ends_with(name, ".ko.zst") || ends_with(name, ".ko.gz");
    const int flags = compressed ? MODULE_INIT_COMPRESSED_FILE : 0;
    if (syscall(SYS_finit_module, fd, "", flags) != 0 && errno != EEXIST) {
      const int err = errno;
      fatal(init, "loading module %s: %s%s", name, strerror(err),
            compressed && (err == EINVAL || err == EOPNOTSUPP || err == ENOEXEC)
                ? " (a compressed module: the kernel needs CONFIG_MODULE_DECOMPRESS)"
                : "");
    }
    close(fd);
  }
  free(list);
}

static int fd_is_open(int fd) {
  return fcntl(fd, F_GETFD) >= 0;
}

/* The kernel opens /dev/console as fds 0-2 before starting us, if it can: with console=ttyS0
 * it can; with console=hvc0 the console driver is one of our modules, so it cannot yet. */
static void open_console(struct Init* init, int wait) {
  if (init->console >= 0) return;
  if (fd_is_open(1)) {
    /* A copy above 2, so that the command's child still reaches the console after its
     * dup2 onto 0-2, and the command itself does not inherit it. */
    init->console = fcntl(1, F_DUPFD_CLOEXEC, 3);
    return;
  }
  const long deadline = now_ms() + (wait ? kConsoleWaitMs : 0);
  for (;;) {
    int fd = open("/dev/console", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0) {
      init->console = fd;
      return;
    }
    if (now_ms() >= deadline) return;
    sleep_ms(50);
  }
}

int main(void) {
  struct Init init = {.console = -1, .stdout_port = -1, .stderr_port = -1, .exit_port = -1};
  umask(022);
  if (getpid() != 1) {
    /* Mounting over / and powering off are only for a VM: refuse on a host by mistake. */
    fprintf(stderr,
            "minivmm-init: error: not PID 1; this is the init of minivmm's host-root guest\n");
    return INIT_FAILURE_STATUS;
  }
  open_console(&init, 0);
  mount_early(&init);
  read_config(&init);
  size_t command_len = 0;
  init.command = read_file(kExecPath, 1024 * 1024, &command_len);
  if (init.command == NULL) fatal(&init, "cannot read %s: %s", kExecPath, strerror(errno));
  if (strlen(init.command) != command_len) fatal(&init, "%s holds a NUL byte", kExecPath);
  load_modules(&init);
  open_console(&init, 1);
  open_ports(&init);
  mount_host_root(&init);
  switch_root(&init);
  const int status = run_command(&init);
  report_status(&init, status);
  power_off(&init);
}
