#!/usr/bin/env bash
# hostroot-qemu.sh PACK_HOSTROOT [options] -- COMMAND
#
# Boots minivmm's host-root guest init (boot/hostroot/init/) under QEMU microvm, before
# minivmm's own --host-root exists, the way minivmm will run it: the host's / over virtio-fs
# (QEMU's vhost-user-fs-device with /usr/lib/qemu/virtiofsd), tag "hostroot", mounted
# read-only by the init; the ports minivmm.stdout, minivmm.stderr and minivmm.exit on a
# virtio-serial device, each written to a file. Prints the command's stdout and stderr, the
# status the init reported, and exits with that status (or 2 when there is none).
#
# Options:
#   --kernel IMAGE   default: the cached Debian cloud kernel (images/fetch-kernel.sh cloud)
#   --modules DIR    default: the kernel's module tree next to it in the cache
#   --cwd DIR        the command's working directory (default /)
#   --accel tcg|kvm  default tcg: this project's /dev/kvm (PVM) cannot run Linux
#   --no-stderr-port leave out minivmm.stderr (the init falls back to the console)
#   --hvc0           the console on virtio-console port 0 (console=hvc0, hvc0.log), not ttyS0:
#                    the init starts without a console until it has loaded virtio_console
#   --pack ARG       one more argument for pack-hostroot (e.g. --pack --tag=other)
#   --keep           keep the work directory (console.log, stdout, stderr, exit)
#   --verbose        the kernel's log on the console (no "quiet")
# Needs root (virtiofsd). Shares the host's / with the guest: the guest mounts it read-only.
set -euo pipefail

pack="${1:?usage: hostroot-qemu.sh PACK_HOSTROOT [options] -- COMMAND}"
shift
cache="${MINIVMM_CACHE:-$HOME/.cache/minivmm}/images"
kernel="$cache/cloud/vmlinuz"
modules=""
cwd=/
accel=tcg
stderr_port=1
keep=0
quiet=quiet
pack_args=()
console=ttyS0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --kernel) kernel="$2"; shift 2 ;;
    --modules) modules="$2"; shift 2 ;;
    --cwd) cwd="$2"; shift 2 ;;
    --accel) accel="$2"; shift 2 ;;
    --no-stderr-port) stderr_port=0; shift ;;
    --hvc0) console=hvc0; shift ;;
    --keep) keep=1; shift ;;
    --pack) pack_args+=("$2"); shift 2 ;;
    --verbose) quiet=""; shift ;;
    --) shift; break ;;
    *) echo "hostroot-qemu.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
command="${1:?hostroot-qemu.sh: no command after --}"
[[ -n $modules ]] || modules="$(readlink -f "$cache/cloud/modules")"
[[ $(id -u) == 0 ]] || { echo "hostroot-qemu.sh: virtiofsd needs root" >&2; exit 2; }

work="$(mktemp -d /tmp/minivmm-hostroot.XXXXXX)"
vfs_pid=""
cleanup() {
  [[ -n $vfs_pid ]] && kill "$vfs_pid" 2>/dev/null && wait "$vfs_pid" 2>/dev/null
  if [[ $keep == 1 ]]; then echo "hostroot-qemu.sh: kept $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT

"$pack" --out "$work/initramfs.cpio" --exec "$command" --cwd "$cwd" --kernel "$kernel" \
  --modules "$modules" "${pack_args[@]}"
touch "$work/stdout" "$work/stderr" "$work/exit"

/usr/lib/qemu/virtiofsd --socket-path="$work/vfs.sock" -o source=/ -o cache=auto \
  -o sandbox=chroot 2>"$work/virtiofsd.log" &
vfs_pid=$!
for _ in $(seq 50); do [[ -S $work/vfs.sock ]] && break; sleep 0.1; done
[[ -S $work/vfs.sock ]] || { cat "$work/virtiofsd.log" >&2; exit 2; }

ports=(-device virtio-serial-device,max_ports=4)
if [[ $console == hvc0 ]]; then
  ports+=(-chardev "file,id=con,path=$work/hvc0.log" -device virtconsole,chardev=con)
fi
ports+=(
  -chardev "file,id=pout,path=$work/stdout" -device virtserialport,chardev=pout,name=minivmm.stdout
  -chardev "file,id=pexit,path=$work/exit" -device virtserialport,chardev=pexit,name=minivmm.exit)
if [[ $stderr_port == 1 ]]; then
  ports+=(-chardev "file,id=perr,path=$work/stderr" -device virtserialport,chardev=perr,name=minivmm.stderr)
fi
cpu=max
[[ $accel == kvm ]] && cpu=host
t0=$(date +%s.%N)
rc=0
timeout -k 5 "${MINIVMM_HOSTROOT_TIMEOUT:-180}" qemu-system-x86_64 -M microvm,acpi=on,pit=on,pic=on,rtc=on,memory-backend=mem -accel "$accel" \
  -cpu "$cpu" -m 1G -smp 1 -nodefaults -no-user-config -display none -no-reboot \
  -object memory-backend-memfd,id=mem,size=1G,share=on -global virtio-mmio.force-legacy=false \
  -kernel "$kernel" -initrd "$work/initramfs.cpio" \
  -append "console=$console reboot=t panic=-1 $quiet" -serial "file:$work/console.log" \
  -chardev "socket,id=vfs,path=$work/vfs.sock" -device vhost-user-fs-device,chardev=vfs,tag=hostroot \
  "${ports[@]}" </dev/null || rc=$?
t1=$(date +%s.%N)
echo "--- console (minivmm-init lines and kernel errors)"
grep -a -h -E 'minivmm-init|Kernel panic|BUG|virtio|overlay' "$work/console.log" \
  "$work/hvc0.log" 2>/dev/null | tr -d '\r' || true
echo "--- stdout"
cat "$work/stdout"
echo "--- stderr"
cat "$work/stderr"
echo "--- exit port: $(tr -d '\n' <"$work/exit")"
awk -v a="$t0" -v b="$t1" -v r="$rc" 'BEGIN { printf "--- qemu exit %d, wall %.1f s\n", r, b - a }'
status="$(tr -d '\n' <"$work/exit")"
[[ -n $status ]] || exit 2
exit "$status"
