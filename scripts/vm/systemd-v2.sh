#!/bin/bash
# The systemd cgroup driver against a real systemd: the qemu TCG test VM boots Debian's
# systemd as PID 1 on pure cgroup v2 (init-systemd.sh: the host's / read-only over 9p
# under a tmpfs overlay, dbus started), and berth --systemd-cgroup runs busybox
# containers there. Checked from the guest's host side: the transient scope and its
# properties (systemctl show), the cgroup files, `update` through SetUnitProperties,
# `delete` removing the unit and its cgroup without touching other units, the
# slice:prefix:name cgroupsPath with a nested slice, one-line refusals, and podman
# --cgroup-manager systemd with berth as its runtime.
#
# Usage: scripts/vm/systemd-v2.sh [--timeout SECONDS]
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
timeout=400
[[ ${1:-} == --timeout ]] && timeout=${2:?--timeout needs seconds}

# The guest's root is the host's, so berth's ordinary build runs there as it is.
(cd "$repo" && cargo build -q -p berth --bin berth)
target=$(cd "$repo" && cargo metadata -q --format-version 1 --no-deps | jq -r .target_directory)
berth=$target/debug/berth
mkdir -p "$repo/build/vm/tmp"
work=$(mktemp -d "$repo/build/vm/tmp/systemd-v2.XXXXXX")
trap 'rm -rf "$work"' EXIT
sh "$repo/scripts/busybox-rootfs.sh" "$work/bundle/rootfs"
"$berth" spec --bundle "$work/bundle"
jq '.process.terminal = false | .process.args = ["sleep", "600"]
    | .linux.resources = {
        "memory": {"limit": 67108864},
        "pids": {"limit": 32},
        "cpu": {"shares": 512, "quota": 20000, "period": 100000, "cpus": "0"}
      }' "$work/bundle/config.json" >"$work/config.json"
mv "$work/config.json" "$work/bundle/config.json"

