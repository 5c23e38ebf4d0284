#!/usr/bin/env bash
# seccomp_blk.sh [--pairs N] [--seconds S] [--only LIST] [--out DIR] [--md FILE] [BENCH_BLK] — bench_blk with minivmm's
# blk seccomp filter on vs off (bench_blk --seccomp on|off: the device's `blk` worker under
# the filter, the driver never), the same binary twice through bench/blk_before_after.sh:
# interleaved pairs, the order alternating, for 4k randread QD32, 4k randwrite QD32 and 1M
# seqread QD8. Then checks that every "on" run had its blk thread at Seccomp: 2 (bench_blk
# exits otherwise) and prints the target check: on / off ≥ 98 % of the device's IOPS.
# --only: other patterns (blk_before_after.sh's comma-separated --only). BENCH_BLK defaults
# to build/rel/bench/bench_blk. Figures, not pass/fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
pairs=10 seconds=3 out="" md="" only="4k randread QD32,4k randwrite QD32,1M seqread QD8"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --md) md="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "seccomp_blk: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
bin="${1:-$root/build/rel/bench/bench_blk}"
[[ -n $out ]] || out="$(mktemp -d /tmp/seccomp-blk.XXXXXX)"
mkdir -p "$out"
rm -f "$out/bench_blk.stderr" "$out/blk-before-after.tsv"
"$here/blk_before_after.sh" --pairs "$pairs" --seconds "$seconds" --out "$out" \
  --only "$only" \
  --labels off,on --args-before "--seccomp off" --args-after "--seccomp on" "$bin" "$bin" |
  tee "$out/seccomp-blk.txt"
on_ok="$(grep -c 'seccomp on: blk thread Seccomp: 2, driver thread Seccomp: 0' "$out/bench_blk.stderr" || true)"
off_ok="$(grep -c 'seccomp off: blk thread Seccomp: 0, driver thread Seccomp: 0' "$out/bench_blk.stderr" || true)"
echo "runs whose blk thread was checked: on with Seccomp: 2: $on_ok, off with Seccomp: 0: $off_ok" |
  tee -a "$out/seccomp-blk.txt"
python3 - "$out/blk-before-after.tsv" <<'PY' | tee -a "$out/seccomp-blk.txt"
import csv, statistics, sys
print("Target: on / off ≥ 0.98 of the device's IOPS (medians, and the median of the per-pair ratios):")
rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
for p in dict.fromkeys(r["pattern"] for r in rows):
    rs = [r for r in rows if r["pattern"] == p]
    med = {v: statistics.median(float(r["dev_iops"]) for r in rs if r["version"] == v)
           for v in ("off", "on")}
    by = {(r["pair"], r["version"]): float(r["dev_iops"]) for r in rs}
    pr = [by[(i, "on")] / by[(i, "off")] for i in sorted({r["pair"] for r in rs}, key=int)
          if (i, "on") in by and by.get((i, "off"))]
    m, q = med["on"] / med["off"], statistics.median(pr)
    print(f"- {p}: medians {m:.3f}, per pair {q:.3f} ({min(pr):.3f}–{max(pr):.3f}, n={len(pr)}): "
          f"{'met' if min(m, q) >= 0.98 else 'not met' if max(m, q) < 0.98 else 'met by one measure only'}")
PY
[[ -z $md ]] || cp "$out/seccomp-blk.txt" "$md"
