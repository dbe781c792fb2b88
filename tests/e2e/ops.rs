//! Operations on a running container: exec, pause/resume, update, events, ps.

use serde_json::{json, Value};

use crate::common::*;

/// A bundle whose process is `sleep 1000`.
fn sleeping() -> Bundle {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    b
}

/// Create and start the bundle's container.
fn started(b: &Bundle) -> Guard<'_> {
    let c = b.create("ops");
    c.start().ok();
    c
}

/// The host path of a v1 controller file of the container's cgroup.
fn cgroup_file(id: &str, ctrl: &str, file: &str) -> String {
    std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}/berth-{id}/{file}"))
        .unwrap_or_else(|e| panic!("read {ctrl}/{file} of {id}: {e}"))
        .trim()
        .to_owned()
}

#[test]
fn exec_joins_every_namespace_and_the_cgroup_of_init() {
    let b = sleeping();
    let c = started(&b);
    let pid = c.pid();
    let kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    let out = c
        .berth(&[
            "exec",
            &c.id,
            "sh",
            "-c",
            &format!("{script}; cat /proc/self/cgroup"),
        ])
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    for (i, kind) in kinds.iter().enumerate() {
        let init = std::fs::read_link(format!("/proc/{pid}/ns/{kind}")).unwrap();
        assert_eq!(lines[i], init.to_string_lossy(), "{kind} namespace differs");
    }
    let init_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    // Read from the host, init's cgroup paths are /berth-<id>; inside the cgroup
    // namespace they are "/": compare the controller lists and that each path is the
    // namespace root.
    let exec_cgroup: Vec<&str> = lines[kinds.len()..].to_vec();
    assert_eq!(exec_cgroup.len(), init_cgroup.lines().count());
    for line in &exec_cgroup {
        assert!(
            line.ends_with(":/"),
            "exec outside the container cgroup: {line}"
        );
    }
    // berth manages every hierarchy: controllers, named ones (name=systemd), unified.
    for line in init_cgroup.lines() {
        assert!(line.ends_with(&format!("/berth-{}", c.id)), "{line}");
    }
}

#[test]
fn exec_gets_the_containers_restrictions() {
    let b = sleeping();
    let c = started(&b);
    let out = c
        .berth(&[
            "exec",
            &c.id,
            "sh",
            "-c",
            "grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status; \
             for f in /proc/self/fd/*; do echo \"${f##*/}\"; done",
        ])
        .ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..4],
        [
            "CapEff:\t0000000020000420",
            "CapBnd:\t0000000020000420",
            "NoNewPrivs:\t1",
            "Seccomp:\t2",
        ]
    );
    let fds = &lines[4..];
    // The glob's own directory fd takes the lowest free number: 3 when nothing leaked.
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "runtime fds reached the exec'd process"
    );
}

#[test]
fn exec_exit_status_env_cwd_and_user() {
    let b = sleeping();
    let c = started(&b);
    assert_eq!(c.berth(&["exec", &c.id, "sh", "-c", "exit 7"]).code, 7);
    let out = c
        .berth(&[
            "exec",
            "--user",
            "1000:1000",
            "--cwd",
            "/tmp",
            "--env",
            "FOO=bar baz",
            &c.id,
            "sh",
            "-c",
            "id -u; id -g; pwd; echo \"$FOO\"",
        ])
        .ok();
    assert_eq!(out.stdout, "1000\n1000\n/tmp\nbar baz\n");
}

#[test]
fn exec_with_a_process_json() {
    let b = sleeping();
    let c = started(&b);
    let process = json!({
        "args": ["sh", "-c", "echo \"$X\"; pwd; id -u; ulimit -n"],
        "env": ["X=from-process-json", "PATH=/bin"],
        "cwd": "/var/tmp",
        "user": {"uid": 1000, "gid": 1000},
        "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 99, "hard": 99}],
        "terminal": false
    });
    let file = b.path().join("process.json");
    std::fs::write(&file, process.to_string()).unwrap();
    let out = c
        .berth(&["exec", "--process", file.to_str().unwrap(), &c.id])
        .ok();
    assert_eq!(out.stdout, "from-process-json\n/var/tmp\n1000\n99\n");
}

#[test]
fn exec_detached_writes_its_pid() {
    let b = sleeping();
    let c = started(&b);
    let pidfile = b.path().join("exec.pid");
    c.berth(&[
        "exec",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        &c.id,
        "sleep",
        "999",
    ])
    .ok();
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", pid.trim())).unwrap();
    assert_eq!(comm.trim(), "sleep");
    let ps = c.berth(&["ps", "--format", "json", &c.id]).ok();
    let pids: Vec<i64> = serde_json::from_str(&ps.stdout).unwrap();
    assert!(pids.contains(&pid.trim().parse().unwrap()), "{pids:?}");
}

