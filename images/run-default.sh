#!/usr/bin/env bash
# run-default.sh [--shell] [--scenario NAME] [--cpus N] [--memory SIZE] — README command 1.
#
# 1. installs the dependencies (tests/install-deps.sh; nothing when present);
# 2. builds minivmm, Release, in <repo>/build/rel (or $MINIVMM_BUILD/rel), target minivmm;
# 3. prepares the default images in the cache (images/README.md): Debian's cloud
#    kernel, the busybox test initramfs, and a fresh writable copy of the ext4 disk;
# 4. boots the default guest — 2 vCPUs, 512 MiB, the disk as /dev/vda (serial
#    "default") — with its console on this terminal, and exits when the guest powers
#    off, with minivmm's exit status (0 = powered off; see README.md "Exit status").
#
# Default scenario: smoke (prints CPUs, memory and disks, then powers off).
#   --shell          an interactive busybox shell in the guest instead; `exit` (or
#                    `poweroff -f`) ends the VM
#   --scenario NAME  any scenario from images/scenarios (minivmm.scenario=NAME)
#   --cpus N, --memory SIZE   guest shape (defaults 2 and 512M)
#
# Where /dev/kvm cannot boot Linux (PVM, or none — images/detect-kvm.sh), the guest
# runs inside the nested KVM host (images/nested/run-in-nested-host.sh, ~10 s more),
# and this script says so. MINIVMM_VERBOSE_KERNEL=1 drops `quiet` (slow nested).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
images="$root/images"
# shellcheck source=lib/common.sh
source "$images/lib/common.sh"
say() { echo "run-default: $*" >&2; }
die() { say "error: $*"; exit 2; }

scenario=smoke cpus=2 memory=512M shell=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --shell) shell=1; scenario=shell; shift ;;
    --scenario) scenario="${2:?--scenario needs a name}"; shift 2 ;;
    --cpus) cpus="${2:?}"; shift 2 ;;
    --memory) memory="${2:?}"; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ -f $images/scenarios/$scenario ]] ||
  die "no scenario '$scenario' (have: $(ls "$images/scenarios" | grep -v '^_' | tr '\n' ' '))"

# --- 1. dependencies, 2. build ------------------------------------------------------
"$root/tests/install-deps.sh"
build="${MINIVMM_BUILD:-$root/build}/rel"
say "building minivmm (Release) in $build (a few minutes the first time)"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target minivmm >/dev/null ||
  { cmake --build "$build" -j1 --target minivmm 2>&1 | tail -n 30 >&2; die "build failed"; }
vmm="$build/vmm/minivmm"
[[ -x $vmm ]] || die "build finished but $vmm is missing"

# --- 3. images ----------------------------------------------------------------------
say "preparing the default images"
load_kernel cloud
initrd="$("$images/build-initramfs.sh" | tail -n1)" || die "build-initramfs.sh failed (see above)"
cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"
disk="$cache/run-default/disk.img"
mkdir -p "$(dirname "$disk")"
"$images/build-disk.sh" --size 64M --out "$disk" >/dev/null

# --- 4. boot ------------------------------------------------------------------------
cmdline="console=ttyS0 reboot=k panic=-1 initcall_blacklist=cmos_init minivmm.scenario=$scenario"
[[ ${MINIVMM_VERBOSE_KERNEL:-0} == 1 ]] || cmdline="$cmdline quiet"
args=(--kernel "$KERNEL_IMAGE" --initrd "$initrd" --cpus "$cpus" --memory "$memory"
  --disk "path=$disk,serial=default" --cmdline "$cmdline")
say "guest: $KERNEL_VERSION, $cpus vCPUs, $memory, /dev/vda = $disk, scenario $scenario"

set +e
if [[ $("$images/detect-kvm.sh") == direct ]]; then
  say "booting with hardware KVM: $vmm"
  "$vmm" "${args[@]}"
  status=$?
else
  say "this machine's /dev/kvm cannot boot an unmodified Linux ($("$images/detect-kvm.sh" -v 2>&1 >/dev/null | sed 's/^detect-kvm: //'));"
  say "running minivmm inside the nested KVM host (images/nested/run-in-nested-host.sh): about 10 s more"
  nested=("$images/nested/run-in-nested-host.sh")
  [[ $shell == 1 ]] && nested+=(-i)
  "${nested[@]}" -- "$vmm" "${args[@]}"
  status=$?
fi
say "minivmm exited with status $status"
exit "$status"
