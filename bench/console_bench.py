#!/usr/bin/env python3
"""Console throughput: the guest floods a console, the host drains a pipe.

  console_bench.py --minivmm BIN --kernel K --initrd I --out F.tsv [--runs N]
                   [--hvc-size 16M] [--serial-size 256K] [--cpus 2] [--rows ROW,...]
                   [--log FILE] [--timeout S]

Rows (default all four): minivmm-hvc0, minivmm-ttyS0, qemu-hvc0, qemu-ttyS0. Each run boots
the VMM with the Linux guest's scenario console-flood (images/scenarios/console-flood),
which writes SIZE bytes of a fixed pattern in raw mode to /dev/hvc0 (virtio-console port 0)
or /dev/ttyS0 (the 16550 UART), framed by MINIVMM-FLOOD-BEGIN / -END lines, and reports its
own timing (guest /proc/uptime) on the kernel console. Runs where /dev/kvm boots Linux
(directly or inside the nested KVM host: bench/console.sh).

The VMM's stdout is a pipe (1 MiB, F_SETPIPE_SZ) that this process drains in 1 MiB reads and
counts. The flooded tty is the kernel's console (console=hvc0 / console=ttyS0), so init's
lines and the scenario's result come on the same stream, before BEGIN and after END; the
other one goes to a file (read after the run).
  minivmm hvc0:   --console stdio --serial file=F     QEMU: -device virtio-serial-device
                                                            -chardev stdio,id=c0
                                                            -device virtconsole,chardev=c0
                                                            -serial file:F
  minivmm ttyS0:  --serial stdio                      QEMU: -serial stdio (microvm isa-serial)
Both get the same kernel, initramfs, command line (console=TTY panic=-1 quiet ... reboot=k /
reboot=t: microvm has no i8042), vCPUs and 512 MiB, no disk.

Figures per run (TSV): bytes, what the guest wrote; received, the bytes between the
markers (fewer when the VMM dropped some); host_mbps, bytes from the BEGIN line's arrival to the N-th flood
byte's arrival on the pipe (MB/s = 10^6 bytes/s); guest_mbps, the guest's own timing;
cpu_ms_per_mib, the VMM process's CPU (utime + stime, /proc/PID/stat, all threads) over the
same interval per MiB; guest_ms_per_mib, the part of it spent running the guest (guest_time:
a vCPU thread in KVM_RUN, here including a guest spinning until the host takes its buffer);
sched_ms_per_mib, the same CPU from /proc/PID/task/*/schedstat (ns resolution, live threads);
virtio_irqs / serial_irqs, the guest's interrupts
from virtio devices / ttyS0 during the flood (/proc/interrupts; -1 if not reported); kmsgs,
the guest kernel's log lines meanwhile (soft lockups when the machine is overloaded);
run_cpu_s, the VMM's whole-run CPU (wait4 rusage); status, the scenario's verdict; rc, the
VMM's exit status; ok, 1 when exactly N bytes arrived
between the markers and every one was the pattern's; problem, why not (or -). Only ok runs
count in bench/report.py. Figures, not pass/fail.
"""
import argparse
import fcntl
import os
import re
import select
import subprocess
import sys
import tempfile
import time

BASE_APPEND = "panic=-1 quiet initcall_blacklist=cmos_init minivmm.wait=0"
BEGIN = re.compile(rb"MINIVMM-FLOOD-BEGIN bytes=(\d+)\r?\n")
END = b"\nMINIVMM-FLOOD-END\n"
ROWS = ["minivmm-hvc0", "minivmm-ttyS0", "qemu-hvc0", "qemu-ttyS0"]
F_SETPIPE_SZ = 1031
TICK = os.sysconf("SC_CLK_TCK")


def parse_size(s):
    s = s.strip().upper()
    mult = {"K": 1024, "M": 1 << 20}.get(s[-1:], 1)
    return int(s.rstrip("KM")) * mult


def expected_mib():
    return b"".join(b"minivmm-pattern-%015d\n" % i for i in range(32768))


def append(tty, size, vmm):
    return (f"console={tty} {BASE_APPEND} minivmm.scenario=console-flood minivmm.arg={tty}:{size} "
            f"{'reboot=k' if vmm == 'minivmm' else 'reboot=t'}")


def command(a, row, serial_file):
    vmm, tty = row.split("-")
    size = a.hvc_size if tty == "hvc0" else a.serial_size
    if vmm == "minivmm":
        cmd = [a.minivmm, "--kernel", a.kernel, "--initrd", a.initrd, "--memory", "512M",
               "--cpus", str(a.cpus), "--cmdline", append(tty, size, vmm)]
        if tty == "hvc0":
            cmd += ["--console", "stdio", "--serial", f"file={serial_file}"]
        else:
            cmd += ["--serial", "stdio"]
        return cmd
    cmd = ["qemu-system-x86_64", "-M", "microvm,acpi=on,rtc=off", "-accel", "kvm",
           "-cpu", "host", "-m", "512M", "-smp", str(a.cpus),
           "-kernel", a.kernel, "-initrd", a.initrd, "-append", append(tty, size, vmm),
           "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"]
    if tty == "hvc0":
        cmd += ["-serial", f"file:{serial_file}", "-device", "virtio-serial-device",
                "-chardev", "stdio,id=c0,signal=off", "-device", "virtconsole,chardev=c0"]
    else:
        cmd += ["-serial", "stdio"]
    return cmd


