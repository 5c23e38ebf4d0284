#!/usr/bin/env bash
# fs.sh OUTDIR [RUNS] — shared host directories in a Linux guest, side by side in one run:
#   minivmm     --fs tag=bench,path=DIR (minivmm starts /usr/lib/qemu/virtiofsd itself)
#   qemu-vufs   QEMU -M microvm, vhost-user-fs-device on memfd guest RAM, the same virtiofsd
#               started as minivmm starts it (--socket-path here, -o cache=auto)
#   qemu-9p     QEMU -M microvm, virtio-9p-device (-fsdev local), what users fall back to
# RUNS rounds (default 3), each boots them in that order (interleaved, so load changes hit
# all of them); qemu-9p only in the first FS_BENCH_9P_ROUNDS rounds (default 1: its
# metadata walk alone takes 1.5-5 min nested, and it is the slow reference, not the peer
# the 0.95x target is about), with a 900 s limit instead of 300 s. Workloads (scenario
# images/scenarios/fs-bench): sequential read of a 256 MiB file (dd bs=1M), 4 KiB random
# reads (images/helpers/fs-bench.c, QD1, O_DIRECT where taken, for FS_BENCH_RAND_SECS s,
# default 5), metadata (find + stat over 10 000 files in 100 dirs), each after the guest
# dropped its caches. One guest kernel for all three: Debian's generic
# kernel (linux-image-amd64, the nested host's own), since the cloud kernel has no 9p; its
# initramfs is build-initramfs.sh --flavour host --add-modules "9p 9pnet_virtio". 1 vCPU,
# 512 MiB. The data lives on the nested host's tmpfs (or host /tmp with direct KVM).
#
# Writes OUTDIR/fs.tsv (round, vmm, workload, value), fs.log (every guest console and
# minivmm's log), fs.txt (the table: medians, min-max, ratios) and fs.env (kernel, binaries,
# `uptime` before and after). Needs root inside the nested host (virtiofsd). MINIVMM_BIN
# (default build/rel/vmm/minivmm), FS_BENCH_VMMS="minivmm qemu-vufs qemu-9p" (a subset; also
# qemu-vufs-q1024: QEMU's device with minivmm's queue size, 1024, instead of its 128).
# Nested-host runs of the project take /tmp/minivmm-nested.lock themselves; wrap in flock.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "fs.sh: error: $*" >&2; exit 2; }
say() { echo "fs.sh: $*" >&2; }

