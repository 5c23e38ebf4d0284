#!/usr/bin/env bash
# build-disk.sh [--size SIZE] [--pattern-mib N] [--content DIR] [--out FILE]
#
# Builds an ext4 disk image (raw) with `mkfs.ext4 -d` from a directory of known
# content. Without --content the image holds:
#   hello.txt        one line of text
#   pattern.bin      N MiB (default 4) of "minivmm-pattern-%015d\n" lines (32 bytes each)
#   pattern.lines    the line count, so a guest can regenerate pattern.bin
#   MANIFEST.sha256  sha256sum of every other file (checked by scenario fs-verify)
# With --content DIR, DIR's files are copied in as well (and listed in the manifest).
#
# SIZE accepts truncate(1) suffixes (default 64M). The image is cached at
#   <cache>/disks/ext4-<size>-<hash>.img   (hash over size, script, content)
# and its path printed. Treat that file as a read-only template: anything that
# writes to the disk should use --out FILE, which makes a fresh sparse copy.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"

size=64M
pattern_mib=4
content=""
out=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --size) size="$2"; shift 2 ;;
    --pattern-mib) pattern_mib="$2"; shift 2 ;;
    --content) content="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
[[ $pattern_mib =~ ^[0-9]+$ ]] || die "--pattern-mib must be a whole number of MiB"
[[ -z $content || -d $content ]] || die "--content $content is not a directory"
need mkfs.ext4 e2fsprogs

key="$({
  echo "size=$size pattern_mib=$pattern_mib"
  hash_files "$MINIVMM_IMAGES_DIR/build-disk.sh"
  [[ -n $content ]] && hash_tree "$content"
  true
} | short_hash)"
cache="$MINIVMM_IMAGES_CACHE/disks"
img="$cache/ext4-$size-$key.img"
mkdir -p "$cache"

if [[ -f $img ]]; then
  log "cached: $img"
else
  stage="$(mktemp -d "$cache/.stage.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  mkdir "$stage/root"
  root="$stage/root"
  [[ -n $content ]] && cp -a "$content/." "$root/"
  echo "hello from the minivmm test disk" >"$root/hello.txt"
  lines=$((pattern_mib * 32768))
  awk -v n="$lines" 'BEGIN { for (i = 0; i < n; i++) printf "minivmm-pattern-%015d\n", i }' >"$root/pattern.bin"
  echo "$lines" >"$root/pattern.lines"
  (cd "$root" && find . -type f ! -name MANIFEST.sha256 -printf '%P\n' | LC_ALL=C sort |
    xargs -r -d '\n' sha256sum >MANIFEST.sha256)
  truncate -s "$size" "$stage/disk.img"
  log "mkfs.ext4 -d ($size, $(du -sh "$root" | cut -f1) of content)"
  # Fixed UUID and hash seed: the same inputs give the same filesystem layout.
  mkfs.ext4 -q -F -L minidisk -U 6d696e69-766d-4d00-8000-000000000001 \
    -E root_owner=0:0,hash_seed=6d696e69-766d-4d00-8000-000000000002 \
    -d "$root" "$stage/disk.img" ||
    die "mkfs.ext4 failed (is $size large enough for the content?)"
  mv "$stage/disk.img" "$img"
  log "built $img"
fi

if [[ -n $out ]]; then
  cp --sparse=always "$img" "$out"
  echo "$out"
else
  echo "$img"
fi
