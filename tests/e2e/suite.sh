#!/usr/bin/env bash
# suite.sh — the end-to-end cases; run by run-e2e.sh where Linux-capable KVM is
# (directly, or inside the nested host through images/with-kvm.sh). All inputs are
# prepared by run-e2e.sh; this script only boots guests and checks results.
#
# suite.sh --minivmm BIN --kernel VMLINUZ --initrd CPIO --disk-template IMG --run-dir DIR
#          (--minimal-kernel BZIMAGE --minimal-initrd CPIO | --minimal-skip REASON)
#          [--port-client BIN]  (tests/e2e/port-client: the host end of the named-port case)
#          [--vmlinux ELF]      (the cloud kernel as an ELF vmlinux, for the vmlinux case)
#          [--vsock-io BIN]     (images/helpers/vsock-io.c built for this host: the host end
#                               of the net and vsock cases; else built here with cc)
#
# DIR must be writable here (inside the nested host: under the images cache or a
# MINIVMM_NESTED_RW dir). Every boot is a new minivmm process under `timeout`
# (MINIVMM_E2E_BOOT_TIMEOUT, default 120 s) with the console in DIR/<boot>.console
# and the VMM log in DIR/<boot>.vmm. The guest runs the `e2e` scenario
# (images/scenarios/e2e) and reports "MINIVMM-RESULT key=value" lines.
# Prints "e2e: <case> ok|FAIL: <why>|SKIPPED: <why>" per case and a summary line;
# exits 1 if any case failed. MINIVMM_E2E_ONLY="case1 case2" runs a subset.
set -uo pipefail

die() { echo "e2e: error: $*" >&2; exit 2; }
vmm="" kernel="" initrd="" template="" run="" mkernel="" minitrd="" mskip="" port_client="" vmlinux=""
kernel_modules="" vsock_io_arg=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --minivmm) vmm="$2"; shift 2 ;;
    --kernel) kernel="$2"; shift 2 ;;
    --initrd) initrd="$2"; shift 2 ;;
    --disk-template) template="$2"; shift 2 ;;
    --run-dir) run="$2"; shift 2 ;;
    --minimal-kernel) mkernel="$2"; shift 2 ;;
    --minimal-initrd) minitrd="$2"; shift 2 ;;
    --minimal-skip) mskip="$2"; shift 2 ;;
    --port-client) port_client="$2"; shift 2 ;;
    --vmlinux) vmlinux="$2"; shift 2 ;;
    --kernel-modules) kernel_modules="$2"; shift 2 ;;
    --vsock-io) vsock_io_arg="$2"; shift 2 ;;
    # The cases (MINIVMM_E2E_ONLY names) in the order they run: the top-level "if selected".
    --list-cases) sed -n 's/^if \(selected .*\); then$/\1/p' "$0" | grep -oE 'selected [A-Za-z0-9_-]+' | cut -d' ' -f2 | awk '!seen[$0]++'; exit 0 ;;
    *) die "unknown argument '$1'" ;;
  esac
done
for v in vmm kernel initrd template run; do [[ -n ${!v} ]] || die "--${v/template/disk-template} missing"; done
[[ -x $vmm ]] || die "$vmm is not executable"
[[ -w $run ]] || die "run dir $run is not writable here"
[[ -c /dev/kvm ]] || die "no /dev/kvm here"
boot_timeout="${MINIVMM_E2E_BOOT_TIMEOUT:-120}"
base_cmdline="console=ttyS0 reboot=k panic=-1 quiet initcall_blacklist=cmos_init"
# A scratch dir on a local filesystem (host /tmp, or the nested host's tmpfs):
# hole punching (discard) works there, unlike on 9p.
local_tmp="$(mktemp -d "${TMPDIR:-/tmp}/minivmm-e2e.XXXXXX")"
trap 'rm -rf "$local_tmp"' EXIT

passed=0 failed=0 skipped=0
failed_names=()
cur="" why=() cur_log="" guest_crash=""
t_suite=$SECONDS

