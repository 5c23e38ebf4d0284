#!/usr/bin/env bash
# build-initramfs.sh [--modules "NAME..."] [--add-modules "NAME..."] [--flavour cloud|host]
#                    [--iperf3] [--out FILE]
#
# Builds the guest test initramfs (newc cpio, gzip) for the Debian cloud kernel (or, with
# --flavour host, for Debian's generic kernel, the nested host's, which has 9p too):
#   /bin/busybox (+ applet links)   from busybox-static
#   /init                           images/init.sh
#   /scenarios/*                    images/scenarios/*
#   /bin/outb-exit                  images/helpers/outb-exit.c, built static here (cc)
#   /bin/fs-bench                   images/helpers/fs-bench.c, likewise (bench/fs.sh)
#   /bin/vsock-io                   images/helpers/vsock-io.c, likewise: stdin/stdout over a
#                                   vsock, TCP or unix stream socket (the net and vsock cases)
#   /bin/iperf3 + its libraries     with --iperf3 only (bench/net.sh): the host's iperf3 and
#                                   what ldd lists, at their own paths (about 2 MB more)
#   /lib/modules/<kver>/...         the modules below and their dependencies
#   /lib/modules/load.list          load order (dependencies first, from modules.dep)
#
# Default modules: virtio_mmio virtio_blk ext4 virtio_rng virtio_console pvpanic-mmio fuse
# virtiofs virtio_net vsock vmw_vsock_virtio_transport (virtio_net pulls in net_failover and
# failover through modules.dep)
# (built-in ones, e.g. ext4 in the cloud kernel, are skipped automatically).
#
# Output (path printed on stdout):
#   <cache>/initramfs/<kver>-<hash>.cpio.gz   hash over kernel package version,
#   busybox, module list and every input file, so edits to a scenario rebuild it.
# --out FILE also copies the result there.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

modules="virtio_mmio virtio_blk ext4 virtio_rng virtio_console pvpanic-mmio fuse virtiofs"
modules+=" virtio_net vsock vmw_vsock_virtio_transport"
out=""
iperf3=0
flavour=cloud
while [[ $# -gt 0 ]]; do
  case "$1" in
    --modules) modules="$2"; shift 2 ;;
    --add-modules) modules="$modules $2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --flavour) flavour="$2"; shift 2 ;;
    --iperf3) iperf3=1; shift ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done

need cpio cpio
need gzip gzip
need cc build-essential
[[ $iperf3 == 0 ]] || need iperf3 iperf3
bb="$(busybox_path)"
[[ $flavour == cloud || $flavour == host ]] || die "--flavour must be cloud or host: '$flavour'"
load_kernel "$flavour"

here="$MINIVMM_IMAGES_DIR"
inputs=("$here/build-initramfs.sh" "$here/lib/common.sh" "$here/init.sh" "$here/helpers/outb-exit.c"
  "$here/helpers/fs-bench.c" "$here/helpers/vsock-io.c")
key="$({
  echo "$KERNEL_PKG $KERNEL_PKG_VERSION"
  echo "modules: $modules"
  if [[ $iperf3 == 1 ]]; then
    echo "iperf3: $(dpkg-query -W -f='${Version}' iperf3 libiperf0 2>/dev/null)"
    sha256sum <"$(command -v iperf3)"
  fi
  sha256sum <"$bb"
  hash_files "${inputs[@]}"
  hash_tree "$here/scenarios"
} | short_hash)"

cache="$MINIVMM_IMAGES_CACHE/initramfs"
img="$cache/$KERNEL_VERSION-$key.cpio.gz"
mkdir -p "$cache"
if [[ -f $img ]]; then
  log "cached: $img"
else
  log "building initramfs for $KERNEL_VERSION (modules: $modules)"
  stage="$(mktemp -d "$cache/.stage.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  install_busybox "$stage"
  mkdir -p "$stage"/{dev,proc,sys,tmp,root,mnt,etc} "$stage/lib/modules/$KERNEL_VERSION"
  install -m 0755 "$here/init.sh" "$stage/init"
  cc -static -Os -Wall -Werror -o "$stage/bin/outb-exit" "$here/helpers/outb-exit.c" ||
    die "cannot build the static helper outb-exit (cc -static: libc6-dev has libc.a)"
  cc -static -O2 -Wall -Werror -o "$stage/bin/fs-bench" "$here/helpers/fs-bench.c" ||
    die "cannot build the static helper fs-bench (cc -static)"
  cc -static -O2 -Wall -Werror -o "$stage/bin/vsock-io" "$here/helpers/vsock-io.c" ||
    die "cannot build the static helper vsock-io (cc -static)"
  if [[ $iperf3 == 1 ]]; then
    # Dynamically linked (libiperf, libcrypto, libsctp, libc): copied with what ldd lists.
    # Rebuilding it static would need iperf3's source; the host's binary is the one the
    # host side of bench/net.sh runs, so both ends are the same version.
    install_with_libs "$stage" "$(command -v iperf3)"
  fi
  cp -r "$here/scenarios" "$stage/scenarios"
  chmod 0755 "$stage"/scenarios/*
  mod_closure "$KERNEL_ROOT" "$KERNEL_VERSION" $modules >"$stage/lib/modules/load.list"
  while read -r m; do
    install -D -m 0644 "$KERNEL_MODULES/$m" "$stage/lib/modules/$KERNEL_VERSION/$m"
  done <"$stage/lib/modules/load.list"
  log "modules: $(tr '\n' ' ' <"$stage/lib/modules/load.list" | sed 's|kernel/[^ ]*/||g')"
  # The kernel opens /dev/console for init before anything is mounted; without
  # the node init starts with no stdio (init.sh also reopens it after devtmpfs).
  if [[ $(id -u) == 0 ]]; then mknod -m 600 "$stage/dev/console" c 5 1; fi
  echo "minivmm-test-initramfs $KERNEL_VERSION $key" >"$stage/etc/minivmm-initramfs"
  make_cpio "$stage" "$img"
  log "built $img ($(du -h "$img" | cut -f1))"
fi

if [[ -n $out ]]; then
  cp "$img" "$out"
  echo "$out"
else
  echo "$img"
fi
