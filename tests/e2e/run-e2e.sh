#!/usr/bin/env bash
# run-e2e.sh MINIVMM_BINARY [PORT_CLIENT] — end-to-end tests: boot real Linux guests with
# minivmm and assert on what they report (CTest: e2e_linux, label e2e). PORT_CLIENT is the
# build's tests/e2e/port-client, the host end of the named-port case (skipped without it).
#
# 1. On this host (apt look-ups are slow under TCG): the Debian cloud kernel
#    (images/fetch-kernel.sh), the test initramfs (images/build-initramfs.sh), the
#    ext4 template disk (images/build-disk.sh) and the minimal kernel
#    (images/build-minimal-kernel.sh) with its module-less initramfs.
# 2. A run dir under the images cache (writable inside the nested host at the
#    same path): <cache>/e2e/run-<time>-<pid>/ — disk copies, per-boot console
#    and VMM logs. Kept when a case fails (path printed), else removed
#    (MINIVMM_E2E_KEEP=1 keeps it).
# 3. ONE `images/with-kvm.sh bash tests/e2e/suite.sh ...`: directly on hardware
#    KVM, else in the nested KVM host, which then boots only once for all cases.
#
# Environment: MINIVMM_E2E_ONLY="boot disk rng persist readonly rng-off multi reboot panic clean
#   minimal hvc0 port exit timeout vmlinux fs hostroot durability net-passt net-tap vsock" (subset),
#   MINIVMM_E2E_NET_VMM=qemu (the net and vsock cases under QEMU microvm instead of minivmm),
#   MINIVMM_E2E_MINIMAL=0 (skip the minimal kernel, loudly),
#   MINIVMM_E2E_MINIMAL_TIMEOUT (s to wait for building it, default 600; past that
#   the case is skipped and the build goes on in the background),
#   MINIVMM_E2E_BOOT_TIMEOUT (per boot, default 120 s), MINIVMM_CACHE, and the
#   MINIVMM_NESTED_* knobs of images/nested/run-in-nested-host.sh.
#   MINIVMM_E2E_DEBUG_WEDGE="S[:K]" (test aid: freeze the nested host S s after the
#   suite started, in the first K nested hosts, default 1; see "Nested host wedges").
#   MINIVMM_E2E_DEBUG_CRASH=CASE (test aid: CASE fails as if its guest had crashed, in
#   the first nested host only; see "Guest crashes in the nested host").
# Exit: 0 all cases passed (skips allowed), 1 a case failed, 2 bad usage or the
# inputs could not be prepared, else with-kvm.sh's status (122/123/124/125 nested host).
# When the nested host stops responding (122: its heartbeat stopped, issue #16) or its
# own kernel fails (123: a panic or soft lockup of the emulated machine) — neither is a
# test result — the suite reruns in a fresh nested host with a warning naming the
# interrupted case: only that case and those not yet run; results of the finished ones
# stand (each suite run lists them in <run dir>/results). One case may interrupt at most
# 3 nested hosts (the third time it fails: a case that freezes its host every time is
# a bug), the whole suite at most 5 (each costs a host boot and a rerun). The output
# ends with "e2e: nested-host restarts: N; cases rerun after a guest crash: M".
# A case whose guest triple-faulted, or hung with a vCPU running at its timeout, inside the
# nested host runs once more in a fresh one at the end and passes only if that run passes.
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
images="$root/images"
# shellcheck source=../../images/lib/common.sh
source "$images/lib/common.sh"
say() { echo "e2e: $*"; }
die() { echo "e2e: error: $*" >&2; exit 2; }

