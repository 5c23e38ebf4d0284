#!/usr/bin/env bash
# hostroot-exec.sh [ROUNDS] — `--host-root --exec` latency: the time from exec to the
# command's first output byte, and to the exit, for minivmm and, side by side in the same
# run, QEMU microvm booting the same kernel and the same init (minivmm's host-root
# initramfs, packed by the build's tests/boot/pack-hostroot) with the host's / over
# vhost-user-fs and the same virtiofsd, and the three ports on virtio-serial. Rounds are
# interleaved (minivmm, QEMU, minivmm, ...). Where KVM cannot run Linux (this project's
# machines) everything runs in one nested KVM host (images/with-kvm.sh).
#
# Both: Debian's cloud kernel (images/fetch-kernel.sh cloud) with its module tree, 1 vCPU,
# 512 MiB, console ttyS0 to nowhere (minivmm: --serial null, its default here; QEMU: a
# file), `quiet`. The command is `echo first`. minivmm's time includes packing its
# initramfs and starting virtiofsd; QEMU's includes starting virtiofsd (its initramfs is
# packed before the clock starts).
#
# Environment: MINIVMM_BIN (default build/rel/vmm/minivmm, else build/gcc/vmm/minivmm),
# PACK_HOSTROOT (default the same build's tests/boot/pack-hostroot). Needs root. QEMU's
# virtiofsd runs with -o sandbox=chroot (its namespace sandbox cannot take source=/).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rounds="${1:-5}"
say() { echo "hostroot-exec: $*"; }
die() { echo "hostroot-exec: error: $*" >&2; exit 2; }

if [[ ${2:-} == --inner ]]; then
  MINIVMM_BIN="$3" PACK_HOSTROOT="$4" KERNEL_IMAGE="$5" KERNEL_MODULES="$6"
else
  # shellcheck source=../images/lib/common.sh
  source "$root/images/lib/common.sh"
  load_kernel cloud
  bin="${MINIVMM_BIN:-}"
  if [[ -z $bin ]]; then
    for b in "$root/build/rel/vmm/minivmm" "$root/build/gcc/vmm/minivmm"; do
      [[ -x $b ]] && { bin="$b"; break; }
    done
  fi
  [[ -x $bin ]] || die "no minivmm binary (build it, or set MINIVMM_BIN)"
  pack="${PACK_HOSTROOT:-$(dirname "$(dirname "$bin")")/tests/boot/pack-hostroot}"
  [[ -x $pack ]] || die "no pack-hostroot at $pack (a build with tests; or set PACK_HOSTROOT)"
  say "minivmm $bin; kernel $KERNEL_IMAGE; modules $KERNEL_MODULES; rounds $rounds"
  say "load: $(uptime)"
  # The nested host passes no environment of ours through: the inner run gets arguments.
  exec "$root/images/with-kvm.sh" bash "$0" "$rounds" --inner "$bin" "$pack" "$KERNEL_IMAGE" \
    "$KERNEL_MODULES"
fi

# --- inside: where /dev/kvm runs Linux --------------------------------------------------
[[ $(id -u) == 0 ]] || die "needs root (virtiofsd)"
work="$(mktemp -d /tmp/minivmm-hostroot-exec.XXXXXX)"
trap 'rm -rf "$work"' EXIT
now() { date +%s.%N; }
ms() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.0f", (b - a) * 1000 }'; }

"$PACK_HOSTROOT" --out "$work/initramfs.cpio" --exec "echo first" --kernel "$KERNEL_IMAGE" \
  --modules "$KERNEL_MODULES" || die "pack-hostroot failed"

# run_minivmm: sets first_ms, exit_ms, out.
run_minivmm() {
  local t0 t1 t2
  t0="$(now)"
  "$MINIVMM_BIN" --kernel "$KERNEL_IMAGE" --modules "$KERNEL_MODULES" --host-root --memory 512M \
    --timeout 120 --exec "echo first" </dev/null 2>"$work/m.err" |
    { head -c1 >"$work/m.first"; now >"$work/m.t1"; cat >>"$work/m.first"; }
  t2="$(now)"
  t1="$(cat "$work/m.t1")"
  first_ms="$(ms "$t0" "$t1")" exit_ms="$(ms "$t0" "$t2")" out="$(cat "$work/m.first")"
}

