# podman 4.3 driving berth. Sourced by tests/clients/run.sh (suite) and by each case's shell.
# Private state: storage, runroot, tmpdir, containers.conf, berth's state root (BERTH_ROOT
# set by the wrapper) and the wrapper log all live under $PM_DIR; the only shared names are podman's cgroup parent
# "libpod_parent" (removed at the end if this run created it) and conmon processes (each
# container's conmon exits when the container is removed).
PM_IMG=localhost/berth-busybox:clients

pm() {
    podman --root "$PM_DIR/root" --runroot "$PM_DIR/runroot" --tmpdir "$PM_DIR/tmp" \
        --storage-driver overlay --cgroup-manager cgroupfs --events-backend file \
        --runtime "$PM_DIR/berth" "$@"
}

# FILE of CONTROLLER for the cgroup that holds PID, read from the host side.
pm_cg_file() { # PID CONTROLLER FILE
    local path
    path=$(awk -F: -v c="$2" '{ n = split($2, a, ","); for (i = 1; i <= n; i++) if (a[i] == c) print $3 }' "/proc/$1/cgroup")
    cat "/sys/fs/cgroup/$2$path/$3"
}

pm_pid() { pm inspect -f '{{.State.Pid}}' "$1"; }
pm_status() { pm inspect -f '{{.State.Status}}' "$1"; }
pm_is() { [ "$(pm_status "$2")" = "$1" ]; } # STATUS ID
pm_logs_have() { pm logs "$2" 2>&1 | grep -q -- "$1"; } # TEXT ID
pm_exitcode() { pm inspect -f '{{.State.ExitCode}}' "$1"; }
pm_sleeper() { pm run -d --network none "$@" "$PM_IMG" sleep 1000; }

# --- cases ---
pm_run_echo() { cl_eq "$(pm run --rm --network none "$PM_IMG" echo hi)" hi "run --rm echo"; }

pm_exit_codes() {
    local rc=0
    pm run --rm --network none "$PM_IMG" sh -c 'exit 7' || rc=$?
    cl_eq "$rc" 7 "exit code of sh -c 'exit 7'"
}

# podman maps the runtime's error text to 127 ("not found") as it does for runc.
pm_exit_code_not_found() {
    local rc=0
    pm run --rm --network none "$PM_IMG" /no/such/binary || rc=$?
    cl_eq "$rc" 127 "exit code for a missing executable"
}

pm_tty() {
    local out
    out=$(pm run --rm -t --network none "$PM_IMG" sh -c 'test -t 1 && tty')
    cl_contains "$out" /dev/pts/ "tty inside run -t"
}

pm_detach_logs() {
    local id
    id=$(pm run -d --network none "$PM_IMG" sh -c 'echo started; exec sleep 1000')
    cl_until 50 pm_logs_have started "$id"
    cl_eq "$(pm_status "$id")" running "status of a detached container"
    pm rm -f -t 0 "$id" >/dev/null
}

pm_exec() {
    local id rc=0
    id=$(pm_sleeper)
    cl_eq "$(pm exec "$id" echo inside)" inside "exec without a terminal"
    cl_contains "$(pm exec -t "$id" tty)" /dev/pts/ "exec -t"
    pm exec "$id" sh -c 'exit 3' || rc=$?
    cl_eq "$rc" 3 "exit code of exec"
    pm rm -f -t 0 "$id" >/dev/null
}

pm_pause_unpause() {
    local id pid
    id=$(pm_sleeper)
    pid=$(pm_pid "$id")
    pm pause "$id" >/dev/null
    cl_eq "$(pm_status "$id")" paused "status after pause"
    cl_eq "$(pm_cg_file "$pid" freezer freezer.state)" FROZEN "freezer.state after pause"
    pm unpause "$id" >/dev/null
    cl_eq "$(pm_status "$id")" running "status after unpause"
    cl_eq "$(pm_cg_file "$pid" freezer freezer.state)" THAWED "freezer.state after unpause"
    pm rm -f -t 0 "$id" >/dev/null
}

