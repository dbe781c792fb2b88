#!/bin/sh
# `berth run --rm IMAGE true` vs `podman run --rm IMAGE true` on the same busybox image
# (scripts/build-test-image.sh), each with private storage in a temp dir, both with
# --network none. podman runs runc (crun refuses hybrid cgroups) with berth's rlimits
# (its defaults exceed this machine's hard limits). Prints each median (hyperfine) and
# the ratio podman/berth.
#
#   benches/run/run.sh [RUNS]        (root; default 30 runs after 3 warmups)
#
# BERTH defaults to target/release/berth (falls back to target/debug/berth).
set -eu

runs=${1:-30}
here=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH:-$here/target/release/berth}
[ -x "$berth" ] || berth=$here/target/debug/berth
[ -x "$berth" ] || { echo "run.sh: build berth first (cargo build --release -p berth)" >&2; exit 1; }
for tool in podman hyperfine jq umoci; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool missing" >&2; exit 1; }
done

# Lowercase path: podman names an image pulled from oci:DIR after DIR.
work=/tmp/berth-run-bench-$$
mkdir -m 700 "$work"
podman_flags="--root $work/podman/root --runroot $work/podman/run --storage-driver overlay --cgroup-manager cgroupfs --events-backend file --runtime runc"
cleanup() {
    # shellcheck disable=SC2086
    podman $podman_flags rm -af >/dev/null 2>&1 || true
    # shellcheck disable=SC2086
    podman $podman_flags system reset -f >/dev/null 2>&1 || true
    BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run "$berth" ps -aq --no-trunc 2>/dev/null |
        while read -r id; do BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run "$berth" rm -f "$id"; done
    umount -R "$work/podman/root/overlay" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$here/scripts/build-test-image.sh" "$work/layout" >/dev/null
export BERTH_DATA_ROOT=$work/berth BERTH_ROOT=$work/berth-run
"$berth" import "$work/layout" bench:latest >/dev/null
# shellcheck disable=SC2086
podman $podman_flags pull -q "oci:$work/layout:latest" >/dev/null
# shellcheck disable=SC2086
podman $podman_flags tag "$(podman $podman_flags images -q | head -n1)" localhost/bench:latest

hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/out.json" \
    -n berth "$berth run --rm --network none bench:latest true" \
    -n podman "podman $podman_flags run --rm --network none --ulimit nofile=1024:1024 --ulimit nproc=4096:4096 localhost/bench:latest true" >&2

jq -r '.results[] | "\(.command): median \(.median * 1000 | floor) ms"' "$work/out.json"
jq -r '(.results | map({(.command): .median}) | add) as $m |
    "ratio podman/berth: \(($m.podman / $m.berth) * 100 | floor / 100)x"' "$work/out.json"
