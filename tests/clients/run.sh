#!/bin/bash
# Drive berth from real clients: podman, containerd (ctr) and dockerd.
#   tests/clients/run.sh [podman|containerd|docker ...]   (default: all three)
# Prints PASS/FAIL/SKIP per case, then "N passed, M failed"; exits non-zero on a failure.
# Everything it starts (daemons, containers, mounts, cgroups, sockets) is stopped and
# removed by the EXIT trap, also when a case fails or the run is interrupted.
# Environment: BERTH_BIN (default: newer of target/release/berth and target/debug/berth),
# CL_CASE_TIMEOUT (seconds per case, default 180), CL_KEEP_LOGS=1 (copy logs to ./clients-logs).
[ -n "${BASH_VERSION:-}" ] || exec bash "$0" "$@" # also when started with sh
set -u
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../../scripts/clients/lib.sh"
[ "$(id -u)" -eq 0 ] || { echo "tests/clients/run.sh: needs root" >&2; exit 1; }
cl_init || exit 1
if [ "${CL_KEEP_LOGS:-0}" = 1 ]; then
    cl_on_exit "rm -rf '$PWD/clients-logs'; cp -r '$CL_WORK/logs' '$PWD/clients-logs'; cp '$CL_WORK'/wrapper-*.log '$PWD/clients-logs/'"
fi
# Work from the run's own directory: conmon writes an "oom" file into its working
# directory when a container is OOM-killed, and nothing may land in the caller's.
cd "$CL_WORK" || exit 1
clients=("$@")
[ ${#clients[@]} -gt 0 ] || clients=(podman containerd docker)
for c in "${clients[@]}"; do
    [ -f "$here/$c.sh" ] || { echo "tests/clients/run.sh: unknown client $c" >&2; exit 2; }
    . "$here/$c.sh"
    echo "== $c"
    "${c}_suite"
done
cl_summary
