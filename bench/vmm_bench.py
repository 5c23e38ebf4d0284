#!/usr/bin/env python3
"""Start-up time and memory overhead of minivmm next to QEMU -M microvm (figures, not tests).

  vmm_bench.py startup --minivmm BIN --guest BZIMAGE [--runs N] --out FILE.tsv
  vmm_bench.py memory  --minivmm BIN --guest BZIMAGE [--runs N] --out FILE.tsv

Both VMMs run the same image, tests/guest's test_guest.bzImage, with 128 MiB of RAM and one
vCPU. minivmm enters it at the 64-bit entry; QEMU microvm's firmware (qboot) enters it in real
mode at setup + 0x200, where the image has a 16-bit path that prints one line, writes the same
0x10/0x20/0x30 to port 0x80 and exits through isa-debug-exit (port 0xf4).

startup: per run, the harness records, from just before fork/exec (time.perf_counter):
  first_out_ms  the first byte the guest printed on its UART arrives on the harness's pipe
  exit_ms       the process has exited (waitpid)
and for minivmm also, from its own log (measured from main()):
  entry_ms       "vCPU 0 entered the guest at X ms": the first KVM_RUN of the boot vCPU
  first_exit_ms  "... first exit ... at Y ms": the guest's first exit back to the VMM; the
                 first guest instruction ran between the two
  progress_ms    "boot progress 0x10 at X ms", the guest's first port-0x80 write
With --floor, bench/kvm_floor.c runs too: the fewest KVM calls that run one guest instruction
(the machine's limit), logging the same line.

memory: the guest spins (minivmm-test=spin / QEMU without the exit device, where it halts);
after the first UART byte and a settle delay, /proc/PID/smaps_rollup and /proc/PID/smaps are
read; the guest RAM mapping (the largest mapping at least as big as guest RAM) is subtracted.
Reported: Rss and private (Private_Clean + Private_Dirty) in KiB, without guest RAM. Then
SIGTERM.
"""
import argparse
import os
import re
import select
import signal
import subprocess
import sys
import time

MEM_MIB = 128


def qemu_cmd(guest, spin):
    cmd = ["qemu-system-x86_64", "-M", "microvm", "-accel", "kvm",
           # PVM's KVM refuses MSR_IA32_ARCH_CAPABILITIES (0x10a) that -cpu host sets.
           "-cpu", "host,-arch-capabilities", "-m", f"{MEM_MIB}M", "-smp", "1",
           "-kernel", guest, "-append", "console=ttyS0",
           "-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
           "-no-reboot"]
    if not spin:
        cmd += ["-device", "isa-debug-exit,iobase=0xf4,iosize=1"]
    return cmd


def minivmm_cmd(binary, guest, spin):
    cmdline = "console=ttyS0 reboot=k panic=-1" + (" minivmm-test=spin" if spin else "")
    return [binary, "--kernel", guest, "--memory", f"{MEM_MIB}M", "--cpus", "1",
            "--cmdline", cmdline, "--serial", "stdio", "--log-level", "info"]


def launch(cmd):
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    return t0, p


def wait_first_byte(p, timeout=30.0):
    r, _, _ = select.select([p.stdout], [], [], timeout)
    if not r:
        return None
    b = os.read(p.stdout.fileno(), 1)
    return time.perf_counter() if b else None


def one_startup(cmd):
    t0, p = launch(cmd)
    t_first = wait_first_byte(p)
    out, err = p.communicate(timeout=60)
    t_exit = time.perf_counter()
    m = re.search(rb"boot progress 0x10 at ([0-9.]+) ms", err)
    e = re.search(rb"entered the guest at ([0-9.]+) ms; first exit .* at ([0-9.]+) ms", err)
    return {
        "entry_ms": float(e.group(1)) if e else float("nan"),
        "first_exit_ms": float(e.group(2)) if e else float("nan"),
        "first_out_ms": (t_first - t0) * 1e3 if t_first else float("nan"),
        "exit_ms": (t_exit - t0) * 1e3,
        "progress_ms": float(m.group(1)) if m else float("nan"),
        "rc": p.returncode,
    }