def proc_cpu(pid):
    """(utime + stime, guest_time) in seconds and the schedstat sum over live threads (s)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is field 3 (state): utime 14, stime 15, guest_time 43.
        ut, st, gt = int(fields[11]), int(fields[12]), int(fields[40])
        sched = 0
        for t in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                    sched += int(f.read().split()[0])
            except OSError:
                pass
        return (ut + st) / TICK, gt / TICK, sched / 1e9
    except (OSError, IndexError, ValueError):
        return float("nan"), float("nan"), float("nan")


def run(cmd, timeout):
    """Runs cmd with stdout on a pipe drained here; returns the measurements."""
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    errf = tempfile.TemporaryFile()
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=w, stderr=errf)
    os.close(w)
    chunks = []  # everything, for the checks after the run (16 MiB is cheap to keep)
    head = b""  # the stream up to the BEGIN line
    want = None  # N, from the BEGIN line
    got = 0  # flood bytes after the BEGIN line
    t_begin = t_end = None
    cpu_begin = cpu_end = None
    timed_out = False
    while True:
        left = timeout - (time.perf_counter() - t0)
        if left <= 0:
            timed_out = True
            p.kill()
            break
        ready, _, _ = select.select([r], [], [], min(left, 1.0))
        if not ready:
            continue
        chunk = os.read(r, 1 << 20)
        if not chunk:
            break
        now = time.perf_counter()
        if want is None:
            head += chunk
            m = BEGIN.search(head)
            if not m:
                continue
            t_begin, cpu_begin = now, proc_cpu(p.pid)
            want = int(m.group(1))
            rest = head[m.end():]
            head = head[:m.end()]
            chunk = rest
        chunks.append(chunk)
        got += len(chunk)
        if t_end is None and got >= want:
            t_end, cpu_end = now, proc_cpu(p.pid)
    os.close(r)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    errf.seek(0)
    stderr = errf.read().decode(errors="replace")
    flood = b"".join(chunks)
    return {"rc": p.returncode, "wall": time.perf_counter() - t0, "timed_out": timed_out,
            "head": head, "flood": flood, "want": want, "t_begin": t_begin, "t_end": t_end,
            "cpu_begin": cpu_begin, "cpu_end": cpu_end, "stderr": stderr,
            "run_cpu_s": ru.ru_utime + ru.ru_stime}


def first_mismatch(flood, pattern):
    """Index of the first byte of flood that is not the pattern (repeated every MiB), or None."""
    step = len(pattern)
    for off in range(0, len(flood), step):
        block = flood[off:off + step]
        if block != pattern[:len(block)]:
            lo, hi = 0, len(block)  # block[:lo] matches, block[:hi] does not
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if block[:mid] == pattern[:mid]:
                    lo = mid
                else:
                    hi = mid
            return off + lo
    return None


def measure(a, row, pattern):
    with tempfile.TemporaryDirectory() as d:
        serial_file = os.path.join(d, "serial.log")
        cmd = command(a, row, serial_file)
        m = run(cmd, a.timeout)
        serial = b""
        if os.path.exists(serial_file):
            with open(serial_file, "rb") as f:
                serial = f.read()
    want, flood = m["want"], m["flood"]
    # What is not flood: the UART file (hvc0 rows), the stream before BEGIN, after the flood.
    text = (serial + b"\n" + m["head"] + flood[want or 0:]).decode(errors="replace")
    nan = float("nan")
    end_at = flood.find(END)
    row_out = {"bytes": want or 0, "received": end_at if end_at >= 0 else len(flood),
               "host_mbps": nan, "guest_mbps": nan, "cpu_ms_per_mib": nan,
               "guest_ms_per_mib": nan, "sched_ms_per_mib": nan, "flood_s": nan,
               "run_cpu_s": m["run_cpu_s"], "wall_s": m["wall"], "ok": 0, "rc": m["rc"]}
    why = ""
    detail = b""  # the stream where it went wrong, for the log
    if want is None:
        why = "no MINIVMM-FLOOD-BEGIN on the stream"
    elif m["t_end"] is None:
        why = f"only {len(flood)} of {want} flood bytes arrived"
        detail = flood[-2048:]
    else:
        dt = m["t_end"] - m["t_begin"]
        mib = want / (1 << 20)
        (c0, g0, s0), (c1, g1, s1) = m["cpu_begin"], m["cpu_end"]
        row_out.update({"flood_s": dt, "host_mbps": want / dt / 1e6 if dt > 0 else nan,
                        "cpu_ms_per_mib": (c1 - c0) * 1e3 / mib,
                        "guest_ms_per_mib": (g1 - g0) * 1e3 / mib,
                        "sched_ms_per_mib": (s1 - s0) * 1e3 / mib})
        body_ok = flood[want:want + len(END)] == END
        bad = first_mismatch(flood[:want], pattern)
        row_out["ok"] = int(body_ok and bad is None)
        if bad is not None:
            why = f"the flood differs from the pattern at byte {bad}"
            if end_at >= 0 and end_at != want:
                why += f"; END marker after {end_at} bytes, not {want}"
            detail = flood[max(0, bad - 64):bad + 1024]
        elif not body_ok:
            why = f"END marker after {end_at} bytes, not {want}" if end_at >= 0 else "no END marker"
    g = re.search(r"MINIVMM-RESULT console-flood tty=\S+ bytes=(\d+) seconds=([0-9.]+)"
                  r"(?: virtio_irqs=(\d+) serial_irqs=(\d+))?(?: kmsgs=(-?\d+))?", text)
    row_out["virtio_irqs"] = row_out["serial_irqs"] = row_out["kmsgs"] = -1
    if g and float(g.group(2)) > 0:
        row_out["guest_mbps"] = int(g.group(1)) / float(g.group(2)) / 1e6
    if g and g.group(3):
        row_out["virtio_irqs"], row_out["serial_irqs"] = int(g.group(3)), int(g.group(4))
    if g and g.group(5):
        row_out["kmsgs"] = int(g.group(5))
    st = re.search(r"MINIVMM-RESULT scenario=console-flood status=(\w+)", text)
    row_out["status"] = st.group(1) if st else "none"
    if m["timed_out"]:
        why = (why + "; " if why else "") + f"killed after {a.timeout:.0f} s"
    if why and m["rc"] != 0:
        last = [l for l in m["stderr"].splitlines() if l.strip()][-1:]
        why += f"; VMM exit status {m['rc']}" + (f" ({last[0].strip()})" if last else "")
    elif why and row_out["status"] == "none" and not m["timed_out"]:
        why += ("; the VMM exited 0 with no scenario result: the guest reset (with reboot=t and "
                "-no-reboot QEMU ends on a triple fault)" if row.startswith("qemu") else
                "; the VMM exited 0 with no scenario result")
    if why:
        text += "\n---- the stream where it went wrong:\n" + detail.decode(errors="replace")
    row_out["problem"] = re.sub(r"\s+", " ", why) or "-"
    return row_out, cmd, text, m["stderr"], why


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minivmm", required=True)
    ap.add_argument("--kernel", required=True)
    ap.add_argument("--initrd", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--hvc-size", default="16M")
    ap.add_argument("--serial-size", default="256K")
    ap.add_argument("--cpus", type=int, default=2)
    ap.add_argument("--rows", default=",".join(ROWS))
    ap.add_argument("--timeout", type=float, default=600)
    ap.add_argument("--out", required=True)
    ap.add_argument("--log")
    a = ap.parse_args()
    rows = [r for r in a.rows.split(",") if r]
    for r in rows:
        if r not in ROWS:
            ap.error(f"unknown row {r} (rows: {', '.join(ROWS)})")
    pattern = expected_mib()
    logf = open(a.log, "a") if a.log else None
    keys = ["vmm", "tty", "run", "bytes", "received", "host_mbps", "guest_mbps", "cpu_ms_per_mib",
            "guest_ms_per_mib", "sched_ms_per_mib", "flood_s", "virtio_irqs", "serial_irqs", "kmsgs", "run_cpu_s",
            "wall_s", "ok", "status", "rc", "problem"]
    with open(a.out, "w") as out:
        out.write("\t".join(keys) + "\n")
        for i in range(a.runs):
            order = rows if i % 2 == 0 else list(reversed(rows))
            for row in order:
                res, cmd, text, stderr, why = measure(a, row, pattern)
                vmm, tty = row.split("-")
                res.update({"vmm": "qemu-microvm" if vmm == "qemu" else vmm, "tty": tty, "run": i})
                out.write("\t".join(f"{res[k]:.6g}" if isinstance(res[k], float) else str(res[k])
                                    for k in keys) + "\n")
                out.flush()
                print(f"{row} run {i}: host {res['host_mbps']:.2f} MB/s, guest "
                      f"{res['guest_mbps']:.2f} MB/s, CPU {res['cpu_ms_per_mib']:.1f} ms/MiB "
                      f"(guest {res['guest_ms_per_mib']:.1f}), ok={res['ok']}"
                      + (f" ({why})" if why else ""), file=sys.stderr, flush=True)
                if logf:
                    logf.write(f"==== {row} run {i}: {' '.join(cmd)}\n"
                               + (f"problem: {why}\n" if why else "")
                               + f"console without the flood bytes:\n{text[-20000:]}\n"
                               f"stderr:\n{stderr[-3000:]}\n")
                    logf.flush()


if __name__ == "__main__":
    main()
