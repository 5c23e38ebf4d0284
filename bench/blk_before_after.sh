#!/usr/bin/env bash
# blk_before_after.sh [options] BEFORE AFTER — bench_blk of two versions, interleaved.
#
# BEFORE and AFTER are each a bench_blk binary or a git commit of this repository (built
# here, Release, target bench_blk, in a temporary worktree that is removed at the end).
# For every pair and every pattern both binaries run once, back to back, each with its own
# fio run (bench_blk --reps 1 --only PATTERN), the order alternating between pairs
# (before/after, after/before, ...), so that both see the same load. Prints, per pattern
# and version, the median device and fio figures with (min–max, n) and the device/fio ratio.
# Figures, not pass/fail.
#
#   --pairs N        pairs per pattern (default 7)
#   --seconds S      seconds per run, each side (default 3, as bench/run-all.sh)
#   --size-gib G     bench file size (default 1, as bench/run-all.sh)
#   --poll-us N      the device's poll_us (default 100: bench_blk's default)
#   --only SUBSTRING the patterns whose name contains it (default: all four); several,
#                    comma-separated: the patterns that contain any of them
#   --out DIR        raw results: DIR/blk-before-after.tsv and .txt (default: a temp dir)
#   --build-dir DIR  where commits are built (default: a temp dir, removed at the end)
#   --md FILE        also write the table as a markdown fragment (bench/report.py puts
#                    bench/blk-before-after.md into RESULTS.md section 4)
#   --args-before ARGS, --args-after ARGS
#                    more bench_blk options for one side (split at spaces), e.g. the same
#                    binary twice with --args-before "--seccomp off" --args-after "--seccomp on"
#   --labels B,A     the two sides' names in the output (default before,after)
#   --file PATH      the bench file (bench_blk's --file; default bench_blk's own)
#
# Builds take /tmp/minivmm-build.lock (flock), so that no two builds run at once.
# Example: bench/blk_before_after.sh 4dfc64a^ main
set -euo pipefail
# All in one function: bash has read the whole script before it runs, so editing the file
# during a run (it takes minutes) cannot derail it.
main() {
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
pairs=7 seconds=3 size_gib=1 poll_us=100 out="" build_root="" md="" only=""
args_before="" args_after="" labels="before,after" file=()
argv=("$@")
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) pairs="$2"; shift 2 ;;
    --seconds) seconds="$2"; shift 2 ;;
    --size-gib) size_gib="$2"; shift 2 ;;
    --poll-us) poll_us="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --build-dir) build_root="$2"; shift 2 ;;
    --md) md="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --args-before) args_before="$2"; shift 2 ;;
    --args-after) args_after="$2"; shift 2 ;;
    --labels) labels="$2"; shift 2 ;;
    --file) file=(--file "$2"); shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "blk_before_after: unknown option '$1' (see --help)" >&2; exit 2 ;;
    *) break ;;
  esac