{
    echo '#!/bin/bash'
    printf 'BERTH=%q\nBUNDLE=%q\n' "$berth" "$work/bundle"
    cat <<'GUEST'
set -u
fail=0
check() { if eval "$2"; then echo "ok   $1"; else echo "FAIL $1"; fail=1; fi; }
show() { systemctl show -p "$2" --value "$1"; }
gone() { [ "$(show "$1" LoadState)" = not-found ] && [ ! -e "$2" ]; }
B="$BERTH --systemd-cgroup"
start=$(cut -d' ' -f1 /proc/uptime)
[ "$(cat /proc/1/comm)" = systemd ] && grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts ||
    { echo "not systemd on pure cgroup v2"; exit 3; }
echo "systemd $(systemctl --version | head -1 | cut -d' ' -f2), system bus $(busctl --system status --no-pager >/dev/null 2>&1 && echo up || echo down)"
# Under /run: units with default dependencies pull in sysinit.target, whose tmpfiles run
# empties /tmp.
T=/run/berth-test
mkdir -p $T && cp -a "$BUNDLE" $T/bundle && cd $T/bundle || exit 3

# 1. Default cgroupsPath: system.slice:berth:<id>.
u=berth-c1.scope cg=/sys/fs/cgroup/system.slice/berth-c1.scope
$B run -d c1 || { echo "FAIL run -d c1"; exit 1; }
check "scope active" '[ "$(show $u ActiveState)" = active ]'
check "Delegate=yes in system.slice" '[ "$(show $u Delegate)" = yes ] && [ "$(show $u Slice)" = system.slice ]'
check "ControlGroup" '[ "$(show $u ControlGroup)" = /system.slice/berth-c1.scope ]'
check "MemoryMax + memory.max" '[ "$(show $u MemoryMax)" = 67108864 ] && [ "$(cat $cg/memory.max)" = 67108864 ]'
check "TasksMax + pids.max" '[ "$(show $u TasksMax)" = 32 ] && [ "$(cat $cg/pids.max)" = 32 ]'
check "CPUWeight from shares" '[ "$(show $u CPUWeight)" = 20 ] && [ "$(cat $cg/cpu.weight)" = 20 ]'
check "CPUQuotaPerSecUSec + cpu.max" '[ "$(show $u CPUQuotaPerSecUSec)" = 200ms ] && [ "$(cat $cg/cpu.max)" = "20000 100000" ]'
check "AllowedCPUs + cpuset.cpus" '[ "$(show $u AllowedCPUs)" = 0 ] && [ "$(cat $cg/cpuset.cpus)" = 0 ]'
pid=$($B state c1 | jq .pid)
check "init in the scope" '[ "$(cat $cg/cgroup.procs)" = "$pid" ]'
check "exec joins the scope" '$B exec c1 cat /proc/self/cgroup | grep -qx "0::/" && [ "$(wc -l <$cg/cgroup.procs)" = 1 ]'
check "pids limit enforced" '! $B exec c1 sh -c "for i in \$(seq 1 40); do sleep 5 & done; wait" 2>/dev/null'
$B update --memory 33554432 --pids-limit 16 --cpu-quota 50000 c1
check "update: MemoryMax + memory.max" '[ "$(show $u MemoryMax)" = 33554432 ] && [ "$(cat $cg/memory.max)" = 33554432 ]'
check "update: TasksMax + pids.max" '[ "$(show $u TasksMax)" = 16 ] && [ "$(cat $cg/pids.max)" = 16 ]'
check "update: CPUQuota + cpu.max" '[ "$(show $u CPUQuotaPerSecUSec)" = 500ms ] && [ "$(cat $cg/cpu.max)" = "50000 100000" ]'
$B pause c1
check "pause freezes the scope" '[ "$($B state c1 | jq -r .status)" = paused ] && grep -qx "frozen 1" $cg/cgroup.events'
$B resume c1
systemd-run --quiet -p DefaultDependencies=no --unit berth-bystander sleep 600
$B delete --force c1
check "delete: unit and cgroup gone" 'gone $u $cg'
check "delete: no failed unit" '! systemctl list-units --all --no-legend "berth-c1*" | grep -q .'
check "delete: other units untouched" '[ "$(show berth-bystander.service ActiveState)" = active ]'
systemctl stop berth-bystander

# 2. slice:prefix:name with a nested slice; a container that exits on its own.
mkdir -p $T/c2 $T/c4
jq --arg r $T/bundle/rootfs '.linux.cgroupsPath = "berth-test.slice:app:c2" | .root.path = $r' config.json >$T/c2/config.json
u=app-c2.scope cg=/sys/fs/cgroup/berth.slice/berth-test.slice/app-c2.scope
$B run -d --bundle $T/c2 c2 || echo "FAIL run -d c2"
check "nested slice: scope in berth-test.slice" '[ "$(show $u Slice)" = berth-test.slice ] && [ "$(show $u ControlGroup)" = /berth.slice/berth-test.slice/app-c2.scope ]'
check "nested slice: cgroup files" '[ "$(cat $cg/memory.max)" = 67108864 ]'
$B kill c2 KILL
for i in $(seq 50); do [ "$($B state c2 2>/dev/null | jq -r .status)" = stopped ] && break; sleep 0.1; done
$B delete c2
check "nested slice: unit and cgroup gone" 'gone $u $cg'
check "nested slice: the slices systemd made for it are gone" '[ "$(show berth-test.slice ActiveState)" = inactive ] && [ "$(show berth.slice ActiveState)" = inactive ] && [ ! -e /sys/fs/cgroup/berth.slice ]'
jq '.process.args = ["true"]' config.json >config.true && cp config.true config.json
check "foreground run: exit 0, scope gone" '$B run c3 && gone berth-c3.scope /sys/fs/cgroup/system.slice/berth-c3.scope'

# 3. Refusals: one line, nothing left behind.
jq --arg r $T/bundle/rootfs '.linux.cgroupsPath = "/plain/path" | .root.path = $r' config.json >$T/c4/config.json
err=$($B run --bundle $T/c4 c4 2>&1)
check "cgroupfs path refused in one line" '[ $(printf "%s\n" "$err" | wc -l) = 1 ] && printf "%s" "$err" | grep -q "slice:prefix:name"'
lst=$($B list -q 2>&1)
check "refusal leaves no state" '[ ! -e /run/berth/c4 ] && [ -z "$lst" ]'
[ -z "$lst" ] || echo "  list: $lst"
echo "  ($err)"

# 4. podman with the systemd cgroup manager and berth as its runtime.
P="podman --runtime $BERTH --cgroup-manager systemd --events-backend file --root /var/lib/containers/storage --runroot /run/podman-test"
if id=$($P run -d --network none --memory 64m --pids-limit 20 --rootfs $T/bundle/rootfs sleep 600); then
    u=libpod-$id.scope
    check "podman: scope in machine.slice" '[ "$(show $u Slice)" = machine.slice ] && [ "$(show $u ActiveState)" = active ]'
    check "podman: limits" '[ "$(show $u MemoryMax)" = 67108864 ] && [ "$(show $u TasksMax)" = 20 ]'
    check "podman: exec sees its limit" '[ "$($P exec $id cat /sys/fs/cgroup/memory.max)" = 67108864 ]'
    $P rm -f -t 0 "$id" >/dev/null
    check "podman: scope gone after rm" 'gone $u /sys/fs/cgroup/machine.slice/$u'
else
    echo "FAIL podman run"; fail=1
fi

left=$(systemctl list-units --all --no-legend --type=scope,slice "berth-*" "berth.slice" "app-*" "libpod-*")
check "no berth or podman scope left" '[ -z "$left" ]'
[ -z "$left" ] || printf '  left: %s\n' "$left"
echo "guest time: $(awk -v s="$start" '{ printf "%.1f", $1 - s }' /proc/uptime)s"
exit $fail
GUEST
} >"$work/test.sh"

exec "$here/run-in-vm.sh" --pid1 "$here/init-systemd.sh" --share-root \
    --modules virtio_pci,9pnet_virtio,9p,overlay --script "$work/test.sh" \
    --mem 1536M --cpus 2 --timeout "$timeout"
