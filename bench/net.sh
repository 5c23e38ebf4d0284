#!/usr/bin/env bash
# net.sh OUTDIR [RUNS] — guest networking and vsock, minivmm next to QEMU -M microvm on the
# same backend, side by side in one run:
#   tap     a tap (vnet_hdr) in a network namespace made here, static addresses;
#           minivmm --net tap=mvtap0, QEMU -netdev tap,vhost=off (userspace virtio-net, as
#           minivmm's; NET_BENCH_VMMS may add qemu-vhost: vhost=on, the kernel's datapath)
#   passt   minivmm --net passt (it starts passt itself), QEMU -netdev stream to a passt this
#           script starts (QEMU cannot pass --fd); the same passt binary
#   vsock   minivmm --vsock (hybrid, unix sockets on the host), QEMU vhost-vsock-device
#           (only where /dev/vhost-vsock exists)
# Every guest is the cloud kernel, 1 vCPU, 512 MiB, the initramfs of build-initramfs.sh
# --iperf3 (the host's iperf3 and its libraries), scenario images/scenarios/net-bench.
# Figures, all measured in the guest:
#   tx / rx Mbit/s   iperf3 -c (guest -> host) and -c -R (host -> guest), NET_BENCH_SECS s each
#                    (default 5), one TCP stream, against `iperf3 -s` in the namespace; the
#                    receiver's figure
#   rr p50 / p99 us  TCP request/response: 1 byte each way, NET_BENCH_RR (default 2000) times,
#                    the guest's vsock-io rr against vsock-io echo on the host, TCP_NODELAY
#                    (iperf3 has no request/response mode; --bidir is two streams, not
#                    latency): the round trip through both VMMs' notification paths
#   vsock tx / rx MB/s  256 MiB of zeros guest -> host and host -> guest (vsock-io -z / -d)
# RUNS rounds (default 3), each boots every VMM on every backend, VMMs alternating inside a
# backend (interleaved, so load changes hit both). With direct KVM the namespace is made on
# this host (traffic stays in it); else in the nested KVM host. Needs root there (netns).
# Writes OUTDIR/net.tsv (round, vmm, backend, metric, value), net.log (every console and VMM
# log), net.txt (medians, min-max, ratio minivmm / qemu) and net.env. MINIVMM_BIN (default
# build/rel/vmm/minivmm); NET_BENCH_VMMS (default "minivmm qemu"); NET_BENCH_BACKENDS (default
# "tap passt vsock"); NET_BENCH_TRACE=strace (syscall counts per VMM in net.log, for diagnosis:
# the figures of such a run are not comparable); NET_BENCH_MINIVMM_B=PATH with "minivmm-b" in
# NET_BENCH_VMMS: a second minivmm binary, interleaved with the first (an A/B of a device
# change; it is not in the ratio column). Outside /tmp: the nested host does not see the
# host's /tmp. The guest logs its interrupt counts before
# and after each iperf3 direction and the request/response run ("net-bench: irqs"). A minivmm without --net / --vsock (the devices not merged yet) gets no
# rows for those backends, and the run says so: its column stays "—".
# Nested-host runs of the project take /tmp/minivmm-nested.lock themselves; wrap in flock.
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
die() { echo "net.sh: error: $*" >&2; exit 2; }
say() { echo "net.sh: $*" >&2; }

