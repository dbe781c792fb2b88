//! The process: args, env, cwd, user, rlimits, no_new_privs, capabilities, oom score,
//! sysctls, terminal over --console-socket, --preserve-fds, seccomp, hooks.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use serde_json::{json, Value};

use crate::common::*;

/// The value of `field:` in /proc/self/status lines.
fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} missing in {status}"))
        .trim()
}

fn run_status(b: &mut Bundle) -> String {
    b.sh("cat /proc/self/status");
    b.run().ok().stdout
}

#[test]
fn args_env_and_cwd() {
    let mut b = Bundle::new();
    b.spec["process"]["env"] = json!(["PATH=/bin", "GREETING=hello world", "EMPTY="]);
    b.spec["process"]["cwd"] = json!("/var/tmp");
    b.spec["process"]["args"] = json!([
        "sh",
        "-c",
        "pwd; echo \"$GREETING\"; env | sort; echo \"$0|$1\"",
        "zero",
        "one two"
    ]);
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "/var/tmp");
    assert_eq!(lines[1], "hello world");
    assert!(lines.contains(&"EMPTY="), "{lines:?}");
    assert!(lines.contains(&"PATH=/bin"));
    assert!(
        !lines.iter().any(|l| l.starts_with("CARGO")),
        "host env leaked: {lines:?}"
    );
    assert_eq!(*lines.last().unwrap(), "zero|one two");
}

#[test]
fn missing_cwd_is_created() {
    let mut b = Bundle::with_own_rootfs();
    b.spec["process"]["cwd"] = json!("/work/here");
    b.sh("pwd");
    assert_eq!(b.run().ok().stdout, "/work/here\n");
}

#[test]
fn user_ids_groups_and_umask() {
    let mut b = Bundle::new();
    b.spec["process"]["user"] =
        json!({"uid": 1000, "gid": 1000, "additionalGids": [5, 100], "umask": 0o027});
    b.sh("id -u; id -g; id -G; umask; grep -E '^(Uid|Gid|Groups):' /proc/self/status");
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1000");
    assert_eq!(lines[1], "1000");
    let mut groups: Vec<&str> = lines[2].split_whitespace().collect();
    groups.sort();
    assert_eq!(groups, ["100", "1000", "5"]);
    assert_eq!(lines[3], "0027");
    assert_eq!(
        lines[4].split_whitespace().collect::<Vec<_>>(),
        ["Uid:", "1000", "1000", "1000", "1000"]
    );
    assert_eq!(
        lines[6].split_whitespace().collect::<Vec<_>>(),
        ["Groups:", "5", "100"],
        "only the additional gids are supplementary"
    );
}

#[test]
fn non_root_user_has_no_capabilities() {
    let mut b = Bundle::new();
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let st = run_status(&mut b);
    assert_eq!(status_field(&st, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&st, "CapPrm"), "0000000000000000");
    assert_eq!(status_field(&st, "CapBnd"), "0000000020000420");
}

#[test]
fn rlimits_are_applied() {
    let mut b = Bundle::new();
    b.spec["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 321, "hard": 654},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000}
    ]);
    b.sh("ulimit -n; ulimit -Hn; ulimit -c; grep -E 'open files|processes' /proc/self/limits");
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..3], ["321", "654", "0"], "{out:?}");
    let procs: Vec<&str> = lines
        .iter()
        .find(|l| l.starts_with("Max processes"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(procs[2..4], ["1000", "2000"]);
}

#[test]
fn unknown_rlimit_is_refused() {
    let mut b = Bundle::new();
    b.spec["process"]["rlimits"] = json!([{"type": "RLIMIT_BOGUS", "soft": 1, "hard": 1}]);
    let out = b.run().failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("RLIMIT_BOGUS"), "{out:?}");
}

#[test]
fn no_new_privileges_flag() {
    let mut b = Bundle::new();
    b.spec["process"]["noNewPrivileges"] = json!(true);
    assert_eq!(status_field(&run_status(&mut b), "NoNewPrivs"), "1");
    b.spec["process"]["noNewPrivileges"] = json!(false);
    assert_eq!(status_field(&run_status(&mut b), "NoNewPrivs"), "0");
}

