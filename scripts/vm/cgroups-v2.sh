#!/bin/bash
# Runs berth-cgroups' test executables inside the pure cgroup v2 VM (scripts/vm/), where
# the host tests (tests::host) find cgroup2 at /sys/fs/cgroup with memory, cpu, cpuset,
# io and pids delegated, and exercise them for real instead of the host's hybrid layout.
#
# Usage: scripts/vm/cgroups-v2.sh [--timeout SECONDS]
# Exits with the guest's status: 0 only if every test passed and none skipped for lack of
# root or of a cgroup2 tree.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
timeout=600
if [[ ${1:-} == --timeout ]]; then
    timeout=${2:?--timeout needs seconds}
fi

mapfile -t exes < <("$here/build-static.sh" --tests -p berth-cgroups)
adds=()
for t in "${exes[@]}"; do
    adds+=(--add "$t:/tests/${t##*/}")
done

exec "$here/run-in-vm.sh" "${adds[@]}" --modules brd --mem 1G --cpus 2 --timeout "$timeout" --cmd '
[ -e /sys/block/ram0 ] || { echo "cgroups-v2: brd gave no /dev/ram0 (io.max needs a block device)"; exit 3; }
grep -q " /sys/fs/cgroup cgroup2 " /proc/mounts || { echo "cgroups-v2: /sys/fs/cgroup is not cgroup2"; exit 3; }
echo "cgroups-v2: controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
for t in /tests/*; do
    "$t" --test-threads=1 --nocapture >/tmp/out 2>&1
    rc=$?
    cat /tmp/out
    [ $rc -eq 0 ] || exit $rc
    # A whole test skipped ("skipping: ...") means the VM lacked something it should have.
    if grep -q "skipping: " /tmp/out; then echo "cgroups-v2: a test skipped"; exit 4; fi
done
echo "cgroups-v2: all tests passed on pure cgroup v2"
'
