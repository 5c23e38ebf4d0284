#!/usr/bin/env bash
# boot-formats.sh OUTDIR [RUNS [GUEST_RUN_ARGS...]] — Linux boot time by kernel format: the same kernel as a
# bzImage and as its ELF vmlinux, minivmm (bzImage, vmlinux through PVH, vmlinux through the
# 64-bit entry) next to QEMU -M microvm (bzImage, vmlinux through PVH), on the same
# initramfs and disk, in one run of bench/guest_run.py boot-formats (all variants
# interleaved, RUNS boots each, default 5) in one nested KVM host session.
# Kernels: Debian's cloud kernel (its vmlinux extracted by images/extract-vmlinux.sh; ACPI,
# 2 vCPUs) and the minimal kernel (images/build-minimal-kernel.sh keeps its vmlinux next to
# the bzImage; no ACPI, devices on the command line, 1 vCPU), as bench/linux-guest.sh boots
# them. BOOT_FORMAT_KERNELS="cloud minimal" picks the kernels. GUEST_RUN_ARGS go to
# guest_run.py boot-formats (--vmms, --formats, --minivmm-variant: bench/seccomp_boot.sh).
# Writes OUTDIR/boot-formats.tsv, .log (every console), .failures.txt (exit status and
# console tail of each run that did not pass), .load (the machine's /proc/loadavg every 15 s
# while it ran) and .env, and keeps a copy of the TSV and load in OUTDIR/boot-formats-history/.
# Figures, not pass/fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
runs="${2:-5}"
extra=("${@:3}")
minivmm="${MINIVMM_BIN:-$root/build/rel/vmm/minivmm}"
cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"
kernels=" ${BOOT_FORMAT_KERNELS:-cloud minimal} "

source "$root/images/lib/common.sh"
source "$here/lib/nested_sessions.sh"
flavours=()
env_lines=()
if [[ $kernels == *" cloud "* ]]; then
  load_kernel cloud
  cvm="$("$root/images/extract-vmlinux.sh" "$KERNEL_IMAGE")"
  cinit="$("$root/images/build-initramfs.sh")"
  flavours+=(--flavour "cloud,bzimage=$KERNEL_IMAGE,vmlinux=$cvm,initrd=$cinit")
  env_lines+=("cloud bzImage=$KERNEL_IMAGE ($(stat -c %s "$KERNEL_IMAGE") B) vmlinux=$cvm ($(stat -c %s "$cvm") B) initrd=$cinit")
fi
if [[ $kernels == *" minimal "* ]]; then
  # Cached after the first build (~5 min on 2 cores); a failure only drops these rows.
  if mbz="$("$root/images/build-minimal-kernel.sh" | tail -n1)" &&
    minit="$("$root/images/build-initramfs.sh" --modules "")" && [[ -f $(dirname "$mbz")/vmlinux ]]; then
    mvm="$(dirname "$mbz")/vmlinux"
    flavours+=(--flavour "minimal,bzimage=$mbz,vmlinux=$mvm,initrd=$minit,acpi=off,cpus=1")
    env_lines+=("minimal bzImage=$mbz ($(stat -c %s "$mbz") B) vmlinux=$mvm ($(stat -c %s "$mvm") B) initrd=$minit")
  else
    echo "boot-formats: the minimal kernel, its vmlinux or its initramfs is missing: rows skipped" >&2
  fi
fi
[[ ${#flavours[@]} -gt 0 ]] || { echo "boot-formats: no kernel to boot" >&2; exit 1; }
# The disk must be writable inside the nested host: the images cache is.
work="$cache/tmp/boot-formats-$$"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
disk="$("$root/images/build-disk.sh" --out "$work/disk.img")"

# The machine's load while it runs (outside the nested host): one /proc/loadavg a 15 s.
(while :; do echo "$(date +%s) $(cat /proc/loadavg)"; sleep 15; done) >"$out/boot-formats.load" &
sampler=$!
trap 'kill "$sampler" 2>/dev/null || true; rm -rf "$work"' EXIT
# --stage /dev/shm: the nested host's tmpfs (see guest_run.py). A dying nested host ends a
# session and a fresh one repeats the incomplete runs (bench/lib/nested_sessions.sh; at most
# BOOT_FORMAT_SESSIONS sessions in all, default 3).
nested_sessions boot-formats "${BOOT_FORMAT_SESSIONS:-3}" boot-formats \
  --minivmm "$minivmm" --disk "$disk" "${flavours[@]}" --runs "$runs" \
  --out "$work/boot-formats.tsv" --log "$work/boot-formats.log" \
  --failures "$work/boot-formats.failures.txt" --stage /dev/shm "${extra[@]}"
kill "$sampler" 2>/dev/null || true
for f in boot-formats.tsv boot-formats.log boot-formats.failures.txt; do
  [[ -f $work/$f ]] && cp "$work/$f" "$out/$f"
done
# Every set of runs is also kept in OUTDIR/boot-formats-history/ (which run-all.sh leaves in
# place): report.py compares the sets, since one set's ratio moves with the machine's load.
if [[ -s $out/boot-formats.tsv ]]; then
  stamp="$(date -u +%Y%m%dT%H%M%SZ)"
  mkdir -p "$out/boot-formats-history"
  cp "$out/boot-formats.tsv" "$out/boot-formats-history/$stamp.tsv"
  cp "$out/boot-formats.load" "$out/boot-formats-history/$stamp.load"
fi
{
  echo "nested=$("$root/images/detect-kvm.sh") runs=$runs nested-host-sessions=$sessions minivmm=$minivmm ($(git -C "$root" rev-parse --short HEAD 2>/dev/null))"
  printf '%s\n' "${env_lines[@]}"
  if [[ $rc != 0 ]]; then echo "guest_run.py boot-formats exited $rc"; fi
} >"$out/boot-formats.env"
exit "$rc"
