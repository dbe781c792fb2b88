//! `berth check` and `berth verify` on real bundles and real running containers, and the
//! lifecycle model (crates/policy/src/models/lifecycle.rs) against the runtime: every
//! command in every state a container can be put in.

use std::time::{Duration, Instant};

use berth_policy::models::lifecycle::{step, Command, State};
use serde_json::{json, Value};

use crate::common::{wait_until, Bundle, Guard};

fn one_line_error(out: &crate::common::Outcome) {
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
    assert!(out.stderr.starts_with("berth: "), "{out:?}");
}

#[test]
fn check_exit_status_tells_ok_violation_and_bad_input_apart() {
    let b = Bundle::new();
    b.write();
    let dir = b.path().to_str().unwrap();
    let out = b.berth(&["check", dir]).ok();
    assert!(out.stdout.contains("PASS ns.pid"), "{}", out.stdout);
    assert!(out.stdout.contains("FAIL user.root"), "{}", out.stdout);

    let json: Value =
        serde_json::from_str(&b.berth(&["check", dir, "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(json["schema"], "berth.check/v1");
    assert_eq!(json["target"]["kind"], "bundle");
    let f = &json["findings"][0];
    for key in [
        "rule", "barrier", "source", "status", "severity", "field", "message",
    ] {
        assert!(!f[key].is_null(), "finding without {key}: {f}");
    }

    let policy = b.path().join("policy.toml");
    std::fs::write(&policy, "require = [\"ns.pid\", \"user.root\"]\n").unwrap();
    let p = policy.to_str().unwrap();
    let out = b.berth(&["check", dir, "--policy", p]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains("VIOLATION user.root"), "{out:?}");

    std::fs::write(&policy, "require = [\"ns.nope\"]\n").unwrap();
    let out = b.berth(&["check", dir, "--policy", p]);
    one_line_error(&out);
    assert!(out.stderr.contains("unknown rule \"ns.nope\""), "{out:?}");

    std::fs::write(b.path().join("config.json"), "{\"ociVersion\": 1").unwrap();
    one_line_error(&b.berth(&["check", dir]));
    one_line_error(&b.berth(&["check", "no-such-container"]));
}

/// `berth policy blp`: YAML on stdout or in a file; a bad lattice is one line, status 2.
#[test]
fn policy_blp_writes_network_policies_and_refuses_bad_input() {
    let b = Bundle::new();
    let levels = b.path().join("levels.toml");
    std::fs::write(
        &levels,
        "levels = [\"low\", \"high\"]\n\
         [[workload]]\nname = \"a\"\nlevel = \"low\"\nselector = { app = \"a\" }\n\
         [[workload]]\nname = \"b\"\nlevel = \"high\"\nselector = { app = \"b\" }\n",
    )
    .unwrap();
    let l = levels.to_str().unwrap();
    let out = b.berth(&["policy", "blp", l]).ok();
    assert_eq!(
        out.stdout.matches("\"kind\": \"NetworkPolicy\"").count(),
        2,
        "{out:?}"
    );
    assert!(out.stdout.contains("\"name\": \"blp-b\""), "{out:?}");
    let file = b.path().join("blp.yaml");
    b.berth(&["policy", "blp", l, "-o", file.to_str().unwrap()])
        .ok();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim_end(),
        out.stdout.trim_end()
    );

    std::fs::write(&levels, "levels = [\"low\"]\n[[workload]]\nname = \"a\"\nlevel = \"top\"\nselector = { app = \"a\" }\n").unwrap();
    let out = b.berth(&["policy", "blp", l]);
    one_line_error(&out);
    assert!(out.stderr.contains("unknown level \"top\""), "{out:?}");
    std::fs::write(&levels, "levels = [\"low\"]\nsurprise = true\n").unwrap();
    one_line_error(&b.berth(&["policy", "blp", l]));
    one_line_error(&b.berth(&["policy", "blp", "/nonexistent/levels.toml"]));
}

#[test]
fn check_reads_a_containers_config_copy() {
    let b = Bundle::new();
    let c = b.create("check");
    let json: Value =
        serde_json::from_str(&c.berth(&["check", &c.id, "--format", "json"]).ok().stdout).unwrap();
    assert_eq!(json["target"]["kind"], "container");
    assert_eq!(json["summary"]["violations"], 0);
}

/// A bundle whose process ends up as `sleep`, with limits for every cgroup check.
fn sleeper(script: &str) -> Bundle {
    let mut b = Bundle::new();
    b.sh(script);
    b.spec["linux"]["resources"]["memory"] = json!({"limit": 67108864});
    b.spec["linux"]["resources"]["pids"] = json!({"limit": 64});
    b.spec["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    b
}

/// Start `c` and wait until its init is the final `sleep` (past berth's init and sh).
fn start_sleeping(c: &Guard) -> i32 {
    c.start().ok();
    let pid = c.pid();
    wait_until("init to exec sleep", || {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|s| s.trim() == "sleep")
    });
    pid
}

fn verify(c: &Guard, extra: &[&str]) -> (i32, Value) {
    let mut args = vec!["verify", c.id.as_str(), "--format", "json"];
    args.extend_from_slice(extra);
    let out = c.berth(&args);
    assert!(out.code == 0 || out.code == 1, "{out:?}");
    (
        out.code,
        serde_json::from_str(&out.stdout).expect("verify JSON"),
    )
}

fn differences(report: &Value) -> Vec<(String, String)> {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] != "match")
        .map(|i| {
            (
                i["check"].as_str().unwrap().to_string(),
                i["outcome"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn verify_finds_a_fresh_container_as_its_spec_says() {
    let b = sleeper("exec sleep 1000");
    let c = b.create("verify");
    start_sleeping(&c);
    let (code, report) = verify(&c, &[]);
    assert_eq!(differences(&report), vec![], "{report:#}");
    assert_eq!(code, 0);
    assert_eq!(report["schema"], "berth.verify/v1");
    let checks: Vec<&str> = report["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["check"].as_str().unwrap())
        .collect();
    for want in [
        "ns.pid",
        "ns.pid.parent",
        "ns.mount",
        "caps.effective",
        "caps.bounding",
        "nnp",
        "seccomp.mode",
        "uid_map",
        "cgroup.procs",
        "cgroup.memory",
        "cgroup.pids",
        "cgroup.cpu",
        "mount.masked",
        "mount.readonly",
        "mount.root",
        "rlimit.RLIMIT_NOFILE",
    ] {
        assert!(checks.contains(&want), "{want} not verified: {checks:?}");
    }
    if std::path::Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        assert!(checks.contains(&"cgroup.devices"), "{checks:?}");
    }
}

#[test]
fn verify_checks_id_maps_and_namespace_parents_of_a_user_namespace_container() {
    let mut b = sleeper("exec sleep 1000");
    b.namespace("user", None);
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let c = b.create("verify-userns");
    start_sleeping(&c);
    let (code, report) = verify(&c, &[]);
    assert_eq!(differences(&report), vec![], "{report:#}");
    assert_eq!(code, 0);
    let item = |check: &str| {
        report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["check"] == check)
            .unwrap_or_else(|| panic!("no {check}"))["actual"]
            .clone()
    };
    assert_eq!(item("uid_map"), "0 100000 65536");
    assert_eq!(item("ns.user.parent"), "the host's");
}

#[test]
fn verify_reports_what_a_container_changed_after_start_as_a_change() {
    // The container lowers its own open-file limit: narrower than its spec, not an error.
    let b = sleeper("ulimit -n 512; exec sleep 1000");
    let c = b.create("verify-changed");
    start_sleeping(&c);
    let (code, report) = verify(&c, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        differences(&report),
        vec![("rlimit.RLIMIT_NOFILE".to_string(), "narrowed".to_string())]
    );
}

#[test]
fn verify_reports_masks_a_privileged_container_removed_as_widened() {
    if !std::path::Path::new("/proc/keys").exists() {
        eprintln!("skipped: this kernel has no /proc/keys to mask");
        return;
    }
    let mut b = sleeper("umount /proc/keys && umount /proc/sys && exec sleep 1000");
    for set in ["bounding", "effective", "permitted"] {
        b.push(
            &format!("/process/capabilities/{set}"),
            json!("CAP_SYS_ADMIN"),
        );
    }
    b.spec["linux"].as_object_mut().unwrap().remove("seccomp");
    let c = b.create("verify-unmasked");
    start_sleeping(&c);
    let (code, report) = verify(&c, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        differences(&report),
        vec![
            ("mount.masked".to_string(), "widened".to_string()),
            ("mount.readonly".to_string(), "widened".to_string())
        ],
        "{report:#}"
    );
}

#[test]
fn the_capability_model_predicts_what_the_kernel_leaves_after_exec() {
    // The spec's sets are what the runtime sets before execve; the kernel then recomputes
    // them. verify compares the live sets with the capset model's prediction, so these
    // configurations match only if the model agrees with the kernel.
    let cases: &[(&str, Value)] = &[
        // non-root without ambient caps: permitted and effective are emptied by exec
        ("non-root", json!({"uid": 1000, "gid": 1000})),
        // non-root with an ambient cap: it survives exec into permitted and effective
        ("ambient", json!({"uid": 1000, "gid": 1000})),
        // root with effective below permitted: exec makes effective = permitted
        ("root-eff", json!({"uid": 0, "gid": 0})),
    ];
    for (what, user) in cases {
        let mut b = sleeper("exec sleep 1000");
        b.spec["process"]["user"] = user.clone();
        let caps = &mut b.spec["process"]["capabilities"];
        match *what {
            "ambient" => {
                caps["inheritable"] = json!(["CAP_KILL"]);
                caps["ambient"] = json!(["CAP_KILL"]);
            }
            "root-eff" => caps["effective"] = json!(["CAP_KILL"]),
            _ => {}
        }
        let c = b.create("verify-capmodel");
        start_sleeping(&c);
        let (code, report) = verify(&c, &[]);
        assert_eq!(differences(&report), vec![], "{what}: {report:#}");
        assert_eq!(code, 0, "{what}");
        let eff = report["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["check"] == "caps.effective")
            .unwrap()["actual"]
            .clone();
        let want = match *what {
            "non-root" => "(none)",
            "ambient" => "CAP_KILL",
            _ => "CAP_AUDIT_WRITE,CAP_KILL,CAP_NET_BIND_SERVICE",
        };
        assert_eq!(eff, want, "{what}");
    }
}

#[test]
fn verify_reports_an_exec_with_an_added_capability_as_widened() {
    let b = sleeper("exec sleep 1000");
    let c = b.create("verify-exec");
    start_sleeping(&c);
    let pid_file = b.path().join("exec.pid");
    c.berth(&[
        "exec",
        "-d",
        "--pid-file",
        pid_file.to_str().unwrap(),
        "--cap",
        "CAP_SYS_ADMIN",
        &c.id,
        "sleep",
        "1000",
    ])
    .ok();
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_string();
    let (code, report) = verify(&c, &["--pid", &pid]);
    assert_eq!(code, 1);
    let d = differences(&report);
    for set in ["caps.bounding", "caps.effective", "caps.permitted"] {
        assert!(
            d.contains(&(set.to_string(), "widened".to_string())),
            "{set}: {d:?}"
        );
    }
    assert!(
        d.iter().all(|(check, _)| check.starts_with("caps.")),
        "{d:?}"
    );
}

#[test]
fn verify_of_a_stopped_missing_or_exiting_container_is_one_line_and_exit_2() {
    let b = Bundle::new();
    let c = b.create("verify-stopped");
    c.start().ok();
    c.wait_status("stopped");
    one_line_error(&c.berth(&["verify", &c.id]));
    one_line_error(&c.berth(&["verify", "no-such-container"]));
    let mut sleeping = Bundle::new();
    sleeping.sh("exec sleep 1000");
    let s = sleeping.create("verify-foreign");
    start_sleeping(&s);
    let me = std::process::id().to_string();
    let out = s.berth(&["verify", &s.id, "--pid", &me]);
    one_line_error(&out);
    assert!(out.stderr.contains("not a process of container"), "{out:?}");

    // A container that exits while being verified: every verify either completes or says
    // so in one line with status 2.
    let mut b = Bundle::new();
    b.sh("sleep 0.3");
    let c = b.create("verify-exits");
    c.start().ok();
    let until = Instant::now() + Duration::from_secs(20);
    let mut exited = false;
    while Instant::now() < until && !exited {
        let out = c.berth(&["verify", &c.id]);
        match out.code {
            0 | 1 => {}
            2 => {
                one_line_error(&out);
                exited = true;
            }
            _ => panic!("verify of an exiting container: {out:?}"),
        }
    }
    assert!(exited, "the container never stopped");
}

/// Put a new container of `b` into `state`.
fn container_in<'a>(b: &'a Bundle, state: State) -> Guard<'a> {
    let c = b.create("life");
    if state == State::Created {
        return c;
    }
    c.start().ok();
    c.wait_status("running");
    match state {
        State::Paused => {
            c.berth(&["pause", &c.id]).ok();
            c.wait_status("paused");
        }
        State::Stopped => {
            c.berth(&["kill", &c.id, "KILL"]).ok();
            c.wait_status("stopped");
        }
        _ => {}
    }
    c
}

fn observed(c: &Guard) -> State {
    let out = c.berth(&["state", &c.id]);
    if out.code != 0 {
        assert!(out.stderr.contains("does not exist"), "{out:?}");
        return State::Gone;
    }
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    match v["status"].as_str().unwrap() {
        "creating" => State::Creating,
        "created" => State::Created,
        "running" => State::Running,
        "paused" => State::Paused,
        "stopped" => State::Stopped,
        s => panic!("unknown status {s}"),
    }
}

#[test]
fn lifecycle_of_real_containers_follows_the_model() {
    let mut b = Bundle::new();
    b.sh("exec sleep 1000");
    b.write();
    let commands: &[(Command, &[&str])] = &[
        (Command::Start, &["start"]),
        (Command::Kill, &["kill", "@", "KILL"]),
        (Command::Pause, &["pause"]),
        (Command::Resume, &["resume"]),
        (Command::Delete, &["delete"]),
        (Command::DeleteForce, &["delete", "--force"]),
        (Command::Exec, &["exec", "@", "true"]),
        (Command::Observe, &["ps"]),
    ];
    let mut mismatches = Vec::new();
    for state in [
        State::Created,
        State::Running,
        State::Paused,
        State::Stopped,
    ] {
        for (cmd, args) in commands {
            let c = container_in(&b, state);
            assert_eq!(observed(&c), state);
            let mut argv: Vec<&str> = args
                .iter()
                .map(|a| if *a == "@" { c.id.as_str() } else { a })
                .collect();
            if !args.contains(&"@") {
                argv.push(&c.id);
            }
            let accepted = c.berth(&argv).code == 0;
            let want = step(state, *cmd);
            // kill is asynchronous: give the process time to die before observing
            let got = if let Some(w) = want.filter(|_| accepted) {
                let until = Instant::now() + Duration::from_secs(10);
                while observed(&c) != w && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                observed(&c)
            } else {
                observed(&c)
            };
            let real = accepted.then_some(got);
            if real != want {
                mismatches.push(format!(
                    "{state:?} --{cmd:?}--> runtime {real:?}, model {want:?}"
                ));
            }
            if !accepted {
                assert_eq!(got, state, "a refused {cmd:?} changed the state");
            }
        }
    }
    assert!(mismatches.is_empty(), "{mismatches:#?}");
}