# --- helpers -----------------------------------------------------------------
# Progress for run-e2e.sh, which reruns an interrupted suite (nested host wedged) in a
# fresh nested host: DIR/results gets "<case> <long name> ok|FAIL|SKIPPED" per finished
# case, DIR/progress "boot <name> <case>" per boot. <case> is the MINIVMM_E2E_ONLY name:
# the last `selected X` that was true, i.e. the block's `if selected X`.
sel_last=""
record() { local f="$run/$1"; shift; echo "$*" >>"$f" 2>/dev/null || true; }  # record FILE WORDS...
# hang_report PID: what minivmm's threads are doing in the kernel (a hang, not a wedge).
hang_report() {
  local t n=0
  for t in /proc/"$1"/task/*; do
    [[ -d $t ]] || continue
    n=$((n + 1))
    echo "  thread $(basename "$t") $(cat "$t/comm" 2>/dev/null) $(grep -m1 '^State:' "$t/status" 2>/dev/null) wchan=$(cat "$t/wchan" 2>/dev/null)"
    sed 's/^/    /' "$t/stack" 2>/dev/null || echo "    (no $t/stack: $(id -un) cannot read it)"
  done
  ((n > 0)) || echo "  (no threads left: it was exiting just then)"
}
# boot NAME MINIVMM-ARGS...: one fresh minivmm process; sets $status, $log, $boot_s.
# The console log is the UART's (--serial file=); with boot_stdout=1 it is minivmm's stdout
# instead, and the UART is off (--serial null): for the virtio console on stdio.
# Past MINIVMM_E2E_BOOT_TIMEOUT its threads' kernel stacks are printed, then it is
# stopped (TERM, KILL 10 s later) and $status is 124, as `timeout` would give.
boot() {
  local name="$1"; shift
  log="$run/$name.console"
  local t0 pid wd
  t0="$(date +%s.%N)"
  record progress "boot $name $sel_last"
  rm -f "$run/$name.hang"
  if [[ ${boot_stdout:-0} == 1 ]]; then
    "$vmm" --serial null --log-level info "$@" </dev/null >"$log" 2>"$run/$name.vmm" &
  else
    "$vmm" --serial "file=$log" --log-level info "$@" </dev/null >"$run/$name.vmm" 2>&1 &
  fi
  pid=$!
  (
    for ((i = 0; i < boot_timeout; i++)); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
    { echo "e2e:   boot $name: minivmm (pid $pid) still running after ${boot_timeout}s (MINIVMM_E2E_BOOT_TIMEOUT); kernel stacks of its threads:"
      hang_report "$pid"; } >"$run/$name.hang" 2>&1
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < 10; i++)); do kill -0 "$pid" 2>/dev/null || exit 0; sleep 1; done
    kill -KILL "$pid" 2>/dev/null
  ) &
  wd=$!
  wait "$pid"
  status=$?
  kill "$wd" 2>/dev/null
  wait "$wd" 2>/dev/null
  if [[ -s $run/$name.hang ]]; then
    status=124
    cat "$run/$name.hang" >&2
  fi
  boot_s="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
  cur_log="$log"
  # The two ways the nested host's emulated SVM has broken guests (README "Known issues"):
  # a triple fault, and a hang with a vCPU thread running (not halted) at the timeout.
  if grep -q "the guest crashed: triple fault" "$run/$name.vmm" 2>/dev/null; then
    guest_crash="boot $name: the guest triple-faulted"
  elif [[ -s $run/$name.hang ]] && grep -qE "^  thread [0-9]+ vcpu[0-9]+ State:[[:space:]]+R" "$run/$name.hang"; then
    guest_crash="boot $name: hung with a vCPU running"
  fi
  echo "e2e:   boot $name: minivmm exit $status in ${boot_s}s" >&2
}
# res KEY: the value of the last "MINIVMM-RESULT ... KEY=value" in the current log.
res() {
  tr -d '\r' <"$cur_log" 2>/dev/null | awk -v k="$1" '
    /MINIVMM-RESULT / { for (i = 1; i <= NF; i++) { p = index($i, "="); if (p && substr($i, 1, p - 1) == k) v = substr($i, p + 1) } }
    END { print v }'
}
selected() { [[ -z ${MINIVMM_E2E_ONLY:-} || " $MINIVMM_E2E_ONLY " == *" $1 "* ]] && sel_last="$1"; }
begin() { cur="$1"; why=(); guest_crash=""; }
fail() { why+=("$*"); }
expect() {  # expect WHAT WANT GOT
  [[ "$3" == "$2" ]] || fail "$1: want '$2', got '${3:-<none>}'"
}
expect_status() { expect "minivmm exit status" "$1" "$status"; }
expect_res() { expect "$1" "$2" "$(res "$1")"; }
expect_grep() {  # expect_grep WHAT REGEX: the console must contain REGEX
  grep -aEq "$2" "$cur_log" || fail "$1: console has no /$2/"
}
end() {
  if [[ -n ${MINIVMM_E2E_DEBUG_CRASH:-} && $MINIVMM_E2E_DEBUG_CRASH == "$sel_last" ]]; then
    fail "MINIVMM_E2E_DEBUG_CRASH: a simulated guest crash (test aid)"
    guest_crash="simulated by MINIVMM_E2E_DEBUG_CRASH"
  fi
  if [[ ${#why[@]} -eq 0 ]]; then
    echo "e2e: $cur ok"
    record results "$sel_last $cur ok"
    passed=$((passed + 1))
  else
    local IFS=';'
    echo "e2e: $cur FAIL: ${why[*]# }"
    if [[ -n $guest_crash && ${MINIVMM_IN_NESTED_HOST:-0} == 1 ]]; then
      # run-e2e.sh reruns such a case once, in a fresh nested host.
      echo "e2e: $cur: a guest crash in the nested KVM host ($guest_crash)"
      record results "$sel_last $cur RETRY"
    else
      record results "$sel_last $cur FAIL"
    fi
    failed=$((failed + 1))
    failed_names+=("$cur")
    if [[ -n $cur_log ]]; then
      echo "---- tail of $cur_log"
      tr -d '\r' <"$cur_log" | tail -n 25
      echo "---- tail of ${cur_log%.console}.vmm"
      tail -n 10 "${cur_log%.console}.vmm"
      echo "----"
    fi
  fi
}
skip() {  # skip CASE REASON
  echo "e2e: $1 SKIPPED: $2"
  record results "$sel_last $1 SKIPPED"
  skipped=$((skipped + 1))
}
# pattern TAG KIB: the bytes images/scenarios/e2e writes for TAG.
pattern() { awk -v t="$1" -v n="$(($2 * 32))" 'BEGIN { for (i = 0; i < n; i++) printf "e2e-%-11s-%015d\n", t, i }'; }
sha() { sha256sum | cut -d' ' -f1; }
host_range() { dd if="$1" bs=1024 skip="$2" count="$3" 2>/dev/null; }  # FILE OFF_KIB LEN_KIB
sectors() { echo $(($(stat -c %s "$1") / 512)); }
new_disk() {  # new_disk FILE: a fresh writable copy of the ext4 template
  cp --sparse=always "$template" "$1" && chmod 644 "$1"
}
scratch() { rm -f "$1"; truncate -s "$2" "$1"; }  # FILE SIZE
cmdline() { echo "$base_cmdline minivmm.scenario=e2e minivmm.arg=$1 ${2:-}"; }

echo "e2e: minivmm $vmm; kernel $kernel; run dir $run; $([[ ${MINIVMM_IN_NESTED_HOST:-0} == 1 ]] && echo "nested KVM host" || echo "direct KVM")"

# --- 1 + 2: CPUs, memory; the ACPI-described virtio-blk disk ------------------
if selected boot || selected disk || selected rng; then
  new_disk "$run/root.img"
  boot basic --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
    --disk "path=$run/root.img,serial=e2e-root" --cmdline "$(cmdline info,fsverify:vda,rng)"
  if selected boot; then
    begin boot-cpus-memory
    expect_status 0
    expect_grep "init" "MINIVMM-RESULT init=start"
    expect_res nproc 2
    expect_res cpus_online 0-1
    mem="$(res memtotal_kb)"
    if [[ ! $mem =~ ^[0-9]+$ ]] || ((mem < 440 * 1024 || mem > 512 * 1024)); then
      fail "MemTotal ${mem:-<none>} kB not within 440-512 MiB"
    fi
    expect_grep "power-off" "MINIVMM-RESULT exit=poweroff"
    end
  fi
  if selected disk; then
    begin disk-acpi-virtio-blk
    expect_status 0
    expect_res modules ok
    expect_res disks vda
    expect_res acpi_virtio_mmio 3  # the disk, the rng, the console (minivmm.exit)
    expect_res vda.size_sectors "$(sectors "$run/root.img")"
    expect_res vda.serial e2e-root
    expect_res vda.ro 0
    expect_res fs-verify.manifest ok
    expect_res fs-verify.pattern ok
    expect_res status pass
    end
  fi
  if selected rng; then
    # virtio-rng is on by default; the initramfs loads virtio-rng.
    begin virtio-rng
    expect_status 0
    [[ $(res rng.current) == virtio_rng* ]] || fail "rng_current: want virtio_rng.N, got '$(res rng.current)'"
    expect_res rng.read_bytes 65536
    nz="$(res rng.nonzero)"  # random bytes: about 1 in 256 is zero
    [[ $nz =~ ^[0-9]+$ ]] && ((nz > 64000)) || fail "only ${nz:-<none>} of 65536 bytes from /dev/hwrng were not zero"
    expect_res acpi_virtio_mmio 3  # the disk, the rng, the console (minivmm.exit)
    end
  fi
fi

# --- 3: written in one boot, read back by the next minivmm process + host ------
if selected persist; then
  begin persist-across-boots
  scratch "$run/persist.img" 32M
  off=3076 len=512  # KiB: not MiB-aligned, past the first few MiB
  want="$(pattern persist "$len" | sha)"
  boot persist-write --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
    --disk "path=$run/persist.img,serial=e2e-persist" --cmdline "$(cmdline write:vda:$off:$len:persist)"
  expect_status 0
  expect_res "write.vda.$off" ok
  expect "host file bytes after boot 1" "$want" "$(host_range "$run/persist.img" "$off" "$len" | sha)"
  # (no process substitution: the nested host has no /dev/fd)
  pattern persist "$len" >"$local_tmp/want"
  host_range "$run/persist.img" "$off" "$len" >"$local_tmp/got"
  cmp -s "$local_tmp/want" "$local_tmp/got" ||
    fail "cmp: host file differs from the pattern at ${off} KiB: $(cmp "$local_tmp/want" "$local_tmp/got" 2>&1 | head -n1)"
  expect "host bytes before the range" 0 "$(host_range "$run/persist.img" 0 "$off" | tr -d '\000' | wc -c)"
  boot persist-read --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
    --disk "path=$run/persist.img,serial=e2e-persist" --cmdline "$(cmdline read:vda:$off:$len)"
  expect_status 0
  expect_res "read.vda.$off" "$want"
  expect_res status pass
  end
fi

# --- 4: read-only disk (with --rng off: the guest then has no hardware RNG) -------
if selected readonly || selected rng-off; then
  new_disk "$run/ro.img"
  before="$(sha <"$run/ro.img")"
  boot readonly --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M --rng off \
    --disk "path=$run/ro.img,readonly=on,serial=e2e-ro" --cmdline "$(cmdline info,rowrite:vda,fsverify:vda,rng)"
  if selected readonly; then
    begin readonly-disk
    expect_status 0
    expect_res vda.ro 1
    expect_res vda.serial e2e-ro
    expect_res rowrite.vda refused
    expect_res fs-verify.manifest ok
    expect "host sha256 after the boot" "$before" "$(sha <"$run/ro.img")"
    end
  fi
  if selected rng-off; then
    begin rng-off
    expect_status 0
    expect_res acpi_virtio_mmio 2  # the disk and the console (minivmm.exit)
    expect_res rng.current none
    expect_res rng.read_bytes 0
    end
  fi
fi

# --- 5: three disks, discard, concurrent writers on 2 vCPUs ---------------------
if selected multi; then
  begin multi-disk-discard-parallel
  new_disk "$run/multi-root.img"
  scratch "$run/multi-par.img" 32M
  scratch "$local_tmp/multi-discard.img" 16M
  plen=1024  # KiB per writer (patterns are made by awk in the guest: slow nested)
  boot multi --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
    --disk "path=$run/multi-root.img,serial=e2e-root" \
    --disk "path=$run/multi-par.img,serial=e2e-parallel" \
    --disk "path=$local_tmp/multi-discard.img,serial=e2e-discard" \
    --cmdline "$(cmdline info,fsverify:vda,discard:vdc:1024:1024,parallel:vdb:1024:$plen:par)"
  expect_status 0
  expect_res disks vda,vdb,vdc
  expect_res acpi_virtio_mmio 5  # three disks, the rng and the console
  expect_res vda.serial e2e-root
  expect_res vdb.serial e2e-parallel
  expect_res vdc.serial e2e-discard
  expect_res vdb.size_sectors "$(sectors "$run/multi-par.img")"
  expect_res vdc.size_sectors "$(sectors "$local_tmp/multi-discard.img")"
  expect_res fs-verify.manifest ok
  expect_res discard.vdc zeroes
  expect_res parallel.vdb ok
  expect_res writers 2
  want="$( { pattern par.0 "$plen"; pattern par.1 "$plen"; } | sha)"
  expect "guest sha256 of the parallel range" "$want" "$(res sha256)"
  expect "host sha256 of the parallel range" "$want" "$(host_range "$run/multi-par.img" 1024 $((2 * plen)) | sha)"
  expect "host discarded range is zero" 0 "$(host_range "$local_tmp/multi-discard.img" 1024 1024 | tr -d '\000' | wc -c)"
  expect_res status pass
  end
fi

# --- 6: how the guest ends -> exit status ---------------------------------------
if selected reboot; then
  begin guest-reboot-exit-0
  new_disk "$run/reboot.img"
  boot reboot --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
    --disk "path=$run/reboot.img,serial=e2e-reboot" --cmdline "$(cmdline info minivmm.exit=reboot)"
  expect_status 0
  expect_res status pass
  expect_grep "reboot requested" "MINIVMM-RESULT exit=reboot"
  end
fi
if selected panic; then
  # pvpanic (on by default; the initramfs loads pvpanic-mmio): a panic ends the VM at once
  # with status 5, whether Linux would reboot (panic=-1, in the base command line) or wait
  # for ever (panic=0), and the panic message reaches the console first.
  for how in reboot wait; do
    begin "guest-panic-pvpanic-$how"
    new_disk "$run/panic.img"
    extra="sysrq_always_enabled"
    [[ $how == wait ]] && extra+=" panic=0"
    boot "panic-$how" --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M \
      --status-file "$run/panic-$how.status" \
      --disk "path=$run/panic.img,serial=e2e-panic" --cmdline "$(cmdline panic "$extra")"
    expect_status 5
    expect_res panic triggering
    expect_grep "kernel panic message" "Kernel panic - not syncing"
    grep -aq "panic=survived" "$cur_log" && fail "the guest survived the sysrq crash"
    expect "status file" "5 panic" "$(cut -d' ' -f1-2 "$run/panic-$how.status" 2>&1)"
    end
  done
fi

# --- 6b: the guest's own status, through minivmm.exit and through port 0xf4 ---------
if selected exit; then
  begin guest-exit-status
  for code in 0 1 7 255; do
    for via in port outb; do
      if [[ $via == port ]]; then op="info,status:$code"; else op="outb:$code"; fi
      boot "exit-$via-$code" --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 256M \
        --status-file "$run/exit-$via-$code.status" --cmdline "$(cmdline "$op" minivmm.wait=0)"
      expect "exit status, $code through $via" "$code" "$status"
      expect "status file, $code through $via" "$code guest-exit" \
        "$(cut -d' ' -f1-2 "$run/exit-$via-$code.status" 2>&1)"
      grep -q "minivmm: .*the guest reported status $code" "$run/exit-$via-$code.vmm" ||
        fail "no stderr line says the guest reported $code ($via)"
    done
  done
  # QEMU's isa-debug-exit formula at the port the guest writes: (3 << 1) | 1 = 7.
  boot exit-qemu --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 256M \
    --debug-exit qemu,iobase=0xf4,iosize=1 --cmdline "$(cmdline outb:3 minivmm.wait=0)"
  expect "exit status, 3 through the QEMU formula" 7 "$status"
  end
fi
if selected timeout; then
  # A guest that hangs: --timeout 5 stops it, 124, within 7 s of the start.
  begin guest-hang-timeout
  boot hang --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 256M --timeout 5 \
    --status-file "$run/hang.status" --cmdline "$(cmdline hang minivmm.wait=0)"
  expect_status 124
  # Whether the guest got as far as the hang op depends on the load (a loaded nested host
  # once took 4 s to the first guest exit): the timeout is what is checked, either way.
  if [[ $(res hang) == sleeping ]]; then
    # Its console driver was up: the stop logs where that device's queues stood.
    grep -qE "^minivmm: info: at the stop: console \(IRQ [0-9]+\): InterruptStatus 0x[0-9a-f]+; queue 0: avail [0-9]+ used [0-9]+" "$run/hang.vmm" ||
      fail "no 'at the stop: console ...' queue line in $run/hang.vmm"
  else
    echo "e2e:   (the guest had not reached its hang op at the timeout)" >&2
  fi
  awk -v s="$boot_s" 'BEGIN { exit !(s >= 5 && s < 7) }' || fail "stopped after ${boot_s}s, not within 5-7 s"
  expect "status file" "124 timeout" "$(cut -d' ' -f1-2 "$run/hang.status" 2>&1)"
  end
fi

# --- 7: the minimal kernel, no ACPI, virtio_mmio.device= on the command line ----
if selected minimal; then
  if [[ -n $mskip ]]; then
    skip minimal-kernel-no-acpi "$mskip"
  else
    begin minimal-kernel-no-acpi
    new_disk "$run/minimal.img"
    # No ACPI means no ACPI power-off: end through the i8042 reset instead. The guest takes
    # its CPU and IOAPIC from the MP table. One vCPU: with two, 4 boots in 96 of this kernel
    # without ACPI once ended in a triple fault or hang in the nested KVM host; not seen since
    # in 210 (QEMU: 1 in 210; README, "Known issues"), but one vCPU keeps the suite steady.
    boot minimal --kernel "$mkernel" --initrd "$minitrd" --cpus 1 --memory 256M --no-acpi --virtio-cmdline \
      --disk "path=$run/minimal.img,serial=e2e-minimal" --cmdline "$(cmdline info,fsverify:vda minivmm.exit=reboot)"
    expect_status 0
    expect_res nproc 1
    expect_res disks vda
    expect_res vda.serial e2e-minimal
    expect_res acpi_virtio_mmio 0  # found through virtio_mmio.device=, not ACPI
    expect_res platform_virtio_mmio 3  # the disk, the rng and the console
    expect_res vda.size_sectors "$(sectors "$run/minimal.img")"
    expect_res fs-verify.manifest ok
    expect_res status pass
    expect_grep "reboot requested" "MINIVMM-RESULT exit=reboot"
    end
  fi
fi

# --- 7b: ELF vmlinux direct boot: PVH and the 64-bit entry --------------------------
if selected vmlinux; then
  # The cloud kernel's vmlinux (extracted from its bzImage) through PVH, as auto picks it;
  # the minimal kernel's vmlinux both ways, without ACPI as its bzImage case boots.
  if [[ -z $vmlinux ]]; then
    skip vmlinux-cloud-pvh "no --vmlinux given"
  else
    begin vmlinux-cloud-pvh
    new_disk "$run/vmlinux.img"
    boot vmlinux-cloud --kernel "$vmlinux" --initrd "$initrd" --cpus 2 --memory 512M \
      --disk "path=$run/vmlinux.img,serial=e2e-elf" --cmdline "$(cmdline info,fsverify:vda)"
    expect_status 0
    grep -q "kernel: ELF PVH entry" "$run/vmlinux-cloud.vmm" || fail "the VMM log does not say 'kernel: ELF PVH entry'"
    expect_res nproc 2
    expect_res vda.serial e2e-elf
    expect_res fs-verify.manifest ok
    expect_res status pass
    end
  fi
  mvmlinux="${mkernel:+$(dirname "$mkernel")/vmlinux}"
  for entry in pvh 64bit; do
    if [[ -n $mskip ]]; then
      skip "vmlinux-minimal-$entry" "$mskip"
    elif [[ ! -f $mvmlinux ]]; then
      skip "vmlinux-minimal-$entry" "no vmlinux next to the minimal kernel's bzImage ($mvmlinux)"
    else
      begin "vmlinux-minimal-$entry"
      new_disk "$run/vmlinux-$entry.img"
      boot "vmlinux-minimal-$entry" --kernel "$mvmlinux" --elf-entry "$entry" --initrd "$minitrd" \
        --cpus 1 --memory 256M --no-acpi --virtio-cmdline \
        --disk "path=$run/vmlinux-$entry.img,serial=e2e-elf" \
        --cmdline "$(cmdline info,fsverify:vda minivmm.exit=reboot)"
      expect_status 0
      want="ELF PVH entry"
      [[ $entry == 64bit ]] && want="ELF 64-bit entry"
      grep -q "kernel: $want" "$run/vmlinux-minimal-$entry.vmm" || fail "the VMM log does not say 'kernel: $want'"
      expect_res vda.serial e2e-elf
      expect_res fs-verify.manifest ok
      expect_res status pass
      end
    fi
  done
fi

# --- 8: a stock kernel with minivmm's own defaults boots without platform errors ---
if selected clean; then
  # No --cmdline, --cpus or --memory: what a user gets first. The kernel's whole log (no
  # `quiet`) must have no line saying Fatal, error or failed: each such line once was the
  # machine's fault ("PCI: Fatal: No config space access function found").
  begin clean-default-boot
  default_cmdline="$("$vmm" --help | sed -n 's/^ *--cmdline STR=//p')"
  new_disk "$run/clean.img"
  # The whole kernel log is one UART exit per byte: about 12 s nested on a quiet machine,
  # but it was seen past 120 s on a loaded one. A longer limit, not a flaky case.
  saved_timeout="$boot_timeout"
  ((boot_timeout < 300)) && boot_timeout=300
  boot clean --kernel "$kernel" --initrd "$initrd" --disk "path=$run/clean.img,serial=e2e-clean"
  boot_timeout="$saved_timeout"
  expect_status 0
  expect_res status pass
  expect_grep "default command line" "Command line: $default_cmdline\\s*$"
  bad="$(tr -d '\r' <"$cur_log" | grep -aE '^\[ *[0-9]+\.[0-9]+\] ' | grep -aiE 'fatal|error|failed' | head -n 5)"
  [[ -z $bad ]] || fail "kernel log lines saying fatal/error/failed: $(tr '\n' '|' <<<"$bad")"
  end
fi

# --- 9: virtio-console: hvc0 on stdout, a named port both ways ------------------
if selected hvc0; then
  # The kernel and init talk on hvc0 only: everything the case checks came through the
  # virtio console to minivmm's stdout (the UART is off). No `quiet`: the kernel's own
  # messages must come through too (from the time virtio_console is loaded: Debian builds it
  # as a module, so the earlier boot log is not replayed on hvc0); the scenario makes one.
  # No disk I/O in this boot: one run of 28 with fs-verify here hung after its first line,
  # vCPUs halted and every worker idle, not reproduced since (README, "Known issues").
  begin virtio-console-hvc0
  new_disk "$run/hvc0.img"
  boot_stdout=1 boot hvc0 --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M --console stdio \
    --disk "path=$run/hvc0.img,serial=e2e-hvc0" \
    --cmdline "console=hvc0 reboot=k panic=-1 initcall_blacklist=cmos_init minivmm.scenario=e2e minivmm.arg=console,info"
  expect_status 0
  expect_res console.active hvc0
  expect_res modules ok
  expect_res disks vda
  expect_res status pass
  expect_grep "kernel message on hvc0" "^\[ *[0-9]+\.[0-9]+\] e2e-kmsg: through the console"
  expect_grep "power-off" "MINIVMM-RESULT exit=poweroff"
  expect_res acpi_virtio_mmio 3  # the disk, the rng and the console
  end
fi
if selected port; then
  if [[ -z $port_client ]]; then
    skip virtio-console-named-port "no --port-client (the build's tests/e2e/port-client) given"
  else
    begin virtio-console-named-port
    # host -> guest -> host: the client sends a line on the socket, the guest reads it from
    # /dev/virtio-ports/e2e.echo and writes "echo:LINE" back; a second port writes a file.
    sock="$local_tmp/echo.sock" token="ping-$RANDOM-$$"
    "$port_client" "$sock" "$token" "$boot_timeout" >"$run/port.reply" 2>"$run/port.err" &
    client=$!
    new_disk "$run/port.img"
    boot port --kernel "$kernel" --initrd "$initrd" --cpus 2 --memory 512M --console null \
      --port "name=e2e.echo,socket=$sock" --port "name=e2e.file,path=$run/port.file" \
      --disk "path=$run/port.img,serial=e2e-port" --cmdline "$(cmdline info,port:e2e.echo,portwrite:e2e.file)"
    wait "$client"
    client_status=$?
    expect_status 0
    expect_res port.e2e.echo ok
    expect_res port.read "$token"
    expect "port-client exit status ($(head -c 200 "$run/port.err"))" 0 "$client_status"
    expect "reply on the host socket" "echo:$token" "$(cat "$run/port.reply")"
    [[ -e $sock ]] && fail "minivmm left its socket $sock behind"
    expect_res portwrite.e2e.file ok
    expect "the path= port's file" "port e2e.file from the guest" "$(cat "$run/port.file" 2>&1)"
    end
  fi
fi

# --- 9b: virtio-fs: minivmm's own virtiofsd, both ways, read-only, reset, backend death ---
# Root only (minivmm starts /usr/lib/qemu/virtiofsd itself for path=; the suite runs as root
# in the nested host). Boot 1 shares two fresh dirs on the local tmpfs: `share` (rw) and
# `ro` (readonly=on). The guest (scenario virtiofs) reads a random host file on each (its
# sha256 must be the host's), writes a seeded pattern to `share` (the host regenerates it),
# tries to write `ro` (create, append, mkdir, rename: each must fail with EROFS; the host dir
# must be unchanged), resets both devices (driver unbind + bind: a new activation on the
# same virtiofsd connection) and does it all again, then reboots (minivmm exits 0) and no
# virtiofsd of this boot may be left. Boot 2, a new minivmm on the same `share`, reads what
# boot 1 wrote, writes a file, then the host SIGKILLs its virtiofsd: minivmm must stay up,
# log one line saying so, set DEVICE_NEEDS_RESET (the guest sees 0x40 in the device's
# status), and end with the guest's status (0) when the guest powers off.
if selected fs; then
  vfsd=/usr/lib/qemu/virtiofsd
  if [[ ! -x $vfsd ]]; then
    skip virtio-fs "no $vfsd (Debian package qemu-system-common; tests/install-deps.sh installs it)"
  elif [[ $(id -u) != 0 ]]; then
    skip virtio-fs "not root: minivmm starts virtiofsd only as root"
  elif [[ $("$vmm" --help 2>/dev/null) != *"--fs SPEC"* ]]; then  # (not | grep -q: SIGPIPE)
    skip virtio-fs "this minivmm has no --fs"
  else
    begin virtio-fs
    fsd="$local_tmp/fs"
    mkdir -p "$fsd/share" "$fsd/ro"
    head -c 1048576 /dev/urandom >"$fsd/share/host.bin"
    head -c 65536 /dev/urandom >"$fsd/ro/host-ro.bin"
    share_sha="$(sha <"$fsd/share/host.bin")" ro_sha="$(sha <"$fsd/ro/host-ro.bin")"
    ro_list() { (cd "$fsd/ro" && ls -la --time-style=+%s . && sha256sum ./*) 2>&1 | sha; }  # names, sizes, times, bytes
    ro_before="$(ro_list)"
    seed="$RANDOM$RANDOM" lines=4096  # 4096 lines of ~40 bytes: 160 KiB
    vfs_pattern() { awk -v s="$1" -v n="$2" 'BEGIN { for (i = 0; i < n; i++) printf "minivmm-vfs %s %015d\n", s, i }'; }
    want="$(vfs_pattern "$seed" "$lines" | sha)" want2="$(vfs_pattern "$seed.2" 100 | sha)"
    before_vfsd=" $(pgrep -x virtiofsd | tr '\n' ' ')"
    vfsd_left() {  # vfsd_left WHEN: no virtiofsd but those running before the case
      local p left=""
      for p in $(pgrep -x virtiofsd); do [[ $before_vfsd == *" $p "* ]] || left+=" $p"; done
      [[ -z $left ]] || fail "virtiofsd left running $1, after minivmm exited: pid$left"
    }
    ops="devices,mount:share,mount:ro,read:share:host.bin,read:ro:host-ro.bin,write:share:guest.txt:$seed:$lines,rowrite:ro"
    ops+=",reset,read:share:guest.txt,read:ro:host-ro.bin,write:share:after-reset.txt:$seed.2:100,rowrite:ro"
    boot fs-rw --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 512M --rng off \
      --fs "tag=share,path=$fsd/share" --fs "tag=ro,path=$fsd/ro,readonly=on" \
      --cmdline "$base_cmdline minivmm.wait=0 minivmm.scenario=virtiofs minivmm.arg=$ops minivmm.exit=reboot"
    expect_status 0
    expect_grep "reboot requested" "MINIVMM-RESULT exit=reboot"
    expect_res modules ok
    expect_res vfs.devices 2
    expect_res vfs.mount.share ok
    expect_res vfs.mount.ro ok
    expect "guest sha256 of the host's file (rw share)" "$share_sha" "$(res vfs.read.share.host.bin)"
    expect "guest sha256 of the host's file (read-only share)" "$ro_sha" "$(res vfs.read.ro.host-ro.bin)"
    expect_res vfs.write.share.guest.txt ok
    expect "guest sha256 of what it wrote" "$want" "$(res vfs.wrote.share.guest.txt)"
    expect "host sha256 of the guest's file" "$want" "$(sha <"$fsd/share/guest.txt" 2>&1)"
    expect "guest sha256 of its file after the reset" "$want" "$(res vfs.read.share.guest.txt)"
    expect_res vfs.write.share.after-reset.txt ok
    expect "host sha256 of the file written after the reset" "$want2" "$(sha <"$fsd/share/after-reset.txt" 2>&1)"
    expect_res vfs.rowrite.ro refused
    expect_res vfs.rowrite.ro.err Read-only_file_system
    [[ $(ro_list) == "$ro_before" ]] ||
      fail "the read-only share's host dir changed: $(ls -la "$fsd/ro" | tail -n +2 | awk '{ print $5, $NF }' | tr '\n' ' ')"
    expect_res vfs.reset ok
    expect "virtio-fs devices bound again after the reset" 2 "$(res devices)"
    expect "shares mounted again after the reset" 2 "$(res shares)"
    expect_res status pass
    vfsd_left "after the reboot"

    # Boot 2: virtiofsd killed while the guest runs.
    klog="$run/fs-kill.console" kvmm="$run/fs-kill.vmm"
    cur_log="$klog"
    record progress "boot fs-kill $sel_last"
    "$vmm" --serial "file=$klog" --log-level info --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 512M \
      --rng off --status-file "$run/fs-kill.status" --timeout "$boot_timeout" --fs "tag=share,path=$fsd/share" \
      --cmdline "$base_cmdline minivmm.wait=0 minivmm.scenario=virtiofs minivmm.arg=mount:share,read:share:guest.txt,write:share:k.txt:$seed.k:100,kill:share:20" \
      </dev/null >"$kvmm" 2>&1 &
    pid=$!
    for ((w = 0; w < boot_timeout * 10; w++)); do
      grep -aq 'MINIVMM-RESULT vfs.kill.share=ready' "$klog" 2>/dev/null && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    daemon="$(pgrep -P "$pid" -x virtiofsd | head -n1)"
    if ! grep -aq 'MINIVMM-RESULT vfs.kill.share=ready' "$klog" 2>/dev/null; then
      fail "the guest never got to the kill (no vfs.kill.share=ready)"
    elif [[ -z $daemon ]]; then
      fail "no virtiofsd child of minivmm (pid $pid) to kill: $(ps -o pid=,comm= --ppid "$pid" | tr '\n' ' ')"
    else
      kill -KILL "$daemon"
      sleep 2
      kill -0 "$pid" 2>/dev/null || fail "minivmm (pid $pid) is gone 2 s after its virtiofsd was killed"
    fi
    wait "$pid"
    status=$?
    echo "e2e:   boot fs-kill: minivmm exit $status (virtiofsd pid ${daemon:-none} killed)" >&2
    expect_status 0
    expect "status file" "0 guest-exit" "$(cut -d' ' -f1-2 "$run/fs-kill.status" 2>&1)"
    expect "guest sha256 of boot 1's file in a new minivmm" "$want" "$(res vfs.read.share.guest.txt)"
    expect_res vfs.write.share.k.txt ok
    expect "host sha256 of the file written before the kill" "$(vfs_pattern "$seed.k" 100 | sha)" "$(sha <"$fsd/share/k.txt" 2>&1)"
    expect_res vfs.needs_reset.share yes
    [[ -n $(res vfs.alive) ]] || fail "the guest did not report it was alive after the kill (vfs.alive)"
    expect_res status pass
    n="$(grep -cE 'virtiofsd \(pid [0-9]+\) (exited|was killed)' "$kvmm")"
    expect "log lines saying virtiofsd ended (${kvmm##*/})" 1 "$n"
    vfsd_left "after the kill"
    echo "e2e:   virtio-fs: after the kill the guest's lookup was '$(res vfs.after_kill.share)', NEEDS_RESET after $(res after)" >&2
    end
  fi
