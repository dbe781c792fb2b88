//! End-to-end tests of the docker-style commands (`berth run IMAGE`, `ps`, `logs`, `stop`,
//! `rm`, `exec`, `inspect`) through the real `berth` binary, as root: real overlay
//! rootfs, namespaces, cgroups and seccomp. Run with `cargo test -p berth --test engine`.
//!
//! Each test gets its own data root and runtime root in a temp dir, holding the busybox
//! image from scripts/build-test-image.sh (built once per test process under the cargo
//! target tmpdir); a guard `rm -f`s every container it made, checks that no mount is left
//! under the temp dir, and removes it, even when the test fails.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod hostile;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use serde_json::Value;
use tempfile::TempDir;

const IMAGE: &str = "berth-test:latest";

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

static LAYOUT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_layout() {
    if let Some(dir) = LAYOUT.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The OCI layout of the busybox test image, built once per test process and removed
/// when the process exits.
fn layout() -> &'static Path {
    LAYOUT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("engine-image-{}", std::process::id()));
        let out = Command::new("sh")
            .arg(workspace().join("scripts/build-test-image.sh"))
            .arg(&dir)
            .output()
            .expect("run build-test-image.sh");
        assert!(
            out.status.success(),
            "build-test-image.sh: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // SAFETY: registers a plain extern "C" fn without captured state; it runs once at
        // exit and only removes this process's own layout directory.
        unsafe { libc::atexit(remove_layout) };
        dir
    })
}

/// A private data root + runtime root with the test image imported.
struct Env {
    dir: TempDir,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        use std::os::unix::process::ExitStatusExt;
        Run {
            code: o
                .status
                .code()
                .unwrap_or_else(|| 128 + o.status.signal().unwrap_or(0)),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

impl Env {
    fn new() -> Env {
        let env = Env {
            dir: tempfile::Builder::new()
                .prefix("berth-engine-")
                .tempdir()
                .unwrap(),
        };
        let r = env.berth(&["import", layout().to_str().unwrap(), IMAGE]);
        assert_eq!(r.code, 0, "import: {}", r.stderr);
        env
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(args)
            .env("BERTH_DATA_ROOT", self.data())
            .env("BERTH_ROOT", self.root())
            // These tests run in the machine's network namespace: no bridge, no CNI
            // config of the machine's (the network tests, in network.rs, make their own
            // namespace for that).
            .env("BERTH_NETWORK", "none")
            .env("BERTH_CNI_CONFIG_DIR", self.dir.path().join("cni"))
            .stdin(Stdio::null());
        c
    }

    fn berth(&self, args: &[&str]) -> Run {
        self.command(args).output().expect("spawn berth").into()
    }

    /// Run and require success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.berth(args);
        assert_eq!(r.code, 0, "berth {args:?}: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    fn inspect(&self, name: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", name])).unwrap();
        v[0].clone()
    }

    fn container_dirs(&self) -> Vec<String> {
        match std::fs::read_dir(self.data().join("containers")) {
            Ok(d) => d
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| m.starts_with(&prefix)))
        .map(String::from)
        .collect()
}

impl Drop for Env {
    fn drop(&mut self) {
        let ids = self.berth(&["ps", "-aq", "--no-trunc"]).stdout;
        for id in ids.split_whitespace() {
            let _ = self.berth(&["rm", "-f", id]);
        }
        let left = mounts_under(self.dir.path());
        for m in &left {
            let target = m.split(' ').nth(4).unwrap();
            let _ = nix::mount::umount2(target, nix::mount::MntFlags::MNT_DETACH);
        }
        if !std::thread::panicking() {
            assert!(left.is_empty(), "mounts left behind: {left:?}");
        }
    }
}

#[test]
fn run_rm_prints_and_leaves_nothing() {
    let env = Env::new();
    let r = env.berth(&["run", "--rm", IMAGE, "echo", "hi"]);
    assert_eq!((r.code, r.stdout.as_str()), (0, "hi\n"), "{}", r.stderr);
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
    assert_eq!(env.ok(&["ps", "-aq"]), "");
    assert!(mounts_under(env.dir.path()).is_empty());
    assert!(std::fs::read_dir(env.root()).map_or(true, |mut d| d.next().is_none()));
}

