#!/usr/bin/env bash
# fetch-kernel.sh [cloud|host] — download and unpack a Debian kernel package.
#
#   cloud  linux-image-cloud-amd64 → the guest kernel booted by minivmm / QEMU microvm
#   host   linux-image-amd64       → the kernel of the nested KVM host (has kvm-amd, 9p)
#
# The metapackage is resolved to the real package (linux-image-<abi>-<flavour>)
# with apt-cache; its .deb is fetched with `apt-get download` (never installed)
# and unpacked with dpkg-deb into
#   <cache>/kernel/<package>_<version>/   (boot/, lib/modules/<kver>/ with modules.dep)
# plus the convenience links
#   <cache>/<flavour>            -> kernel/<package>_<version>
#   <cache>/<flavour>/vmlinuz    -> boot/vmlinuz-<kver>
#   <cache>/<flavour>/modules    -> lib/modules/<kver>
#
# stdout: shell assignments for `eval "$(images/fetch-kernel.sh cloud)"`:
#   KERNEL_FLAVOUR KERNEL_PKG KERNEL_PKG_VERSION KERNEL_VERSION KERNEL_ROOT
#   KERNEL_IMAGE KERNEL_MODULES
#
# MINIVMM_OFFLINE=1 (implied inside the nested host): no apt look-up; use the
# kernel last fetched for this flavour.
#
# Environment: MINIVMM_CACHE (cache root), MINIVMM_<FLAVOUR>_KERNEL_PKG to pin
# the real package name (e.g. MINIVMM_CLOUD_KERNEL_PKG=linux-image-6.1.0-56-cloud-amd64).
# Offline (apt cannot resolve): the newest complete unpacked kernel of that
# flavour in the cache is used, with a warning.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

flavour="${1:-cloud}"
case "$flavour" in
  cloud) meta=linux-image-cloud-amd64; pin="${MINIVMM_CLOUD_KERNEL_PKG:-}" ;;
  host) meta=linux-image-amd64; pin="${MINIVMM_HOST_KERNEL_PKG:-}" ;;
  -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) die "unknown flavour '$flavour' (expected: cloud or host)" ;;
esac

need dpkg-deb dpkg
need depmod kmod
need apt-get apt

cache="$MINIVMM_IMAGES_CACHE"
mkdir -p "$cache/kernel" "$cache/debs"
exec 9>"$cache/.fetch-kernel-$flavour.lock"
flock 9

# Resolve metapackage -> real package and its candidate version. Skipped inside
# the nested host (apt-cache under TCG takes ~40 s) and with MINIVMM_OFFLINE=1:
# the kernel the cache last resolved (<cache>/<flavour>) is used then.
pkg="$pin"
offline=0
[[ ${MINIVMM_OFFLINE:-0} == 1 || ${MINIVMM_IN_NESTED_HOST:-0} == 1 ]] && offline=1
if [[ $offline == 1 && -f $cache/$flavour/.complete ]]; then
  pkg=""
elif [[ -z $pkg ]]; then
  pkg="$(apt-cache depends "$meta" 2>/dev/null |
    awk '$1 == "Depends:" && $2 ~ /^linux-image-/ { print $2; exit }')" || true
fi
ver=""
if [[ -n $pkg ]]; then
  ver="$(apt-cache policy "$pkg" 2>/dev/null | awk '$1 == "Candidate:" { print $2; exit }')" || true
  [[ $ver == "(none)" ]] && ver=""
fi

if [[ $offline == 1 && -z $pkg && -f $cache/$flavour/.complete ]]; then
  dir="$(realpath "$cache/$flavour")"
elif [[ -z $pkg || -z $ver ]]; then
  # Offline or apt lists missing: fall back to what the cache already holds.
  fallback="$(find "$cache/kernel" -mindepth 2 -maxdepth 2 -name .complete -path "*-$flavour-amd64_*" \
    -printf '%T@ %h\n' 2>/dev/null | sort -n | tail -n1 | cut -d' ' -f2-)"
  [[ $flavour == host ]] && fallback="$(find "$cache/kernel" -mindepth 2 -maxdepth 2 -name .complete \
    -printf '%T@ %h\n' 2>/dev/null | grep -Ev -- '-(cloud|rt)-amd64_' | sort -n | tail -n1 | cut -d' ' -f2-)"
  [[ -n $fallback ]] || die "cannot resolve $meta with apt-cache (run 'apt-get update' first) and nothing is cached"
  log "warning: cannot resolve $meta with apt-cache; using cached $(basename "$fallback")"
  dir="$fallback"
else
  dir="$cache/kernel/${pkg}_${ver}"
  if [[ ! -f $dir/.complete ]]; then
    log "fetching $pkg $ver (for $meta)"
    deb=""
    # As root into a folder the _apt user cannot enter, apt would warn "Download is
    # performed unsandboxed as root"; say so instead of being told.
    sandbox=()
    [[ $(id -u) == 0 ]] && sandbox=(-o APT::Sandbox::User=root)
    (cd "$cache/debs" && apt-get download -q "${sandbox[@]}" "$pkg=$ver" >&2) ||
      die "apt-get download $pkg=$ver failed"
    deb="$(find "$cache/debs" -maxdepth 1 -name "${pkg}_${ver//:/%3a}_*.deb" | head -n1)"
    [[ -n $deb ]] || die "downloaded .deb for $pkg $ver not found in $cache/debs"
    rm -rf "$dir.tmp"
    trap 'rm -rf "$dir.tmp"' EXIT # a failure below leaves no half-unpacked tree
    mkdir -p "$dir.tmp"
    log "unpacking $(basename "$deb")"
    dpkg-deb -x "$deb" "$dir.tmp"
    kver="$(ls "$dir.tmp/lib/modules")"
    [[ -n $kver && $(wc -w <<<"$kver") -eq 1 ]] || die "unexpected lib/modules layout in $deb"
    # Debian generates modules.dep at install time (postinst); do it here.
    depmod -b "$dir.tmp" "$kver"
    ln -sfn "boot/vmlinuz-$kver" "$dir.tmp/vmlinuz"
    ln -sfn "lib/modules/$kver" "$dir.tmp/modules"
    printf '%s\n' "$pkg" "$ver" "$kver" >"$dir.tmp/.complete"
    rm -rf "$dir"
    mv "$dir.tmp" "$dir"
    rm -f "$deb" # the unpacked tree is what we keep; the .deb is 25-70 MB
  fi
fi

{ read -r pkg; read -r ver; read -r kver; } <"$dir/.complete"
ln -sfn "kernel/$(basename "$dir")" "$cache/$flavour"
[[ -f $dir/boot/vmlinuz-$kver ]] || die "$dir/boot/vmlinuz-$kver missing"

printf 'KERNEL_FLAVOUR=%q\n' "$flavour"
printf 'KERNEL_PKG=%q\n' "$pkg"
printf 'KERNEL_PKG_VERSION=%q\n' "$ver"
printf 'KERNEL_VERSION=%q\n' "$kver"
printf 'KERNEL_ROOT=%q\n' "$dir"
printf 'KERNEL_IMAGE=%q\n' "$dir/boot/vmlinuz-$kver"
printf 'KERNEL_MODULES=%q\n' "$dir/lib/modules/$kver"
