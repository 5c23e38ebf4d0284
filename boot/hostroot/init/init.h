/* minivmm-init: PID 1 of the initramfs minivmm packs for host-root mode (README "The host's
 * root and one command"). It loads the packed kernel modules, mounts the host's root over
 * virtio-fs read-only with writable overlays where a system needs them, switches into it, runs
 * one command with its stdout and stderr on two virtio-console ports, reports its exit status
 * on a third and powers off.
 *
 * What the initramfs holds (written by boot/hostroot/initramfs.cc, which is the other half of
 * this contract):
 *   /init                    this program, statically linked
 *   /minivmm/exec            the command, run as /bin/sh -c CONTENT
 *   /minivmm/config          key=value lines: tag, cwd, wait_ms, hostname, env (repeatable)
 *   /minivmm/modules.load    module file names, one a line, dependencies first
 *   /minivmm/modules/NAME    the module files
 *
 * Single-threaded; every function runs on PID 1 (or in its child before exec). Failures of
 * the init itself end in fatal(): one line "minivmm-init: error: ..." on the console (and on
 * the stderr port once that is open), status 125 on the exit port when there is one,
 * power-off. PID 1 never returns from main (the kernel
 * would panic). */
#ifndef MINIVMM_HOSTROOT_INIT_H
#define MINIVMM_HOSTROOT_INIT_H

#include <stddef.h>

#define INIT_MAX_ENV 64
/* The exit status the init reports for its own failures (as env(1) and docker do: 125 is
 * "the runner failed", 126/127 stay the shell's "cannot execute" / "not found"). */
#define INIT_FAILURE_STATUS 125

struct InitConfig {
  char tag[64];      /* virtio-fs tag of the host's root (virtio 1.2 §5.11.4: 36 bytes) */
  char cwd[4096];    /* the command's working directory */
  char hostname[65]; /* the guest's host name */
  long wait_ms;      /* how long to wait for the virtio-fs device */
  char* env[INIT_MAX_ENV + 1]; /* KEY=VALUE for the command, on top of the defaults */
  size_t env_count;
};

struct Init {
  int console;     /* where the init's own lines go; -1: /dev/kmsg */
  int stdout_port; /* the virtio-console ports, -1 when absent */
  int stderr_port;
  int exit_port;
  struct InitConfig config;
  char* command; /* /minivmm/exec */
};

/* main.c: the init's own lines. */
void say(struct Init* init, const char* level, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));
_Noreturn void fatal(struct Init* init, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
_Noreturn void power_off(struct Init* init);
/* Reads a whole small file, NUL-terminated; NULL with errno on failure. */
char* read_file(const char* path, size_t max, size_t* size);
long now_ms(void);
void sleep_ms(long ms);

/* mounts.c: the guest's root. */
void mount_early(struct Init* init);     /* /proc /sys /dev of the initramfs */
void mount_host_root(struct Init* init); /* virtio-fs + writable places */
void switch_root(struct Init* init);     /* chroot into it */

/* run.c: the ports and the command. */
void open_ports(struct Init* init);
int run_command(struct Init* init); /* returns the exit status 0-255 */
void report_status(struct Init* init, int status);

#endif