#[test]
fn exit_codes_are_the_container_s() {
    let env = Env::new();
    assert_eq!(
        env.berth(&["run", "--rm", IMAGE, "sh", "-c", "exit 3"])
            .code,
        3
    );
    let r = env.berth(&["run", "--rm", IMAGE, "/no/such/program"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("/no/such/program"), "{}", r.stderr);
    assert!(
        env.container_dirs().is_empty(),
        "a failed start leaves nothing"
    );
    // Without --rm the exit is recorded for ps -a and inspect.
    assert_eq!(
        env.berth(&["run", "--name", "three", IMAGE, "sh", "-c", "exit 3"])
            .code,
        3
    );
    let ps = env.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("Exited (3)") && l.ends_with("three")),
        "{ps}"
    );
    assert_eq!(
        env.ok(&["ps"]).lines().count(),
        1,
        "only the header: nothing runs"
    );
    let st = &env.inspect("three")["State"];
    assert_eq!(
        (st["Status"].as_str(), st["ExitCode"].as_i64()),
        (Some("exited"), Some(3))
    );
}

#[test]
fn process_flags_follow_docker() {
    let env = Env::new();
    let ef = env.dir.path().join("env");
    std::fs::write(&ef, "# comment\nFROM_FILE=f\nA=overridden-by-e\n").unwrap();
    let out = env.ok(&[
        "run",
        "--rm",
        "--env-file",
        ef.to_str().unwrap(),
        "-e",
        "A=1",
        "-w",
        "/opt",
        "-u",
        "www",
        "--hostname",
        "box",
        IMAGE,
        "sh",
        "-c",
        "echo $A $FROM_FILE $(pwd) $(id -u):$(id -g) $(hostname) $HOME",
    ]);
    assert_eq!(out, "1 f /opt 33:33 box /var/www\n");
    let out = env.ok(&["run", "--rm", "--entrypoint", "/bin/echo", IMAGE, "x", "y"]);
    assert_eq!(out, "x y\n");
    // No -i: stdin is /dev/null even when the caller's is a pipe.
    let mut c = env.command(&["run", "--rm", IMAGE, "cat"]);
    c.stdin(Stdio::piped());
    let child = c.stdout(Stdio::piped()).spawn().unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!((out.status.code(), out.stdout.len()), (Some(0), 0));
}

#[test]
fn interactive_passes_stdin() {
    let env = Env::new();
    let mut c = env.command(&["run", "--rm", "-i", IMAGE, "cat"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"through\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "through\n");
}

#[test]
fn read_only_caps_and_seccomp() {
    let env = Env::new();
    let r = env.berth(&["run", "--rm", "--read-only", IMAGE, "touch", "/x"]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Read-only file system"), "{}", r.stderr);
    assert_eq!(env.berth(&["run", "--rm", IMAGE, "touch", "/x"]).code, 0);

    let chown = ["run", "--rm", IMAGE, "chown", "65534", "/tmp"];
    assert_eq!(env.berth(&chown).code, 0);
    let r = env.berth(&[
        "run",
        "--rm",
        "--cap-drop",
        "chown",
        IMAGE,
        "chown",
        "65534",
        "/tmp",
    ]);
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("Operation not permitted"), "{}", r.stderr);

    // Docker's 14 capabilities (0xa80425fb), minus CAP_CHOWN (bit 0), plus CAP_SYS_TIME.
    let caps = |extra: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(extra);
        a.extend([IMAGE, "grep", "CapBnd", "/proc/self/status"]);
        env.ok(&a)
    };
    assert!(caps(&[]).contains("00000000a80425fb"), "{}", caps(&[]));
    let c = caps(&["--cap-drop", "CHOWN", "--cap-add", "sys_time"]);
    assert!(
        c.contains(&format!("{:016x}", (0xa80425fbu64 & !1) | 1 << 25)),
        "{c}"
    );

    let seccomp = |extra: &[&str]| {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(extra);
        a.extend([IMAGE, "grep", "Seccomp:", "/proc/self/status"]);
        env.ok(&a)
    };
    assert!(seccomp(&[]).contains('2'), "filter mode by default");
    assert!(seccomp(&["--security-opt", "seccomp=unconfined"]).contains('0'));
}

#[test]
fn detached_logs_stop_rm() {
    let env = Env::new();
    let script = "echo started; echo to-stderr >&2; trap 'echo got TERM; exit 7' TERM; \
                  while true; do sleep 0.05; done";
    let id = env.ok(&["run", "-d", "--name", "web", IMAGE, "sh", "-c", script]);
    let id = id.trim();
    assert!(
        id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    // The log fills as the container runs: wait for its first line.
    let mut logs = String::new();
    for _ in 0..500 {
        logs = env.ok(&["logs", "web"]);
        if logs.contains("to-stderr") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(logs, "started\nto-stderr\n");
    let ps = env.ok(&["ps"]);
    assert!(
        ps.lines()
            .any(|l| l.starts_with(&id[..12]) && l.contains("Up ") && l.ends_with("web")),
        "{ps}"
    );
    assert_eq!(
        env.inspect(&id[..8])["State"]["Running"],
        true,
        "an ID prefix works"
    );
    let r = env.berth(&["rm", "web"]);
    assert!(r.code != 0 && r.stderr.contains("rm -f"), "{}", r.stderr);

    assert_eq!(env.ok(&["stop", "web"]), "web\n");
    assert_eq!(env.ok(&["logs", "web"]), "started\nto-stderr\ngot TERM\n");
    let ps = env.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("Exited (7)") && l.ends_with("web")),
        "{ps}"
    );
    assert!(
        std::fs::read_dir(env.root()).unwrap().next().is_none(),
        "runtime state released"
    );

    assert_eq!(env.ok(&["rm", "web"]), "web\n");
    assert!(env.container_dirs().is_empty());
    assert!(mounts_under(env.dir.path()).is_empty());
    let r = env.berth(&["logs", "web"]);
    assert_eq!(r.stderr, "berth: no such container: web\n");
}

#[test]
fn stop_escalates_to_sigkill_and_rm_force() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "stubborn",
        IMAGE,
        "sh",
        "-c",
        "trap '' TERM; echo ready; while true; do sleep 0.05; done",
    ]);
    env.ok(&["run", "-d", "--name", "victim", IMAGE, "sleep", "1000"]);
    env.ok(&["stop", "-t", "1", "stubborn"]);
    let ps = env.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("Exited (137)") && l.ends_with("stubborn")),
        "{ps}"
    );
    env.ok(&["rm", "-f", "victim", "stubborn"]);
    assert!(env.container_dirs().is_empty());
    // --rm with -d: the monitor removes the container when it exits.
    env.ok(&["run", "-d", "--rm", "--name", "brief", IMAGE, "true"]);
    for _ in 0..1000 {
        if env.container_dirs().is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(env.container_dirs().is_empty());
}

