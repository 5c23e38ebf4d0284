#!/usr/bin/env python3
"""Linux guest boots and block I/O in the guest, minivmm next to QEMU -M microvm.

Runs where /dev/kvm can boot Linux (directly, or inside the nested KVM host: see
bench/linux-guest.sh, which prepares the inputs and calls this). Both VMMs get the same
kernel, initramfs, disk image and kernel command line (except reboot=k / reboot=t: microvm
has no i8042), vCPUs (--cpus, default 2) and 512 MiB.

  guest_run.py boot  --minivmm BIN --kernel K --initrd I --disk D [--runs N] --out F.tsv
                     [--kernel-name NAME] [--no-acpi] [--cpus N] [--append]
  guest_run.py blk   --minivmm BIN --kernel K --initrd I --scratch S [--runs N] --out F.tsv
  guest_run.py boot-formats --minivmm BIN --disk D --flavour SPEC [--flavour SPEC...]
                     [--runs N] --out F.tsv [--log L] [--failures F.txt] [--stage DIR]
                     [--progress F] [--resume] [--vmms LIST] [--formats LIST]
                     [--minivmm-variant NAME=ARGS ...]
  guest_run.py smp-flake --minivmm BIN --kernel K --initrd I --disk D [--cpus N] [--runs N]
                     [--timeout S] --out F.tsv [--stats F.txt] [boot-formats' other options]
  guest_run.py flake-stats F.tsv

--kernel-name labels the rows (TSV column "kernel", default cloud). --no-acpi is for a
kernel that finds its devices on the command line (the minimal kernel): minivmm gets
--no-acpi --virtio-cmdline, microvm acpi=off (it appends virtio_mmio.device= itself), and
both end through a reboot (minivmm.exit=reboot: without ACPI there is no power-off).
--append adds rows to an existing TSV instead of replacing it.

boot: scenario smoke; per run: init_s (guest uptime at /init, MINIVMM-RESULT init=start),
  done_s (scenario finished, guest uptime) and wall_s (exec to exit).
boot-formats: the smoke boot of every (VMM, kernel flavour, kernel format) in one process,
  interleaved: each run boots every variant once, in an order rotated from run to run (in n
  runs of n variants each takes every place once) and reversed in every other round of n.
  SPEC = NAME,bzimage=PATH,vmlinux=PATH,initrd=PATH[,acpi=off][,cpus=N] (the same kernel as a
  bzImage and as its ELF vmlinux; acpi=off as --no-acpi above; cpus default 2). Formats:
  bzImage (both VMMs), vmlinux-pvh (minivmm --elf-entry pvh; QEMU -kernel vmlinux, which it
  enters through the PVH note), vmlinux-64bit (minivmm --elf-entry 64bit; QEMU has no 64-bit
  entry for an ELF kernel: not run). Per run, besides boot's columns: init_wall_s (exec to the
  /init line on the console, host clock: guest uptime starts after the bzImage decompressor,
  so only this one sees it), exit_wall_s (= wall_s), entry (the entry minivmm logged),
  vcpu_entry_s (minivmm's main() to its first KVM_RUN, from its log), pass.
  A run that does not pass goes to --failures with its exit status and console tail.
  --stage DIR copies the kernels and initramfs into a new folder in DIR (a tmpfs) first.
  Rows are written as they are measured; --progress FILE names the boot under way (removed at
  the end), and --resume keeps the complete runs of an existing --out and repeats the others
  whole (for a nested host that died: see bench/boot-formats.sh).
  --vmms and --formats (comma-separated) boot only some of the VMMs and formats.
  --minivmm-variant NAME=ARGS (repeatable) boots every minivmm variant once per ARGS, more
  minivmm options split like a shell would (e.g. seccomp-on="--seccomp on"), as variants of
  their own in the rotation; the TSV column "variant" names them. Column "seccomp": minivmm's
  threads when /init appeared, from /proc/PID/task/*/status: "N/M" = N of M threads with a
  seccomp filter (Seccomp: 2).

smp-flake: the known SMP flake without ACPI (README, "Known issues"): minivmm --no-acpi
  --virtio-cmdline next to QEMU -M microvm,acpi=off, the same bzImage on --cpus vCPUs
  (default 2), interleaved, through boot-formats' loop (its TSV, --log, --failures, --stage,
  --progress, --resume; --timeout default 60 s). A boot fails if it does not reach /init
  (INIT_LINE) within the timeout: a hang, a triple fault, a crash. Prints (and writes to
  --stats) each VMM's failures with a 95 % Wilson interval and Fisher's exact test of the
  two rates; flake-stats recomputes these from a TSV (e.g. a partial one).

blk: scenario shell on a scratch raw disk (vdb) with O_DIRECT in the guest and on the host
  (minivmm direct=on,engine=io_uring; QEMU cache=none,aio=io_uring). The harness waits for
  the shell, then sends busybox dd runs: 1 MiB sequential write and read, and 4 KiB
  sequential reads (queue depth 1), timed with the guest's /proc/uptime (busybox dd prints
  no rate); MB/s = 10^6 bytes per second.
"""
import argparse
import os
import re
import select
import shlex
import shutil
import subprocess
import sys
import tempfile
import time

