//! Rootfs and mounts: read-only root, tmpfs and bind mounts with their flags, mount
//! propagation, symlinked destinations kept inside the rootfs, masked and read-only
//! paths, the default /dev and `linux.devices`.

use serde_json::json;

use crate::common::*;

/// The container's view of /proc/self/mountinfo after running `b`.
fn mountinfo(b: &mut Bundle) -> String {
    b.sh("cat /proc/self/mountinfo");
    b.run().ok().stdout
}

/// The optional fields (between the 6th field and "-") of a mountinfo line.
fn optional_fields(line: &str) -> Vec<&str> {
    line.split(' ').skip(6).take_while(|f| *f != "-").collect()
}

#[test]
fn readonly_root_refuses_writes() {
    let mut b = Bundle::new();
    b.sh(
        "touch /newfile && echo wrote; grep -c ' / / ' /proc/self/mountinfo; \
          awk '$5 == \"/\" {print $6}' /proc/self/mountinfo",
    );
    let out = b.run().ok();
    assert!(!out.stdout.contains("wrote"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    let opts = out.stdout.lines().last().unwrap();
    assert!(
        opts.split(',').any(|o| o == "ro"),
        "root mount opts: {opts}"
    );
    assert!(!b.rootfs().join("newfile").exists());
}

#[test]
fn writable_root_accepts_writes() {
    let mut b = Bundle::with_own_rootfs();
    b.sh("echo hi > /root/file");
    b.run().ok();
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("root/file")).unwrap(),
        "hi\n"
    );
}

#[test]
fn tmpfs_mount_options_show_in_mountinfo() {
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs",
               "options": ["ro", "nosuid", "nodev", "noexec", "size=1m", "mode=700"]}),
    );
    let text = mountinfo(&mut b);
    let line = mountinfo_line(&text, "/run").expect("/run mounted");
    let opts = mount_opts(line);
    for want in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(opts.iter().any(|o| o == want), "{want} missing: {line}");
    }
    assert!(line.contains(" - tmpfs tmpfs "), "{line}");
    assert!(
        line.contains("size=1024k") && line.contains("mode=700"),
        "{line}"
    );
}

#[test]
fn bind_mount_of_a_host_dir_with_flags() {
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data"), "from host\n").unwrap();
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/home", "type": "bind", "source": host.path(),
               "options": ["rbind", "ro", "nosuid", "noexec"]}),
    );
    b.sh(
        "cat /home/data; touch /home/new 2>/dev/null && echo wrote; \
          awk '$5 == \"/home\" {print $6}' /proc/self/mountinfo",
    );
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "from host");
    assert!(!out.stdout.contains("wrote"));
    let opts: Vec<&str> = lines.last().unwrap().split(',').collect();
    for want in ["ro", "nosuid", "noexec"] {
        assert!(opts.contains(&want), "{want} missing: {opts:?}");
    }
    assert!(!host.path().join("new").exists());
}

#[test]
fn writable_bind_mount_writes_through_to_the_host() {
    let host = tempfile::tempdir().unwrap();
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/home", "type": "bind", "source": host.path(),
               "options": ["rbind", "rw"]}),
    );
    b.sh("echo inside > /home/out");
    b.run().ok();
    assert_eq!(
        std::fs::read_to_string(host.path().join("out")).unwrap(),
        "inside\n"
    );
}

#[test]
fn bind_mount_of_a_host_file_onto_a_new_path() {
    let host = tempfile::tempdir().unwrap();
    let file = host.path().join("conf");
    std::fs::write(&file, "host file\n").unwrap();
    let mut b = Bundle::with_own_rootfs();
    b.push(
        "/mounts",
        json!({"destination": "/etc/berth/conf", "type": "bind", "source": file,
               "options": ["bind", "ro"]}),
    );
    b.sh("cat /etc/berth/conf; [ -f /etc/berth/conf ] && echo isfile");
    let out = b.run().ok();
    assert_eq!(out.stdout, "host file\nisfile\n");
    assert!(
        b.rootfs().join("etc/berth/conf").is_file(),
        "the mount point was made as a file"
    );
}

