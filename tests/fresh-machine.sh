#!/usr/bin/env bash
# tests/fresh-machine.sh [--command default|test|all] [--keep] [--rebuild-root]
#
# Runs the README's first commands the way a new user would, on a pristine Debian 12
# (bookworm) root with nothing installed by hand: a green CI on a machine that has
# packages left over from earlier work proves nothing about a newcomer's first command.
#
# 1. A minbase root (`mmdebstrap --variant=minbase bookworm`, from the Debian archive
#    this machine's apt uses) is bootstrapped once and cached, keyed on the suite, the
#    variant, the archive URIs and mmdebstrap's version:
#      <cache>/fresh-machine/root-<key>/        (<cache> = ${MINIVMM_CACHE:-~/.cache/minivmm})
#    It is never modified: each run works on an overlay of it, thrown away afterwards.
# 2. `git archive HEAD` of this repository goes to /root/minivmm in the overlay: only
#    committed files, as a fresh clone has them.
# 3. Each command runs there in a private mount namespace under chroot, with /proc,
#    /sys, /dev (so /dev/kvm) and a fresh /tmp, an empty environment (HOME, PATH, LANG)
#    and no standard input. Nothing else comes from the host. The commands are read
#    from the README's first code block: line 1 is "default" (boot the default guest),
#    line 2 is "test" (run every test).
#
# Prints, per command: pass or FAIL, the time, and for a failure the first error line,
# then "fresh-machine: N passed, M failed". Exit status 0 only if every command passed.
# Logs: <cache>/fresh-machine/logs/<command>.log (the last run's).
#
#   --command C     default (CI runs this one), test, or all; default: default
#   --keep          keep the overlay (the root as the commands left it) for inspection
#   --rebuild-root  bootstrap the cached root again
# Downloaded .debs are kept in <cache>/fresh-machine/debs and bind-mounted as the root's
# apt archive cache, so a re-run downloads nothing; apt still installs every package.
# Needs root (mmdebstrap --mode=root, mounts, chroot); packages: tests/install-deps.sh fresh.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=../images/lib/common.sh
source "$repo/images/lib/common.sh"

command=default keep=0 rebuild=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --command) command="${2:-}"; shift 2 ;;
    --keep) keep=1; shift ;;
    --rebuild-root) rebuild=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
case "$command" in
  default | test) names=("$command") ;;
  all) names=(default test) ;;
  *) die "--command must be default, test or all, not '$command'" ;;
esac
[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap --mode=root, mount, chroot)"
need mmdebstrap mmdebstrap
need unshare util-linux
need git git
git -C "$repo" rev-parse --verify -q HEAD >/dev/null || die "$repo is not a git checkout with a commit"

# --- the README's commands ------------------------------------------------------
declare -A readme_cmd
i=0
while read -r line; do
  line="${line%%#*}"
  line="${line%"${line##*[![:space:]]}"}"
  [[ -n $line ]] || continue
  case $i in 0) readme_cmd[default]="$line" ;; 1) readme_cmd[test]="$line" ;; esac
  i=$((i + 1))
done < <(awk '/^```/ { if (inblock) exit; inblock = 1; next } inblock' "$repo/README.md")
for n in "${names[@]}"; do
  [[ -n ${readme_cmd[$n]:-} ]] || die "the README's first code block has no '$n' command (line $([[ $n == default ]] && echo 1 || echo 2))"
done

# --- the pristine root, cached ----------------------------------------------------
suite=bookworm variant=minbase
# The Debian archive this machine's apt uses: every bookworm* suite of origin Debian.
mapfile -t sources < <(apt-get indextargets --format '$(ORIGIN) $(REPO_URI) $(RELEASE) $(COMPONENT)' \
  'Created-By: Packages' 2>/dev/null | awk '$1 == "Debian" && $3 ~ /^bookworm/ { print "deb " $2 " " $3 " " $4 }' |
  LC_ALL=C sort -u)
