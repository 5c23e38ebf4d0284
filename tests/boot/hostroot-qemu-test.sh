#!/usr/bin/env bash
# hostroot-qemu-test.sh PACK_HOSTROOT — a manual check (not a CTest: tests/boot/CMakeLists.txt says why) of minivmm's host-root guest
# init under QEMU microvm (hostroot-qemu.sh), checked case by case:
#   a command's stdout and stderr arrive apart and its status 0 or 3 comes back;
#   a command killed by SIGKILL reports 137; a missing working directory 125 with one
#   "minivmm-init: error:" line on the console and on the stderr port; the host's root is read-only, /etc is writable (overlay),
#   and nothing the guest writes reaches the host.
# Skips (exit 77) without root, QEMU, virtiofsd or the cached Debian cloud kernel. QEMU runs
# under /tmp/minivmm-nested.lock, as every QEMU run of the project does.
set -uo pipefail
pack="${1:?usage: hostroot-qemu-test.sh PACK_HOSTROOT}"
here="$(cd "$(dirname "$0")" && pwd)"
cache="${MINIVMM_CACHE:-$HOME/.cache/minivmm}/images"
skip() { echo "SKIPPED: $*"; exit 77; }
[[ $(id -u) == 0 ]] || skip "needs root (virtiofsd)"
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64"
[[ -x /usr/lib/qemu/virtiofsd ]] || skip "no /usr/lib/qemu/virtiofsd"
[[ -e $cache/cloud/vmlinuz && -e $cache/cloud/modules/modules.dep ]] ||
  skip "no cached cloud kernel (images/fetch-kernel.sh cloud)"

failures=0
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
# check NAME STATUS GREP... -- ARGS: runs hostroot-qemu.sh ARGS, wants exit STATUS and each
# extended regex of GREP in its report.
check() {
  local name="$1" want="$2"
  shift 2
  local patterns=()
  while [[ $1 != -- ]]; do patterns+=("$1"); shift; done
  shift
  local rc=0
  flock /tmp/minivmm-nested.lock "$here/hostroot-qemu.sh" "$pack" "$@" >"$out" 2>&1 || rc=$?
  local ok=1
  [[ $rc == "$want" ]] || ok=0
  for p in "${patterns[@]}"; do grep -Eq -- "$p" "$out" || { ok=0; echo "  missing: $p"; }; done
  if [[ $ok == 1 ]]; then
    echo "ok: $name (status $rc)"
  else
    echo "FAIL: $name: status $rc, wanted $want; report:"
    sed 's/^/  | /' "$out"
    failures=$((failures + 1))
  fi
}

check "stdout and stderr apart, status 3" 3 \
  '^--- stdout$' '^out-line$' '^--- exit port: 3$' \
  -- -- 'echo out-line; echo err-line >&2; exit 3'
grep -A1 -- '--- stderr' "$out" | grep -q '^err-line$' || { echo "FAIL: stderr not on its port"; failures=$((failures + 1)); }
grep -B100 -- '--- stderr' "$out" | grep -q '^err-line$' && { echo "FAIL: stderr on the stdout port"; failures=$((failures + 1)); }
check "status 0, read-only root, writable /etc, host's uname" 0 \
  "^$(basename "$(readlink -f "$cache/cloud/modules")")\$" 'Read-only file system' '^etc-ok$' \
  -- -- 'uname -r; touch /hostroot-probe 2>&1; echo x >/etc/hostroot-probe && echo etc-ok'
[[ -e /hostroot-probe || -e /etc/hostroot-probe ]] && { echo "FAIL: the guest wrote to the host"; failures=$((failures + 1)); }
check "killed by SIGKILL: 128+9" 137 -- -- 'kill -9 $$'
check "missing cwd: 125 and one error line" 125 \
  '^minivmm-init: error: cd /nonexistent-dir: No such file or directory$' \
  -- --cwd /nonexistent-dir -- 'echo never'
grep -A1 -- '--- stderr' "$out" | grep -q '^minivmm-init: error: cd /nonexistent-dir' ||
  { echo "FAIL: the init's error is not on the stderr port"; failures=$((failures + 1)); }
[[ $failures == 0 ]] || { echo "$failures failure(s)"; exit 1; }
echo "all host-root init checks passed"