#[test]
fn capability_sets_match_the_spec() {
    let mut b = Bundle::new();
    let set = json!(["CAP_CHOWN", "CAP_NET_RAW", "CAP_SYS_ADMIN"]);
    b.spec["process"]["capabilities"] = json!({
        "bounding": set, "effective": set, "permitted": set, "inheritable": set,
        "ambient": ["CAP_NET_RAW"]
    });
    let st = run_status(&mut b);
    // CHOWN = bit 0, NET_RAW = bit 13, SYS_ADMIN = bit 21.
    assert_eq!(status_field(&st, "CapBnd"), "0000000000202001");
    assert_eq!(status_field(&st, "CapEff"), "0000000000202001");
    assert_eq!(status_field(&st, "CapPrm"), "0000000000202001");
    assert_eq!(status_field(&st, "CapInh"), "0000000000202001");
    assert_eq!(status_field(&st, "CapAmb"), "0000000000002000");
}

#[test]
fn default_capabilities_are_runc_defaults() {
    let mut b = Bundle::new();
    let st = run_status(&mut b);
    // AUDIT_WRITE (29), KILL (5), NET_BIND_SERVICE (10).
    assert_eq!(status_field(&st, "CapEff"), "0000000020000420");
    assert_eq!(status_field(&st, "CapBnd"), "0000000020000420");
    assert_eq!(status_field(&st, "CapInh"), "0000000000000000");
    assert_eq!(status_field(&st, "CapAmb"), "0000000000000000");
}

#[test]
fn dropped_capability_is_enforced() {
    let mut b = Bundle::new();
    // No CAP_CHOWN: root cannot chown a file it owns to someone else.
    b.push(
        "/mounts",
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.sh("touch /run/f && chown 1000 /run/f && echo chowned");
    let out = b.run();
    assert!(!out.stdout.contains("chowned"), "{out:?}");
    assert!(out.stderr.contains("Operation not permitted"), "{out:?}");
}

#[test]
fn oom_score_adj_is_set() {
    let mut b = Bundle::new();
    b.spec["process"]["oomScoreAdj"] = json!(123);
    b.sh("cat /proc/self/oom_score_adj");
    assert_eq!(b.run().ok().stdout, "123\n");
}

#[test]
fn namespaced_sysctl_is_set_inside_only() {
    let host = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let mut b = Bundle::new();
    let want = if host.trim() == "1" { "0" } else { "1" };
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": want});
    b.sh("cat /proc/sys/net/ipv4/ip_forward");
    assert_eq!(b.run().ok().stdout.trim(), want);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host,
        "host sysctl unchanged"
    );
}

#[test]
fn host_wide_sysctl_is_refused_at_create() {
    let before = std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap();
    let mut b = Bundle::with_own_rootfs();
    b.spec["linux"]["sysctl"] = json!({"vm.swappiness": "17"});
    b.write();
    let id = unique_id("sysctl");
    let _g = b.guard(&id);
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("vm.swappiness"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/vm/swappiness").unwrap(),
        before
    );
    assert_nothing_left(&b, &id);
}

#[test]
fn net_sysctl_without_a_network_namespace_is_refused() {
    let mut b = Bundle::new();
    b.drop_namespace("network");
    b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    let out = b.run().failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("net.ipv4.ip_forward"), "{out:?}");
}

#[test]
fn terminal_over_console_socket() {
    let mut b = Bundle::new();
    b.spec["process"]["terminal"] = json!(true);
    b.sh("tty; [ -t 0 ] && [ -t 1 ] && echo interactive; stty size; echo done");
    b.spec["process"]["consoleSize"] = json!({"height": 33, "width": 111});
    b.write();
    let console = ConsoleSocket::new();
    let id = unique_id("tty");
    let c = b.guard(&id);
    b.berth(&[
        "create",
        "--bundle",
        b.path().to_str().unwrap(),
        "--console-socket",
        console.path(),
        &id,
    ])
    .ok();
    let master = console.master();
    c.start().ok();
    // Reading the master ends with EIO once the container's side is closed.
    assert_eq!(read_pty(master), "/dev/pts/0\ninteractive\n33 111\ndone\n");
    c.wait_status("stopped");
}

#[test]
fn terminal_without_console_socket_is_refused() {
    let mut b = Bundle::with_own_rootfs();
    b.spec["process"]["terminal"] = json!(true);
    b.write();
    let id = unique_id("notty");
    let _g = b.guard(&id);
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("console"), "{out:?}");
    assert_nothing_left(&b, &id);
}

