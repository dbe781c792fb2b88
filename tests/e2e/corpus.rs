//! Bad input: every broken bundle makes `create` fail with exactly one line on stderr
//! naming the field or path, and leaves nothing behind (state, cgroups, processes,
//! mounts).

use serde_json::json;

use crate::common::*;

/// Write the bundle (unless `raw` config text is given), `create` it, and check the
/// failure is one line containing `needle` with nothing left behind.
#[track_caller]
fn refused(b: &Bundle, raw: Option<&str>, needle: &str) {
    match raw {
        Some(text) => std::fs::write(b.path().join("config.json"), text).unwrap(),
        None => b.write(),
    }
    let id = unique_id("corpus");
    let _g = b.guard(&id);
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(
        out.stderr.trim_end().lines().count(),
        1,
        "stderr is not one line: {:?}",
        out.stderr
    );
    assert!(
        out.stderr.contains(needle),
        "stderr does not name {needle:?}: {:?}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{:?}", out.stderr);
    assert_nothing_left(b, &id);
}

/// One #[test] per corpus entry: name, how to break a default bundle, expected needle.
macro_rules! corpus {
    ($($(#[$attr:meta])* $name:ident: |$b:ident| $edit:block => $needle:expr;)*) => {$(
        #[test]
        $(#[$attr])*
        fn $name() {
            #[allow(unused_mut)]
            let mut $b = Bundle::with_own_rootfs();
            let raw: Option<String> = $edit;
            let needle: String = $needle.into();
            refused(&$b, raw.as_deref(), &needle);
        }
    )*};
}

corpus! {
    malformed_json: |b| { Some("{\"ociVersion\": \"1.2.0\", process: }".into()) } => "config.json";
    truncated_json: |b| {
        let full = serde_json::to_string_pretty(&b.spec).unwrap();
        Some(full[..full.len() / 2].to_owned())
    } => "config.json";
    empty_config: |b| { Some(String::new()) } => "config.json";
    json_not_an_object: |b| { Some("[1, 2, 3]".into()) } => "config.json";
    mistyped_uid: |b| {
        b.spec["process"]["user"]["uid"] = json!("root");
        None
    } => "uid";
    mistyped_args: |b| {
        b.spec["process"]["args"] = json!("sh -c true");
        None
    } => "args";
    missing_rootfs: |b| {
        b.spec["root"]["path"] = json!("no-such-rootfs");
        None
    } => "no-such-rootfs";
    rootfs_is_a_file: |b| {
        std::fs::write(b.path().join("rootfs-file"), "x").unwrap();
        b.spec["root"]["path"] = json!("rootfs-file");
        None
    } => "rootfs-file";

    missing_mount_source: |b| {
        b.push("/mounts", json!({"destination": "/home", "type": "bind",
            "source": "/nonexistent-e2e-source", "options": ["rbind"]}));
        None
    } => "/nonexistent-e2e-source";
    relative_mount_destination: |b| {
        b.push("/mounts", json!({"destination": "home", "type": "tmpfs", "source": "tmpfs"}));
        None
    } => "home";

    unknown_mount_option_value: |b| {
        b.push("/mounts", json!({"destination": "/home", "type": "tmpfs", "source": "tmpfs",
            "options": ["size=lots"]}));
        None
    } => "/home";
    missing_process_args: |b| {
        b.spec["process"].as_object_mut().unwrap().remove("args");
        None
    } => "args";
    empty_process_args: |b| {
        b.spec["process"]["args"] = json!([]);
        None
    } => "args";
    missing_process: |b| {
        b.spec.as_object_mut().unwrap().remove("process");
        None
    } => "process";
    relative_cwd: |b| {
        b.spec["process"]["cwd"] = json!("tmp");
        None
    } => "cwd";
    // This host has neither AppArmor nor SELinux: asking for them is an error, not a no-op.
    apparmor_profile_without_apparmor: |b| {
        b.spec["process"]["apparmorProfile"] = json!("berth-default");
        None
    } => "apparmorProfile";
    selinux_label_without_selinux: |b| {
        b.spec["process"]["selinuxLabel"] = json!("system_u:system_r:container_t:s0");
        None
    } => "selinuxLabel";
    unknown_capability: |b| {
        b.spec["process"]["capabilities"]["bounding"] = json!(["CAP_BOGUS"]);
        None
    } => "CAP_BOGUS";
    unknown_namespace_type: |b| {
        b.push("/linux/namespaces", json!({"type": "bogus"}));
        None
    } => "bogus";
    memory_policy_without_nodes: |b| {
        b.spec["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND"});
        None
    } => "linux.memoryPolicy.nodes";
    // Valid syntax, but this host has no NUMA node 7: the kernel refuses it in init.
    memory_policy_on_a_missing_node: |b| {
        b.spec["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND", "nodes": "7"});
        None
    } => "linux.memoryPolicy";
    net_device_missing_on_the_host: |b| {
        b.spec["linux"]["netDevices"] = json!({"nosuchdev0": {"name": "eth9"}});
        None
    } => "no network interface \"nosuchdev0\"";
    duplicate_namespace: |b| {
        b.push("/linux/namespaces", json!({"type": "network"}));
        None
    } => "linux.namespaces";
    missing_namespace_path: |b| {
        b.namespace("network", Some("/nonexistent-e2e-netns"));
        None
    } => "/nonexistent-e2e-netns";
    // The kernel allows 65,536 supplementary groups (NGROUPS_MAX); more once hung create.
    too_many_additional_gids: |b| {
        b.spec["process"]["user"]["additionalGids"] = json!((1..=70_000).collect::<Vec<u32>>());
        None
    } => "additionalGids";
    hostname_without_uts_namespace: |b| {
        b.drop_namespace("uts");
        None
    } => "hostname";
    overlapping_uid_mappings: |b| {
        b.namespace("user", None);
        b.spec["linux"]["uidMappings"] = json!([
            {"containerID": 0, "hostID": 100000, "size": 1000},
            {"containerID": 500, "hostID": 200000, "size": 1000}
        ]);
        b.spec["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        None
    } => "uidMappings";
    uid_mappings_without_user_namespace: |b| {
        b.spec["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        None
    } => "uidMappings";
    time_offsets_without_time_namespace: |b| {
        b.spec["linux"]["timeOffsets"] = json!({"monotonic": {"secs": 10, "nanosecs": 0}});
        None
    } => "timeOffsets";
    unknown_seccomp_action: |b| {
        b.spec["linux"]["seccomp"]["defaultAction"] = json!("SCMP_ACT_BOGUS");
        None
    } => "SCMP_ACT_BOGUS";
    unknown_rlimit_type: |b| {
        b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
        None
    } => "RLIMIT_BOGUS";
    soft_rlimit_above_hard: |b| {
        b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 10, "hard": 5}]);
        None
    } => "RLIMIT_NOFILE";
    missing_hook_binary: |b| {
        b.push("/hooks/createRuntime", json!({"path": "/nonexistent-e2e-hook"}));
        None
    } => "/nonexistent-e2e-hook";
    relative_hook_path: |b| {
        b.push("/hooks/createRuntime", json!({"path": "bin/true"}));
        None
    } => "bin/true";
    unsupported_oci_version: |b| {
        b.spec["ociVersion"] = json!("9.0.0");
        None
    } => "ociVersion";
    missing_executable: |b| {
        b.spec["process"]["args"] = json!(["/no/such/binary"]);
        None
    } => "/no/such/binary";
    host_wide_sysctl: |b| {
        b.spec["linux"]["sysctl"] = json!({"kernel.panic": "1"});
        None
    } => "kernel.panic";
    device_with_bad_type: |b| {
        b.push("/linux/devices", json!({"path": "/dev/x", "type": "q", "major": 1, "minor": 3}));
        None
    } => "type";
}

