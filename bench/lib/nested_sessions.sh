# Sourced by bench scripts that run bench/guest_run.py in a nested KVM host for a long time
# (boot-formats.sh, smp-flake.sh). Needs $root, $here and $work set by the caller.

# nested_sessions NAME MAX GUEST_RUN_ARGS...: runs `guest_run.py GUEST_RUN_ARGS --progress
# $work/progress` through images/with-kvm.sh. A nested host that dies mid-run (README,
# "Known issues") ends the session with $work/progress still there: the boot under way is
# recorded in $work/NAME.failures.txt with the runner's words (every line it said, the last
# 6 of the host console it shows), and a fresh session goes on with --resume, which repeats
# the incomplete runs; at most MAX sessions in all. Sets $sessions and $rc (the last
# runner's exit status).
nested_sessions() {
  local name="$1" max="$2"
  shift 2
  local resume=()
  sessions=0 rc=0
  while ((sessions < max)); do
    sessions=$((sessions + 1))
    rc=0
    MINIVMM_NESTED_QUIET=1 "$root/images/with-kvm.sh" /usr/bin/python3 "$here/guest_run.py" "$@" \
      --progress "$work/progress" "${resume[@]}" 2>"$work/runner.err" || rc=$?
    cat "$work/runner.err" >&2
    [[ -f $work/progress ]] || break
    {
      echo "==== $(cat "$work/progress"): the nested host session ended during this boot (session $sessions, runner exit $rc); the runner said:"
      grep -F '[run-in-nested-host.sh]' "$work/runner.err" || true
      grep -E '^  \|' "$work/runner.err" | tail -n 6 || true
    } >>"$work/$name.failures.txt"
    rm -f "$work/progress"
    resume=(--resume)
  done
}
