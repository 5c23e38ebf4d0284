#!/usr/bin/env python3
"""report.py RESULTS_DIR BENCH_DIR — turns bench/run-all.sh's raw results into
BENCH_DIR/RESULTS.md and BENCH_DIR/*.png (gnuplot, pngcairo or png terminal)."""
import math
import os
import re
import shutil
import statistics
import subprocess
import sys

res, bench = sys.argv[1], sys.argv[2]


def read_tsv(name):
    path = os.path.join(res, name)
    if not os.path.exists(path):
        return None
    with open(path) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    if len(lines) < 2:
        return None
    keys = lines[0]
    return [dict(zip(keys, l)) for l in lines[1:]]


def read_text(name):
    path = os.path.join(res, name)
    return open(path).read().rstrip() if os.path.exists(path) else None


def values(rows, vmm, key):
    out = []
    for r in rows:
        if r["vmm"] == vmm:
            try:
                v = float(r[key])
            except (KeyError, ValueError):
                continue
            if not math.isnan(v):
                out.append(v)
    return out


def med(v):
    return statistics.median(v) if v else float("nan")


def fmt(x, d=1):
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{d}f}"


def spread(v, d=1):
    if not v:
        return "n/a"
    return f"{fmt(med(v), d)} ({fmt(min(v), d)}–{fmt(max(v), d)}, n={len(v)})"


def sig3(x):
    """Decimals that show x with 3 significant digits (0 for x >= 100)."""
    if x is None or math.isnan(x) or x <= 0:
        return 1
    return max(0, 2 - math.floor(math.log10(x)))


def ratio(a, b, d=1):
    if not a or not b or math.isnan(a) or math.isnan(b) or b == 0:
        return "n/a"
    return f"{a / b:.{d}f}×"


loads = read_text("loads.txt") or ""
load_of = {}
for line in loads.splitlines():
    if ": " in line:
        k, v = line.split(": ", 1)
        load_of[k] = v.strip()
cmds = {}
for line in (read_text("commands.txt") or "").splitlines():
    if ": " in line:
        k, v = line.split(": ", 1)
        cmds[k] = v.strip()


def header(section, title):
    s = f"\n## {title}\n\n"
    if section in load_of:
        s += f"Load when run: `{load_of[section]}`  \n"
    if section in cmds:
        s += f"Reproduce: `{cmds[section]}`\n"
    return s + "\n"


charts = []  # (png name, gnuplot script)
summary = []  # (figure, minivmm, reference, target)

# A section whose raw results are not in RESULTS_DIR (a part never run there, e.g. in a fresh
# checkout with SKIP=) keeps its text and Summary rows from the page being replaced.
OLD_PAGE = ""
if os.path.exists(os.path.join(bench, "RESULTS.md")):
    with open(os.path.join(bench, "RESULTS.md")) as f:
        OLD_PAGE = f.read()
SUMMARY_PREFIXES = {"1": ("start-up", "main()"), "2": ("memory",), "3": ("Linux (",),
                    "4": ("bench_blk",), "5": ("in-guest dd",), "7": ("console",),
                    "7b": ("seccomp on vs off",), "8": ("virtio-fs",),
                    "8b": ("--host-root --exec",)}
marks = []  # (section number, index in md, index in summary, has raw results)


def section(num, has_raw):
    marks.append((num, len(md), len(summary), has_raw))


def old_section(num):
    m = re.search(r"^## " + re.escape(num) + r"\. .*?(?=^## |\Z)", OLD_PAGE, re.M | re.S)
    if not m:
        return None
    text = m.group(0)
    if num == "4":  # 4b is made from bench/blk-before-after.md each time
        text = re.sub(r"\n### 4b\..*", "", text, flags=re.S)
    return "\n" + text.rstrip() + "\n"


def old_summary(num):
    m = re.search(r"^## Summary\n\n\| figure .*?\n\|---.*?\n(.*?)(?:\n\n|\Z)", OLD_PAGE, re.M | re.S)
    rows = []
    for line in (m.group(1).splitlines() if m else []):
        cells = line.strip()[2:-2].split(" | ")
        if len(cells) == 4 and cells[0].startswith(SUMMARY_PREFIXES.get(num, ("\0",))):
            rows.append(tuple(cells))
    return rows


def bar_chart(png, title, ylabel, labels_series, series_names, log=False, width=800):
    """labels_series: list of (label, [value per series]); log: logarithmic y axis."""
    dat = os.path.join(res, png.replace(".png", ".dat"))
    with open(dat, "w") as f:
        for label, vals in labels_series:
            f.write('"%s" %s\n' % (label, " ".join("nan" if v is None or math.isnan(v) else f"{v:.4f}"
                                                   for v in vals)))
    plots = ", ".join(f"'{dat}' using {i + 2}:xtic(1) title '{n}'"
                      for i, n in enumerate(series_names))
    script = f"""set terminal {{term}} size {width},420
set termoption noenhanced
set output '{os.path.join(bench, png)}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
{'set logscale y' + chr(10) + 'set yrange [*:*]' if log else 'set yrange [0:*]'}
set grid ytics
set key outside bottom center horizontal
plot {plots}
"""
    charts.append((png, script))


md = ["# minivmm benchmarks: side by side with QEMU -M microvm and the machine's limit\n",
      "Generated by `bench/run-all.sh` (which rewrites this page and the charts). "
      "Benchmarks print figures; they are not pass/fail. Medians, with (min–max, n).\n"]
env = read_text("env.txt")
if env:
    md.append("\nThe last `run-all.sh` invocation (each section says when it ran; `SKIP=` keeps a "
              "part's earlier results, and a part with no results in the results directory keeps "
              "its section and Summary rows from the previous page):\n\n```\n" + env + "\n```\n")

