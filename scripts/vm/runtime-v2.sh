#!/bin/bash
# Run berth containers on a pure cgroup v2 host: the qemu TCG test VM (scripts/vm/) boots
# Debian's kernel with only cgroup2 mounted, and a statically linked berth runs busybox
# containers there with linux.resources set, checking from the host side of the VM that
# every limit reached the right cgroup2 file and is enforced (pids fork limit, memory OOM
# kill), and that pause/resume (cgroup.freeze), update, exec, kill --all (cgroup.kill)
# and delete work and leave no cgroup behind.
#
# Usage: scripts/vm/runtime-v2.sh [--timeout SECONDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout=600
[[ ${1:-} == --timeout ]] && timeout=${2:?--timeout needs seconds}

berth=$("$here/build-static.sh" -p berth --bin berth | grep '/berth$')
mkdir -p "$repo/build/vm/tmp"
work=$(mktemp -d "$repo/build/vm/tmp/runtime-v2.XXXXXX")
trap 'rm -rf "$work"' EXIT
sh "$repo/scripts/busybox-rootfs.sh" "$work/bundle/rootfs"
"$berth" spec --bundle "$work/bundle"
jq '.process.terminal = false | .root.readonly = false
    | .linux.resources = {
        "memory": {"limit": 67108864},
        "pids": {"limit": 32},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000},
        "devices": [{"allow": false, "access": "rwm"}]
      }' "$work/bundle/config.json" > "$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

cat > "$work/test.sh" <<'GUEST'
set -u
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
B="/usr/bin/berth --root /run/berth"
cg=/sys/fs/cgroup/berth-c1
grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts || { echo "not a cgroup2 host"; exit 3; }
cd /bundle
# A long-running container with limits.
sed 's/"args": \[[^]]*\]/"args": ["sleep", "600"]/' config.json > /tmp/c.json && cp /tmp/c.json config.json
# The VM's root is the initial ramfs, which pivot_root cannot leave (as for runc).
$B --debug --log /tmp/c1.log run -d --no-pivot c1 || { echo "FAIL run -d"; exit 1; }
# Debian 12's kernel refuses detached mounts as overlayfs layers: init must still run from
# the read-only overlay view of berth, not fall back to a memfd copy of the binary.
check "init from the overlay view" '! grep -q "overlay of the berth binary unavailable" /tmp/c1.log'
check "own cgroup only" '$B exec c1 ls /sys/fs/cgroup | grep -q "^cgroup.procs$" && ! $B exec c1 ls /sys/fs/cgroup | grep -q "^berth-"'
check "status running" '$B state c1 | grep -q "\"status\": \"running\""'
check "memory.max" '[ "$(cat $cg/memory.max)" = 67108864 ]'
check "pids.max" '[ "$(cat $cg/pids.max)" = 32 ]'
check "cpu.max" '[ "$(cat $cg/cpu.max)" = "20000 100000" ]'
check "cpu.weight from shares" '[ "$(cat $cg/cpu.weight)" = 20 ]'
check "init in cgroup" '[ "$(cat $cg/cgroup.procs)" = "$($B state c1 | sed -n "s/.*\"pid\": \([0-9]*\).*/\1/p")" ]'
check "exec in cgroup" '$B exec c1 cat /proc/self/cgroup | grep -q "^0::/$"'
check "pids limit enforced" '! $B exec c1 sh -c "for i in \$(seq 1 40); do sleep 5 & done; wait" 2>/dev/null'
check "device denied" '! $B exec c1 sh -c "cat /dev/sda" 2>/dev/null'
check "null allowed" '$B exec c1 sh -c "echo x > /dev/null"'
$B pause c1
check "paused" '$B state c1 | grep -q "\"status\": \"paused\"" && [ "$(grep frozen $cg/cgroup.events)" = "frozen 1" ]'
$B resume c1
check "resumed" '$B state c1 | grep -q "\"status\": \"running\""'
$B update --memory 33554432 --pids-limit 16 c1
check "update" '[ "$(cat $cg/memory.max)" = 33554432 ] && [ "$(cat $cg/pids.max)" = 16 ]'
check "OOM kill" '! $B exec c1 awk "BEGIN { s = \"x\"; while (1) s = s s }" 2>/dev/null && grep -q "oom_kill [1-9]" $cg/memory.events'
check "events --stats" '$B events --stats c1 | grep -q "\"type\":\"stats\""'
$B exec -d c1 sleep 300
$B kill --all c1 KILL
sleep 1
check "kill --all stops everything" '$B state c1 | grep -q "\"status\": \"stopped\""'
$B delete c1
check "cgroup removed" '[ ! -e $cg ]'
check "state removed" '[ ! -e /run/berth/c1 ]'
exit $fail
GUEST

exec "$here/run-in-vm.sh" --add "$berth:/usr/bin/berth" --add "$work/bundle:/bundle" --script "$work/test.sh" --modules overlay \
    --mem 1G --cpus 2 --timeout "$timeout"