def smaps_figures(pid):
    rollup = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m:
                rollup[m.group(1)] = int(m.group(2))
    # Per mapping: size, Rss, private.
    maps = []
    cur = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                cur = {"head": line.strip(), "Size": 0, "Rss": 0, "Private": 0}
                maps.append(cur)
                continue
            m = re.match(r"(\w+):\s+(\d+) kB", line)
            if m and cur is not None:
                k, v = m.group(1), int(m.group(2))
                if k in ("Size", "Rss"):
                    cur[k] = v
                elif k in ("Private_Clean", "Private_Dirty"):
                    cur["Private"] += v
    ram = [m for m in maps if m["Size"] >= MEM_MIB * 1024]
    ram_rss = sum(m["Rss"] for m in ram)
    ram_priv = sum(m["Private"] for m in ram)
    private = rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0)
    return {
        "rss_kib": rollup.get("Rss", 0) - ram_rss,
        "private_kib": private - ram_priv,
        "guest_ram_rss_kib": ram_rss,
        "total_rss_kib": rollup.get("Rss", 0),
    }


def one_memory(cmd, settle=1.0):
    t0, p = launch(cmd)
    try:
        if wait_first_byte(p) is None:
            raise RuntimeError("no guest output")
        time.sleep(settle)
        fig = smaps_figures(p.pid)
    finally:
        p.send_signal(signal.SIGTERM)
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
    fig["rc"] = p.returncode
    return fig


def floor_breakdown(a):
    """kvm_floor without an irqchip, and with the irqchip + PIT created before / after the
    memory slot: where KVM's own start-up and teardown time goes on this host."""
    pat = re.compile(rb"memory slot ([0-9.]+) ms, vCPU ([0-9.]+) ms, first guest exit ([0-9.]+) "
                     rb"ms, halt ([0-9.]+) ms, close VM ([0-9.]+) ms")
    rows = []
    for i in range(a.runs):
        for variant in ("none", "before", "after"):
            env = dict(os.environ)
            if variant != "none":
                env["KVM_FLOOR_IRQCHIP"] = variant
            t0 = time.perf_counter()
            r = subprocess.run([a.floor, str(MEM_MIB)], env=env, capture_output=True, timeout=30)
            wall = (time.perf_counter() - t0) * 1e3
            m = pat.search(r.stderr)
            nan = float("nan")
            rows.append({"vmm": f"irqchip-{variant}", "run": i,
                         "slot_ms": float(m.group(1)) if m else nan,
                         "first_exit_ms": float(m.group(3)) if m else nan,
                         "closed_ms": float(m.group(5)) if m else nan,
                         "exit_ms": wall})
    write_rows(a.out, rows)


def write_rows(path, rows):
    keys = ["vmm", "run"] + [k for k in rows[0] if k not in ("vmm", "run")]
    with open(path, "w") as f:
        f.write("\t".join(keys) + "\n")
        for r in rows:
            f.write("\t".join(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k])
                              for k in keys) + "\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["startup", "memory", "floor"])
    ap.add_argument("--minivmm", required=True)
    ap.add_argument("--guest", required=True)
    ap.add_argument("--floor", help="kvm_floor binary (bench/kvm_floor.c): start-up only")
    ap.add_argument("--runs", type=int, default=15)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    vmms = {
        "minivmm": lambda spin: minivmm_cmd(a.minivmm, a.guest, spin),
        "qemu-microvm": lambda spin: qemu_cmd(a.guest, spin),
    }
    if a.what == "floor":
        return floor_breakdown(a)
    if a.floor and a.what == "startup":
        vmms["kvm-floor"] = lambda spin: [a.floor, str(MEM_MIB)]
    rows = []
    for i in range(a.runs):
        # Alternate the order so that neither always runs on a cache the other warmed.
        order = list(vmms) if i % 2 == 0 else list(reversed(vmms))
        for name in order:
            if a.what == "startup":
                fig = one_startup(vmms[name](False))
            else:
                fig = one_memory(vmms[name](True))
            fig["vmm"] = name
            fig["run"] = i
            rows.append(fig)
            print(name, i, fig, file=sys.stderr)
    write_rows(a.out, rows)

if __name__ == "__main__":
    main()
