# shellcheck shell=bash
# Shared helpers for the images/ scripts. Sourced, never executed.
#
# Everything these scripts produce lives outside the source tree, under
#   ${MINIVMM_CACHE:-$HOME/.cache/minivmm}/images
# and is keyed by its inputs (package versions, hashes of scripts and content),
# so re-running a script with unchanged inputs is a cache hit.

MINIVMM_IMAGES_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MINIVMM_IMAGES_CACHE="${MINIVMM_CACHE:-${HOME:-/root}/.cache/minivmm}/images"

log() { printf '[%s] %s\n' "$(basename "$0")" "$*" >&2; }
die() { printf '[%s] error: %s\n' "$(basename "$0")" "$*" >&2; exit 1; }

# need CMD PACKAGE: stop with one line naming the package when a tool is missing. Every
# package named here is in the list of tests/install-deps.sh, which installs them all.
need() {
  command -v "$1" >/dev/null 2>&1 && return 0
  [[ -x "/usr/sbin/$1" || -x "/sbin/$1" ]] && return 0
  die "'$1' not found (Debian package $2); install it with tests/install-deps.sh or apt-get install -y $2"
}

# load_kernel FLAVOUR: run fetch-kernel.sh FLAVOUR and set its KERNEL_* variables here, or
# stop the calling script when it fails (`eval "$(fetch-kernel.sh)"` would go on without them).
load_kernel() {
  local vars
  vars="$("$MINIVMM_IMAGES_DIR/fetch-kernel.sh" "$1")" || die "fetch-kernel.sh $1 failed (see above)"
  eval "$vars"
}

# Short content hash of files/strings given on stdin.
short_hash() { sha256sum | cut -c1-16; }

# hash_files FILE...: one short hash over the names and contents of the files.
hash_files() {
  local f
  for f in "$@"; do
    printf '%s\n' "$(basename "$f")"
    sha256sum <"$f"
  done | short_hash
}

# hash_tree DIR: short hash over relative paths, modes and contents of DIR.
hash_tree() {
  (cd "$1" && find . -mindepth 1 -printf '%P %y %m %l\n' | LC_ALL=C sort &&
    find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum) | short_hash
}

busybox_path() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    if [[ -x $b ]] && file_is_static "$b"; then
      echo "$b"
      return 0
    fi
  done
  die "a statically linked busybox is needed (Debian package busybox-static); install it with tests/install-deps.sh or apt-get install -y busybox-static"
}

file_is_static() {
  # A static binary has no PT_INTERP; ldd says "not a dynamic executable".
  ! LC_ALL=C ldd "$1" >/dev/null 2>&1
}

busybox_version() { "$(busybox_path)" 2>&1 | head -n1 | awk '{print $2}'; }