done
[[ $# -eq 2 ]] || { echo "usage: $(basename "$0") [options] BEFORE AFTER (see --help)" >&2; exit 2; }

say() { printf '[blk_before_after] %s\n' "$*" >&2; }
tmp="$(mktemp -d /tmp/blk-before-after.XXXXXX)"
worktrees=()
cleanup() {
  for w in "${worktrees[@]}"; do git -C "$root" worktree remove --force "$w" >/dev/null 2>&1 || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
[[ -n $build_root ]] || build_root="$tmp/builds"
[[ -n $out ]] || out="$tmp/out"
mkdir -p "$build_root" "$out"

# resolve SPEC LABEL: sets bin to the path of a bench_blk binary for SPEC.
resolve() {
  local spec="$1" label="$2" rev src
  if [[ -f $spec && -x $spec ]]; then
    bin="$(realpath "$spec")"
    # The checkout the binary was built in, if it is one (its state when this runs).
    rev="$(git -C "$(dirname "$bin")" rev-parse --short=7 HEAD 2>/dev/null)" || rev="?"
    git -C "$(dirname "$bin")" diff --quiet HEAD 2>/dev/null || rev+=" + uncommitted changes"
    desc+=("\`$spec\`, built at $rev")
    return
  fi
  rev="$(git -C "$root" rev-parse --verify --quiet "$spec^{commit}")" ||
    { echo "blk_before_after: '$spec' is neither an executable nor a commit" >&2; exit 2; }
  src="$build_root/src-$label-${rev:0:12}"
  if [[ ! -d $src ]]; then
    git -C "$root" worktree add --detach "$src" "$rev" >/dev/null 2>&1 ||
      { echo "blk_before_after: git worktree add $src failed" >&2; exit 1; }
    worktrees+=("$src")
  fi
  say "building bench_blk at ${rev:0:12} ($spec) in $src/build"
  flock /tmp/minivmm-build.lock sh -c \
    "cmake -S '$src' -B '$src/build' -DCMAKE_BUILD_TYPE=Release >'$out/build-$label.log' 2>&1 &&
     cmake --build '$src/build' -j\"\$(nproc)\" --target bench_blk >>'$out/build-$label.log' 2>&1" ||
    { echo "blk_before_after: building $spec failed (see $out/build-$label.log)" >&2; exit 1; }
  bin="$src/build/bench/bench_blk"
  desc+=("commit \`$spec\` = ${rev:0:7}, built here")
}
bin="" desc=()
resolve "$1" before
bins=("$bin")
resolve "$2" after
bins+=("$bin")
IFS=, read -r -a shown <<<"$labels"
[[ ${#shown[@]} -eq 2 ]] || { echo "blk_before_after: --labels takes two names: B,A" >&2; exit 2; }
read -r -a extra0 <<<"$args_before"
read -r -a extra1 <<<"$args_after"
say "before: ${bins[0]}"
say "after:  ${bins[1]}"

patterns=()
IFS=, read -r -a wanted <<<"${only:-,}"
[[ ${#wanted[@]} -gt 0 ]] || wanted=("")
for p in "4k randread QD32" "4k randwrite QD32" "1M seqread QD8" "1M seqwrite QD8"; do
  for w in "${wanted[@]}"; do
    if [[ $p == *"$w"* ]]; then patterns+=("$p"); break; fi
  done
done
[[ ${#patterns[@]} -gt 0 ]] || { echo "blk_before_after: no pattern matches '$only'" >&2; exit 2; }
tsv="$out/blk-before-after.tsv"
printf 'pair\tpattern\tversion\tdev_iops\tdev_mbps\tdev_us_per_io\tfio_iops\tfio_mbps\tfio_us_per_io\tdev_fio_pct\n' >"$tsv"
load_start="$(uptime | sed 's/^ *//')"
date_start="$(date -u '+%Y-%m-%d %H:%M:%S UTC')"
for ((i = 0; i < pairs; i++)); do
  for p in "${patterns[@]}"; do
    order=(0 1)
    ((i % 2 == 1)) && order=(1 0)
    for v in "${order[@]}"; do
      if ((v == 0)); then extra=("${extra0[@]}"); else extra=("${extra1[@]}"); fi
      line="$("${bins[$v]}" --seconds "$seconds" --reps 1 --size-gib "$size_gib" \
        --poll-us "$poll_us" --only "$p" "${file[@]}" "${extra[@]}" 2>>"$out/bench_blk.stderr" |
        grep -F "$p " | tail -n1)" || true
      # "4k randread QD32   |  68790  281.8  9.50 |  76085  311.6  6.87 |  90.4%"
      if [[ -z $line ]]; then
        say "pair $i, $p, ${shown[$v]}: no result (see $out/bench_blk.stderr)"
        continue
      fi
      echo "$line" | awk -F'|' -v pair="$i" -v pat="$p" -v ver="${shown[$v]}" 'BEGIN { OFS = "\t" }
        { split($2, d, " "); split($3, f, " "); pct = $4; gsub(/[ %]/, "", pct)
          print pair, pat, ver, d[1], d[2], d[3], f[1], f[2], f[3], pct }' >>"$tsv"
      say "pair $i, $p, ${shown[$v]}: $(echo "$line" | tr -s ' ')"
    done
  done
done
load_end="$(uptime | sed 's/^ *//')"

python3 - "$tsv" "$pairs" "$seconds" "$size_gib" "$poll_us" "$date_start" "$load_start" "$load_end" \
  "${desc[0]}" "${desc[1]}" "bench/blk_before_after.sh$(printf ' %q' "${argv[@]}")" "${shown[0]}" "${shown[1]}" \
  "${args_before:-}" "${args_after:-}" <<'EOF' | tee "$out/blk-before-after.txt"
import csv, statistics, sys
tsv, pairs, seconds, size, poll, date, l0, l1, b, a, cmd, nb, na, xb, xa = sys.argv[1:]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
pats = []
for r in rows:
    if r["pattern"] not in pats:
        pats.append(r["pattern"])
def col(p, v, k):
    return [float(r[k]) for r in rows if r["pattern"] == p and r["version"] == v]
def sp(x, d=0):
    if not x:
        return "n/a"
    return f"{statistics.median(x):.{d}f} ({min(x):.{d}f}–{max(x):.{d}f}, n={len(x)})"
print(f"Reproduce: `{cmd}`  ")
xb = f" `{xb}`" if xb else ""
xa = f" `{xa}`" if xa else ""
print(f"{nb.capitalize()}: {b}{xb}; {na}: {a}{xa}. {pairs} interleaved pairs per pattern, each run "
      f"`bench_blk --seconds {seconds} --reps 1 --size-gib {size} --poll-us {poll} --only PATTERN` "
      f"(device, then fio on the same file), the order alternating between pairs.  ")
print(f"Started {date}. Load at start: `{l0}`; at end: `{l1}`  ")
print(f"{na} / {nb}: the ratio of the two medians, and the median (min–max) of the ratios "
      "within each pair (the two runs of a pair are seconds apart, under the same load).")
print()
print(f"| pattern | figure | {nb} | {na} | {na} / {nb} | per pair |")
print("|---|---|---|---|---|---|")
for p in pats:
    small = p.startswith("4k")
    k, unit, d = ("dev_iops", "IOPS", 0) if small else ("dev_mbps", "MB/s", 1)
    fk = "fio_iops" if small else "fio_mbps"
    for key, label, dd in ((k, f"device {unit}", d), (fk, f"fio {unit}", d),
                           ("dev_fio_pct", "device/fio %", 1), ("dev_us_per_io", "device CPU µs/IO", 2)):
        bv, av = col(p, nb, key), col(p, na, key)
        rat = (f"{statistics.median(av) / statistics.median(bv):.3f}"
               if bv and av and statistics.median(bv) else "n/a")
        by = {(r["pair"], r["version"]): float(r[key]) for r in rows if r["pattern"] == p}
        pr = [by[(i, na)] / by[(i, nb)] for i in sorted({r["pair"] for r in rows})
              if (i, na) in by and by.get((i, nb))]
        print(f"| {p} | {label} | {sp(bv, dd)} | {sp(av, dd)} | {rat} | {sp(pr, 3)} |")
EOF
[[ -z $md ]] || cp "$out/blk-before-after.txt" "$md"
say "raw: $tsv"
}
main "$@"
