# Shared helpers for tests/clients/run.sh and benches/clients/run.sh (bash; sourced).
#
# Every case runs in its own `bash -euo pipefail` child under `timeout`, so one hung client
# command cannot stall the suite and `set -e` really applies inside the case (it would not
# inside an `if ( ... )` subshell). Cases see only exported variables and the functions of
# lib.sh and of their client file, which the child sources again.
#
# Cleanup: cl_on_exit pushes a command; cl_cleanup runs them newest first, once, from the
# EXIT/INT/TERM trap that cl_init installs. Nothing outside CL_WORK is touched except what a
# client creates on its own (cgroup parents, /run state), and each client file registers
# the removal of exactly those names.

CL_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export CL_REPO
CL_LIB=$CL_REPO/scripts/clients/lib.sh
export CL_LIB
CL_PASS=0 CL_FAIL=0 CL_SKIP=0
CL_CLEANUPS=()

cl_log() { printf '%s\n' "$*" >&2; }

# The berth binary under test: $BERTH_BIN, else the newer of the release and debug builds.
cl_pick_berth() {
    if [ -n "${BERTH_BIN:-}" ]; then :
    else
        local r=$CL_REPO/target/release/berth d=$CL_REPO/target/debug/berth
        if [ -x "$r" ] && { [ ! -x "$d" ] || [ "$r" -nt "$d" ]; }; then BERTH_BIN=$r; else BERTH_BIN=$d; fi
    fi
    [ -x "$BERTH_BIN" ] || { cl_log "no berth binary at $BERTH_BIN: run cargo build -p berth"; return 1; }
    export BERTH_BIN
}

cl_on_exit() { CL_CLEANUPS+=("$1"); }

# Remove these directories at exit (deepest last given, removed first) if they do not exist
# now and are empty then: fixed paths that containerd's shims create (/run/containerd/s).
cl_rmdir_if_new() {
    local d
    for d in "$@"; do [ -e "$d" ] || cl_on_exit "rmdir '$d'"; done
}

cl_cleanup() {
    local i
    for ((i = ${#CL_CLEANUPS[@]} - 1; i >= 0; i--)); do
        eval "${CL_CLEANUPS[i]}" >/dev/null 2>&1 || true
    done
    CL_CLEANUPS=()
}

# Unmount everything at or below $1, deepest first.
cl_umount_under() {
    local m
    findmnt -rn -o TARGET | grep -E "^$1(/|$)" | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

# Remove a cgroup directory tree named $1 (relative to each hierarchy) in every v1
# controller and in the v2 tree, deepest first; rmdir only, so a live process keeps it.
# Retried a few times: a client's monitor (conmon, shim) may still be exiting.
cl_rm_cgroup() {
    cl_until 25 cl_rm_cgroup_once "$1"
}
cl_rm_cgroup_once() {
    local h left=0
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do
        [ -d "$h$1" ] || continue
        find "$h$1" -depth -type d -exec rmdir {} \; 2>/dev/null
        [ ! -d "$h$1" ] || left=1
    done
    return "$left"
}

# Does any hierarchy already hold cgroup $1?
cl_cgroup_exists() {
    local h
    for h in /sys/fs/cgroup/*/ /sys/fs/cgroup/unified/; do [ -d "$h$1" ] && return 0; done
    return 1
}

cl_init() {
    cl_pick_berth
    CL_WORK=$(mktemp -d /tmp/berth-clients.XXXXXX)
    export CL_WORK
    mkdir -p "$CL_WORK/logs"
    trap 'cl_cleanup' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    cl_on_exit "rm -rf '$CL_WORK'"
    cl_on_exit "cl_umount_under '$CL_WORK'"
}

# A runtime executable for clients that take a bare path: it fixes the log file, the
# berth binary and (optionally) berth's state root, then runs the logging wrapper. The root
# goes through BERTH_ROOT because some calls carry no --root (podman's cleanup process
# drops --runtime-flag); an explicit --root from a client still wins.
cl_make_wrapper() { # DEST LOGFILE [STATE_ROOT]
    cat >"$1" <<W
#!/bin/sh
export BERTH_WRAPPER_LOG='$2' BERTH_BIN='$BERTH_BIN'${3:+ BERTH_ROOT='$3'}
exec '$CL_REPO/scripts/clients/berth-logging-wrapper.sh' "\$@"
W
    chmod +x "$1"
}

# The busybox image as a rootfs tarball, built once per run.
cl_busybox_tar() {
    if [ ! -f "$CL_WORK/busybox.tar" ]; then
        sh "$CL_REPO/scripts/busybox-rootfs.sh" "$CL_WORK/busybox-rootfs" >/dev/null
        tar -C "$CL_WORK/busybox-rootfs" -cf "$CL_WORK/busybox.tar" .
    fi
    printf '%s\n' "$CL_WORK/busybox.tar"
}

# cl_case CLIENT_FILE NAME FUNCTION: run FUNCTION in a fresh strict shell; PASS or FAIL.
cl_case() {
    local file=$1 name=$2 fn=$3 log rc
    log=$CL_WORK/logs/$name.log
    timeout -k 10 "${CL_CASE_TIMEOUT:-180}" bash -c \
        'set -euo pipefail; . "$1"; . "$2"; exec 9>&2; BASH_XTRACEFD=9; set -x; "$3"' _ "$CL_LIB" "$file" "$fn" >"$log" 2>&1 </dev/null
    rc=$?
    if [ "$rc" -eq 0 ]; then
        CL_PASS=$((CL_PASS + 1))
        printf 'PASS %s\n' "$name"
    else
        CL_FAIL=$((CL_FAIL + 1))
        printf 'FAIL %s (exit %s)\n' "$name" "$rc"
        tail -n 25 "$log" | sed 's/^/    | /'
    fi
}

cl_skip() {
    CL_SKIP=$((CL_SKIP + 1))
    printf 'SKIP %s (%s)\n' "$1" "$2"
}

cl_summary() {
    printf '%s passed, %s failed\n' "$CL_PASS" "$CL_FAIL"
    [ "$CL_FAIL" -eq 0 ]
}

# --- assertions for cases ---
cl_fail() { printf 'ASSERT: %s\n' "$*" >&2; return 1; }
cl_eq() { # ACTUAL EXPECTED WHAT
    [ "$1" = "$2" ] || cl_fail "$3: got '$1', want '$2'"
}
cl_contains() { # HAYSTACK NEEDLE WHAT
    case $1 in *"$2"*) ;; *) cl_fail "$3: '$2' not in '$1'" ;; esac
}
# Retry a command until it succeeds (no wall-time assertion: only a cap on attempts).
cl_until() { # TRIES CMD...
    local n=$1
    shift
    while ! "$@"; do
        n=$((n - 1))
        [ "$n" -gt 0 ] || return 1
        sleep 0.2
    done
}
