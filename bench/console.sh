#!/usr/bin/env bash
# console.sh OUTDIR [RUNS] — console throughput, minivmm next to QEMU -M microvm
# (bench/console_bench.py): the Linux guest writes to hvc0 (virtio-console) and to ttyS0
# (the UART), the host drains the VMM's stdout pipe. Same kernel (Debian cloud kernel),
# initramfs (images/build-initramfs.sh, which loads virtio_console) and command line for
# both. Inputs are prepared here; the runs happen where /dev/kvm boots Linux: directly, or in
# the nested KVM host (images/with-kvm.sh).
# Writes OUTDIR/console.tsv, OUTDIR/console.log and OUTDIR/console.env. Figures, not
# pass/fail.
#   CONSOLE_HVC_SIZE=16M     bytes flooded to hvc0 (K or M suffix)
#   CONSOLE_SERIAL_SIZE=256K bytes flooded to ttyS0 (a port-I/O exit per byte: ~200 s per
#                            MiB in the nested host here)
#   CONSOLE_ROWS=...         rows (default minivmm-hvc0,minivmm-ttyS0,qemu-hvc0,qemu-ttyS0);
#                            minivmm-hvc0 is dropped, with a note, when the minivmm binary
#                            has no --console option
#   CONSOLE_CPUS=2           guest vCPUs (as bench/guest_run.py)
#   CONSOLE_TIMEOUT=900      seconds before one run is killed
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
runs="${2:-3}"
minivmm="$(realpath "${MINIVMM_BIN:-$root/build/rel/vmm/minivmm}")"
cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"
rows="${CONSOLE_ROWS:-minivmm-hvc0,minivmm-ttyS0,qemu-hvc0,qemu-ttyS0}"

source "$root/images/lib/common.sh"
load_kernel cloud
kernel="$KERNEL_IMAGE"
initrd="$("$root/images/build-initramfs.sh")"
note=""
if [[ ,$rows, == *,minivmm-hvc0,* ]] && ! "$minivmm" --help 2>&1 | grep -q -- '--console'; then
  note="$minivmm has no --console option (no virtio-console): row minivmm-hvc0 not run"
  echo "console: $note" >&2
  rows="$(echo ",$rows," | sed 's/,minivmm-hvc0,/,/; s/^,//; s/,$//')"
fi
work="$cache/tmp/console-$$"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

py=/usr/bin/python3
inner="$py $here/console_bench.py --minivmm $minivmm --kernel $kernel --initrd $initrd"
inner+=" --runs $runs --hvc-size ${CONSOLE_HVC_SIZE:-16M} --serial-size ${CONSOLE_SERIAL_SIZE:-256K}"
inner+=" --cpus ${CONSOLE_CPUS:-2} --rows $rows --timeout ${CONSOLE_TIMEOUT:-900} --out $work/console.tsv --log $work/console.log"
load_start="$(uptime | sed 's/^ *//')"
rc=0
# As in linux-guest.sh: the binary and the script are named again so that the nested host's
# runner exports their folders when they are under /tmp.
MINIVMM_NESTED_QUIET=1 "$root/images/with-kvm.sh" bash -c "$inner" console "$minivmm" \
  "$here/console_bench.py" || rc=$?
for f in console.tsv console.log; do
  [[ -f $work/$f ]] && cp "$work/$f" "$out/$f"
done
{
  echo "nested=$("$root/images/detect-kvm.sh") kernel=$kernel initrd=$initrd"
  echo "hvc0 bytes=${CONSOLE_HVC_SIZE:-16M} ttyS0 bytes=${CONSOLE_SERIAL_SIZE:-256K} runs=$runs vcpus=${CONSOLE_CPUS:-2} rows=$rows"
  echo "load at start: $load_start"
  echo "load at end: $(uptime | sed 's/^ *//')"
  if [[ -n $note ]]; then echo "note: $note"; fi
} >"$out/console.env"
exit "$rc"
