//! `check` on a corpus of configs: berth spec's default, privileged, host namespaces,
//! rootless, and the default with each barrier removed one at a time (exactly the
//! rules of that barrier change, and to fail). Policies on top.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::collections::BTreeMap;
use std::path::Path;

use berth_policy::check::{check, Status};
use berth_policy::rules::{Severity, RULES};
use berth_policy::Policy;
use serde_json::{json, Value};

/// The default spec, round-tripped through the runtime's parser (as `check` reads it).
fn default() -> Value {
    parsed(berth_runtime::spec::default_spec(false))
}

fn parsed(v: Value) -> Value {
    let spec = berth_runtime::config::parse_spec(&serde_json::to_vec(&v).unwrap()).unwrap();
    serde_json::to_value(spec).unwrap()
}

/// The worst status of each rule (fail > warn > pass), ignoring low-severity warns.
fn statuses(spec: &Value) -> BTreeMap<&'static str, Status> {
    let mut m = BTreeMap::new();
    for f in check(spec) {
        let rank = |s: Status| match s {
            Status::Pass => 0,
            Status::Warn => 1,
            Status::Fail => 2,
        };
        let e = m.entry(f.rule).or_insert(Status::Pass);
        if rank(f.status) > rank(*e) && !(f.status == Status::Warn && f.severity == Severity::Low) {
            *e = f.status;
        }
    }
    m
}

fn failing(spec: &Value) -> Vec<&'static str> {
    statuses(spec)
        .into_iter()
        .filter(|(_, s)| *s == Status::Fail)
        .map(|(r, _)| r)
        .collect()
}

#[test]
fn every_rule_reports_on_the_default() {
    let m = statuses(&default());
    for r in RULES {
        assert!(m.contains_key(r.id), "rule {} said nothing", r.id);
    }
}

#[test]
fn default_spec_fails_only_user_ns_limits_and_lsm() {
    assert_eq!(
        failing(&default()),
        vec![
            "cgroup.cpu",
            "cgroup.memory",
            "cgroup.pids",
            "lsm.profile",
            "ns.user",
            "user.root"
        ]
    );
    // berth's default allows ptrace & co. as Docker's does: a low-severity warn.
    let f = check(&default());
    let w = f
        .iter()
        .find(|f| f.rule == "seccomp.dangerous" && f.status == Status::Warn)
        .expect("guarded syscalls reported");
    assert_eq!(w.severity, Severity::Low);
    assert!(w.message.contains("ptrace"), "{}", w.message);
}

fn privileged() -> Value {
    let mut s = default();
    let all: Vec<&str> = berth_policy::caps::ALL.to_vec();
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        s["process"]["capabilities"][set] = json!(all);
    }
    let linux = s["linux"].as_object_mut().unwrap();
    linux.remove("seccomp");
    linux.remove("maskedPaths");
    linux.remove("readonlyPaths");
    s["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    s["process"]["noNewPrivileges"] = json!(false);
    parsed(s)
}

#[test]
fn privileged_fails_every_capability_seccomp_path_and_device_rule() {
    let f = failing(&privileged());
    for rule in [
        "caps.escape",
        "caps.least",
        "caps.ambient",
        "nnp",
        "seccomp.enabled",
        "seccomp.default_deny",
        "seccomp.dangerous",
        "paths.masked",
        "paths.readonly",
        "devices.cgroup",
    ] {
        assert!(f.contains(&rule), "{rule} not failing: {f:?}");
    }
    let esc = check(&privileged())
        .into_iter()
        .find(|f| f.rule == "caps.escape")
        .unwrap();
    assert!(esc.message.contains("CAP_SYS_ADMIN") && esc.message.contains("CAP_SYS_MODULE"));
}

#[test]
fn host_namespaces_fail_by_type_and_a_joined_host_namespace_is_named() {
    let mut s = default();
    s["linux"]["namespaces"] = json!([
        {"type": "mount"},
        {"type": "network", "path": "/proc/self/ns/net"},
        {"type": "ipc", "path": "/proc/1/ns/ipc"},
        {"type": "user", "path": "/proc/self/ns/user"}
    ]);
    let s = parsed(s);
    let m = statuses(&s);
    for r in ["ns.pid", "ns.uts", "ns.cgroup", "ns.network"] {
        assert_eq!(m[r], Status::Fail, "{r}");
    }
    assert_eq!(m["ns.mount"], Status::Pass);
    assert_eq!(m["ns.user"], Status::Fail, "the host's user namespace");
    assert_eq!(
        m["user.root"],
        Status::Warn,
        "a joined user ns: its maps decide"
    );
    let net = check(&s)
        .into_iter()
        .find(|f| f.rule == "ns.network")
        .unwrap();
    assert!(net.message.contains("host's"), "{}", net.message);
}

