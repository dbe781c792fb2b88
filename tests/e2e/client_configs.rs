//! Configs other clients send, where the runtime spec (or runc and crun side by side)
//! says a runtime must accept them: unknown fields, a hostname in a joined UTS namespace,
//! a mount label on a host without SELinux.

use std::process::Command;

use serde_json::json;

use crate::common::*;

/// The spec: runtimes MUST NOT fail on unknown properties and MUST ignore them. Newer
/// clients add fields before runtimes learn them.
#[test]
fn unknown_fields_are_ignored_at_every_level() {
    let mut b = Bundle::new();
    b.spec["x-future-top-level"] = json!({"anything": [1, 2]});
    b.spec["linux"]["x-future-linux"] = json!(1);
    b.spec["process"]["x-future-process"] = json!("v");
    b.spec["process"]["user"]["x-future-user"] = json!(true);
    b.sh("echo ran");
    let out = b.run().ok();
    assert_eq!(out.stdout.trim(), "ran", "{out:?}");
}

/// A known field of the wrong type is still an error naming the field.
#[test]
fn known_fields_keep_their_types() {
    let mut b = Bundle::new();
    b.spec["process"]["noNewPrivileges"] = json!("yes");
    let out = b.run().failed();
    assert!(out.stderr.contains("noNewPrivileges"), "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
}

/// runc and crun set the hostname inside a UTS namespace joined by path.
#[test]
fn hostname_in_a_uts_namespace_joined_by_path() {
    let helper = Helper::spawn(Command::new("unshare").args(["--uts", "sleep", "1000"]));
    let link = format!("/proc/{}/ns/uts", helper.pid());
    wait_until("helper unshared its uts namespace", || {
        std::fs::read_link(&link).is_ok_and(|l| l.to_string_lossy() != host_ns("uts"))
    });
    let mut b = Bundle::new();
    b.namespace("uts", Some(&link));
    b.spec["hostname"] = json!("joined-uts");
    b.sh("hostname");
    let out = b.run().ok();
    assert_eq!(out.stdout.trim(), "joined-uts", "{out:?}");
    // It is the joined namespace that changed, not a new one and not the host's.
    let helper_name = output_of(Command::new("nsenter").args([
        "-t",
        &helper.pid().to_string(),
        "--uts",
        "hostname",
    ]))
    .ok();
    assert_eq!(helper_name.stdout.trim(), "joined-uts");
    assert_ne!(
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .unwrap()
            .trim(),
        "joined-uts"
    );
}

/// crun ignores linux.mountLabel with a warning where SELinux is off; so does berth.
#[test]
fn mount_label_without_selinux_is_ignored_with_a_warning() {
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        return; // SELinux is on: the label would be applied.
    }
    let mut b = Bundle::new();
    b.spec["linux"]["mountLabel"] = json!("system_u:object_r:container_file_t:s0");
    b.sh("echo ran");
    let out = b.run().ok();
    assert_eq!(out.stdout.trim(), "ran");
    assert!(out.stderr.contains("mountLabel"), "no warning: {out:?}");
}