fi

# --- --host-root --exec: a command on the host's own root ------------------------
# The cloud kernel boots on the host's / (read-only over virtio-fs, minivmm's own virtiofsd
# and initramfs, modules from the kernel's tree) and runs one command: its stdout and stderr
# must come back apart and exactly, its status as minivmm's (3, then 0), in the directory
# minivmm ran in, with the host's files and a writable /etc whose writes never reach the
# host.
if selected hostroot; then
  begin host-root-exec
  if [[ -z $kernel_modules ]]; then
    fail "no --kernel-modules given (run-e2e.sh passes the cloud kernel's module tree)"
  else
    hr=(--kernel "$kernel" --modules "$kernel_modules" --host-root --memory 512M --timeout "$boot_timeout")
    token="hr-$RANDOM-$$"
    record progress "boot host-root-3 $sel_last"
    t0=$SECONDS
    # From a directory below /tmp (where a CI checkout may be): the guest must find it.
    (cd "$local_tmp" && "$vmm" "${hr[@]}" --exec "echo out-$token; pwd; echo err-$token >&2; exit 3") \
      </dev/null >"$run/hostroot.out" 2>"$run/hostroot.err"
    status=$?
    echo "e2e:   boot host-root-3: minivmm exit $status in $((SECONDS - t0))s" >&2
    cur_log="$run/hostroot.err"
    expect_status 3
    expect "the command's stdout (and its cwd, below /tmp)" "out-$token|$local_tmp" \
      "$(paste -sd'|' "$run/hostroot.out")"
    expect "the command's stderr (nothing of minivmm's, nothing of virtiofsd's)" "err-$token" \
      "$(cat "$run/hostroot.err")"
    # The host's userspace and files, the kernel's release, the cwd; /etc writable in the
    # guest only; / read-only.
    probe="/etc/minivmm-e2e-$token"
    record progress "boot host-root-0 $sel_last"
    t0=$SECONDS
    (cd "$run" && "$vmm" "${hr[@]}" --exec "uname -r; pwd; sha256sum $run/hostroot.out | cut -d' ' -f1;
        echo x >$probe && cat $probe; if touch /minivmm-e2e-$token 2>/dev/null; then echo root-writable; fi") \
      </dev/null >"$run/hostroot0.out" 2>"$run/hostroot0.err"
    status=$?
    echo "e2e:   boot host-root-0: minivmm exit $status in $((SECONDS - t0))s" >&2
    cur_log="$run/hostroot0.err"
    expect_status 0
    expect "stdout: release, cwd, the host file's sha256, the /etc write" \
      "$(basename "$kernel_modules")|$run|$(sha256sum "$run/hostroot.out" | cut -d' ' -f1)|x" \
      "$(paste -sd'|' "$run/hostroot0.out")"
    expect "stderr" "" "$(cat "$run/hostroot0.err")"
    [[ -e $probe ]] && fail "the guest's write to $probe reached the host"
    [[ -e /minivmm-e2e-$token ]] && fail "the guest wrote to the host's /"
    rm -f "$probe" "/minivmm-e2e-$token"
    # A command killed by a signal reports 128 + N, as a shell does; the init's own failure
    # (a --cwd the host does not have) is 125 with one line on the command's stderr.
    for c in "137|kill -9 \$\$|" "125|true|--cwd /nonexistent-$token"; do
      IFS='|' read -r want cmd extra <<<"$c"
      record progress "boot host-root-$want $sel_last"
      # shellcheck disable=SC2086  # $extra: the optional --cwd and its value
      "$vmm" "${hr[@]}" $extra --exec "$cmd" </dev/null >"$run/hostroot$want.out" \
        2>"$run/hostroot$want.err"
      status=$?
      echo "e2e:   boot host-root-$want: minivmm exit $status" >&2
      cur_log="$run/hostroot$want.err"
      expect_status "$want"
    done
    grep -q "^minivmm-init: error: .*nonexistent-$token" "$run/hostroot125.err" ||
      fail "stderr of the bad --cwd has no 'minivmm-init: error: ...' line: $(head -c 300 "$run/hostroot125.err")"
  fi
  end
fi

# --- kill -9: no acknowledged write is lost -----------------------------------
# The guest (scenario durability) writes 4 KiB block N, waits for the flush, prints "ACK N",
# N = 0, 1, ...; minivmm is SIGKILLed at a random moment -- after the first ACK, or, every
# third run, anywhere in its first 3 s (start-up and boot included) -- and started again
# from the next block, MINIVMM_E2E_KILLS times (default 10) with a buffered disk and
# as many with direct=on. After every kill, every block acknowledged so far must hold its
# pattern. (A line cut short by the kill reads as a smaller number: an earlier block, also
# acknowledged.) The minimal kernel where there is one (it boots fastest). The buffered
# image lives on the nested host's tmpfs, where a flush is cheap (fdatasync over the 9p
# export of the images cache costs up to seconds); the direct=on one in the run directory,
# since tmpfs has no O_DIRECT on the nested host's 6.1 kernel.
if selected durability; then
  begin durability
  kills="${MINIVMM_E2E_KILLS:-10}"
  if [[ -z $mskip ]]; then
    dur_boot=(--kernel "$mkernel" --initrd "$minitrd" --no-acpi --virtio-cmdline)
  else
    dur_boot=(--kernel "$kernel" --initrd "$initrd")
  fi
  # blocks_ok IMG FIRST LAST: blocks FIRST..LAST hold their patterns (one pass each side);
  # else the bad ones, up to 5, go to $bad and the count to $nbad.
  dur_pattern() { awk -v a="$1" -v b="$2" 'BEGIN { for (n = a; n <= b; n++) for (i = 0; i < 256; i++) printf "dur%012d\n", n }'; }
  blocks_ok() {
    local b
    nbad=0 bad=""
    [[ "$(dd if="$1" bs=4096 skip="$2" count=$(($3 - $2 + 1)) 2>/dev/null | sha)" == "$(dur_pattern "$2" "$3" | sha)" ]] && return 0
    for ((b = $2; b <= $3; b++)); do
      [[ "$(dd if="$1" bs=4096 skip="$b" count=1 2>/dev/null | sha)" == "$(dur_pattern "$b" "$b" | sha)" ]] && continue
      nbad=$((nbad + 1))
      ((nbad <= 5)) && bad+=" $b"
    done
    return 1
  }
  for mode in buffered direct; do
    if [[ $mode == direct ]]; then
      img="$run/durability-direct.img" opt=",direct=on"
    else
      img="$local_tmp/durability-buffered.img" opt=""
    fi
    scratch "$img" 16M
    next=0 lost=0 killed=0 acked_runs=0
    for ((k = 1; k <= kills; k++)); do
      klog="$run/durability-$mode-$k.console"
      record progress "boot durability-$mode-$k $sel_last"
      "$vmm" --serial "file=$klog" "${dur_boot[@]}" --cpus 1 --memory 256M --rng off \
        --disk "path=$img$opt" --cmdline "$base_cmdline minivmm.scenario=durability minivmm.arg=$next" \
        </dev/null >"$run/durability-$mode-$k.vmm" 2>&1 &
      pid=$!
      # Every third run is killed at a random moment of its first 3 s, wherever it is --
      # setting up, booting, or writing; the others 0-1.9 s after their first ACK.
      if ((k % 3 != 0)); then
        for ((w = 0; w < boot_timeout * 10; w++)); do
          grep -aq '^ACK ' "$klog" 2>/dev/null && break
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.1
        done
        sleep "$((RANDOM % 2)).$((RANDOM % 10))"
      else
        sleep "$((RANDOM % 3)).$((RANDOM % 10))"
      fi
      { kill -KILL "$pid"; wait "$pid"; } 2>/dev/null
      [[ $? == 137 ]] && killed=$((killed + 1))
      last="$(tr -d '\r' <"$klog" | awk '/^ACK [0-9]+$/ { n = $2 } END { if (n != "") print n }')"
      [[ -n $last ]] || continue
      acked_runs=$((acked_runs + 1))
      if ((last >= next)) && ! blocks_ok "$img" "$next" "$last"; then
        lost=$((lost + nbad))
        fail "$mode: blocks$bad (of $nbad) were acknowledged (kill $k) but are not on the image"
      fi
      next=$((last + 1))
    done
    # Nothing acknowledged earlier was lost later either.
    if ((next > 0)) && ! blocks_ok "$img" 0 $((next - 1)); then
      lost=$((lost + nbad))
      fail "$mode: at the end, blocks$bad (of $nbad) acknowledged earlier are not on the image"
    fi
    echo "e2e:   durability $mode: $killed of $kills runs killed with SIGKILL, $acked_runs of them after an acknowledged write, $next blocks acknowledged in all, $lost lost"
    expect "$mode: runs killed by SIGKILL" "$kills" "$killed"
    expect "$mode: acknowledged blocks lost" 0 "$lost"
    ((acked_runs * 2 >= kills)) || fail "$mode: only $acked_runs of $kills runs acknowledged a write before the kill"
  done
  cur_log="$klog"
  end
fi

# --- network and vsock: virtio-net over passt and a tap, virtio-vsock ------------------
# Traffic stays on loopback and in network namespaces made here: each case makes its own
# (`ip netns add`), with a dummy interface and a default route for passt (it refuses to
# start without one) or a tap with a static address, and runs the VMM and every host-side
# peer inside it. The VMM is minivmm (--net, --vsock) unless MINIVMM_E2E_NET_VMM=qemu, which
# runs the same guest side under QEMU microvm (virtio-net-device on -netdev stream / tap,
# vhost-vsock-device): how these cases were proven before minivmm had the devices. With
# minivmm a case is SKIPPED, saying so, only when `minivmm --help` has no --net / --vsock.
net_vmm="${MINIVMM_E2E_NET_VMM:-minivmm}"
[[ $net_vmm == minivmm || $net_vmm == qemu ]] || die "MINIVMM_E2E_NET_VMM must be minivmm or qemu: '$net_vmm'"
vmm_help="$("$vmm" --help 2>&1)"
vsock_io="$vsock_io_arg"
net_ns=() net_dirs=()  # namespaces and dirs made by the cases, removed at the end
net_cleanup() {
  local n
  for n in "${net_ns[@]}"; do ip netns pids "$n" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$n" 2>/dev/null; done
  for n in "${net_dirs[@]}"; do rm -rf "$n"; done
}
trap 'net_cleanup; rm -rf "$local_tmp"' EXIT
# net_skip_reason OPTION: why the case cannot run here (empty: it can).
net_skip_reason() {
  if [[ $(id -u) != 0 ]]; then echo "not root: the case makes network namespaces"; return; fi
  command -v ip >/dev/null || { echo "no ip (Debian package iproute2; tests/install-deps.sh)"; return; }
  [[ -x $vsock_io ]] || { echo "no host vsock-io helper (--vsock-io, or cc to build it)"; return; }
  if [[ $net_vmm == qemu ]]; then
    command -v qemu-system-x86_64 >/dev/null || echo "MINIVMM_E2E_NET_VMM=qemu but no qemu-system-x86_64"
  elif [[ $vmm_help != *"$1"* ]]; then
    echo "this minivmm has no $1 (the virtio-net / vsock devices are not merged yet)"
  fi
}
# net_ns_new NAME: a fresh namespace with lo up; its name is in $ns.
net_ns_new() {
  ns="mvm-e2e-$1-$$"
  ip netns add "$ns" || return 1
  net_ns+=("$ns")
  ip -n "$ns" link set lo up
}
# vm_start NAME NS CMDLINE: start the VM in the background (inside NS unless empty), with the
# devices in qemu_dev (QEMU) or minivmm_dev (minivmm); console in $run/NAME.console.
vm_start() {
  local name="$1" in=()
  [[ -n $2 ]] && in=(ip netns exec "$2")
  log="$run/$name.console" cur_log="$run/$name.console"
  rm -f "$log"
  record progress "boot $name $sel_last"
  vm_t0=$SECONDS
  if [[ $net_vmm == qemu ]]; then
    "${in[@]}" timeout -k 5 "$boot_timeout" qemu-system-x86_64 -M microvm,acpi=on,rtc=off -accel kvm -cpu host \
      -m 512M -smp 1 -nodefaults -no-user-config -display none -no-reboot \
      -global virtio-mmio.force-legacy=false -kernel "$kernel" -initrd "$initrd" -serial "file:$log" \
      -append "$3 reboot=t" "${qemu_dev[@]}" </dev/null >"$run/$name.vmm" 2>&1 &
  else
    "${in[@]}" timeout -k 5 "$boot_timeout" "$vmm" --serial "file=$log" --log-level info --kernel "$kernel" \
      --initrd "$initrd" --cpus 1 --memory 512M --cmdline "$3" "${minivmm_dev[@]}" </dev/null >"$run/$name.vmm" 2>&1 &
  fi
  vm_pid=$!
}
# vm_wait_for REGEX: wait until the console has REGEX (0) or the VM ended (1).
vm_wait_for() {
  while ! grep -aqE "$1" "$log" 2>/dev/null; do
    kill -0 "$vm_pid" 2>/dev/null || { grep -aqE "$1" "$log" 2>/dev/null; return; }
    sleep 0.2
  done
}
vm_end() {
  wait "$vm_pid"
  status=$?
  echo "e2e:   boot ${log##*/}: $net_vmm exit $status in $((SECONDS - vm_t0))s" >&2
}
# reap PID: the status of a host-side peer, given 5 s to finish after the VM ended (then
# killed: it waited for a guest that never came).
reap() {
  local i
  for ((i = 0; i < 50; i++)); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  kill "$1" 2>/dev/null
  wait "$1"
}
# The end every net case checks: the VMM's status (QEMU's is 0 on any power-off: the guest's
# own verdict is its scenario line), the driver, the scenario's verdict.
vm_expect_ok() {
  expect_status 0
  expect_res modules ok
  expect_res status pass
}
if selected net-passt || selected net-tap || selected vsock; then
  if [[ -z $vsock_io ]]; then
    vsock_io="$local_tmp/vsock-io"
    cc -static -O2 -o "$vsock_io" "$(dirname "$0")/../../images/helpers/vsock-io.c" 2>/dev/null || vsock_io=""
  fi
fi

# net-passt: the guest's address by passt's DHCP, an HTTP fetch from a server on the host's
# 127.0.0.1 through passt's gateway mapping, and a port forwarded inbound (passt -t) to an
# HTTP server in the guest, each file checked by sha256.
if selected net-passt; then
  why_skip="$(net_skip_reason "--net")"
  command -v passt >/dev/null || why_skip="no passt (Debian package passt; tests/install-deps.sh)"
  if [[ -n $why_skip ]]; then
    skip net-passt "$why_skip"
  else
    begin net-passt
    net_ns_new passt
    # passt takes the template interface with the default route: its address is the guest's
    # (DHCP), the route's gateway the guest's router, mapped to the host's loopback.
    ip -n "$ns" link add mvdummy0 type dummy && ip -n "$ns" addr add 10.0.2.15/24 dev mvdummy0 &&
      ip -n "$ns" link set mvdummy0 up && ip -n "$ns" route add default via 10.0.2.2 ||
      fail "cannot set up a dummy interface with a default route in $ns"
    web="$local_tmp/web" http_port=8000 fwd_port=18080 guest_port=8080
    mkdir -p "$web"
    head -c 4194304 /dev/urandom >"$web/blob.bin"
    ip netns exec "$ns" /usr/bin/python3 -m http.server "$http_port" --bind 127.0.0.1 --directory "$web" \
      >"$run/passt-http.log" 2>&1 &
    for ((w = 0; w < 100; w++)); do
      ip netns exec "$ns" bash -c "exec 3<>/dev/tcp/127.0.0.1/$http_port" 2>/dev/null && break
      sleep 0.1
    done
    qemu_dev=() minivmm_dev=(--net "passt,forward=$fwd_port:$guest_port")
    if [[ $net_vmm == qemu ]]; then
      # QEMU cannot hand passt a socketpair (--fd): passt listens on a socket in a dir that
      # nobody, whom passt becomes when started as root, can write (else it fails quietly).
      # (Not below $local_tmp: nobody cannot enter that 0700 dir.)
      pdir="$(mktemp -d "${TMPDIR:-/tmp}/minivmm-e2e-passt.XXXXXX")" && chown nobody "$pdir"
      net_dirs+=("$pdir")
      ip netns exec "$ns" passt -f -q -1 -s "$pdir/passt.sock" -t "$fwd_port:$guest_port" >"$run/passt.log" 2>&1 &
      for ((w = 0; w < 100; w++)); do [[ -S $pdir/passt.sock ]] && break; sleep 0.1; done
      [[ -S $pdir/passt.sock ]] || fail "passt made no socket: $(grep -v syslog "$run/passt.log" | head -c 300)"
      qemu_dev=(-netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$pdir/passt.sock"
        -device virtio-net-device,netdev=n0)
    fi
    vm_start net-passt "$ns" "$base_cmdline minivmm.wait=0 minivmm.scenario=net-passt minivmm.arg=$http_port:blob.bin:$guest_port"
    if vm_wait_for 'MINIVMM-RESULT net.serve=ready'; then
      # An HTTP client (the guest's busybox httpd closes after each response): serve.bin, then /done.
      ip netns exec "$ns" /usr/bin/python3 -c '
import sys, urllib.request, urllib.error
base = "http://127.0.0.1:%s/" % sys.argv[1]
open(sys.argv[2], "wb").write(urllib.request.urlopen(base + "serve.bin", timeout=30).read())
try:
    urllib.request.urlopen(base + "done", timeout=30).read()
except urllib.error.HTTPError:
    pass' "$fwd_port" "$local_tmp/passt-out.bin" 2>"$run/passt-client.err" ||
        fail "fetching from the guest through 127.0.0.1:$fwd_port failed: $(tail -n 1 "$run/passt-client.err")"
    else
      fail "the guest never served the forwarded port (no net.serve=ready)"
    fi
    vm_end
    vm_expect_ok
    expect_res net.eth0.driver virtio_net
    expect_res net.dhcp ok
    expect "guest address from passt's DHCP (the template interface's)" 10.0.2.15/24 "$(res net.addr)"
    expect "guest router from passt's DHCP" 10.0.2.2 "$(res net.gw)"
    expect_res net.http ok
    expect "guest sha256 of the file fetched over HTTP" "$(sha <"$web/blob.bin")" "$(res net.http.sha256)"
    expect_res net.http.bytes 4194304
    expect "host sha256 of the guest's file, fetched through the forwarded port" "$(res net.serve.sha256)" "$(sha <"$local_tmp/passt-out.bin" 2>&1)"
    expect_res net.serve.200 1
    grep -q '"GET /blob.bin HTTP/1.[01]" 200' "$run/passt-http.log" || fail "the HTTP server logged no GET /blob.bin 200"
    end
  fi
fi

# net-tap: a tap (IFF_TAP|IFF_NO_PI|IFF_VNET_HDR, made in the case's namespace) with static
# addresses on both ends: ping both ways, 16 MiB by TCP each way, by sha256; the guest's MAC is
# the one given.
if selected net-tap; then
  why_skip="$(net_skip_reason "--net")"
  command -v socat >/dev/null || why_skip="no socat (Debian package socat; tests/install-deps.sh)"
  if [[ -n $why_skip ]]; then
    skip net-tap "$why_skip"
  else
    begin net-tap
    net_ns_new tap
    mac="52:54:00:e2:e2:$(printf %02x $((RANDOM % 256)))"
    ip -n "$ns" tuntap add dev mvtap0 mode tap vnet_hdr && ip -n "$ns" addr add 10.0.3.1/24 dev mvtap0 &&
      ip -n "$ns" link set mvtap0 up || fail "cannot make the tap mvtap0 in $ns"
    head -c 16777216 /dev/urandom >"$local_tmp/tap-in.bin"
    rm -f "$local_tmp/tap-out.bin"
    ip netns exec "$ns" timeout "$boot_timeout" socat -u TCP-LISTEN:7001,reuseaddr "OPEN:$local_tmp/tap-out.bin,creat,trunc" \
      2>"$run/tap-socat-listen.err" &
    sink=$!
    qemu_dev=(-netdev tap,id=n0,ifname=mvtap0,script=no,downscript=no,vhost=off -device "virtio-net-device,netdev=n0,mac=$mac")
    minivmm_dev=(--net "tap=mvtap0,mac=$mac")
    vm_start net-tap "$ns" "$base_cmdline minivmm.wait=0 minivmm.scenario=net-tap minivmm.arg=10.0.3.2/24:10.0.3.1:7001:7002:16"
    if vm_wait_for 'MINIVMM-RESULT net.recv=ready'; then
      ip netns exec "$ns" busybox ping -c 3 -w 10 10.0.3.2 >"$run/tap-ping.out" 2>&1 || fail "the host's ping of the guest failed: $(tail -n 2 "$run/tap-ping.out" | tr '\n' ' ')"
      ip netns exec "$ns" socat -u "OPEN:$local_tmp/tap-in.bin" TCP:10.0.3.2:7002 2>"$run/tap-socat-send.err" ||
        fail "sending to the guest failed: $(cat "$run/tap-socat-send.err")"
    else
      fail "the guest never listened (no net.recv=ready)"
    fi
    vm_end
    reap "$sink" || fail "the host's TCP sink (socat) failed: $(cat "$run/tap-socat-listen.err")"
    vm_expect_ok
    expect_res net.eth0.driver virtio_net
    expect "the guest's MAC" "$mac" "$(res net.eth0.mac)"
    expect_res net.ping ok
    expect_res net.send ok
    expect "host sha256 of the guest's 16 MiB" "$(res net.send.sha256)" "$(sha <"$local_tmp/tap-out.bin")"
    expect "bytes the host received" 16777216 "$(stat -c %s "$local_tmp/tap-out.bin" 2>&1)"
    expect "guest sha256 of the host's 16 MiB" "$(sha <"$local_tmp/tap-in.bin")" "$(res net.recv.recv.sha256)"
    end
  fi
fi

# vsock: 16 MiB guest -> host (CID 2) and 16 MiB host -> guest, by sha256; the guest's CID is
# the one given. minivmm: Firecracker's hybrid vsock (a guest connection to port P reaches
# the unix socket PATH_P; the host connects to PATH and says "CONNECT P"); QEMU:
# vhost-vsock-device, AF_VSOCK on the host.
if selected vsock; then
  why_skip="$(net_skip_reason "--vsock")"
  [[ $net_vmm == qemu && ! -c /dev/vhost-vsock ]] && why_skip="MINIVMM_E2E_NET_VMM=qemu but no /dev/vhost-vsock here (modprobe vhost_vsock)"
  if [[ -n $why_skip ]]; then
    skip vsock "$why_skip"
  else
    begin vsock
    cid=$((1000 + RANDOM % 30000)) vdir="$local_tmp/vsock"
    mkdir -p "$vdir"
    head -c 16777216 /dev/urandom >"$local_tmp/vsock-in.bin"
    if [[ $net_vmm == qemu ]]; then
      qemu_dev=(-device "vhost-vsock-device,guest-cid=$cid") minivmm_dev=()
      host_listen="vsock:7101" host_connect="vsock:$cid:7102"
    else
      qemu_dev=() minivmm_dev=(--vsock "cid=$cid,socket=$vdir/v.sock")
      host_listen="unix:$vdir/v.sock_7101" host_connect="hybrid:$vdir/v.sock:7102"
    fi
    "$vsock_io" -t "$boot_timeout" listen "$host_listen" </dev/null >"$local_tmp/vsock-out.bin" 2>"$run/vsock-listen.err" &
    sink=$!
    vm_start vsock "" "$base_cmdline minivmm.wait=0 minivmm.scenario=vsock minivmm.arg=7101:7102:16"
    if vm_wait_for 'MINIVMM-RESULT vsock.recv=ready'; then
      "$vsock_io" -t 10 connect "$host_connect" <"$local_tmp/vsock-in.bin" >/dev/null 2>"$run/vsock-connect.err" ||
        fail "the host's connection to the guest failed: $(cat "$run/vsock-connect.err")"
    else
      fail "the guest never listened (no vsock.recv=ready)"
    fi
    vm_end
    reap "$sink" || fail "the host's vsock listener failed: $(cat "$run/vsock-listen.err")"
    vm_expect_ok
    expect "the guest's CID" "$cid" "$(res vsock.cid)"
    expect_res vsock.send ok
    expect "host sha256 of the guest's 16 MiB" "$(res vsock.send.sha256)" "$(sha <"$local_tmp/vsock-out.bin")"
    expect "bytes the host received" 16777216 "$(stat -c %s "$local_tmp/vsock-out.bin" 2>&1)"
    expect "guest sha256 of the host's 16 MiB" "$(sha <"$local_tmp/vsock-in.bin")" "$(res vsock.recv.recv.sha256)"
    [[ $net_vmm == minivmm && -e $vdir/v.sock ]] && fail "minivmm left its vsock socket $vdir/v.sock behind"
    end
  fi
fi

summary="e2e: $passed passed, $failed failed"
((skipped > 0)) && summary+=", $skipped skipped"
echo "$summary (suite $((SECONDS - t_suite)) s)"
((failed == 0))
