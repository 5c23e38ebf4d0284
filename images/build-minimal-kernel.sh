#!/usr/bin/env bash
# build-minimal-kernel.sh [--force] — build (once) the minimal fast-boot guest kernel.
#
# Debian's linux-source-6.1 (/usr/src/linux-source-6.1.tar.xz), x86_64:
#   make tinyconfig + images/minimal-kernel.config (scripts/kconfig/merge_config.sh)
#   + make olddefconfig, then bzImage. Everything built in, no modules: 8250
#   console, virtio-mmio with virtio_mmio.device= command-line devices (what
#   `minivmm --virtio-cmdline` passes) and ACPI (LNRO0005) discovery, virtio-blk,
#   ext4, KVM guest support (kvm-clock), ACPI + PCI, SMP. This is the kernel the
#   boot-time benchmarks use.
# After olddefconfig the script checks that the required options are =y, that
# CONFIG_MODULES is off and that every line of the fragment survived; otherwise
# it fails listing the offending options.
#
# Output (path printed on stdout, last line):
#   <cache>/minimal/<key>/bzImage    key = hash of the linux-source-6.1 package
#   <cache>/minimal/<key>/vmlinux    the same kernel as an ELF file (stripped), for
#                                    minivmm's ELF boot (PVH note: CONFIG_PVH)
#   <cache>/minimal/<key>/config     version, the fragment, this script and the
#   <cache>/minimal/<key>/build.log  compiler version
#   <cache>/minimal/current -> <key> (convenience link)
# A cache hit costs a dpkg-query and a few hashes. The source is unpacked into a
# temporary directory under <cache>/minimal and removed afterwards.
#
# Use with the test initramfs, which needs no modules for this kernel:
#   images/build-initramfs.sh --modules ""
#
#   --force                      rebuild even when cached
# Environment: MINIVMM_CACHE (cache root), MINIVMM_MINIMAL_JOBS (make -j, default
# nproc), MINIVMM_MINIMAL_KEEP_BUILD=1 (keep the source/object tree).
# Needs: apt-get install -y linux-source-6.1 build-essential bc bison flex libelf-dev lz4
set -euo pipefail
# The whole script is one brace group, parsed before it runs: editing this file
# cannot derail a running build (e.g. one waiting for the lock).
{
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

force=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --force) force=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

src_pkg=linux-source-6.1
tarball=/usr/src/linux-source-6.1.tar.xz
fragment="$MINIVMM_IMAGES_DIR/minimal-kernel.config"
script="$MINIVMM_IMAGES_DIR/build-minimal-kernel.sh"

# Must be =y in the final .config (CONFIG_ prefix omitted).
required=(
  64BIT SMP PRINTK TTY SERIAL_8250 SERIAL_8250_CONSOLE
  BLK_DEV_INITRD RD_GZIP DEVTMPFS DEVTMPFS_MOUNT PROC_FS SYSFS TMPFS SHMEM
  BINFMT_ELF BINFMT_SCRIPT MULTIUSER FUTEX EPOLL UNIX UNIX98_PTYS
  VIRTIO VIRTIO_MMIO VIRTIO_MMIO_CMDLINE_DEVICES BLOCK VIRTIO_BLK EXT4_FS
  HYPERVISOR_GUEST PARAVIRT KVM_GUEST ACPI PCI X86_LOCAL_APIC X86_IO_APIC
  HIGH_RES_TIMERS NO_HZ_IDLE SERIAL_8250_PNP
)
# Must be off.
forbidden=(MODULES)

[[ -f $fragment ]] || die "$fragment missing"
pkg_ver="$(dpkg-query -W -f '${Version}' "$src_pkg" 2>/dev/null)" || pkg_ver=""
[[ -n $pkg_ver && -f $tarball ]] ||
  die "$src_pkg is not installed; install it with: apt-get install -y $src_pkg"
need gcc build-essential
cc_ver="$(gcc --version | head -n1)"

# The fragment is read once: the build uses exactly the bytes the key covers.
fragment_text="$(cat "$fragment")"
key="$({
  echo "$src_pkg $pkg_ver"
  echo "$cc_ver"
  printf '%s\n' "$fragment_text" | sha256sum
  hash_files "$script"
} | short_hash)"
cache="$MINIVMM_IMAGES_CACHE/minimal"
out="$cache/$key"
mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9

if [[ $force == 0 && -f $out/.complete && -f $out/bzImage && -f $out/vmlinux ]]; then
  log "cached: $out/bzImage ($(sed -n 2p "$out/.complete"))"
  ln -sfn "$key" "$cache/current"
  echo "$out/bzImage"
  exit 0
fi

[[ ${MINIVMM_IN_NESTED_HOST:-0} == 1 ]] &&
  log "warning: building a kernel inside the nested host (TCG) is very slow; build it on the host first"