/// The container's cgroup directory for `controller`, from its init's /proc/PID/cgroup.
fn cgroup_dir(pid: i64, controller: &str) -> PathBuf {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let path = text
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            ctrls
                .split(',')
                .any(|c| c == controller)
                .then(|| path.to_string())
        })
        .unwrap_or_else(|| panic!("no {controller} cgroup in {text}"));
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join(path.trim_start_matches('/'))
}

#[test]
fn resources_reach_the_cgroup() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "limited",
        "--memory",
        "64m",
        "--pids-limit",
        "20",
        "--cpus",
        "0.5",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let pid = env.inspect("limited")["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0);
    let read = |ctrl: &str, file: &str| {
        std::fs::read_to_string(cgroup_dir(pid, ctrl).join(file))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(
        read("memory", "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(read("pids", "pids.max"), "20");
    assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    let host = env.inspect("limited")["HostConfig"].clone();
    assert_eq!(
        (host["Memory"].as_i64(), host["NanoCpus"].as_i64()),
        (Some(64 << 20), Some(500_000_000))
    );
    let dir = cgroup_dir(pid, "memory");
    env.ok(&["rm", "-f", "limited"]);
    assert!(
        !dir.exists(),
        "{} removed with the container",
        dir.display()
    );
}

#[test]
fn bind_mounts_and_network_modes() {
    let env = Env::new();
    let vol = env.dir.path().join("vol");
    std::fs::create_dir(&vol).unwrap();
    std::fs::write(vol.join("in"), "from host\n").unwrap();
    let rw = format!("{}:/data", vol.display());
    let out = env.ok(&[
        "run",
        "--rm",
        "-v",
        &rw,
        IMAGE,
        "sh",
        "-c",
        "cat /data/in; echo back > /data/out",
    ]);
    assert_eq!(out, "from host\n");
    assert_eq!(std::fs::read_to_string(vol.join("out")).unwrap(), "back\n");
    let ro = format!("{}:/data:ro", vol.display());
    let r = env.berth(&["run", "--rm", "-v", &ro, IMAGE, "touch", "/data/x"]);
    assert!(
        r.code != 0 && r.stderr.contains("Read-only"),
        "{}",
        r.stderr
    );

    assert_eq!(
        env.ok(&["run", "--rm", IMAGE, "ls", "/sys/class/net"]),
        "lo\n"
    );
    // Loopback is up, as Docker's `none` network has it.
    let lo = env.ok(&["run", "--rm", IMAGE, "ip", "-o", "link", "show", "lo"]);
    assert!(lo.contains(",UP"), "{lo}");
    let host_ns = std::fs::read_link("/proc/self/ns/net").unwrap();
    let inside = env.ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        IMAGE,
        "readlink",
        "/proc/self/ns/net",
    ]);
    assert_eq!(inside.trim(), host_ns.to_str().unwrap());
    let inside = env.ok(&["run", "--rm", IMAGE, "readlink", "/proc/self/ns/net"]);
    assert_ne!(inside.trim(), host_ns.to_str().unwrap());
}

#[test]
fn exec_and_inspect() {
    let env = Env::new();
    let bind = format!("{}:/host:ro", env.dir.path().display());
    let id = env.ok(&[
        "run", "-d", "--name", "box", "-e", "K=v", "-v", &bind, IMAGE, "sleep", "1000",
    ]);
    let out = env.ok(&[
        "container",
        "exec",
        "-e",
        "X=1",
        "-w",
        "/opt",
        "-u",
        "www",
        "box",
        "sh",
        "-c",
        "echo $K $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out, "v 1 /opt 33\n");
    assert_eq!(
        env.berth(&["container", "exec", "box", "sh", "-c", "exit 5"])
            .code,
        5
    );
    let out = env.ok(&["container", "exec", "-t", "box", "tty"]);
    assert!(
        out.starts_with("/dev/pts/") && out.ends_with("\r\n"),
        "{out:?}"
    );
    // The runtime ID is the engine ID: runc's `exec` works on it too.
    assert_eq!(
        env.ok(&["exec", id.trim(), "echo", "runc-exec"]),
        "runc-exec\n"
    );
    let v = env.inspect("box");
    assert_eq!(v["Id"], id.trim());
    assert_eq!(v["Name"], "/box");
    assert_eq!(v["Path"], "sleep");
    assert_eq!(v["Args"], serde_json::json!(["1000"]));
    assert_eq!(v["State"]["Status"], "running");
    assert!(v["Config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e == "K=v"));
    assert_eq!(v["HostConfig"]["Binds"][0], bind);
    assert_eq!(v["Mounts"][0]["destination"], "/host");
    assert_eq!(v["Config"]["Hostname"], &id[..12]);
    env.ok(&["stop", "-t", "0", "box"]);
    let r = env.berth(&["container", "exec", "box", "true"]);
    assert!(
        r.code != 0 && r.stderr.contains("not running"),
        "{}",
        r.stderr
    );
}

#[test]
fn bad_input_gives_one_line_errors() {
    let env = Env::new();
    env.ok(&["run", "--name", "taken", IMAGE, "true"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--name", "taken", IMAGE, "true"],
            "--name \"taken\": already used",
        ),
        (&["run", "--name", "a/b", IMAGE, "true"], "--name \"a/b\""),
        (
            &["run", "--memory", "12q", IMAGE, "true"],
            "--memory \"12q\"",
        ),
        (&["run", "--cpus", "-1", IMAGE, "true"], "--cpus"),
        (
            &["run", "--cap-add", "bogus", IMAGE, "true"],
            "--cap-add \"bogus\": unknown capability",
        ),
        (
            &["run", "-v", "relative:/x", IMAGE, "true"],
            "-v \"relative:/x\"",
        ),
        (
            &["run", "--network", "no-such-net", IMAGE, "true"],
            "no such network: no-such-net",
        ),
        (
            &["run", "--security-opt", "apparmor=x", IMAGE, "true"],
            "--security-opt",
        ),
        (&["run", "-u", "nosuchuser", IMAGE, "true"], "nosuchuser"),
        (&["run", "--rm", "no-such-image:1", "true"], "no-such-image"),
        (&["stop", "nothing-here"], "no such container: nothing-here"),
        (&["container", "exec", "taken", "true"], "not running"),
    ];
    for (args, want) in cases {
        let r = env.berth(args);
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.trim_end().lines().count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
    }
    let dirs = env.container_dirs();
    assert_eq!(dirs.len(), 1, "failed runs leave nothing: {dirs:?}");
}

/// `berth run` stays runc's `run` with --bundle, or with one ID and a bundle in the cwd.
#[test]
fn run_routes_between_runc_and_docker_styles() {
    let env = Env::new();
    let bundle = env.dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    let r: Run = Command::new("umoci")
        .args(["raw", "unpack", "--rootless", "--image"])
        .arg(format!("{}:latest", layout().display()))
        .arg(bundle.join("rootfs"))
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut spec = env.command(&["spec"]);
    assert!(spec.current_dir(&bundle).status().unwrap().success());
    let cfg_path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&cfg_path).unwrap()).unwrap();
    cfg["process"]["terminal"] = false.into();
    cfg["process"]["args"] = serde_json::json!(["echo", "runc-style"]);
    std::fs::write(&cfg_path, serde_json::to_vec(&cfg).unwrap()).unwrap();

    let id = format!("engine-route-{}", std::process::id());
    let r: Run = env
        .command(&["run", &id])
        .current_dir(&bundle)
        .output()
        .unwrap()
        .into();
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, "runc-style\n"),
        "{}",
        r.stderr
    );
    let b = bundle.to_str().unwrap();
    assert_eq!(env.ok(&["run", "--bundle", b, &id]), "runc-style\n");
    assert_eq!(env.ok(&["run", "-b", b, &id]), "runc-style\n");
    // Docker-style from the same directory: the image has a tag, or a command follows.
    let r: Run = env
        .command(&["run", "--rm", IMAGE])
        .current_dir(&bundle)
        .output()
        .unwrap()
        .into();
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r: Run = env
        .command(&["run", "--rm", "berth-test", "echo", "docker-style"])
        .current_dir(&bundle)
        .output()
        .unwrap()
        .into();
    assert_eq!(r.stdout, "docker-style\n", "{}", r.stderr);
    let r: Run = env
        .command(&["run", "--rm", "-e", "A=1", "berth-test"])
        .current_dir(&bundle)
        .output()
        .unwrap()
        .into();
    assert_eq!(
        r.code, 0,
        "a docker-only flag makes it docker-style: {}",
        r.stderr
    );
    // `ps` without an ID is docker's; with one it is runc's (which needs a running one).
    assert!(env.ok(&["ps"]).starts_with("CONTAINER ID"));
    let r = env.berth(&["ps", &id]);
    assert!(
        r.code != 0 && !r.stdout.starts_with("CONTAINER ID"),
        "{}",
        r.stdout
    );
}

#[test]
fn tty_foreground_and_detached() {
    let env = Env::new();
    let r = env.berth(&[
        "run",
        "--rm",
        "-t",
        IMAGE,
        "sh",
        "-c",
        "tty; echo $TERM; exit 5",
    ]);
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert_eq!(
        r.stdout, "/dev/pts/0\r\nxterm\r\n",
        "the pty's line discipline adds \\r"
    );
    // -it: our stdin reaches the shell through the pty.
    let mut c = env.command(&["run", "--rm", "-it", IMAGE, "sh"]);
    c.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"echo from-$((6*7))\nexit 6\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(6));
    assert!(String::from_utf8_lossy(&out.stdout).contains("from-42\r\n"));
    // -d -t: the monitor copies the pty into the log.
    env.ok(&[
        "run", "-d", "-t", "--name", "ttylog", IMAGE, "sh", "-c", "tty",
    ]);
    let mut exited = false;
    for _ in 0..1000 {
        if env.inspect("ttylog")["State"]["Status"] == "exited" {
            exited = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(exited);
    assert_eq!(env.ok(&["logs", "ttylog"]), "/dev/pts/0\r\n");
}

/// A foreground run stopped from another berth: both see exit 137 (SIGKILL after -t 1).
#[test]
fn foreground_run_stopped_from_outside() {
    let env = Env::new();
    let child = env
        .command(&["run", "--name", "fg", IMAGE, "sleep", "1000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut running = false;
    for _ in 0..1000 {
        let r = env.berth(&["inspect", "fg"]);
        if r.code == 0 && r.stdout.contains("\"running\"") {
            running = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert!(running, "the foreground container never ran");
    // sleep as PID 1 has no TERM handler, so the kernel drops TERM: stop must escalate.
    env.ok(&["stop", "-t", "1", "fg"]);
    let out = child.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = &env.inspect("fg")["State"];
    assert_eq!(
        (st["Status"].as_str(), st["ExitCode"].as_i64()),
        (Some("exited"), Some(137))
    );
}

#[test]
fn logs_follow_returns_when_the_container_exits() {
    let env = Env::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "chatty",
        IMAGE,
        "sh",
        "-c",
        "echo one; sleep 0.5; echo two",
    ]);
    assert_eq!(env.ok(&["logs", "-f", "chatty"]), "one\ntwo\n");
    let st = &env.inspect("chatty")["State"];
    assert_eq!(
        (st["Status"].as_str(), st["ExitCode"].as_i64()),
        (Some("exited"), Some(0))
    );
}

/// With its monitor killed, a container still stops and is removed; its exit reads as
/// unknown, and `rm` releases the runtime state the monitor would have.
#[test]
fn monitor_killed_exit_unknown() {
    let env = Env::new();
    let id = env.ok(&["run", "-d", "--name", "orphan", IMAGE, "sleep", "1000"]);
    let meta = env
        .data()
        .join("containers")
        .join(id.trim())
        .join("config.json");
    let meta: Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    let monitor = meta["state"]["monitor_pid"].as_i64().unwrap() as i32;
    assert!(monitor > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    assert_eq!(env.inspect("orphan")["State"]["Status"], "running");
    env.ok(&["stop", "-t", "0", "orphan"]);
    let ps = env.ok(&["ps", "-a"]);
    assert!(
        ps.lines()
            .any(|l| l.contains("Exited (unknown)") && l.ends_with("orphan")),
        "{ps}"
    );
    env.ok(&["rm", "orphan"]);
    assert!(env.container_dirs().is_empty());
    assert!(
        std::fs::read_dir(env.root()).unwrap().next().is_none(),
        "runtime state released"
    );
}

#[test]
fn check_and_verify_find_engine_containers_by_name() {
    let env = Env::new();
    let id = env.ok(&["run", "-d", "--name", "checked", IMAGE, "sleep", "100"]);
    let id = id.trim();
    let r = env.berth(&["check", "checked", "--format", "json"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["target"]["kind"], "engine");
    // Docker's 14 capabilities: nothing beyond the defaults.
    let least = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "caps.least")
        .unwrap();
    assert_eq!(least["status"], "pass", "{least}");
    for _ in 0..500 {
        let comm = std::fs::read_to_string(format!(
            "/proc/{}/comm",
            env.inspect("checked")["State"]["Pid"]
        ));
        if comm.is_ok_and(|c| c.trim() == "sleep") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let r = env.berth(&["verify", "checked", "--format", "json"]);
    assert!(r.code == 0 || r.code == 1, "{}{}", r.stdout, r.stderr);
    let v: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(v["id"], id);
    let diffs: Vec<&Value> = v["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["outcome"] != "match")
        .collect();
    assert!(diffs.is_empty(), "{diffs:?}");
    env.ok(&["rm", "-f", "checked"]);
}

/// `--isolation vm` on this host: what it cannot do yet is refused in one line before
/// anything is made, and a VM that cannot boot (here a corrupt kernel, so the real VMM
/// fails) is one line too, with no container, disk image, socket or VMM left. Running a
/// container in a VM needs nested KVM: scripts/vm/vm-containers.sh.
#[test]
fn vm_isolation_refusals_and_a_failed_boot_leave_nothing() {
    let env = Env::new();
    let fake_kernel = env.dir.path().join("vmlinux");
    std::fs::write(&fake_kernel, b"not a kernel").unwrap();
    let kernel = fake_kernel.to_str().unwrap();
    let cases: &[(&[&str], &str, &str)] = &[
        (&["-v", "/tmp:/x"], kernel, "no virtio-fs daemon"),
        (&["--network", "host"], kernel, "have no network yet"),
        (&["-t"], kernel, "not supported for VM containers yet"),
        (
            &[],
            "/no/such/vmlinux",
            "kernel (BERTH_VM_KERNEL) /no/such/vmlinux: not found",
        ),
        (&[], kernel, "the VM stopped before the container exited"),
        (
            &["--isolation", "jail"],
            kernel,
            "--isolation \"jail\": expected process or vm",
        ),
    ];
    for (flags, k, want) in cases {
        let mut args = vec!["run", "--rm"];
        if !flags.contains(&"--isolation") {
            args.extend_from_slice(&["--isolation", "vm"]);
        }
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "true"]);
        let r: Run = env
            .command(&args)
            .env("BERTH_VM_KERNEL", k)
            .env("BERTH_VM_INITRD", kernel)
            .output()
            .expect("spawn berth")
            .into();
        assert_ne!(r.code, 0, "{args:?}");
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.trim_end().lines().count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
    }
    assert!(
        env.container_dirs().is_empty(),
        "{:?}",
        env.container_dirs()
    );
    assert!(mounts_under(env.dir.path()).is_empty());
}
