#!/usr/bin/env bash
# run-qemu-microvm.sh [options] — boot the test guest under QEMU -M microvm (the
# peer minivmm is compared with) and report the scenario's MINIVMM-RESULT lines.
#
#   --scenario NAME   scenario from images/scenarios (default smoke)
#   --disk FILE       raw disk image for vda (default: a fresh copy of build-disk.sh's
#                     image in $TMPDIR, deleted afterwards); --no-disk for none
#   --scratch SIZE    also attach an empty raw disk of SIZE as vdb (for blk-pattern)
#   --smp N --mem SIZE   (defaults 2, 512M)
#   --append "ARGS"   extra kernel command line (e.g. minivmm.arg=16 or quiet)
#   --kernel FILE --initrd FILE   instead of fetch-kernel.sh / build-initramfs.sh
#   --verbose-kernel  full kernel log (default adds "quiet": every console byte is a
#                     UART exit, which costs ~10 s of boot when nested)
#   --rtc             keep microvm's CMOS RTC (default rtc=off, like minivmm)
#
# Kernel command line: console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init
# reboot=t minivmm.scenario=NAME + --append. The rtc_cmos probe pokes ports
# 0x70/0x71 thousands of times whether or not an RTC is there: ~22 s when nested.
# microvm has no i8042 and no ACPI reset: the kernel's default reboot polls port
# 0x64 for minutes when nested, reboot=t (triple fault) ends the VM at once.
#   --timeout SECS    kill QEMU after SECS (default 300)
#
# Needs a /dev/kvm that runs Linux (detect-kvm.sh). Where it has none (PVM), the
# script prepares kernel, initramfs and disk here and re-runs itself inside the
# nested KVM host (nested/run-in-nested-host.sh), where only QEMU runs. The
# guest console goes to stdout; a summary with timings goes to stderr. Exit
# status 0 when the scenario reported status=pass, 1 otherwise.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

scenario=smoke
disk=""
no_disk=0
scratch=""
scratch_file=""
smp=2
mem=512M
append=""
timeout_s=300
kernel=""
initrd=""
quiet=quiet
rtc=off
while [[ $# -gt 0 ]]; do
  case "$1" in
    --scenario) scenario="$2"; shift 2 ;;
    --disk) disk="$2"; shift 2 ;;
    --no-disk) no_disk=1; shift ;;
    --scratch) scratch="$2"; shift 2 ;;
    --scratch-file) scratch_file="$2"; shift 2 ;; # internal: an existing scratch image
    --smp) smp="$2"; shift 2 ;;
    --mem) mem="$2"; shift 2 ;;
    --append) append="$2"; shift 2 ;;
    --timeout) timeout_s="$2"; shift 2 ;;
    --kernel) kernel="$2"; shift 2 ;;
    --initrd) initrd="$2"; shift 2 ;;
    --verbose-kernel) quiet=""; shift ;;
    --rtc) rtc=on; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

need qemu-system-x86_64 qemu-system-x86
mode="$("$MINIVMM_IMAGES_DIR/detect-kvm.sh")"

# Inputs are prepared where apt and the CPU are fast, i.e. before any nesting.
if [[ -z $kernel ]]; then
  load_kernel cloud
  kernel="$KERNEL_IMAGE"
fi
[[ -n $initrd ]] || initrd="$("$MINIVMM_IMAGES_DIR/build-initramfs.sh")"
# Scratch files must be writable inside the nested host too: the images cache is.
tmp_root="${TMPDIR:-/tmp}"
[[ $mode == nested ]] && tmp_root="$MINIVMM_IMAGES_CACHE/tmp"
mkdir -p "$tmp_root"
work="$(mktemp -d "$tmp_root/minivmm-microvm.XXXXXX")"
trap 'rm -rf "$work"' EXIT
if [[ $no_disk == 0 && -z $disk ]]; then
  disk="$("$MINIVMM_IMAGES_DIR/build-disk.sh" --out "$work/disk.img")"
fi
if [[ -n $scratch ]]; then
  scratch_file="$work/scratch.img"
  truncate -s "$scratch" "$scratch_file"
fi

if [[ $mode == nested ]]; then
  [[ ${MINIVMM_IN_NESTED_HOST:-0} == 1 ]] && die "no usable /dev/kvm even inside the nested host"
  log "/dev/kvm here cannot boot Linux: running QEMU inside the nested KVM host"
  args=(--scenario "$scenario" --smp "$smp" --mem "$mem" --timeout "$timeout_s"
    --kernel "$kernel" --initrd "$initrd")
  [[ -n $append ]] && args+=(--append "$append")
  [[ -z $quiet ]] && args+=(--verbose-kernel)
  [[ $rtc == on ]] && args+=(--rtc)
  if [[ $no_disk == 1 ]]; then args+=(--no-disk); else args+=(--disk "$disk"); fi
  [[ -n $scratch_file ]] && args+=(--scratch-file "$scratch_file")
  rc=0
  "$MINIVMM_IMAGES_DIR/nested/run-in-nested-host.sh" "$0" "${args[@]}" || rc=$?
  exit "$rc"
fi

drives=()
if [[ $no_disk == 0 ]]; then
  drives+=(-drive "id=d0,file=$disk,format=raw,if=none" -device virtio-blk-device,drive=d0,serial=minidisk)
fi
if [[ -n $scratch_file ]]; then
  drives+=(-drive "id=d1,file=$scratch_file,format=raw,if=none" -device virtio-blk-device,drive=d1,serial=scratch)
fi

cmd=(
  qemu-system-x86_64 -M "microvm,acpi=on,rtc=$rtc" -accel kvm -cpu host -m "$mem" -smp "$smp"
  -kernel "$kernel" -initrd "$initrd"
  -append "console=ttyS0 panic=-1 $quiet initcall_blacklist=cmos_init reboot=t minivmm.scenario=$scenario $append"
  "${drives[@]}" -nographic -no-reboot
)
log "${cmd[*]}"
t0="$(date +%s.%N)"
rc=0
timeout --foreground -k 5 "$timeout_s" "${cmd[@]}" </dev/null | tee "$work/console.log" || rc=$?
t1="$(date +%s.%N)"

init_up="$(sed -n 's/.*MINIVMM-RESULT init=start uptime=\([0-9.]*\).*/\1/p' "$work/console.log" | head -n1)"
end_up="$(sed -n "s/.*MINIVMM-RESULT scenario=$scenario status=[a-z]* rc=[0-9]* uptime=\([0-9.]*\).*/\1/p" "$work/console.log" | head -n1)"
awk -v a="$t0" -v b="$t1" -v i="${init_up:-?}" -v e="${end_up:-?}" -v r="$rc" \
  'BEGIN { printf "[run-qemu-microvm.sh] qemu exit %d; guest reached init at %ss (guest uptime), scenario done at %ss, wall %.2fs\n", r, i, e, b - a }' >&2
if [[ $rc == 124 ]]; then
  log "error: QEMU did not stop within ${timeout_s}s (--timeout)"
  exit 1
fi
grep -q "MINIVMM-RESULT scenario=$scenario status=pass" "$work/console.log"
