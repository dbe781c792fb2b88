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

/// After the seccomp filter berth may only execve: a profile written for what the
/// program needs (here busybox `true`), with everything else denied, runs. Profiles
/// from before Linux 5.9 have no close_range; some deny getcwd.
#[test]
fn a_minimal_seccomp_allow_list_runs() {
    for nnp in [true, false] {
        let mut b = Bundle::new();
        b.spec["process"]["noNewPrivileges"] = json!(nnp);
        let mut allowed = vec![
            "execve",
            "arch_prctl",
            "brk",
            "exit_group",
            "exit",
            "getrandom",
            "getuid",
            "mprotect",
            "prctl",
            "prlimit64",
            "readlink",
            "rseq",
            "set_robust_list",
            "set_tid_address",
            "mmap",
            "munmap",
        ];
        if !nnp {
            // Without no_new_privs the filter needs CAP_SYS_ADMIN: berth drops it with one
            // capset right after (runc makes many more calls under such a filter).
            allowed.push("capset");
        }
        b.spec["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ERRNO",
            "defaultErrnoRet": 1,
            "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": [{"names": allowed, "action": "SCMP_ACT_ALLOW"}]
        });
        b.spec["process"]["args"] = json!(["true"]);
        let out = b.run();
        assert_eq!(out.code, 0, "noNewPrivileges={nnp}: {out:?}");
    }
}

/// Docker's profile as it was before Linux 5.9 knew close_range, and one that denies
/// getcwd: the container's own program never calls them, so it runs.
#[test]
fn profiles_without_close_range_or_getcwd_run() {
    let mut b = Bundle::new();
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [{"names": ["close_range", "getcwd"], "action": "SCMP_ACT_ERRNO"}]
    });
    b.sh("echo ran");
    let out = b.run().ok();
    assert_eq!(out.stdout.trim(), "ran");
}

/// With no mount namespace in the config, berth must not pivot_root the caller's own
/// mount namespace (on a host, the host's root) nor change its propagation: it chroots,
/// as runc does, and mount-related fields are refused.
#[test]
fn without_a_mount_namespace_the_callers_root_is_untouched() {
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let root_line = |text: &str| mountinfo_line(text, "/").map(str::to_owned);
    let mut b = Bundle::with_own_rootfs();
    b.drop_namespace("mount");
    b.spec["mounts"] = json!([]);
    b.spec["linux"]["maskedPaths"] = json!([]);
    b.spec["linux"]["readonlyPaths"] = json!([]);
    b.spec["root"]["readonly"] = json!(false);
    b.sh("ls /bin/busybox && echo chrooted");
    let out = b.run().ok();
    assert!(out.stdout.contains("chrooted"), "{out:?}");
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert_eq!(
        root_line(&before),
        root_line(&after),
        "the host's / changed"
    );
    // Fields that would mount on the host are refused with one line.
    let mut b = Bundle::with_own_rootfs();
    b.drop_namespace("mount");
    let out = b.run().failed();
    assert!(out.stderr.contains("needs a mount namespace"), "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
}

/// Poststart and poststop hooks that fail are logged as warnings; the remaining hooks and
/// the lifecycle go on (the spec's rule).
#[test]
fn failing_poststart_and_poststop_hooks_warn_and_continue() {
    let dir = tempfile::tempdir().unwrap();
    let mark = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    for kind in ["poststart", "poststop"] {
        b.spec["hooks"][kind] = json!([
            {"path": "/bin/false"},
            {"path": "/bin/sh", "args": ["sh", "-c", format!("cat > {}", mark(kind))]}
        ]);
    }
    let c = b.create("posthooks");
    let started = c.start();
    assert_eq!(started.code, 0, "{started:?}");
    assert!(
        started.stderr.contains("poststart"),
        "no warning: {started:?}"
    );
    assert_eq!(c.status(), "running");
    let deleted = c.berth(&["delete", "--force", &c.id]);
    assert_eq!(deleted.code, 0, "{deleted:?}");
    for kind in ["poststart", "poststop"] {
        let state: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(mark(kind)).unwrap()).unwrap();
        assert_eq!(state["id"], c.id.as_str(), "{kind} got the state on stdin");
    }
}
