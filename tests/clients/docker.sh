# dockerd 20.10 (Debian's docker.io) driving berth. Sourced by tests/clients/run.sh (suite)
# and by each case's shell.
# Private daemon: daemon.json, data-root, exec-root (holding its managed containerd, the
# shims' state and berth's --root), pidfile and API socket under $DK_DIR; no iptables, no
# bridge (every container runs with --network none); cgroup parent /$DK_CGROUP, unique to
# this run; /run/containerd/s (the shims' sockets) is removed if this run created it. The docker client is Debian's /usr/bin/docker 20.10 (a newer client may sit
# earlier in PATH). DK_RUNTIME=runc runs the same cases against runc, to check the cases.
DK_IMG=localhost/berth-busybox:clients

dk() { timeout -k 5 120 /usr/bin/docker -H "unix://$DK_DIR/docker.sock" "$@"; }
dk_run() { dk run --runtime "$DK_RUNTIME" --network none "$@"; }
dk_sleeper() { dk_run -d "$@" "$DK_IMG" sleep 1000; }
dk_state() { dk inspect -f "{{.State.$1}}" "$2"; } # FIELD ID
dk_logs_have() { dk logs "$2" 2>&1 | grep -q -- "$1"; } # TEXT ID
dk_cg_file() { # ID CONTROLLER FILE
    cat "/sys/fs/cgroup/$2/$DK_CGROUP/$(dk inspect -f '{{.Id}}' "$1")/$3"
}
dk_on_pty() { timeout -k 5 60 script -qec "$*" /dev/null; }

# --- cases ---
dk_run_echo() { cl_eq "$(dk_run --rm "$DK_IMG" echo hi)" hi "docker run --rm echo"; }

dk_exit_code() {
    local rc=0
    dk_run --rm "$DK_IMG" sh -c 'exit 7' || rc=$?
    cl_eq "$rc" 7 "docker run exit code"
    rc=0
    dk_run --rm "$DK_IMG" /no/such/binary || rc=$?
    cl_eq "$rc" 127 "docker run exit code for a missing executable"
}

dk_it() {
    local out
    out=$(dk_on_pty "/usr/bin/docker -H unix://$DK_DIR/docker.sock run --runtime $DK_RUNTIME --network none --rm -it $DK_IMG sh -c 'test -t 0 && tty'")
    cl_contains "$out" /dev/pts/ "docker run -it"
}

dk_detach_logs_exec_stop_rm() {
    local id rc=0
    id=$(dk_run -d "$DK_IMG" sh -c 'echo started; exec sleep 1000')
    cl_until 50 dk_logs_have started "$id"
    cl_eq "$(dk_state Status "$id")" running "status after run -d"
    cl_eq "$(dk exec "$id" echo inside)" inside "docker exec"
    dk exec "$id" sh -c 'exit 3' || rc=$?
    cl_eq "$rc" 3 "docker exec exit code"
    cl_contains "$(dk_on_pty "/usr/bin/docker -H unix://$DK_DIR/docker.sock exec -it $id tty")" /dev/pts/ "docker exec -it"
    # sleep as PID 1 ignores SIGTERM: stop escalates to SIGKILL after the timeout.
    dk stop -t 1 "$id" >/dev/null
    cl_eq "$(dk_state Status "$id")" exited "status after stop"
    cl_eq "$(dk_state ExitCode "$id")" 137 "exit code after stop"
    dk rm "$id" >/dev/null
    if dk inspect "$id" >/dev/null 2>&1; then cl_fail "container $id still exists after rm"; fi
    id=$(dk_sleeper)
    dk rm -f "$id" >/dev/null
    if dk inspect "$id" >/dev/null 2>&1; then cl_fail "container $id still exists after rm -f"; fi
}

dk_pause_top_stats() {
    local id
    id=$(dk_sleeper --memory 64m)
    dk pause "$id" >/dev/null
    cl_eq "$(dk_state Status "$id")" paused "status after pause"
    cl_eq "$(dk_cg_file "$id" freezer freezer.state)" FROZEN "freezer.state after pause"
    dk unpause "$id" >/dev/null
    cl_eq "$(dk_state Status "$id")" running "status after unpause"
    cl_eq "$(dk_cg_file "$id" freezer freezer.state)" THAWED "freezer.state after unpause"
    cl_contains "$(dk top "$id")" "sleep 1000" "docker top"
    cl_contains "$(dk stats --no-stream --format '{{.MemUsage}} {{.PIDs}}' "$id")" "/ 64MiB 1" "docker stats"
    dk rm -f "$id" >/dev/null
}

