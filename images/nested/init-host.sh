#!/bin/sh
# /init of the nested KVM host (busybox sh, PID 1), used by run-in-nested-host.sh.
#
# The host side passes everything through the writable 9p export "ctl":
#   ctl/config   shell assignments: CTL_PATH RW_MOUNTS REQUIRE_KVM INTERACTIVE
#   ctl/cmd.sh   the command (bash script: environment, cd, exec)
# and this init writes back:
#   ctl/kvm      "ok" or "missing: <reason>"
#   ctl/times    uptimes at "ready" (command start) and "done"
#   ctl/status   the command's exit status, or "nokvm" / "setup: <reason>"
#   ctl/heartbeat  "<uptime> <n>", rewritten every 2 s from the moment ctl is mounted
#                until poweroff, by a loop of this init (no chroot, no host-root
#                9p): the runner kills a host whose heartbeat stops (a wedge of the
#                whole emulated machine, which no process inside it can report)
# Steps: mount proc/sys/dev, insmod the 9p/virtio/kvm modules, mount the host
# root read-only (tag hostroot) at /newroot with tmpfs /tmp /run /dev/shm and
# fresh proc/sys/dev, mount the writable exports at their host paths, enter that root
# (enter_root: moved onto / in a mount namespace of its own, then chroot), run the command, record its status, poweroff -f.
export PATH=/bin
umask 022

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
[ -t 1 ] || exec </dev/console >/dev/console 2>&1

say() { echo "nested-host: $*"; }
halt() {
  sync
  poweroff -f
  while :; do sleep 3600; done
}
setup_failed() {
  say "setup failed: $*"
  [ -d /ctl ] && echo "setup: $*" >/ctl/status
  halt
}

kver="$(uname -r)"
while read -r mod; do
  [ -n "$mod" ] || continue
  err="$(insmod "/lib/modules/$kver/$mod" 2>&1)" || say "insmod $(basename "$mod") failed: $err"
done </lib/modules/load.list

p9opts="trans=virtio,version=9p2000.L,msize=512000"
# virtio-pci probes asynchronously: a 9p tag can be mounted only once its
# channel registered (/sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag).
wait_tag() {
  i=0
  while [ "$i" -lt 100 ]; do
    cat /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag 2>/dev/null | tr '\0' '\n' | grep -qx "$1" && return 0
    usleep 100000
    i=$((i + 1))
  done
  return 1
}
mkdir -p /ctl /newroot
wait_tag ctl || setup_failed "9p export 'ctl' did not appear (virtio-pci/9pnet_virtio)"
mount -t 9p -o "$p9opts" ctl /ctl || setup_failed "cannot mount the ctl export (9p)"
[ -f /ctl/config ] || setup_failed "ctl/config missing"
heartbeat() {
  n=0
  while :; do
    read -r up _ </proc/uptime
    n=$((n + 1))
    echo "$up $n" >/ctl/heartbeat
    sleep 2
  done
}
heartbeat </dev/null >/dev/null 2>&1 &
echo $! >/ctl/heartbeat.pid
. /ctl/config

if [ -c /dev/kvm ]; then
  echo ok >/ctl/kvm
else
  why="no /dev/kvm after loading kvm, kvm-amd"
  grep -qw svm /proc/cpuinfo || why="$why; the CPU has no svm flag (QEMU needs -cpu max with TCG)"
  dmesg | grep -iE 'kvm|svm' | tail -n 5 >/ctl/kvm-dmesg
  echo "missing: $why" >/ctl/kvm
  say "$why"
  if [ "$REQUIRE_KVM" = 1 ]; then
    echo nokvm >/ctl/status
    halt
  fi
fi

wait_tag hostroot || setup_failed "9p export 'hostroot' did not appear"
mount -t 9p -o "$p9opts,ro,cache=loose" hostroot /newroot ||
  setup_failed "cannot mount the host root export (9p)"
r=/newroot
mount -t proc proc $r/proc || setup_failed "mount proc"
mount -t sysfs sysfs $r/sys || setup_failed "mount sysfs"
mount -t devtmpfs devtmpfs $r/dev || setup_failed "mount devtmpfs"
mkdir -p $r/dev/pts $r/dev/shm
mount -t devpts -o newinstance,ptmxmode=0666 devpts $r/dev/pts 2>/dev/null || true
mount -t tmpfs -o mode=1777 tmpfs $r/dev/shm 2>/dev/null || true
mount -t tmpfs -o mode=1777 tmpfs $r/tmp || setup_failed "mount tmpfs /tmp"
mount -t tmpfs -o mode=0755 tmpfs $r/run || setup_failed "mount tmpfs /run"

# Writable exports, "tag:path" each, parents before children (sorted by the host).
for m in $RW_MOUNTS; do
  tag="${m%%:*}"
  path="${m#*:}"
  wait_tag "$tag" || setup_failed "9p export '$tag' ($path) did not appear"
  mkdir -p "$r$path" 2>/dev/null
  [ -d "$r$path" ] || setup_failed "mount point $path does not exist on the read-only host root"
  mount -t 9p -o "$p9opts,cache=mmap" "$tag" "$r$path" || setup_failed "cannot mount $tag at $path"
done
mkdir -p "$r$CTL_PATH"
mount --bind /ctl "$r$CTL_PATH" || setup_failed "cannot bind ctl at $CTL_PATH"

# Command output goes through virtio-serial ports named stdout/stderr (no tty,
# so no CR/LF translation); interactive runs use the virtio console hvc0.
out=/dev/null
err=/dev/null
for p in /sys/class/virtio-ports/*; do
  [ -f "$p/name" ] || continue
  case "$(cat "$p/name")" in
    stdout) out="/dev/$(basename "$p")" ;;
    stderr) err="/dev/$(basename "$p")" ;;
  esac
done

# enter_root CMD...: CMD with $r as its root, the way switch_root makes one (the mount moved
# onto /, then chroot .), in a mount namespace of its own so that this init and its
# heartbeat keep the initramfs. Not a plain chroot: the kernel refuses a chrooted process
# user namespaces (unshare(CLONE_NEWUSER): EPERM), and passt (the network e2e cases) needs
# one for its sandbox ("Couldn't create user namespace: Operation not permitted").
enter_root() {
  unshare -m /bin/sh -c 'mount --make-rprivate / 2>/dev/null; cd "$0" && mount --move . / && exec chroot . "$@"' "$r" "$@"
}
hostname minivmm-nested 2>/dev/null
echo "ready $(cut -d' ' -f1 /proc/uptime)" >/ctl/times
if [ "$INTERACTIVE" = 1 ] && [ -c /dev/hvc0 ]; then
  setsid -c enter_root /bin/bash --noprofile --norc "$CTL_PATH/cmd.sh" </dev/hvc0 >/dev/hvc0 2>&1
else
  enter_root /bin/bash --noprofile --norc "$CTL_PATH/cmd.sh" </dev/null >"$out" 2>"$err"
fi
rc=$?
echo "done $(cut -d' ' -f1 /proc/uptime)" >>/ctl/times
echo "$rc" >/ctl/status
sync
halt