if [[ ${1:-} == --inner ]]; then
  # --- inside the nested host (or directly on hardware KVM) -----------------------------
  shift
  work="$1" kernel="$2" initrd="$3" minivmm="$4" runs="$5" secs="$6" rr="$7" vmms="$8" backends="$9"
  vio="${10}" minivmm_b="${11:-}"
  [[ $(id -u) == 0 ]] || die "needs root (network namespaces)"
  ns="mvm-bench-$$"
  tmp="$(mktemp -d "${TMPDIR:-/tmp}/net-bench.XXXXXX")"
  chmod 755 "$tmp"
  cleanup() { ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null; ip netns del "$ns" 2>/dev/null; rm -rf "$tmp"; }
  trap cleanup EXIT
  ip netns add "$ns" || die "ip netns add failed"
  in=(ip netns exec "$ns")
  ip -n "$ns" link set lo up
  # passt's template: a dummy with the default route (its address becomes the guest's).
  ip -n "$ns" link add mvdummy0 type dummy && ip -n "$ns" addr add 10.0.2.15/24 dev mvdummy0 &&
    ip -n "$ns" link set mvdummy0 up && ip -n "$ns" route add default via 10.0.2.2 || die "dummy interface"
  ip -n "$ns" tuntap add dev mvtap0 mode tap vnet_hdr && ip -n "$ns" addr add 10.0.3.1/24 dev mvtap0 &&
    ip -n "$ns" link set mvtap0 up || die "tap"
  "${in[@]}" iperf3 -s -p 5201 >"$tmp/iperf3-server.log" 2>&1 &
  help="$("$minivmm" --help 2>&1)"
  log="$work/net.log" tsv="$work/net.tsv"
  : >"$log"
  printf 'round\tvmm\tbackend\tmetric\tvalue\n' >"$tsv"
  base="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init minivmm.wait=0 minivmm.scenario=net-bench"
  one() {  # one ROUND VMM BACKEND
    local r="$1" v="$2" b="$3" con="$tmp/console" rc=0 ops dev=() echo_pid="" sink="" passt_pid="" cid
    rm -f "$con" "$tmp"/*.err "$tmp/passt.log"  # each run's log has only its own output
    cid=$((1000 + RANDOM % 30000))
    case "$b" in
      tap) ops="static:10.0.3.2/24,iperf:10.0.3.1:5201:$secs,rr:10.0.3.1:7300:$rr" ;;
      passt) ops="dhcp,iperf:gw:5201:$secs,rr:gw:7300:$rr" ;;
      vsock) ops="vsock-tx:7400:256,vsock-rx:7401" ;;
    esac
    case "$v:$b" in
      minivmm*:tap) dev=(--net tap=mvtap0) ;;
      minivmm*:passt) dev=(--net passt) ;;
      minivmm*:vsock) dev=(--vsock "cid=$cid,socket=$tmp/v.sock") ;;
      qemu*:tap)
        local vh=off
        [[ $v == qemu-vhost ]] && vh=on
        dev=(-netdev "tap,id=n0,ifname=mvtap0,script=no,downscript=no,vhost=$vh" -device virtio-net-device,netdev=n0) ;;
      qemu*:passt)
        mkdir -p "$tmp/passt" && chown nobody "$tmp/passt"  # passt runs as nobody
        rm -f "$tmp/passt/s"
        "${in[@]}" passt -f -q -1 -s "$tmp/passt/s" >"$tmp/passt.log" 2>&1 &
        passt_pid=$!
        for ((i = 0; i < 100; i++)); do [[ -S $tmp/passt/s ]] && break; sleep 0.1; done
        dev=(-netdev "stream,id=n0,server=off,addr.type=unix,addr.path=$tmp/passt/s" -device virtio-net-device,netdev=n0) ;;
      qemu*:vsock) dev=(-device "vhost-vsock-device,guest-cid=$cid") ;;
    esac
    if [[ $b == vsock ]]; then
      local l="vsock:7400"
      [[ $v == minivmm* ]] && l="unix:$tmp/v.sock_7400"
      "$vio" -t 300 -d listen "$l" </dev/null >/dev/null 2>"$tmp/vsock-sink.err" &
      sink=$!
    else
      "${in[@]}" "$vio" -t 300 echo tcp:7300 2>"$tmp/echo.err" &
      echo_pid=$!
    fi
    # NET_BENCH_TRACE=strace: each VMM under `strace -f -c` (syscall counts of all its threads
    # and children, passt included for minivmm's --net passt), appended to net.log. The trace
    # slows the VMM: figures from such a run are for counting, not for the table.
    local trace=()
    [[ ${NET_BENCH_TRACE:-} == strace ]] && trace=(strace -f -c -o "$tmp/strace.txt")
    rm -f "$tmp/strace.txt"
    if [[ $v == minivmm* ]]; then
      local bin="$minivmm"
      [[ $v == minivmm-b ]] && bin="$minivmm_b"
      "${in[@]}" timeout 300 "${trace[@]}" "$bin" --log-level info --kernel "$kernel" --initrd "$initrd" --cpus 1 --memory 512M \
        --serial "file=$con" --cmdline "$base reboot=k minivmm.arg=$ops" "${dev[@]}" </dev/null >"$con.vmm" 2>&1 &
    else
      "${in[@]}" timeout 300 "${trace[@]}" qemu-system-x86_64 -M microvm,acpi=on,rtc=off -accel kvm -cpu host -m 512M -smp 1 \
        -nodefaults -no-user-config -display none -no-reboot -global virtio-mmio.force-legacy=false \
        -kernel "$kernel" -initrd "$initrd" -serial "file:$con" -append "$base reboot=t minivmm.arg=$ops" \
        "${dev[@]}" </dev/null >"$con.vmm" 2>&1 &
    fi
    local vpid=$!
    if [[ $b == vsock ]]; then
      while kill -0 "$vpid" 2>/dev/null && ! grep -aq 'bench.vsock_rx=ready' "$con" 2>/dev/null; do sleep 0.2; done
      local c="vsock:$cid:7401"
      [[ $v == minivmm* ]] && c="hybrid:$tmp/v.sock:7401"
      kill -0 "$vpid" 2>/dev/null && "$vio" -t 20 -z 256M connect "$c" </dev/null >/dev/null 2>>"$tmp/vsock-sink.err"
    fi
    wait "$vpid" || rc=$?
    for p in $echo_pid $sink $passt_pid; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    { echo "==== round $r $v $b: exit $rc"; tr -d '\r' <"$con" 2>/dev/null; echo "---- $v's own output"; cat "$con.vmm" 2>/dev/null
      cat "$tmp"/*.err "$tmp/passt.log" 2>/dev/null
      [[ -f $tmp/strace.txt ]] && { echo "---- $v under strace -f -c"; cat "$tmp/strace.txt"; }; } >>"$log"
    local got
    got="$(tr -d '\r' <"$con" 2>/dev/null | grep -o 'bench\.[a-z0-9_]*[Mm][Bb]ps=[0-9.]*\|bench\.rr_[a-z0-9]*_us=[0-9.]*' |
      sed 's/^bench\.//' | tr '=' '\t')"
    [[ -n $got ]] && printf '%s\n' "$got" | while IFS=$'\t' read -r k val; do printf '%s\t%s\t%s\t%s\t%s\n' "$r" "$v" "$b" "$k" "$val" >>"$tsv"; done
    say "round $r $v $b: exit $rc, $(printf '%s\n' "$got" | grep -c .) figures: $(printf '%s' "$got" | tr '\t\n' '= ')"
  }
  for ((r = 1; r <= runs; r++)); do
    for b in $backends; do
      [[ $b == vsock && ! -c /dev/vhost-vsock ]] && [[ $r == 1 ]] && say "no /dev/vhost-vsock here: QEMU's vsock rows are missing"
      for v in $vmms; do
        [[ $v == minivmm-b && -z $minivmm_b ]] && { [[ $r == 1 && $b == "${backends%% *}" ]] && say "minivmm-b needs NET_BENCH_MINIVMM_B"; continue; }
        if [[ $v == minivmm ]]; then
          opt="--net"
          [[ $b == vsock ]] && opt="--vsock"
          if [[ $help != *"$opt"* ]]; then
            [[ $r == 1 ]] && say "this minivmm has no $opt: no minivmm rows for $b (the device is not merged yet)"
            continue
          fi
        fi
        [[ $v == qemu-vhost && $b != tap ]] && continue
        [[ $v == qemu* && $b == vsock && ! -c /dev/vhost-vsock ]] && continue
        one "$r" "$v" "$b"
      done
    done
  done
  exit 0
fi

# --- on the host: inputs, then the nested part --------------------------------------------
[[ $# -ge 1 ]] || die "usage: net.sh OUTDIR [RUNS]"
out="$(mkdir -p "$1" && cd "$1" && pwd)" || die "cannot create $1"
runs="${2:-3}"
[[ $runs =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive number: '$runs'"
secs="${NET_BENCH_SECS:-5}" rr="${NET_BENCH_RR:-2000}"
vmms="${NET_BENCH_VMMS:-minivmm qemu}" backends="${NET_BENCH_BACKENDS:-tap passt vsock}"
minivmm="$(realpath -e "${MINIVMM_BIN:-$root/build/rel/vmm/minivmm}" 2>/dev/null)" ||
  die "no minivmm at ${MINIVMM_BIN:-$root/build/rel/vmm/minivmm} (build it, or set MINIVMM_BIN)"
minivmm_b=""
if [[ -n ${NET_BENCH_MINIVMM_B:-} ]]; then
  minivmm_b="$(realpath -e "$NET_BENCH_MINIVMM_B" 2>/dev/null)" || die "no minivmm at NET_BENCH_MINIVMM_B=$NET_BENCH_MINIVMM_B"
fi
for t in iperf3 passt qemu-system-x86_64; do command -v "$t" >/dev/null || die "no $t (tests/install-deps.sh core bench)"; done
source "$root/images/lib/common.sh"
load_kernel cloud
initrd="$("$root/images/build-initramfs.sh" --iperf3 | tail -n1)" || die "build-initramfs.sh --iperf3 failed"
vio="$(build_helper vsock-io)" || die "cannot build vsock-io"
work="$MINIVMM_IMAGES_CACHE/tmp/net-bench-$$"
mkdir -p "$work" || die "cannot create $work"
trap 'rm -rf "$work"' EXIT
load_start="$(uptime | sed 's/^ *//')"
say "kernel $KERNEL_IMAGE, initramfs $initrd; $runs rounds of $vmms on $backends; load: $load_start"
rc=0
MINIVMM_NESTED_QUIET=1 "$root/images/with-kvm.sh" bash "$here/net.sh" --inner "$work" "$KERNEL_IMAGE" "$initrd" \
  "$minivmm" "$runs" "$secs" "$rr" "$vmms" "$backends" "$vio" "$minivmm_b" || rc=$?
load_end="$(uptime | sed 's/^ *//')"
for f in net.tsv net.log; do [[ -f $work/$f ]] && cp "$work/$f" "$out/$f"; done
{
  echo "date=$(date -u '+%Y-%m-%d %H:%M:%S UTC') kvm=$("$root/images/detect-kvm.sh") runs=$runs iperf_secs=$secs rr_count=$rr inner_exit=$rc"
  echo "minivmm=$minivmm ($(git -C "$root" rev-parse --short HEAD 2>/dev/null))${minivmm_b:+ minivmm-b=$minivmm_b} qemu=$(qemu-system-x86_64 --version | head -n1)"
  echo "passt=$(dpkg-query -W -f='${Version}' passt 2>/dev/null) iperf3=$(dpkg-query -W -f='${Version}' iperf3 2>/dev/null)"
  echo "kernel=$KERNEL_IMAGE initrd=$initrd"
  echo "load at start: $load_start"
  echo "load at end: $load_end"
} >"$out/net.env"
[[ $(wc -l <"$out/net.tsv" 2>/dev/null || echo 0) -gt 1 ]] || { cat "$out/net.env" >&2; die "no results (nested part exited $rc; see $out/net.log)"; }
# The table: per backend and metric, each VMM's median (min-max, n) and minivmm / qemu.
awk -F'\t' -v vmms="$vmms" '
  NR == 1 { next }
  { v[$3 " " $4, $2] = v[$3 " " $4, $2] " " $5; if (!(($3 " " $4) in seen)) { seen[$3 " " $4] = 1; rows[++nr] = $3 " " $4 } }
  function med(s,   a, n, i, j, t) {
    n = split(s, a, " ")
    for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
    lo = a[1]; hi = a[n]; cnt = n
    return n == 0 ? "" : (n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2)
  }
  END {
    nv = split(vmms, V, " ")
    printf "| backend metric |"; for (i = 1; i <= nv; i++) printf " %s |", V[i]
    printf " minivmm / qemu |\n|---|"; for (i = 1; i <= nv + 1; i++) printf "---|"; printf "\n"
    for (k = 1; k <= nr; k++) {
      row = rows[k]; printf "| %s |", row
      for (i = 1; i <= nv; i++) {
        m[V[i]] = med(v[row, V[i]])
        if (m[V[i]] == "") printf " — |"; else printf " %s (%s–%s, n=%d) |", m[V[i]], lo, hi, cnt
      }
      a = m["minivmm"]; q = m["qemu"]
      # throughput: higher is better; latency (_us): lower is better
      if (a != "" && q != "" && a > 0 && q > 0) printf " %.2f× |\n", (row ~ /_us$/) ? q / a : a / q; else printf " — |\n"
    }
  }' "$out/net.tsv" | tee "$out/net.txt"
echo "(ratio: throughput minivmm / qemu, latency qemu / minivmm: > 1 means minivmm is faster)" | tee -a "$out/net.txt"
cat "$out/net.env"
exit "$rc"
