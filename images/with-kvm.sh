#!/usr/bin/env bash
# with-kvm.sh COMMAND [ARG...] — run COMMAND where a Linux-capable /dev/kvm is:
# directly on a host with VT-x/AMD-V, else inside the nested KVM host
# (nested/run-in-nested-host.sh, whose environment knobs apply). Exits with
# COMMAND's status. Meant for end-to-end tests that boot real Linux guests.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[[ $# -gt 0 ]] || { echo "usage: $(basename "$0") COMMAND [ARG...]" >&2; exit 2; }
if [[ "$("$here/detect-kvm.sh")" == direct ]]; then
  exec "$@"
fi
exec "$here/nested/run-in-nested-host.sh" -- "$@"