need make build-essential
need bc bc
need bison bison
need flex flex
need lz4 lz4
need xz xz-utils
need perl perl
[[ -f /usr/include/gelf.h ]] || die "libelf headers missing (objtool); install them with: apt-get install -y libelf-dev"

jobs="${MINIVMM_MINIMAL_JOBS:-$(nproc)}"
work="$(mktemp -d "$cache/.build-$key.XXXXXX")"
if [[ ${MINIVMM_MINIMAL_KEEP_BUILD:-0} != 1 ]]; then
  trap 'rm -rf "$work"' EXIT
else
  log "keeping the build tree: $work"
fi
src="$work/linux-source-6.1"
obj="$work/obj"
blog="$work/build.log"
t0=$SECONDS

log "unpacking $src_pkg $pkg_ver"
tar -xJf "$tarball" -C "$work"
[[ -f $src/Makefile ]] || die "unexpected layout of $tarball (no linux-source-6.1/Makefile)"
mkdir -p "$obj"
printf '%s\n' "$fragment_text" >"$work/minimal-kernel.config"
fragment="$work/minimal-kernel.config"

# Reproducible: no build user, host or date in the image.
export KBUILD_BUILD_USER=minivmm KBUILD_BUILD_HOST=minivmm KBUILD_BUILD_VERSION=1
export KBUILD_BUILD_TIMESTAMP="$src_pkg $pkg_ver"
kmake() { make -C "$src" O="$obj" ARCH=x86_64 "$@"; }

log "configuring: tinyconfig + $(basename "$fragment")"
{
  kmake tinyconfig
  "$src/scripts/kconfig/merge_config.sh" -m -O "$obj" "$obj/.config" "$fragment"
  kmake olddefconfig
} >"$blog" 2>&1 || {
  tail -n 30 "$blog" >&2
  cp "$blog" "$cache/failed-$key.log"
  die "configuration failed (log: $cache/failed-$key.log)"
}

# Check the result before spending minutes compiling.
cfg="$obj/.config"
bad=()
for o in "${required[@]}"; do
  grep -qx "CONFIG_$o=y" "$cfg" || bad+=("CONFIG_$o (required =y, got: $(grep -E "^(# )?CONFIG_${o}[= ]" "$cfg" || echo absent))")
done
for o in "${forbidden[@]}"; do
  grep -q "^CONFIG_$o=" "$cfg" && bad+=("CONFIG_$o (must be off, got: $(grep "^CONFIG_$o=" "$cfg"))")
done
while IFS= read -r line; do
  if [[ $line =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
    grep -qxF "$line" "$cfg" ||
      bad+=("${BASH_REMATCH[1]} (fragment: $line, got: $(grep -E "^(# )?${BASH_REMATCH[1]}[= ]" "$cfg" || echo absent))")
  elif [[ $line =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set ]]; then
    grep -q "^${BASH_REMATCH[1]}=" "$cfg" &&
      bad+=("${BASH_REMATCH[1]} (fragment: not set, got: $(grep "^${BASH_REMATCH[1]}=" "$cfg"))")
  fi
done <"$fragment"
if [[ ${#bad[@]} -gt 0 ]]; then
  for b in "${bad[@]}"; do log "  $b"; done
  cp "$cfg" "$cache/failed-$key.config"
  die "${#bad[@]} option(s) did not end up as required (a dependency missing from the fragment?); config: $cache/failed-$key.config"
fi

log "building bzImage with -j$jobs ($(grep -c '=y$' "$cfg") options =y)"
t1=$SECONDS
kmake -j"$jobs" bzImage vmlinux >>"$blog" 2>&1 || {
  tail -n 40 "$blog" >&2
  cp "$blog" "$cache/failed-$key.log"
  die "build failed (log: $cache/failed-$key.log)"
}
build_s=$((SECONDS - t1))
release="$(cat "$obj/include/config/kernel.release")"

rm -rf "$out.tmp"
mkdir -p "$out.tmp"
cp "$obj/arch/x86/boot/bzImage" "$out.tmp/bzImage"
objcopy --strip-debug "$obj/vmlinux" "$out.tmp/vmlinux"
cp "$cfg" "$out.tmp/config"
cp "$blog" "$out.tmp/build.log"
printf '%s\n' "$release" "$release, $src_pkg $pkg_ver, $(stat -c %s "$out.tmp/bzImage") bytes, built in ${build_s}s" \
  >"$out.tmp/.complete"
rm -rf "$out"
mv "$out.tmp" "$out"
ln -sfn "$key" "$cache/current"
rm -f "$cache/failed-$key.config" "$cache/failed-$key.log"
log "built $out/bzImage ($release, $(du -h "$out/bzImage" | cut -f1), compile ${build_s}s, total $((SECONDS - t0))s)"
echo "$out/bzImage"
exit 0
}
