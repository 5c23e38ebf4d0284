/* The guest's file systems: the initramfs's own /proc /sys /dev, then the host's root over
 * virtio-fs (Documentation/filesystems/virtiofs.rst: `mount -t virtiofs TAG DIR`), made
 * usable the way virtme-ng makes it:
 *
 *   /            virtio-fs, read-only (the host's files are never written)
 *   /etc /var    overlayfs (Documentation/filesystems/overlayfs.rst): the host's directory as
 *   /root /home  the lower layer, a tmpfs as the upper: writable, changes lost at power-off
 *   /tmp         (/tmp so that a command run below the host's /tmp finds its directory)
 *   /run         fresh tmpfs (nothing of the host's runtime state, no host sockets)
 *   /proc /sys /dev (devtmpfs, with /dev/pts, /dev/shm and the /dev/fd, /dev/std* links):
 *                the guest's own
 *
 * Without overlayfs (no `overlay` module and not built in) /root, /home and /tmp become
 * empty tmpfs, /var/tmp and /var/log too, and /etc and the rest of /var stay read-only: a warning
 * says so. A directory the host does not have (or has as a symlink) is left alone. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "init.h"

static const char kNewRoot[] = "/newroot";
/* The overlays' upper and work directories: one tmpfs in the initramfs, out of the
 * command's sight once the root has moved. */
static const char kOverlayBase[] = "/minivmm/rw";

static void make_dir(struct Init* init, const char* path, mode_t mode) {
  if (mkdir(path, mode) != 0 && errno != EEXIST) fatal(init, "mkdir %s: %s", path, strerror(errno));
}

static void do_mount(struct Init* init, const char* source, const char* target, const char* type,
                     unsigned long flags, const char* data) {
  if (mount(source, target, type, flags, data) != 0) {
    fatal(init, "mount -t %s %s %s: %s", type ? type : "(move)", source, target, strerror(errno));
  }
}