/// `run` fails the same way as `create` and cleans up the same.
#[test]
fn run_of_a_bad_bundle_leaves_nothing() {
    let mut b = Bundle::with_own_rootfs();
    b.spec["process"]["cwd"] = json!("relative");
    b.write();
    let id = unique_id("badrun");
    let _g = b.guard(&id);
    let out = b
        .berth(&["run", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("cwd"), "{out:?}");
    assert_nothing_left(&b, &id);
}

#[test]
fn missing_bundle_dir_is_refused() {
    let b = Bundle::new();
    let id = unique_id("nobundle");
    let out = b
        .berth(&["create", "--bundle", "/nonexistent-e2e-bundle", &id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("/nonexistent-e2e-bundle"), "{out:?}");
    assert_nothing_left(&b, &id);
}

/// config.json as a FIFO (nobody writes it) or larger than 16 MiB: one line, no hang.
#[test]
fn config_json_that_is_a_fifo_or_too_large_is_refused() {
    let b = Bundle::new();
    let cfg = b.path().join("config.json");
    std::fs::remove_file(&cfg).unwrap();
    nix::unistd::mkfifo(&cfg, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let id = unique_id("fifocfg");
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert!(out.stderr.contains("not a regular file"), "{out:?}");
    std::fs::remove_file(&cfg).unwrap();
    let f = std::fs::File::create(&cfg).unwrap();
    f.set_len(17 << 20).unwrap();
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert!(out.stderr.contains("at most"), "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
    assert_nothing_left(&b, &id);
}

/// The leftover check itself sees a live container: state dir, cgroups and its init.
#[test]
fn the_leftover_check_catches_a_live_container() {
    let mut b = Bundle::with_own_rootfs();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("leftover");
    c.start().ok();
    let state_dir = b.root().join(&c.id);
    // Hide the state dir so only the cgroup and process checks can catch it.
    let hidden = b.path().join("hidden-state");
    std::fs::rename(&state_dir, &hidden).unwrap();
    let caught = std::panic::catch_unwind(|| assert_nothing_left(&b, &c.id));
    std::fs::rename(&hidden, &state_dir).unwrap();
    assert!(caught.is_err(), "a running container went unnoticed");
    c.berth(&["delete", "--force", &c.id]).ok();
    // After a real delete (the init may linger as an unreaped zombie, which has no root
    // link), the same check passes.
    assert_nothing_left(&b, &c.id);
}
