#!/usr/bin/env bash
# soak.sh [options] [-- EXTRA VMM ARGS] — measure how often the nested KVM host wedges
# per VMM start (issue #16): N starts of the smallest real guest in one nested host,
# continued in a fresh nested host after a wedge, until N starts are done.
#
#   --vmm minivmm|qemu   the VMM started each time (default minivmm; qemu = QEMU
#                        -M microvm,acpi=on, the peer, with the same guest)
#   --minivmm BIN        minivmm binary (default build/rel/vmm/minivmm of this tree)
#   -n N                 starts (default 40)
#   --deadline S         per-start deadline: `timeout -k 5 S` (default 40)
#   --cpus N --memory M  guest shape (default 1, 512M: minivmm's defaults)
#   --log-level L        minivmm's log level (default debug: a line before each KVM step
#                        of its start, so a wedge shows the step; info as in the issue)
#   --out DIR            results dir (default <cache>/soak/<vmm>-<time>); must be
#                        writable in the nested host (under <cache> is)
#
# The guest: Debian's cloud kernel + the test initramfs, scenario smoke (no disk),
# powering off at once; console to a file, minivmm logging on stderr, no disk.
# Inside the nested host each start appends "start I <epoch>" and then
# "end I <rc> <seconds>" to DIR/progress on the writable 9p export, so the record
# survives a wedge of the whole nested host. The nested host's init writes a heartbeat
# every 2 s; run-in-nested-host.sh kills a host whose heartbeat stopped for
# MINIVMM_NESTED_HEARTBEAT_TIMEOUT s (exit 122, default here 20) and this script then
# counts the start that was running as a wedge and goes on in a fresh nested host.
# All MINIVMM_NESTED_* knobs apply (CPU model, SMP, accel, kvm_amd parameters), and are
# written into the report.
#
# Report (stdout and DIR/report): starts, ok, failed (non-zero exit), hung (per-start
# deadline hit while the nested host was alive), wedged (nested host stopped), the
# wedge rate per start, nested hosts used, and for each wedge how far the VMM got
# (its info log, or the console for QEMU). Exit 0 when the soak ran (whatever the
# counts), 1 when it could not.
set -euo pipefail
# shellcheck source=../lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
root="$(cd "$MINIVMM_IMAGES_DIR/.." && pwd)"