#[test]
fn rootless_root_is_not_host_root_and_maps_are_checked() {
    let mut s = berth_runtime::spec::default_spec(true);
    s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let s = parsed(s);
    let m = statuses(&s);
    assert_eq!(m["ns.user"], Status::Pass);
    assert_eq!(m["user.root"], Status::Pass);
    assert_eq!(m["user.idmap"], Status::Pass);
    // no device rules, but mknod is impossible in a user namespace: not a failure
    assert_ne!(m["devices.cgroup"], Status::Fail);
    assert_eq!(m["ns.network"], Status::Fail);

    let mut bad = s.clone();
    bad["linux"]["uidMappings"] = json!([
        {"containerID": 0, "hostID": 100000, "size": 10},
        {"containerID": 100, "hostID": 100005, "size": 10}
    ]);
    let f = check(&bad);
    let idmap = f.iter().find(|f| f.rule == "user.idmap").unwrap();
    assert_eq!(idmap.status, Status::Fail);
    assert!(idmap.message.contains("host side"), "{}", idmap.message);

    let mut root = s.clone();
    root["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 0, "size": 1}]);
    assert_eq!(statuses(&root)["user.root"], Status::Fail);
}

type Mutation = (&'static str, fn(&mut Value), &'static [&'static str]);

/// One barrier removed from the default, and the rules that must flip to fail.
const REMOVALS: &[Mutation] = &[
    ("no pid ns", |s| drop_ns(s, "pid"), &["ns.pid"]),
    ("no net ns", |s| drop_ns(s, "network"), &["ns.network"]),
    ("no mount ns", |s| drop_ns(s, "mount"), &["ns.mount"]),
    ("no ipc ns", |s| drop_ns(s, "ipc"), &["ns.ipc"]),
    ("no uts ns", |s| drop_ns(s, "uts"), &["ns.uts"]),
    ("no cgroup ns", |s| drop_ns(s, "cgroup"), &["ns.cgroup"]),
    (
        "CAP_SYS_ADMIN",
        |s| {
            push(
                &mut s["process"]["capabilities"]["bounding"],
                json!("CAP_SYS_ADMIN"),
            )
        },
        &["caps.escape", "caps.least"],
    ),
    (
        "CAP_IPC_LOCK",
        |s| {
            push(
                &mut s["process"]["capabilities"]["permitted"],
                json!("CAP_IPC_LOCK"),
            )
        },
        &["caps.least"],
    ),
    (
        "ambient",
        |s| s["process"]["capabilities"]["ambient"] = json!(["CAP_KILL"]),
        &["caps.ambient"],
    ),
    (
        "no nnp",
        |s| s["process"]["noNewPrivileges"] = json!(false),
        &["nnp"],
    ),
    (
        "no seccomp",
        |s| {
            s["linux"].as_object_mut().unwrap().remove("seccomp");
        },
        &[
            "seccomp.enabled",
            "seccomp.default_deny",
            "seccomp.dangerous",
        ],
    ),
    (
        "allow-by-default seccomp",
        |s| s["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_ALLOW"),
        &["seccomp.default_deny", "seccomp.dangerous"],
    ),
    (
        "mount allowed",
        |s| {
            push(
                &mut s["linux"]["seccomp"]["syscalls"],
                json!({"names": ["mount", "unshare"], "action": "SCMP_ACT_ALLOW"}),
            )
        },
        &["seccomp.dangerous"],
    ),
    (
        "/proc/kcore unmasked",
        |s| retain(&mut s["linux"]["maskedPaths"], "/proc/kcore"),
        &["paths.masked"],
    ),
    (
        "/proc/sys writable",
        |s| retain(&mut s["linux"]["readonlyPaths"], "/proc/sys"),
        &["paths.readonly"],
    ),
    (
        "writable root",
        |s| s["root"]["readonly"] = json!(false),
        &["rootfs.readonly"],
    ),
    (
        "no device rules",
        |s| s["linux"]["resources"]["devices"] = json!([]),
        &["devices.cgroup"],
    ),
    (
        "/dev/fuse",
        |s| {
            push(
                &mut s["linux"]["devices"],
                json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}),
            )
        },
        &["devices.extra"],
    ),
    (
        "host /etc bind",
        |s| {
            push(
                &mut s["mounts"],
                json!({"destination": "/host-etc", "type": "bind", "source": "/etc", "options": ["rbind"]}),
            )
        },
        &["mounts.host"],
    ),
    (
        "shared propagation",
        |s| s["linux"]["rootfsPropagation"] = json!("rshared"),
        &["mounts.propagation"],
    ),
];

fn drop_ns(s: &mut Value, typ: &str) {
    s["linux"]["namespaces"]
        .as_array_mut()
        .unwrap()
        .retain(|n| n["type"] != typ);
}

fn push(v: &mut Value, item: Value) {
    if !v.is_array() {
        *v = json!([]);
    }
    v.as_array_mut().unwrap().push(item);
}

fn retain(v: &mut Value, remove: &str) {
    v.as_array_mut().unwrap().retain(|p| p != remove);
}

#[test]
fn removing_one_barrier_fails_exactly_its_rules() {
    let base = statuses(&default());
    for (what, mutate, expect) in REMOVALS {
        let mut s = default();
        mutate(&mut s);
        let s = parsed(s);
        let now = statuses(&s);
        for (rule, status) in &now {
            if expect.contains(rule) {
                assert_eq!(*status, Status::Fail, "{what}: {rule} should fail");
            } else {
                assert_eq!(*status, base[rule], "{what}: {rule} changed");
            }
        }
    }
}

#[test]
fn adding_limits_and_a_profile_passes_their_rules() {
    let mut s = default();
    s["linux"]["resources"]["memory"] = json!({"limit": 268435456});
    s["linux"]["resources"]["pids"] = json!({"limit": 100});
    s["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000});
    s["process"]["apparmorProfile"] = json!("berth-default");
    let m = statuses(&parsed(s));
    for r in ["cgroup.memory", "cgroup.pids", "cgroup.cpu", "lsm.profile"] {
        assert_eq!(m[r], Status::Pass, "{r}");
    }
}

fn policy(text: &str) -> Result<Policy, String> {
    Policy::parse(text, Path::new("p.toml")).map_err(|e| e.to_string())
}

#[test]
fn policies_turn_findings_into_violations() {
    let spec = default();
    let f = check(&spec);
    let p = policy(r#"require = ["ns.pid", "seccomp.default_deny", "nnp"]"#).unwrap();
    assert!(p.evaluate(&spec, &f).is_empty());

    let p = policy(r#"require = ["user.root"]"#).unwrap();
    let v = p.evaluate(&spec, &f);
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].rule, "user.root");

    let p = policy(r#"fail_on = "high""#).unwrap();
    let v = p.evaluate(&spec, &f);
    assert_eq!(
        v.iter().map(|v| v.rule.as_str()).collect::<Vec<_>>(),
        ["user.root"]
    );

    let p = policy(r#"forbid_capabilities = ["kill", "CAP_SYS_ADMIN"]"#).unwrap();
    let v = p.evaluate(&spec, &f);
    assert_eq!(v.len(), 1);
    assert!(v[0].message.contains("CAP_KILL"));

    let p = policy("[limits]\nmemory_max = 1073741824\npids_max = 100\ncpu_max = 1.0\n").unwrap();
    assert_eq!(p.evaluate(&spec, &f).len(), 3, "no limits at all");
    let mut lim = default();
    lim["linux"]["resources"]["memory"] = json!({"limit": 2147483648u64});
    lim["linux"]["resources"]["pids"] = json!({"limit": 50});
    lim["linux"]["resources"]["cpu"] = json!({"quota": 200000, "period": 100000});
    let lim = parsed(lim);
    let v = p.evaluate(&lim, &check(&lim));
    let rules: Vec<_> = v.iter().map(|v| v.rule.as_str()).collect();
    assert_eq!(rules, ["limits.memory_max", "limits.cpu_max"]);

    let p = policy(r#"require = ["all"]"#).unwrap();
    assert_eq!(p.evaluate(&spec, &f).len(), failing(&spec).len());
}

#[test]
fn bad_policies_are_one_line_errors() {
    for (text, want) in [
        (r#"require = ["ns.pdi"]"#, "unknown rule \"ns.pdi\""),
        (r#"forbid_capabilities = ["CAP_FLY"]"#, "unknown capability"),
        ("requires = []", "unknown field"),
        (r#"fail_on = "severe""#, "unknown variant"),
        ("require = [", "p.toml"),
    ] {
        let e = policy(text).unwrap_err();
        assert!(e.contains(want), "{text}: {e}");
        assert!(e.starts_with("policy p.toml: "), "{e}");
        assert!(!e.contains('\n'), "more than one line: {e:?}");
    }
}

#[test]
fn docs_list_every_rule() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/policy.md"))
        .unwrap();
    for r in RULES {
        assert!(
            doc.contains(&format!("| `{}` |", r.id)),
            "docs/policy.md lacks rule {}",
            r.id
        );
    }
}

#[test]
fn a_fifo_or_device_in_place_of_a_config_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.json");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let e = berth_policy::resolve(dir.path().to_str().unwrap(), dir.path()).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
    let e = Policy::load(Path::new("/dev/zero")).unwrap_err();
    assert!(e.to_string().contains("not a regular file"), "{e}");
}