#[test]
fn preserve_fds_passes_only_the_listed_fds() {
    let dir = tempfile::tempdir().unwrap();
    let passed = File::create(dir.path().join("passed-fd")).unwrap();
    let leaked = File::create(dir.path().join("leaked-fd")).unwrap();
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/home", "type": "bind", "source": dir.path(), "options": ["rbind"]}),
    );
    b.sh("echo through-fd3 >&3; for f in /proc/self/fd/*; do echo \"$f\"; done");
    b.write();
    let id = unique_id("fds");
    let _g = b.guard(&id);
    let (p, l) = (passed.as_raw_fd(), leaked.as_raw_fd());
    let mut cmd = b.cmd(&[
        "run",
        "--preserve-fds",
        "1",
        "--bundle",
        b.path().to_str().unwrap(),
        &id,
    ]);
    // SAFETY: the closure runs in the forked child before exec and only calls fcntl,
    // dup2 and close, which are async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            // Copies above 100 first, so dup2 never gets the same fd twice; dup2 clears
            // FD_CLOEXEC: both fds reach berth, only fd 3 may go on.
            let (hp, hl) = (
                libc::fcntl(p, libc::F_DUPFD, 100),
                libc::fcntl(l, libc::F_DUPFD, 100),
            );
            if hp < 0 || hl < 0 || libc::dup2(hp, 3) < 0 || libc::dup2(hl, 4) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::close(hp);
            libc::close(hl);
            Ok(())
        });
    }
    let out = output_of(&mut cmd).ok();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("passed-fd")).unwrap(),
        "through-fd3\n"
    );
    let fds: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.trim_start_matches("/proc/self/fd/"))
        .collect();
    // 3 is the preserved fd, 4 the glob's own directory fd (the lowest free number):
    // a leaked fd 4 would push it to 5.
    assert_eq!(fds, ["0", "1", "2", "3", "4"], "unexpected fds");
    drop(leaked);
}

#[test]
fn default_seccomp_profile_blocks_unshare_and_mount() {
    let sys_admin = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    let script = "grep Seccomp: /proc/self/status; \
                  unshare -m true && echo unshared; \
                  mount -t tmpfs none /tmp && echo mounted; true";
    let mut b = Bundle::new();
    b.spec["process"]["capabilities"] =
        json!({"bounding": sys_admin, "effective": sys_admin, "permitted": sys_admin});
    b.sh(script);
    let out = b.run().ok();
    assert!(out.stdout.contains("Seccomp:\t2"), "{out:?}");
    assert!(!out.stdout.contains("unshared"), "unshare allowed: {out:?}");
    assert!(!out.stdout.contains("mounted"), "mount allowed: {out:?}");
    // Same capabilities without the profile: now both work, so seccomp was the barrier.
    b.spec["linux"].as_object_mut().unwrap().remove("seccomp");
    let out = b.run().ok();
    assert!(out.stdout.contains("Seccomp:\t0"), "{out:?}");
    assert!(out.stdout.contains("unshared"), "{out:?}");
    assert!(out.stdout.contains("mounted"), "{out:?}");
}

/// A hook running `sh -c SCRIPT` with the state JSON on stdin.
fn hook(script: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script]})
}

#[test]
fn hooks_run_in_order_with_the_state_on_stdin() {
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().to_str().unwrap().to_owned();
    let mut b = Bundle::with_own_rootfs();
    // The marker dir is bound at the same path inside, so a hook writes to it whether
    // it runs in the host's or the container's mount namespace.
    b.push(
        "/mounts",
        json!({"destination": m, "type": "bind", "source": m, "options": ["rbind"]}),
    );
    for kind in [
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        b.push(
            &format!("/hooks/{kind}"),
            hook(&format!("cat > {m}/{kind}.json; echo {kind} >> {m}/order")),
        );
    }
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("hooks");
    let order = || std::fs::read_to_string(marks.path().join("order")).unwrap_or_default();
    assert_eq!(order(), "createRuntime\ncreateContainer\n");
    c.start().ok();
    wait_until("startContainer and poststart hooks", || {
        order().lines().count() == 4
    });
    c.berth(&["kill", &c.id, "KILL"]).ok();
    c.wait_status("stopped");
    c.berth(&["delete", &c.id]).ok();
    let lines: Vec<String> = order().lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 5, "{lines:?}");
    assert_eq!(lines[4], "poststop");
    let state = |kind: &str| -> Value {
        let text = std::fs::read_to_string(marks.path().join(format!("{kind}.json")))
            .unwrap_or_else(|e| panic!("{kind} marker: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{kind} stdin not JSON: {e}"))
    };
    for (kind, status) in [
        ("createRuntime", "creating"),
        ("createContainer", "creating"),
        ("startContainer", "created"),
        ("poststart", "running"),
        ("poststop", "stopped"),
    ] {
        let st = state(kind);
        assert_eq!(st["id"], c.id.as_str(), "{kind}: {st}");
        assert_eq!(st["bundle"], b.path().to_str().unwrap(), "{kind}: {st}");
        assert_eq!(st["status"], status, "{kind}: {st}");
    }
    assert!(state("poststart")["pid"].as_i64().unwrap() > 0);
}

