#!/usr/bin/env bash
# Runs every minivmm test on a fresh machine: installs dependencies, then
#   1. builds with g++ and -Werror and runs all CTest tests (unit, KVM, end-to-end);
#   2. builds with clang, ASan and UBSan and runs the same unit tests under the sanitizers;
#   3. runs each libFuzzer target for a bounded time (MINIVMM_FUZZ_SECONDS, default 30).
#   --fresh-machine: 4. also runs the README's first command on a pristine Debian root
#   (tests/fresh-machine.sh --command default), as CI does on every submission.
# Ends with one summary line "summary: N passed, M failed". Exit status 0 only if all passed.
# Build trees go to $MINIVMM_BUILD (default: <repo>/build).
set -uo pipefail

fresh=0
for a in "$@"; do
  case "$a" in
    --fresh-machine) fresh=1 ;;
    -h | --help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "run-all: error: unknown argument '$a' (see --help)" >&2; exit 2 ;;
  esac
done

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MINIVMM_BUILD:-$root/build}
fuzz_seconds=${MINIVMM_FUZZ_SECONDS:-30}
# A fixed seed keeps CI's fuzz smoke repeatable (a finding reproduces with the same
# command); set MINIVMM_FUZZ_SEED=0 for a fresh random seed each run.
fuzz_seed=${MINIVMM_FUZZ_SEED:-1}
jobs=$(nproc)
passed=0
failed=0
failures=()

step() { printf '\n==== %s\n' "$*"; }
record() {  # record NAME STATUS
  if [[ $2 -eq 0 ]]; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    failures+=("$1")
  fi
}
# Adds the counts from a CTest run's "N tests failed out of M" line.
record_ctest() {  # record_ctest NAME LOG STATUS
  local line total bad
  line=$(grep -E 'tests failed out of [0-9]+' "$2" | tail -n 1)
  if [[ -z $line ]]; then
    record "$1: no CTest summary" 1
    return
  fi
  total=$(sed -E 's/.* out of ([0-9]+).*/\1/' <<<"$line")
  bad=$(sed -E 's/.* ([0-9]+) tests failed.*/\1/' <<<"$line")
  passed=$((passed + total - bad))
  failed=$((failed + bad))
  if ((bad > 0)); then
    failures+=("$1")
  elif (($3 != 0)); then
    record "$1: ctest exited $3" 1
  fi
}

step "dependencies"
groups=(core)
[[ $fresh == 1 ]] && groups+=(fresh)
"$root/tests/install-deps.sh" "${groups[@]}" || { echo "summary: 0 passed, 1 failed"; exit 1; }

step "g++ build (-Werror) and CTest"
# The test builds accept --disk fault=SPEC (MINIVMM_FAULT_INJECTION); release builds do not.
cmake -S "$root" -B "$build/gcc" -DMINIVMM_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DMINIVMM_FAULT_INJECTION=ON >/dev/null &&
  cmake --build "$build/gcc" -j"$jobs"
status=$?
record "g++ build" $status
if [[ $status -eq 0 ]]; then
  ctest --test-dir "$build/gcc" --output-on-failure -j"$jobs" 2>&1 | tee "$build/gcc/ctest.log"
  record_ctest "CTest (g++)" "$build/gcc/ctest.log" "${PIPESTATUS[0]}"
  # CTest hides the output of tests that pass; show what the end-to-end suite and the
  # skipping tests said, so that a skip is never silent.
  grep -hE '^e2e: |SKIPPED' "$build/gcc/Testing/Temporary/LastTest.log" 2>/dev/null | awk '!seen[$0]++' |
    sed 's/^/  /'
fi

step "clang build with ASan + UBSan + libFuzzer, unit tests under sanitizers"
CC=clang CXX=clang++ cmake -S "$root" -B "$build/clang-fuzz" -DMINIVMM_WERROR=ON -DMINIVMM_FUZZ=ON \
  -DMINIVMM_BENCH=OFF -DMINIVMM_FAULT_INJECTION=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null &&
  cmake --build "$build/clang-fuzz" -j"$jobs"
status=$?
record "clang sanitizer build" $status
if [[ $status -eq 0 ]]; then
  # End-to-end tests are the g++ run's business; here the libraries run under the sanitizers.
  ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir "$build/clang-fuzz" --output-on-failure -j"$jobs" -LE e2e 2>&1 |
    tee "$build/clang-fuzz/ctest.log"
  record_ctest "CTest (clang, sanitizers)" "$build/clang-fuzz/ctest.log" "${PIPESTATUS[0]}"

  step "fuzz smoke: ${fuzz_seconds}s per target, seed ${fuzz_seed}"
  for fuzzer in "$build"/clang-fuzz/tests/fuzz/fuzz_*; do
    [[ -x $fuzzer ]] || continue
    name=$(basename "$fuzzer")
    corpus="$build/clang-fuzz/corpus/$name"
    mkdir -p "$corpus"
    # The target's seeds and past findings (tests/fuzz/regressions/<target>) start the run
    # too; libFuzzer only reads that directory and writes new inputs to the first one.
    seeds=()
    [[ -d $root/tests/fuzz/regressions/$name ]] && seeds=("$root/tests/fuzz/regressions/$name")
    (cd "$build/clang-fuzz" && "$fuzzer" -max_total_time="$fuzz_seconds" -seed="$fuzz_seed" -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 "$corpus" "${seeds[@]}" >"$corpus.log" 2>&1)
    status=$?
    grep -E '^(Done|stat::number_of_executed_units)' "$corpus.log" | sed "s/^/$name: /"
    [[ $status -eq 0 ]] || tail -n 40 "$corpus.log"
    record "$name" $status
  done
fi

if [[ $fresh == 1 ]]; then
  step "fresh machine: the README's first command on a pristine Debian root"
  "$root/tests/fresh-machine.sh" --command default
  record "fresh machine (README command 1)" $?
fi

echo
[[ $failed -eq 0 ]] || printf 'failed: %s\n' "${failures[@]}"
echo "summary: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
