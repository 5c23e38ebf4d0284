#!/usr/bin/env bash
# run-in-nested-host.sh [-i] [--] COMMAND [ARG...]
#
# Runs COMMAND inside a nested KVM host and exits with its status. For machines
# whose /dev/kvm cannot boot Linux (PVM) or that have none: Debian's generic
# kernel (linux-image-amd64) boots under `qemu-system-x86_64 -accel tcg -cpu max`,
# which emulates AMD SVM with NPT, so after insmod kvm + kvm-amd it has a real
# /dev/kvm. The host's / is shared read-only over virtio-9p and the command runs
# chrooted into it, in the current directory, with the current environment, so
# host-built binaries run unchanged. Its stdout/stderr stream to ours.
#
# Inside the nested host:
#   /                 host root, READ-ONLY (9p, cache=loose)
#   /tmp /run /dev/shm  fresh tmpfs (host /tmp is NOT visible)
#   writable, at the same absolute paths as on the host (9p, cache=mmap):
#     - the images cache  ${MINIVMM_CACHE:-$HOME/.cache/minivmm}/images
#     - each directory in MINIVMM_NESTED_RW (colon-separated, absolute)
#     - the current directory, if it is under /tmp
#     - the folder of each argument that names an existing path under /tmp
#   MINIVMM_IN_NESTED_HOST=1 is set for the command.
#
# Options / environment:
#   -i                        interactive: stdin/stdout are a terminal (virtio console)
#   MINIVMM_NESTED_RW         extra writable directories (created if missing)
#   MINIVMM_NESTED_MEM        guest RAM (default 3G)
#   MINIVMM_NESTED_SMP        vCPUs (default 2)
#   MINIVMM_NESTED_CPU        QEMU -cpu model (default max,la57=off: TCG's SVM + NPT, 4-level
#                             paging; with la57 the host froze in ~1.5% of 2-vCPU guest
#                             starts, issue #16, README "Known issues")
#   MINIVMM_NESTED_ACCEL      QEMU -accel (default tcg; e.g. tcg,thread=single)
#   MINIVMM_NESTED_KVM_AMD_PARAMS  kvm_amd module parameters, e.g. "avic=0 npt=1"
#                             (as kvm_amd.X=Y on the nested host's kernel command line)
#   MINIVMM_NESTED_TIMEOUT    seconds before the nested host is killed (default 3600)
#   MINIVMM_NESTED_VERBOSE=1  nested host kernel console on stderr (else in a log)
#   MINIVMM_NESTED_REQUIRE_KVM=0  run the command even when /dev/kvm is missing
#   MINIVMM_NESTED_QUIET=1    no timing summary on stderr
#   MINIVMM_NESTED_KEEP=1     keep the control directory (console log, status)
#   MINIVMM_NESTED_HEARTBEAT_TIMEOUT  seconds without a heartbeat before the nested host
#                             counts as wedged and is killed (default 30; 0 = no watch)
#   MINIVMM_NESTED_BOOT_DEADLINE  seconds from QEMU's start to the first heartbeat
#                             (default 120)
#   MINIVMM_NESTED_DEBUG_STOP_AFTER=S  test aid: SIGSTOP QEMU S seconds after the
#                             command started, i.e. freeze the nested host as a wedge does
#
# Exit status: COMMAND's status; 124 on timeout; 125 when the nested host could
# not run it (no /dev/kvm in the nested host, boot or mount failure, crash); 123 when the
# nested host's own kernel failed while the command ran: a panic or a soft lockup, which
# a user process cannot cause. Seen twice on 2026-11-28 under QEMU's TCG emulation of SVM:
# a kernel-stack overflow of recursive page faults after a timer interrupt inside
# kvm_amd's VMRUN path, and both CPUs in soft lockup with minivmm's vCPU thread in VMRUN.
# The console is watched for these, so such a host is stopped at once, not at the timeout.
# 122 when the nested host stopped responding: its init's heartbeat (ctl/heartbeat,
# every 2 s) did not change for MINIVMM_NESTED_HEARTBEAT_TIMEOUT s, or never came. The
# whole emulated machine is then frozen (QEMU's TCG threads spin, nothing inside runs,
# nothing reaches the console: issue #16), so it is killed at once (SIGKILL).
# 122 and 123 are not results of the command: callers may rerun it in a fresh host.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"

