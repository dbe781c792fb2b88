//! Escapes and host damage found by attacking berth as hostile images, containers and
//! local users would; each test performs the attack for real.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;

use crate::common::*;

/// CVE-2016-9962 class: a process entering the container with `exec` sits in the
/// container's pid namespace before its execve, holding the channel to the host `berth
/// exec`. Once it has the container's user and capabilities, only one thing keeps a
/// container process (same uid, same capabilities) from its fds and from ptrace: it is
/// non-dumpable until execve. To hold it in that window, the host traces the exec and
/// delays its execve (strace's fault injection) while a second exec looks for it.
#[test]
fn exec_is_invisible_to_the_container_until_it_execs() {
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("execheld");
    c.start().ok();
    let exec = b.cmd(&["exec", &c.id, "true"]);
    let mut traced = Command::new("strace");
    traced
        .args(["-f", "-qq", "-o", "/dev/null", "-e", "trace=execve"])
        // Every execve of a child of the traced berth waits 8 s on entry.
        .args(["-e", "inject=execve:delay_enter=8000000"])
        .arg(exec.get_program())
        .args(exec.get_args());
    let held = Helper::spawn(&mut traced);
    // Look until the held exec is there (in tracing stop at its execve), however slowly
    // it got there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(7);
    let scan = loop {
        let scan = c
            .berth(&[
                "exec",
                &c.id,
                "sh",
                "-c",
                "grep -l '^State:.t' /proc/[0-9]*/status 2>/dev/null | grep -q . && echo SEEN; \
                 for f in /proc/[0-9]*/fd/*; do readlink $f; done 2>/dev/null | grep socket; true",
            ])
            .ok();
        if scan.stdout.contains("SEEN") || std::time::Instant::now() > deadline {
            break scan;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    drop(held);
    assert!(
        scan.stdout.contains("SEEN"),
        "the held exec was not in the container yet, so nothing was tested: {scan:?}"
    );
    assert!(
        !scan.stdout.contains("socket"),
        "the exec'ing process's host sockets were open to the container: {scan:?}"
    );
}

/// CVE-2025-52881 class: a mount on or under /proc (an image `VOLUME /proc/1`, with
/// symlinks beneath it) could stand in for procfs when masked and read-only paths were
/// applied. Such mounts are refused, also when a symlink in the image leads there.
#[test]
fn mounts_on_proc_are_refused() {
    let b = {
        let mut b = Bundle::with_own_rootfs();
        b.push(
            "/mounts",
            json!({"destination": "/proc/1", "type": "tmpfs", "source": "tmpfs"}),
        );
        b
    };
    let id = unique_id("procvol");
    b.write();
    let out = b
        .berth(&["run", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("/proc/1"), "{out:?}");
    assert_nothing_left(&b, &id);

    // Lexically outside /proc, but a symlink in the image resolves it into procfs.
    let mut b = Bundle::with_own_rootfs();
    std::os::unix::fs::symlink("/proc", b.rootfs().join("lookalike")).unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/lookalike/1", "type": "tmpfs", "source": "tmpfs"}),
    );
    let id = unique_id("proclink");
    b.write();
    let out = b
        .berth(&["run", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert!(out.stderr.contains("procfs"), "{out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
    assert_nothing_left(&b, &id);
}

/// A rootfs whose /proc is a symlink (to a directory the image controls) does not get
/// procfs mounted through it: masked paths would then be applied to the wrong place.
#[test]
fn procfs_is_not_mounted_through_a_symlink() {
    let mut b = Bundle::with_own_rootfs();
    let rootfs = b.rootfs();
    std::fs::remove_dir(rootfs.join("proc")).unwrap();
    std::fs::create_dir(rootfs.join("fakeproc")).unwrap();
    std::os::unix::fs::symlink("/fakeproc", rootfs.join("proc")).unwrap();
    b.sh("true");
    let id = unique_id("proclinkroot");
    b.write();
    let out = b
        .berth(&["run", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert!(out.stderr.contains("ordinary directory"), "{out:?}");
    assert_nothing_left(&b, &id);
}

/// The kernel's core_pattern (a host-wide setting) is read-only and masked paths are
/// empty inside a default container.
#[test]
fn core_pattern_cannot_be_opened_for_writing() {
    let mut b = Bundle::new();
    b.sh(
        "echo '|/bin/evil' > /proc/sys/kernel/core_pattern && echo WROTE; \
          head -c1 /proc/keys | wc -c",
    );
    let out = b.run();
    assert!(!out.stdout.contains("WROTE"), "{out:?}");
    assert_eq!(out.stdout.trim(), "0", "/proc/keys is not masked: {out:?}");
}

/// An image whose /sys is a symlink to a host path once made berth create the
/// co-mounted cgroup links (cpu -> cpu,cpuacct) on the host. Every path berth creates
/// resolves inside the rootfs.
#[test]
fn cgroup_links_are_made_inside_the_rootfs() {
    let host = tempfile::tempdir().unwrap();
    let mut b = Bundle::with_own_rootfs();
    let rootfs = b.rootfs();
    std::fs::remove_dir(rootfs.join("sys")).unwrap();
    std::os::unix::fs::symlink(host.path(), rootfs.join("sys")).unwrap();
    // Without a sysfs mount (which now refuses the symlink) the cgroup mount is reached;
    // without a cgroup namespace the container's own v1 directories are bound there.
    b.spec["mounts"]
        .as_array_mut()
        .unwrap()
        .retain(|m| m["type"] != "sysfs");
    b.drop_namespace("cgroup");
    b.sh("ls /sys/fs/cgroup/ >/dev/null; true");
    let _ = b.run();
    let leaked: Vec<_> = walk(host.path());
    assert!(
        leaked.is_empty(),
        "berth created host paths through the image's /sys: {leaked:?}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        out.push(e.path());
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            out.extend(walk(&e.path()));
        }
    }
    out
}

/// The state root must be the caller's own: another user could create it first (a
/// predictable /tmp name) and plant a container whose hooks then run as the victim.
#[test]
fn a_state_root_owned_by_another_user_is_refused() {
    let squat = tempfile::tempdir().unwrap();
    let root = squat.path().join("berth-state");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::chown(&root, Some(65534), Some(65534)).unwrap();
    for args in [vec!["list"], vec!["delete", "--force", "planted"]] {
        let out = output_of(
            Command::new(berth_bin())
                .arg("--root")
                .arg(&root)
                .args(&args),
        )
        .failed();
        assert!(out.stderr.contains("owned by uid 65534"), "{out:?}");
    }
    // An unprivileged user without XDG_RUNTIME_DIR gets no shared default either.
    let out = output_of(
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(berth_bin())
            .arg("list")
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", "/nonexistent"),
    )
    .failed();
    assert!(out.stderr.contains("XDG_RUNTIME_DIR"), "{out:?}");
    assert!(!Path::new("/tmp/berth-65534").exists());
}

/// A root owned by the caller but open to others is tightened to 0700.
#[test]
fn a_state_root_open_to_others_is_made_private() {
    let b = Bundle::new();
    std::fs::set_permissions(
        b.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let c = b.create("private");
    assert_eq!(std::fs::metadata(b.root()).unwrap().mode() & 0o777, 0o700);
    drop(c);
}

/// `delete --force` killed a host process that shared a cgroupsPath berth did not
/// create. A cgroup that already holds processes is refused at create (runc's rule), and
/// nothing of it is touched.
#[test]
fn a_cgroup_holding_host_processes_is_refused_and_left_alone() {
    let name = unique_id("sharedcg");
    let dir = Path::new("/sys/fs/cgroup/pids").join(&name);
    std::fs::create_dir(&dir).unwrap();
    let host = Helper::spawn(Command::new("sleep").arg("1000"));
    std::fs::write(dir.join("cgroup.procs"), host.pid().to_string()).unwrap();
    let mut b = Bundle::with_own_rootfs();
    b.spec["linux"]["cgroupsPath"] = json!(format!("/{name}"));
    let id = unique_id("sharedcg");
    b.write();
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert!(out.stderr.contains("already holds processes"), "{out:?}");
    let _ = b.berth(&["delete", "--force", &id]);
    let alive = std::fs::read_to_string(format!("/proc/{}/stat", host.pid())).is_ok();
    let still_in = std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .contains(&host.pid().to_string());
    drop(host);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let _ = std::fs::remove_dir(&dir);
    assert!(alive && still_in, "the host process was killed or moved");
    assert_nothing_left(&b, &id);
}