#[test]
fn exec_into_a_stopped_container_is_refused() {
    let mut b = Bundle::new();
    b.sh("exit 0");
    let c = b.create("execstop");
    c.start().ok();
    c.wait_status("stopped");
    let out = c.berth(&["exec", &c.id, "true"]).failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains(&c.id), "{out:?}");
}

#[test]
fn pause_freezes_and_resume_thaws() {
    let b = sleeping();
    let c = started(&b);
    c.berth(&["pause", &c.id]).ok();
    assert_eq!(c.status(), "paused");
    assert_eq!(cgroup_file(&c.id, "freezer", "freezer.state"), "FROZEN");
    let refused = c.berth(&["exec", &c.id, "true"]).failed();
    assert!(refused.stderr.contains("paused"), "{refused:?}");
    c.berth(&["resume", &c.id]).ok();
    assert_eq!(c.status(), "running");
    assert_eq!(cgroup_file(&c.id, "freezer", "freezer.state"), "THAWED");
    c.berth(&["exec", &c.id, "true"]).ok();
}

#[test]
fn resume_of_a_running_container_is_refused() {
    let b = sleeping();
    let c = started(&b);
    let out = c.berth(&["resume", &c.id]).failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_eq!(c.status(), "running");
}

#[test]
fn delete_force_of_a_paused_container_cleans_up() {
    let b = sleeping();
    let c = started(&b);
    let pid = c.pid();
    c.berth(&["pause", &c.id]).ok();
    c.berth(&["delete", "--force", &c.id]).ok();
    wait_until("frozen init killed", || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true)
    });
    for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(!ctrl.path().join(format!("berth-{}", c.id)).exists());
    }
    assert!(!b.root().join(&c.id).exists());
}