#[test]
fn bind_mount_propagation_options() {
    let shared = tempfile::tempdir().unwrap();
    let private = tempfile::tempdir().unwrap();
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/home", "type": "bind", "source": shared.path(),
               "options": ["rbind", "rshared"]}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/root", "type": "bind", "source": private.path(),
               "options": ["rbind", "rprivate"]}),
    );
    let text = mountinfo(&mut b);
    let sh = mountinfo_line(&text, "/home").expect("/home");
    assert!(
        optional_fields(sh).iter().any(|f| f.starts_with("shared:")),
        "rshared bind is shared: {sh}"
    );
    let pr = mountinfo_line(&text, "/root").expect("/root");
    assert!(
        optional_fields(pr).is_empty(),
        "rprivate bind has no peers: {pr}"
    );
}

/// This host's own mounts are private, so the root mount shows no peer group under
/// runc either; what is checked is that every value is accepted (runc accepts all).
#[test]
fn rootfs_propagation_values_are_accepted() {
    for prop in [
        "shared", "rshared", "slave", "rslave", "private", "rprivate",
    ] {
        let mut b = Bundle::new();
        b.spec["linux"]["rootfsPropagation"] = json!(prop);
        let text = mountinfo(&mut b);
        let root = mountinfo_line(&text, "/").expect("root mount");
        if prop.ends_with("private") {
            assert!(optional_fields(root).is_empty(), "{prop}: {root}");
        }
    }
}

/// A host directory that must stay untouched by the container.
fn host_target() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("berth-e2e-target-")
        .tempdir()
        .unwrap()
}

#[track_caller]
fn assert_untouched(dir: &std::path::Path) {
    let entries: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().collect();
    assert!(entries.is_empty(), "host dir written to: {entries:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(dir.to_str().unwrap()),
        "host dir {} got a mount",
        dir.display()
    );
}

#[test]
fn symlinked_mount_destination_stays_inside_the_rootfs() {
    let target = host_target();
    let mut b = Bundle::with_own_rootfs();
    std::os::unix::fs::symlink(target.path(), b.rootfs().join("evil")).unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/evil", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.sh("echo pwned > /evil/marker; cat /evil/marker");
    let out = b.run();
    // Either berth refuses, or the tmpfs landed inside the rootfs: never on the host dir.
    assert_untouched(target.path());
    if out.code == 0 {
        assert_eq!(out.stdout, "pwned\n");
    } else {
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }
}

#[test]
fn masked_paths_read_empty() {
    let mut b = Bundle::new();
    // /proc/kcore does not exist on this kernel; /proc/keys and /proc/timer_list do.
    b.sh(
        "wc -c < /proc/keys; wc -c < /proc/timer_list; ls -A /sys/firmware | wc -l; \
          touch /sys/firmware/x 2>/dev/null && echo wrote; \
          stat -c '%F %t:%T' /proc/keys",
    );
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(
        lines,
        ["0", "0", "0", "character special file 1:3"],
        "{out:?}"
    );
    assert!(
        !std::fs::read_to_string("/proc/timer_list")
            .unwrap()
            .is_empty(),
        "the host's file has content, so the empty read proves the mask"
    );
}

#[test]
fn readonly_paths_refuse_writes() {
    let mut b = Bundle::new();
    b.sh("echo e2e > /proc/sys/kernel/domainname && echo wrote; \
          awk '$5 == \"/proc/sys\" {print $6}' /proc/self/mountinfo");
    let out = b.run().ok();
    assert!(!out.stdout.contains("wrote"), "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    let opts = out.stdout.lines().last().unwrap();
    assert!(opts.split(',').any(|o| o == "ro"), "{opts}");
}

#[test]
fn default_dev_nodes_and_symlinks() {
    let mut b = Bundle::new();
    b.sh("for n in null zero full random urandom tty; do \
            stat -c '%n %F %t:%T %a' /dev/$n; done; \
          for l in fd stdin stdout stderr ptmx; do echo $l $(readlink /dev/$l); done; \
          echo x > /dev/null && head -c 4 /dev/zero | wc -c; \
          awk '$5 == \"/dev\" {print $9}' /proc/self/mountinfo");
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "/dev/null character special file 1:3 666",
            "/dev/zero character special file 1:5 666",
            "/dev/full character special file 1:7 666",
            "/dev/random character special file 1:8 666",
            "/dev/urandom character special file 1:9 666",
            "/dev/tty character special file 5:0 666",
        ],
        "{out:?}"
    );
    assert_eq!(
        lines[6..11],
        [
            "fd /proc/self/fd",
            "stdin /proc/self/fd/0",
            "stdout /proc/self/fd/1",
            "stderr /proc/self/fd/2",
            "ptmx pts/ptmx",
        ]
    );
    assert_eq!(lines[11].trim(), "4");
    assert_eq!(lines[12], "tmpfs");
}

