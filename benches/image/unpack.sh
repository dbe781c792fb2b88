#!/bin/sh
# Unpack throughput: berth-image vs `umoci unpack`, same OCI image, same disk.
#
#   benches/image/unpack.sh [SRC_DIR]     (default SRC_DIR=/usr/include)
#   AFTER_RM=1 benches/image/unpack.sh    each run right after deleting the last output
#
# Builds a one-layer gzip OCI image from SRC_DIR with umoci, imports it into a scratch
# berth store (untimed), then times a flattened unpack of that image with both tools
# (hyperfine, fresh output dir per run) and prints both means and the ratio.
#
# Each run's output is moved aside, not deleted, before the next run (all of it is
# deleted at exit): on ext4 without a journal (this VM's root filesystem) the inode
# allocator skips inodes freed in the last seconds to minutes, testing them one by one
# (recently_deleted() in fs/ext4/ialloc.c), so right after `rm -rf` of a 9,000-file tree
# every file creation costs ~0.7 ms and both tools mostly measure that scan. AFTER_RM=1
# measures that case on purpose. Other large deletions on the disk in the minutes before
# (such as the previous run's cleanup) slow the first runs the same way: leave ~5 minutes.
# Note: `umoci unpack` also writes config.json and an mtree manifest of the rootfs (it
# hashes every file), so it does somewhat more work than berth's unpack.
set -eu

src=${1:-/usr/include}
here=$(cd "$(dirname "$0")/../.." && pwd)
for tool in umoci hyperfine jq; do
    command -v "$tool" >/dev/null || { echo "unpack.sh: $tool missing (apt-get install $tool)" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/berth-unpack-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

echo "building image from $src ($(du -sh "$src" | cut -f1), $(find "$src" | wc -l) entries)..."
umoci init --layout "$work/layout"
umoci new --image "$work/layout:bench"
umoci unpack --image "$work/layout:bench" "$work/seed" >/dev/null
cp -a "$src/." "$work/seed/rootfs/"
umoci repack --image "$work/layout:bench" "$work/seed" 2>/dev/null
mkdir "$work/spent"
mv "$work/seed" "$work/spent/" # not deleted before timing: see above

(cd "$here" && cargo build --release -q -p berth-image --example unpack)
bin="$here/target/release/examples/unpack"
"$bin" import "$work/store" "$work/layout" localhost/bench:1 >/dev/null

prepare_cmd() { # the command that empties OUT_DIR ($1) before a run
    if [ -n "${AFTER_RM:-}" ]; then
        echo "rm -rf $1"
    else
        echo "if [ -e $1 ]; then mv $1 $work/spent/\$(date +%s%N); fi"
    fi
}
hyperfine --warmup 1 --runs "${RUNS:-5}" --export-json "$work/result.json" \
    --prepare "$(prepare_cmd "$work/out-berth")" -n berth "$bin flat $work/store localhost/bench:1 $work/out-berth" \
    --prepare "$(prepare_cmd "$work/out-umoci")" -n umoci "umoci unpack --image $work/layout:bench $work/out-umoci"

berth=$(jq '.results[] | select(.command == "berth") | .mean' "$work/result.json")
umoci=$(jq '.results[] | select(.command == "umoci") | .mean' "$work/result.json")
echo "berth unpack: ${berth}s  umoci unpack: ${umoci}s  ratio umoci/berth: $(echo "$umoci $berth" | awk '{printf "%.2f", $1 / $2}')x"
