#!/bin/bash
# CPU control measured on berth containers (the theory's Part 7 claim: 1024 vs 512 shares
# on one core split it 2:1; and a 0.2-CPU quota throttles a busy loop to ~20 %).
#   benches/cgroups/cpu.sh [SECONDS]        (default 5; needs root and cgroup v1 cpu/cpuacct)
# Prints the CPU time each container got, the measured ratio, and cpu.stat throttling.
set -euo pipefail
secs=${1:-5}
repo=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH_BIN:-$repo/build/bin/berth}
[ -x "$berth" ] || berth=$repo/target/release/berth
[ -x "$berth" ] || { echo "build berth first: cargo build --release -p berth" >&2; exit 1; }
work=$(mktemp -d /tmp/berth-cpu-bench.XXXXXX)
root=$work/state
cleanup() {
    for id in "${ids[@]:-}"; do [ -n "$id" ] && "$berth" --root "$root" delete -f "$id" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
ids=()
trap cleanup EXIT
sh "$repo/scripts/busybox-rootfs.sh" "$work/rootfs"
bundle() { # NAME RESOURCES-JSON
    mkdir -p "$work/$1"
    "$berth" spec --bundle "$work/$1"
    jq --arg r "$work/rootfs" --argjson res "$2" '.root.path = $r | .process.terminal = false
        | .process.args = ["sh", "-c", "while :; do :; done"] | .linux.resources += $res' \
        "$work/$1/config.json" > "$work/$1/c" && mv "$work/$1/c" "$work/$1/config.json"
}
usage_ns() { cat "/sys/fs/cgroup/cpuacct/berth-$1/cpuacct.usage"; }

# 1. Shares: both containers pinned to CPU 0, weights 1024 and 512.
bundle heavy '{"cpu": {"shares": 1024, "cpus": "0"}}'
bundle light '{"cpu": {"shares": 512, "cpus": "0"}}'
for n in heavy light; do ids+=("cpu-$n-$$"); "$berth" --root "$root" run -d --bundle "$work/$n" "cpu-$n-$$"; done
h0=$(usage_ns "cpu-heavy-$$"); l0=$(usage_ns "cpu-light-$$")
sleep "$secs"
h1=$(usage_ns "cpu-heavy-$$"); l1=$(usage_ns "cpu-light-$$")
for n in heavy light; do "$berth" --root "$root" delete -f "cpu-$n-$$"; done
ids=()
awk -v h=$((h1 - h0)) -v l=$((l1 - l0)) -v s="$secs" 'BEGIN {
    printf "shares 1024 vs 512 on one CPU for %ss: %.2fs vs %.2fs of CPU, ratio %.2f:1 (model: 2:1)\n", s, h/1e9, l/1e9, h/l }'

# 2. Quota: 20000us per 100000us period (0.2 CPU).
bundle quota '{"cpu": {"quota": 20000, "period": 100000}}'
ids+=("cpu-quota-$$")
"$berth" --root "$root" run -d --bundle "$work/quota" "cpu-quota-$$"
q0=$(usage_ns "cpu-quota-$$")
sleep "$secs"
q1=$(usage_ns "cpu-quota-$$")
stat=$(tr '\n' ' ' < "/sys/fs/cgroup/cpu/berth-cpu-quota-$$/cpu.stat")
awk -v q=$((q1 - q0)) -v s="$secs" -v st="$stat" 'BEGIN {
    printf "quota 0.2 CPU for %ss: used %.2fs = %.1f%% of one CPU; cpu.stat: %s\n", s, q/1e9, 100*q/1e9/s, st }'