#[test]
fn update_changes_limits_seen_inside() {
    let b = sleeping();
    let c = started(&b);
    c.berth(&[
        "update",
        "--memory",
        "67108864",
        "--pids-limit",
        "17",
        "--cpu-shares",
        "512",
        &c.id,
    ])
    .ok();
    assert_eq!(
        cgroup_file(&c.id, "memory", "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(cgroup_file(&c.id, "pids", "pids.max"), "17");
    assert_eq!(cgroup_file(&c.id, "cpu", "cpu.shares"), "512");
    let inside = c
        .berth(&[
            "exec",
            &c.id,
            "cat",
            "/sys/fs/cgroup/pids/pids.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ])
        .ok();
    assert_eq!(inside.stdout, "17\n67108864\n");
}

#[test]
fn update_from_a_resources_file() {
    let b = sleeping();
    let c = started(&b);
    let file = b.path().join("resources.json");
    std::fs::write(&file, json!({"pids": {"limit": 23}}).to_string()).unwrap();
    c.berth(&["update", "--resources", file.to_str().unwrap(), &c.id])
        .ok();
    assert_eq!(cgroup_file(&c.id, "pids", "pids.max"), "23");
}

#[test]
fn pids_limit_is_enforced() {
    let mut b = Bundle::new();
    b.spec["linux"]["resources"]["pids"] = json!({"limit": 5});
    // The shell and four sleeps fill the limit; `read` and `echo` are builtins (no
    // fork), then one more fork fails, which busybox sh treats as fatal.
    b.sh("for i in 1 2 3 4; do sleep 30 & done; \
          read n < /sys/fs/cgroup/pids/pids.current; echo $n; sleep 0; echo forked");
    let out = b.run();
    assert_eq!(out.stdout, "5\n", "{out:?}");
    assert_ne!(out.code, 0, "{out:?}");
    assert!(out.stderr.contains("fork"), "{out:?}");
}

#[test]
fn events_stats_is_one_json_event() {
    let mut b = sleeping();
    b.spec["linux"]["resources"]["memory"] = json!({"limit": 100 * 1024 * 1024});
    let c = started(&b);
    let out = c.berth(&["events", "--stats", &c.id]).ok();
    let ev: Value = serde_json::from_str(out.stdout.trim()).expect("one JSON object");
    assert_eq!(ev["type"], "stats");
    assert_eq!(ev["id"], c.id.as_str());
    assert_eq!(
        ev["data"]["memory"]["raw"]["hierarchical_memory_limit"],
        100 * 1024 * 1024
    );
    assert!(ev["data"]["pids"]["current"].as_u64().unwrap() >= 1, "{ev}");
}

#[test]
fn ps_lists_the_container_processes() {
    let b = sleeping();
    let c = started(&b);
    let js = c.berth(&["ps", "--format", "json", &c.id]).ok();
    let pids: Vec<i64> = serde_json::from_str(&js.stdout).unwrap();
    assert_eq!(pids, [c.pid() as i64]);
    let table = c.berth(&["ps", &c.id]).ok();
    let mut lines = table.stdout.lines();
    assert!(lines.next().unwrap().contains("PID"));
    let row = lines.next().unwrap();
    assert!(
        row.contains(&c.pid().to_string()) && row.contains("sleep 1000"),
        "{row}"
    );
}

#[test]
fn exec_with_a_terminal() {
    let b = sleeping();
    let c = started(&b);
    let console = ConsoleSocket::new();
    let sock = console.path().to_owned();
    // exec waits for its process; the pty buffers the few bytes until we read them.
    let exec = std::thread::scope(|s| {
        let h = s.spawn(|| {
            c.berth(&[
                "exec",
                "--tty",
                "--console-socket",
                &sock,
                &c.id,
                "sh",
                "-c",
                "tty; [ -t 0 ] && echo interactive",
            ])
        });
        let master = console.master();
        let text = read_pty(master);
        (h.join().expect("exec thread"), text)
    });
    let (out, text) = exec;
    assert_eq!(out.code, 0, "{out:?}");
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.ends_with("interactive\n"), "{text:?}");
}

/// CVE-2024-21626 through exec: a cwd through a leaked fd stays inside.
#[test]
fn exec_cwd_through_leaked_fds_stays_inside() {
    let b = sleeping();
    let c = started(&b);
    for n in 3..=9 {
        let cwd = format!("/proc/self/fd/{n}");
        let out = c.berth(&[
            "exec",
            "--cwd",
            &cwd,
            &c.id,
            "sh",
            "-c",
            "cd ../../../../../../../../..; [ -e etc/os-release ] && echo ESCAPED; true",
        ]);
        assert!(
            !out.stdout.contains("ESCAPED"),
            "exec cwd fd {n} escaped: {out:?}"
        );
        if out.code != 0 {
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "fd {n}: {out:?}");
        }
    }
}

#[test]
fn kill_all_signals_every_process() {
    let mut b = Bundle::new();
    // PID 1 without a handler ignores SIGTERM even from the host; its children do not.
    // Only when kill --all reaches them does `wait` return and the shell exit.
    b.sh("sleep 1000 & sleep 1000 & wait; exit 0");
    let c = started(&b);
    wait_until("both children started", || {
        let js = c.berth(&["ps", "--format", "json", &c.id]).ok();
        serde_json::from_str::<Vec<i64>>(&js.stdout).unwrap().len() == 3
    });
    c.berth(&["kill", "--all", &c.id, "TERM"]).ok();
    c.wait_status("stopped");
    let procs = cgroup_file(&c.id, "pids", "cgroup.procs");
    assert!(procs.is_empty(), "processes left: {procs}");
}

#[test]
fn resources_at_create_are_seen_inside_and_enforced() {
    let mut b = Bundle::new();
    // No swap on this host, but memory.swap (memsw) is set too so it would not matter.
    b.spec["linux"]["resources"]["memory"] = json!({"limit": 16 << 20, "swap": 16 << 20});
    b.spec["linux"]["resources"]["cpu"] = json!({"shares": 256});
    b.sh(
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.shares; \
          head -c 200m /dev/zero | tail > /dev/null; echo tail=$?",
    );
    let out = b.run().ok();
    // tail keeps the whole newline-free input in memory: the OOM killer ends it.
    assert_eq!(
        out.stdout,
        format!("{}\n256\ntail=137\n", 16 << 20),
        "{out:?}"
    );
}

/// Removes the parent cgroup dirs a custom cgroupsPath made (berth may leave them, as
/// runc does), after the container's guard has deleted the container itself.
struct CgroupParent(String);

impl Drop for CgroupParent {
    fn drop(&mut self) {
        for ctrl in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(ctrl.path().join(&self.0));
        }
    }
}

#[test]
fn custom_cgroups_path_is_used_and_removed() {
    let parent = CgroupParent(unique_id("cgparent"));
    let mut b = sleeping();
    b.spec["linux"]["cgroupsPath"] = json!(format!("/{}/inner", parent.0));
    let c = b.create("cgpath");
    let procs = std::fs::read_to_string(format!(
        "/sys/fs/cgroup/pids/{}/inner/cgroup.procs",
        parent.0
    ))
    .unwrap();
    assert_eq!(procs.trim(), c.pid().to_string());
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/berth-{}", c.id)).exists());
    c.berth(&["delete", "--force", &c.id]).ok();
    for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let dir = ctrl.path().join(&parent.0).join("inner");
        assert!(!dir.exists(), "{} left", dir.display());
    }
}