# 1. Start-up -------------------------------------------------------------------------
rows = read_tsv("startup.tsv")
section("1", bool(rows))
md.append(header("startup", "1. Start-up: tiny guest, launch to first output and to exit"))
if rows:
    f = {(v, k): values(rows, v, k) for v in ("minivmm", "qemu-microvm", "kvm-floor")
         for k in ("first_out_ms", "exit_ms", "entry_ms", "first_exit_ms", "progress_ms")}
    md.append("| figure (ms) | minivmm | QEMU microvm | QEMU / minivmm | machine's limit (kvm_floor) |\n|---|---|---|---|---|\n")
    for k, label in (("first_out_ms", "fork/exec → first guest UART byte on the pipe"),
                     ("exit_ms", "fork/exec → process exit (guest wrote 0x80, then reset / debug-exit / hlt)"),
                     ("entry_ms", "main() → boot vCPU's first KVM_RUN (the VMM's own log)"),
                     ("first_exit_ms", "main() → the guest's first exit (first instruction ran before it)"),
                     ("progress_ms", "main() → first port-0x80 write (the VMM's own log)")):
        m, q, fl = f[("minivmm", k)], f[("qemu-microvm", k)], f[("kvm-floor", k)]
        md.append(f"| {label} | {spread(m)} | {spread(q) if q else '—'} | "
                  f"{ratio(med(q), med(m)) if q else ''} | {spread(fl) if fl else '—'} |\n")
    summary.append(("start-up, exec → first guest output (ms)", fmt(med(f[("minivmm", "first_out_ms")])),
                    f"QEMU {fmt(med(f[('qemu-microvm', 'first_out_ms')]))} ({ratio(med(f[('qemu-microvm', 'first_out_ms')]), med(f[('minivmm', 'first_out_ms')]))}); floor {fmt(med(f[('kvm-floor', 'first_out_ms')]))}",
                    "≥ 10× faster than QEMU"))
    summary.append(("start-up, exec → exit (ms)", fmt(med(f[("minivmm", "exit_ms")])),
                    f"QEMU {fmt(med(f[('qemu-microvm', 'exit_ms')]))} ({ratio(med(f[('qemu-microvm', 'exit_ms')]), med(f[('minivmm', 'exit_ms')]))}); floor {fmt(med(f[('kvm-floor', 'exit_ms')]))}",
                    "≥ 10× faster than QEMU"))
    summary.append(("main() → the guest's first exit (ms)", fmt(med(f[("minivmm", "first_exit_ms")])),
                    f"first KVM_RUN {fmt(med(f[('minivmm', 'entry_ms')]))}; floor (first port-0x80 write) {fmt(med(f[('kvm-floor', 'progress_ms')]))}",
                    "< 5 ms to first instruction"))
    md.append("\nTargets: minivmm ≥ 10× faster than QEMU; < 5 ms to the first guest instruction, "
              "which runs between the boot vCPU's first `KVM_RUN` and the guest's first exit "
              "(its first UART byte), both logged by minivmm. The port-0x80 write comes after the "
              "guest printed ~70 UART bytes, each an exit.\n\n"
              "**The machine's limit** is `bench/kvm_floor.c`: plain C, open `/dev/kvm`, one VM, "
              "one 128 MiB memory slot, one real-mode vCPU running 14 bytes (`out` to 0x3f8, 0x80 "
              "and 0x64, where it stops), close. On this PVM host two KVM calls dominate it and vary a lot with "
              "load: `KVM_SET_USER_MEMORY_REGION` (3–50 ms, independent of the slot size) and "
              "closing the VM fd (1–30 ms); `strace -r` of minivmm shows the same two calls as its "
              "largest gaps. No VMM can start faster than this floor here.\n")
    md.append("\n![start-up](startup.png)\n")
    bar_chart("startup.png", "Tiny guest start-up (median)", "ms",
              [("first UART byte", [med(f[(v, "first_out_ms")]) for v in ("minivmm", "qemu-microvm", "kvm-floor")]),
               ("process exit", [med(f[(v, "exit_ms")]) for v in ("minivmm", "qemu-microvm", "kvm-floor")])],
              ["minivmm", "QEMU microvm", "kvm_floor (machine limit)"])
else:
    md.append("Not run.\n")
rows = read_tsv("floor.tsv")
section("1b", bool(rows))
md.append(header("floor", "1b. Where KVM's own time goes on this host (kvm_floor variants)"))
if rows:
    md.append("| ms since main() | slot set | first guest exit | VM fd closed | exec → exit (wall) |\n|---|---|---|---|---|\n")
    for v, label in (("irqchip-none", "no irqchip"),
                     ("irqchip-before", "irqchip + PIT created **before** the memory slot (minivmm's order)"),
                     ("irqchip-after", "irqchip + PIT created **after** the memory slot")):
        md.append(f"| {label} | {spread(values(rows, v, 'slot_ms'))} | {spread(values(rows, v, 'first_exit_ms'))} "
                  f"| {spread(values(rows, v, 'closed_ms'))} | {spread(values(rows, v, 'exit_ms'))} |\n")
    md.append("\nReading: on this PVM host `KVM_SET_USER_MEMORY_REGION` is cheap on a VM without an "
              "irqchip or when it comes before `KVM_CREATE_IRQCHIP`, and several ms when it comes after "
              "(minivmm creates the irqchip and PIT first: `vm.cc`; `strace -r` shows ~7 ms on that "
              "call). Tearing down a VM with an in-kernel irqchip + PIT costs ~20 ms at exit whatever "
              "the order; that is in every 'process exit' figure of minivmm and QEMU.\n")
else:
    md.append("Not run.\n")
md.append("""
What differs between the two (same image file, `tests/guest` `test_guest.bzImage`, 128 MiB, 1 vCPU):
- minivmm loads the bzImage itself and enters the **64-bit entry**: the guest prints a hello and
  its command line (~70 UART bytes), writes 0x10/0x20/0x30 to port 0x80 and resets through the
  i8042 (minivmm exits 0).
- QEMU `-M microvm` (`-cpu host,-arch-capabilities`, because PVM's KVM refuses MSR 0x10a,
  `-nodefaults -no-user-config -display none -serial stdio -no-reboot`) runs its qboot firmware,
  which enters the image in **real mode** at setup + 0x200 (QEMU has no 64-bit bzImage entry).
  There the image has a 16-bit path added for this benchmark: it prints one line (~68 bytes),
  writes the same 0x10/0x20/0x30 to port 0x80 and exits through `-device
  isa-debug-exit,iobase=0xf4,iosize=1` (QEMU's status is then 1; microvm has no i8042).
- QEMU does not log port-0x80 writes, so the common metrics are taken by the harness for both:
  time from just before fork/exec to the first guest byte on the serial pipe, and to waitpid.
- `/dev/kvm` here is PVM (no hardware virtualization); both VMMs use it.
""")