[[ $# -eq 1 || $# -eq 2 ]] || die "usage: $(basename "$0") MINIVMM_BINARY [PORT_CLIENT]"
vmm="$(realpath -e "$1" 2>/dev/null)" || die "$1 does not exist"
[[ -x $vmm ]] || die "$vmm is not executable"
port_client=()
if [[ $# -eq 2 ]]; then
  pc="$(realpath -e "$2" 2>/dev/null)" || die "$2 does not exist"
  [[ -x $pc ]] || die "$pc is not executable"
  port_client=(--port-client "$pc")
fi
t0=$SECONDS

# --- inputs, on the host ---------------------------------------------------------
load_kernel cloud
initrd="$("$images/build-initramfs.sh" | tail -n1)" || die "build-initramfs.sh failed"
template="$("$images/build-disk.sh" --size 64M | tail -n1)" || die "build-disk.sh failed"
say "inputs: kernel $KERNEL_IMAGE ($KERNEL_VERSION), initramfs $initrd, disk template $template"
# The same cloud kernel as an ELF file, for the vmlinux (PVH) case; cached next to it.
vmlinux="$("$images/extract-vmlinux.sh" "$KERNEL_IMAGE" | tail -n1)" || die "extract-vmlinux.sh failed"
# The host end of the net and vsock cases: the guest's own stream tool, built for here.
vsock_io="$(build_helper vsock-io)" || die "cannot build images/helpers/vsock-io.c"

minimal=()
if [[ ${MINIVMM_E2E_MINIMAL:-1} == 0 ]]; then
  minimal=(--minimal-skip "MINIVMM_E2E_MINIMAL=0")
elif [[ ! -x $images/build-minimal-kernel.sh ]]; then
  minimal=(--minimal-skip "images/build-minimal-kernel.sh does not exist")
else
  say "minimal kernel: images/build-minimal-kernel.sh (minutes the first time, cached afterwards)"
  # The first build takes 10-20 min on 2 busy cores. Wait up to
  # MINIVMM_E2E_MINIMAL_TIMEOUT s; past that, skip the case loudly but let the
  # build finish in the background, so that the next run finds it cached.
  mt="${MINIVMM_E2E_MINIMAL_TIMEOUT:-600}"
  mdir="$(mktemp -d "${TMPDIR:-/tmp}/minivmm-e2e-minimal.XXXXXX")"
  setsid "$images/build-minimal-kernel.sh" >"$mdir/out" 2>"$mdir/log" </dev/null &
  mpid=$!
  waited=0
  while kill -0 "$mpid" 2>/dev/null && ((waited < mt)); do sleep 2; waited=$((waited + 2)); done
  if kill -0 "$mpid" 2>/dev/null; then
    minimal=(--minimal-skip "build-minimal-kernel.sh still running after ${mt} s (MINIVMM_E2E_MINIMAL_TIMEOUT); left to finish in the background (pid $mpid, log $mdir/log), the next run will find it cached")
  elif wait "$mpid" && mk="$(tail -n1 "$mdir/out")" && [[ -f $mk ]]; then
    if mi="$("$images/build-initramfs.sh" --modules "" 2>>"$mdir/log" | tail -n1)" && [[ -f $mi ]]; then
      minimal=(--minimal-kernel "$mk" --minimal-initrd "$mi")
      say "minimal kernel $mk, initramfs $mi"
    else
      minimal=(--minimal-skip "build-initramfs.sh --modules \"\" failed: $(tail -n1 "$mdir/log")")
    fi
    rm -rf "$mdir"
  else
    minimal=(--minimal-skip "build-minimal-kernel.sh failed: $(tail -n1 "$mdir/log")")
  fi
fi
[[ ${minimal[0]} == --minimal-skip ]] && echo "e2e: WARNING: the minimal-kernel case will be SKIPPED: ${minimal[1]}" >&2

cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"
run="$cache/e2e/run-$(date +%Y%m%d-%H%M%S)-$$"
mkdir -p "$run" || die "cannot create $run"
say "prepared in $((SECONDS - t0)) s; run dir $run; KVM: $("$images/detect-kvm.sh")"

# --- the suite, where KVM runs Linux; a wedged nested host is replaced ------------
t1=$SECONDS
cd "$root" || die "cannot cd to $root"
mapfile -t all_cases < <(bash "$root/tests/e2e/suite.sh" --list-cases)
todo=()
for c in "${all_cases[@]}"; do
  [[ -z ${MINIVMM_E2E_ONLY:-} || " $MINIVMM_E2E_ONLY " == *" $c "* ]] && todo+=("$c")
done
for c in ${MINIVMM_E2E_ONLY:-}; do
  [[ " ${all_cases[*]} " == *" $c "* ]] || die "MINIVMM_E2E_ONLY: unknown case '$c' (cases: ${all_cases[*]})"
done
wedge="${MINIVMM_E2E_DEBUG_WEDGE:-}"
[[ -z $wedge || $wedge =~ ^[0-9]+(:[0-9]+)?$ ]] || die "MINIVMM_E2E_DEBUG_WEDGE must be S or S:K: '$wedge'"
wedge_s="${wedge%%:*}" wedge_k=1
[[ $wedge == *:* ]] && wedge_k="${wedge#*:}"
debug_crash="${MINIVMM_E2E_DEBUG_CRASH:-}"
unset MINIVMM_E2E_DEBUG_CRASH  # the first nested host only, not the rerun
run_suite() { # run_suite DIR ATTEMPT
  local env=(MINIVMM_E2E_ONLY="${todo[*]}")
  [[ -n $wedge && $2 -lt $wedge_k ]] && env+=(MINIVMM_NESTED_DEBUG_STOP_AFTER="$wedge_s")
  [[ -n $debug_crash && $2 == 0 ]] && env+=(MINIVMM_E2E_DEBUG_CRASH="$debug_crash")
  env "${env[@]}" "$images/with-kvm.sh" bash "$root/tests/e2e/suite.sh" --minivmm "$vmm" --kernel "$KERNEL_IMAGE" \
    --initrd "$initrd" --disk-template "$template" --run-dir "$1" "${minimal[@]}" "${port_client[@]}" \
    --vmlinux "$vmlinux" --kernel-modules "$KERNEL_MODULES" --vsock-io "$vsock_io"
}
# The freezes are TCG's, at random guest starts (README "Known issues": ~1 % of starts
# in the soak, QEMU microvm alike), and this suite starts ~75 guests and kills 20: about
# one per suite run is expected. So the bound is per case (3 hosts in a row lost to the
# same case fail it) and a larger one for the suite (time).
max_restarts=5 max_case_restarts=2 restarts=0 dir="$run"
declare -A case_restarts=()
n_ok=0 n_fail=0 n_skip=0 failed_cases=() retry=() retry_long=()
while :; do
  run_suite "$dir" "$restarts"
  status=$?
  done_cases=()
  if [[ -f $dir/results ]]; then
    while read -r short long result; do
      done_cases+=("$short")
      case "$result" in
        ok) n_ok=$((n_ok + 1)) ;;
        FAIL) n_fail=$((n_fail + 1)); failed_cases+=("$long") ;;
        RETRY) n_fail=$((n_fail + 1)); failed_cases+=("$long"); retry+=("$short"); retry_long+=("$long") ;;
        *) n_skip=$((n_skip + 1)) ;;
      esac
    done <"$dir/results"
  fi
  [[ $status == 122 || $status == 123 ]] || break
  left=()
  for c in "${todo[@]}"; do [[ " ${done_cases[*]} " == *" $c "* ]] || left+=("$c"); done
  what="stopped responding (no heartbeat)"
  [[ $status == 123 ]] && what="had its own kernel fail (panic or soft lockup)"
  if [[ ${#left[@]} -eq 0 ]]; then
    say "WARNING: the nested KVM host $what after all cases finished; their results stand"
    status=$((n_fail > 0 ? 1 : 0))
    break
  fi
  last_boot="$(tail -n1 "$dir/progress" 2>/dev/null | awk '{ print $2 }')"
  cr="${case_restarts[${left[0]}]:-0}"
  if ((cr >= max_case_restarts)); then
    say "error: the nested KVM host $what during case '${left[0]}'${last_boot:+ (boot $last_boot)} again: $((cr + 1)) nested hosts in a row failed in this case, giving up (not run: ${left[*]})"
    break
  fi
  if ((restarts >= max_restarts)); then
    say "error: the nested KVM host $what during case '${left[0]}'${last_boot:+ (boot $last_boot)}: $((restarts + 1)) nested hosts failed in this suite run, giving up (not run: ${left[*]})"
    break
  fi
  case_restarts[${left[0]}]=$((cr + 1))
  restarts=$((restarts + 1))
  rest=""
  ((${#left[@]} > 1)) && rest=" and the $((${#left[@]} - 1)) not yet run after it (${left[*]:1})"
  say "WARNING: the nested KVM host $what during case '${left[0]}'${last_boot:+ (boot $last_boot)}; rerunning '${left[0]}'$rest in a fresh nested host (restart $restarts of at most $max_restarts; ${case_restarts[${left[0]}]} of at most $max_case_restarts for this case)"
  todo=("${left[@]}")
  dir="$run/restart$restarts"
  mkdir -p "$dir" || die "cannot create $dir"
done
# A case whose guest triple-faulted, or hung with a vCPU running, in the nested host (the
# two ways TCG's emulated SVM has broken guests: README "Known issues") runs once more in a
# fresh nested host; it passes only if that run passes. Any other failure counts at once.
retried=0
if ((${#retry[@]} > 0)) && [[ $status == 0 || $status == 1 ]]; then
  retried=${#retry[@]}
  say "WARNING: a guest crashed in the nested KVM host in case(s) ${retry[*]} (their output is above); rerunning them once in a fresh nested host"
  todo=("${retry[@]}")
  dir="$run/retry"
  mkdir -p "$dir" || die "cannot create $dir"
  run_suite "$dir" "$((restarts + 1))"
  for i in "${!retry[@]}"; do
    again="$(awk -v c="${retry[$i]}" '$1 == c { r = $NF } END { print r }' "$dir/results" 2>/dev/null)"
    if [[ $again == ok ]]; then
      say "WARNING: ${retry_long[$i]}: passed on its rerun; the first run's guest crash is counted as the nested host's"
      n_fail=$((n_fail - 1)) n_ok=$((n_ok + 1))
      for j in "${!failed_cases[@]}"; do
        [[ ${failed_cases[$j]} == "${retry_long[$i]}" ]] && { unset 'failed_cases[j]'; break; }
      done
    else
      say "error: ${retry_long[$i]}: failed again on its rerun (${again:-not run})"
    fi
  done
  status=$((n_fail > 0 ? 1 : 0))
fi
if ((restarts > 0 || retried > 0)) && [[ $status == 0 || $status == 1 ]]; then
  status=0
  ((n_fail > 0)) && status=1
  summary="e2e: all nested hosts: $n_ok passed, $n_fail failed"
  ((n_skip > 0)) && summary+=", $n_skip skipped"
  ((n_fail > 0)) && summary+=" (failed: ${failed_cases[*]})"
  echo "$summary"
fi
say "suite (incl. nested host if any) took $((SECONDS - t1)) s; total $((SECONDS - t0)) s; exit $status"
if [[ $status == 0 && ${MINIVMM_E2E_KEEP:-0} != 1 ]]; then
  rm -rf "$run"
else
  say "logs kept in $run"
fi
say "nested-host restarts: $restarts; cases rerun after a guest crash: $retried"
exit "$status"
