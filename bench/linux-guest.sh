#!/usr/bin/env bash
# linux-guest.sh OUTDIR [BOOT_RUNS] [BLK_RUNS] — Linux boots and in-guest block I/O,
# minivmm next to QEMU -M microvm (bench/guest_run.py), on the same kernel, initramfs and
# disk. Boots: Debian's cloud kernel (ACPI, modules in the initramfs) and the minimal kernel
# (images/build-minimal-kernel.sh: no modules, booted without ACPI, devices on the command
# line, module-less initramfs); block I/O: the cloud kernel. Inputs are prepared here
# (images/*.sh); the runs happen where /dev/kvm boots Linux: directly, or in the nested KVM
# host (images/with-kvm.sh).
# Writes OUTDIR/linux-boot.tsv (column "kernel": cloud | minimal), OUTDIR/linux-blk.tsv and
# OUTDIR/linux-guest.log. BLK_RUNS=0 skips the block part. LINUX_KERNELS="cloud minimal"
# picks the kernels booted. Figures, not pass/fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
boot_runs="${2:-3}"
blk_runs="${3:-3}"
minivmm="${MINIVMM_BIN:-$root/build/rel/vmm/minivmm}"
cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"

kernels=" ${LINUX_KERNELS:-cloud minimal} "

source "$root/images/lib/common.sh"
load_kernel cloud
kernel="$KERNEL_IMAGE"
initrd="$("$root/images/build-initramfs.sh")"
mkernel="" minitrd=""
if [[ $kernels == *" minimal "* ]]; then
  # Cached after the first build (~5 min on 2 cores); a failure only drops that row.
  if mkernel="$("$root/images/build-minimal-kernel.sh" | tail -n1)" &&
    minitrd="$("$root/images/build-initramfs.sh" --modules "")"; then
    :
  else
    echo "linux-guest: the minimal kernel or its initramfs could not be built: row skipped" >&2
    mkernel=""
  fi
fi
# Disks must be writable inside the nested host: the images cache is.
work="$cache/tmp/bench-$$"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
disk="$("$root/images/build-disk.sh" --out "$work/disk.img")"
scratch="$work/scratch.img"
# A real file (not sparse) so that O_DIRECT reads hit the host disk, not holes.
dd if=/dev/zero of="$scratch" bs=1M count=256 status=none

py=/usr/bin/python3
boot="$py $here/guest_run.py boot --minivmm $minivmm --disk $disk --runs $boot_runs"
boot+=" --out $work/linux-boot.tsv --append --log $work/linux-guest.log"
inner="true"
if [[ $kernels == *" cloud "* ]]; then
  inner+=" && $boot --kernel-name cloud --kernel $kernel --initrd $initrd"
fi
if [[ -n $mkernel ]]; then
  # One vCPU: both guests would find two in the MP table, but with two this kernel without
  # ACPI triple-faults in about 1 boot in 25 under minivmm in the nested host (README,
  # "Known issues"); the TSV's nproc column shows what each guest saw.
  inner+=" && $boot --kernel-name minimal --no-acpi --cpus 1 --kernel $mkernel --initrd $minitrd"
fi
if [[ $blk_runs -gt 0 ]]; then
  inner+=" && $py $here/guest_run.py blk --minivmm $minivmm --kernel $kernel --initrd $initrd"
  inner+=" --disk $disk --scratch $scratch --runs $blk_runs --out $work/linux-blk.tsv"
  inner+=" --log $work/linux-guest.log"
fi
rc=0
# The binary and the script are named again as arguments (unused by `bash -c`): the nested
# host's runner exports the folder of every argument under /tmp, which a checkout there needs.
MINIVMM_NESTED_QUIET=1 "$root/images/with-kvm.sh" bash -c "$inner" linux-guest "$minivmm" \
  "$here/guest_run.py" || rc=$?
for f in linux-boot.tsv linux-blk.tsv linux-guest.log; do
  [[ -f $work/$f ]] && cp "$work/$f" "$out/$f"
done
{
  echo "nested=$("$root/images/detect-kvm.sh") kernel=$kernel initrd=$initrd"
  if [[ -n $mkernel ]]; then echo "minimal kernel=$mkernel initrd=$minitrd"; fi
} >"$out/linux-guest.env"
exit "$rc"
