#!/usr/bin/env bash
# Installs, with apt, every Debian package that building and testing minivmm needs.
# Does nothing when all are present. Needs root (or sudo) only when something is missing.
set -euo pipefail

packages=(
  # build
  cmake make g++ clang pkg-config
  libcli11-dev libspdlog-dev catch2 liburing-dev libseccomp-dev libbenchmark-dev
  # fuzzing and sanitizer runtimes for clang
  libfuzzer-14-dev libclang-rt-14-dev
  # tests: ACPI table decompiler, benchmark peer
  acpica-tools fio
  # guest images and the nested KVM host for end-to-end tests
  qemu-system-x86 busybox-static e2fsprogs cpio xz-utils zstd
)
if [[ -n "${MINIVMM_EXTRA_PACKAGES:-}" ]]; then
  read -r -a extra <<<"$MINIVMM_EXTRA_PACKAGES"
  packages+=("${extra[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
[[ $(id -u) -eq 0 ]] || sudo=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
