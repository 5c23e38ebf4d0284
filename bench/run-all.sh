#!/usr/bin/env bash
# bench/run-all.sh — runs every benchmark, each next to its reference (QEMU -M microvm, fio),
# and rewrites bench/RESULTS.md and bench/*.png. Figures, not pass/fail: a part that cannot
# run is reported as missing and the rest goes on. Installs what it needs first
# (tests/install-deps.sh core bench).
#
# Environment knobs (defaults in brackets):
#   BUILD=build/rel         build tree (configured Release and built here if needed)
#   STARTUP_RUNS=15         tiny-guest start-up runs per VMM
#   MEMORY_RUNS=5           memory samples per VMM
#   LINUX_BOOT_RUNS=3       Linux boots per VMM (nested KVM here: ~15 s each)
#   BOOT_FORMAT_RUNS=5      boots per (VMM, kernel, format), bzImage vs vmlinux (PVH, 64-bit)
#                           (bench/boot-formats.sh; nested: 10 variants, ~1 min a run);
#                           SKIP part: bootfmt
#   LINUX_BLK_RUNS=2        in-guest dd runs per VMM (0 skips; ~1 min each when nested)
#   LINUX_KERNELS="cloud minimal"  kernels the Linux boots use (bench/linux-guest.sh)
#   BLK_BENCH_ARGS="--seconds 3 --reps 3 --size-gib 1"   bench_blk's arguments
#   CONSOLE_RUNS=3          console floods per row (4 rows: minivmm / QEMU, hvc0 / ttyS0;
#                           bench/console.sh, whose CONSOLE_* knobs apply; nested: minutes)
#   SKIP="linux blk"        parts to skip: startup memory linux blk queue console
#   BUILD_LOCK=FILE         take flock(1) on FILE around the build (on a machine shared with
#                           others who build, e.g. /tmp/minivmm-build.lock); default none
# Raw results and logs: $BUILD/bench/results/.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
# QEMU, fio, gnuplot and python3 besides the build: the one install list, its bench group.
"$root/tests/install-deps.sh" core bench || { echo "[run-all] error: installing packages failed" >&2; exit 1; }
build="${BUILD:-build/rel}"
res="$root/$build/bench/results"
skip=" ${SKIP:-} "
mkdir -p "$res"
# Results of the parts that run are replaced; those of SKIPped parts stay (the page shows
# each section's own load and date line), so one part can be re-run alone.
for part in startup memory queue blk linux console; do
  if [[ $skip != *" $part "* ]]; then
    case $part in
      startup) rm -f "$res"/startup.* "$res"/floor.* ;;
      memory) rm -f "$res"/memory.* ;;
      queue) rm -f "$res"/queue_bench.txt ;;
      blk) rm -f "$res"/blk_bench.txt ;;
      linux) rm -f "$res"/linux-* ;;
      console) rm -f "$res"/console.* ;;
    esac
  fi
done
rm -f "$res/build.log"

say() { printf '[run-all] %s\n' "$*" >&2; }
skipped() { [[ $skip == *" $1 "* ]]; }
load() { echo "$1: $(date -u '+%Y-%m-%d') $(uptime | sed 's/^ *//')" >>"$res/loads.txt"; }
cmd() { echo "$1: $2" >>"$res/commands.txt"; }

say "building $build"
locked=()
[[ -n ${BUILD_LOCK:-} ]] && locked=(flock "$BUILD_LOCK")
if [[ ! -f $build/CMakeCache.txt ]]; then
  "${locked[@]}" cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$res/build.log" 2>&1
fi
"${locked[@]}" cmake --build "$build" -j"$(nproc)" --target minivmm minivmm_test_guest queue_bench bench_blk \
  >>"$res/build.log" 2>&1 || say "build failed (see $res/build.log); using what exists"
minivmm="$root/$build/vmm/minivmm"
guest="$root/$build/tests/guest/test_guest.bzImage"
floor="$root/$build/bench/kvm_floor"
mkdir -p "$(dirname "$floor")"
"${locked[@]}" cc -O2 -Wall -o "$floor" "$here/kvm_floor.c" >>"$res/build.log" 2>&1 || say "kvm_floor did not build"

{
  echo "date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')  commit: $(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo ' (+ uncommitted changes)')"
  echo "host: $(uname -r), $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
  echo "kvm: $("$root/images/detect-kvm.sh" -v 2>&1 | tail -n1)"
  echo "qemu: $(qemu-system-x86_64 --version | head -n1)"
  echo "load at start: $(uptime | sed 's/^ *//')"
} >"$res/env.txt"

