#!/bin/sh
# Pull throughput: `berth pull` vs `skopeo copy` into an OCI layout, from a local registry.
#
#   benches/image/pull.sh [SRC_DIR...]   (default: /usr/include /usr/share/doc /usr/lib/python3)
#
# Builds a multi-layer gzip OCI image (one layer per SRC_DIR) with umoci, starts Debian's
# docker-registry on 127.0.0.1 (plain HTTP, its own storage in a temp dir), pushes the image
# with skopeo, then times (hyperfine) a full pull into an empty store/layout with each tool
# and prints both means and the ratio. Everything it starts is stopped on exit.
set -eu
[ $# -gt 0 ] || set -- /usr/include /usr/share/doc /usr/lib/python3
here=$(cd "$(dirname "$0")/../.." && pwd)
berth=${BERTH_BIN:-$here/build/bin/berth}
[ -x "$berth" ] || berth=$here/target/release/berth
for tool in umoci skopeo hyperfine jq docker-registry; do
    command -v "$tool" >/dev/null || { echo "pull.sh: $tool missing (scripts/setup.sh installs it)" >&2; exit 1; }
done
work=$(mktemp -d /var/tmp/berth-pull-bench.XXXXXX)
reg_pid=
cleanup() { [ -n "$reg_pid" ] && kill "$reg_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT INT TERM

umoci init --layout "$work/layout"
umoci new --image "$work/layout:bench"
for src in "$@"; do
    umoci unpack --image "$work/layout:bench" "$work/seed" >/dev/null
    mkdir -p "$work/seed/rootfs$src"
    cp -a "$src/." "$work/seed/rootfs$src/"
    umoci repack --image "$work/layout:bench" "$work/seed" 2>/dev/null
    rm -rf "$work/seed"
done
size=$(du -sh "$work/layout/blobs" | cut -f1)

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:$port
YML
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
reg_pid=$!
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$port/v2/" >/dev/null 2>&1 && break; sleep 0.1; done
skopeo copy -q --dest-tls-verify=false "oci:$work/layout:bench" "docker://127.0.0.1:$port/bench:1"
echo "image: $# layers, $size compressed, at 127.0.0.1:$port/bench:1"

hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$work/result.json" \
    --prepare "rm -rf $work/berth-store" -n berth \
    "$berth pull --data-root $work/berth-store --insecure-registry 127.0.0.1:$port 127.0.0.1:$port/bench:1" \
    --prepare "rm -rf $work/skopeo-layout" -n skopeo \
    "skopeo copy -q --src-tls-verify=false docker://127.0.0.1:$port/bench:1 oci:$work/skopeo-layout:bench"

rm -rf "$work/berth-store"
rss=$( { /usr/bin/time -f %M "$berth" pull --data-root "$work/berth-store" --insecure-registry "127.0.0.1:$port" \
    "127.0.0.1:$port/bench:1" >/dev/null; } 2>&1 | tail -1)
echo "peak RSS of berth pull: ${rss} KiB (layers stream to disk, never whole in memory)"
b=$(jq '.results[] | select(.command == "berth") | .mean' "$work/result.json")
s=$(jq '.results[] | select(.command == "skopeo") | .mean' "$work/result.json")
echo "berth pull: ${b}s  skopeo copy: ${s}s  ratio skopeo/berth: $(echo "$s $b" | awk '{printf "%.2f", $1 / $2}')x"