interactive=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    -i) interactive=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; break ;;
    -*) die "unknown option '$1' (see --help)" ;;
    *) break ;;
  esac
done
[[ $# -gt 0 ]] || die "no command given (usage: $(basename "$0") [-i] [--] COMMAND [ARG...])"

need qemu-system-x86_64 qemu-system-x86
mem="${MINIVMM_NESTED_MEM:-3G}"
smp="${MINIVMM_NESTED_SMP:-2}"
timeout_s="${MINIVMM_NESTED_TIMEOUT:-3600}"
quiet="${MINIVMM_NESTED_QUIET:-0}"
t_start="$(date +%s.%N)"

# --- nested host kernel and initramfs (cached) ------------------------------
load_kernel host
# tun, dummy, veth: the network e2e cases and bench/net.sh (taps, a default route for passt,
# in namespaces they create); vhost_vsock, vhost_net: QEMU microvm's vhost-vsock-device and
# vhost=on taps there. The chroot has no /lib/modules for this kernel: modprobe cannot.
host_modules="virtio_pci 9p 9pnet_virtio virtio_console kvm_amd tun dummy veth vhost_vsock vhost_net"
init="$MINIVMM_IMAGES_DIR/nested/init-host.sh"
key="$({
  echo "$KERNEL_PKG $KERNEL_PKG_VERSION modules: $host_modules"
  sha256sum <"$(busybox_path)"
  hash_files "$init" "$MINIVMM_IMAGES_DIR/lib/common.sh"
} | short_hash)"
initrd="$MINIVMM_IMAGES_CACHE/initramfs/host-$KERNEL_VERSION-$key.cpio.gz"
if [[ ! -f $initrd ]]; then
  log "building the nested host initramfs ($KERNEL_VERSION)"
  mkdir -p "$(dirname "$initrd")"
  stage="$(mktemp -d "$(dirname "$initrd")/.stage.XXXXXX")"
  install_busybox "$stage"
  mkdir -p "$stage"/{dev,proc,sys,ctl,newroot,tmp} "$stage/lib/modules/$KERNEL_VERSION"
  [[ $(id -u) == 0 ]] && mknod -m 600 "$stage/dev/console" c 5 1
  install -m 0755 "$init" "$stage/init"
  mod_closure "$KERNEL_ROOT" "$KERNEL_VERSION" $host_modules >"$stage/lib/modules/load.list"
  while read -r m; do
    install -D -m 0644 "$KERNEL_MODULES/$m" "$stage/lib/modules/$KERNEL_VERSION/$m"
  done <"$stage/lib/modules/load.list"
  make_cpio "$stage" "$initrd"
  rm -rf "$stage"
fi

# --- control directory and writable exports ---------------------------------
ctl="$(mktemp -d /tmp/minivmm-nested.XXXXXX)"
cleanup() {
  if [[ ${MINIVMM_NESTED_KEEP:-0} == 1 ]]; then log "kept $ctl"; else rm -rf "$ctl"; fi
}
trap cleanup EXIT

