//! runc's security advisories replayed as attacks; each test fails if the attack works.

use std::fs::OpenOptions;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde_json::json;

use crate::common::*;

fn hash_file(path: &Path) -> String {
    let out = output_of(std::process::Command::new("sha256sum").arg(path)).ok();
    out.stdout.split_whitespace().next().unwrap().to_owned()
}

/// CVE-2019-5736: the container's init must not be the host berth binary, so a process
/// in the container cannot open it for writing through /proc/<pid>/exe.
#[test]
fn cve_2019_5736_init_is_not_the_host_binary() {
    let before = hash_file(Path::new(berth_bin()));
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("cve5736");
    let exe = format!("/proc/{}/exe", c.pid());
    // berth runs init from a sealed memfd copy or from a detached read-only mount of
    // itself: either way not the host file.
    let host = std::fs::metadata(berth_bin()).unwrap();
    let init = std::fs::metadata(&exe).unwrap();
    assert_ne!(
        (init.dev(), init.ino()),
        (host.dev(), host.ino()),
        "init of a created container runs the host binary ({:?})",
        std::fs::read_link(&exe)
    );
    let err = OpenOptions::new()
        .write(true)
        .open(&exe)
        .expect_err("opened the init's executable for writing");
    assert!(
        matches!(
            err.raw_os_error(),
            Some(libc::ETXTBSY | libc::EPERM | libc::EACCES | libc::EROFS)
        ),
        "unexpected error: {err}"
    );
    // Writing to the memfd copy through an O_RDWR|O_APPEND open is refused too: seals.
    let rw = OpenOptions::new().read(true).append(true).open(&exe);
    if let Ok(mut f) = rw {
        use std::io::Write;
        assert!(f.write_all(b"#!").is_err(), "memfd copy is writable");
    }
    drop(c);

    // A container whose entrypoint is /proc/self/exe gets at most the copy: with the
    // detached mount the path does not resolve inside the container at all.
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["/proc/self/exe", "--version"]);
    let out = b.run();
    if out.code == 0 {
        assert!(
            out.stdout.starts_with("berth"),
            "ran the berth copy: {out:?}"
        );
    } else {
        assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
        assert!(out.stderr.contains("/proc/self/exe"), "{out:?}");
    }
    assert_eq!(
        hash_file(Path::new(berth_bin())),
        before,
        "host berth modified"
    );
}

/// CVE-2024-21626: a cwd through a leaked fd (/proc/self/fd/N) must not leave the
/// container, and no runtime fd may reach the user process.
#[test]
fn cve_2024_21626_cwd_through_leaked_fds() {
    for n in 3..=9 {
        let mut b = Bundle::new();
        b.spec["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        // If the cwd were outside the root, walking up would reach the host's /, which
        // has a /etc/os-release the busybox rootfs does not.
        b.sh("cd ../../../../../../../../..; [ -e etc/os-release ] && echo ESCAPED; pwd");
        let out = b.run();
        assert!(
            !out.stdout.contains("ESCAPED"),
            "cwd fd {n} escaped: {out:?}"
        );
        if out.code != 0 {
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "fd {n}: {out:?}");
        }
    }
    let mut b = Bundle::new();
    b.sh("for f in /proc/self/fd/*; do echo \"${f##*/}\"; done");
    let out = b.run().ok();
    let fds: Vec<&str> = out.stdout.lines().collect();
    // The glob's own directory fd takes the lowest free number: 3 when nothing leaked.
    assert_eq!(
        fds,
        ["0", "1", "2", "3"],
        "fds beyond 0-2 and the glob's dir fd"
    );
}

/// CVE-2021-30465 (symlink exchange): destinations through symlinks to "/" or
/// "../../.." resolve inside the rootfs.
#[test]
fn cve_2021_30465_symlinked_destinations_land_inside() {
    let mut b = Bundle::with_own_rootfs();
    std::os::unix::fs::symlink("/", b.rootfs().join("toroot")).unwrap();
    std::os::unix::fs::symlink("../../../../../../..", b.rootfs().join("up")).unwrap();
    b.push(
        "/mounts",
        json!({"destination": "/toroot/home", "type": "tmpfs", "source": "e2e-cve-a"}),
    );
    b.push(
        "/mounts",
        json!({"destination": "/up/root", "type": "tmpfs", "source": "e2e-cve-b"}),
    );
    b.sh("cat /proc/self/mountinfo");
    let out = b.run().ok();
    let at = |mnt: &str| {
        mountinfo_line(&out.stdout, mnt)
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        at("/home").contains(" - tmpfs e2e-cve-a "),
        "{}",
        out.stdout
    );
    assert!(
        at("/root").contains(" - tmpfs e2e-cve-b "),
        "{}",
        out.stdout
    );
    let host = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!host.contains("e2e-cve-"), "a mount reached the host");
}