run_qemu() {
  local t0 t1 t2 vfs
  rm -f "$work/vfs.sock" "$work/out.fifo" "$work/q.t1"
  mkfifo "$work/out.fifo"
  : >"$work/exit"
  { head -c1 >"$work/q.first"; now >"$work/q.t1"; cat >>"$work/q.first"; } <"$work/out.fifo" &
  local reader=$!
  t0="$(now)"
  # sandbox=chroot: with source=/ its namespace sandbox fails (pivot_root EBUSY); minivmm
  # binds / elsewhere for it instead (devices/virtiofsd.cc).
  /usr/lib/qemu/virtiofsd --socket-path="$work/vfs.sock" -o source=/ -o cache=auto \
    -o sandbox=chroot -o log_level=err 2>"$work/vfs.err" &
  vfs=$!
  for _ in $(seq 200); do [[ -S $work/vfs.sock ]] && break; sleep 0.01; done
  timeout -k 5 120 qemu-system-x86_64 -M microvm,acpi=on,memory-backend=mem -accel kvm -cpu host \
    -m 512M -smp 1 -nodefaults -no-user-config -display none -no-reboot \
    -object memory-backend-memfd,id=mem,size=512M,share=on -global virtio-mmio.force-legacy=false \
    -kernel "$KERNEL_IMAGE" -initrd "$work/initramfs.cpio" \
    -append "console=ttyS0 reboot=k panic=-1 quiet" -serial "file:$work/q.console" \
    -chardev "socket,id=vfs,path=$work/vfs.sock" -device vhost-user-fs-device,chardev=vfs,tag=hostroot \
    -device virtio-serial-device,max_ports=4 \
    -chardev "file,id=pout,path=$work/out.fifo" -device virtserialport,chardev=pout,name=minivmm.stdout \
    -chardev "file,id=perr,path=$work/q.err" -device virtserialport,chardev=perr,name=minivmm.stderr \
    -chardev "file,id=pexit,path=$work/exit" -device virtserialport,chardev=pexit,name=minivmm.exit \
    </dev/null >/dev/null 2>"$work/q.stderr"
  t2="$(now)"
  wait "$reader"
  kill "$vfs" 2>/dev/null
  wait "$vfs" 2>/dev/null
  t1="$(cat "$work/q.t1" 2>/dev/null || echo "$t2")"
  first_ms="$(ms "$t0" "$t1")" exit_ms="$(ms "$t0" "$t2")" out="$(cat "$work/q.first")"
}

m_first=() m_exit=() q_first=() q_exit=()
for ((r = 1; r <= rounds; r++)); do
  run_minivmm
  [[ $out == first ]] || die "minivmm round $r: stdout '$out', not 'first' ($(head -c 300 "$work/m.err"))"
  m_first+=("$first_ms") m_exit+=("$exit_ms")
  run_qemu
  [[ $out == first ]] || die "QEMU round $r: stdout '$out', not 'first' ($(head -c 300 "$work/q.stderr"))"
  q_first+=("$first_ms") q_exit+=("$exit_ms")
  say "round $r: minivmm first byte ${m_first[-1]} ms, exit ${m_exit[-1]} ms; QEMU first byte ${q_first[-1]} ms, exit ${q_exit[-1]} ms"
done
median() { printf '%s\n' "$@" | sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.0f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { printf '%s\n' "$@" | sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
mf="$(median "${m_first[@]}")" qf="$(median "${q_first[@]}")"
me="$(median "${m_exit[@]}")" qe="$(median "${q_exit[@]}")"
echo
echo "| --host-root --exec 'echo first' (ms, median of $rounds) | minivmm | QEMU microvm, same init and virtiofsd | QEMU / minivmm |"
echo "|---|---|---|---|"
echo "| exec → first output byte | $mf ($(range "${m_first[@]}")) | $qf ($(range "${q_first[@]}")) | $(awk -v a="$qf" -v b="$mf" 'BEGIN { printf "%.2f", a / b }')× |"
echo "| exec → exit | $me ($(range "${m_exit[@]}")) | $qe ($(range "${q_exit[@]}")) | $(awk -v a="$qe" -v b="$me" 'BEGIN { printf "%.2f", a / b }')× |"
echo "load at end: $(uptime)"
