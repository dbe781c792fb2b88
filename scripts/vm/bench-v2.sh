#!/bin/bash
# Lifecycle benchmark on a pure cgroup v2 host: berth beside crun (and runc) inside the
# qemu TCG test VM (scripts/vm/), where crun runs unmodified. Each runtime runs the same
# bundle (/bin/true, with linux.resources) N times, interleaved; prints the mean per
# container and the ratios. Absolute numbers are slow (software emulation): compare ratios.
#
# Usage: scripts/vm/bench-v2.sh [ITERATIONS]     (default 30)
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
n=${1:-30}

berth=$("$here/build-static.sh" -p berth --bin berth | grep '/berth$')
mkdir -p "$repo/build/vm/tmp"
work=$(mktemp -d "$repo/build/vm/tmp/bench-v2.XXXXXX")
trap 'rm -rf "$work"' EXIT
sh "$repo/scripts/busybox-rootfs.sh" "$work/bundle/rootfs"
runc spec --bundle "$work/bundle"
jq '.process.terminal = false | .process.args = ["/bin/true"]
    | .linux.resources += {"memory": {"limit": 67108864}, "pids": {"limit": 64}}' \
    "$work/bundle/config.json" > "$work/c.json" && mv "$work/c.json" "$work/bundle/config.json"

# The peers are dynamically linked: bring their libraries along.
adds=(--add "$berth:/usr/bin/berth" --add "$work/bundle:/bundle")
for bin in /usr/bin/crun /usr/bin/runc; do
    adds+=(--add "$bin:$bin")
    for lib in $(ldd "$bin" | grep -o '/[^ ]*\.so[^ ]*'); do
        adds+=(--add "$(readlink -f "$lib"):$lib")
    done
done

cat > "$work/bench.sh" <<GUEST
n=$n
GUEST
cat >> "$work/bench.sh" <<'GUEST'
grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts || { echo "not a cgroup2 host"; exit 3; }
cd /bundle
now() { cut -d' ' -f1 /proc/uptime; }
total() { echo "$1 $2" | awk '{printf "%.1f", ($2 - $1) * 1000}'; }
# The VM's root is the initial ramfs, which pivot_root cannot leave: all use --no-pivot.
for rt in berth crun runc; do eval "t_$rt=0"; done
for i in $(seq 1 "$n"); do
    for rt in berth crun runc; do
        s=$(now)
        $rt --root /run/$rt run --no-pivot "b$i" >/dev/null || { echo "$rt run failed"; exit 1; }
        e=$(now)
        eval "t_$rt=\$(echo \$t_$rt \$s \$e | awk '{print \$1 + (\$3 - \$2)}')"
    done
done
echo "pure cgroup v2 (qemu TCG), /bin/true with linux.resources, $n interleaved iterations:"
for rt in berth crun runc; do
    eval "t=\$t_$rt"
    echo "$rt $t $t_berth $n" | awk '{printf "  %-6s %8.1f ms per container  %5.2fx berth\n", $1, $2 * 1000 / $4, $2 / $3}'
done
GUEST
# overlay: as on a real host, where fsopen("overlay") autoloads it; without it berth
# falls back to copying its binary into a sealed memfd for every container.
exec "$here/run-in-vm.sh" "${adds[@]}" --modules overlay --script "$work/bench.sh" --mem 1G --cpus 2 --timeout 900
