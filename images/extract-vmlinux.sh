#!/usr/bin/env bash
# extract-vmlinux.sh BZIMAGE [OUT] — the ELF vmlinux inside a bzImage: the setup header's
# payload_offset / payload_length (boot protocol 2.08+) locate the compressed kernel, which is
# decompressed by its magic (LZ4 legacy as Debian builds it, gzip, xz, zstd). Prints OUT
# (default: BZIMAGE.vmlinux, next to it); an OUT newer than BZIMAGE is kept as it is. Fails in one line when the payload is
# not a compressed ELF file.
set -euo pipefail
# shellcheck source=lib/common.sh
source "$(dirname "$0")/lib/common.sh"
[[ $# -ge 1 && $# -le 2 ]] || die "usage: extract-vmlinux.sh BZIMAGE [OUT]"
bz="$1"
out="${2:-$bz.vmlinux}"
[[ -f $bz ]] || die "$bz: no such file"
if [[ -s $out && $out -nt $bz ]]; then
  echo "$out"
  exit 0
fi
u32() { od -An -tu4 -j "$1" -N4 "$bz" | tr -d ' '; }
u8() { od -An -tu1 -j "$1" -N1 "$bz" | tr -d ' '; }
[[ $(u32 0x202) == 1400005704 ]] || die "$bz: no HdrS setup header (not a bzImage)"
setup_sects="$(u8 0x1f1)"
[[ $setup_sects == 0 ]] && setup_sects=4
poff="$(u32 0x248)" plen="$(u32 0x24c)"
start=$(((setup_sects + 1) * 512 + poff))
((plen > 0)) || die "$bz: payload_length is 0 (boot protocol before 2.08?)"
tmp="$(mktemp "${out}.XXXXXX")"
trap 'rm -f "$tmp" "$tmp.z"' EXIT
dd if="$bz" of="$tmp.z" iflag=skip_bytes,count_bytes skip="$start" count="$plen" bs=1M status=none
magic="$(od -An -tx1 -N4 "$tmp.z" | tr -d ' ')"
# The kernel build appends the uncompressed size (4 bytes, little-endian) to the payload,
# which the decompressors see as trailing garbage: their status is not the verdict, the
# size and the ELF magic of the output are.
want="$(od -An -tu4 -j "$((plen - 4))" -N4 "$tmp.z" | tr -d ' ')"
case "$magic" in
  02214c18) need lz4 lz4; lz4 -dcq "$tmp.z" >"$tmp" 2>/dev/null || true ;;
  1f8b*) need gzip gzip; gzip -dcq "$tmp.z" >"$tmp" 2>/dev/null || true ;;
  fd377a58) need xz xz-utils; xz -dcq "$tmp.z" >"$tmp" 2>/dev/null || true ;;
  28b52ffd) need zstd zstd; zstd -dcq "$tmp.z" >"$tmp" 2>/dev/null || true ;;
  *) die "$bz: payload magic $magic is none of lz4, gzip, xz, zstd" ;;
esac
got="$(stat -c %s "$tmp")"
[[ $got == "$want" ]] || die "$bz: the payload decompressed to $got bytes, the kernel says $want"
[[ $(od -An -tx1 -N4 "$tmp" | tr -d ' ') == 7f454c46 ]] || die "$bz: the payload is not an ELF file"
mv "$tmp" "$out"
trap - EXIT
rm -f "$tmp.z"
echo "$out"