# 2. Memory ---------------------------------------------------------------------------
rows = read_tsv("memory.tsv")
section("2", bool(rows))
md.append(header("memory", "2. Memory overhead: resident memory without guest RAM"))
if rows:
    m_rss, q_rss = values(rows, "minivmm", "rss_kib"), values(rows, "qemu-microvm", "rss_kib")
    m_prv, q_prv = values(rows, "minivmm", "private_kib"), values(rows, "qemu-microvm", "private_kib")
    m_ram, q_ram = values(rows, "minivmm", "guest_ram_rss_kib"), values(rows, "qemu-microvm", "guest_ram_rss_kib")
    mib = lambda v: [x / 1024 for x in v]
    md.append("| figure (MiB) | minivmm | QEMU microvm | QEMU / minivmm |\n|---|---|---|---|\n")
    md.append(f"| Rss − guest RAM Rss | {spread(mib(m_rss), 2)} | {spread(mib(q_rss), 2)} | {ratio(med(q_rss), med(m_rss))} |\n")
    md.append(f"| private (Private_Clean + Private_Dirty) − guest RAM | {spread(mib(m_prv), 2)} | {spread(mib(q_prv), 2)} | {ratio(med(q_prv), med(m_prv))} |\n")
    md.append(f"| guest RAM Rss (touched guest pages, for reference) | {spread(mib(m_ram), 2)} | {spread(mib(q_ram), 2)} | |\n")
    summary.append(("memory without guest RAM: Rss / private (MiB)", f"{fmt(med(mib(m_rss)), 2)} / {fmt(med(mib(m_prv)), 2)}",
                    f"QEMU {fmt(med(mib(q_rss)), 2)} / {fmt(med(mib(q_prv)), 2)}", "< 3 MiB (Firecracker 5 MiB)"))
    md.append("\nTarget: < 3 MiB (Firecracker's published bound: 5 MiB). Rss includes shared "
              "library pages (libc, libstdc++, QEMU's many libraries) that other processes share; "
              "the private line is what this VMM process alone costs.\n\n"
              "Method: guest with `minivmm-test=spin` (minivmm; the guest pause-loops) or QEMU "
              "without the exit device (the guest halts after its progress writes); 1 s after the "
              "first UART byte, `/proc/PID/smaps_rollup` minus every mapping of at least the guest "
              "RAM size (128 MiB) in `/proc/PID/smaps`; then SIGTERM.\n")
    md.append("\n![memory](memory.png)\n")
    bar_chart("memory.png", "VMM memory without guest RAM (median)", "MiB",
              [("Rss", [med(mib(m_rss)), med(mib(q_rss))]),
               ("private", [med(mib(m_prv)), med(mib(q_prv))])], ["minivmm", "QEMU microvm"])
else:
    md.append("Not run.\n")

# 3. Linux boot -----------------------------------------------------------------------
rows = read_tsv("linux-boot.tsv")
section("3", bool(rows))
md.append(header("linux", "3. Linux boot: time to the guest's /init, per kernel"))
lenv = read_text("linux-guest.env")
if lenv:
    md.append("".join(f"`{l}`  \n" for l in lenv.splitlines()) + "\n")
KERNELS = [("cloud", "Debian cloud kernel (ACPI, 2 vCPUs)"),
           ("minimal", "minimal kernel (no ACPI, 1 vCPU)")]
if rows:
    for r in rows:
        r.setdefault("kernel", "cloud")  # TSVs from before the kernel column

    def kvalues(kernel, vmm, key):
        return values([r for r in rows if r["kernel"] == kernel], vmm, key)

    present = [(k, label) for k, label in KERNELS if any(r["kernel"] == k for r in rows)]
    md.append("Guest uptime at /init (`MINIVMM-RESULT init=start`), seconds; target: minivmm ≤ QEMU "
              "on every row (QEMU / minivmm ≥ 1).\n\n")
    md.append("| kernel | minivmm | QEMU microvm | QEMU / minivmm |\n|---|---|---|---|\n")
    series = []
    for k, label in present:
        m, q = kvalues(k, "minivmm", "init_s"), kvalues(k, "qemu-microvm", "init_s")
        md.append(f"| {label} | {spread(m, 2)} | {spread(q, 2)} | {ratio(med(q), med(m), 2)} |\n")
        series.append((f"{k}: /init", [med(m), med(q)]))
        summary.append((f"Linux ({k} kernel, nested) to /init, guest uptime (s)", fmt(med(m), 2),
                        f"QEMU {fmt(med(q), 2)} (QEMU/minivmm {ratio(med(q), med(m), 2)})",
                        "ratio ≥ 1 (minivmm ≤ QEMU)"))
    md.append("\n| kernel, figure (s) | minivmm | QEMU microvm | QEMU / minivmm |\n|---|---|---|---|\n")
    for k, label in present:
        for key, flabel in [("done_s", "guest uptime when the smoke scenario finished"),
                            ("wall_s", "exec → VMM exit (wall)")]:
            m, q = kvalues(k, "minivmm", key), kvalues(k, "qemu-microvm", key)
            md.append(f"| {k}: {flabel} | {spread(m, 2)} | {spread(q, 2)} | {ratio(med(q), med(m), 2)} |\n")
            if key == "done_s":
                series.append((f"{k}: done", [med(m), med(q)]))
    passes = {(k, v): sum(int(r.get("pass", "0")) for r in rows if r["vmm"] == v and r["kernel"] == k)
              for k, _ in present for v in ("minivmm", "qemu-microvm")}
    md.append("\nScenario passed: " + "; ".join(
        f"{k}: minivmm {passes[(k, 'minivmm')]}, QEMU {passes[(k, 'qemu-microvm')]}" for k, _ in present)
        + " of the runs.\n")
    md.append("\n![linux boot](linux-boot.png)\n")
    bar_chart("linux-boot.png", "Linux boot, guest uptime, nested KVM (median)", "s", series,
              ["minivmm", "QEMU microvm"])
else:
    md.append("Not run or no result (see the log in the results directory).\n")