/// CVE-2019-16884: a fake /proc (a bind of a plain directory) must not receive the
/// runtime's writes (sysctls, oom_score_adj) in place of procfs.
#[test]
fn cve_2019_16884_fake_proc_gets_no_runtime_writes() {
    let fake = tempfile::tempdir().unwrap();
    let sysdir = fake.path().join("sys/net/ipv4");
    std::fs::create_dir_all(&sysdir).unwrap();
    std::fs::write(sysdir.join("ip_forward"), "fake\n").unwrap();
    std::fs::create_dir_all(fake.path().join("self")).unwrap();
    std::fs::write(fake.path().join("self/oom_score_adj"), "fake\n").unwrap();
    let mut b = Bundle::new();
    let mounts = b.spec["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["destination"] != "/proc");
    mounts.push(
        json!({"destination": "/proc", "type": "bind", "source": fake.path(),
                       "options": ["rbind"]}),
    );
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    b.spec["process"]["oomScoreAdj"] = json!(100);
    b.spec["linux"]["maskedPaths"] = json!([]);
    b.spec["linux"]["readonlyPaths"] = json!([]);
    let out = b.run();
    assert_eq!(
        std::fs::read_to_string(sysdir.join("ip_forward")).unwrap(),
        "fake\n",
        "sysctl written to a fake /proc: {out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(fake.path().join("self/oom_score_adj")).unwrap(),
        "fake\n",
        "oom_score_adj written to a fake /proc: {out:?}"
    );
    assert_ne!(out.code, 0, "berth accepted a non-procfs /proc: {out:?}");
    assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
}

/// CVE-2025-31133: with /dev from the rootfs (not a tmpfs) and /dev/null a symlink,
/// masking must not bind the symlink's target over a masked path.
#[test]
fn cve_2025_31133_dev_null_symlink_is_not_used_for_masking() {
    let secret_dir = tempfile::tempdir().unwrap();
    let secret = secret_dir.path().join("secret");
    std::fs::write(&secret, "HOST-SECRET\n").unwrap();
    for target in [secret.to_str().unwrap(), "/proc/sys/kernel/core_pattern"] {
        let mut b = Bundle::with_own_rootfs();
        b.spec["mounts"]
            .as_array_mut()
            .unwrap()
            .retain(|m| !m["destination"].as_str().unwrap().starts_with("/dev"));
        std::os::unix::fs::symlink(target, b.rootfs().join("dev/null")).unwrap();
        // /proc/kcore does not exist on this kernel; /proc/keys is masked the same way.
        b.sh("cat /proc/keys; echo; stat -c '%F %t:%T' /proc/keys");
        let out = b.run();
        let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
        assert!(
            !out.stdout.contains("HOST-SECRET") && !out.stdout.contains(core_pattern.trim()),
            "masked path shows {target}: {out:?}"
        );
        if out.code == 0 {
            assert!(
                out.stdout.contains("character special file 1:3"),
                "masked /proc/keys is not /dev/null: {out:?}"
            );
        } else {
            assert_eq!(out.stderr.trim_end().lines().count(), 1, "{out:?}");
        }
        assert_eq!(std::fs::read_to_string(&secret).unwrap(), "HOST-SECRET\n");
    }
}

/// CVE-2019-5736 from inside: a process exec'd into a created container sees berth's
/// init as its PID 1 and tries to overwrite it through /proc/1/exe.
#[test]
fn cve_2019_5736_exec_cannot_overwrite_init_from_inside() {
    let before = hash_file(Path::new(berth_bin()));
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("cve5736in");
    let out = c
        .berth(&[
            "exec",
            // The strongest attacker: ptrace access and DAC override pass the kernel's
            // own checks, so only the read-only/sealed executable stands in the way.
            "--cap",
            "CAP_SYS_PTRACE",
            "--cap",
            "CAP_DAC_OVERRIDE",
            &c.id,
            "sh",
            "-c",
            "cat /proc/1/comm; echo pwned >> /proc/1/exe && echo WROTE; \
             (exec 3<>/proc/1/exe) && echo OPENED; true",
        ])
        .ok();
    assert!(!out.stdout.contains("WROTE"), "{out:?}");
    assert!(!out.stdout.contains("OPENED"), "{out:?}");
    assert!(
        [
            "Read-only file system",
            "Text file busy",
            "Operation not permitted"
        ]
        .iter()
        .any(|e| out.stderr.contains(e)),
        "refused by the executable itself, not by a permission check: {out:?}"
    );
    assert_eq!(
        hash_file(Path::new(berth_bin())),
        before,
        "host berth modified"
    );
    // The init is intact: it still starts the container.
    c.start().ok();
    assert_eq!(c.status(), "running");
}

/// CVE-2024-21626 family, before `start`: the waiting init must hold no directory fd of
/// the host (a host /proc, a caller's inherited fd), because a process exec'd into the
/// created container with CAP_SYS_PTRACE can open them through /proc/1/fd. runc's
/// waiting init holds only stdio, its fifo and pipes.
#[test]

fn created_init_holds_no_host_directory_fds() {
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;

    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("e2e-host-marker"), "host\n").unwrap();
    let dir = std::fs::File::open(host.path()).unwrap();
    let raw = dir.as_raw_fd();
    let mut b = Bundle::new();
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    b.write();
    let id = unique_id("initfds");
    let c = b.guard(&id);
    let mut cmd = b.cmd(&["create", "--bundle", b.path().to_str().unwrap(), &id]);
    // SAFETY: runs in the forked child before exec; dup2 is async-signal-safe. The copy
    // at fd 50 has no FD_CLOEXEC, like an fd a careless caller leaves open.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 50) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    output_of(&mut cmd).ok();
    let pid = c.pid();
    let dirs: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| std::fs::metadata(e.path()).is_ok_and(|m| m.is_dir()))
        .map(|e| {
            format!(
                "{} -> {}",
                e.file_name().to_string_lossy(),
                std::fs::read_link(e.path()).unwrap_or_default().display()
            )
        })
        .collect();
    // From inside, with the capability that passes the kernel's ptrace check.
    let probe = format!(
        "for f in /proc/1/fd/*; do [ -e $f/e2e-host-marker ] && echo CALLER-FD $f; \
         [ -d $f/{} ] && echo HOST-PROC $f; done; true",
        std::process::id()
    );
    let out = c
        .berth(&["exec", "--cap", "CAP_SYS_PTRACE", &id, "sh", "-c", &probe])
        .ok();
    assert_eq!(
        out.stdout, "",
        "host reachable through the waiting init's fds"
    );
    assert!(
        dirs.is_empty(),
        "waiting init holds directory fds: {dirs:?}"
    );
}
