#!/bin/sh
# 50 containers attached to and detached from berth's default network one after another
# (`berth run --rm IMAGE true`), inside a network namespace this script creates. Prints
# the first and last 10 times (they should match: nothing accumulates) and fails if a
# veth, IPAM lease, netns file, CNI cache entry or iptables rule is left afterwards.
#
#   benches/net/churn.sh [COUNT]   (root; default 50)
set -eu

count=${1:-50}
here=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$here/target/release/berth}
[ -x "$berth" ] || berth=$here/target/debug/berth
[ -x "$berth" ] || { echo "net/churn.sh: build berth first" >&2; exit 1; }

work=/tmp/berth-net-churn-$$
ns=berth-churn-$$
mkdir -m 700 "$work"
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
export BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run BERTH_CNI_CONFIG_DIR=$work/cni
cleanup() {
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$here/scripts/build-test-image.sh" "$work/layout" >/dev/null
in_ns "$berth" import "$work/layout" bench:latest >/dev/null
rules() { { in_ns iptables-save; in_ns ip6tables-save; } | grep -c -v '^[#*:]' || true; }
# One run first, so the network, bridge and base chains exist before counting.
in_ns "$berth" run --rm bench:latest true
base_rules=$(rules)
times=$work/times
i=0
while [ "$i" -lt "$count" ]; do
    start=$(date +%s%N)
    in_ns "$berth" run --rm bench:latest true
    echo $(( ($(date +%s%N) - start) / 1000000 )) >>"$times"
    i=$((i + 1))
done
echo "first 10 (ms): $(head -n 10 "$times" | tr '\n' ' ')"
echo "last 10 (ms):  $(tail -n 10 "$times" | tr '\n' ' ')"
awk 'NR <= 10 { a += $1 } { t[NR] = $1 } END {
    for (i = NR - 9; i <= NR; i++) b += t[i]
    printf "mean first 10: %d ms, last 10: %d ms, last/first %.2fx\n", a / 10, b / 10, b / a }' "$times"

left=0
veths=$(ip -n "$ns" -o link show type veth | wc -l)
leases=$(find "$work/berth/cni/networks" -type f ! -name 'last_reserved_ip*' ! -name lock 2>/dev/null | wc -l)
netns=$(find "$work/berth-run/netns" -type f 2>/dev/null | wc -l)
cache=$(find "$work/berth/cni/results" -type f 2>/dev/null | wc -l)
now_rules=$(rules)
echo "left: $veths veths, $leases leases, $netns netns, $cache cache entries; iptables rules $base_rules -> $now_rules"
[ "$veths" -eq 0 ] && [ "$leases" -eq 0 ] && [ "$netns" -eq 0 ] && [ "$cache" -eq 0 ] &&
    [ "$now_rules" -eq "$base_rules" ] || left=1
exit $left