#[test]
fn linux_devices_are_created_and_usable() {
    let mut b = Bundle::new();
    b.push(
        "/linux/devices",
        json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229,
               "fileMode": 0o600, "uid": 0, "gid": 0}),
    );
    b.push(
        "/linux/devices",
        json!({"path": "/dev/other-null", "type": "c", "major": 1, "minor": 3,
               "fileMode": 0o666, "uid": 1000, "gid": 5}),
    );
    b.sh("stat -c '%n %F %t:%T %a %u:%g' /dev/fuse /dev/other-null; \
          echo x > /dev/other-null && echo writable");
    let out = b.run().ok();
    assert_eq!(
        out.stdout,
        "/dev/fuse character special file a:e5 600 0:0\n\
         /dev/other-null character special file 1:3 666 1000:5\n\
         writable\n"
    );
}

#[test]
fn device_cgroup_denies_unlisted_nodes() {
    // mknod is allowed (as runc does) but opening a device not in the allow list is not.
    let mut b = Bundle::new();
    b.spec["process"]["capabilities"]["bounding"] = json!(["CAP_MKNOD"]);
    b.spec["process"]["capabilities"]["effective"] = json!(["CAP_MKNOD"]);
    b.spec["process"]["capabilities"]["permitted"] = json!(["CAP_MKNOD"]);
    // /dev/fuse (10:229) opens without privileges on the host, so only the device
    // cgroup can refuse it; a node of an allowed device (1:3) opens fine.
    b.sh(
        "mknod /dev/fuse2 c 10 229 && echo made; mknod /dev/null2 c 1 3; \
          (exec 3</dev/null2) && echo null-opened; (exec 4</dev/fuse2) && echo fuse-opened; true",
    );
    let out = b.run().ok();
    assert!(out.stdout.contains("made"), "{out:?}");
    assert!(out.stdout.contains("null-opened"), "{out:?}");
    assert!(
        !out.stdout.contains("fuse-opened"),
        "unlisted device opened: {out:?}"
    );
    assert!(out.stderr.contains("Operation not permitted"), "{out:?}");
}

#[test]
fn mounts_do_not_leak_to_the_host() {
    let before = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/run", "type": "tmpfs", "source": "e2e-leakcheck"}),
    );
    b.sh("grep -c e2e-leakcheck /proc/self/mountinfo");
    assert_eq!(b.run().ok().stdout.trim(), "1");
    let after = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!after.contains("e2e-leakcheck"));
    assert!(!before.contains("e2e-leakcheck"));
    // Nor in the mount namespace of the host's PID 1.
    let init = std::fs::read_to_string("/proc/1/mountinfo").unwrap();
    assert!(!init.contains("e2e-leakcheck"));
}

/// /sys/fs/cgroup shows the container's own cgroups and nothing above them: without a
/// cgroup namespace through bind mounts of its own directories (as runc does; a fresh
/// cgroup mount would expose the host's whole tree), with one through fresh mounts.
#[test]
fn cgroup_mount_shows_only_the_containers_own_cgroup() {
    for cgroupns in [false, true] {
        let mut b = Bundle::new();
        if !cgroupns {
            let ns = b.spec["linux"]["namespaces"].as_array_mut().unwrap();
            ns.retain(|n| n["type"] != "cgroup");
        }
        b.sh("ls /sys/fs/cgroup/pids /sys/fs/cgroup/systemd /sys/fs/cgroup/unified");
        let out = b.run().ok();
        // Only a non-root cgroup has pids.max; only a hierarchy root has release_agent,
        // and the root lists the container's own directory berth-<id>.
        assert!(
            out.stdout.contains("pids.max"),
            "cgroupns={cgroupns} {out:?}"
        );
        assert!(
            !out.stdout.contains("release_agent") && !out.stdout.contains("berth-"),
            "host cgroup tree visible (cgroupns={cgroupns}): {out:?}"
        );
    }
}