[[ ${#sources[@]} -gt 0 ]] ||
  die "apt knows no Debian bookworm archive (run 'apt-get update' first; the sources need origin Debian)"
cache="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/fresh-machine"
key="$({
  echo "$suite $variant"
  printf '%s\n' "${sources[@]}"
  mmdebstrap --version
} | short_hash)"
base="$cache/root-$key"
mkdir -p "$cache/debs" "$cache/logs"
exec 9>"$cache/.lock"
flock -n 9 || die "another fresh-machine.sh run holds $cache/.lock"
if [[ $rebuild == 1 || ! -f $base.complete ]]; then
  rm -rf "$base" "$base.complete"
  log "bootstrapping a pristine $suite root ($variant) from: $(printf '%s; ' "${sources[@]}")"
  t0=$SECONDS
  mmdebstrap --quiet --mode=root --variant="$variant" "$suite" "$base" "${sources[@]}" >"$cache/logs/bootstrap.log" 2>&1 ||
    { tail -n 5 "$cache/logs/bootstrap.log" >&2; rm -rf "$base"; die "mmdebstrap failed (log: $cache/logs/bootstrap.log)"; }
  date -u '+%F %T UTC' >"$base.complete"
  log "root ready in $((SECONDS - t0)) s: $base"
else
  log "cached root: $base (bootstrapped $(cat "$base.complete"))"
fi

# --- one overlay per run, thrown away afterwards ----------------------------------
run="$(mktemp -d "$cache/run.XXXXXX")"
cleanup() {
  if [[ $keep == 1 ]]; then
    log "kept the overlay's upper layer: $run/upper (the root as the commands left it)"
  else
    rm -rf "$run"
  fi
}
trap cleanup EXIT
mkdir -p "$run/upper" "$run/work" "$run/merged"
commit="$(git -C "$repo" rev-parse --short HEAD)"
log "repository: git archive of $commit ($(git -C "$repo" log -1 --format=%s HEAD | cut -c1-60))"

# run_in_root LOG COMMAND: COMMAND in /root/minivmm of a fresh overlay of the root.
run_in_root() {
  unshare --mount --propagation private --fork -- bash -euc '
    base=$1 run=$2 debs=$3 repo=$4 cmd=$5
    r=$run/merged
    mount -t overlay overlay -o "lowerdir=$base,upperdir=$run/upper,workdir=$run/work" "$r"
    mkdir -p "$r/root/minivmm"
    git -C "$repo" archive --format=tar HEAD | tar -x -C "$r/root/minivmm"
    mount --bind "$debs" "$r/var/cache/apt/archives"
    mount -t proc proc "$r/proc"
    mount --rbind /sys "$r/sys"
    mount --rbind /dev "$r/dev"
    mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"
    exec chroot "$r" /usr/bin/env -i HOME=/root USER=root LOGNAME=root LANG=C.UTF-8 TERM=dumb \
      PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      /bin/bash -c "cd /root/minivmm && $cmd"
  ' _ "$base" "$run" "$cache/debs" "$repo" "$2" </dev/null >"$1" 2>&1
}

passed=0 failed=0
for n in "${names[@]}"; do
  cmd="${readme_cmd[$n]}"
  logf="$cache/logs/$n.log"
  log "running '$cmd' (README command '$n'; log: $logf)"
  t0=$SECONDS
  rc=0
  run_in_root "$logf" "$cmd" || rc=$?
  took=$((SECONDS - t0))
  if [[ $rc == 0 ]]; then
    echo "fresh-machine: $n: pass in ${took} s: $cmd"
    passed=$((passed + 1))
  else
    first="$(grep -m1 -aiE 'error|fatal|failed|not found|unbound variable|no such file' "$logf" || tail -n1 "$logf")"
    echo "fresh-machine: $n: FAIL (exit $rc) in ${took} s: $cmd"
    echo "fresh-machine: $n: first error line: ${first:-<no output>}"
    echo "---- last lines of $logf"
    tail -n 15 "$logf"
    echo "----"
    failed=$((failed + 1))
  fi
done
echo "fresh-machine: $passed passed, $failed failed"
((failed == 0))
