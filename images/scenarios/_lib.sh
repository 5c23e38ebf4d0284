# Helpers sourced by the scenario scripts (busybox sh). Not a scenario itself.
result() { echo "MINIVMM-RESULT $*"; }

# pattern LINES: the deterministic test pattern, 32 bytes per line
# ("minivmm-pattern-%015d\n"), so LINES=32768 is 1 MiB. build-disk.sh writes
# the same bytes on the host, so a guest can regenerate and compare them.
pattern() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "minivmm-pattern-%015d\n", i }'; }

sha256() { sha256sum | cut -d' ' -f1; }
