#!/usr/bin/env bash
# nested-wedge.sh — the nested KVM host's wedge detection (issue #16), for CTest
# (e2e_nested_wedge, label e2e): a host frozen on purpose (SIGSTOP of QEMU,
# MINIVMM_NESTED_DEBUG_STOP_AFTER) must be killed with exit 122 and "nested host
# stopped responding" well within a minute, and a live host whose command is quiet for
# longer than the heartbeat timeout must not be. Skipped, saying why, where the KVM is
# hardware KVM (no nested host there).
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
run="$root/images/nested/run-in-nested-host.sh"
if [[ "$("$root/images/detect-kvm.sh")" == direct ]]; then
  echo "e2e: nested-host-wedge SKIPPED: hardware KVM here, the nested host is not used"
  exit 0
fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fails=0
check() { # check WHAT OK?
  if [[ $2 == 0 ]]; then echo "e2e: nested-host-wedge $1 ok"; else echo "e2e: nested-host-wedge $1 FAIL"; fails=$((fails + 1)); fi
}

# 1. Frozen 2 s after the command started, 10 s heartbeat timeout.
t0=$SECONDS
MINIVMM_NESTED_QUIET=1 MINIVMM_NESTED_DEBUG_STOP_AFTER=2 MINIVMM_NESTED_HEARTBEAT_TIMEOUT=10 \
  "$run" sh -c 'echo alive; sleep 120; echo not-frozen' >"$tmp/out" 2>"$tmp/err"
rc=$? took=$((SECONDS - t0))
echo "e2e:   frozen host: exit $rc after ${took}s"
[[ $rc == 122 ]]; check "frozen host exits 122 (got $rc)" $?
grep -q "nested host stopped responding" "$tmp/err"; check "says 'nested host stopped responding'" $?
grep -qx alive "$tmp/out" && ! grep -q not-frozen "$tmp/out"; check "the command ran, then the host froze" $?
((took < 60)); check "stopped within a minute (${took}s)" $?
((fails == 0)) || sed 's/^/  | /' "$tmp/err"

# 2. Alive but quiet for 15 s with the same 10 s timeout: not a wedge.
MINIVMM_NESTED_QUIET=1 MINIVMM_NESTED_HEARTBEAT_TIMEOUT=10 \
  "$run" sh -c 'sleep 15; echo done; exit 7' >"$tmp/out" 2>"$tmp/err"
rc=$?
[[ $rc == 7 ]] && grep -qx done "$tmp/out"; check "a quiet live host keeps its command's status (7, got $rc)" $?
((fails == 0)) || sed 's/^/  | /' "$tmp/err"
exit $((fails > 0))