#[test]
fn failing_create_runtime_hook_fails_create_and_leaves_nothing() {
    let mut b = Bundle::with_own_rootfs();
    b.push("/hooks/createRuntime", hook("echo hook-broke >&2; exit 3"));
    b.write();
    let id = unique_id("badhook");
    let _g = b.guard(&id);
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("createRuntime"), "{out:?}");
    assert_nothing_left(&b, &id);
}

#[test]
fn home_comes_from_passwd_when_unset() {
    let mut b = Bundle::new();
    b.spec["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.sh("echo \"$HOME\"");
    assert_eq!(
        b.run().ok().stdout,
        "/home/user\n",
        "runc sets HOME from /etc/passwd"
    );
}

#[test]
fn custom_seccomp_profile_errno_and_kill() {
    let mut b = Bundle::new();
    b.push(
        "/mounts",
        json!({"destination": "/run", "type": "tmpfs", "source": "tmpfs"}),
    );
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["sethostname"], "action": "SCMP_ACT_KILL_PROCESS"}
        ]
    });
    b.sh(
        "touch /run/file && echo touched; mkdir /run/dir || echo mkdir-failed; \
          hostname other; echo status=$?",
    );
    let out = b.run().ok();
    assert_eq!(out.stdout, "touched\nmkdir-failed\nstatus=159\n", "{out:?}");
    assert!(
        out.stderr.contains("Permission denied"),
        "errnoRet 13: {out:?}"
    );
}

#[test]
fn custom_masked_and_readonly_paths() {
    let mut b = Bundle::with_own_rootfs();
    std::fs::write(b.rootfs().join("etc/secret"), "s3cret\n").unwrap();
    std::fs::create_dir(b.rootfs().join("opt")).unwrap();
    std::fs::write(b.rootfs().join("opt/data"), "d\n").unwrap();
    b.push("/linux/maskedPaths", json!("/etc/secret"));
    b.push("/linux/maskedPaths", json!("/opt"));
    b.push("/linux/readonlyPaths", json!("/root"));
    b.push("/linux/maskedPaths", json!("/does/not/exist"));
    b.sh(
        "wc -c < /etc/secret; ls -A /opt | wc -l; touch /root/x && echo wrote; \
          touch /tmp/ok && echo tmp-writable",
    );
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().map(str::trim).collect();
    assert_eq!(lines, ["0", "0", "tmp-writable"], "{out:?}");
    assert!(out.stderr.contains("Read-only file system"), "{out:?}");
    assert_eq!(
        std::fs::read_to_string(b.rootfs().join("etc/secret")).unwrap(),
        "s3cret\n",
        "masking does not touch the file"
    );
}

#[test]
fn hooks_get_only_their_own_env_and_args() {
    let marks = tempfile::tempdir().unwrap();
    let m = marks.path().to_str().unwrap().to_owned();
    let mut b = Bundle::new();
    b.push(
        "/hooks/createRuntime",
        json!({"path": "/bin/sh",
               "args": ["sh", "-c", format!("env > {m}/env; echo \"$0 $1\" > {m}/args"), "zero", "one"],
               "env": ["HOOK_VAR=hook value", "PATH=/usr/bin:/bin"]}),
    );
    let _c = b.create("hookenv");
    let env = std::fs::read_to_string(marks.path().join("env")).unwrap();
    assert!(env.lines().any(|l| l == "HOOK_VAR=hook value"), "{env}");
    assert!(
        !env.lines().any(|l| l.starts_with("CARGO")),
        "the caller's env leaked into the hook: {env}"
    );
    assert_eq!(
        std::fs::read_to_string(marks.path().join("args")).unwrap(),
        "zero one\n"
    );
}

