#!/bin/sh
# TCP throughput (iperf3) over berth's networks against the same endpoints without them,
# side by side in one run, all inside a network namespace this script creates ("the
# host"; everything goes with it):
#   bridge:   container -> container on berth's default bridge
#   veth:     namespace -> namespace over one veth pair, no bridge (the floor)
#   portmap:  host -> container through `-p` (DNAT by the portmap plugin)
#   direct:   host -> the same container's address, no DNAT
# iperf3 runs in each container's network namespace (nsenter --net=SandboxKey): the busybox
# test image has no iperf3, and the path measured is the namespace's, not the binary's.
#
#   benches/net/throughput.sh [SECONDS]   (root; default 5 s per measurement, ROUNDS=3
#                                          rounds, medians printed)
set -eu

secs=${1:-5}
here=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$here/target/release/berth}
[ -x "$berth" ] || berth=$here/target/debug/berth
[ -x "$berth" ] || { echo "net/throughput.sh: build berth first" >&2; exit 1; }
for tool in iperf3 jq nsenter ip; do
    command -v "$tool" >/dev/null || { echo "net/throughput.sh: $tool missing (scripts/setup.sh)" >&2; exit 1; }
done

work=/tmp/berth-net-tput-$$
ns=berth-tput-$$
mkdir -m 700 "$work"
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
export BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run BERTH_CNI_CONFIG_DIR=$work/cni
b() { in_ns "$berth" "$@"; }
cleanup() {
    b rm -f srv cli >/dev/null 2>&1 || true
    ip netns del "$ns-a" 2>/dev/null || true
    ip netns del "$ns-b" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$here/scripts/build-test-image.sh" "$work/layout" >/dev/null
b import "$work/layout" bench:latest >/dev/null
b run -d --name srv -p 15201:5201 bench:latest sleep 3600 >/dev/null
b run -d --name cli bench:latest sleep 3600 >/dev/null
sandbox() { b inspect "$1" | jq -r '.[0].NetworkSettings.SandboxKey'; }
srv_ns=$(sandbox srv)
cli_ns=$(sandbox cli)
srv_ip=$(b inspect srv | jq -r '.[0].NetworkSettings.IPAddress')
gw=$(b inspect srv | jq -r '.[0].NetworkSettings.Gateway')

# Gbit/s of one client run ($1: the namespace file to run it in, $2: server address,
# $3: port). The server serves one test (-1) and is restarted for the next.
measure() {
    nsenter --net="$1" iperf3 -c "$2" -p "$3" -t "$secs" -J 2>/dev/null |
        jq '.end.sum_received.bits_per_second / 1e9 * 100 | floor / 100'
}
serve() { nsenter --net="$1" iperf3 -s -D -1 -p "$2"; sleep 0.3; }

# The floor: two namespaces joined by one veth pair, no bridge.
ip netns add "$ns-a"
ip netns add "$ns-b"
ip link add vbench-a netns "$ns-a" type veth peer name vbench-b netns "$ns-b"
ip -n "$ns-a" addr add 192.0.2.1/30 dev vbench-a
ip -n "$ns-b" addr add 192.0.2.2/30 dev vbench-b
ip -n "$ns-a" link set vbench-a up
ip -n "$ns-b" link set vbench-b up

# ROUNDS rounds, the four paths interleaved in each (a busy machine drifts); medians.
rounds=${ROUNDS:-3}
r=0
while [ "$r" -lt "$rounds" ]; do
    serve "$srv_ns" 5201
    measure "$cli_ns" "$srv_ip" 5201 >>"$work/bridge"
    serve "/run/netns/$ns-b" 5201
    measure "/run/netns/$ns-a" 192.0.2.2 5201 >>"$work/veth"
    serve "$srv_ns" 5201
    measure "/run/netns/$ns" "$gw" 15201 >>"$work/portmap"
    serve "$srv_ns" 5201
    measure "/run/netns/$ns" "$srv_ip" 5201 >>"$work/direct"
    r=$((r + 1))
done
median() { sort -n "$work/$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
bridge=$(median bridge)
veth=$(median veth)
portmap=$(median portmap)
direct=$(median direct)

echo "container->container over the bridge: $bridge Gbit/s"
echo "namespace->namespace over one veth:   $veth Gbit/s"
echo "host->container through -p (DNAT):    $portmap Gbit/s"
echo "host->container address, no DNAT:     $direct Gbit/s"
echo "bridge/veth: $(echo "$bridge $veth" | awk '{printf "%.2f", $1 / $2}')x"
echo "portmap/direct: $(echo "$portmap $direct" | awk '{printf "%.2f", $1 / $2}')x"
