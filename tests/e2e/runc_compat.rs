//! The same bundle under runc and under berth: the probes must print the same thing,
//! or the test says why berth differs on purpose.

use std::process::Command;

use serde_json::json;

use crate::common::*;

/// Run the bundle's process under `runc --root <tmp> run` and return its stdout.
fn under_runc(b: &Bundle) -> Outcome {
    b.write();
    let root = tempfile::tempdir().unwrap();
    let id = unique_id("runc");
    let out = output_of(
        Command::new("runc")
            .arg("--root")
            .arg(root.path())
            .args(["run", "--bundle"])
            .arg(b.path())
            .arg(&id),
    );
    let _ = output_of(
        Command::new("runc")
            .arg("--root")
            .arg(root.path())
            .args(["delete", "--force", &id]),
    );
    out
}

/// Run `script` under both runtimes (after `edit`) and return (runc, berth) stdout.
fn both(script: &str, edit: impl Fn(&mut Bundle)) -> (String, String) {
    let mut b = Bundle::new();
    edit(&mut b);
    b.sh(script);
    let runc = under_runc(&b);
    assert_eq!(runc.code, 0, "runc failed: {runc:?}");
    let berth = b.run().ok();
    (runc.stdout, berth.stdout)
}

/// Mount point, fs type and per-mount options of the mountinfo lines under `prefix`,
/// sorted; ids, peer groups and sources differ between runs and are dropped.
fn mounts_under(text: &str, prefix: &str) -> Vec<String> {
    let mut v: Vec<String> = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            let mnt = f[4];
            (mnt == prefix || mnt.starts_with(&format!("{prefix}/")))
                .then(|| format!("{mnt} {} {}", f[dash + 1], f[5]))
        })
        .collect();
    v.sort();
    v
}

#[test]
fn proc_mounts_match_runc() {
    let (runc, berth) = both("cat /proc/self/mountinfo", |_| {});
    // berth remounts readonlyPaths with nosuid,nodev,noexec on top of ro (runc 1.1 only
    // sets ro): stricter on purpose, so those three flags are compared as "ro".
    let relaxed = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|l| l.replace("ro,nosuid,nodev,noexec,", "ro,"))
            .collect()
    };
    assert_eq!(
        relaxed(mounts_under(&berth, "/proc")),
        mounts_under(&runc, "/proc")
    );
}

#[test]
fn dev_mounts_match_runc() {
    let (runc, berth) = both("cat /proc/self/mountinfo", |_| {});
    assert_eq!(mounts_under(&berth, "/dev"), mounts_under(&runc, "/dev"));
}

#[test]
fn dev_listing_matches_runc() {
    let (runc, berth) = both("ls -l /dev | awk '{print $1, $5, $6, $NF}'", |_| {});
    assert_eq!(berth, runc);
}

#[test]
fn capabilities_match_runc() {
    let (runc, berth) = both("grep -E '^(Cap|NoNewPrivs)' /proc/self/status", |_| {});
    assert_eq!(berth, runc);
}

#[test]
fn seccomp_status_matches_runc() {
    let (runc, berth) = both("grep -E '^Seccomp' /proc/self/status", |_| {});
    assert_eq!(berth, runc);
}

#[test]
fn fds_match_runc() {
    let (runc, berth) = both("ls -l /proc/self/fd | awk '{print $9, $10, $11}'", |_| {});
    // fd 1 and 2 are the pipes of each runtime's caller; compare names only.
    let names = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split(' ').next().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(names(&berth), names(&runc));
}

#[test]
fn hostname_matches_runc() {
    let (runc, berth) = both("hostname; cat /proc/sys/kernel/domainname", |b| {
        b.spec["hostname"] = json!("compare-host");
    });
    assert_eq!(berth, runc);
}

#[test]
fn uid_map_matches_runc() {
    let (runc, berth) = both("cat /proc/self/uid_map /proc/self/gid_map; id", |b| {
        b.namespace("user", None);
        b.spec["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.spec["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    });
    assert_eq!(berth, runc);
}

#[test]
fn limits_and_ids_match_runc() {
    let (runc, berth) = both(
        "cat /proc/self/limits; id; umask; cat /proc/self/oom_score_adj",
        |_| {},
    );
    assert_eq!(berth, runc);
}

#[test]
fn state_json_has_runcs_fields() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    b.spec["annotations"] = json!({"a": "b"});
    b.write();
    let root = tempfile::tempdir().unwrap();
    let runc = |args: &[&str]| {
        output_of(
            Command::new("runc")
                .arg("--root")
                .arg(root.path())
                .args(args),
        )
    };
    let id = unique_id("runcstate");
    runc(&["create", "--bundle", b.path().to_str().unwrap(), &id]).ok();
    let runc_state = runc(&["state", &id]);
    runc(&["delete", "--force", &id]);
    let runc_state: serde_json::Value = serde_json::from_str(&runc_state.ok().stdout).unwrap();
    let c = b.create("state");
    let berth_state = c.state();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(keys(&berth_state), keys(&runc_state));
    // ociVersion is each runtime's own spec version (runc 1.1.5 says 1.0.2-dev). owner:
    // runc's state leaves it "" unless rootless, while its `list` shows the user name;
    // berth fills it in the state too, on purpose.
    assert_eq!(berth_state["owner"], "root");
    for field in ["status", "bundle", "rootfs", "annotations"] {
        assert_eq!(berth_state[field], runc_state[field], "{field}");
    }
}

#[test]
fn sys_mounts_match_runc() {
    let (runc, berth) = both("cat /proc/self/mountinfo", |_| {});
    // Two differences on purpose: berth also mounts the (controller-less) cgroup2 tree
    // of this hybrid host at /sys/fs/cgroup/unified, as the host has it, and keeps the
    // /sys/fs/cgroup tmpfs read-only like everything under it (runc 1.1 leaves it rw).
    let berth: Vec<String> = mounts_under(&berth, "/sys")
        .into_iter()
        .filter(|l| !l.starts_with("/sys/fs/cgroup/unified "))
        .map(|l| l.replace("/sys/fs/cgroup tmpfs ro,", "/sys/fs/cgroup tmpfs rw,"))
        .collect();
    assert_eq!(berth, mounts_under(&runc, "/sys"));
}

#[test]
fn root_mount_matches_runc() {
    let (runc, berth) = both("cat /proc/self/mountinfo", |_| {});
    assert_eq!(mounts_under(&berth, "/"), mounts_under(&runc, "/"));
}
