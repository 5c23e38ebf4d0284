#!/usr/bin/env bash
# smp-flake.sh OUTDIR [RUNS] — the known SMP flake without ACPI (README, "Known issues"):
# the minimal kernel (images/build-minimal-kernel.sh, its initramfs without modules) on
# SMP_FLAKE_CPUS vCPUs (default 2), minivmm --no-acpi --virtio-cmdline next to QEMU -M
# microvm,acpi=off, RUNS boots each (default 100), interleaved, in one run of
# bench/guest_run.py smp-flake in one nested KVM host session. A boot fails if it does not
# reach /init within 60 s. Writes OUTDIR/smp-flake.tsv, .log (every console),
# .failures.txt (exit status and console tail of each failed boot), .stats (counts, Wilson
# intervals, Fisher's test), .load (/proc/loadavg every 15 s) and .env.
# A nested host session that ends mid-run is restarted as in bench/boot-formats.sh (the
# boot under way is repeated; at most SMP_FLAKE_SESSIONS sessions, default 3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
runs="${2:-100}"
minivmm="${MINIVMM_BIN:-$root/build/rel/vmm/minivmm}"
cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"
source "$here/lib/nested_sessions.sh"
kernel="$("$root/images/build-minimal-kernel.sh" | tail -n1)"
initrd="$("$root/images/build-initramfs.sh" --modules "")"
work="$cache/tmp/smp-flake-$$"
mkdir -p "$work"
disk="$("$root/images/build-disk.sh" --out "$work/disk.img")"
(while :; do echo "$(date +%s) $(cat /proc/loadavg)"; sleep 15; done) >"$out/smp-flake.load" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$work"' EXIT
nested_sessions smp-flake "${SMP_FLAKE_SESSIONS:-3}" smp-flake \
  --minivmm "$minivmm" --kernel "$kernel" --initrd "$initrd" --disk "$disk" \
  --cpus "${SMP_FLAKE_CPUS:-2}" --runs "$runs" --out "$work/smp-flake.tsv" \
  --log "$work/smp-flake.log" --failures "$work/smp-flake.failures.txt" --stage /dev/shm
kill "$sampler" 2>/dev/null || true
for f in smp-flake.tsv smp-flake.log smp-flake.failures.txt; do
  [[ -f $work/$f ]] && cp "$work/$f" "$out/$f"
done
[[ -s $out/smp-flake.tsv ]] && python3 "$here/guest_run.py" flake-stats "$out/smp-flake.tsv" | tee "$out/smp-flake.stats"
{
  echo "nested=$("$root/images/detect-kvm.sh") runs=$runs cpus=${SMP_FLAKE_CPUS:-2} nested-host-sessions=$sessions minivmm=$minivmm ($(git -C "$root" rev-parse --short HEAD 2>/dev/null))"
  echo "kernel=$kernel ($(stat -c %s "$kernel") B) initrd=$initrd"
  if [[ $rc != 0 ]]; then echo "guest_run.py smp-flake exited $rc"; fi
} >"$out/smp-flake.env"
exit "$rc"