md.append("""
Both VMMs get the same kernel, initramfs, ext4 disk (`images/build-disk.sh`), vCPUs and 512 MiB,
and the command line `console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init
minivmm.scenario=smoke` plus `reboot=k` (minivmm) / `reboot=t` (microvm has no i8042).
Cloud kernel: Debian's `linux-image-cloud-amd64` with `images/build-initramfs.sh` (modules
loaded by /init), devices found through ACPI; QEMU `-M microvm,acpi=on,rtc=off -cpu host
-smp 2`. Minimal kernel: `images/build-minimal-kernel.sh` (everything built in) with
`images/build-initramfs.sh --modules ""`, no ACPI: minivmm `--no-acpi --virtio-cmdline`, QEMU
`-M microvm,acpi=off,rtc=off` (which appends `virtio_mmio.device=` itself), both with
`minivmm.exit=reboot`; one vCPU (with two, this guest triple-faults in about 1 boot in 25 under
minivmm in the nested host: README, "Known issues"). Here /dev/kvm is PVM, so both run inside the nested
KVM host (`images/with-kvm.sh`: Debian's kernel under QEMU TCG with emulated SVM): absolute
times are ~10× those on hardware, a nested page fault or VM exit is very expensive, and the
spread is wide; the ratio is the figure to read.
""")

# 3b. Boot by kernel format -------------------------------------------------------------
rows = read_tsv("boot-formats.tsv")
# console-bench's report keeps the old page's text and Summary rows of a section with no raw
# results: mark ours, and name our rows' prefix (not "Linux (", which section 3's are).
globals().get("section", lambda *a: None)("3b", bool(rows))
globals().get("SUMMARY_PREFIXES", {})["3b"] = ("Boot by kernel format",)
md.append(header("bootfmt", "3b. Linux boot by kernel format: bzImage vs ELF vmlinux (PVH, 64-bit entry)"))
benv = read_text("boot-formats.env")
if benv:
    md.append("".join(f"`{l}`  \n" for l in benv.splitlines()) + "\n")
bload = [l.split() for l in (read_text("boot-formats.load") or "").splitlines() if len(l.split()) >= 4]
if bload:
    l1 = [float(x[1]) for x in bload]
    md.append(f"Load average (1 min) while it ran, sampled every 15 s: {fmt(min(l1), 2)}–{fmt(max(l1), 2)} "
              f"(median {fmt(med(l1), 2)}, {len(l1)} samples; at the end: {' '.join(bload[-1][1:4])}).\n\n")
BOOT_VARIANTS = [("minivmm", "bzImage", "minivmm, bzImage"),
                 ("minivmm", "vmlinux-pvh", "minivmm, vmlinux, PVH entry"),
                 ("minivmm", "vmlinux-64bit", "minivmm, vmlinux, 64-bit entry"),
                 ("qemu-microvm", "bzImage", "QEMU microvm, bzImage"),
                 ("qemu-microvm", "vmlinux-pvh", "QEMU microvm, vmlinux, PVH entry"),
                 ("qemu-microvm", "vmlinux-64bit", "QEMU microvm, vmlinux, 64-bit entry")]
BOOT_TARGETS = {"minimal": (1.3, "QEMU/minivmm ≥ 1.3× (fastest path of each)"),
                "cloud": (1.0, "QEMU/minivmm ≥ 1 (never slower than QEMU)")}


def bf_fastest(rs, k):
    """The fastest path of each VMM on kernel k (lowest median exec → /init among the variants
    that passed in most runs) as (median, label, min, max, format), and the ratios QEMU / minivmm
    of those two paths' boots paired by run."""
    best, by_run = {}, {}
    for vmm, f, label in BOOT_VARIANTS:
        runs_ = [r for r in rs if r["kernel"] == k and r["vmm"] == vmm and r["format"] == f
                 and r["run"] != "-1"]
        iw = values([r for r in runs_ if r.get("pass") == "1"], vmm, "init_wall_s")
        ok = sum(r.get("pass") == "1" for r in runs_)
        if iw and 2 * ok > len(runs_) and (vmm not in best or med(iw) < best[vmm][0]):
            best[vmm] = (med(iw), label, min(iw), max(iw), f)
            by_run[vmm] = {r["run"]: float(r["init_wall_s"]) for r in runs_ if r.get("pass") == "1"}
    m, q = best.get("minivmm"), best.get("qemu-microvm")
    pairs = []
    if m and q:  # both boots of a pair ran in the same minute, under the same load
        a_, b_ = by_run["minivmm"], by_run["qemu-microvm"]
        pairs = [b_[i] / a_[i] for i in a_ if i in b_ and a_[i] > 0]
    return m, q, pairs


def bf_history():
    """Every set kept in boot-formats-history/: (name, note, runs, load samples, rows)."""
    hdir = os.path.join(res, "boot-formats-history")
    sets = []
    for h in sorted(f[:-4] for f in os.listdir(hdir) if f.endswith(".tsv")) if os.path.isdir(hdir) else []:
        hrows = read_tsv(os.path.join("boot-formats-history", h + ".tsv")) or []
        hl = [float(x.split()[1]) for x in (read_text(os.path.join("boot-formats-history", h + ".load"))
                                            or "").splitlines() if len(x.split()) >= 4]
        sets.append((h, read_text(os.path.join("boot-formats-history", h + ".note")),
                     len({r["run"] for r in hrows if r["run"] != "-1"}), hl, hrows))
    return sets


