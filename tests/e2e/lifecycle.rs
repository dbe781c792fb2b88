//! create / start / state / kill / delete / list / run, as runc's CLI behaves.

use serde_json::{json, Value};

use crate::common::*;

#[test]
fn create_start_kill_delete_walks_every_state() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    b.spec["annotations"] = json!({"org.berth.test": "yes"});
    let c = b.create("life");

    let st = c.state();
    assert_eq!(st["status"], "created");
    assert!(c.pid() > 0, "created container has a pid: {st}");
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["id"], c.id.as_str());
    assert_eq!(
        st["bundle"].as_str().unwrap(),
        b.path().to_str().unwrap(),
        "bundle is the absolute bundle dir"
    );
    assert_eq!(st["rootfs"].as_str().unwrap(), b.rootfs().to_str().unwrap());
    assert_eq!(st["owner"], "root");
    assert_eq!(st["annotations"]["org.berth.test"], "yes");
    let created = st["created"].as_str().expect("created timestamp");
    assert!(
        created.len() > 20 && created.ends_with('Z') && created.contains('T'),
        "RFC 3339 UTC timestamp: {created}"
    );
    // The init waits for `start`: it exists but is not yet the user's sleep.
    let pid = c.pid();
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    c.start().ok();
    assert_eq!(c.status(), "running");
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
    assert_eq!(comm.trim(), "sleep", "init became the user process");

    c.berth(&["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");

    c.berth(&["delete", &c.id]).ok();
    let gone = c.berth(&["state", &c.id]).failed();
    assert!(gone.stderr.contains(&c.id), "{gone:?}");
    assert!(!b.root().join(&c.id).exists(), "state dir removed");
    assert!(!is_live(pid), "init still running after delete");
}

/// Whether `pid` is a live (not zombie) process. An exited init whose `create` has
/// returned is reparented to the host's PID 1, and this sandbox's PID 1 does not reap,
/// so a zombie may remain: that is the host's business, not berth's.
fn is_live(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| !s.contains(") Z ") && !s.contains(") X "))
        .unwrap_or(false)
}

#[test]
fn list_table_json_and_quiet() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c1 = b.create("list");
    let c2 = b.create("list");
    c2.start().ok();

    let q = b.berth(&["list", "-q"]).ok();
    let mut ids: Vec<&str> = q.stdout.lines().collect();
    ids.sort();
    let mut want = vec![c1.id.as_str(), c2.id.as_str()];
    want.sort();
    assert_eq!(ids, want);

    let js = b.berth(&["list", "--format", "json"]).ok();
    let arr: Vec<Value> = serde_json::from_str(&js.stdout).expect("list json");
    assert_eq!(arr.len(), 2);
    let by_id = |id: &str| arr.iter().find(|v| v["id"] == id).expect("listed").clone();
    assert_eq!(by_id(&c1.id)["status"], "created");
    assert_eq!(by_id(&c2.id)["status"], "running");
    assert_eq!(by_id(&c2.id)["pid"].as_i64().unwrap() as i32, c2.pid());

    let table = b.berth(&["list"]).ok();
    let mut lines = table.stdout.lines();
    let header: Vec<&str> = lines.next().expect("header").split_whitespace().collect();
    assert_eq!(
        header,
        ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"],
        "runc's columns"
    );
    let row = lines.find(|l| l.starts_with(&c2.id)).expect("row of c2");
    let cols: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cols[1], c2.pid().to_string());
    assert_eq!(cols[2], "running");
    assert_eq!(cols[3], b.path().to_str().unwrap());
}

#[test]
fn pid_file_holds_the_init_pid() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    b.write();
    let id = unique_id("pidfile");
    let c = b.guard(&id);
    let pidfile = b.path().join("pid");
    b.berth(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--pid-file",
        pidfile.to_str().unwrap(),
        &id,
    ])
    .ok();
    let text = std::fs::read_to_string(&pidfile).expect("pid file written");
    assert_eq!(text.trim(), c.pid().to_string());
}

#[test]
fn run_reports_the_exit_status() {
    let mut b = Bundle::new();
    b.sh("exit 0");
    assert_eq!(b.run().code, 0);
    b.sh("exit 3");
    assert_eq!(b.run().code, 3);
    // The kernel ignores signals a PID namespace's init sends itself without a handler
    // (even SIGKILL), so a self-sent signal is a no-op with a pid namespace...
    b.sh("kill -TERM $$; kill -9 $$; exit 5");
    assert_eq!(b.run().code, 5);
    // ...and kills the process without one.
    b.drop_namespace("pid");
    b.sh("kill -9 $$");
    assert_eq!(b.run().code, 128 + 9, "killed by SIGKILL");
    // The foreground run deleted the container.
    assert!(b.berth(&["list", "-q"]).ok().stdout.trim().is_empty());
}

