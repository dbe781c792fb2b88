//! End-to-end tests of `berth cri serve` driven by the real crictl: each test starts its
//! own server (own CRI root, runtime root, socket, CNI config dir) and a real
//! docker-registry on 127.0.0.1 holding the busybox test image (pushed with skopeo), and
//! checks at the end that nothing leaked (records, runtime state, mounts, cgroups,
//! veths). Built as a test of the `berth` binary: `cargo test -p berth --test cri`.
//! Needs root, crictl (/work/shared/tools/crictl or $CRICTL), docker-registry, skopeo,
//! umoci; skipped with a message when one is missing.

#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// crictl: $CRICTL, else the static crictl in `shared/tools` beside the checkout (where CI
/// puts it), else the development machine's copy.
fn crictl_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("CRICTL") {
        return Some(PathBuf::from(p)).filter(|p| p.exists());
    }
    [
        workspace().join("../shared/tools/crictl"),
        PathBuf::from("/work/shared/tools/crictl"),
    ]
    .into_iter()
    .find(|p| p.exists())
}

/// Why this machine cannot run the tests, if it cannot.
fn missing() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root".into());
    }
    if crictl_bin().is_none() {
        return Some("crictl not found (set CRICTL)".into());
    }
    for t in [
        "/usr/bin/docker-registry",
        "/usr/bin/skopeo",
        "/usr/bin/umoci",
    ] {
        if !Path::new(t).exists() {
            return Some(format!("{t} missing"));
        }
    }
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let until = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A docker-registry holding `busybox:latest`, killed on drop.
struct Registry {
    child: Child,
    addr: String,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn registry(dir: &Path) -> Registry {
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = dir.join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
            dir.join("registry-data").display()
        ),
    )
    .unwrap();
    let child = Command::new("/usr/bin/docker-registry")
        .arg("serve")
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let reg = Registry { child, addr };
    wait_until("the registry", Duration::from_secs(30), || {
        TcpStream::connect(&reg.addr).is_ok()
    });
    let layout = dir.join("layout");
    let out = Command::new("sh")
        .arg(workspace().join("scripts/build-test-image.sh"))
        .arg(&layout)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "build-test-image.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new("skopeo")
        .args(["copy", "-q", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:latest", layout.display()))
        .arg(format!("docker://{}/busybox:latest", reg.addr))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    reg
}

/// One `berth cri serve` with its own roots.
struct Server {
    dir: TempDir,
    child: Option<Child>,
    bridge: Option<String>,
}

impl Server {
    fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }
    fn run_root(&self) -> PathBuf {
        self.dir.path().join("run")
    }
    fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    /// A server; with `cni`, a bridge network (Debian's CNI plugins) in its conf dir.
    fn new(cni: bool) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("berth-cri-")
            .tempdir()
            .unwrap();
        let netd = dir.path().join("net.d");
        std::fs::create_dir(&netd).unwrap();
        let bridge = (cni && Path::new("/usr/lib/cni/bridge").exists()).then(|| {
            let n = std::process::id() % 10000;
            let name = format!("bcri{n}");
            std::fs::write(
                netd.join("10-test.conflist"),
                serde_json::json!({
                    "cniVersion": "1.0.0",
                    "name": format!("crit{n}"),
                    "plugins": [{
                        "type": "bridge", "bridge": name, "isGateway": true, "ipMasq": false,
                        "ipam": {"type": "host-local", "ranges": [[{"subnet": format!("10.{}.{}.0/24", 200 + n % 50, n % 250)}]],
                                 "dataDir": dir.path().join("ipam")}
                    }]
                })
                .to_string(),
            )
            .unwrap();
            name
        });
        std::fs::write(
            dir.path().join("cri.toml"),
            format!(
                "runtime_root = \"{}\"\ncni_conf_dir = \"{}\"\ncni_plugin_dirs = [\"/usr/lib/cni\"]\nlog_level = \"info\"\n",
                dir.path().join("run").display(),
                netd.display()
            ),
        )
        .unwrap();
        std::fs::write(dir.path().join("crictl.yaml"), "").unwrap();
        let mut s = Server {
            dir,
            child: None,
            bridge,
        };
        s.start();
        s
    }

    fn start(&mut self) {
        let _ = std::fs::remove_file(self.socket()); // never mistaken for the new one
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("--root")
            .arg(self.root())
            .args(["cri", "serve", "--config"])
            .arg(self.dir.path().join("cri.toml"))
            .arg("--listen")
            .arg(format!("unix://{}", self.socket().display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let sock = self.socket();
        wait_until("the CRI socket", Duration::from_secs(30), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// SIGTERM: the server must exit 0 and take its socket with it.
    fn terminate(&mut self) {
        let mut c = self.child.take().unwrap();
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(c.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let status = c.wait().unwrap();
        assert!(
            status.success(),
            "server exit on SIGTERM: {status}\n{}",
            self.log()
        );
        assert!(!self.socket().exists(), "socket left after SIGTERM");
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn crictl_out(&self, args: &[&str]) -> Output {
        let ep = format!("unix://{}", self.socket().display());
        Command::new(crictl_bin().unwrap())
            .arg("--config")
            .arg(self.dir.path().join("crictl.yaml"))
            .args([
                "--runtime-endpoint",
                &ep,
                "--image-endpoint",
                &ep,
                "--timeout",
                "60s",
            ])
            .args(args)
            .output()
            .unwrap()
    }

    /// Run crictl, which must succeed; its stdout.
    fn crictl(&self, args: &[&str]) -> String {
        let out = self.crictl_out(args);
        assert!(
            out.status.success(),
            "crictl {args:?}: {}\n{}\nserver log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout),
            self.log()
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Run crictl, which must fail; its stderr.
    fn crictl_err(&self, args: &[&str]) -> String {
        let out = self.crictl_out(args);
        assert!(!out.status.success(), "crictl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    fn write(&self, name: &str, v: &Value) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, v.to_string()).unwrap();
        p.display().to_string()
    }

    fn pod_config(&self, name: &str) -> String {
        self.write(
            &format!("{name}-pod.json"),
            &serde_json::json!({
                "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "attempt": 0},
                "hostname": format!("{name}-host"),
                "log_directory": self.dir.path().join("logs").join(name),
                "linux": {}
            }),
        )
    }

    fn container_config(&self, name: &str, image: &str, script: &str) -> String {
        self.write(
            &format!("{name}-ctr.json"),
            &serde_json::json!({
                "metadata": {"name": name},
                "image": {"image": image},
                "command": ["/bin/sh", "-c", script],
                "envs": [{"key": "FOO", "value": "bar"}],
                "log_path": format!("{name}.log"),
                "linux": {"security_context": {"capabilities": {"drop_capabilities": ["NET_RAW"]}}}
            }),
        )
    }

    fn inspect(&self, id: &str) -> Value {
        serde_json::from_str(&self.crictl(&["inspect", "-o", "json", id])).unwrap()
    }

    /// Nothing of any pod or container is left: records, runtime state, mounts under
    /// the temp dir (but the socket's), cgroups, veths on the test bridge.
    fn assert_clean(&self, ids: &[String]) {
        for d in ["pods", "containers", "images/containers"] {
            let p = self.root().join(d);
            let left: Vec<_> = std::fs::read_dir(&p)
                .map(|r| r.flatten().map(|e| e.path()).collect())
                .unwrap_or_default();
            assert!(left.is_empty(), "{}: left {left:?}", p.display());
        }
        let left: Vec<_> = std::fs::read_dir(self.run_root())
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.iter()
                .all(|n| !ids.iter().any(|i| n.to_string_lossy() == *i)),
            "runtime state left: {left:?}"
        );
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let here = self.dir.path().display().to_string();
        let leaked: Vec<&str> = mounts.lines().filter(|l| l.contains(&here)).collect();
        assert!(leaked.is_empty(), "mounts left: {leaked:#?}");
        for id in ids {
            for ctl in ["memory", "pids", "cpu", "unified", ""] {
                let p = Path::new("/sys/fs/cgroup")
                    .join(ctl)
                    .join(format!("berth-{id}"));
                assert!(!p.exists(), "cgroup left: {}", p.display());
            }
        }
        if let Some(b) = &self.bridge {
            let out = Command::new("ip")
                .args(["-o", "link", "show", "master", b])
                .output()
                .unwrap();
            let s = String::from_utf8_lossy(&out.stdout);
            assert!(s.trim().is_empty(), "veths left on {b}: {s}");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Best effort: take down whatever a failed test left, then the server.
        if self.child.is_some() {
            let pods = self.crictl_out(&["pods", "-q"]);
            for id in String::from_utf8_lossy(&pods.stdout).split_whitespace() {
                let _ = self.crictl_out(&["rmp", "-f", id]);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let _ = c.wait();
        }
        if let Some(b) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", b]).output();
        }
    }
}

/// The whole life of a pod through crictl, with a server restart in the middle.
#[test]
fn crictl_pod_lifecycle_survives_a_server_restart() {
    if let Some(why) = missing() {
        // CI installs everything and provides crictl: there a missing tool is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run the CRI tests: {why}"
        );
        eprintln!("SKIP: {why}");
        return;
    }
    let mut s = Server::new(true);
    let reg = registry(s.dir.path());
    let image = format!("{}/busybox:latest", reg.addr);

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(s.socket()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o660, "socket mode");

    // Version, info, images.
    assert!(s.crictl(&["version"]).contains("RuntimeName:  berth"));
    s.crictl(&["info"]);
    s.crictl(&["pull", &image]);
    assert!(s
        .crictl(&["images"])
        .contains(&format!("{}/busybox", reg.addr)));
    let img: Value = serde_json::from_str(&s.crictl(&["inspecti", "-o", "json", &image])).unwrap();
    assert!(img["status"]["id"].as_str().unwrap().starts_with("sha256:"));

    // A pod with a running container.
    let pod_cfg = s.pod_config("p1");
    let pod = s.crictl(&["runp", &pod_cfg]);
    let pod_status: Value =
        serde_json::from_str(&s.crictl(&["inspectp", "-o", "json", &pod])).unwrap();
    assert_eq!(pod_status["status"]["state"], "SANDBOX_READY");
    if s.bridge.is_some() {
        let ip = pod_status["status"]["network"]["ip"]
            .as_str()
            .unwrap_or_default();
        assert!(ip.starts_with("10."), "pod IP from CNI: {pod_status}");
    }
    let script =
        "echo hello; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done";
    let ctr_cfg = s.container_config("c1", &image, script);
    let ctr = s.crictl(&["create", &pod, &ctr_cfg, &pod_cfg]);
    assert_eq!(s.inspect(&ctr)["status"]["state"], "CONTAINER_CREATED");
    s.crictl(&["start", &ctr]);
    assert!(s.crictl(&["ps"]).contains(&ctr[..13]));
    assert_eq!(s.inspect(&ctr)["status"]["state"], "CONTAINER_RUNNING");

    // ExecSync: env, the pod's hostname, exit codes, timeouts.
    let out = s.crictl(&[
        "exec",
        "-s",
        &ctr,
        "sh",
        "-c",
        "echo $FOO; hostname; cat /etc/hostname",
    ]);
    assert_eq!(out, "bar\np1-host\np1-host");
    let bad = s.crictl_err(&["exec", "-s", &ctr, "sh", "-c", "echo no >&2; exit 3"]);
    assert!(bad.contains("exited with 3: no"), "{bad}");
    let slow = s.crictl_err(&["exec", "-s", "--timeout", "1", &ctr, "sleep", "30"]);
    assert!(slow.contains("timed out"), "{slow}");

    // Logs in the CRI format, read by crictl.
    wait_until("the log lines", Duration::from_secs(10), || {
        s.crictl_out(&["logs", &ctr]).stderr.ends_with(b"oops\n")
    });
    let logs = s.crictl_out(&["logs", &ctr]);
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello\n");
    let raw = std::fs::read_to_string(s.dir.path().join("logs/p1/c1.log")).unwrap();
    assert!(raw.lines().any(|l| l.ends_with(" stdout F hello")), "{raw}");

    // Rotation as kubelet does it: rename, then ReopenContainerLog (crictl logs -r).
    let log = s.dir.path().join("logs/p1/c1.log");
    std::fs::rename(&log, log.with_extension("log.1")).unwrap();
    s.crictl_out(&["logs", "-r", &ctr]);
    assert!(log.exists(), "ReopenContainerLog creates the new file");

    // The server dies; the container does not, and a new server finds everything.
    s.kill9();
    // What a server killed inside RunPodSandbox/CreateContainer leaves goes at start.
    let half_pod = s.root().join("pods").join("f".repeat(64));
    std::fs::create_dir_all(half_pod.join("ns")).unwrap();
    std::fs::write(half_pod.join("ns/uts"), "").unwrap();
    let half_ctr = s.root().join("containers").join("e".repeat(64));
    std::fs::create_dir_all(half_ctr.join("bundle")).unwrap();
    s.start();
    assert!(
        !half_pod.exists() && !half_ctr.exists(),
        "half-made records swept"
    );
    assert!(s.crictl(&["ps", "-q"]).contains(&ctr));
    assert_eq!(s.inspect(&ctr)["status"]["state"], "CONTAINER_RUNNING");
    assert!(s.crictl(&["pods", "-q"]).contains(&pod));
    assert_eq!(s.crictl(&["exec", "-s", &ctr, "echo", "again"]), "again");
    // Streaming exec works again too (a new streaming server, same container).
    assert_eq!(s.crictl(&["exec", &ctr, "echo", "streamed"]), "streamed");

    // Stop: SIGTERM is trapped, exit 0 -> Completed.
    s.crictl(&["stop", "--timeout", "20", &ctr]);
    let st = s.inspect(&ctr);
    assert_eq!(st["status"]["state"], "CONTAINER_EXITED", "{st}");
    assert_eq!(st["status"]["exitCode"], 0);
    assert_eq!(st["status"]["reason"], "Completed");
    assert_eq!(
        String::from_utf8_lossy(&s.crictl_out(&["logs", &ctr]).stdout),
        "bye\n",
        "written to the reopened file"
    );

    // A container that fails on its own -> Error with its code.
    let fail_cfg = s.container_config("c2", &image, "exit 7");
    let fail = s.crictl(&["create", &pod, &fail_cfg, &pod_cfg]);
    s.crictl(&["start", &fail]);
    wait_until("c2 to exit", Duration::from_secs(20), || {
        s.inspect(&fail)["status"]["state"] == "CONTAINER_EXITED"
    });
    let st = s.inspect(&fail);
    assert_eq!(
        (
            st["status"]["exitCode"].clone(),
            st["status"]["reason"].clone()
        ),
        (7.into(), "Error".into())
    );
    assert!(s
        .crictl(&["ps", "-a", "--state", "exited", "-q"])
        .contains(&fail));

    // Tear down: rm, stopp, rmp (which also removes c2), rmi.
    s.crictl(&["rm", &ctr]);
    assert!(!s.crictl(&["ps", "-a", "-q"]).contains(&ctr));
    s.crictl(&["stopp", &pod]);
    let pod_status: Value =
        serde_json::from_str(&s.crictl(&["inspectp", "-o", "json", &pod])).unwrap();
    assert_eq!(pod_status["status"]["state"], "SANDBOX_NOTREADY");
    s.crictl(&["rmp", &pod]);
    assert!(s.crictl(&["pods", "-q"]).is_empty());
    s.crictl(&["rmi", &image]);
    assert!(!s.crictl(&["images"]).contains("busybox"));
    s.assert_clean(&[ctr, fail, pod]);
    s.terminate();
}

/// Unknown IDs, removed pods and missing images give clear errors, and stop/remove of
/// unknown IDs succeed; a failed create leaves nothing behind.
#[test]
fn crictl_bad_input_gives_clear_errors() {
    if let Some(why) = missing() {
        // CI installs everything and provides crictl: there a missing tool is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run the CRI tests: {why}"
        );
        eprintln!("SKIP: {why}");
        return;
    }
    let s = Server::new(false);
    let reg = registry(s.dir.path());
    let image = format!("{}/busybox:latest", reg.addr);
    let unknown = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    let e = s.crictl_err(&["inspect", unknown]);
    assert!(e.contains("NotFound") && e.contains("not found"), "{e}");
    let e = s.crictl_err(&["inspectp", unknown]);
    assert!(e.contains("NotFound"), "{e}");
    let e = s.crictl_err(&["start", unknown]);
    assert!(e.contains("not found"), "{e}");
    let e = s.crictl_err(&["exec", "-s", unknown, "true"]);
    assert!(e.contains("not found"), "{e}");
    let e = s.crictl_err(&["pull", &format!("{}/nope:latest", reg.addr)]);
    assert!(e.contains("nope"), "{e}");
    let e = s.crictl_err(&["pull", "UPPER/Case::bad"]);
    assert!(!e.is_empty());
    // CRI: an image that is not there has no status, and removing it succeeds.
    let e = s.crictl_err(&["inspecti", &image]);
    assert!(
        e.contains("not found") || e.contains("no such image"),
        "{e}"
    );

    let pod_cfg = s.pod_config("p2");
    let pod = s.crictl(&["runp", &pod_cfg]);
    let pod_status: Value =
        serde_json::from_str(&s.crictl(&["inspectp", "-o", "json", &pod])).unwrap();
    assert_eq!(
        pod_status["status"]["network"]["ip"], "",
        "no CNI network: loopback only"
    );
    let e = s.crictl_err(&["runp", &pod_cfg]);
    assert!(e.contains("already used"), "{e}");

    // An image that was never pulled.
    let ctr_cfg = s.container_config("c1", &image, "true");
    let e = s.crictl_err(&["create", &pod, &ctr_cfg, &pod_cfg]);
    assert!(e.contains("NotFound") && e.contains("pull it first"), "{e}");
    s.crictl(&["pull", &image]);
    // A command that does not exist: create succeeds (init waits), start fails cleanly.
    let bad_cfg = s.write(
        "bad.json",
        &serde_json::json!({"metadata": {"name": "bad"}, "image": {"image": image}, "command": ["/nonexistent"]}),
    );
    let bad = s.crictl_out(&["create", &pod, &bad_cfg, &pod_cfg]);
    let bad_id = String::from_utf8_lossy(&bad.stdout).trim().to_string();
    if bad.status.success() {
        let _ = s.crictl_out(&["start", &bad_id]);
        s.crictl(&["rm", "-f", &bad_id]);
    }
    // Privileged containers are refused with a clear message, leaving nothing.
    let priv_cfg = s.write(
        "priv.json",
        &serde_json::json!({"metadata": {"name": "priv"}, "image": {"image": image}, "command": ["true"],
                            "linux": {"security_context": {"privileged": true}}}),
    );
    let e = s.crictl_err(&["create", &pod, &priv_cfg, &pod_cfg]);
    assert!(e.contains("privileged"), "{e}");

    // A container for a removed pod.
    s.crictl(&["stopp", &pod]);
    s.crictl(&["rmp", &pod]);
    let e = s.crictl_err(&["create", &pod, &ctr_cfg, &pod_cfg]);
    assert!(e.contains("NotFound") && e.contains("pod sandbox"), "{e}");

    // Stopping what is gone succeeds (crictl rm/rmp ask for the status first, so
    // they report NotFound before RemoveContainer/RemovePodSandbox are called).
    s.crictl(&["stopp", &pod]);
    s.crictl(&["stop", unknown]);
    let e = s.crictl_err(&["rmp", &pod]);
    assert!(e.contains("NotFound"), "{e}");
    s.crictl(&["rmi", &image]);
    let e = s.crictl_err(&["rmi", &image]);
    assert!(e.contains("no such image"), "{e}");
    s.assert_clean(&[pod]);
}

/// The CRI security context and resources reach the container: user, read-only root,
/// read-only bind mount, dropped capabilities, no_new_privs, cgroup limits; a container
/// over its memory limit reads as OOMKilled.
#[test]
fn crictl_security_context_resources_and_oom() {
    if let Some(why) = missing() {
        // CI installs everything and provides crictl: there a missing tool is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run the CRI tests: {why}"
        );
        eprintln!("SKIP: {why}");
        return;
    }
    let s = Server::new(false);
    let reg = registry(s.dir.path());
    let image = format!("{}/busybox:latest", reg.addr);
    s.crictl(&["pull", &image]);
    let pod_cfg = s.pod_config("p3");
    let pod = s.crictl(&["runp", &pod_cfg]);
    let host = s.dir.path().join("hostdir");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("f"), "hostdata\n").unwrap();
    let cfg = s.write(
        "sec.json",
        &serde_json::json!({
            "metadata": {"name": "sec"}, "image": {"image": image}, "command": ["sleep", "1000"],
            "log_path": "sec.log",
            "mounts": [{"container_path": "/data", "host_path": host, "readonly": true}],
            "linux": {
                "resources": {"memory_limit_in_bytes": 33554432, "cpu_quota": 50000, "cpu_period": 100000},
                "security_context": {"run_as_user": {"value": 1000}, "readonly_rootfs": true, "no_new_privs": true,
                                     "capabilities": {"drop_capabilities": ["ALL"]}}
            }
        }),
    );
    let ctr = s.crictl(&["create", &pod, &cfg, &pod_cfg]);
    s.crictl(&["start", &ctr]);
    let out = s.crictl(&["exec", "-s", &ctr, "sh", "-c",
        "id -u; cat /data/f; touch /x 2>&1; touch /data/y 2>&1; grep -E '^(CapEff|NoNewPrivs)' /proc/self/status; true"]);
    let lines: Vec<&str> = out.lines().map(str::trim).collect();
    assert_eq!(lines[0..2], ["1000", "hostdata"], "{out}");
    assert!(
        lines[2].contains("Read-only file system") && lines[3].contains("Read-only file system"),
        "{out}"
    );
    assert!(
        out.contains("CapEff:\t0000000000000000") && out.contains("NoNewPrivs:\t1"),
        "{out}"
    );
    let v1 = Path::new("/sys/fs/cgroup/memory").join(format!("berth-{ctr}"));
    if v1.exists() {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap().trim().to_string();
        assert_eq!(read(v1.join("memory.limit_in_bytes")), "33554432");
        let cpu = Path::new("/sys/fs/cgroup/cpu").join(format!("berth-{ctr}"));
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "50000");
        s.crictl(&[
            "update",
            "--memory",
            "67108864",
            "--cpu-quota",
            "20000",
            &ctr,
        ]);
        assert_eq!(read(v1.join("memory.limit_in_bytes")), "67108864");
        assert_eq!(read(cpu.join("cpu.cfs_quota_us")), "20000");
    }
    let st = s.inspect(&ctr);
    assert_eq!(st["status"]["mounts"][0]["containerPath"], "/data", "{st}");

    let oom = s.write(
        "oom.json",
        &serde_json::json!({
            "metadata": {"name": "oom"}, "image": {"image": image},
            "command": ["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
            "linux": {"resources": {"memory_limit_in_bytes": 16777216}}
        }),
    );
    let o = s.crictl(&["create", &pod, &oom, &pod_cfg]);
    s.crictl(&["start", &o]);
    wait_until("the OOM kill", Duration::from_secs(30), || {
        s.inspect(&o)["status"]["state"] == "CONTAINER_EXITED"
    });
    let st = s.inspect(&o);
    assert_eq!(st["status"]["exitCode"], 137, "{st}");
    assert_eq!(st["status"]["reason"], "OOMKilled", "{st}");

    // A monitor killed before the container: the exit is unknown, and still cleaned up.
    let monitor = s.inspect(&ctr)["info"]["monitorPid"].as_i64().unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(monitor as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_until("the monitor to die", Duration::from_secs(10), || {
        !Path::new(&format!("/proc/{monitor}/cmdline")).exists()
            || std::fs::read(format!("/proc/{monitor}/cmdline")).is_ok_and(|c| c.is_empty())
    });
    assert_eq!(s.inspect(&ctr)["status"]["state"], "CONTAINER_RUNNING");
    s.crictl(&["stop", &ctr]);
    let st = s.inspect(&ctr);
    assert_eq!(
        (
            st["status"]["exitCode"].clone(),
            st["status"]["reason"].clone()
        ),
        (255.into(), "Unknown".into()),
        "{st}"
    );
    assert!(
        st["status"]["message"]
            .as_str()
            .unwrap()
            .contains("monitor"),
        "{st}"
    );

    s.crictl(&["stopp", &pod]);
    s.crictl(&["rmp", &pod]);
    s.crictl(&["rmi", &image]);
    s.assert_clean(&[ctr, o, pod]);
}

/// A child process killed when the test ends, passed or not.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The streaming URL crictl was given (crictl --debug logs the Exec/Attach/PortForward
/// response), from its stderr.
fn streaming_url(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let at = text
        .find("http://127.0.0.1:")
        .expect("a streaming URL in crictl's log");
    text[at..]
        .split(|c: char| c.is_whitespace() || c == ',' || c == '}' || c == '"' || c == '\\')
        .next()
        .unwrap()
        .to_string()
}

/// An HTTP request to the streaming server; the status line's code.
fn http_status(url: &str, upgrade: bool) -> u16 {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut s = TcpStream::connect(host).unwrap();
    let extra = if upgrade {
        "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
    } else {
        ""
    };
    write!(s, "POST {path} HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Exec through the streaming server (SPDY, what crictl and kubelet use by default):
/// stdout, stderr, exit codes, stdin; used, replayed and guessed URLs; stats.
#[test]
fn crictl_streaming_exec_and_stats() {
    if let Some(why) = missing() {
        // CI installs everything and provides crictl: there a missing tool is a failure.
        assert!(
            std::env::var_os("CI").is_none(),
            "cannot run the CRI tests: {why}"
        );
        eprintln!("SKIP: {why}");
        return;
    }
    let s = Server::new(false);
    let reg = registry(s.dir.path());
    let image = format!("{}/busybox:latest", reg.addr);
    s.crictl(&["pull", &image]);
    let pod_cfg = s.pod_config("p4");
    let pod = s.crictl(&["runp", &pod_cfg]);
    let cfg = s.container_config("c1", &image, "sleep 1000");
    let ctr = s.crictl(&["create", &pod, &cfg, &pod_cfg]);
    s.crictl(&["start", &ctr]);

    // Output on both streams and the exit code, through SPDY.
    let out = s.crictl_out(&[
        "--debug",
        "exec",
        &ctr,
        "sh",
        "-c",
        "echo out $FOO; echo err >&2; exit 3",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "out bar\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l == "err"), "{stderr}");
    // client-go decoded the exit code from the status on the error stream (crictl
    // itself then exits 1).
    assert!(!out.status.success());
    assert!(
        stderr.contains("command terminated with exit code 3"),
        "{stderr}\n{}",
        s.log()
    );
    // The URL is single-use: replayed (even as a proper upgrade) it is 404, as is a
    // guessed token; nothing runs.
    let url = streaming_url(&out.stderr);
    assert!(url.contains("/exec/"), "{url}");
    assert_eq!(http_status(&url, true), 404);
    let guessed = format!("{}{}", &url[..url.rfind('/').unwrap() + 1], "0".repeat(32));
    assert_eq!(http_status(&guessed, true), 404);

    // The same over WebSocket (crictl -r websocket: client-go's v5.channel.k8s.io).
    let out = s.crictl_out(&[
        "exec",
        "-r",
        "websocket",
        &ctr,
        "sh",
        "-c",
        "echo ws $FOO; echo err >&2; exit 4",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "ws bar\n", "{stderr}");
    assert!(stderr.lines().any(|l| l == "err"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 4"),
        "{stderr}\n{}",
        s.log()
    );

    // Stdin, closed at its end: cat sees all of it and exits.
    let mut child = Command::new(crictl_bin().unwrap())
        .arg("--config")
        .arg(s.dir.path().join("crictl.yaml"))
        .args([
            "--runtime-endpoint",
            &format!("unix://{}", s.socket().display()),
            "exec",
            "-i",
            &ctr,
            "sh",
            "-c",
            "wc -c; cat /proc/self/status | grep -c ^Pid",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let input = vec![b'x'; 200_000];
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&input).unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", s.log());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().next().map(str::trim), Some("200000"), "{text}");
    // Over WebSocket v5, the end of stdin is the close message [255, 0].
    let mut child = Command::new(crictl_bin().unwrap())
        .arg("--config")
        .arg(s.dir.path().join("crictl.yaml"))
        .args([
            "--runtime-endpoint",
            &format!("unix://{}", s.socket().display()),
            "exec",
            "-i",
            "-r",
            "websocket",
            &ctr,
            "wc",
            "-c",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&input[..5000])
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", s.log());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "5000");

    // A terminal (crictl exec -it, on a pty from script(1)): its size reaches the
    // container's pty through the resize channel; stdin and stdout are the terminal.
    let ep = format!("unix://{}", s.socket().display());
    let inner = format!(
        "stty cols 123 rows 45; {} --config {} --runtime-endpoint {ep} exec -it {ctr} sh -c 'stty size; tty; echo done'",
        crictl_bin().unwrap().display(),
        s.dir.path().join("crictl.yaml").display(),
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", s.log());
    assert!(text.contains("45 123\r\n"), "{text:?}");
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(text.contains("done"), "{text:?}");

    // Unknown container: NotFound from the Exec RPC, no URL.
    let e = s.crictl_err(&["exec", &"0".repeat(64), "true"]);
    assert!(e.contains("NotFound"), "{e}");

    // Stats from the cgroup, for the container and its pod.
    let st: Value =
        serde_json::from_str(&s.crictl(&["stats", "-o", "json", "--id", &ctr])).unwrap();
    let c = &st["stats"][0];
    assert_eq!(c["attributes"]["id"], ctr.as_str(), "{st}");
    let num = |v: &Value| {
        v["value"]
            .as_str()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    assert!(num(&c["cpu"]["usageCoreNanoSeconds"]) > 0, "{st}");
    assert!(num(&c["memory"]["workingSetBytes"]) > 0, "{st}");
    assert!(num(&c["writableLayer"]["inodesUsed"]) < 1000, "{st}");
    let st: Value =
        serde_json::from_str(&s.crictl(&["statsp", "-o", "json", "--id", &pod])).unwrap();
    let p = &st["stats"][0];
    assert_eq!(p["attributes"]["id"], pod.as_str(), "{st}");
    assert!(num(&p["linux"]["process"]["processCount"]) >= 1, "{st}");
    assert_eq!(
        p["linux"]["containers"][0]["attributes"]["id"],
        ctr.as_str(),
        "{st}"
    );
    let none: Value =
        serde_json::from_str(&s.crictl(&["stats", "-o", "json", "--id", &"0".repeat(64)])).unwrap();
    assert!(
        none["stats"].as_array().is_none_or(|a| a.is_empty()),
        "{none}"
    );

    // Container events: a listener hears a new container created, started, stopped.
    let mut events = Command::new(crictl_bin().unwrap())
        .arg("--config")
        .arg(s.dir.path().join("crictl.yaml"))
        .args(["--runtime-endpoint", &ep, "events", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let cfg2 = s.container_config("c2", &image, "exit 0");
    let c2 = s.crictl(&["create", &pod, &cfg2, &pod_cfg]);
    s.crictl(&["start", &c2]);
    wait_until("c2 to exit", Duration::from_secs(20), || {
        s.inspect(&c2)["status"]["state"] == "CONTAINER_EXITED"
    });
    std::thread::sleep(Duration::from_secs(2));
    let _ = events.kill();
    let out = events.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for t in [
        "CONTAINER_CREATED_EVENT",
        "CONTAINER_STARTED_EVENT",
        "CONTAINER_STOPPED_EVENT",
    ] {
        assert!(text.contains(t) && text.contains(&c2), "{t}: {text}");
    }
    s.crictl(&["rm", &c2]);

    // Attach to a container created with stdin (stdin_once): what crictl attach -i
    // sends reaches its stdin, its output comes back, and its exit ends the session.
    let att_cfg = s.write(
        "att.json",
        &serde_json::json!({
            "metadata": {"name": "att"}, "image": {"image": image},
            "command": ["sh", "-c", "read l; echo got $l; echo on stderr >&2"],
            "stdin": true, "stdin_once": true, "log_path": "att.log",
        }),
    );
    let att = s.crictl(&["create", &pod, &att_cfg, &pod_cfg]);
    s.crictl(&["start", &att]);
    let mut child = Command::new(crictl_bin().unwrap())
        .arg("--config")
        .arg(s.dir.path().join("crictl.yaml"))
        .args(["--runtime-endpoint", &ep, "attach", "-i", &att])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached before the line goes in: the container waits for it.
    std::thread::sleep(Duration::from_secs(1));
    {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(b"hello\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "got hello\n",
        "{stderr}\n{}",
        s.log()
    );
    assert!(stderr.contains("on stderr"), "{stderr}");
    wait_until("att to exit", Duration::from_secs(20), || {
        s.inspect(&att)["status"]["state"] == "CONTAINER_EXITED"
    });
    // Stdin to a container created without it is refused.
    let e = s.crictl_err(&["attach", "-i", &ctr]);
    assert!(e.contains("not created with stdin"), "{e}");
    s.crictl(&["rm", &att]);

    // Port forwarding: crictl listens on a local port; the pod's httpd (on the pod's
    // loopback: the pod has no other interface here) answers through it.
    let web_cfg = s.container_config(
        "web",
        &image,
        "mkdir -p /tmp/www && echo hello from the pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www",
    );
    let web = s.crictl(&["create", &pod, &web_cfg, &pod_cfg]);
    s.crictl(&["start", &web]);
    let forward = |remote: u16| {
        let local = free_port();
        let child = Command::new(crictl_bin().unwrap())
            .arg("--config")
            .arg(s.dir.path().join("crictl.yaml"))
            .args([
                "--runtime-endpoint",
                &ep,
                "port-forward",
                &pod,
                &format!("{local}:{remote}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        (KillOnDrop(child), local)
    };
    let curl = |port: u16| {
        Command::new("curl")
            .args([
                "-s",
                "--max-time",
                "10",
                &format!("http://127.0.0.1:{port}/index.html"),
            ])
            .output()
            .unwrap()
    };
    let (mut fwd, local) = forward(8080);
    wait_until("the forwarded port", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", local)).is_ok()
    });
    let mut body = String::new();
    wait_until("httpd through the forward", Duration::from_secs(30), || {
        body = String::from_utf8_lossy(&curl(local).stdout).to_string();
        body == "hello from the pod\n"
    });
    // Twice more over the same forward: each connection gets its own stream pair.
    for _ in 0..2 {
        assert_eq!(
            String::from_utf8_lossy(&curl(local).stdout),
            "hello from the pod\n"
        );
    }
    let _ = fwd.0.kill();
    // A port nobody listens on: that connection fails with kubelet's message.
    let (mut fwd, local) = forward(9999);
    wait_until("the forwarded port", Duration::from_secs(30), || {
        TcpStream::connect(("127.0.0.1", local)).is_ok()
    });
    assert!(curl(local).stdout.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    let _ = fwd.0.kill();
    let mut err = String::new();
    use std::io::Read;
    fwd.0
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(err.contains("error forwarding port 9999"), "{err}");
    let e = s.crictl_err(&["port-forward", &"0".repeat(64), "80"]);
    assert!(e.contains("NotFound"), "{e}");
    s.crictl(&["rm", "-f", &web]);

    s.crictl(&["rm", "-f", &ctr]);
    s.crictl(&["rmp", "-f", &pod]);
    s.crictl(&["rmi", &image]);
    s.assert_clean(&[ctr, c2, web, att, pod]);
}
