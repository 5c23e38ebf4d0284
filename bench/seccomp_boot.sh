#!/usr/bin/env bash
# seccomp_boot.sh OUTDIR [RUNS] — Linux boot time with minivmm --seccomp off vs on: the cloud
# kernel's bzImage with section 3's initramfs, disk, 2 vCPUs, 512 MiB and command line, both
# modes in one nested KVM host session, interleaved (bench/boot-formats.sh with
# guest_run.py's --minivmm-variant; RUNS boots each, default 10). Then a markdown summary,
# OUTDIR/seccomp-boot.md: medians (min–max, n) of exec → /init (wall), guest uptime at /init,
# main() → first KVM_RUN (minivmm's log, --log-level info) and exec → exit, the ratios on/off
# paired by run with a sign test, the threads under a filter when /init appeared, and the
# machine's load. Figures, not pass/fail.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mkdir -p "$1" && cd "$1" && pwd)"
runs="${2:-10}"
rc=0
BOOT_FORMAT_KERNELS=cloud "$here/boot-formats.sh" "$out" "$runs" --vmms minivmm --formats bzImage \
  --minivmm-variant seccomp-off=--seccomp=off --minivmm-variant seccomp-on=--seccomp=on || rc=$?
python3 - "$out" "$runs" "${MINIVMM_BIN:-build/rel/vmm/minivmm}" <<'PY' | tee "$out/seccomp-boot.md"
import csv, math, os, statistics, sys
out, runs, binary = sys.argv[1:]
rows = [r for r in csv.DictReader(open(os.path.join(out, "boot-formats.tsv")), delimiter="\t")
        if r["run"] != "-1"]
load = [l.split() for l in open(os.path.join(out, "boot-formats.load")) if len(l.split()) >= 4]
env = open(os.path.join(out, "boot-formats.env")).read().strip().splitlines()
V = ("seccomp-off", "seccomp-on")
ok = {v: {r["run"]: r for r in rows if r["variant"] == v and r["pass"] == "1"} for v in V}

def sp(x):
    return f"{statistics.median(x):.2f} ({min(x):.2f}–{max(x):.2f}, n={len(x)})" if x else "—"

print(f"Reproduce: `MINIVMM_BIN={binary} bench/seccomp_boot.sh OUTDIR {runs}`  ")
for l in env:
    print(f"`{l}`  ")
l1 = sorted(float(x[1]) for x in load)
if l1:
    print(f"\nLoad average (1 min) while it ran, sampled every 15 s: {l1[0]:.2f}–{l1[-1]:.2f} "
          f"(median {statistics.median(l1):.2f}, {len(l1)} samples; at the end: "
          f"{' '.join(load[-1][1:4])}).\n")
figs = [("init_wall_s", "exec → /init (wall)"), ("init_s", "guest uptime at /init"),
        ("vcpu_entry_s", "main() → first KVM_RUN (minivmm's log)"),
        ("exit_wall_s", "exec → VMM exit (wall)")]
print("| minivmm | " + " | ".join(f for _, f in figs) + " | passed | threads filtered at /init |")
print("|---|" + "---|" * (len(figs) + 2))
for v in V:
    rs = list(ok[v].values())
    filt = sorted({r["seccomp"] for r in rows if r["variant"] == v})
    n_all = sum(1 for r in rows if r["variant"] == v)
    print(f"| `--seccomp {v.split('-')[1]}` | " +
          " | ".join(sp([float(r[k]) for r in rs if not math.isnan(float(r[k]))]) for k, _ in figs) +
          f" | {len(rs)} of {n_all} | {', '.join(filt)} |")

def sign_p(k, n):  # two-sided sign test: k of n untied pairs one way, under "no difference"
    if n == 0:
        return float("nan")
    tail = sum(math.comb(n, i) for i in range(0, min(k, n - k) + 1)) / 2 ** n
    return min(1.0, 2 * tail)

print("\nPaired by run (the two boots of a run are seconds apart, under the same load), on / off:\n")
print("| figure | on / off, medians | per run: median (min–max, n) | on faster in | sign test p |")
print("|---|---|---|---|---|")
both = sorted(set(ok[V[0]]) & set(ok[V[1]]), key=int)
for k, f in figs:
    off = [float(ok[V[0]][i][k]) for i in both]
    on = [float(ok[V[1]][i][k]) for i in both]
    pr = [b / a for a, b in zip(off, on) if a > 0 and not math.isnan(a) and not math.isnan(b)]
    faster = sum(1 for a, b in zip(off, on) if b < a)
    slower = sum(1 for a, b in zip(off, on) if b > a)
    m = statistics.median(on) / statistics.median(off) if off else float("nan")
    per = f"{statistics.median(pr):.3f} ({min(pr):.3f}–{max(pr):.3f}, n={len(pr)})" if pr else "—"
    print(f"| {f} | {m:.3f} | {per} | {faster} of {len(pr)} | {sign_p(faster, faster + slower):.2f} |")
PY
exit "$rc"