#[test]
fn run_passes_stdout_and_stderr() {
    let mut b = Bundle::new();
    b.sh("echo out; echo err >&2");
    let out = b.run().ok();
    assert_eq!(out.stdout, "out\n");
    assert!(out.stderr.contains("err\n"), "{out:?}");
}

#[test]
fn kill_by_name_sig_name_and_number() {
    let mut b = Bundle::new();
    // A trap makes PID 1 handle the signals; each handler leaves a line and goes on.
    b.sh(
        "trap 'echo usr1 >> /tmp/sigs' USR1; trap 'echo hup >> /tmp/sigs' HUP; \
          trap 'echo term >> /tmp/sigs; exit 7' TERM; \
          while true; do sleep 0.05; done",
    );
    b.spec["root"]["readonly"] = json!(false);
    b.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    let c = b.create("kill");
    c.start().ok();
    let sigs = format!("/proc/{}/root/tmp/sigs", c.pid());
    c.berth(&["kill", &c.id, "USR1"]).ok();
    wait_until("USR1 handled", || {
        std::fs::read_to_string(&sigs).unwrap_or_default() == "usr1\n"
    });
    c.berth(&["kill", &c.id, "SIGHUP"]).ok();
    wait_until("HUP handled", || {
        std::fs::read_to_string(&sigs).unwrap_or_default() == "usr1\nhup\n"
    });
    c.berth(&["kill", &c.id, "15"]).ok();
    c.wait_status("stopped");
}

#[test]
fn kill_defaults_to_sigterm() {
    let mut b = Bundle::new();
    b.sh("trap 'exit 0' TERM; while true; do sleep 0.05; done");
    let c = b.create("killdef");
    c.start().ok();
    c.berth(&["kill", &c.id]).ok();
    c.wait_status("stopped");
}

#[test]
fn unknown_signal_is_refused_in_one_line() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("badsig");
    for sig in ["FOO", "SIGFOO", "99", "65"] {
        let out = c.berth(&["kill", &c.id, sig]).failed();
        assert_eq!(out.stderr.lines().count(), 1, "one line: {out:?}");
        assert!(out.stderr.contains(sig), "names the signal: {out:?}");
    }
    assert_eq!(c.status(), "created", "a refused kill changed nothing");
}

#[test]
fn delete_of_running_container_needs_force() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("delrun");
    c.start().ok();
    let pid = c.pid();
    let out = c.berth(&["delete", &c.id]).failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("running"), "says why: {out:?}");
    assert_eq!(c.status(), "running");
    c.berth(&["delete", "--force", &c.id]).ok();
    assert!(!b.root().join(&c.id).exists());
    wait_until("init killed by delete --force", || !is_live(pid));
    for ctrl in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        assert!(!ctrl.path().join(format!("berth-{}", c.id)).exists());
    }
}

#[test]
fn create_with_an_existing_id_is_refused() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("dup");
    let pid = c.pid();
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &c.id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains(&c.id) && out.stderr.contains("exists"),
        "{out:?}"
    );
    assert_eq!(c.pid(), pid, "the first container is untouched");
    assert_eq!(c.status(), "created");
    // The refused create never touched the first container's cgroup (same default path).
    let procs = format!("/sys/fs/cgroup/pids/berth-{}/cgroup.procs", c.id);
    let procs = std::fs::read_to_string(&procs).expect("first container's cgroup");
    assert!(procs.lines().any(|l| l == pid.to_string()), "{procs}");
}

#[test]
fn invalid_ids_are_refused() {
    let b = Bundle::new();
    b.write();
    let long = "x".repeat(1024);
    for id in ["a/b", "..", ".", "", "../escape", long.as_str()] {
        let out = b
            .berth(&["create", "--bundle", b.path().to_str().unwrap(), id])
            .failed();
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "one line for {id:?}: {out:?}"
        );
        assert!(
            std::fs::read_dir(b.root())
                .map(|mut d| d.next().is_none())
                .unwrap_or(true),
            "nothing created for {id:?}"
        );
    }
    assert!(!b.root().parent().unwrap().join("escape").exists());
}