pm_stop() {
    local id
    # sleep as PID 1 has no SIGTERM handler, so the kernel drops SIGTERM: stop must escalate.
    id=$(pm_sleeper)
    pm stop -t 1 "$id" >/dev/null
    cl_eq "$(pm_status "$id")" exited "status after stop"
    cl_eq "$(pm_exitcode "$id")" 137 "exit code after SIGKILL escalation"
    pm rm "$id" >/dev/null
    # A handler for SIGTERM: stop ends the container with the handler's exit code.
    id=$(pm run -d --network none "$PM_IMG" sh -c 'trap "exit 42" TERM; while :; do sleep 0.1; done')
    pm stop -t 60 "$id" >/dev/null
    cl_eq "$(pm_exitcode "$id")" 42 "exit code after SIGTERM handled"
    pm rm "$id" >/dev/null
}

pm_kill() {
    local id
    id=$(pm run -d --network none "$PM_IMG" sh -c 'trap "exit 10" USR1; echo ready; while :; do sleep 0.1; done')
    cl_until 50 pm_logs_have ready "$id"
    pm kill -s USR1 "$id" >/dev/null
    pm wait "$id" >/dev/null
    cl_eq "$(pm_exitcode "$id")" 10 "exit code after kill -s USR1"
    pm rm "$id" >/dev/null
    id=$(pm_sleeper)
    pm kill "$id" >/dev/null
    pm wait "$id" >/dev/null
    cl_eq "$(pm_exitcode "$id")" 137 "exit code after kill (SIGKILL)"
    pm rm "$id" >/dev/null
}

pm_rm_force() {
    local id
    id=$(pm_sleeper)
    pm rm -f -t 0 "$id" >/dev/null
    if pm container exists "$id"; then cl_fail "container $id still exists after rm -f"; fi
    if "$BERTH_BIN" --root "$PM_DIR/state" state "$id" >/dev/null 2>&1; then
        cl_fail "berth still has state for $id after rm -f"
    fi
}

pm_memory() {
    local id pid rc=0
    id=$(pm_sleeper --memory 64m --memory-swap 64m)
    pid=$(pm_pid "$id")
    cl_eq "$(pm_cg_file "$pid" memory memory.limit_in_bytes)" 67108864 "memory.limit_in_bytes for --memory 64m"
    pm rm -f -t 0 "$id" >/dev/null
    # Behaviour: holding 200 MiB in a 32 MiB container gets the container OOM-killed.
    pm run --rm --network none --memory 32m --memory-swap 32m "$PM_IMG" \
        sh -c 'x=$(head -c 209715200 /dev/zero | tr "\0" a); echo survived' || rc=$?
    cl_eq "$rc" 137 "exit code of a container over its memory limit"
}

pm_pids_limit() {
    local id pid out
    id=$(pm_sleeper --pids-limit 20)
    pid=$(pm_pid "$id")
    cl_eq "$(pm_cg_file "$pid" pids pids.max)" 20 "pids.max for --pids-limit 20"
    pm rm -f -t 0 "$id" >/dev/null
    # Behaviour: the 11th process cannot be forked; busybox sh reports it and gives up.
    out=$(pm run --rm --network none --pids-limit 10 "$PM_IMG" \
        sh -c 'for i in $(seq 30); do sleep 100 & done; echo all-started' 2>&1 || true)
    cl_contains "$out" "can't fork" "--pids-limit 10 with 30 background processes"
    case $out in *all-started*) cl_fail "--pids-limit 10: all 30 processes started" ;; esac
}

pm_cpus() {
    local id pid
    id=$(pm_sleeper --cpus 0.5)
    pid=$(pm_pid "$id")
    cl_eq "$(pm_cg_file "$pid" cpu cpu.cfs_period_us)" 100000 "cpu.cfs_period_us for --cpus 0.5"
    cl_eq "$(pm_cg_file "$pid" cpu cpu.cfs_quota_us)" 50000 "cpu.cfs_quota_us for --cpus 0.5"
    pm rm -f -t 0 "$id" >/dev/null
}

