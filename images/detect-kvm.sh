#!/usr/bin/env bash
# detect-kvm.sh — how this machine can run real Linux guests. Prints one word:
#   direct  /dev/kvm is usable and backed by hardware virtualization (VT-x/AMD-V:
#           kvm_intel or kvm_amd loaded, no kvm_pvm): run guests right here.
#   nested  /dev/kvm is PVM (/sys/module/kvm_pvm exists: it cannot boot an
#           unmodified Linux) or there is no usable /dev/kvm: run the test through
#           images/nested/run-in-nested-host.sh.
# The reason goes to stderr with -v. Always exits 0 (callers branch on the word).
set -euo pipefail

verbose=0
[[ ${1:-} == -v ]] && verbose=1
say() { [[ $verbose == 1 ]] && echo "detect-kvm: $*" >&2; return 0; }

if [[ -d /sys/module/kvm_pvm ]]; then
  say "/sys/module/kvm_pvm present: /dev/kvm is PVM (no hardware virtualization)"
  echo nested
elif [[ ! -c /dev/kvm ]]; then
  say "no /dev/kvm"
  echo nested
elif [[ ! -r /dev/kvm || ! -w /dev/kvm ]]; then
  say "/dev/kvm is not readable and writable by $(id -un)"
  echo nested
elif [[ -d /sys/module/kvm_intel || -d /sys/module/kvm_amd ]]; then
  say "hardware KVM ($(cd /sys/module && ls -d kvm_intel kvm_amd 2>/dev/null | tr '\n' ' '))"
  echo direct
else
  say "/dev/kvm without kvm_intel/kvm_amd or kvm_pvm: assuming it runs Linux"
  echo direct
fi