#[test]
fn detached_container_whose_init_exits_is_stopped_and_reaped() {
    let mut b = Bundle::new();
    b.sh("exit 0");
    b.write();
    let id = unique_id("detach");
    let c = b.guard(&id);
    let pidfile = b.path().join("pid");
    b.berth(&[
        "run",
        "--detach",
        "--pid-file",
        pidfile.to_str().unwrap(),
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ])
    .ok();
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // The exited init may linger as a zombie (see is_live); kill(pid, 0) still succeeds
    // on a zombie, so a runtime that only probes the pid would say "running".
    wait_until("init exited", || !is_live(pid));
    assert_eq!(c.status(), "stopped");
    c.berth(&["delete", &id]).ok();
    assert!(!b.root().join(&id).exists());
}

#[test]
fn start_twice_and_operations_on_missing_container_fail() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("twice");
    c.start().ok();
    let again = c.start().failed();
    assert_eq!(again.stderr.lines().count(), 1, "{again:?}");
    for args in [
        vec!["start", "nope-missing"],
        vec!["state", "nope-missing"],
        vec!["kill", "nope-missing"],
        vec!["delete", "nope-missing"],
    ] {
        let out = b.berth(&args).failed();
        assert!(out.stderr.contains("nope-missing"), "{args:?}: {out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }
}

#[test]
fn features_describe_what_berth_supports() {
    let b = Bundle::new();
    let out = b.berth(&["features"]).ok();
    let f: Value = serde_json::from_str(&out.stdout).expect("features JSON");
    assert_eq!(f["ociVersionMin"], "1.0.0");
    assert!(f["ociVersionMax"].as_str().unwrap().starts_with("1."));
    let list = |v: &Value| -> Vec<String> {
        v.as_array()
            .expect("array")
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    let ns = list(&f["linux"]["namespaces"]);
    for want in [
        "cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts",
    ] {
        assert!(ns.iter().any(|n| n == want), "{want} missing from {ns:?}");
    }
    let hooks = list(&f["hooks"]);
    for want in [
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        assert!(
            hooks.iter().any(|h| h == want),
            "{want} missing from {hooks:?}"
        );
    }
    assert!(list(&f["mountOptions"]).iter().any(|o| o == "nosuid"));
    assert_eq!(f["linux"]["seccomp"]["enabled"], true);
}

#[test]
fn spec_rootless_maps_the_caller() {
    let b = Bundle::new();
    let dir = tempfile::tempdir().unwrap();
    b.berth(&[
        "spec",
        "--rootless",
        "--bundle",
        dir.path().to_str().unwrap(),
    ])
    .ok();
    let spec: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("config.json")).unwrap())
            .unwrap();
    let types: Vec<&str> = spec["linux"]["namespaces"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"user") && !types.contains(&"network"),
        "{types:?}"
    );
    // SAFETY: geteuid cannot fail and has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        spec["linux"]["uidMappings"],
        json!([{"containerID": 0, "hostID": euid, "size": 1}])
    );
}

#[test]
fn json_log_file_gets_one_object_per_message() {
    let b = Bundle::new();
    let log = b.path().join("berth.log");
    let out = b
        .berth(&[
            "--log",
            log.to_str().unwrap(),
            "--log-format",
            "json",
            "state",
            "nope-missing",
        ])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    let text = std::fs::read_to_string(&log).unwrap();
    let last: Value =
        serde_json::from_str(text.lines().last().expect("a log line")).expect("log line is JSON");
    // runc's (logrus's) keys: containerd's shim reads "level", "msg" and "time".
    assert_eq!(last["level"], "error");
    assert!(last["msg"].as_str().unwrap().contains("nope-missing"));
    assert!(
        last["time"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{last}"
    );
}

#[test]
fn foreground_run_passes_stdin() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["tr", "a-z", "A-Z"]);
    b.write();
    let mut input = tempfile::tempfile().unwrap();
    std::io::Write::write_all(&mut input, b"from the host\n").unwrap();
    std::io::Seek::rewind(&mut input).unwrap();
    let id = unique_id("stdin");
    let _g = b.guard(&id);
    let out = output_with_stdin(
        &mut b.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]),
        input.into(),
    )
    .ok();
    assert_eq!(out.stdout, "FROM THE HOST\n");
}

#[test]
fn foreground_run_forwards_signals() {
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.sh("trap 'exit 9' TERM; touch /tmp/ready; while true; do sleep 0.05; done");
    b.write();
    let id = unique_id("fwd");
    let c = b.guard(&id);
    let mut run = Helper::spawn(&mut b.cmd(&["run", "--bundle", b.path().to_str().unwrap(), &id]));
    wait_until("container running with its trap set", || {
        let out = b.berth(&["state", &id]);
        out.code == 0 && std::path::Path::new(&format!("/proc/{}/root/tmp/ready", c.pid())).exists()
    });
    // SAFETY: signalling our own child by pid; it is not reaped until `wait` below.
    assert_eq!(unsafe { libc::kill(run.pid() as i32, libc::SIGTERM) }, 0);
    let status = run.0.wait().unwrap();
    assert_eq!(status.code(), Some(9), "berth run did not forward SIGTERM");
}