BASE_APPEND = "console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init"

DD_CMDS = [
    ("write_1m", "dd if=/dev/zero of=/dev/vdb bs=1M count=32 oflag=direct"),
    ("read_1m", "dd if=/dev/vdb of=/dev/null bs=1M count=32 iflag=direct"),
    ("read_4k", "dd if=/dev/vdb of=/dev/null bs=4k count=512 iflag=direct"),
]
MIB = {"write_1m": 32, "read_1m": 32, "read_4k": 2}


def guest_append(a, scenario):
    extra = " minivmm.exit=reboot" if a.no_acpi else ""
    return f"{BASE_APPEND} minivmm.scenario={scenario}{extra}"


def minivmm_cmd(a, disks, scenario):
    cmd = [a.minivmm, "--kernel", a.kernel, "--initrd", a.initrd, "--memory", "512M",
           "--cpus", str(a.cpus), "--serial", "stdio", "--log-level", "info",
           "--cmdline", f"{guest_append(a, scenario)} reboot=k"]
    if a.no_acpi:
        cmd += ["--no-acpi", "--virtio-cmdline"]
    for path, serial in disks:
        cmd += ["--disk", f"path={path},serial={serial},direct=on,engine=io_uring"]
    return cmd


def qemu_cmd(a, disks, scenario):
    acpi = "off" if a.no_acpi else "on"
    cmd = ["qemu-system-x86_64", "-M", f"microvm,acpi={acpi},rtc=off", "-accel", "kvm",
           "-cpu", "host", "-m", "512M", "-smp", str(a.cpus),
           "-kernel", a.kernel, "-initrd", a.initrd,
           "-append", f"{guest_append(a, scenario)} reboot=t",
           "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
           "-no-reboot"]
    for i, (path, serial) in enumerate(disks):
        cmd += ["-drive", f"id=d{i},file={path},format=raw,if=none,cache=none,aio=io_uring",
                "-device", f"virtio-blk-device,drive=d{i},serial={serial}"]
    return cmd


def run(cmd, send_after=None, commands=(), timeout=300, marks=None, on_mark=None):
    """Runs cmd; when send_after appears on the console, writes commands to its stdin.
    marks: {name: bytes}; when given, a 4th value is returned: {name: seconds from exec until
    that text first appeared on the console}. on_mark(name, pid) is called as each first
    appears, while the process runs; seen[name + ":probe"] is what it returned."""
    t0 = time.perf_counter()
    seen = {}
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT)
    out = b""
    sent = send_after is None
    fd = p.stdout.fileno()
    while True:
        if time.perf_counter() - t0 > timeout:
            p.kill()
            break
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
        for name, pat in (marks or {}).items():
            if name not in seen and pat in out[-(len(chunk) + len(pat)):]:
                seen[name] = time.perf_counter() - t0
                if on_mark:
                    seen[name + ":probe"] = on_mark(name, p.pid)
        if not sent and send_after.encode() in out:
            sent = True
            for c in commands:
                p.stdin.write((c + "\n").encode())
            # Let the console drain: output still queued when the shell exits is lost.
            p.stdin.write(b"sleep 1; exit\n")
            p.stdin.flush()
    p.wait()
    wall = time.perf_counter() - t0
    if marks is not None:
        return p.returncode, wall, out.decode(errors="replace"), seen
    return p.returncode, wall, out.decode(errors="replace")