#[test]
fn hook_timeout_fails_create_and_leaves_nothing() {
    let mut b = Bundle::with_own_rootfs();
    b.push(
        "/hooks/createRuntime",
        json!({"path": "/bin/sleep", "args": ["sleep", "30"], "timeout": 1}),
    );
    b.write();
    let id = unique_id("hooktimeout");
    let _g = b.guard(&id);
    let out = b
        .berth(&["create", "--bundle", b.path().to_str().unwrap(), &id])
        .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("createRuntime") && out.stderr.contains("timed out"),
        "{out:?}"
    );
    assert_nothing_left(&b, &id);
}

/// SCMP_ACT_NOTIFY: the listener fd and the container state reach the agent at
/// listenerPath (a host path, connected before pivot_root), as runc sends them.
#[test]
fn seccomp_notify_listener_reaches_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    // The agent looks at the listener fd and closes it at once: the container's
    // notifying syscalls then fail with ENOSYS instead of waiting for an answer.
    let agent = std::thread::spawn(move || {
        let (data, fd) = receive_fd_with_data(&listener);
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).unwrap();
        (data, link)
    });
    let mut b = Bundle::new();
    b.spec["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "listenerPath": sock,
        "listenerMetadata": "e2e-meta",
        "syscalls": [{"names": ["mkdirat", "mkdir"], "action": "SCMP_ACT_NOTIFY"}]
    });
    b.sh("mkdir /tmp/notified 2>/dev/null; echo mkdir=$?");
    let out = b.run();
    let (data, link) = agent.join().unwrap();
    let msg: Value = serde_json::from_slice(&data).expect("process state JSON");
    assert_eq!(msg["fds"], json!(["seccompFd"]), "{msg}");
    assert_eq!(msg["metadata"], "e2e-meta");
    assert!(msg["pid"].as_i64().unwrap() > 0);
    assert!(
        msg["state"]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{msg}"
    );
    assert!(link.to_string_lossy().contains("seccomp"), "{link:?}");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.contains("mkdir=1"), "{}", out.stdout);
}

/// linux.personality LINUX32: the process sees a 32-bit execution domain (`uname -m`).
#[test]
fn personality_linux32() {
    let mut b = Bundle::new();
    b.spec["linux"]["personality"] = json!({"domain": "LINUX32"});
    b.sh("uname -m");
    let out = b.run().ok();
    assert_eq!(out.stdout.trim(), "i686", "{out:?}");
}

/// `linux.memoryPolicy` reaches the process: a static helper built here reads its policy
/// back with get_mempolicy(2) (busybox has no tool for it).
#[test]
fn memory_policy_is_applied() {
    let mut b = Bundle::with_own_rootfs();
    let src = b.path().join("getpol.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n\
         int main(void) { int mode; unsigned long mask[16] = {0};\n\
         if (syscall(SYS_get_mempolicy, &mode, mask, 1025, 0, 0)) { perror(\"get_mempolicy\"); return 1; }\n\
         printf(\"mode=%d mask=%lx\\n\", mode, mask[0]); return 0; }\n",
    )
    .unwrap();
    let out = std::process::Command::new("gcc")
        .args(["-static", "-O", "-o"])
        .arg(b.rootfs().join("getpol"))
        .arg(&src)
        .output()
        .expect("gcc (scripts/setup.sh installs it)");
    assert!(out.status.success(), "{out:?}");
    b.spec["process"]["args"] = json!(["/getpol"]);
    // Docker's default seccomp profile denies the mempolicy calls without CAP_SYS_NICE.
    b.spec["linux"].as_object_mut().unwrap().remove("seccomp");
    assert_eq!(
        b.run().ok().stdout,
        "mode=0 mask=0\n",
        "no policy: MPOL_DEFAULT"
    );
    b.spec["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    assert_eq!(
        b.run().ok().stdout,
        "mode=3 mask=1\n",
        "MPOL_INTERLEAVE on node 0"
    );
}