#[test]
fn run_keep_leaves_a_stopped_container() {
    let mut b = Bundle::new();
    b.sh("exit 4");
    b.write();
    let id = unique_id("keep");
    let c = b.guard(&id);
    let out = b.berth(&["run", "--keep", "--bundle", b.path().to_str().unwrap(), &id]);
    assert_eq!(out.code, 4, "{out:?}");
    assert_eq!(c.status(), "stopped");
    c.berth(&["delete", &id]).ok();
}

#[test]
fn no_pivot_runs_inside_the_rootfs() {
    let mut b = Bundle::new();
    b.sh("[ -e /etc/os-release ] && echo HOST; cat /etc/hostname; \
          cd /../../..; [ -e etc/os-release ] && echo ESCAPED; true");
    b.write();
    let id = unique_id("nopivot");
    let _g = b.guard(&id);
    let out = b
        .berth(&[
            "run",
            "--no-pivot",
            "--bundle",
            b.path().to_str().unwrap(),
            &id,
        ])
        .ok();
    assert_eq!(out.stdout, "berth\n", "{out:?}");
}

#[test]
fn kill_of_a_created_container_stops_it() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("killcreated");
    c.berth(&["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    let out = c.start().failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn init_killed_from_the_host_shows_stopped() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("hostkill");
    c.start().ok();
    // SAFETY: kill(2) on the container's init pid, which this test created.
    assert_eq!(unsafe { libc::kill(c.pid(), libc::SIGKILL) }, 0);
    c.wait_status("stopped");
    c.berth(&["delete", &c.id]).ok();
}

/// `run` of a terminal process without --console-socket: berth holds the pty itself and
/// connects it to its own stdio, as runc does.
#[test]
fn run_with_terminal_proxies_the_pty() {
    let mut b = Bundle::new();
    b.spec["process"]["terminal"] = json!(true);
    b.sh("tty; echo hello-pty; exit 3");
    let out = b.run();
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stdout.contains("/dev/pts/0") && out.stdout.contains("hello-pty"),
        "{out:?}"
    );
}

/// `berth state X | grep -q running`: the reader closes the pipe before berth has written
/// everything. berth ends quietly with status 0 (println! would panic and abort).
#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("pipe");
    let root = b.root().to_str().unwrap().to_string();
    for args in [vec!["state", c.id.as_str()], vec!["features"], vec!["list"]] {
        let mut child = std::process::Command::new(berth_bin())
            .args(["--root", &root])
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before berth writes
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// `berth run` holding the pty itself (terminal without --console-socket, as runc): a
/// resize of the real terminal (tmux here) reaches the container's pty as a new size,
/// not as a SIGWINCH sent to its process with the old size.
#[test]
fn terminal_resize_reaches_the_container() {
    let mut b = Bundle::new();
    b.spec["process"]["terminal"] = json!(true);
    b.spec["process"]["args"] = json!(["sh"]);
    b.write();
    let id = unique_id("winch");
    let _g = b.guard(&id);
    let session = unique_id("tmux");
    let run = format!(
        "{} --root {} run --bundle {} {id}",
        berth_bin(),
        b.root().display(),
        b.path().display()
    );
    let tmux = |args: &[&str]| output_of(std::process::Command::new("tmux").args(args));
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "30",
        &run,
    ])
    .ok();
    let pane = || tmux(&["capture-pane", "-t", &session, "-p"]).stdout;
    wait_until("the shell prompt", || pane().contains('#'));
    tmux(&["resize-window", "-t", &session, "-x", "120", "-y", "40"]).ok();
    // Ask until the new size shows (berth may take a moment to see SIGWINCH on a busy
    // machine); the old size forever means the resize never reached the pty.
    let mut text = String::new();
    for round in 0..20 {
        std::thread::sleep(std::time::Duration::from_millis(250));
        let marker = format!("size-shown-{round}");
        tmux(&[
            "send-keys",
            "-t",
            &session,
            &format!("stty size; echo {marker}"),
            "Enter",
        ])
        .ok();
        wait_until("the size to be printed", || {
            pane().lines().any(|l| l.trim() == marker)
        });
        text = pane();
        if text.lines().any(|l| l.trim() == "40 120") {
            break;
        }
    }
    tmux(&["kill-session", "-t", &session]);
    assert!(text.lines().any(|l| l.trim() == "40 120"), "{text}");
}