vmm_kind=minivmm minivmm="$root/build/rel/vmm/minivmm" n=40 deadline=40 cpus=1 memory=512M level=debug
out="" inner=0 from=1 kernel="" initrd=""
extra=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --vmm) vmm_kind="$2"; shift 2 ;;
    --minivmm) minivmm="$2"; shift 2 ;;
    -n) n="$2"; shift 2 ;;
    --deadline) deadline="$2"; shift 2 ;;
    --cpus) cpus="$2"; shift 2 ;;
    --memory) memory="$2"; shift 2 ;;
    --log-level) level="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --inner) inner=1; shift ;;            # internal: the loop inside the nested host
    --from) from="$2"; shift 2 ;;         # internal
    --kernel) kernel="$2"; shift 2 ;;     # internal
    --initrd) initrd="$2"; shift 2 ;;     # internal
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    --) shift; extra=("$@"); break ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $vmm_kind == minivmm || $vmm_kind == qemu ]] || die "--vmm must be minivmm or qemu, not '$vmm_kind'"
[[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || die "-n must be a positive number: '$n'"
[[ $deadline =~ ^[0-9]+$ ]] || die "--deadline must be a number of seconds: '$deadline'"
cmdline="console=ttyS0 panic=-1 quiet initcall_blacklist=cmos_init minivmm.scenario=smoke minivmm.arg=nodisk minivmm.wait=0"

# --- inside the nested host: the starts -------------------------------------------
if [[ $inner == 1 ]]; then
  [[ -c /dev/kvm ]] || die "no /dev/kvm in the nested host"
  for ((i = from; i <= n; i++)); do
    log_f="$out/start-$i.log" con="$out/start-$i.console"
    echo "start $i $(date +%s.%N)" >>"$out/progress"
    t0="$(date +%s.%N)"
    rc=0
    if [[ $vmm_kind == minivmm ]]; then
      timeout -k 5 "$deadline" "$minivmm" --kernel "$kernel" --initrd "$initrd" --cpus "$cpus" \
        --memory "$memory" --serial "file=$con" --log-level "$level" --cmdline "$cmdline reboot=k" \
        "${extra[@]}" </dev/null >"$log_f" 2>&1 || rc=$?
    else
      timeout -k 5 "$deadline" qemu-system-x86_64 -M microvm,acpi=on,rtc=off -accel kvm -cpu host \
        -m "$memory" -smp "$cpus" -nodefaults -no-user-config -display none -no-reboot \
        -serial "file:$con" -kernel "$kernel" -initrd "$initrd" -append "$cmdline reboot=t" \
        "${extra[@]}" </dev/null >"$log_f" 2>&1 || rc=$?
    fi
    secs="$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')"
    echo "end $i $rc $secs" >>"$out/progress"
    # Keep the logs of the starts that went wrong only.
    [[ $rc == 0 ]] && rm -f "$log_f" "$con"
  done
  exit 0
fi

# --- on the host: prepare, run nested hosts until N starts are done, report -------
if [[ $vmm_kind == minivmm ]]; then
  minivmm="$(realpath -e "$minivmm" 2>/dev/null)" || die "minivmm binary '$minivmm' not found (--minivmm)"
  [[ -x $minivmm ]] || die "$minivmm is not executable"
fi
eval "$("$MINIVMM_IMAGES_DIR/fetch-kernel.sh" cloud)"
initrd="$("$MINIVMM_IMAGES_DIR/build-initramfs.sh" | tail -n1)"
[[ -n $out ]] || out="$MINIVMM_IMAGES_CACHE/soak/$vmm_kind-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$out"
out="$(realpath "$out")"
[[ ! -e $out/progress ]] || die "$out already holds a soak (progress exists); use a new --out"
export MINIVMM_NESTED_HEARTBEAT_TIMEOUT="${MINIVMM_NESTED_HEARTBEAT_TIMEOUT:-20}"
config="vmm=$vmm_kind cpus=$cpus memory=$memory deadline=${deadline}s"
[[ $vmm_kind == minivmm ]] && config+=" log=$level"
config+=" extra='${extra[*]}'"
config+=" nested: cpu=${MINIVMM_NESTED_CPU:-max,la57=off} smp=${MINIVMM_NESTED_SMP:-2} mem=${MINIVMM_NESTED_MEM:-3G}"
config+=" accel=${MINIVMM_NESTED_ACCEL:-tcg} kvm_amd='${MINIVMM_NESTED_KVM_AMD_PARAMS:-}'"
config+=" heartbeat_timeout=${MINIVMM_NESTED_HEARTBEAT_TIMEOUT}s"
load0="$(cut -d' ' -f1-3 /proc/loadavg)"
t_start=$SECONDS
log "$config; $n starts; results in $out; load $load0"

hosts=0 next=$from
: >"$out/wedges"
: >"$out/hosts"
while ((next <= n)); do
  hosts=$((hosts + 1))
  rc=0
  MINIVMM_NESTED_QUIET=1 "$MINIVMM_IMAGES_DIR/nested/run-in-nested-host.sh" bash "$0" --inner \
    --vmm "$vmm_kind" --minivmm "$minivmm" -n "$n" --from "$next" --deadline "$deadline" \
    --cpus "$cpus" --memory "$memory" --log-level "$level" --out "$out" --kernel "$KERNEL_IMAGE" --initrd "$initrd" \
    -- "${extra[@]}" >"$out/host-$hosts.out" 2>&1 || rc=$?
  last_start="$(awk '$1 == "start" { s = $2 } END { print s }' "$out/progress" 2>/dev/null)"
  last_end="$(awk '$1 == "end" { e = $2 } END { print e }' "$out/progress" 2>/dev/null)"
  echo "host $hosts from $next rc $rc last_start ${last_start:-none} last_end ${last_end:-none}" >>"$out/hosts"
  if [[ $rc == 122 || $rc == 123 ]]; then
    if [[ -n $last_start && $last_start != "$last_end" ]]; then
      kind=wedge
      [[ $rc == 123 ]] && kind=host-kernel-failure
      echo "$last_start $hosts $((last_start - next + 1)) $kind" >>"$out/wedges"
      log "start $last_start: nested host $hosts stopped ($kind, its start $((last_start - next + 1)))"
      next=$((last_start + 1))
    else
      # Stopped between starts (or before the first): count it, continue after the last end.
      echo "${last_end:-0}+ $hosts - $([[ $rc == 122 ]] && echo wedge || echo host-kernel-failure)-between-starts" >>"$out/wedges"
      log "nested host $hosts stopped between starts (after start ${last_end:-none})"
      next=$((${last_end:-$((next - 1))} + 1))
    fi
    continue
  fi
  if [[ $rc != 0 ]]; then
    log "error: nested host $hosts ended with $rc; its output:"
    sed 's/^/  | /' "$out/host-$hosts.out" >&2
    break
  fi
  next=$((n + 1))
done

# --- report -----------------------------------------------------------------------------
{
  awk -v cfg="$config" -v hosts="$hosts" -v wall=$((SECONDS - t_start)) -v l0="$load0" \
    -v l1="$(cut -d' ' -f1-3 /proc/loadavg)" -v wf="$out/wedges" '
    $1 == "start" { started[$2] = 1; ns++ }
    $1 == "end" { ended[$2] = 1; if ($3 == 0) { ok++; t += $4; if (min == "" || $4 < min) min = $4; if ($4 > max) max = $4 }
                  else if ($3 == 124 || $3 == 137) hung++; else failed++ }
    END {
      while ((getline line < wf) > 0) { split(line, f, " "); if (f[4] ~ /between/) between++; else wedged++ }
      printf "soak: %s\n", cfg
      printf "soak: starts %d, ok %d, failed %d, hung %d, wedged %d; wedge rate %d/%d = %.1f%% per start; nested hosts %d; wall %d s; load %s -> %s\n",
        ns, ok, failed, hung, wedged, wedged, ns, ns ? 100 * wedged / ns : 0, hosts, wall, l0, l1
      if (between) printf "soak: plus %d nested-host stop(s) between starts\n", between
      if (ok) printf "soak: ok starts took %.1f-%.1f s, mean %.1f s\n", min, max, t / ok
    }' "$out/progress"
  while read -r s h nth kind; do
    [[ -n $s ]] || continue
    what="(no log)"
    if [[ -f $out/start-$s.log ]]; then
      if [[ $vmm_kind == minivmm ]]; then
        what="$(grep -c . "$out/start-$s.log" || true) log lines; last: $(tail -n1 "$out/start-$s.log")"
        [[ -s $out/start-$s.log ]] || what="minivmm logged nothing (never reached its first guest entry)"
        grep -q 'entered the guest' "$out/start-$s.log" && what="entered the guest; $what"
      else
        what="console $(wc -c <"$out/start-$s.console" 2>/dev/null || echo 0) bytes; last: $(tr -d '\r' <"$out/start-$s.console" 2>/dev/null | tail -n1)"
      fi
    fi
    echo "soak: $kind at start $s (nested host $h, its start $nth): $what"
  done <"$out/wedges"
  for f in "$out"/start-*.log; do
    [[ -f $f ]] || continue
    s="${f##*/start-}" s="${s%.log}"
    grep -q "^$s " "$out/wedges" && continue
    echo "soak: start $s exit $(awk -v i="$s" '$1 == "end" && $2 == i { print $3 }' "$out/progress"): $(tail -n1 "$f")"
  done
} | tee "$out/report"
