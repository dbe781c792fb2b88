#!/bin/bash
# microVM density on this host's /dev/kvm, with the purpose-built test guest of
# `cargo test -p berth-vmm` (a stock kernel does not boot on this host's PVM /dev/kvm):
#  - VMM memory: peak RSS of one `berth vm run` of a guest given 128 MiB that touches only
#    a few pages, so the figure is the VMM's own overhead plus those pages;
#  - 20 VMs started at once: wall time until all exited, VMs per second, summed peak RSS.
#   benches/vmm/density.sh [COUNT]      (default 20; needs root, /dev/kvm, gcc)
set -euo pipefail
count=${1:-20}
repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH_BIN:-$repo/build/bin/berth}
[ -x "$berth" ] || berth=$repo/target/release/berth
work=$(mktemp -d /tmp/berth-vm-density.XXXXXX)
trap 'rm -rf "$work"' EXIT
src=$repo/crates/vmm/guests
gcc -ffreestanding -nostdlib -static -fno-pic -no-pie -mno-red-zone -mgeneral-regs-only \
    -fno-stack-protector -fcf-protection=none -O2 -Wl,--build-id=none -Wl,-T,"$src/guest.ld" \
    -o "$work/guest.elf" "$src/start.S" "$src/guest.c"
vm() { "$berth" vm run --kernel "$work/guest.elf" --cmdline test=hello --memory 128 --console /dev/null; }
vm >/dev/null  # warm the page cache
one=$( { /usr/bin/time -f %M bash -c "$(declare -f vm); berth=$berth work=$work vm" >/dev/null; } 2>&1 | tail -1)
echo "one VM (128 MiB guest, touches a few pages): peak RSS $((one / 1024)).$(( (one % 1024) * 10 / 1024 )) MiB"
start=$(date +%s%N)
for i in $(seq 1 "$count"); do
    ( /usr/bin/time -f %M -o "$work/rss.$i" "$berth" vm run --kernel "$work/guest.elf" --cmdline test=hello \
        --memory 128 --console /dev/null >/dev/null ) &
done
wait
end=$(date +%s%N)
total=$(cat "$work"/rss.* | awk '{s += $1} END {print s}')
echo "$count VMs at once: all done in $(( (end - start) / 1000000 )) ms," \
    "$(awk -v n="$count" -v ns=$((end - start)) 'BEGIN {printf "%.0f", n / (ns / 1e9)}') VMs/s," \
    "summed peak RSS $((total / 1024)) MiB"
