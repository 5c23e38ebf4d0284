#!/usr/bin/env bash
# install-deps.sh [--list] [GROUP...] — the one list of Debian packages the project's
# scripts use, and the one place that installs them (apt-get update first).
#
# Groups (default: core):
#   core   build, unit/KVM/fuzz/end-to-end tests, guest images, the nested KVM host and the
#          minimal kernel: what images/run-default.sh and tests/run-all.sh need
#   bench  what only the benchmarks add: fio, gnuplot, python3 (QEMU is in core), iperf3
#          (bench/net.sh: the host side, and packed into its guest initramfs)
#   fresh  what tests/fresh-machine.sh adds: mmdebstrap, git
#   all    every group
# Installs only what is missing and does nothing when all are present; needs root (or
# sudo) only then. --list prints the groups' packages, one a line, and installs nothing.
# MINIVMM_EXTRA_PACKAGES="a b" adds packages.
set -euo pipefail

core=(
  # build
  cmake make g++ clang pkg-config binutils
  libcli11-dev libspdlog-dev catch2 liburing-dev libseccomp-dev libbenchmark-dev
  # fuzzing and sanitizer runtimes for clang
  libfuzzer-14-dev libclang-rt-14-dev
  # tests: the ACPI table decompiler
  acpica-tools
  # guest images (kernel .debs unpacked, depmod, initramfs, ext4) and the nested KVM host
  qemu-system-x86 busybox-static kmod e2fsprogs cpio gzip xz-utils zstd
  # /usr/lib/qemu/virtiofsd (--fs, the e2e case fs, bench/fs.sh); qemu-system-x86 pulls it
  # in, named here since minivmm starts it itself
  qemu-system-common
  # the minimal guest kernel (images/build-minimal-kernel.sh)
  linux-source-6.1 build-essential bc bison flex libelf-dev lz4 perl
  # the network e2e cases (net-passt, net-tap): passt (minivmm's --net passt starts it), ip
  # (netns, tuntap, dummy), socat (TCP to and from the guest), python3 (http.server); libc6-dev
  # for the static vsock-io helper is in build-essential
  passt iproute2 socat python3
)
bench=(fio gnuplot-nox python3 iperf3)
fresh=(mmdebstrap git)

list=0
groups=()
for a in "$@"; do
  case "$a" in
    --list) list=1 ;;
    core | bench | fresh) groups+=("$a") ;;
    all) groups+=(core bench fresh) ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "install-deps: error: unknown group '$a' (core, bench, fresh, all)" >&2; exit 2 ;;
  esac
done
[[ ${#groups[@]} -gt 0 ]] || groups=(core)

packages=()
for g in "${groups[@]}"; do
  declare -n group="$g"
  packages+=("${group[@]}")
done
if [[ -n ${MINIVMM_EXTRA_PACKAGES:-} ]]; then
  read -r -a extra <<<"$MINIVMM_EXTRA_PACKAGES"
  packages+=("${extra[@]}")
fi
if [[ $list == 1 ]]; then
  printf '%s\n' "${packages[@]}" | awk '!seen[$0]++'
  exit 0
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[[ ${#missing[@]} -eq 0 ]] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null 2>&1 ||
    { echo "install-deps: error: not root and no sudo; as root run: apt-get install -y ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
"${sudo[@]}" apt-get update -qq >"$log" 2>&1 ||
  { tail -n 5 "$log" >&2; echo "install-deps: error: apt-get update failed" >&2; exit 1; }
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1 ||
  { tail -n 10 "$log" >&2; echo "install-deps: error: apt-get install ${missing[*]} failed" >&2; exit 1; }
