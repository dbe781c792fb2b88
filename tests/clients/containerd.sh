# containerd 1.6 + ctr driving berth through the runc v2 shim. Sourced by tests/clients/run.sh
# (suite) and by each case's shell.
# Private daemon: config.toml, sockets, root and state under $CT_DIR; a namespace unique to
# this run ($CT_NS) so the cgroups ctr asks for (/<namespace>/<id>) cannot collide; berth's
# state under $CT_DIR/berth (ctr --runc-root). The shim itself puts its socket under
# /run/containerd/s and ctr its fifos under /run/containerd/fifo: those directories are
# removed at the end if this run created them and they are empty.
CT_IMG=localhost/berth-busybox:clients

ct() { timeout -k 5 120 ctr -a "$CT_DIR/containerd.sock" -n "$CT_NS" "$@"; }
# ctr run with berth as the shim's runtime binary (the runc option BinaryName).
ct_run() { ct run --runc-binary "$CT_DIR/berth-wrapper" --runc-root "$CT_DIR/berth" "$@"; }
ct_status() { ct task ls | awk -v id="$1" '$1 == id { print $3 }'; }
ct_is() { [ "$(ct_status "$2")" = "$1" ]; } # STATUS ID
ct_pid() { ct task ls | awk -v id="$1" '$1 == id { print $2 }'; }
ct_sleeper() { # ID [RUN FLAGS...]
    local id=$1
    shift
    ct_run -d "$@" "$CT_IMG" "$id" sleep 1000 >/dev/null
}
ct_cleanup_task() { # ID: kill, delete the task and the container
    ct task kill -s SIGKILL "$1" >/dev/null 2>&1 || true
    cl_until 50 ct_is STOPPED "$1" || true
    ct task delete "$1" >/dev/null 2>&1 || true
    ct container delete "$1" >/dev/null
}
# Run a command with a pty as its stdin/stdout (ctr -t requires one).
ct_on_pty() { timeout -k 5 60 script -qec "$*" /dev/null; }

# --- cases ---
ct_run_echo() { cl_eq "$(ct_run --rm "$CT_IMG" echo1 echo hi)" hi "ctr run --rm echo"; }

ct_run_exit_code() {
    local rc=0
    ct_run --rm "$CT_IMG" exit7 sh -c 'exit 7' || rc=$?
    cl_eq "$rc" 7 "ctr run exit code"
}

# The runtime's reason for a failed create reaches ctr (read from berth's JSON log).
ct_error_reason() {
    local out rc=0
    out=$(ct_run --rm "$CT_IMG" err1 /no/such/binary 2>&1) || rc=$?
    [ "$rc" -ne 0 ] || cl_fail "ctr run of a missing binary succeeded"
    cl_contains "$out" "/no/such/binary" "ctr's error for a missing binary"
    ct container delete err1 >/dev/null 2>&1 || true
}

ct_run_tty() {
    local out
    out=$(ct_on_pty "ctr -a $CT_DIR/containerd.sock -n $CT_NS run --rm -t --runc-binary $CT_DIR/berth-wrapper --runc-root $CT_DIR/berth $CT_IMG tty1 tty")
    cl_contains "$out" /dev/pts/ "ctr run -t"
}

ct_run_detach() {
    ct_sleeper d1
    cl_eq "$(ct_status d1)" RUNNING "task status after run -d"
    [ -d "/proc/$(ct_pid d1)" ] || cl_fail "task pid $(ct_pid d1) is not a live process"
    ct_cleanup_task d1
}

ct_exec() {
    local rc=0
    ct_sleeper x1
    cl_eq "$(ct task exec --exec-id e1 x1 echo inside)" inside "ctr task exec"
    ct task exec --exec-id e2 x1 sh -c 'exit 3' || rc=$?
    cl_eq "$rc" 3 "ctr task exec exit code"
    cl_contains "$(ct_on_pty "ctr -a $CT_DIR/containerd.sock -n $CT_NS task exec -t --exec-id e3 x1 tty")" /dev/pts/ "ctr task exec -t"
    ct_cleanup_task x1
}

ct_pause_resume() {
    local pid
    ct_sleeper p1
    pid=$(ct_pid p1)
    ct task pause p1
    cl_eq "$(ct_status p1)" PAUSED "status after pause"
    cl_eq "$(cat "/sys/fs/cgroup/freezer/$CT_NS/p1/freezer.state")" FROZEN "freezer.state after pause"
    ct task resume p1
    cl_eq "$(ct_status p1)" RUNNING "status after resume"
    cl_eq "$(cat "/sys/fs/cgroup/freezer/$CT_NS/p1/freezer.state")" THAWED "freezer.state after resume"
    grep -q "/$CT_NS/p1\$" "/proc/$pid/cgroup" || cl_fail "task pid $pid is not in cgroup /$CT_NS/p1"
    ct_cleanup_task p1
}

ct_kill() {
    ct_run -d "$CT_IMG" k1 sh -c 'trap "exit 10" USR1; echo ready >/tmp/ready; while :; do sleep 0.1; done' >/dev/null
    cl_until 50 ct task exec --exec-id r1 k1 test -f /tmp/ready
    ct task kill -s SIGUSR1 k1
    cl_until 50 ct_is STOPPED k1
    # ctr 1.6 reports a task's non-zero exit status as a warning of `task delete`.
    cl_contains "$(ct task delete k1 2>&1)" "non-zero exit code 10" "ctr task delete after SIGUSR1"
    ct container delete k1
    # SIGKILL to a sleeper; default SIGTERM is dropped by a PID 1 without a handler.
    ct_sleeper k2
    ct task kill -s SIGKILL k2
    cl_until 50 ct_is STOPPED k2
    cl_contains "$(ct task delete k2 2>&1)" "non-zero exit code 137" "ctr task delete after SIGKILL"
    ct container delete k2
}