if rows:
    hist = bf_history()

    def bf_rows(kernel, vmm, fmt):
        return [r for r in rows if r["kernel"] == kernel and r["vmm"] == vmm and r["format"] == fmt]

    def bf_values(kernel, vmm, fmt, key):  # over the runs that passed
        return values([r for r in bf_rows(kernel, vmm, fmt) if r.get("pass") == "1"], vmm, key)

    series = []
    for k, klabel in KERNELS:
        if not any(r["kernel"] == k for r in rows):
            continue
        md.append(f"\n**{klabel}**, seconds; medians over the runs that passed:\n\n"
                  "| VMM, kernel format | exec → /init (wall) | guest uptime at /init "
                  "| main() → first KVM_RUN (minivmm's log) | exec → VMM exit (wall) | passed "
                  "| entry minivmm logged |\n|---|---|---|---|---|---|---|\n")
        init_meds = []
        for vmm, f, label in BOOT_VARIANTS:
            rs = bf_rows(k, vmm, f)
            runs_ = [r for r in rs if r["run"] != "-1"]
            if not runs_:
                why = next((r.get("note", "") for r in rs if r["run"] == "-1"), "") or "not run"
                md.append(f"| {label} | — | — | — | — | — | not run: {why} |\n")
                init_meds.append(float("nan"))
                continue
            iw = bf_values(k, vmm, f, "init_wall_s")
            ok = sum(r.get("pass") == "1" for r in runs_)
            entries = sorted({r.get("entry", "").replace("_", " ") for r in runs_} - {""})
            ve = bf_values(k, vmm, f, "vcpu_entry_s")
            md.append(f"| {label} | {spread(iw, 2)} | {spread(bf_values(k, vmm, f, 'init_s'), 2)} "
                      f"| {spread(ve, 2) if ve else '—'} "
                      f"| {spread(bf_values(k, vmm, f, 'exit_wall_s'), 2)} | {ok} of {len(runs_)} "
                      f"| {', '.join(entries) if entries else '—'} |\n")
            init_meds.append(med(iw))
        series.append((f"{k}: exec → /init", init_meds[:5]))  # QEMU 64-bit: never run
        m, q, pairs = bf_fastest(rows, k)
        r_ = ratio(q[0], m[0], 2) if m and q else "n/a"
        md.append(f"\nFastest path to /init (wall): minivmm "
                  f"{m[1].replace('minivmm, ', '') + ', ' + fmt(m[0], 2) + ' s' if m else 'n/a'}; QEMU "
                  f"{q[1].replace('QEMU microvm, ', '') + ', ' + fmt(q[0], 2) + ' s' if q else 'n/a'}; "
                  f"QEMU / minivmm {r_}; target {BOOT_TARGETS.get(k, (0, 'none'))[1]}."
                  + (" Their min–max ranges overlap." if m and q and m[2] <= q[3] and q[2] <= m[3]
                     else "") + "\n")
        if pairs:
            md.append(f"Paired by run (the two boots of a run are under the same load): "
                      f"QEMU / minivmm {fmt(med(pairs), 2)}× ({fmt(min(pairs), 2)}–"
                      f"{fmt(max(pairs), 2)}); minivmm faster in {sum(p > 1 for p in pairs)} "
                      f"of {len(pairs)} runs.\n")
        hr = [hq[0] / hm[0] for hm, hq, _ in (bf_fastest(h[4], k) for h in hist) if hm and hq]
        summary.append((f"Boot by kernel format ({k} kernel, nested): fastest path exec → /init, wall (s)",
                        f"{fmt(m[0], 2)} ({m[1].replace('minivmm, ', '')})" if m else "n/a",
                        f"QEMU {fmt(q[0], 2)} ({q[1].replace('QEMU microvm, ', '')}); QEMU/minivmm {r_}"
                        + (f" (all {len(hr)} sets kept: {fmt(min(hr), 2)}–{fmt(max(hr), 2)}×)"
                           if len(hr) > 1 else "") if q else "n/a", BOOT_TARGETS.get(k, (0, ""))[1]))
    fails = read_text("boot-formats.failures.txt")
    if fails:
        lines = fails.splitlines()
        md.append("\nRuns that did not pass (exit status, whether /init was reached, the console's "
                  "last lines; all consoles: `boot-formats.log` in the results directory):\n\n```\n"
                  + "\n".join(lines[:200]) + ("\n…" if len(lines) > 200 else "") + "\n```\n")
    else:
        md.append("\nEvery run passed.\n")
    if len(hist) > 1:
        md.append("\nEvery set of runs kept in the results directory (`boot-formats-history/`; the "
                  "set above is the last), each read the same way; a set's ratio moves with the "
                  "machine's load (which includes up to 2 from this nested host itself):\n\n| set (UTC) | runs | load, 1 min: min–median–max | kernel | minivmm fastest "
                  "| QEMU fastest | QEMU / minivmm, medians | paired by run: median, minivmm faster in |\n"
                  "|---|---|---|---|---|---|---|---|\n")
        for h, note, nruns, hl, hrows in hist:
            for k, _ in KERNELS:
                if not any(r["kernel"] == k for r in hrows):
                    continue
                hm, hq, hp = bf_fastest(hrows, k)
                md.append(f"| {h}{' (' + note + ')' if note else ''} | {nruns} | "
                          + (f"{fmt(min(hl), 2)}–{fmt(med(hl), 2)}–{fmt(max(hl), 2)}" if hl else "n/a")
                          + f" | {k} | {hm[1].replace('minivmm, ', '') + ' ' + fmt(hm[0], 2) if hm else 'n/a'} "
                          f"| {hq[1].replace('QEMU microvm, ', '') + ' ' + fmt(hq[0], 2) if hq else 'n/a'} "
                          f"| {ratio(hq[0], hm[0], 2) if hm and hq else 'n/a'} "
                          f"| {fmt(med(hp), 2) + '×, ' + str(sum(p > 1 for p in hp)) + ' of ' + str(len(hp)) if hp else 'n/a'} |\n")
                note = None  # once per set
    md.append("\n![boot by kernel format](boot-formats.png)\n")
    bar_chart("boot-formats.png", "Linux boot by kernel format, exec to /init, nested KVM (median)", "s",
              series, [label for _, _, label in BOOT_VARIANTS[:5]])
else:
    md.append("Not run or no result (see the log in the results directory).\n")
md.append("""
The same kernel twice: the bzImage and the ELF `vmlinux` inside it (cloud kernel:
`images/extract-vmlinux.sh`, LZ4-compressed in the bzImage; minimal kernel: the build's own
`vmlinux`, `CONFIG_PVH=y`, debug info stripped), with section 3's initramfs, disk, memory,
vCPUs, options and command line per kernel (minimal: minivmm `--no-acpi --virtio-cmdline
--cpus 1`, QEMU `-M microvm,acpi=off -smp 1`). minivmm: `--kernel bzImage` (the bzImage's
64-bit entry; the kernel then decompresses itself), `--kernel vmlinux --elf-entry pvh` (32-bit PVH entry with
`hvm_start_info`) and `--elf-entry 64bit` (the ELF entry through the 64-bit boot protocol);
QEMU: `-kernel bzImage` (qboot, then the real-mode setup code) and `-kernel vmlinux` (QEMU
finds the PVH note and enters there through its `pvh.bin` option ROM); QEMU has no 64-bit
entry for an ELF kernel, so that cell is empty. `bench/guest_run.py boot-formats` boots every
variant once per run, in an order rotated from run to run (and reversed in every other round
of as many runs as there are variants), all in one nested KVM host session, with the kernels and initramfs copied to the nested host's
tmpfs first (the images cache is a 9p export without page cache there, through which every
boot would read the 53 MB cloud vmlinux again). **exec → /init** is the host clock (inside
the nested host) from just before exec to the `MINIVMM-RESULT init=start` line on the serial
console: it includes the VMM's start, loading the kernel, QEMU's firmware and the bzImage's
decompression. The guest's uptime at /init does not: Linux's clock starts at kvm-clock's
set-up, after the decompressor, so it cannot tell the formats apart except by what the
kernel does after it. exec → VMM exit adds the smoke scenario and the reboot or power-off.
minivmm reads an ELF vmlinux's headers and then each segment straight into guest RAM
(`pread`, since 1e21d9d; before, the whole file went into a zero-filled buffer first and
main() → first KVM_RUN took 2.1–2.5 s with the cloud vmlinux); a bzImage is read whole and
its protected-mode part copied to 1 MiB, where the kernel then decompresses itself.
""")

