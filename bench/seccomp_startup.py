#!/usr/bin/env python3
"""seccomp_startup.py [--minivmm BIN] [--guest IMAGE] [--pairs N] — what the seccomp filters
cost minivmm's start-up: main() → the boot vCPU's first KVM_RUN (minivmm's log line "vCPU 0
entered the guest at X ms", --log-level info) and exec → exit, with --seccomp=off and on,
interleaved in pairs (the order alternating), on this host's /dev/kvm with section 1's test
guest (1 vCPU, 128 MiB). Prints medians (min–max, n) and the per-pair difference on − off.
Figures, not pass/fail."""
import argparse
import re
import statistics
import subprocess
import time

ap = argparse.ArgumentParser()
ap.add_argument("--minivmm", default="build/rel/vmm/minivmm")
ap.add_argument("--guest", default="build/rel/tests/guest/test_guest.bzImage")
ap.add_argument("--pairs", type=int, default=50)
a = ap.parse_args()
kvm_run = {"off": [], "on": []}
wall = {"off": [], "on": []}
pairs = []
for i in range(a.pairs):
    got = {}
    for mode in ("off", "on") if i % 2 == 0 else ("on", "off"):
        cmd = [a.minivmm, "--kernel", a.guest, "--memory", "128M", "--cpus", "1",
               "--cmdline", "console=ttyS0 reboot=k panic=-1", "--serial", "stdio",
               "--log-level", "info", f"--seccomp={mode}"]
        t0 = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        t = (time.perf_counter() - t0) * 1000
        m = re.search(r"vCPU 0 entered the guest at ([0-9.]+) ms", p.stderr)
        if p.returncode != 0 or not m:
            print(f"pair {i}, --seccomp={mode}: exit status {p.returncode}: {p.stderr[-300:]}")
            continue
        got[mode] = float(m.group(1))
        kvm_run[mode].append(got[mode])
        wall[mode].append(t)
    if len(got) == 2:
        pairs.append(got["on"] - got["off"])


def sp(x):
    return f"{statistics.median(x):.2f} ({min(x):.2f}–{max(x):.2f}, n={len(x)})" if x else "—"


print("| minivmm | main() → first KVM_RUN (ms) | exec → exit (ms) |\n|---|---|---|")
for mode in ("off", "on"):
    print(f"| `--seccomp {mode}` | {sp(kvm_run[mode])} | {sp(wall[mode])} |")
print(f"\nPer pair, on − off, main() → first KVM_RUN (ms): {sp(pairs)}; on slower in "
      f"{sum(1 for d in pairs if d > 0)} of {len(pairs)}.")