ct_metrics() {
    local out
    ct_sleeper m1 --memory-limit 67108864
    out=$(ct task metrics m1)
    cl_contains "$out" "memory.limit_in_bytes    67108864" "ctr task metrics memory limit"
    cl_contains "$out" "pids.current             1" "ctr task metrics pids"
    cl_eq "$(cat "/sys/fs/cgroup/memory/$CT_NS/m1/memory.limit_in_bytes")" 67108864 "memory.limit_in_bytes from the host"
    ct_cleanup_task m1
}

ct_delete() {
    ct_sleeper del1
    ct task kill -s SIGKILL del1
    cl_until 50 ct_is STOPPED del1
    ct task delete del1 || true
    ct container delete del1
    if "$BERTH_BIN" --root "$CT_DIR/berth/$CT_NS" state del1 >/dev/null 2>&1; then
        cl_fail "berth still has state for del1 after ctr task delete"
    fi
    [ ! -e "/sys/fs/cgroup/memory/$CT_NS/del1" ] || cl_fail "cgroup /$CT_NS/del1 left behind"
}

ct_checkpoint_refused() {
    local out rc=0
    ct_sleeper c1
    out=$(ct task checkpoint c1 2>&1) || rc=$?
    [ "$rc" -ne 0 ] || cl_fail "ctr task checkpoint succeeded"
    cl_contains "$out" "checkpoint/restore (CRIU) is not supported by berth" "checkpoint error"
    cl_eq "$(ct_status c1)" RUNNING "task status after a refused checkpoint"
    ct_cleanup_task c1
}

# --- suite (runs in the runner's shell) ---
# A private containerd running, the image imported; cleanup registered.
containerd_setup() {
    CT_DIR=$CL_WORK/containerd
    CT_NS=berthclients$$
    export CT_DIR CT_NS
    mkdir -p "$CT_DIR"
    cl_make_wrapper "$CT_DIR/berth-wrapper" "$CL_WORK/wrapper-containerd.log"
    cl_rmdir_if_new /run/containerd /run/containerd/s /run/containerd/fifo
    cl_cgroup_exists "$CT_NS" || cl_on_exit "cl_rm_cgroup '$CT_NS'"
    cat >"$CT_DIR/config.toml" <<C
version = 2
root = "$CT_DIR/root"
state = "$CT_DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$CT_DIR/containerd.sock"
[ttrpc]
  address = "$CT_DIR/containerd.sock.ttrpc"
[debug]
  address = "$CT_DIR/debug.sock"
[metrics]
  address = ""
C
    containerd --config "$CT_DIR/config.toml" >"$CL_WORK/logs/containerd-daemon.log" 2>&1 &
    CT_DAEMON=$!
    cl_on_exit "containerd_teardown"
    cl_until 100 ctr -a "$CT_DIR/containerd.sock" version >/dev/null 2>&1 &&
        ct images import "$(ct_oci_archive)" >"$CL_WORK/logs/containerd-import.log" 2>&1
}

containerd_suite() {
    local f=${BASH_SOURCE[0]}
    if ! containerd_setup; then
        cl_case "$f" containerd-setup false
        return
    fi
    cl_case "$f" ctr-run-echo ct_run_echo
    cl_case "$f" ctr-run-exit-code ct_run_exit_code
    cl_case "$f" ctr-error-reason ct_error_reason
    cl_case "$f" ctr-run-tty ct_run_tty
    cl_case "$f" ctr-run-detach ct_run_detach
    cl_case "$f" ctr-task-exec ct_exec
    cl_case "$f" ctr-task-pause-resume ct_pause_resume
    cl_case "$f" ctr-task-kill ct_kill
    cl_case "$f" ctr-task-metrics ct_metrics
    cl_case "$f" ctr-task-delete ct_delete
    cl_case "$f" ctr-checkpoint-refused ct_checkpoint_refused
}

# The busybox image as an oci-archive built with umoci and skopeo.
ct_oci_archive() {
    local o=$CL_WORK/oci
    if [ ! -f "$o/busybox-oci.tar" ]; then
        mkdir -p "$o"
        umoci init --layout "$o/layout"
        umoci new --image "$o/layout:clients"
        umoci unpack --image "$o/layout:clients" "$o/bundle" >/dev/null
        tar -C "$o/bundle/rootfs" -xf "$(cl_busybox_tar)"
        umoci repack --image "$o/layout:clients" "$o/bundle"
        umoci config --image "$o/layout:clients" --config.cmd sh
        skopeo copy -q "oci:$o/layout:clients" "oci-archive:$o/busybox-oci.tar:$CT_IMG"
    fi
    printf '%s\n' "$o/busybox-oci.tar"
}

containerd_teardown() {
    local id pid
    for id in $(ct task ls -q 2>/dev/null); do ct task kill -s SIGKILL "$id"; ct task delete -f "$id"; done
    for id in $(ct container ls -q 2>/dev/null); do ct container delete "$id"; done
    for id in $(ct images ls -q 2>/dev/null); do ct images rm "$id"; done
    kill "$CT_DAEMON" 2>/dev/null && wait "$CT_DAEMON"
    # Shims of this daemon that outlived it (a hung task): they name our socket.
    for pid in $(pgrep -f -- "-address $CT_DIR/containerd.sock"); do kill -9 "$pid"; done
    for id in $("$BERTH_BIN" --root "$CT_DIR/berth/$CT_NS" list -q 2>/dev/null); do
        "$BERTH_BIN" --root "$CT_DIR/berth/$CT_NS" delete --force "$id"
    done
    cl_umount_under "$CT_DIR"
}