if [[ ${1:-} == --inner ]]; then
  # --- inside the nested host (or directly on hardware KVM) -----------------------------
  shift
  work="$1" kernel="$2" initrd="$3" minivmm="$4" runs="$5" rsecs="$6" vmms="$7" p9_rounds="$8"
  vfsd=/usr/lib/qemu/virtiofsd
  [[ $(id -u) == 0 ]] || die "virtiofsd needs root"
  [[ -x $vfsd ]] || die "no $vfsd (Debian package qemu-system-common)"
  data="$(mktemp -d "${TMPDIR:-/tmp}/fs-bench.XXXXXX")"
  trap 'rm -rf "$data"' EXIT
  dd if=/dev/urandom of="$data/big" bs=1M count=256 status=none || die "cannot write the 256 MiB file"
  mkdir "$data/tree"
  for ((d = 0; d < 100; d++)); do
    mkdir "$data/tree/d$d"
    for ((f = 0; f < 100; f++)); do printf 'file %d %d\n' "$d" "$f" >"$data/tree/d$d/f$f"; done
  done
  say "data: $(du -sh "$data" | cut -f1) in $data ($(find "$data/tree" -type f | wc -l) files in the tree)"
  cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init minivmm.wait=0 minivmm.scenario=fs-bench"
  qemu_base=(qemu-system-x86_64 -accel kvm -cpu host -m 512M -smp 1 -nodefaults -no-user-config
    -display none -no-reboot -global virtio-mmio.force-legacy=false -kernel "$kernel" -initrd "$initrd")
  log="$work/fs.log" tsv="$work/fs.tsv"
  : >"$log"
  printf 'round\tvmm\tworkload\tvalue\n' >"$tsv"
  one() {  # one ROUND VMM
    local r="$1" v="$2" con="$work/console.$2.$1" sock="$data/vfs.sock" vpid="" rc=0
    rm -f "$con" "$sock"
    case "$v" in
      minivmm)
        timeout 300 "$minivmm" --log-level info --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 512M --rng off \
          --serial "file=$con" --fs "tag=bench,path=$data" \
          --cmdline "$cmdline reboot=k minivmm.arg=virtiofs:bench:$rsecs" </dev/null >"$con.vmm" 2>&1 || rc=$?
        ;;
      qemu-vufs | qemu-vufs-q1024)
        local qs=""
        [[ $v == qemu-vufs-q1024 ]] && qs=",queue-size=1024"
        "$vfsd" --socket-path="$sock" -o source="$data" -o cache=auto -o log_level=warn \
          </dev/null >"$con.vmm" 2>&1 &
        vpid=$!
        for ((i = 0; i < 100; i++)); do [[ -S $sock ]] && break; sleep 0.1; done
        timeout 300 "${qemu_base[@]}" -M microvm,acpi=on,rtc=off,memory-backend=mem \
          -object memory-backend-memfd,id=mem,size=512M,share=on \
          -chardev "socket,id=fs0,path=$sock" -device "vhost-user-fs-device,chardev=fs0,tag=bench$qs" \
          -serial "file:$con" -append "$cmdline reboot=t minivmm.arg=virtiofs:bench:$rsecs" \
          </dev/null >>"$con.vmm" 2>&1 || rc=$?
        wait "$vpid" 2>/dev/null
        ;;
      qemu-9p)
        timeout 900 "${qemu_base[@]}" -M microvm,acpi=on,rtc=off \
          -fsdev "local,id=p9,path=$data,security_model=none" -device virtio-9p-device,fsdev=p9,mount_tag=bench \
          -serial "file:$con" -append "$cmdline reboot=t minivmm.arg=9p:bench:$rsecs" \
          </dev/null >"$con.vmm" 2>&1 || rc=$?
        ;;
    esac
    { echo "==== round $r $v: exit $rc"; tr -d '\r' <"$con" 2>/dev/null; echo "---- $v's own output"; cat "$con.vmm" 2>/dev/null; } >>"$log"
    local k val ok=0
    for k in seq_mbps rand_iops meta_s; do
      val="$(tr -d '\r' <"$con" 2>/dev/null | sed -n "s/.*MINIVMM-RESULT fs-bench\.$k=\([0-9.]*\).*/\1/p" | tail -n1)"
      [[ -n $val ]] && { printf '%s\t%s\t%s\t%s\n' "$r" "$v" "$k" "$val" >>"$tsv"; ok=$((ok + 1)); }
    done
    say "round $r $v: exit $rc, $ok of 3 figures$(tr -d '\r' <"$con" 2>/dev/null | grep -o 'MINIVMM-RESULT fs-bench[^ ]*' | sed 's/MINIVMM-RESULT fs-bench/ /' | tr -d '\n')"
    rm -f "$con" "$con.vmm"
  }
  for ((r = 1; r <= runs; r++)); do
    for v in $vmms; do
      [[ $v == qemu-9p ]] && ((r > p9_rounds)) && continue
      one "$r" "$v"
    done
  done
  exit 0
fi

