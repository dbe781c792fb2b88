#!/bin/bash
# microVM density on this host's /dev/kvm, with the purpose-built test guest of
# `cargo test -p berth-vmm` (a stock kernel does not boot on this host's PVM /dev/kvm):
#  - VMM memory while a VM runs (guest `test=idle`: 128 MiB given, a few pages touched,
#    then asleep in HLT): /proc/PID/smaps split into the guest memory mapping and the
#    rest (the VMM's overhead), the latter split into the berth binary's file pages
#    (clean, shared with every other berth process through the page cache) and private
#    dirty memory (heap, stacks, relocated data: what each further VM really costs);
#  - peak RSS of one whole `berth vm run` of `test=hello` (setup included);
#  - 20 idle VMs at once: their summed VMM RSS and PSS (the binary's pages counted once);
#  - 20 VMs started at once: wall time until all exited, VMs per second, summed peak RSS.
#   benches/vmm/density.sh [COUNT]      (default 20; needs root, /dev/kvm, gcc)
set -euo pipefail
count=${1:-20}
repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH_BIN:-$repo/build/bin/berth}
[ -x "$berth" ] || berth=$repo/target/release/berth
work=$(mktemp -d /tmp/berth-vm-density.XXXXXX)
src=$repo/crates/vmm/guests
gcc -ffreestanding -nostdlib -static -fno-pic -no-pie -mno-red-zone -mgeneral-regs-only \
    -fno-stack-protector -fcf-protection=none -O2 -Wl,--build-id=none -Wl,-T,"$src/guest.ld" \
    -o "$work/guest.elf" "$src/start.S" "$src/guest.c"
# Idle VMs (test=idle) stay up until killed; the EXIT trap kills any left.
idle_pids=()
trap 'kill "${idle_pids[@]}" 2>/dev/null; rm -rf "$work"' EXIT
start_idle() {  # start_idle N: N idle VMs, returns once each has printed its marker
    local i
    idle_pids=()
    for i in $(seq 1 "$1"); do
        "$berth" vm run --kernel "$work/guest.elf" --cmdline test=idle --memory 128 \
            --console "$work/idle.$i" &
        idle_pids+=($!)
    done
    for i in $(seq 1 "$1"); do
        for _ in $(seq 1 200); do grep -q idle "$work/idle.$i" 2>/dev/null && break; sleep 0.05; done
        grep -q idle "$work/idle.$i" || { echo "density: idle guest $i did not start" >&2; exit 1; }
    done
}
stop_idle() {
    kill "${idle_pids[@]}"
    wait "${idle_pids[@]}" 2>/dev/null || true
    idle_pids=()
}
# Sums over the idle VMs' smaps, in KiB: "rss pss dirty" for the guest memory (the
# anonymous mapping of exactly 128 MiB), the berth binary's file mappings and the rest.
smaps_sums() {
    local pid
    for pid in "${idle_pids[@]}"; do cat "/proc/$pid/smaps"; done |
        awk -v bin="$(readlink -f "$berth")" -v guest_kb=$((128 << 10)) '
        /^[0-9a-f]+-[0-9a-f]+ / { kind = ($6 == bin) ? "bin" : "other"; anon = ($6 == ""); next }
        /^Size:/ { if (anon && $2 == guest_kb) kind = "guest" }
        /^Rss:/ { rss[kind] += $2 } /^Pss:/ { pss[kind] += $2 } /^Private_Dirty:/ { dirty[kind] += $2 }
        END { for (k in rss) print k, rss[k], pss[k], dirty[k] + 0 }'
}
mib() { awk -v k="$1" 'BEGIN {printf "%.2f", k / 1024}'; }
start_idle 1
declare -A rss pss dirty
while read -r k r p d; do rss[$k]=$r pss[$k]=$p dirty[$k]=$d; done < <(smaps_sums)
stop_idle
vmm=$((rss[bin] + rss[other]))
echo "one idle VM (128 MiB guest), smaps while it runs: RSS $(mib $((vmm + rss[guest]))) MiB" \
    "= guest memory touched $(mib "${rss[guest]}") MiB + VMM $(mib $vmm) MiB"
echo "  VMM: berth binary file pages $(mib "${rss[bin]}") MiB (of them written by relocation" \
    "$(mib "${dirty[bin]}") MiB), heap, stacks and vCPU run areas $(mib "${rss[other]}") MiB;" \
    "private dirty $(mib $((dirty[bin] + dirty[other]))) MiB"
start_idle "$count"
while read -r k r p d; do rss[$k]=$r pss[$k]=$p dirty[$k]=$d; done < <(smaps_sums)
stop_idle
echo "$count idle VMs at once: VMM RSS summed $(mib $((rss[bin] + rss[other]))) MiB," \
    "PSS summed $(mib $((pss[bin] + pss[other]))) MiB ($(mib $(((pss[bin] + pss[other]) / count))) MiB per VM:" \
    "the binary's pages are shared), guest memory touched $(mib "${rss[guest]}") MiB"
vm() { "$berth" vm run --kernel "$work/guest.elf" --cmdline test=hello --memory 128 --console /dev/null; }
vm >/dev/null  # warm the page cache
one=$( { /usr/bin/time -f %M bash -c "$(declare -f vm); berth=$berth work=$work vm" >/dev/null; } 2>&1 | tail -1)
echo "one whole run of test=hello (128 MiB guest, setup included): peak RSS $((one / 1024)).$(( (one % 1024) * 10 / 1024 )) MiB"
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