# 4. Block datapath -------------------------------------------------------------------
t = read_text("blk_bench.txt")
section("4", bool(t))
md.append(header("blk", "4. Block datapath: in-process virtio-blk vs fio on the same file"))
md.append("```\n" + t + "\n```\n" if t else "`build/rel/bench/bench_blk` was not built or failed.\n")
for line in (t or "").splitlines():
    # "4k randwrite QD32  |  119146  488.0  5.44 |  155009  634.9  5.36 |  76.9%"
    cols = [c.strip() for c in line.split("|")]
    if len(cols) != 4 or not cols[3].endswith("%") or not cols[1][:1].isdigit():
        continue
    dev, fio = cols[1].split(), cols[2].split()
    small = cols[0].startswith("4k")
    summary.append((f"bench_blk {cols[0]}, device vs fio ({'IOPS' if small else 'MB/s'})",
                    dev[0] if small else dev[1],
                    f"fio {fio[0] if small else fio[1]} (device/fio {cols[3]})",
                    "≥ 90 % of fio's IOPS" if small else "≥ 95 % of fio's bandwidth"))

ba = os.path.join(bench, "blk-before-after.md")
section("4b", True)
extra = sorted(f for f in os.listdir(bench) if f.startswith("blk-before-after-") and f.endswith(".md"))
if os.path.exists(ba):
    md.append("\n### 4b. VirtioBlock on VirtioWorker: before/after\n\n"
              "Commit 4dfc64a (\"One device model: transport-owned queue events, VirtioWorker, "
              "one attach path\") rebuilt VirtioBlock on the `VirtioWorker` helper; the issue asked "
              "for unchanged bench_blk figures. `bench/blk_before_after.sh` builds bench_blk at two "
              "commits (or takes two binaries) and runs them interleaved, so both see the same "
              "load; its last output, from `bench/blk-before-after.md` (not rewritten by "
              "run-all.sh):\n\n" + open(ba).read().rstrip() + "\n")
    for f in extra:  # further runs of it, e.g. one pattern with more pairs
        md.append(f"\nAnd from `bench/{f}`:\n\n" + open(os.path.join(bench, f)).read().rstrip() + "\n")
    # The chart: device/fio per pattern, before and after, from every file (n: the pairs).
    series = []
    for f in ["blk-before-after.md"] + extra:
        for line in open(os.path.join(bench, f)).read().splitlines():
            c = [x.strip() for x in line.strip().strip("|").split("|")]
            if len(c) >= 4 and c[1] == "device/fio %":
                n = re.search(r"n=(\d+)", c[2])
                try:
                    series.append((" ".join(c[0].split()[:2]) + (f", n={n.group(1)}" if n else ""),
                                   [float(c[2].split()[0]), float(c[3].split()[0])]))
                except ValueError:
                    pass
    if series:
        md.append("\n![bench_blk before/after](blk-before-after.png)\n")
        bar_chart("blk-before-after.png", "bench_blk device/fio, before and after 4dfc64a (median)",
                  "device / fio (%)", series, ["before (4dfc64a^)", "after"], width=1100)

# 5. Block in a guest -----------------------------------------------------------------
rows = read_tsv("linux-blk.tsv")
section("5", bool(rows))
md.append(header("linux", "5. Block I/O inside the Linux guest (busybox dd, O_DIRECT)"))
if rows:
    keys = [("write_1m_mbps", "1 MiB sequential write, 32 MiB"),
            ("read_1m_mbps", "1 MiB sequential read, 32 MiB"),
            ("read_4k_mbps", "4 KiB sequential read (QD1), 2 MiB")]
    md.append("| MB/s | minivmm | QEMU microvm | minivmm / QEMU |\n|---|---|---|---|\n")
    series = []
    for k, label in keys:
        m, q = values(rows, "minivmm", k), values(rows, "qemu-microvm", k)
        md.append(f"| {label} | {spread(m)} | {spread(q)} | {ratio(med(m), med(q), 2)} |\n")
        series.append((k.replace("_mbps", ""), [med(m), med(q)]))
    for k, label in keys:
        m, q = values(rows, "minivmm", k), values(rows, "qemu-microvm", k)
        summary.append((f"in-guest dd, {label} (MB/s)", fmt(med(m)), f"QEMU {fmt(med(q))} (minivmm/QEMU {ratio(med(m), med(q), 2)})", ""))
    md.append("\n![guest block](linux-blk.png)\n")
    bar_chart("linux-blk.png", "dd in the guest on a raw virtio disk (median)", "MB/s", series,
              ["minivmm", "QEMU microvm"])
else:
    md.append("Not run or no result (see the log in the results directory).\n")
md.append("""
A 256 MiB raw scratch file as `/dev/vdb`, both with O_DIRECT on the host: minivmm
`--disk path=…,direct=on,engine=io_uring`, QEMU `-drive …,cache=none,aio=io_uring` on
`virtio-blk-device`; in the guest busybox `dd` with `oflag=direct` / `iflag=direct` (the
initramfs has no fio). Nested KVM: every guest exit is emulated by TCG, so these show the
relative cost of the two datapaths, not the machine's disk.
""")

# 6. Queue ----------------------------------------------------------------------------
t = read_text("queue_bench.txt")
section("6", bool(t))
md.append(header("queue", "6. Virtqueue: queue_bench (Google Benchmark)"))
md.append("```\n" + t + "\n```\n" if t else "Not run.\n")
md.append("\nTarget: below 50 ns per chain.\n")

# 7. Console ---------------------------------------------------------------------------
rows = read_tsv("console.tsv")
section("7", bool(rows))
md.append(header("console", "7. Console throughput: the guest floods hvc0 / ttyS0, the host drains a pipe"))
cenv = read_text("console.env")
if cenv:
    md.append("".join(f"`{l}`  \n" for l in cenv.splitlines()) + "\n")