# --- on the host: inputs, then the nested part --------------------------------------------
[[ $# -ge 1 ]] || die "usage: fs.sh OUTDIR [RUNS]"
out="$(mkdir -p "$1" && cd "$1" && pwd)" || die "cannot create $1"
runs="${2:-3}"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number: '$runs'"
rsecs="${FS_BENCH_RAND_SECS:-5}"
vmms="${FS_BENCH_VMMS:-minivmm qemu-vufs qemu-9p}"
minivmm="$(realpath -e "${MINIVMM_BIN:-$root/build/rel/vmm/minivmm}" 2>/dev/null)" ||
  die "no minivmm at ${MINIVMM_BIN:-$root/build/rel/vmm/minivmm} (build it, or set MINIVMM_BIN)"
if [[ " $vmms " == *" minivmm "* && $("$minivmm" --help 2>/dev/null) != *"--fs SPEC"* ]]; then
  die "$minivmm has no --fs"
fi
source "$root/images/lib/common.sh"
load_kernel host
initrd="$("$root/images/build-initramfs.sh" --flavour host --add-modules "9p 9pnet_virtio" | tail -n1)" ||
  die "build-initramfs.sh --flavour host failed"
work="$MINIVMM_IMAGES_CACHE/tmp/fs-bench-$$"
mkdir -p "$work" || die "cannot create $work"
trap 'rm -rf "$work"' EXIT
load_start="$(uptime | sed 's/^ *//')"
say "kernel $KERNEL_IMAGE ($KERNEL_VERSION), initramfs $initrd; $runs rounds of: $vmms; load: $load_start"
rc=0
MINIVMM_NESTED_QUIET=1 "$root/images/with-kvm.sh" bash "$here/fs.sh" --inner "$work" "$KERNEL_IMAGE" "$initrd" \
  "$minivmm" "$runs" "$rsecs" "$vmms" "${FS_BENCH_9P_ROUNDS:-1}" || rc=$?
load_end="$(uptime | sed 's/^ *//')"
for f in fs.tsv fs.log; do [[ -f $work/$f ]] && cp "$work/$f" "$out/$f"; done
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC') kvm=$("$root/images/detect-kvm.sh") runs=$runs 9p_rounds=${FS_BENCH_9P_ROUNDS:-1} rand_secs=$rsecs inner_exit=$rc"
  echo "minivmm=$minivmm ($(git -C "$root" rev-parse --short HEAD 2>/dev/null)) qemu=$(qemu-system-x86_64 --version | head -n1)"
  echo "kernel=$KERNEL_IMAGE ($KERNEL_VERSION) initrd=$initrd"
  echo "load at start: $load_start"
  echo "load at end: $load_end"
} >"$out/fs.env"
[[ -s $out/fs.tsv ]] || { cat "$out/fs.env" >&2; die "no results (nested part exited $rc; see $out/fs.log)"; }
# The table: per workload and VMM the median (min-max, n); minivmm / qemu-vufs; virtiofs / 9p.
awk -F'\t' -v vmms="$vmms" '
  NR == 1 { next }
  { v[$3, $2] = v[$3, $2] " " $4 }
  function med(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo = a[1]; hi = a[n]; cnt = n
    return n == 0 ? "" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
  }
  END {
    nv = split(vmms, V, " ")
    split("seq_mbps rand_iops meta_s", W, " ")
    name["seq_mbps"] = "sequential read 256 MiB, dd bs=1M (MB/s)"
    name["rand_iops"] = "4 KiB random reads, QD1 (IOPS)"
    name["meta_s"] = "metadata: find + stat, 10 000 files (s)"
    printf "| workload |"; for (i = 1; i <= nv; i++) printf " %s |", V[i]
    printf " minivmm / qemu-vufs | minivmm / qemu-9p |\n|---|"
    for (i = 1; i <= nv + 2; i++) printf "---|"
    printf "\n"
    for (w = 1; w <= 3; w++) {
      k = W[w]; printf "| %s |", name[k]
      for (i = 1; i <= nv; i++) {
        m[V[i]] = med(v[k, V[i]])
        if (m[V[i]] == "") printf " — |"; else printf " %s (%s–%s, n=%d) |", m[V[i]], lo, hi, cnt
      }
      a = m["minivmm"]; q = m["qemu-vufs"]; p = m["qemu-9p"]
      # throughput: higher is better; time (meta_s): lower is better
      if (a != "" && q != "") printf " %.2f× |", (k == "meta_s") ? q / a : a / q; else printf " — |"
      if (a != "" && p != "") printf " %.2f× |\n", (k == "meta_s") ? p / a : a / p; else printf " — |\n"
    }
  }' "$out/fs.tsv" | tee "$out/fs.txt"
echo "(ratios: throughput minivmm / the other, for the metadata time the other / minivmm: > 1 means minivmm is faster)" | tee -a "$out/fs.txt"
cat "$out/fs.env"
exit "$rc"
