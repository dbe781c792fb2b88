#!/bin/sh
# Container start with a network: `berth run --rm --network bridge IMAGE true` against
# `--network none`, and the same pair for podman (netavark backend), on the busybox test
# image (scripts/build-test-image.sh), each with private storage and network configs in
# a temp dir. Everything runs inside a network namespace this script creates, which
# plays the host: bridges, veths and iptables rules live there and go with it.
# Prints each median (hyperfine) and the ratios.
#
#   benches/net/run.sh [RUNS]        (root; default 20 runs after 3 warmups)
#
# BERTH defaults to target/release/berth (falls back to target/debug/berth).
set -eu

runs=${1:-20}
here=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$here/target/release/berth}
[ -x "$berth" ] || berth=$here/target/debug/berth
[ -x "$berth" ] || { echo "net/run.sh: build berth first (cargo build --release -p berth)" >&2; exit 1; }
for tool in podman hyperfine jq umoci nsenter ip; do
    command -v "$tool" >/dev/null || { echo "net/run.sh: $tool missing" >&2; exit 1; }
done

work=/tmp/berth-net-bench-$$
ns=berth-bench-$$
mkdir -m 700 "$work"
ip netns add "$ns"
ip -n "$ns" link set lo up
in_ns() { nsenter --net="/run/netns/$ns" "$@"; }
podman_flags="--root $work/podman/root --runroot $work/podman/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime runc --network-backend netavark --network-config-dir $work/podman/net"
cleanup() {
    # shellcheck disable=SC2086
    in_ns podman $podman_flags rm -af >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    in_ns podman $podman_flags system reset -f >/dev/null 2>&1 || true
    BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run in_ns "$berth" ps -aq --no-trunc 2>/dev/null |
        while read -r id; do BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run in_ns "$berth" rm -f "$id"; done
    umount -R "$work/podman/root/overlay" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$here/scripts/build-test-image.sh" "$work/layout" >/dev/null
export BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run BERTH_CNI_CONFIG_DIR=$work/cni
"$berth" import "$work/layout" bench:latest >/dev/null
# shellcheck disable=SC2086
podman $podman_flags pull -q "oci:$work/layout:latest" >/dev/null
# shellcheck disable=SC2086
podman $podman_flags tag "$(podman $podman_flags images -q | head -n1)" localhost/bench:latest

pod="podman $podman_flags run --rm --ulimit nofile=1024:1024 --ulimit nproc=4096:4096"
in_ns hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/out.json" \
    -n berth-bridge "$berth run --rm --network bridge bench:latest true" \
    -n berth-none "$berth run --rm --network none bench:latest true" \
    -n podman-bridge "$pod --network bridge localhost/bench:latest true" \
    -n podman-none "$pod --network none localhost/bench:latest true" >&2

jq -r '.results[] | "\(.command): median \(.median * 1000 | floor) ms"' "$work/out.json"
jq -r '(.results | map({(.command): .median}) | add) as $m |
    "berth bridge/none: \(($m["berth-bridge"] / $m["berth-none"]) * 100 | floor / 100)x",
    "podman bridge/none: \(($m["podman-bridge"] / $m["podman-none"]) * 100 | floor / 100)x",
    "podman/berth with bridge: \(($m["podman-bridge"] / $m["berth-bridge"]) * 100 | floor / 100)x",
    "bridge cost: berth +\((($m["berth-bridge"] - $m["berth-none"]) * 1000) | floor) ms, podman +\((($m["podman-bridge"] - $m["podman-none"]) * 1000) | floor) ms"' "$work/out.json"
