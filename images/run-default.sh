#!/usr/bin/env bash
# README command 1. Installs dependencies, builds minivmm and boots the default guest.
# Until the VMM lands it builds everything and runs the virtio library's demonstration.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${MINIVMM_BUILD:-$root/build}/rel
"$root/tests/install-deps.sh"
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" -j"$(nproc)" --target queue_bench
echo "run-default: the VMM is not built yet; running the virtqueue benchmark instead" >&2
exec "$build/bench/queue_bench"
