#!/bin/bash
# Extract the uncompressed ELF vmlinux from a bzImage (e.g. Debian's /boot/vmlinuz-*).
#
# Usage: extract-vmlinux.sh [VMLINUZ] OUT
#   VMLINUZ defaults to the newest /boot/vmlinuz-*. Prints OUT on success.
#
# Why: qemu boots an ELF vmlinux through its PVH entry point, which skips the real-mode
# setup and the in-guest decompressor (slow under TCG). The bzImage embeds the kernel as
# one compressed stream; we find its magic, decompress from each candidate offset and keep
# the first result that is an x86-64 ELF. Idempotent: OUT is reused when it is newer than
# VMLINUZ, and written atomically (temp file + rename) so concurrent callers are safe.
set -euo pipefail
export LC_ALL=C
# shellcheck source=lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
prog=extract-vmlinux

case $# in
1) out=$1; kver=$(default_kver); vmlinuz=${kver:+/boot/vmlinuz-$kver} ;;
2) vmlinuz=$1; out=$2 ;;
*) die $prog "usage: extract-vmlinux.sh [VMLINUZ] OUT" ;;
esac
[[ -n $vmlinuz ]] || die $prog "no /boot/vmlinuz-* found; install linux-image-amd64 or pass VMLINUZ"
[[ -r $vmlinuz ]] || die $prog "$vmlinuz: not readable"

is_elf64() { [[ $(od -An -c -N5 "$1" 2>/dev/null | tr -d ' \n') == '177ELF002' ]]; }

if [[ -s $out && ! $vmlinuz -nt $out ]] && is_elf64 "$out"; then
    echo "$out"
    exit 0
fi

# magic (grep -P escapes) and decompressor. Debian 12 uses xz (CONFIG_KERNEL_XZ); the
# others cover kernels built with other CONFIG_KERNEL_* choices.
formats=(
    '\xfd7zXZ\x00|xz -dc'
    '\x28\xb5\x2f\xfd|zstd -dcq'
    '\x1f\x8b\x08|gzip -dc'
    'BZh|bzip2 -dc'
    '\x89LZO|lzop -dc'
    '\x5d\x00\x00\x00|xz -dc --format=lzma'
)

mkdir -p "$(dirname "$out")"
tmp=$(mktemp "$out.tmp.XXXXXX")
trap 'rm -f "$tmp"' EXIT

found=
for f in "${formats[@]}"; do
    magic=${f%%|*}
    cmd=${f#*|}
    command -v "${cmd%% *}" >/dev/null 2>&1 || continue
    while read -r off; do
        # Trailing data after the stream makes the decompressor exit non-zero although
        # its output is complete, so judge the result by its ELF header instead.
        tail -c +$((off + 1)) "$vmlinuz" | $cmd >"$tmp" 2>/dev/null || true
        if is_elf64 "$tmp"; then
            echo "extract-vmlinux: ${cmd%% *} stream at offset $off of $vmlinuz" >&2
            found=1
            break 2
        fi
    done < <(grep -obUaP "$magic" "$vmlinuz" | cut -d: -f1)
done
[[ -n $found ]] || die $prog "$vmlinuz: no compressed stream decompressed to an ELF64 kernel"

if command -v readelf >/dev/null 2>&1; then
    readelf -h "$tmp" | grep -q 'X86-64' || die $prog "$vmlinuz: extracted ELF is not x86-64"
    # qemu -kernel boots an ELF only through the PVH entry advertised in a Xen note.
    readelf -n "$tmp" | grep -q 'Xen' ||
        die $prog "$vmlinuz: extracted ELF has no PVH (Xen) note; qemu cannot boot it (CONFIG_PVH)"
fi
chmod 0644 "$tmp"
mv -f "$tmp" "$out"
trap - EXIT
echo "$out"