if rows:
    def cvalues(vmm, tty, key, ok_only=True):
        return values([r for r in rows if r["tty"] == tty and (r.get("ok") == "1" or not ok_only)],
                      vmm, key)

    cols = [("minivmm", "hvc0", "minivmm hvc0 (virtio-console)"),
            ("qemu-microvm", "hvc0", "QEMU virtconsole (virtio-serial-device)"),
            ("minivmm", "ttyS0", "minivmm ttyS0 (UART)"),
            ("qemu-microvm", "ttyS0", "QEMU ttyS0 (isa-serial)")]
    md.append("| figure | " + " | ".join(c[2] for c in cols) + " |\n" + "|---" * (len(cols) + 1) + "|\n")
    sizes = []
    for v, t, _ in cols:
        b = cvalues(v, t, "bytes", ok_only=False)
        sizes.append(f"{int(max(b)) / (1 << 20):g} MiB" if b else "—")
    md.append("| bytes per run | " + " | ".join(sizes) + " |\n")
    for key, label in (("host_mbps", "MB/s on the host pipe (BEGIN line → last flood byte)"),
                       ("guest_mbps", "MB/s, guest's own timing (/proc/uptime)"),
                       ("cpu_ms_per_mib", "VMM process CPU per MiB (ms), all threads"),
                       ("guest_ms_per_mib", "… of which vCPU in guest mode (guest_time)"),
                       ("sched_ms_per_mib", "VMM CPU per MiB (ms), schedstat")):
        md.append(f"| {label} | " + " | ".join(spread(x, sig3(med(x))) for x in
                                                (cvalues(v, t, key) for v, t, _ in cols)) + " |\n")
    def per_mib(v, t, key):
        return [float(r[key]) / (float(r["bytes"]) / (1 << 20)) for r in rows
                if r["vmm"] == v and r["tty"] == t and r.get("ok") == "1"
                and float(r.get(key, -1)) >= 0 and float(r["bytes"]) > 0]
    md.append("| guest interrupts per MiB, virtio devices / ttyS0 | " + " | ".join(
        f"{fmt(med(per_mib(v, t, 'virtio_irqs')), 0)} / {fmt(med(per_mib(v, t, 'serial_irqs')), 0)}"
        for v, t, _ in cols) + " |\n")
    md.append("| guest kernel log lines during the flood, all runs (e.g. soft lockups) | " + " | ".join(
        str(sum(int(float(r.get("kmsgs", 0))) for r in rows if r["vmm"] == v and r["tty"] == t
                and float(r.get("kmsgs", -1)) > 0)) for v, t, _ in cols) + " |\n")
    okc = []
    for v, t, _ in cols:
        allr = [r for r in rows if r["vmm"] == v and r["tty"] == t]
        okc.append(f"{sum(r.get('ok') == '1' for r in allr)} of {len(allr)}" if allr else "not run")
    md.append("| runs with every byte, in order (the only ones counted) | " + " | ".join(okc) + " |\n")
    bad = [r for r in rows if r.get("ok") != "1"]
    if bad:
        md.append("\nRuns not counted: " + "; ".join(
            f"{r['vmm']} {r['tty']} run {r['run']}: {r.get('problem', '?')}" for r in bad) + ".\n")
    mh, qh = med(cvalues("minivmm", "hvc0", "host_mbps")), med(cvalues("qemu-microvm", "hvc0", "host_mbps"))
    ms, qs = med(cvalues("minivmm", "ttyS0", "host_mbps")), med(cvalues("qemu-microvm", "ttyS0", "host_mbps"))
    def per_run(a, b):
        """a/b of host MB/s within each run (the rows of one run follow each other)."""
        by = {(r["vmm"], r["tty"], r["run"]): float(r["host_mbps"]) for r in rows if r.get("ok") == "1"}
        return [by[a + (i,)] / by[b + (i,)] for i in sorted({r["run"] for r in rows}, key=int)
                if a + (i,) in by and by.get(b + (i,))]

    pr_q = per_run(("minivmm", "hvc0"), ("qemu-microvm", "hvc0"))
    pr_s = per_run(("minivmm", "hvc0"), ("minivmm", "ttyS0"))
    md.append(f"\nRatios of the medians (host pipe MB/s): minivmm hvc0 / QEMU virtconsole "
              f"{ratio(mh, qh, 2)}; minivmm hvc0 / minivmm ttyS0 {ratio(mh, ms, 0)}; "
              f"minivmm ttyS0 / QEMU ttyS0 {ratio(ms, qs, 2)}. The same within each run (its rows "
              f"ran minutes apart, so a load that changes between runs cancels): minivmm hvc0 / "
              f"QEMU virtconsole {spread(pr_q, 2)}; minivmm hvc0 / minivmm ttyS0 {spread(pr_s, 0)}. "
              f"Targets: minivmm hvc0 ≥ QEMU's virtconsole and ≥ 50× minivmm's own ttyS0.\n")
    summary.append(("console hvc0 → host pipe, Linux guest, nested (MB/s)", fmt(mh, sig3(mh)),
                    f"QEMU virtconsole {fmt(qh, sig3(qh))} (minivmm/QEMU {ratio(mh, qh, 2)})",
                    "≥ QEMU's virtconsole"))
    summary.append(("console hvc0 / ttyS0, minivmm (MB/s)", f"{fmt(mh, sig3(mh))} / {fmt(ms, sig3(ms))}",
                    f"hvc0/ttyS0 {ratio(mh, ms, 0)} (QEMU ttyS0 {fmt(qs, sig3(qs))})", "≥ 50×"))
    cpu = {(v, t): med(cvalues(v, t, "cpu_ms_per_mib")) for v in ("minivmm", "qemu-microvm")
           for t in ("hvc0", "ttyS0")}
    summary.append(("console host CPU per MiB, hvc0 / ttyS0 (ms)",
                    f"{fmt(cpu[('minivmm', 'hvc0')], sig3(cpu[('minivmm', 'hvc0')]))} / "
                    f"{fmt(cpu[('minivmm', 'ttyS0')], sig3(cpu[('minivmm', 'ttyS0')]))}",
                    f"QEMU {fmt(cpu[('qemu-microvm', 'hvc0')], sig3(cpu[('qemu-microvm', 'hvc0')]))} / "
                    f"{fmt(cpu[('qemu-microvm', 'ttyS0')], sig3(cpu[('qemu-microvm', 'ttyS0')]))}", ""))
    md.append("\n![console](console.png)\n")
    bar_chart("console.png", "Console flood, Linux guest to host pipe, nested KVM (median)",
              "MB/s (log scale)",
              [("hvc0", [mh, qh]), ("ttyS0", [ms, qs])], ["minivmm", "QEMU microvm"], log=True)