# mod_closure MODROOT KVER NAME...: print the module files (paths relative to
# MODROOT/lib/modules/KVER) needed to load NAME..., dependencies first, each
# once. Names that are built into the kernel are skipped; an unknown name is an
# error. Uses modules.dep and the "pre:" entries of modules.softdep.
mod_closure() {
  local root="$1" kver="$2"
  shift 2
  local mdir="$root/lib/modules/$kver"
  [[ -f $mdir/modules.dep ]] || die "$mdir/modules.dep missing (run fetch-kernel.sh)"
  awk -v names="$*" '
    function norm(s) { gsub(/-/, "_", s); return s }
    function modname(p,   n) { n = p; sub(/.*\//, "", n); sub(/\.ko(\.[a-z]+)?$/, "", n); return norm(n) }
    FILENAME ~ /modules\.builtin$/ { builtin[modname($0)] = 1; next }
    FILENAME ~ /modules\.softdep$/ {
      if ($1 != "softdep") next
      m = norm($2); pre = 0
      for (i = 3; i <= NF; i++) {
        if ($i == "pre:") { pre = 1; continue }
        if ($i == "post:") { pre = 0; continue }
        if (pre) soft[m] = soft[m] " " norm($i)
      }
      next
    }
    FILENAME ~ /modules\.alias$/ {
      if ($1 == "alias" && !(norm($2) in alias)) alias[norm($2)] = norm($3)
      next
    }
    {
      key = $1; sub(/:$/, "", key)
      n = modname(key); path[n] = key
      deps[n] = ""
      for (i = 2; i <= NF; i++) deps[n] = deps[n] " " modname($i)
    }
    function visit(n,   a, k, i) {
      if (n in done) return
      if (!(n in path) && (n in alias)) n = alias[n]
      if (n in done) return
      if (!(n in path)) {
        if (n in builtin) { done[n] = 1; return }
        printf "unknown module: %s\n", n > "/dev/stderr"; bad = 1; return
      }
      done[n] = 1
      k = split(soft[n], a, " "); for (i = 1; i <= k; i++) if (a[i] != "") visit(a[i])
      k = split(deps[n], a, " "); for (i = 1; i <= k; i++) if (a[i] != "") visit(a[i])
      print path[n]
    }
    END {
      k = split(names, want, " ")
      for (i = 1; i <= k; i++) visit(norm(want[i]))
      exit bad
    }
  ' "$mdir/modules.builtin" "$mdir/modules.softdep" "$mdir/modules.alias" "$mdir/modules.dep"
}

# make_cpio STAGE OUT: pack STAGE as a gzip'd newc cpio owned by root, with
# sorted names and fixed timestamps so equal inputs give equal bytes.
make_cpio() {
  local stage="$1" out="$2"
  need cpio cpio
  find "$stage" -mindepth 1 -exec touch -h -d @0 {} +
  (cd "$stage" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort |
    cpio --quiet -o -H newc -R 0:0 --reproducible) | gzip -n -9 >"$out.tmp"
  mv -f "$out.tmp" "$out"
}

# install_busybox STAGE: static busybox at STAGE/bin/busybox plus one symlink
# per applet under bin/.
install_busybox() {
  local stage="$1" bb applet
  bb="$(busybox_path)"
  mkdir -p "$stage/bin"
  cp "$bb" "$stage/bin/busybox"
  for applet in $("$bb" --list); do
    [[ $applet == busybox ]] && continue
    ln -sf busybox "$stage/bin/$applet"
  done
}

# build_helper NAME: images/helpers/NAME.c built static (cc -static -O2) into
# <cache>/helpers/NAME-<hash of the source>, once; prints the path. For the host side of a
# test that uses the same tool as the guest (vsock-io), where / may be read-only (nested).
build_helper() {
  local src="$MINIVMM_IMAGES_DIR/helpers/$1.c" out
  [[ -f $src ]] || die "no helper source $src"
  out="$MINIVMM_IMAGES_CACHE/helpers/$1-$(hash_files "$src")"
  if [[ ! -x $out ]]; then
    mkdir -p "$(dirname "$out")"
    cc -static -O2 -Wall -Werror -o "$out.tmp.$$" "$src" ||
      die "cannot build the static helper $1 (cc -static: libc6-dev has libc.a)"
    mv "$out.tmp.$$" "$out"
  fi
  echo "$out"
}

# install_with_libs STAGE BINARY: BINARY at STAGE/bin/ plus every shared library ldd names
# (and the dynamic loader) at its own path under STAGE, so a dynamically linked host tool
# (iperf3) runs in the busybox initramfs unchanged.
install_with_libs() {
  local stage="$1" bin="$2" lib
  install -D -m 0755 "$bin" "$stage/bin/$(basename "$bin")"
  for lib in $(LC_ALL=C ldd "$bin" | awk '/=> \// { print $3 } /^\t\// { print $1 }'); do
    [[ -f $stage$lib ]] || install -D -m 0755 "$(realpath "$lib")" "$stage$lib"
  done
}