dk_resources() {
    local id rc=0
    id=$(dk_sleeper --memory 64m --memory-swap 64m --pids-limit 20 --cpus 0.5)
    cl_eq "$(dk_cg_file "$id" memory memory.limit_in_bytes)" 67108864 "memory.limit_in_bytes for --memory 64m"
    cl_eq "$(dk_cg_file "$id" pids pids.max)" 20 "pids.max for --pids-limit 20"
    cl_eq "$(dk_cg_file "$id" cpu cpu.cfs_quota_us)" 50000 "cpu.cfs_quota_us for --cpus 0.5"
    dk rm -f "$id" >/dev/null
    dk_run --rm --memory 32m --memory-swap 32m "$DK_IMG" \
        sh -c 'x=$(head -c 209715200 /dev/zero | tr "\0" a); echo survived' || rc=$?
    cl_eq "$rc" 137 "exit code of a container over its memory limit"
}

# --- suite (runs in the runner's shell) ---
docker_installed() { [ -x /usr/sbin/dockerd ] && [ -x /usr/bin/docker ]; }

# A private dockerd running with berth added as runtime "berth" (and any further
# NAME=PATH runtimes given), the image imported; cleanup registered.
docker_setup() {
    local rt extra=()
    for rt in "$@"; do extra+=(--add-runtime "$rt"); done
    DK_DIR=$CL_WORK/docker
    DK_CGROUP=berth-clients-docker-$$
    DK_RUNTIME=${DK_RUNTIME:-berth}
    export DK_DIR DK_CGROUP DK_RUNTIME
    mkdir -p "$DK_DIR"
    cl_make_wrapper "$DK_DIR/berth-wrapper" "$CL_WORK/wrapper-docker.log"
    echo '{}' >"$DK_DIR/daemon.json"
    cl_rmdir_if_new /run/containerd /run/containerd/s
    cl_cgroup_exists "$DK_CGROUP" || cl_on_exit "cl_rm_cgroup '$DK_CGROUP'"
    dockerd --config-file "$DK_DIR/daemon.json" --data-root "$DK_DIR/data" \
        --exec-root "$DK_DIR/exec" --pidfile "$DK_DIR/docker.pid" -H "unix://$DK_DIR/docker.sock" \
        --iptables=false --ip-masq=false --bridge=none --userland-proxy=false \
        --storage-driver overlay2 --cgroup-parent "/$DK_CGROUP" \
        --add-runtime "berth=$DK_DIR/berth-wrapper" "${extra[@]}" >"$CL_WORK/logs/dockerd.log" 2>&1 &
    DK_DAEMON=$!
    cl_on_exit "docker_teardown"
    cl_until 150 dk version >/dev/null 2>&1 &&
        dk import "$(cl_busybox_tar)" "$DK_IMG" >"$CL_WORK/logs/docker-import.log" 2>&1
}

docker_suite() {
    local f=${BASH_SOURCE[0]}
    if ! docker_installed; then
        cl_skip docker "dockerd/docker 20.10 from Debian's docker.io are not installed (scripts/setup.sh)"
        return
    fi
    if ! docker_setup; then
        cl_case "$f" docker-setup false
        return
    fi
    dk_case() { cl_case "$f" "$@"; }
    dk_case docker-run-echo dk_run_echo
    dk_case docker-exit-code dk_exit_code
    dk_case docker-run-it dk_it
    dk_case docker-detach-logs-exec-stop-rm dk_detach_logs_exec_stop_rm
    dk_case docker-pause-top-stats dk_pause_top_stats
    dk_case docker-resources dk_resources
}

docker_teardown() {
    local id pid
    for id in $(dk ps -aq 2>/dev/null); do dk rm -f "$id"; done
    kill "$DK_DAEMON" 2>/dev/null && wait "$DK_DAEMON"
    # dockerd stops its managed containerd; shims that outlived it name its socket.
    for pid in $(pgrep -f -- "-address $DK_DIR/exec/containerd/containerd.sock"); do kill -9 "$pid"; done
    for id in $("$BERTH_BIN" --root "$DK_DIR/exec/runtime-runc/moby" list -q 2>/dev/null); do
        "$BERTH_BIN" --root "$DK_DIR/exec/runtime-runc/moby" delete --force "$id"
    done
    cl_umount_under "$DK_DIR"
}