else:
    md.append("Not run or no result (see the log in the results directory).\n")
md.append("""
The guest (Debian cloud kernel, the initramfs of section 3, 2 vCPUs, 512 MiB, no disk,
`console=hvc0` or `console=ttyS0`: the flooded tty is the kernel's console) runs the
scenario `console-flood` (`images/scenarios/console-flood`, `minivmm.arg=TTY:SIZE`): it puts
the tty in raw mode (`stty raw -echo -opost`: no ONLCR, every byte written is one byte on the
host), lets the kernel print nothing on its console meanwhile (its messages follow the result),
writes a BEGIN line,
SIZE bytes of the 32-byte pattern lines with `cat` from a 1 MiB tmpfs file and an END line,
and reports its own `/proc/uptime` timing and its interrupts. The harness
(`bench/console_bench.py`) is the VMM's stdout: a 1 MiB pipe drained in 1 MiB reads; it times
the BEGIN line's arrival to the last flood byte's, checks that exactly SIZE bytes came between
the markers and that every one is the pattern's, and reads the VMM's CPU (`/proc/PID/stat`
utime + stime and guest_time, all threads) at both ends. hvc0 rows: minivmm `--console stdio
--serial file=…`, QEMU `-device virtio-serial-device -chardev stdio,id=c0 -device
virtconsole,chardev=c0 -serial file:…`; ttyS0 rows: `--serial stdio` / `-serial stdio`.
ttyS0 costs a port-I/O exit per byte, each a long trip in the nested host, so its rows send less than
hvc0's (the bytes-per-run line); MB/s is the figure either way. The CPU figures include the
vCPU threads' time in the guest, where Linux's virtio_console spins until the device has taken
each buffer, and they are the nested host's (TCG-emulated) CPU time.
""")

# 7b (seccomp on vs off: bench/seccomp_blk.sh, bench/seccomp_boot.sh) is written by hand
# from those scripts' output; run-all.sh does not run them, so it is always the old page's.
section("7b", False)
# 8 (virtio-fs next to QEMU's vhost-user-fs and 9p: bench/fs.sh) likewise, by hand from its
# fs.txt; it needs root in the nested host and takes minutes, so run-all.sh does not run it.
section("8", False)
# 8b (--host-root --exec latency next to QEMU microvm: bench/hostroot-exec.sh) likewise.
section("8b", False)
# 8c (virtio-net and vsock next to QEMU microvm: bench/net.sh) likewise, by hand from net.txt.
section("8c", False)

section("end", True)
for k in reversed(range(len(marks) - 1)):
    num, mi, si, has_raw = marks[k]
    old = None if has_raw else old_section(num)
    if old:
        md[mi:marks[k + 1][1]] = [old]
        summary[si:marks[k + 1][2]] = old_summary(num)

qb = read_text("queue_bench.txt") or ""
bb = read_text("blk_bench.txt") or ""
sm = ["\n## Summary\n\n| figure | minivmm | reference | target |\n|---|---|---|---|\n"]
for fig, m, r, t in summary:
    sm.append(f"| {fig} | {m} | {r} | {t} |\n")
sm.append("\nBlock datapath details (CPU per I/O, every run), virtqueue (queue_bench), console "
          "details, seccomp on vs off and virtio-fs: see sections 4, 6, 7, 7b and 8. Machine: 2 cores shared with compiling engineers; the load "
          "average is printed with every section, and the spread (min–max) is large because of it.\n")
md[3:3] = sm
md.append("""
## Not measured / caveats

- `fio` is not in the guest initramfs: section 5 uses busybox `dd` timed by `/proc/uptime`,
  single job, QD1 — a datapath comparison, not the disk's limit (that is section 4).
- Linux figures come from the nested KVM host (TCG-emulated SVM): absolute values are far
  from hardware KVM; a few boots per VMM on a shared, loaded machine give a wide spread.
- bench_blk, 4 KiB random write: on this machine the host disk's write completions run in a
  kernel worker (`iomap_dio_complete_work`) on the CPU that takes the disk's interrupts,
  busy ~85 % of the time at these rates (`perf sched`, for fio and the device alike). fio's
  one thread has the other CPU to itself; the device's I/O thread and the synthetic driver
  share what is left, and a driver woken on the busy CPU waits. `bench_blk --cpu N` puts
  both sides on CPU N. One interleaved A/B of 6 × 3 s runs each (2026-11-28, buffers still
  on 4 KiB pages): device/fio 85.6 % without polling, 97.7 % with `poll_us` 100, 104.6 % with
  polling and `--cpu 0`; fio itself ranged 108–137 k IOPS, so single runs of either side are
  only good to ±15 %.
- bench_blk's buffers are on transparent huge pages on both sides (minivmm's guest RAM is;
  fio gets `GLIBC_TUNABLES=glibc.malloc.hugetlb=1 --iomem_align=2m`). On 4 KiB pages a 1 MiB
  request is 256 segments, and both sides reached only half the 1 MiB bandwidth (~1 GB/s
  read) on this machine's virtual disk.
- "First guest instruction" is bracketed by minivmm's log: the boot vCPU's first `KVM_RUN`
  and the guest's first exit (its first UART byte); the instruction runs in between.
""")

with open(os.path.join(bench, "RESULTS.md"), "w") as f:
    f.write("".join(md))

gp = shutil.which("gnuplot")
if gp:
    term = "pngcairo" if b"pngcairo" in subprocess.run(
        [gp, "-e", "set terminal"], capture_output=True).stderr + subprocess.run(
        [gp, "-e", "set terminal"], capture_output=True).stdout else "png"
    for png, script in charts:
        r = subprocess.run([gp], input=script.replace("{term}", term).encode(), capture_output=True)
        if r.returncode != 0:
            print(f"gnuplot failed for {png}: {r.stderr.decode()}", file=sys.stderr)
else:
    print("gnuplot not found: no charts (apt-get install -y gnuplot-nox)", file=sys.stderr)
