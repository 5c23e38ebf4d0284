#!/usr/bin/env python3
"""Linux guest boots and block I/O in the guest, minivmm next to QEMU -M microvm.

Runs where /dev/kvm can boot Linux (directly, or inside the nested KVM host: see
bench/linux-guest.sh, which prepares the inputs and calls this). Both VMMs get the same
kernel, initramfs, disk image and kernel command line (except reboot=k / reboot=t: microvm
has no i8042), vCPUs (--cpus, default 2) and 512 MiB.

  guest_run.py boot  --minivmm BIN --kernel K --initrd I --disk D [--runs N] --out F.tsv
                     [--kernel-name NAME] [--no-acpi] [--cpus N] [--append]
  guest_run.py blk   --minivmm BIN --kernel K --initrd I --scratch S [--runs N] --out F.tsv

--kernel-name labels the rows (TSV column "kernel", default cloud). --no-acpi is for a
kernel that finds its devices on the command line (the minimal kernel): minivmm gets
--no-acpi --virtio-cmdline, microvm acpi=off (it appends virtio_mmio.device= itself), and
both end through a reboot (minivmm.exit=reboot: without ACPI there is no power-off).
--append adds rows to an existing TSV instead of replacing it.

boot: scenario smoke; per run: init_s (guest uptime at /init, MINIVMM-RESULT init=start),
  done_s (scenario finished, guest uptime) and wall_s (exec to exit).
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
import subprocess
import sys
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


def run(cmd, send_after=None, commands=(), timeout=300):
    """Runs cmd; when send_after appears on the console, writes commands to its stdin."""
    t0 = time.perf_counter()
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
        if not sent and send_after.encode() in out:
            sent = True
            for c in commands:
                p.stdin.write((c + "\n").encode())
            # Let the console drain: output still queued when the shell exits is lost.
            p.stdin.write(b"sleep 1; exit\n")
            p.stdin.flush()
    p.wait()
    return p.returncode, time.perf_counter() - t0, out.decode(errors="replace")


def fnum(pattern, text):
    m = re.search(pattern, text)
    return float(m.group(1)) if m else float("nan")


def main():
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
