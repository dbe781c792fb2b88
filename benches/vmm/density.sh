#!/bin/bash
# microVM density on this host's /dev/kvm, with the purpose-built test guest of
# `cargo test -p berth-vmm` (a stock kernel does not boot on this host's PVM /dev/kvm):
#  - VMM memory while a VM runs (guest `test=idle`: 128 MiB given, a few pages touched,
#    then asleep in HLT): /proc/PID/smaps split into the guest memory mapping and the
#    rest (the VMM's overhead), the latter split into the berth binary's file pages
#    (clean, shared with every other berth process through the page cache) and private
#    anonymous memory (heap, stacks, relocated data: what each further VM really costs);
#    and, for comparison, the peak RSS of `berth --version` and of a `berth vm run` that
#    fails on a missing kernel (the CLI's own share);
#  - peak RSS of one whole `berth vm run` of `test=hello` (setup included);
#  - 20 idle VMs at once: their summed VMM RSS and PSS (the binary's pages counted once);
#  - 20 VMs started at once: wall time until all exited, VMs per second, summed peak RSS.
#  - the same idle VM under crates/vmm/examples/boot.rs (the library without the CLI);
#   benches/vmm/density.sh [COUNT]      (default 20; needs root, /dev/kvm, gcc, jq)
set -euo pipefail
count=${1:-20}
repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH_BIN:-$repo/build/bin/berth}
[ -x "$berth" ] || berth=$repo/target/release/berth
# `berth vm run` replaces itself with berth-vmm, installed beside it: that is the VMM process.
vmm=$(dirname "$berth")/berth-vmm
[ -x "$vmm" ] || { echo "density.sh: $vmm missing (make build installs it)" >&2; exit 1; }
work=$(mktemp -d /tmp/berth-vm-density.XXXXXX)
src=$repo/crates/vmm/guests
gcc -ffreestanding -nostdlib -static -fno-pic -no-pie -mno-red-zone -mgeneral-regs-only \
    -fno-stack-protector -fcf-protection=none -O2 -Wl,--build-id=none -Wl,-T,"$src/guest.ld" \
    -o "$work/guest.elf" "$src/start.S" "$src/guest.c"
# Idle VMs (test=idle) stay up until killed; the EXIT trap kills any left.
idle_pids=()
trap 'kill "${idle_pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT
# An idle VM with its console in file $1, through `berth vm run` or the library example
# (exec: started with &, the VMM itself is the background process whose pid is kept).
idle_berth() { exec "$berth" vm run --kernel "$work/guest.elf" --cmdline test=idle --memory 128 --console "$1"; }
idle_lib() { exec "$lib" "$work/guest.elf" test=idle 128 "$1"; }
start_idle() {  # start_idle N idle_berth|idle_lib: returns once each VM has printed its marker
    local i
    idle_pids=()
    rm -f "$work"/idle.*
    for i in $(seq 1 "$1"); do
        "$2" "$work/idle.$i" &
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
# Sums over the idle VMs' smaps, in KiB: "rss pss anonymous" for the guest memory (the
# anonymous mapping of exactly 128 MiB), the mappings of binary $1 and the rest.
smaps_sums() {
    local pid
    for pid in "${idle_pids[@]}"; do cat "/proc/$pid/smaps"; done |
        awk -v bin="$(readlink -f "$1")" -v guest_kb=$((128 << 10)) '
        /^[0-9a-f]+-[0-9a-f]+ / { kind = ($6 == bin) ? "bin" : "other"; anon = ($6 == ""); next }
        /^Size:/ { if (anon && $2 == guest_kb) kind = "guest" }
        /^Rss:/ { rss[kind] += $2 } /^Pss:/ { pss[kind] += $2 } /^Anonymous:/ { anon_kb[kind] += $2 }
        END { for (k in rss) print k, rss[k], pss[k], anon_kb[k] + 0 }'
}
mib() { awk -v k="$1" 'BEGIN {printf "%.2f", k / 1024}'; }
declare -A rss pss anon
one_idle() {  # one_idle idle_berth|idle_lib BINARY LABEL
    start_idle 1 "$1"
    while read -r k r p a; do rss[$k]=$r pss[$k]=$p anon[$k]=$a; done < <(smaps_sums "$2")
    stop_idle
    local vmm=$((rss[bin] + rss[other]))
    echo "one idle VM (128 MiB guest) of $3, smaps while it runs: RSS $(mib $((vmm + rss[guest]))) MiB" \
        "= guest memory touched $(mib "${rss[guest]}") MiB + VMM $(mib $vmm) MiB"
    echo "  VMM: binary $(mib "${rss[bin]}") MiB (of it copied on write by relocation" \
        "$(mib "${anon[bin]}") MiB), heap, stacks and vCPU run areas $(mib "${rss[other]}") MiB;" \
        "private (anonymous) $(mib $((anon[bin] + anon[other]))) MiB, the rest is shared page cache"
}
one_idle idle_berth "$vmm" "\`berth vm run\` (berth-vmm, $(du -m "$vmm" | cut -f1) MB binary)"
# The same binary without a running VM: what the CLI costs before the VMM does anything.
/usr/bin/time -f %M -o "$work/base" "$berth" --version >/dev/null
/usr/bin/time -f %M -o "$work/fail" "$berth" vm run --kernel "$work/missing" 2>/dev/null || true
base=$(tail -1 "$work/base")
fail=$(tail -1 "$work/fail")
echo "  for comparison, peak RSS of \`berth --version\` $(mib "$base") MiB, of \`berth vm run\` with a" \
    "missing kernel (CLI, logging, guest memory mapped, KVM VM created, error) $(mib "$fail") MiB"
# The library without the CLI: crates/vmm/examples/boot.rs, built statically as berth is.
lib=$(cd "$repo" && RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$repo/target/static \
    cargo build -q --release -p berth-vmm --example boot --target x86_64-unknown-linux-gnu \
    --message-format=json | jq -r 'select(.reason == "compiler-artifact" and .executable != null) | .executable')
one_idle idle_lib "$lib" "the vmm library alone (examples/boot.rs, $(du -m "$lib" | cut -f1) MB binary)"
start_idle "$count" idle_berth
while read -r k r p a; do rss[$k]=$r pss[$k]=$p anon[$k]=$a; done < <(smaps_sums "$vmm")
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