rw_dirs=("$MINIVMM_IMAGES_CACHE")
mkdir -p "$MINIVMM_IMAGES_CACHE"
if [[ -n ${MINIVMM_NESTED_RW:-} ]]; then
  IFS=: read -r -a extra <<<"$MINIVMM_NESTED_RW"
  for d in "${extra[@]}"; do
    [[ -n $d ]] || continue
    [[ $d == /* ]] || die "MINIVMM_NESTED_RW entries must be absolute paths: '$d'"
    mkdir -p "$d"
    rw_dirs+=("$(realpath "$d")")
  done
fi
cwd="$(pwd -P)"
if [[ $cwd == /tmp || $cwd == /tmp/* ]]; then
  log "note: $cwd is under /tmp (a fresh tmpfs in the nested host); exporting it writable"
  rw_dirs+=("$cwd")
fi

# Host /tmp is hidden by the nested host's tmpfs: export the folder of each argument
# there (a VMM built in a checkout under /tmp, a disk image), as for the current directory.
for a in "$@"; do
  [[ $a == /tmp/* && -e $a ]] || continue
  covered=0
  for d in "${rw_dirs[@]}"; do [[ $a == "$d" || $a == "$d"/* ]] && covered=1; done
  [[ $covered == 1 ]] && continue
  d="$a"
  [[ -d $d ]] || d="$(dirname "$a")"
  d="$(realpath "$d")"
  log "note: $a is under /tmp; exporting $d writable"
  rw_dirs+=("$d")
done

kvm_amd_args=""
for p in ${MINIVMM_NESTED_KVM_AMD_PARAMS:-}; do
  [[ $p =~ ^[a-z_]+=[A-Za-z0-9_-]+$ ]] || die "MINIVMM_NESTED_KVM_AMD_PARAMS: '$p' is not NAME=VALUE"
  kvm_amd_args+=" kvm_amd.$p"
done
qemu_args=(
  -accel "${MINIVMM_NESTED_ACCEL:-tcg}" -cpu "${MINIVMM_NESTED_CPU:-max,la57=off}" -m "$mem" -smp "$smp"
  -nodefaults -no-user-config -display none -no-reboot
  -kernel "$KERNEL_IMAGE" -initrd "$initrd"
  -append "console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off rdinit=/init$kvm_amd_args"
  -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
  -virtfs "local,path=$ctl,mount_tag=ctl,security_model=none,multidevs=remap"
)
rw_mounts=""
i=0
while read -r d; do
  [[ -n $d ]] || continue
  [[ $d =~ ^[A-Za-z0-9_./+-]+$ ]] || die "writable path '$d' has characters the nested init cannot handle"
  qemu_args+=(-virtfs "local,path=$d,mount_tag=rw$i,security_model=none,multidevs=remap")
  rw_mounts+=" rw$i:$d"
  i=$((i + 1))
done < <(printf '%s\n' "${rw_dirs[@]}" | awk '{ print length($0), $0 }' | sort -n -s | cut -d' ' -f2- | awk '!seen[$0]++')

# Output reaches our stdout/stderr through FIFOs drained by `cat`: QEMU opening
# /proc/self/fd/1 itself would get a new file offset and, when stdout is a
# regular file, overwrite what the caller already wrote there.
readers=()
fifo_to() { # fifo_to NAME FD: create ctl/NAME.fifo and copy it to fd FD
  mkfifo "$ctl/$1.fifo"
  if [[ $2 == 1 ]]; then cat "$ctl/$1.fifo" & else cat "$ctl/$1.fifo" >&2 & fi
  readers+=($!)
}
# Kernel console: a log in ctl (shown on failure), or our stderr when verbose.
if [[ ${MINIVMM_NESTED_VERBOSE:-0} == 1 ]]; then
  fifo_to console 2
  qemu_args+=(-chardev "file,id=ser,path=$ctl/console.fifo" -serial chardev:ser)
else
  qemu_args+=(-serial "file:$ctl/console.log")
fi
qemu_args+=(-device virtio-serial-pci)
if [[ $interactive == 1 ]]; then
  qemu_args+=(-chardev stdio,id=con,signal=off -device virtconsole,chardev=con)
else
  fifo_to stdout 1
  fifo_to stderr 2
  qemu_args+=(
    -chardev "file,id=out,path=$ctl/stdout.fifo" -device virtserialport,chardev=out,name=stdout
    -chardev "file,id=err,path=$ctl/stderr.fifo" -device virtserialport,chardev=err,name=stderr
  )
fi

{
  echo "CTL_PATH=$ctl"
  echo "RW_MOUNTS='${rw_mounts# }'"
  echo "REQUIRE_KVM=${MINIVMM_NESTED_REQUIRE_KVM:-1}"
  echo "INTERACTIVE=$interactive"
} >"$ctl/config"
{
  echo "# generated by run-in-nested-host.sh"
  for v in $(compgen -e); do
    case "$v" in PWD | OLDPWD | SHLVL | _) continue ;; esac
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  echo "export MINIVMM_IN_NESTED_HOST=1"
  printf 'cd -- %q || { echo "run-in-nested-host: cannot cd to %q in the nested host" >&2; exit 125; }\n' "$cwd" "$cwd"
  printf 'exec'
  printf ' %q' "$@"
  printf '\n'
} >"$ctl/cmd.sh"

# --- run -----------------------------------------------------------------------
qemu_rc=0
hb_timeout="${MINIVMM_NESTED_HEARTBEAT_TIMEOUT:-30}"
boot_deadline="${MINIVMM_NESTED_BOOT_DEADLINE:-120}"
stop_after="${MINIVMM_NESTED_DEBUG_STOP_AFTER:-}"
[[ $hb_timeout =~ ^[0-9]+$ ]] || die "MINIVMM_NESTED_HEARTBEAT_TIMEOUT must be a number of seconds: '$hb_timeout'"
[[ $boot_deadline =~ ^[0-9]+$ ]] || die "MINIVMM_NESTED_BOOT_DEADLINE must be a number of seconds: '$boot_deadline'"
[[ -z $stop_after || $stop_after =~ ^[0-9]+$ ]] || die "MINIVMM_NESTED_DEBUG_STOP_AFTER must be a number of seconds: '$stop_after'"
qemu_args+=(-pidfile "$ctl/qemu.pid")
# The nested host's own kernel can break under QEMU's TCG emulation of SVM (a panic, or a
# CPU stuck in kvm_amd's VMRUN path: a soft lockup) while the command waits forever. Its
# console says so: stop it then instead of at the timeout, and report 123. It can also
# freeze as a whole, printing nothing: its heartbeat stops; stop it and report 122.
host_broken='Kernel panic - not syncing|BUG: soft lockup'
qemu_cpu() { # qemu_cpu: CPU use of each QEMU thread over 1 s ("name pct% ..."), to tell a
  # spinning QEMU (the wedge: its TCG vCPU threads busy) from a starved or stopped one
  local q t a b
  q="$(cat "$ctl/qemu.pid" 2>/dev/null || true)"
  [[ $q =~ ^[0-9]+$ && -d /proc/$q ]] || return 0
  a="$(for t in /proc/"$q"/task/*; do echo "$(cat "$t/comm" 2>/dev/null | tr ' ' _) $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null)"; done)"
  sleep 1
  b="$(for t in /proc/"$q"/task/*; do echo "$(cat "$t/comm" 2>/dev/null | tr ' ' _) $(awk '{ print $14 + $15 }' "$t/stat" 2>/dev/null)"; done)"
  paste -d' ' <(echo "$a") <(echo "$b") | awk -v hz="$(getconf CLK_TCK)" \
    '$1 != "" && $4 - $2 > 0 { printf "%s %d%% ", $1, 100 * ($4 - $2) / hz; n++ } END { if (!n) printf "none (stopped or starved)" }'
}
kill_qemu() { # kill_qemu TIMEOUT_PID: SIGKILL QEMU itself (a SIGSTOPped or spinning one too)
  local q
  q="$(cat "$ctl/qemu.pid" 2>/dev/null || true)"
  if [[ $q =~ ^[0-9]+$ ]] && kill -KILL "$q" 2>/dev/null; then return; fi
  kill -KILL "$1" 2>/dev/null || true
}
watch_host() { # watch_host TIMEOUT_PID
  local beat="" last=$SECONDS t0=$SECONDS stop_at="" now cur
  while sleep 1; do
    now=$SECONDS
    if [[ -f $ctl/console.log ]] && grep -qE "$host_broken" "$ctl/console.log" 2>/dev/null; then
      : >"$ctl/host-broken"
      kill_qemu "$1"
      return
    fi
    cur="$(cat "$ctl/heartbeat" 2>/dev/null || true)"
    if [[ -n $cur && $cur != "$beat" ]]; then
      beat="$cur"
      last=$now
    fi
    if [[ -n $stop_after && $stop_at != done && -f $ctl/times ]]; then
      [[ -n $stop_at ]] || stop_at=$((now + stop_after))
      if ((now >= stop_at)); then
        log "debug: MINIVMM_NESTED_DEBUG_STOP_AFTER=$stop_after: freezing the nested host (SIGSTOP QEMU)"
        kill -STOP "$(cat "$ctl/qemu.pid")" 2>/dev/null || true
        stop_at=done
      fi
    fi
    ((hb_timeout > 0)) || continue
    if [[ -z $beat ]] && ((now - t0 >= boot_deadline)); then
      echo "no heartbeat within ${boot_deadline}s of QEMU's start (MINIVMM_NESTED_BOOT_DEADLINE)" >"$ctl/host-unresponsive"
      kill_qemu "$1"
      return
    fi
    if [[ -n $beat ]] && ((now - last >= hb_timeout)); then
      echo "no heartbeat for $((now - last))s (MINIVMM_NESTED_HEARTBEAT_TIMEOUT=$hb_timeout), last '$beat' (uptime, count); QEMU threads busy over 1 s: $(qemu_cpu)" >"$ctl/host-unresponsive"
      kill_qemu "$1"
      return
    fi
  done
}
if [[ $interactive == 1 ]]; then
  timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" || qemu_rc=$?
else
  # In a subshell whose own stderr is /dev/null (QEMU's is fd 3, ours), so that bash's
  # "Killed" note about `timeout` (which re-raises the SIGKILL the watcher gave QEMU)
  # does not reach the caller, and which exits normally, so that ours does not either.
  (
    timeout --foreground -k 10 "$timeout_s" qemu-system-x86_64 "${qemu_args[@]}" </dev/null 2>&3
    exit $?
  ) 3>&2 2>/dev/null &
  qemu_pid=$!
  watch_host "$qemu_pid" &
  watcher=$!
  wait "$qemu_pid" || qemu_rc=$?
  kill "$watcher" 2>/dev/null || true
  wait "$watcher" 2>/dev/null || true
fi
# QEMU never opened the FIFOs if it failed early: unblock the readers.
# (An O_RDWR open of a FIFO never blocks; closing it gives a waiting reader EOF.)
for f in "$ctl"/*.fifo; do
  [[ -p $f ]] || continue
  exec {unblock}<>"$f"
  exec {unblock}>&-
done
[[ ${#readers[@]} -gt 0 ]] && wait "${readers[@]}" 2>/dev/null || true
t_end="$(date +%s.%N)"

status="$(cat "$ctl/status" 2>/dev/null || true)"
show_console() {
  if [[ -s $ctl/console.log ]]; then
    log "last lines of the nested host console ($ctl/console.log):"
    tail -n 25 "$ctl/console.log" | sed 's/^/  | /' >&2
  fi
}
# (137: `timeout` had to SIGKILL QEMU after its TERM, e.g. a stopped QEMU)
timed_out="$(awk -v s="$t_start" -v e="$t_end" -v t="$timeout_s" 'BEGIN { print (e - s >= t) ? 1 : 0 }')"
if [[ -z $status && ! -e $ctl/host-unresponsive && ! -e $ctl/host-broken ]] &&
  [[ $qemu_rc == 124 || ($qemu_rc == 137 && $timed_out == 1) ]]; then
  log "error: timed out after ${timeout_s}s (MINIVMM_NESTED_TIMEOUT)"
  show_console
  exit 124
fi
if [[ -e $ctl/host-unresponsive && -z $status ]]; then
  log "error: nested host stopped responding: $(cat "$ctl/host-unresponsive"); killed it (exit 122)"
  show_console
  exit 122
fi
case "$status" in
  '' )
    log "error: the nested host ended without reporting a status (qemu exit $qemu_rc)"
    show_console
    MINIVMM_NESTED_KEEP=1
    if [[ -e $ctl/host-broken ]] || grep -qE "$host_broken" "$ctl/console.log" 2>/dev/null; then
      log "error: the nested host's own kernel failed (panic or soft lockup: see its console above)"
      exit 123
    fi
    exit 125
    ;;
  nokvm)
    log "error: /dev/kvm did not appear in the nested host: $(cat "$ctl/kvm" 2>/dev/null)"
    [[ -s $ctl/kvm-dmesg ]] && sed 's/^/  | /' "$ctl/kvm-dmesg" >&2
    log "(set MINIVMM_NESTED_REQUIRE_KVM=0 to run the command anyway)"
    exit 125
    ;;
  setup:*)
    log "error: nested host $status"
    show_console
    exit 125
    ;;
esac
[[ $status =~ ^[0-9]+$ ]] || { log "error: unexpected status '$status'"; exit 125; }
if [[ $quiet != 1 ]]; then
  ready="$(awk '$1 == "ready" { print $2 }' "$ctl/times" 2>/dev/null)"
  done_t="$(awk '$1 == "done" { print $2 }' "$ctl/times" 2>/dev/null)"
  awk -v s="$t_start" -v e="$t_end" -v r="${ready:-0}" -v d="${done_t:-0}" -v rc="$status" \
    'BEGIN { printf "[run-in-nested-host.sh] exit %d; nested host ready at %.1fs (guest uptime), command %.1fs, total %.1fs\n", rc, r, d - r, e - s }' >&2
fi
exit "$status"
