#!/bin/sh
# /init of the minivmm test initramfs (busybox sh, PID 1 in the guest).
#
# 1. mounts /proc, /sys, /dev (devtmpfs)
# 2. loads the kernel modules listed in /lib/modules/load.list (dependency order); with
#    console=hvc0 this comes first, since /dev/console exists only once virtio_console is
#    loaded; then links /dev/virtio-ports/NAME for each named virtio-console port
# 3. runs /scenarios/$NAME for minivmm.scenario=NAME on the kernel command line
#    (default: smoke)
# 4. prints machine-readable lines "MINIVMM-RESULT key=value" on the console
# 5. reports the scenario's status through the minivmm.exit port (minivmm's exit status:
#    0 pass, 1 fail, or what the scenario wrote to /tmp/minivmm-status), then powers off
#    (poweroff -f), or reboots (reboot -f) with minivmm.exit=reboot
#
# Other command-line options:
#   minivmm.exit=poweroff|reboot|shell   how to end (shell: drop to a busybox sh)
#   minivmm.wait=SECONDS                 how long to wait for /dev/vda (default 5)
#   minivmm.arg=VALUE                    passed to the scenario as $1 and $MINIVMM_ARG
export PATH=/bin:/sbin
export HOME=/root
umask 022

result() { echo "MINIVMM-RESULT $*"; }

# report_status N: the guest's result for minivmm's exit status, through the minivmm.exit
# virtio-console port (absent under other VMMs, or with --exit-port off: then nothing).
report_status() {
  [ -e /dev/virtio-ports/minivmm.exit ] && echo "$1" >/dev/virtio-ports/minivmm.exit
}

finish() {
  sync
  # The scenario's own status (0 pass, 1 fail), unless it chose one (/tmp/minivmm-status).
  status="${rc:-1}"
  [ -s /tmp/minivmm-status ] && status="$(cat /tmp/minivmm-status)"
  [ "$MINIVMM_EXIT" = shell ] || report_status "$status"
  case "$MINIVMM_EXIT" in
    reboot) result "exit=reboot"; reboot -f ;;
    shell)
      result "exit=shell"
      setsid cttyhack sh
      poweroff -f
      ;;
    *) result "exit=poweroff"; poweroff -f ;;
  esac
  # poweroff/reboot -f do not return; if the platform ignores them, idle
  # instead of letting PID 1 exit (which panics the kernel).
  while :; do sleep 3600; done
}

mkdir -p /proc /sys /dev /tmp /root /mnt
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null || mdev -s
mount -t tmpfs tmpfs /tmp

kver="$(uname -r)"
# load_modules: every module of load.list not yet loaded; failures go to /tmp/modules.err.
load_modules() {
  [ -f /lib/modules/load.list ] || return 0
  while read -r mod; do
    [ -n "$mod" ] || continue
    name="$(basename "$mod" .ko)"
    [ -d "/sys/module/$(echo "$name" | tr - _)" ] && continue
    if ! err="$(insmod "/lib/modules/$kver/$mod" 2>&1)"; then
      echo "init: insmod $mod failed: $err" >>/tmp/modules.err
    fi
  done </lib/modules/load.list
}
# Without a console the kernel started us without stdio (console=hvc0 before virtio_console
# is loaded, or no /dev/console node in the initramfs): load the modules, then open it.
if ! [ -t 1 ]; then
  load_modules
  # hvc0 registers once the driver and the device have exchanged their control messages.
  i=0
  until (: >/dev/console) 2>/dev/null || [ "$i" -ge 50 ]; do usleep 100000; i=$((i + 1)); done
  exec </dev/console >/dev/console 2>&1
fi
mkdir -p /dev/pts
mount -t devpts devpts /dev/pts 2>/dev/null || true
echo 1 >/proc/sys/kernel/printk_ratelimit 2>/dev/null || true

MINIVMM_SCENARIO=smoke
MINIVMM_EXIT=poweroff
MINIVMM_WAIT=5
MINIVMM_ARG=
for opt in $(cat /proc/cmdline); do
  case "$opt" in
    minivmm.scenario=*) MINIVMM_SCENARIO="${opt#*=}" ;;
    minivmm.exit=*) MINIVMM_EXIT="${opt#*=}" ;;
    minivmm.wait=*) MINIVMM_WAIT="${opt#*=}" ;;
    minivmm.arg=*) MINIVMM_ARG="${opt#*=}" ;;
  esac
done
export MINIVMM_SCENARIO MINIVMM_EXIT MINIVMM_WAIT MINIVMM_ARG

result "init=start uptime=$(cut -d' ' -f1 /proc/uptime) kernel=$(uname -r)"

load_modules
if [ -s /tmp/modules.err ]; then
  cat /tmp/modules.err
  result "modules=failed"
else
  result "modules=ok"
fi

# Named virtio-console ports: what udev's rule does, /dev/virtio-ports/NAME -> /dev/vportNpM.
# The device names each port just after the driver added it: wait up to 2 s for the names
# of ports 1.. (port 0 is minivmm's console, hvc0, which has none). Linux shows a port
# without a name as "(null)".
port_name() { n="$(cat "$1/name" 2>/dev/null)"; [ "$n" = "(null)" ] && n=; echo "$n"; }
if [ -d /sys/class/virtio-ports ]; then
  mkdir -p /dev/virtio-ports
  i=0
  while [ "$i" -lt 20 ]; do
    missing=0
    for p in /sys/class/virtio-ports/vport*p*; do
      [ -e "$p" ] || continue
      case "$p" in *p0) continue ;; esac
      [ -n "$(port_name "$p")" ] || missing=1
    done
    [ "$missing" = 0 ] && break
    usleep 100000
    i=$((i + 1))
  done
  for p in /sys/class/virtio-ports/vport*p*; do
    [ -e "$p" ] || continue
    n="$(port_name "$p")"
    [ -n "$n" ] && ln -sf "/dev/$(basename "$p")" "/dev/virtio-ports/$n"
  done
fi

# virtio-blk probing is synchronous on insmod, but give a slow device a moment.
if [ "$MINIVMM_WAIT" -gt 0 ] 2>/dev/null; then
  i=0
  while [ ! -e /sys/block/vda ] && [ "$i" -lt $((MINIVMM_WAIT * 10)) ]; do
    usleep 100000
    i=$((i + 1))
  done
fi

script="/scenarios/$MINIVMM_SCENARIO"
if [ ! -f "$script" ]; then
  result "scenario=$MINIVMM_SCENARIO status=missing available=$(ls /scenarios | grep -v '^_' | tr '\n' ',' | sed 's/,$//')"
  finish
fi

result "scenario=$MINIVMM_SCENARIO phase=start uptime=$(cut -d' ' -f1 /proc/uptime)"
if [ "$MINIVMM_SCENARIO" = shell ]; then
  # Interactive: needs a controlling terminal for job control and ^C.
  setsid cttyhack sh "$script" "$MINIVMM_ARG"
else
  sh "$script" "$MINIVMM_ARG"
fi
rc=$?
[ "$rc" = 0 ] && status=pass || status=fail
result "scenario=$MINIVMM_SCENARIO status=$status rc=$rc uptime=$(cut -d' ' -f1 /proc/uptime)"
finish