def fnum(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else float("nan")


# boot-formats ---------------------------------------------------------------------------
FORMATS = ["bzImage", "vmlinux-pvh", "vmlinux-64bit"]
# Variants with no command: the reason goes into the TSV (one row per flavour, run -1).
NOT_RUN = {("qemu-microvm", "vmlinux-64bit"):
           "QEMU boots an ELF kernel only through its PVH note; it has no 64-bit entry for one"}
INIT_LINE = b"MINIVMM-RESULT init=start"


def seccomp_threads(_name, pid):
    """'N/M': N of the process's M threads run under a seccomp filter (Seccomp: 2)."""
    modes = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:  # it ended already
        return "?"
    for t in tasks:
        try:
            with open(f"/proc/{pid}/task/{t}/status") as f:
                modes += [l.split()[1] for l in f if l.startswith("Seccomp:")]
        except OSError:
            pass
    return f"{modes.count('2')}/{len(modes)}"


def parse_flavour(spec):
    name, _, rest = spec.partition(",")
    f = {"name": name, "acpi": "on", "cpus": "2"}
    for kv in filter(None, rest.split(",")):
        k, _, v = kv.partition("=")
        if k not in ("bzimage", "vmlinux", "initrd", "acpi", "cpus") or not v:
            raise SystemExit(f"guest_run.py: --flavour {spec}: bad key '{kv}'")
        f[k] = v
    for k in ("bzimage", "vmlinux", "initrd"):
        if k not in f:
            raise SystemExit(f"guest_run.py: --flavour {spec}: {k}= is missing")
    return f


def variant_cmd(a, flav, vmm, fmt, extra=()):
    """The command line of one variant, from boot's own minivmm_cmd / qemu_cmd; extra: more
    minivmm options (--minivmm-variant)."""
    ns = argparse.Namespace(minivmm=a.minivmm, initrd=flav["initrd"], cpus=int(flav["cpus"]),
                            no_acpi=flav["acpi"] == "off",
                            kernel=flav["bzimage"] if fmt == "bzImage" else flav["vmlinux"])
    disks = [(a.disk, "minidisk")]
    if vmm == "minivmm":
        cmd = minivmm_cmd(ns, disks, "smoke")
        if fmt != "bzImage":
            cmd += ["--elf-entry", fmt.split("-")[1]]
        return cmd + list(extra)
    return qemu_cmd(ns, disks, "smoke")


def boot_formats(argv, prog="guest_run.py boot-formats"):
    ap = argparse.ArgumentParser(prog=prog)
    ap.add_argument("--minivmm", required=True)
    ap.add_argument("--disk", required=True)
    ap.add_argument("--flavour", action="append", required=True)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log")
    ap.add_argument("--failures")
    ap.add_argument("--timeout", type=int, default=180)
    ap.add_argument("--stage", help="copy kernels and initramfs to a new folder in DIR (a tmpfs)")
    ap.add_argument("--progress", help="FILE: the boot under way, removed when all are done")
    ap.add_argument("--resume", action="store_true",
                    help="keep the complete runs already in --out, repeat the incomplete ones")
    ap.add_argument("--vmms", default="minivmm,qemu-microvm")
    ap.add_argument("--formats", default=",".join(FORMATS))
    ap.add_argument("--minivmm-variant", action="append", default=[], metavar="NAME=ARGS")
    a = ap.parse_args(argv)
    flavours = [parse_flavour(s) for s in a.flavour]
    vmms = a.vmms.split(",")
    formats = a.formats.split(",")
    if not set(vmms) <= {"minivmm", "qemu-microvm"} or not set(formats) <= set(FORMATS):
        raise SystemExit(f"guest_run.py: --vmms {a.vmms} / --formats {a.formats}: unknown name")
    extras = {"": []}  # variant name -> more minivmm options
    if a.minivmm_variant:
        extras = {}
        for v in a.minivmm_variant:
            name, sep, args = v.partition("=")
            if not sep or not name:
                raise SystemExit(f"guest_run.py: --minivmm-variant {v}: NAME=ARGS")
            extras[name] = shlex.split(args)
    variants = [(f, vmm, fmt, var) for f in flavours for vmm in vmms for fmt in formats
                if (vmm, fmt) not in NOT_RUN
                for var in (extras if vmm == "minivmm" else [""])]
    stage = None
    if a.stage:
        # Kernels and initramfs from RAM: in the nested host the images cache is a 9p export
        # without page cache (cache=mmap), where every boot would read the 53 MB cloud
        # vmlinux through 9p again; a VMM host has its kernel in the page cache.
        stage = tempfile.mkdtemp(prefix="boot-formats.", dir=a.stage)
        for f in flavours:
            for k in ("bzimage", "vmlinux", "initrd"):
                dst = os.path.join(stage, f"{f['name']}-{k}-{os.path.basename(f[k])}")
                shutil.copyfile(f[k], dst)
                f[k] = dst
        fstype = max(((m[1], m[2]) for m in (l.split() for l in open("/proc/mounts"))
                      if stage.startswith(m[1].rstrip("/") + "/")), key=lambda m: len(m[0]))[1]
        print(f"guest_run.py: inputs staged in {stage} ({fstype})", file=sys.stderr, flush=True)
    logf = open(a.log, "a") if a.log else None
    failf = open(a.failures, "a" if a.resume else "w") if a.failures else None
    keys = ["vmm", "kernel", "format", "run", "init_wall_s", "init_s", "done_s", "exit_wall_s",
            "rc", "pass", "nproc", "entry", "vcpu_entry_s", "note", "variant", "seccomp"]

    def tsv_line(r):
        return "\t".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k in keys) + "\n"

    n = len(variants)
    done_runs = set()
    if a.resume and os.path.exists(a.out) and os.path.getsize(a.out) > 0:
        # A nested host that died mid-run: keep the runs it finished, repeat the others whole,
        # so that every run counted still has every variant from one host session.
        with open(a.out) as f:
            lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
        old = [dict(zip(lines[0], l)) for l in lines[1:]]
        count = {}
        for r in old:
            if r["run"] != "-1":
                count[r["run"]] = count.get(r["run"], 0) + 1
        done_runs = {int(k) for k, c in count.items() if c == n}
        dropped = sorted({int(r["run"]) for r in old if r["run"] != "-1"} - done_runs)
        with open(a.out, "w") as f:
            f.write("\t".join(keys) + "\n")
            for r in old:
                if r["run"] == "-1" or int(r["run"]) in done_runs:
                    f.write("\t".join(r.get(k, "") for k in keys) + "\n")
        for i in dropped:
            msg = (f"==== run {i}: {count[str(i)]} of its {n} boots were done when the previous "
                   f"nested host session ended; they are dropped and run {i} is repeated whole\n")
            print(msg, end="", file=sys.stderr, flush=True)
            if failf:
                failf.write(msg)
    else:
        with open(a.out, "w") as f:
            f.write("\t".join(keys) + "\n")
            for (vmm, fmt), why in NOT_RUN.items():
                if vmm not in vmms or fmt not in formats:
                    continue
                for fl in flavours:
                    f.write(tsv_line({"vmm": vmm, "kernel": fl["name"], "format": fmt, "run": -1,
                                      "init_wall_s": float("nan"), "init_s": float("nan"),
                                      "done_s": float("nan"), "exit_wall_s": float("nan"), "rc": "",
                                      "pass": 0, "nproc": 0, "entry": "",
                                      "vcpu_entry_s": float("nan"), "note": why,
                                      "variant": "", "seccomp": ""}))
    tsv = open(a.out, "a")  # a row as soon as it is measured: a dying host loses one boot
    for i in range(a.runs):
        if i in done_runs:
            continue
        # Rotate by i, and reverse every other round of n runs: each variant comes early and
        # late alike, after each other one. (Reversing every other run instead undoes the
        # rotation for an even n: with two variants the same one would always go first.)
        order = variants[i % n:] + variants[:i % n]
        if (i // n) % 2:
            order.reverse()
        for flav, vmm, fmt, var in order:
            cmd = variant_cmd(a, flav, vmm, fmt, extras.get(var, []))
            label = f"{vmm}{' ' + var if var else ''} {flav['name']} {fmt}"
            if a.progress:
                with open(a.progress, "w") as pf:
                    pf.write(f"{label} run {i}\n")
            rc, wall, out, seen = run(cmd, timeout=a.timeout, marks={"init": INIT_LINE},
                                      on_mark=seccomp_threads)
            entry = ""
            if vmm == "minivmm":
                m = re.search(r"minivmm: info: kernel: ([^,\n]+), entry (0x[0-9a-f]+)", out)
                entry = f"{m.group(1)} {m.group(2)}" if m else "?"
            ok = "status=pass" in out and rc == 0
            nproc = re.search(r"MINIVMM-RESULT nproc=(\d+)", out)
            row = {"vmm": vmm, "kernel": flav["name"], "format": fmt, "run": i,
                   "init_wall_s": seen.get("init", float("nan")),
                   "init_s": fnum(r"MINIVMM-RESULT init=start uptime=([0-9.]+)", out),
                   "done_s": fnum(r"MINIVMM-RESULT scenario=\S+ status=\S+ rc=\d+ uptime=([0-9.]+)", out),
                   "exit_wall_s": wall, "rc": rc, "pass": int(ok),
                   "nproc": int(nproc.group(1)) if nproc else 0,
                   "entry": entry.replace(" ", "_"),
                   # minivmm only: main() to the boot vCPU's first KVM_RUN (kernel loaded).
                   "vcpu_entry_s": fnum(r"vCPU 0 entered the guest at ([0-9.]+) ms", out) / 1000,
                   "note": "", "variant": var, "seccomp": seen.get("init:probe", "")}
            if rc < 0 or wall >= a.timeout:
                row["note"] = f"killed_after_{a.timeout}s"
            tsv.write(tsv_line(row))
            tsv.flush()
            print(label, i, row, file=sys.stderr, flush=True)
            if logf:
                logf.write(f"==== {label} run {i}: {' '.join(cmd)}\n{out}\n")
                logf.flush()
            if failf and not ok:
                tail = "\n".join(out.rstrip().splitlines()[-25:])
                failf.write(f"==== {label} run {i}: exit status {rc}"
                            f"{' (killed after %d s)' % a.timeout if row['note'] else ''}, "
                            f"/init {'reached' if 'init' in seen else 'not reached'}, "
                            f"scenario {'passed' if 'status=pass' in out else 'did not pass'}\n"
                            f"$ {' '.join(cmd)}\n{tail}\n")
                failf.flush()
    tsv.close()
    if a.progress and os.path.exists(a.progress):
        os.remove(a.progress)
    if stage:
        shutil.rmtree(stage, ignore_errors=True)

# smp-flake -------------------------------------------------------------------------------
def wilson(k, n, z=1.959964):
    """95 % Wilson score interval of k successes in n trials."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / d
    return (max(0.0, c - h), min(1.0, c + h))


def fisher_two_sided(a, b, c, d):
    """Fisher's exact test of the 2x2 table [[a, b], [c, d]]: two-sided p, the sum of the
    probabilities of every table with these margins no more likely than the one seen."""
    from math import comb
    r1, c1, n = a + b, a + c, a + b + c + d
    def prob(x):
        return comb(r1, x) * comb(n - r1, c1 - x) / comb(n, c1)
    p0 = prob(a)
    return min(1.0, sum(prob(x) for x in range(max(0, c1 - (n - r1)), min(r1, c1) + 1)
                        if prob(x) <= p0 * (1 + 1e-9)))


def flake_stats(tsv):
    """The failure counts of an smp-flake TSV: a boot fails if /init was not reached."""
    with open(tsv) as f:
        lines = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    rows = [dict(zip(lines[0], l)) for l in lines[1:] if l and l[3] != "-1"]
    res = {}
    for vmm in ("minivmm", "qemu-microvm"):
        mine = [r for r in rows if r["vmm"] == vmm]
        fails = sum(1 for r in mine if r["init_wall_s"] == "nan")
        late = sum(1 for r in mine if r["init_wall_s"] != "nan" and r["pass"] != "1")
        res[vmm] = (len(mine), fails, late)
    out = []
    for vmm, (n, k, late) in res.items():
        lo, hi = wilson(k, n)
        out.append(f"{vmm}: {k} of {n} boots did not reach /init ({100 * k / n if n else float('nan'):.1f} %, "
                   f"95 % Wilson {100 * lo:.1f}-{100 * hi:.1f} %); {late} more reached it and then did not pass")
    (n1, k1, _), (n2, k2, _) = res["minivmm"], res["qemu-microvm"]
    out.append(f"Fisher's exact test, two-sided (minivmm {k1}/{n1} vs QEMU {k2}/{n2}): "
               f"p = {fisher_two_sided(k1, n1 - k1, k2, n2 - k2):.4f}")
    return "\n".join(out) + "\n"


def smp_flake(argv):
    """The SMP flake without ACPI: minivmm --no-acpi --virtio-cmdline and QEMU -M
    microvm,acpi=off boot the same kernel (a bzImage) on --cpus vCPUs, interleaved, --runs
    times each; the rest as boot-formats (TSV, --log, --failures, --stage, --progress,
    --resume). A boot fails if it does not reach /init within --timeout s; the counts,
    their Wilson intervals and Fisher's test go to stdout and to --stats."""
    ap = argparse.ArgumentParser(prog="guest_run.py smp-flake")
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--timeout", type=int, default=60)
    ap.add_argument("--stats")
    a, rest = ap.parse_known_args(argv)
    spec = f"minimal,bzimage={a.kernel},vmlinux={a.kernel},initrd={a.initrd},acpi=off,cpus={a.cpus}"
    boot_formats(rest + ["--flavour", spec, "--timeout", str(a.timeout), "--formats", "bzImage"],
                 prog="guest_run.py smp-flake")
    out = rest[rest.index("--out") + 1]
    text = flake_stats(out)
    print(text, end="")
    if a.stats:
        with open(a.stats, "w") as f:
            f.write(text)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "boot-formats":
        return boot_formats(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "smp-flake":
        return smp_flake(sys.argv[2:])
    if len(sys.argv) > 2 and sys.argv[1] == "flake-stats":
        return print(flake_stats(sys.argv[2]), end="")
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["boot", "blk"])
    ap.add_argument("--minivmm", required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--disk")
    ap.add_argument("--scratch")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log")
    ap.add_argument("--kernel-name", default="cloud")
    ap.add_argument("--no-acpi", action="store_true")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--append", action="store_true")
    a = ap.parse_args()
    vmms = {"minivmm": minivmm_cmd, "qemu-microvm": qemu_cmd}
    rows = []
    logf = open(a.log, "a") if a.log else None
    for i in range(a.runs):
        order = list(vmms) if i % 2 == 0 else list(reversed(vmms))
        for name in order:
            if a.what == "boot":
                cmd = vmms[name](a, [(a.disk, "minidisk")], "smoke")
                rc, wall, out = run(cmd)
                row = {"init_s": fnum(r"MINIVMM-RESULT init=start uptime=([0-9.]+)", out),
                       "done_s": fnum(r"MINIVMM-RESULT scenario=\S+ status=\S+ rc=\d+ uptime=([0-9.]+)", out),
                       "wall_s": wall,
                       "pass": int("status=pass" in out),
                       "nproc": int(m.group(1)) if (m := re.search(r"MINIVMM-RESULT nproc=(\d+)", out)) else 0}
            else:
                cmd = vmms[name](a, [(a.disk, "minidisk"), (a.scratch, "scratch")], "shell")
                cmds = []
                for key, c in DD_CMDS:
                    # busybox dd prints no timing: guest uptime before and after (10 ms).
                    cmds.append(f"t0=$(cut -d' ' -f1 /proc/uptime); {c}; "
                                f"echo BENCH-{key} $t0 $(cut -d' ' -f1 /proc/uptime)")
                rc, wall, out = run(cmd, send_after="minivmm guest shell", commands=cmds)
                row = {}
                for key, c in DD_CMDS:
                    m = re.search(rf"^BENCH-{key} ([0-9.]+) ([0-9.]+)", out, re.M)
                    mib = MIB[key]
                    dt = float(m.group(2)) - float(m.group(1)) if m else 0.0
                    row[key + "_mbps"] = mib * 1.048576 / dt if dt > 0 else float("nan")
                row["wall_s"] = wall
            row.update({"vmm": name, "kernel": a.kernel_name, "run": i, "rc": rc})
            rows.append(row)
            print(name, i, row, file=sys.stderr, flush=True)
            if logf:
                logf.write(f"==== {name} {a.kernel_name} run {i}: {' '.join(cmd)}\n{out}\n")
                logf.flush()
    keys = ["vmm", "kernel", "run"] + [k for k in rows[0] if k not in ("vmm", "kernel", "run")]
    header = not (a.append and os.path.exists(a.out) and os.path.getsize(a.out) > 0)
    with open(a.out, "a" if a.append else "w") as f:
        if header:
            f.write("\t".join(keys) + "\n")
        for r in rows:
            f.write("\t".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                              for k in keys) + "\n")


if __name__ == "__main__":
    main()