void mount_early(struct Init* init) {
  make_dir(init, "/proc", 0555);
  make_dir(init, "/sys", 0555);
  make_dir(init, "/dev", 0755);
  do_mount(init, "proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  do_mount(init, "sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
  /* EBUSY: CONFIG_DEVTMPFS_MOUNT does not cover an initramfs, but tolerate it. */
  if (mount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755") != 0 && errno != EBUSY) {
    fatal(init, "mount -t devtmpfs devtmpfs /dev: %s", strerror(errno));
  }
  /* What udev and systemd add to devtmpfs: without them `tee /dev/stderr` would create a
   * plain file. */
  static const char* const kLinks[][2] = {{"/proc/self/fd", "/dev/fd"},
                                          {"/proc/self/fd/0", "/dev/stdin"},
                                          {"/proc/self/fd/1", "/dev/stdout"},
                                          {"/proc/self/fd/2", "/dev/stderr"}};
  for (size_t i = 0; i < sizeof kLinks / sizeof kLinks[0]; ++i) {
    if (symlink(kLinks[i][0], kLinks[i][1]) != 0 && errno != EEXIST) {
      say(init, "warning", "symlink %s: %s", kLinks[i][1], strerror(errno));
    }
  }
}

static int have_filesystem(const char* name) {
  char* list = read_file("/proc/filesystems", 64 * 1024, NULL);
  if (list == NULL) return 0;
  int found = 0;
  char* save = NULL;
  for (char* line = strtok_r(list, "\n", &save); line != NULL && !found;
       line = strtok_r(NULL, "\n", &save)) {
    const char* tab = strrchr(line, '\t');
    found = strcmp(tab != NULL ? tab + 1 : line, name) == 0;
  }
  free(list);
  return found;
}

/* The virtio-fs device may still be probing when we get here (virtio_mmio binds it when
 * the module loads, but be patient with a slow guest): retry while the tag is unknown. */
static void mount_virtiofs(struct Init* init) {
  const struct InitConfig* c = &init->config;
  const long deadline = now_ms() + c->wait_ms;
  for (;;) {
    if (mount(c->tag, kNewRoot, "virtiofs", MS_RDONLY, NULL) == 0) return;
    const int err = errno;
    if (err == ENODEV) {
      fatal(init,
            "mount -t virtiofs %s %s: the kernel has no virtiofs file system (module "
            "virtiofs not loaded?)",
            c->tag, kNewRoot);
    }
    if (now_ms() >= deadline) {
      fatal(init, "mount -t virtiofs %s %s: %s (no virtio-fs device with tag '%s' after %ld ms)",
            c->tag, kNewRoot, strerror(err), c->tag, c->wait_ms);
    }
    sleep_ms(20);
  }
}

/* path is relative to the new root, e.g. "etc". */
static int host_has_dir(const char* path) {
  char full[256];
  snprintf(full, sizeof full, "%s/%s", kNewRoot, path);
  struct stat st;
  return lstat(full, &st) == 0 && S_ISDIR(st.st_mode);
}

static void mount_tmpfs(struct Init* init, const char* path, const char* mode) {
  char full[256], data[64];
  snprintf(full, sizeof full, "%s/%s", kNewRoot, path);
  snprintf(data, sizeof data, "mode=%s", mode);
  do_mount(init, "tmpfs", full, "tmpfs", MS_NOSUID | MS_NODEV, data);
}

/* Returns 0 when the kernel refused the overlay (the caller falls back). */
static int mount_overlay(struct Init* init, const char* path) {
  char target[256], upper[256], work[256], data[1024];
  snprintf(target, sizeof target, "%s/%s", kNewRoot, path);
  snprintf(upper, sizeof upper, "%s/%s", kOverlayBase, path);
  make_dir(init, upper, 0755);
  snprintf(upper, sizeof upper, "%s/%s/upper", kOverlayBase, path);
  snprintf(work, sizeof work, "%s/%s/work", kOverlayBase, path);
  make_dir(init, upper, 0755);
  make_dir(init, work, 0755);
  /* The upper directory's root takes the lower's mode and owner: overlayfs copies them up
   * only for files below it. */
  struct stat st;
  if (stat(target, &st) == 0) {
    if (chmod(upper, st.st_mode & 07777) != 0 || chown(upper, st.st_uid, st.st_gid) != 0) {
      say(init, "warning", "chmod/chown %s: %s", upper, strerror(errno));
    }
  }
  snprintf(data, sizeof data, "lowerdir=%s,upperdir=%s,workdir=%s", target, upper, work);
  if (mount("overlay", target, "overlay", 0, data) == 0) return 1;
  say(init, "warning", "mount -t overlay on /%s: %s", path, strerror(errno));
  return 0;
}

void mount_host_root(struct Init* init) {
  make_dir(init, kNewRoot, 0755);
  mount_virtiofs(init);
  const int overlay = have_filesystem("overlay");
  if (overlay) {
    make_dir(init, kOverlayBase, 0755);
    do_mount(init, "tmpfs", kOverlayBase, "tmpfs", 0, "mode=0755");
  } else {
    say(init, "warning",
        "no overlay file system: /etc and /var stay read-only, /root, /home and "
        "/tmp are empty tmpfs");
  }
  /* /tmp too: a command run from a directory below the host's /tmp (a CI checkout) must
   * find it there. */
  static const char* const kOverlaid[] = {"etc", "var", "root", "home", "tmp"};
  for (size_t i = 0; i < sizeof kOverlaid / sizeof kOverlaid[0]; ++i) {
    const char* dir = kOverlaid[i];
    if (!host_has_dir(dir)) continue;
    if (overlay && mount_overlay(init, dir)) continue;
    if (strcmp(dir, "root") == 0) mount_tmpfs(init, dir, "0700");
    if (strcmp(dir, "home") == 0) mount_tmpfs(init, dir, "0755");
    if (strcmp(dir, "tmp") == 0) mount_tmpfs(init, dir, "1777");
    if (strcmp(dir, "var") == 0) {
      if (host_has_dir("var/tmp")) mount_tmpfs(init, "var/tmp", "1777");
      if (host_has_dir("var/log")) mount_tmpfs(init, "var/log", "0755");
    }
  }
  if (host_has_dir("run")) mount_tmpfs(init, "run", "0755");
  static const char* const kMoved[] = {"proc", "sys", "dev"};
  for (size_t i = 0; i < sizeof kMoved / sizeof kMoved[0]; ++i) {
    char from[32], to[64];
    snprintf(from, sizeof from, "/%s", kMoved[i]);
    snprintf(to, sizeof to, "%s/%s", kNewRoot, kMoved[i]);
    if (!host_has_dir(kMoved[i])) fatal(init, "the host's root has no /%s directory", kMoved[i]);
    do_mount(init, from, to, NULL, MS_MOVE, NULL);
  }
  /* devtmpfs has no pts or shm: add them (failures leave a usable system, so only warn). */
  char path[64];
  snprintf(path, sizeof path, "%s/dev/pts", kNewRoot);
  if ((mkdir(path, 0755) != 0 && errno != EEXIST) ||
      mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "gid=5,mode=620,ptmxmode=666") != 0) {
    say(init, "warning", "devpts on /dev/pts: %s", strerror(errno));
  }
  snprintf(path, sizeof path, "%s/dev/shm", kNewRoot);
  if ((mkdir(path, 01777) != 0 && errno != EEXIST) ||
      mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777") != 0) {
    say(init, "warning", "tmpfs on /dev/shm: %s", strerror(errno));
  }
}

/* What switch_root(8) does, without deleting the initramfs's files (a few MiB of modules):
 * move the new root's mount over /, chroot into it. */
void switch_root(struct Init* init) {
  if (chdir(kNewRoot) != 0) fatal(init, "chdir %s: %s", kNewRoot, strerror(errno));
  do_mount(init, ".", "/", NULL, MS_MOVE, NULL);
  if (chroot(".") != 0) fatal(init, "chroot %s: %s", kNewRoot, strerror(errno));
  if (chdir("/") != 0) fatal(init, "chdir /: %s", strerror(errno));
}