py=python3
if ! skipped startup; then
  say "start-up (${STARTUP_RUNS:-15} runs per VMM)"
  c="$py bench/vmm_bench.py startup --minivmm $build/vmm/minivmm --guest $build/tests/guest/test_guest.bzImage --floor $build/bench/kvm_floor --runs ${STARTUP_RUNS:-15} --out startup.tsv"
  cmd startup "$c"
  load startup
  "$py" bench/vmm_bench.py startup --minivmm "$minivmm" --guest "$guest" --floor "$floor" \
    --runs "${STARTUP_RUNS:-15}" --out "$res/startup.tsv" 2>>"$res/startup.log" || say "start-up failed"
fi
if ! skipped startup; then
  say "KVM floor breakdown (${STARTUP_RUNS:-15} runs per variant)"
  cmd floor "$py bench/vmm_bench.py floor --minivmm - --guest - --floor $build/bench/kvm_floor --runs ${STARTUP_RUNS:-15} --out floor.tsv"
  load floor
  "$py" bench/vmm_bench.py floor --minivmm - --guest - --floor "$floor" \
    --runs "${STARTUP_RUNS:-15}" --out "$res/floor.tsv" 2>>"$res/startup.log" || say "floor failed"
fi
if ! skipped memory; then
  say "memory (${MEMORY_RUNS:-5} samples per VMM)"
  c="$py bench/vmm_bench.py memory --minivmm $build/vmm/minivmm --guest $build/tests/guest/test_guest.bzImage --runs ${MEMORY_RUNS:-5} --out memory.tsv"
  cmd memory "$c"
  load memory
  "$py" bench/vmm_bench.py memory --minivmm "$minivmm" --guest "$guest" \
    --runs "${MEMORY_RUNS:-5}" --out "$res/memory.tsv" 2>>"$res/memory.log" || say "memory failed"
fi
if ! skipped queue; then
  say "queue_bench"
  cmd queue "$build/bench/queue_bench"
  load queue
  "$build/bench/queue_bench" >"$res/queue_bench.txt" 2>&1 || say "queue_bench failed"
fi
if ! skipped blk; then
  if [[ -x $build/bench/bench_blk ]]; then
    args="${BLK_BENCH_ARGS:---seconds 3 --reps 3 --size-gib 1}"
    say "bench_blk $args"
    cmd blk "$build/bench/bench_blk $args"
    load blk
    # shellcheck disable=SC2086
    "$build/bench/bench_blk" $args >"$res/blk_bench.txt" 2>&1 || say "bench_blk failed"
  else
    say "no $build/bench/bench_blk: block datapath skipped"
  fi
fi
if ! skipped bootfmt; then
  rm -f "$res"/boot-formats.*
  say "Linux boot by kernel format (${BOOT_FORMAT_RUNS:-5} runs, every variant in each)"
  cmd bootfmt "MINIVMM_BIN=$build/vmm/minivmm bench/boot-formats.sh OUTDIR ${BOOT_FORMAT_RUNS:-5}"
  load bootfmt
  MINIVMM_BIN="$minivmm" "$here/boot-formats.sh" "$res" "${BOOT_FORMAT_RUNS:-5}" \
    >"$res/boot-formats.out" 2>&1 || say "boot-format runs failed (see $res/boot-formats.out)"
fi
if ! skipped linux; then
  say "Linux boots (${LINUX_BOOT_RUNS:-3}) and in-guest block (${LINUX_BLK_RUNS:-2}) per VMM"
  cmd linux "MINIVMM_BIN=$build/vmm/minivmm bench/linux-guest.sh OUTDIR ${LINUX_BOOT_RUNS:-3} ${LINUX_BLK_RUNS:-2}"
  load linux
  MINIVMM_BIN="$minivmm" "$here/linux-guest.sh" "$res" "${LINUX_BOOT_RUNS:-3}" "${LINUX_BLK_RUNS:-2}" \
    >"$res/linux-guest.out" 2>&1 || say "Linux guest runs failed (see $res/linux-guest.out)"
fi
if ! skipped console; then
  say "console throughput (${CONSOLE_RUNS:-3} runs per row)"
  cmd console "MINIVMM_BIN=$build/vmm/minivmm bench/console.sh OUTDIR ${CONSOLE_RUNS:-3}"
  load console
  MINIVMM_BIN="$minivmm" "$here/console.sh" "$res" "${CONSOLE_RUNS:-3}" \
    >"$res/console.out" 2>&1 || say "console runs failed (see $res/console.out)"
fi
echo "load at end: $(uptime | sed 's/^ *//')" >>"$res/env.txt"

"$py" "$here/report.py" "$res" "$here"
say "wrote bench/RESULTS.md and bench/*.png (raw: $res)"