pm_cap_drop_all() {
    local dflt none
    dflt=$(pm run --rm --network none "$PM_IMG" grep CapEff /proc/self/status)
    none=$(pm run --rm --network none --cap-drop ALL "$PM_IMG" grep CapEff /proc/self/status)
    cl_eq "$(printf '%s' "$none" | tr -d '[:space:]')" "CapEff:0000000000000000" "CapEff with --cap-drop ALL"
    [ "$dflt" != "$none" ] || cl_fail "default CapEff equals the dropped one: $dflt"
    # Behaviour: without CAP_CHOWN, root cannot give a file away.
    if pm run --rm --network none --cap-drop ALL "$PM_IMG" sh -c 'touch /tmp/f && chown 1000 /tmp/f' 2>/dev/null; then
        cl_fail "chown succeeded without CAP_CHOWN"
    fi
}

pm_read_only() {
    if pm run --rm --network none --read-only "$PM_IMG" touch /x 2>/dev/null; then
        cl_fail "--read-only: touch /x succeeded"
    fi
    pm run --rm --network none --read-only "$PM_IMG" touch /tmp/x
}

pm_user() {
    cl_eq "$(pm run --rm --network none --user 1000:1000 "$PM_IMG" sh -c 'echo $(id -u):$(id -g)')" 1000:1000 "id under --user 1000:1000"
}

pm_top() {
    local id out
    id=$(pm_sleeper)
    out=$(pm top "$id")
    cl_contains "$out" "sleep 1000" "podman top"
    pm rm -f -t 0 "$id" >/dev/null
}

pm_stats() {
    local id out
    id=$(pm_sleeper --memory 64m)
    out=$(pm stats --no-stream --format '{{.ID}} {{.MemUsage}} {{.PIDs}}' "$id")
    cl_contains "$out" "/ 67.11MB" "stats memory limit (64 MiB)"
    cl_contains "$out" "${id:0:12}" "stats row"
    pm rm -f -t 0 "$id" >/dev/null
}

# --- suite (runs in the runner's shell) ---
# Private storage and configuration, the image imported; cleanup registered.
podman_setup() {
    PM_DIR=$CL_WORK/podman
    export PM_DIR
    mkdir -p "$PM_DIR/tmp"
    cl_make_wrapper "$PM_DIR/berth" "$CL_WORK/wrapper-podman.log" "$PM_DIR/state"
    # podman's default rlimits (nofile and nproc 1048576) exceed this sandbox's hard limits;
    # raising them needs CAP_SYS_RESOURCE, which runc would lack as well.
    cat >"$PM_DIR/containers.conf" <<C
[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[engine]
events_logger = "file"
cgroup_manager = "cgroupfs"
C
    export CONTAINERS_CONF=$PM_DIR/containers.conf
    cl_cgroup_exists libpod_parent || cl_on_exit "cl_rm_cgroup libpod_parent"
    cl_on_exit "podman_teardown"
    pm import "$(cl_busybox_tar)" "$PM_IMG" >"$CL_WORK/logs/podman-import.log" 2>&1
}

podman_suite() {
    local f=${BASH_SOURCE[0]}
    if ! podman_setup; then
        cl_case "$f" podman-setup false
        return
    fi
    cl_case "$f" podman-run-echo pm_run_echo
    cl_case "$f" podman-exit-codes pm_exit_codes
    cl_case "$f" podman-exit-code-not-found pm_exit_code_not_found
    cl_case "$f" podman-tty pm_tty
    cl_case "$f" podman-detach-logs pm_detach_logs
    cl_case "$f" podman-exec pm_exec
    cl_case "$f" podman-pause-unpause pm_pause_unpause
    cl_case "$f" podman-stop pm_stop
    cl_case "$f" podman-kill pm_kill
    cl_case "$f" podman-rm-force pm_rm_force
    cl_case "$f" podman-memory pm_memory
    cl_case "$f" podman-pids-limit pm_pids_limit
    cl_case "$f" podman-cpus pm_cpus
    cl_case "$f" podman-cap-drop-all pm_cap_drop_all
    cl_case "$f" podman-read-only pm_read_only
    cl_case "$f" podman-user pm_user
    cl_case "$f" podman-top pm_top
    cl_case "$f" podman-stats pm_stats
}

podman_teardown() {
    local id
    pm rm -af -t 0
    pm system reset -f
    for id in $("$BERTH_BIN" --root "$PM_DIR/state" list -q 2>/dev/null); do
        "$BERTH_BIN" --root "$PM_DIR/state" delete --force "$id"
    done
    cl_umount_under "$PM_DIR"
}
