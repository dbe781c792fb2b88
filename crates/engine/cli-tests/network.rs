//! End-to-end tests of container networking (`berth run --network`, `-p`, `berth
//! network ...`) through the real `berth` binary and the real CNI plugins of
//! /usr/lib/cni, as root. Run with `cargo test -p berth --test network`.
//!
//! Containment: every test creates its own network namespace (`ip netns add`) and runs
//! `berth` inside it (nsenter --net), so that namespace is the "host": bridges, veths,
//! iptables rules and port maps live there, and traffic flows only between it and the
//! containers. The machine's interfaces and addresses are never used. A guard removes
//! every container and checks that no veth, IPAM lease, container netns or mount is
//! left, then deletes the namespace, even when the test fails. Failure cases that no
//! real plugin produces on demand use a fake plugin (a shell script in a temp CNI_PATH).

#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

const IMAGE: &str = "berth-test:latest";

static LAYOUT: OnceLock<PathBuf> = OnceLock::new();
static SEQ: AtomicUsize = AtomicUsize::new(0);
/// A second data + runtime root in a test's dir (another berth sharing its host).
const SECOND_ROOT: &str = "second";

extern "C" fn remove_layout() {
    if let Some(dir) = LAYOUT.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// The busybox test image's OCI layout, built once per test process.
fn layout() -> &'static Path {
    LAYOUT.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("network-image-{}", std::process::id()));
        let ws = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let out = Command::new("sh")
            .arg(ws.join("scripts/build-test-image.sh"))
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

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// A data root, runtime root and CNI dirs in a temp dir, and a network namespace that
/// plays the host.
struct Env {
    dir: TempDir,
    ns: String,
    cni_path: String,
}

fn ip(args: &[&str]) -> String {
    let o = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        o.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

impl Env {
    fn new() -> Option<Env> {
        if !nix::unistd::geteuid().is_root() || !Path::new("/usr/lib/cni/bridge").exists() {
            eprintln!("skipped: needs root and containernetworking-plugins");
            return None;
        }
        let ns = format!(
            "berth-t{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::SeqCst)
        );
        ip(&["netns", "add", &ns]);
        let env = Env {
            dir: tempfile::Builder::new()
                .prefix("berth-net-")
                .tempdir()
                .unwrap(),
            ns,
            cni_path: "/usr/lib/cni".into(),
        };
        ip(&["-n", &env.ns, "link", "set", "lo", "up"]);
        let r = env.berth(&["import", layout().to_str().unwrap(), IMAGE]);
        assert_eq!(r.code, 0, "import: {}", r.stderr);
        Some(env)
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn berth(&self, args: &[&str]) -> Run {
        self.berth_at("", args)
    }

    /// berth with the data and runtime roots under `root` (the test's own dir for "").
    fn berth_at(&self, root: &str, args: &[&str]) -> Run {
        let o = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.ns))
            .arg(env!("CARGO_BIN_EXE_berth"))
            .args(args)
            .env("BERTH_DATA_ROOT", self.path(root).join("data"))
            .env("BERTH_ROOT", self.path(root).join("run"))
            .env("BERTH_CNI_CONFIG_DIR", self.path("cni"))
            .env("BERTH_CNI_PATH", &self.cni_path)
            .env_remove("BERTH_NETWORK")
            .stdin(Stdio::null())
            .output()
            .expect("spawn berth");
        Run {
            code: o.status.code().unwrap_or(128),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn ok(&self, args: &[&str]) -> String {
        let r = self.berth(args);
        assert_eq!(r.code, 0, "berth {args:?}: {}{}", r.stdout, r.stderr);
        r.stdout
    }

    /// Fails with exactly one line of stderr containing `want`.
    fn fails(&self, args: &[&str], want: &str) {
        let r = self.berth(args);
        assert_ne!(r.code, 0, "{args:?} succeeded: {}", r.stdout);
        assert!(r.stderr.contains(want), "{args:?}: {}", r.stderr);
        assert_eq!(
            r.stderr.trim_end().lines().count(),
            1,
            "{args:?}: {}",
            r.stderr
        );
    }

    fn inspect(&self, c: &str) -> Value {
        let v: Value = serde_json::from_str(&self.ok(&["inspect", c])).unwrap();
        v[0].clone()
    }

    /// The bridge device of network `net`.
    fn bridge(&self, net: &str) -> String {
        let v: Value = serde_json::from_str(&self.ok(&["network", "inspect", net])).unwrap();
        v[0]["Summary"]["bridge"].as_str().unwrap().to_string()
    }

    fn address(&self, c: &str) -> String {
        self.inspect(c)["NetworkSettings"]["IPAddress"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn veths(&self) -> String {
        ip(&["-n", &self.ns, "-o", "link", "show", "type", "veth"])
    }

    fn links(&self) -> String {
        ip(&["-n", &self.ns, "-o", "link"])
    }

    /// IPs host-local still holds, any network.
    fn leases(&self) -> Vec<String> {
        let mut out = Vec::new();
        for net in std::fs::read_dir(self.path("data/cni/networks"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for f in std::fs::read_dir(net.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let n = f.file_name().to_string_lossy().into_owned();
                if n.parse::<std::net::IpAddr>().is_ok() {
                    out.push(n);
                }
            }
        }
        out
    }

    fn netns_files(&self) -> Vec<String> {
        std::fs::read_dir(self.path("run/netns"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn container_dirs(&self) -> usize {
        std::fs::read_dir(self.path("data/containers")).map_or(0, |d| d.count())
    }

    /// No veth, lease, container netns or CNI cache entry is left.
    fn assert_clean(&self) {
        assert_eq!(self.veths(), "", "veths left");
        assert!(self.leases().is_empty(), "leases left: {:?}", self.leases());
        assert!(
            self.netns_files().is_empty(),
            "netns left: {:?}",
            self.netns_files()
        );
        let cached = std::fs::read_dir(self.path("data/cni/results")).map_or(0, |d| d.count());
        assert_eq!(cached, 0, "CNI cache entries left");
    }

    /// Run `f` on a thread inside the test's host namespace.
    fn in_host<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let ns = std::fs::File::open(format!("/run/netns/{}", self.ns)).unwrap();
        std::thread::spawn(move || {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    }

    /// The pid of this test's aardvark-dns, if one runs.
    fn aardvark(&self) -> Option<i32> {
        let pid: i32 = std::fs::read_to_string(self.path("run/aardvark-dns/aardvark.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
        (comm.trim() == "aardvark-dns").then_some(pid)
    }

    /// A fake plugin in a temp dir added to the plugin path.
    fn fake_plugin(&mut self, name: &str, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.path("fake-plugins");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self.cni_path = format!("/usr/lib/cni:{}", dir.display());
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for root in ["", SECOND_ROOT] {
            if !self.path(root).join("data").exists() {
                continue;
            }
            for id in self
                .berth_at(root, &["ps", "-aq", "--no-trunc"])
                .stdout
                .split_whitespace()
            {
                let _ = self.berth_at(root, &["rm", "-f", id]);
            }
        }
        // aardvark-dns exits by itself once no container is registered; a failed test
        // may have left it.
        let dns_alive = self.aardvark();
        if let Some(pid) = dns_alive {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let prefix = self.dir.path().to_string_lossy().into_owned();
        let left: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter_map(|l| {
                l.split(' ')
                    .nth(4)
                    .filter(|m| m.starts_with(&prefix))
                    .map(String::from)
            })
            .collect();
        for m in &left {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        let veths = self.veths();
        let leases = self.leases();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        if !std::thread::panicking() {
            assert!(left.is_empty(), "mounts left behind: {left:?}");
            assert_eq!(veths, "", "veths left behind");
            assert!(leases.is_empty(), "leases left behind: {leases:?}");
            assert_eq!(dns_alive, None, "aardvark-dns left running");
        }
    }
}

fn tcp_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn two_containers_reach_each_other_and_leave_nothing() {
    let Some(env) = Env::new() else { return };
    assert_eq!(
        env.ok(&["network", "create", "--subnet", "10.231.0.0/24", "n1"]),
        "n1\n"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "n1",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let a = env.address("a");
    assert!(a.starts_with("10.231.0."), "{a}");
    assert_eq!(
        env.inspect("a")["NetworkSettings"]["Networks"]["n1"]["Gateway"],
        "10.231.0.1"
    );
    let out = env.ok(&[
        "run", "--rm", "--network", "n1", "--hostname", "bee", "--add-host", "db:192.0.2.7",
        "--dns", "192.0.2.53", IMAGE, "sh", "-c",
        &format!("ping -c1 -W5 {a} >/dev/null && echo reached; cat /etc/hostname /etc/hosts /etc/resolv.conf"),
    ]);
    assert!(out.starts_with("reached\nbee\n"), "{out}");
    assert!(
        out.contains("192.0.2.7\tdb\n") && out.contains("\tbee\n"),
        "{out}"
    );
    assert!(out.ends_with("nameserver 192.0.2.53\n"), "{out}");
    // The default network: made on first use, with a route out through its gateway.
    let route = env.ok(&["run", "--rm", IMAGE, "ip", "route"]);
    assert!(route.starts_with("default via 10."), "{route}");
    assert!(env.links().contains(&format!(" {}:", env.bridge("berth"))));
    let resolv = env.ok(&["run", "--rm", IMAGE, "cat", "/etc/resolv.conf"]);
    assert!(
        !resolv.contains("nameserver 127."),
        "no loopback resolvers: {resolv}"
    );
    let ls = env.ok(&["network", "ls"]);
    assert!(
        ls.contains("berth ") && ls.contains("n1 ") && ls.contains("10.231.0.0/24"),
        "{ls}"
    );
    let inspect: Value = serde_json::from_str(&env.ok(&["network", "inspect", "n1"])).unwrap();
    assert_eq!(inspect[0]["Containers"].as_object().unwrap().len(), 1);
    env.fails(
        &["network", "rm", "n1"],
        "network n1 is in use by container a",
    );
    // A stopped container holds nothing; rm removes the rest.
    env.ok(&["stop", "-t", "0", "a"]);
    assert_eq!(env.veths(), "");
    assert!(env.leases().is_empty() && env.netns_files().is_empty());
    env.ok(&["rm", "a"]);
    env.assert_clean();
    assert_eq!(env.ok(&["network", "rm", "n1"]), "n1\n");
    // prune: the unused networks berth wrote, not the one in use.
    env.ok(&["network", "create", "spare"]);
    env.ok(&["network", "create", "busy"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "holder",
        "--network",
        "busy",
        IMAGE,
        "sleep",
        "1000",
    ]);
    assert_eq!(env.ok(&["network", "prune"]), "berth\nspare\n");
    assert_eq!(
        env.ok(&["network", "ls", "-q"]),
        "berth\nbusy\n",
        "berth comes back on first use"
    );
    let busy = env.bridge("busy");
    env.ok(&["rm", "-f", "holder"]);
    assert_eq!(env.ok(&["network", "prune"]), "berth\nbusy\n");
    assert!(
        !env.links().contains(&format!(" {busy}:")),
        "bridge removed: {}",
        env.links()
    );
    env.fails(&["network", "inspect", "n1"], "no such network: n1");
}

#[test]
fn a_port_map_is_reachable_from_the_host_namespace() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "18081:80",
        "-p",
        "8000",
        IMAGE,
        "sh",
        "-c",
        "echo hello from web > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let settings = env.inspect("web")["NetworkSettings"].clone();
    let gw: std::net::Ipv4Addr = settings["Gateway"].as_str().unwrap().parse().unwrap();
    assert_eq!(settings["Ports"]["80/tcp"][0]["HostPort"], "18081");
    let picked: u16 = settings["Ports"]["8000/tcp"][0]["HostPort"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(picked > 1024, "a free host port was picked for -p 8000");
    let ps = env.ok(&["ps"]);
    assert!(ps.contains("0.0.0.0:18081->80/tcp"), "{ps}");
    // From the host namespace to a host address (the bridge's) on the host port.
    let got = env.in_host(move || {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match tcp_get((gw, 18081).into()) {
                Ok(body) => return Ok(body),
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => return Err(e.to_string()),
            }
        }
    });
    let body = got.unwrap();
    assert!(body.contains("hello from web"), "{body}");
    env.ok(&["rm", "-f", "web"]);
    env.assert_clean();
    let nat = Command::new("ip")
        .args(["netns", "exec", &env.ns, "iptables-save", "-t", "nat"])
        .output()
        .unwrap();
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(!nat.contains("18081"), "port map rules left: {nat}");
}

#[test]
fn an_internal_network_has_no_route_out() {
    let Some(env) = Env::new() else { return };
    // An address outside every container network, on the test's host.
    ip(&["-n", &env.ns, "addr", "add", "198.51.100.1/32", "dev", "lo"]);
    let probe = "ping -c1 -W2 198.51.100.1 >/dev/null 2>&1 && echo out || echo no-way-out";
    // The control: a normal network reaches it.
    assert_eq!(env.ok(&["run", "--rm", IMAGE, "sh", "-c", probe]), "out\n");
    env.ok(&[
        "network",
        "create",
        "--internal",
        "--subnet",
        "10.232.0.0/24",
        "inner",
    ]);
    let ls = env.ok(&["network", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("inner ") && l.ends_with("true")),
        "{ls}"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "peer",
        "--network",
        "inner",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let peer = env.address("peer");
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "inner",
        IMAGE,
        "sh",
        "-c",
        &format!(
            "ip route | grep -c default; {probe}; ping -c1 -W5 {peer} >/dev/null && echo peer-ok"
        ),
    ]);
    assert_eq!(out, "0\nno-way-out\npeer-ok\n");
    env.fails(
        &[
            "run",
            "--rm",
            "--network",
            "inner",
            "-p",
            "80",
            IMAGE,
            "true",
        ],
        "network inner has no portmap plugin",
    );
    env.ok(&["rm", "-f", "peer"]);
    env.assert_clean();
}

#[test]
fn del_works_from_the_cache_after_the_config_is_gone() {
    let Some(env) = Env::new() else { return };
    env.ok(&["network", "create", "--subnet", "10.233.0.0/24", "gone"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "--network",
        "gone",
        IMAGE,
        "sleep",
        "1000",
    ]);
    assert_ne!(env.veths(), "");
    std::fs::remove_file(env.path("data/networks/gone.conflist")).unwrap();
    env.ok(&["rm", "-f", "c"]);
    env.assert_clean();
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let Some(mut env) = Env::new() else { return };
    env.ok(&["network", "create", "--subnet", "10.234.0.0/16", "taken"]);
    let cases: &[(&[&str], &str)] = &[
        (
            &["run", "--rm", "--network", "nosuch", IMAGE, "true"],
            "no such network: nosuch",
        ),
        (
            &["run", "--rm", "--network", "a/b", IMAGE, "true"],
            "--network \"a/b\"",
        ),
        (
            &["run", "--rm", "-p", "80:70000", IMAGE, "true"],
            "-p \"80:70000\": container port must be",
        ),
        (
            &["run", "--rm", "-p", "80/sctp", IMAGE, "true"],
            "protocol must be tcp or udp",
        ),
        (
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "-p",
                "80",
                IMAGE,
                "true",
            ],
            "port maps need a bridge network",
        ),
        (
            &["run", "--rm", "--dns", "dns.example", IMAGE, "true"],
            "--dns \"dns.example\": not an IP address",
        ),
        (
            &["run", "--rm", "--add-host", "x", IMAGE, "true"],
            "--add-host \"x\"",
        ),
        (
            &["network", "create", "--subnet", "10.234.5.0/24", "over"],
            "overlaps network taken (10.234.0.0/16)",
        ),
        (
            &["network", "create", "--subnet", "10.1.2.3/8", "bits"],
            "host bits set",
        ),
        (
            &["network", "create", "--subnet", "nope", "cidr"],
            "--subnet \"nope\"",
        ),
        (
            &[
                "network",
                "create",
                "--subnet",
                "10.235.0.0/24",
                "--gateway",
                "10.9.9.9",
                "gw",
            ],
            "not a host address of 10.235.0.0/24",
        ),
        (
            &["network", "create", "taken"],
            "network taken already exists",
        ),
        (&["network", "create", "host"], "reserved"),
    ];
    for (args, want) in cases {
        env.fails(args, want);
    }
    assert_eq!(env.ok(&["network", "ls", "-q"]), "berth\ntaken\n");
    // A plugin missing from the plugin path: nothing runs, nothing is made.
    env.cni_path = env.path("empty").display().to_string();
    env.fails(
        &["run", "--rm", IMAGE, "true"],
        "CNI plugin bridge (network berth): not found in",
    );
    env.cni_path = "/usr/lib/cni".into();
    // A plugin that fails after bridge and host-local did their part: undone.
    env.fake_plugin(
        "broken",
        r#"cat >/dev/null; [ "$CNI_COMMAND" = DEL ] && exit 0
printf '%s' '{"cniVersion":"1.0.0","code":7,"msg":"cannot frob","details":"the frobnicator is gone"}'; exit 1"#,
    );
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "half",
        "plugins": [
            {"type": "bridge", "bridge": "halfbr0", "isGateway": true,
             "ipam": {"type": "host-local", "subnet": "10.236.0.0/24", "dataDir": env.path("data/cni/networks")}},
            {"type": "broken"}
        ]
    });
    std::fs::create_dir_all(env.path("cni")).unwrap();
    std::fs::write(env.path("cni/half.conflist"), conf.to_string()).unwrap();
    env.fails(
        &["run", "--rm", "--network", "half", IMAGE, "true"],
        "CNI plugin broken (ADD, network half): cannot frob: the frobnicator is gone",
    );
    // A plugin that hangs: killed at the deadline, the chain undone.
    env.fake_plugin("hang", "exec sleep 600");
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "stuck",
        "plugins": [
            {"type": "bridge", "bridge": "stuckbr0",
             "ipam": {"type": "host-local", "subnet": "10.237.0.0/24", "dataDir": env.path("data/cni/networks")}},
            {"type": "hang"}
        ]
    });
    std::fs::write(env.path("cni/stuck.conflist"), conf.to_string()).unwrap();
    env.fails(
        &[
            "run",
            "--rm",
            "--cni-timeout",
            "0.5",
            "--network",
            "stuck",
            IMAGE,
            "true",
        ],
        "CNI plugin hang (ADD, network stuck): no answer after 0.5 s, killed",
    );
    // `network rm` leaves files it did not write alone.
    env.fails(&["network", "rm", "half"], "not by berth");
    assert_eq!(env.container_dirs(), 0, "no container left");
    env.assert_clean();
}

#[test]
fn names_resolve_on_a_user_network_through_aardvark_dns() {
    let Some(env) = Env::new() else { return };
    if !Path::new("/usr/lib/podman/aardvark-dns").exists() {
        eprintln!("skipped: aardvark-dns is not installed (apt-get install aardvark-dns)");
        return;
    }
    env.ok(&["network", "create", "--subnet", "10.238.0.0/24", "named"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "named",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let db = env.address("db");
    assert!(
        env.aardvark().is_some(),
        "aardvark-dns started for the network"
    );
    env.ok(&[
        "run",
        "-d",
        "--name",
        "cache",
        "--network",
        "named",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let cache = env.address("cache");
    let out = env.ok(&[
        "run", "--rm", "--network", "named", IMAGE, "sh", "-c",
        "head -2 /etc/resolv.conf; nslookup db | grep -A1 '^Name:'; nslookup cache.dns.podman | grep -A1 '^Name:'; ping -c1 -W5 db >/dev/null && echo ping-by-name",
    ]);
    assert_eq!(
        out,
        format!("search dns.podman\nnameserver 10.238.0.1\nName:\tdb.dns.podman\nAddress: {db}\nName:\tcache.dns.podman\nAddress: {cache}\nping-by-name\n")
    );
    // The default network has no name service, as with Docker's default bridge.
    let resolv = env.ok(&["run", "--rm", IMAGE, "cat", "/etc/resolv.conf"]);
    assert!(!resolv.contains("dns.podman"), "{resolv}");
    env.ok(&["rm", "-f", "db"]);
    let gone = env.ok(&[
        "run",
        "--rm",
        "--network",
        "named",
        IMAGE,
        "sh",
        "-c",
        "nslookup db.dns.podman >/dev/null 2>&1 && echo still-there || echo gone",
    ]);
    assert_eq!(gone, "gone\n");
    env.ok(&["rm", "-f", "cache"]);
    let until = Instant::now() + Duration::from_secs(5);
    while env.aardvark().is_some() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(
        env.aardvark(),
        None,
        "aardvark-dns exits with the last container"
    );
    env.assert_clean();
}

#[test]
fn a_run_killed_in_the_middle_of_add_is_undone_by_system_prune() {
    let Some(mut env) = Env::new() else { return };
    let pidfile = env.path("slow.pid");
    // Fake plugin: ADD hangs (after the real bridge plugin made the veth and took a
    // lease) until the test kills berth; DEL succeeds.
    env.fake_plugin(
        "slow",
        &format!(
            "cat >/dev/null; [ \"$CNI_COMMAND\" = DEL ] && exit 0\necho $$ > {}; exec sleep 600",
            pidfile.display()
        ),
    );
    let conf = serde_json::json!({
        "cniVersion": "1.0.0", "name": "slowlist",
        "plugins": [
            {"type": "bridge", "bridge": "slowbr0", "isGateway": true,
             "ipam": {"type": "host-local", "subnet": "10.239.0.0/24", "dataDir": env.path("data/cni/networks")}},
            {"type": "slow"}
        ]
    });
    std::fs::create_dir_all(env.path("cni")).unwrap();
    std::fs::write(env.path("cni/slowlist.conflist"), conf.to_string()).unwrap();
    let mut child = Command::new("nsenter")
        .arg(format!("--net=/run/netns/{}", env.ns))
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["run", "--rm", "--network", "slowlist", IMAGE, "true"])
        .env("BERTH_DATA_ROOT", env.path("data"))
        .env("BERTH_ROOT", env.path("run"))
        .env("BERTH_CNI_CONFIG_DIR", env.path("cni"))
        .env("BERTH_CNI_PATH", &env.cni_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The shell creates the file before it writes the pid: wait for a whole line.
    let until = Instant::now() + Duration::from_secs(20);
    let read_pid = || {
        std::fs::read_to_string(&pidfile)
            .ok()
            .filter(|s| s.ends_with('\n'))
    };
    while read_pid().is_none() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    let plugin_pid = read_pid().expect("the slow plugin ran");
    child.kill().unwrap();
    child.wait().unwrap();
    // The plugin runs in a process group of its own: it outlives berth.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(plugin_pid.trim().parse().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_ne!(env.veths(), "", "bridge's veth is there");
    assert!(!env.leases().is_empty());
    // `system prune` reclaims the interrupted create's attachment and namespace, then
    // the image store's prune removes the dead container.
    let pruned = env.ok(&["system", "prune", "-f"]);
    assert!(pruned.starts_with("Reclaimed network of: "), "{pruned}");
    assert!(
        pruned.contains("Deleted 1 containers whose creation was interrupted"),
        "{pruned}"
    );
    env.assert_clean();
    assert_eq!(env.ok(&["ps", "-aq"]), "");
}

#[test]
fn the_default_subnet_avoids_routes_in_use() {
    let Some(env) = Env::new() else { return };
    // 10.88.0.0/16 (the first candidate, podman's too) is routed on this host already.
    // (A veth pair inside the test namespace: lo's addresses route in the local table
    // only, and this kernel has no dummy driver.)
    ip(&[
        "-n", &env.ns, "link", "add", "used0", "type", "veth", "peer", "name", "used1",
    ]);
    ip(&["-n", &env.ns, "addr", "add", "10.88.0.1/16", "dev", "used0"]);
    ip(&["-n", &env.ns, "link", "set", "used0", "up"]);
    ip(&["-n", &env.ns, "link", "set", "used1", "up"]);
    let ls = env.ok(&["network", "ls"]);
    assert!(
        ls.lines().any(|l| l.starts_with("berth ")
            && l.contains("10.89.0.0/16")
            && l.contains("10.89.0.1")),
        "{ls}"
    );
    env.ok(&["network", "create", "second"]);
    let ls = env.ok(&["network", "ls"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("second ") && l.contains("10.90.0.0/16")),
        "{ls}"
    );
    let route = env.ok(&["run", "--rm", IMAGE, "ip", "route"]);
    assert!(route.starts_with("default via 10.89.0.1"), "{route}");
    // The guard counts veths as leftovers: this one is the test's own.
    ip(&["-n", &env.ns, "link", "del", "used0"]);
}

#[test]
fn two_data_roots_on_one_host_keep_their_own_bridges() {
    let Some(env) = Env::new() else { return };
    let other = |args: &[&str]| {
        let r = env.berth_at(SECOND_ROOT, args);
        assert_eq!(r.code, 0, "second root: berth {args:?}: {}", r.stderr);
        r.stdout
    };
    other(&["import", layout().to_str().unwrap(), IMAGE]);
    env.ok(&["run", "-d", "--name", "a", IMAGE, "sleep", "1000"]);
    other(&["run", "-d", "--name", "b", IMAGE, "sleep", "1000"]);
    let mine = env.bridge("berth");
    let v: Value = serde_json::from_str(&other(&["network", "inspect", "berth"])).unwrap();
    let theirs = v[0]["Summary"]["bridge"].as_str().unwrap().to_string();
    assert_ne!(mine, theirs, "one bridge for two data roots");
    let links = env.links();
    assert!(links.contains(&format!(" {mine}:")) && links.contains(&format!(" {theirs}:")));
    // The first root's prune deletes its own bridge only: b keeps its gateway.
    env.ok(&["rm", "-f", "a"]);
    assert_eq!(env.ok(&["network", "prune"]), "berth\n");
    assert!(
        !env.links().contains(&format!(" {mine}:")),
        "{}",
        env.links()
    );
    let v: Value = serde_json::from_str(&other(&["inspect", "b"])).unwrap();
    let gw = v[0]["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    other(&["container", "exec", "b", "ping", "-c1", "-W5", &gw]);
    other(&["rm", "-f", "b"]);
    assert_eq!(other(&["network", "prune"]), "berth\n");
    assert!(
        !env.links().contains(&format!(" {theirs}:")),
        "{}",
        env.links()
    );
}

/// GET `path` from `addr` in the test's host namespace, retrying while the server starts.
fn host_get(env: &Env, addr: std::net::SocketAddr) -> String {
    env.in_host(move || {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            match tcp_get(addr) {
                Ok(body) => return body,
                Err(_) if Instant::now() < until => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => panic!("GET {addr}: {e}"),
            }
        }
    })
}

#[test]
fn shared_namespaces_fixed_addresses_and_port_ranges() {
    let Some(env) = Env::new() else { return };
    env.ok(&["network", "create", "--subnet", "10.232.0.0/24", "n2"]);
    let serve = "echo served > /tmp/index.html; httpd -p 80 -h /tmp && httpd -p 81 -h /tmp && exec sleep 1000";
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "n2",
        "--ip",
        "10.232.0.50",
        "--mac-address",
        "02:42:0A:E8:00:32",
        "-p",
        "18090-18091:80-81",
        IMAGE,
        "sh",
        "-c",
        serve,
    ]);
    let s = env.inspect("web")["NetworkSettings"].clone();
    assert_eq!(
        (&s["IPAddress"], &s["MacAddress"]),
        (&"10.232.0.50".into(), &"02:42:0a:e8:00:32".into())
    );
    let link = env.ok(&[
        "container",
        "exec",
        "web",
        "ip",
        "-o",
        "link",
        "show",
        "eth0",
    ]);
    assert!(link.contains("link/ether 02:42:0a:e8:00:32"), "{link}");
    let ps = env.ok(&["ps"]);
    assert!(
        ps.contains("0.0.0.0:18090->80/tcp, 0.0.0.0:18091->81/tcp"),
        "{ps}"
    );
    let gw: std::net::Ipv4Addr = "10.232.0.1".parse().unwrap();
    for port in [18090, 18091] {
        assert!(host_get(&env, (gw, port).into()).contains("served"));
    }
    // container:NAME shares web's stack: its address, its loopback, its files.
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "container:web",
        IMAGE,
        "sh",
        "-c",
        "wget -qO- http://127.0.0.1:81/index.html; ip -o -4 addr show eth0; cat /etc/hostname",
    ]);
    let web_id = env.inspect("web")["Id"].as_str().unwrap().to_string();
    assert!(
        out.starts_with("served\n") && out.contains("10.232.0.50/24"),
        "{out}"
    );
    assert!(
        out.ends_with(&format!("{}\n", &web_id[..12])),
        "web's hostname: {out}"
    );
    // ns:PATH joins a namespace by its file: here web's.
    let sandbox = s["SandboxKey"].as_str().unwrap().to_string();
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        &format!("ns:{sandbox}"),
        IMAGE,
        "ip",
        "-o",
        "-4",
        "addr",
    ]);
    assert!(out.contains("10.232.0.50/24"), "{out}");
    // Bad input: one line each, nothing made.
    let n = env.container_dirs();
    for (args, want) in [
        (
            vec!["--network", "container:web", "--hostname", "x"],
            "--hostname \"x\": the joined container's namespace decides this",
        ),
        (vec!["--network", "container:nosuch"], "nosuch"),
        (
            vec!["--network", "ns:/etc/hostname"],
            "not a namespace file",
        ),
        (
            vec!["--network", "ns:/proc/self/ns/uts"],
            "not a network one",
        ),
        (
            vec!["--network", "none", "--ip", "10.232.0.9"],
            "--ip \"10.232.0.9\": needs a bridge network, not --network none",
        ),
        (
            vec!["--network", "n2", "--ip", "10.99.0.9"],
            "not a host address of network n2 (10.232.0.0/24)",
        ),
        (
            vec!["--network", "n2", "--ip", "10.232.0.1"],
            "is network n2's gateway",
        ),
        (
            vec!["--network", "n2", "--ip", "10.232.0.50"],
            "10.232.0.50",
        ),
        (vec!["--mac-address", "01:00:5e:00:00:01"], "multicast"),
        (vec!["-p", "18092-18093:80"], "give ranges of one length"),
        (
            vec!["-p", "18090:80"],
            "host port 18090/tcp is mapped by container web already",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        if !args.contains(&"--network") {
            a.extend(["--network", "n2"]);
        }
        a.extend(args);
        a.extend([IMAGE, "true"]);
        env.fails(&a, want);
    }
    assert_eq!(env.container_dirs(), n, "a failed run left a container");
    env.ok(&["rm", "-f", "web"]);
    env.assert_clean();
    env.fails(
        &["run", "--rm", "--network", "container:web", IMAGE, "true"],
        "web",
    );
}

#[test]
fn publish_all_maps_the_images_exposed_ports() {
    let Some(env) = Env::new() else { return };
    let exposed = env.path("exposed");
    let cp = Command::new("cp")
        .arg("-a")
        .arg(layout())
        .arg(&exposed)
        .status()
        .unwrap();
    assert!(cp.success());
    let umoci = Command::new("umoci")
        .args([
            "config",
            "--image",
            &format!("{}:latest", exposed.display()),
        ])
        .args([
            "--config.exposedports",
            "80/tcp",
            "--config.exposedports",
            "53/udp",
        ])
        .args(["--config.exposedports", "7000-7001/tcp"])
        .output()
        .unwrap();
    assert!(
        umoci.status.success(),
        "{}",
        String::from_utf8_lossy(&umoci.stderr)
    );
    env.ok(&["import", exposed.to_str().unwrap(), "exposed:latest"]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "pub",
        "-P",
        "-p",
        "18094:80",
        "exposed:latest",
        "sh",
        "-c",
        "echo exposed > /tmp/index.html; exec httpd -f -p 80 -h /tmp",
    ]);
    let s = env.inspect("pub")["NetworkSettings"]["Ports"].clone();
    let ports = s.as_object().unwrap();
    let mut keys: Vec<&String> = ports.keys().collect();
    keys.sort();
    assert_eq!(keys, ["53/udp", "7000/tcp", "7001/tcp", "80/tcp"], "{s}");
    assert_eq!(
        s["80/tcp"].as_array().unwrap().len(),
        1,
        "-p 18094:80 is not mapped twice"
    );
    assert_eq!(s["80/tcp"][0]["HostPort"], "18094");
    for k in ["53/udp", "7000/tcp", "7001/tcp"] {
        let hp: u16 = s[k][0]["HostPort"].as_str().unwrap().parse().unwrap();
        assert!(hp > 1024, "{k}: {hp}");
    }
    let gw: std::net::Ipv4Addr = env.inspect("pub")["NetworkSettings"]["Gateway"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(host_get(&env, (gw, 18094).into()).contains("exposed"));
    env.fails(
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-P",
            "exposed:latest",
            "true",
        ],
        "port maps need a bridge network",
    );
    env.ok(&["rm", "-f", "pub"]);
    env.assert_clean();
}

#[test]
fn the_next_command_reclaims_what_a_killed_monitor_left() {
    let Some(env) = Env::new() else { return };
    env.ok(&["run", "-d", "--name", "m", IMAGE, "sleep", "1000"]);
    let c = env.inspect("m");
    let id = c["Id"].as_str().unwrap().to_string();
    let init = c["State"]["Pid"].as_i64().unwrap() as i32;
    let meta: Value = serde_json::from_slice(
        &std::fs::read(env.path("data/containers").join(&id).join("config.json")).unwrap(),
    )
    .unwrap();
    let monitor = meta["state"]["monitor_pid"].as_i64().unwrap() as i32;
    assert!(monitor > 0 && init > 0, "{meta}");
    // kill -9 the monitor, then the container: nobody records the exit or detaches.
    for pid in [monitor, init] {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )
        .unwrap();
    }
    let until = Instant::now() + Duration::from_secs(10);
    while Path::new(&format!("/proc/{init}")).exists() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_ne!(env.veths(), "", "the veth outlived the monitor");
    // Any next command (here ps) finds the exited-but-attached container and detaches it.
    let ps = env.ok(&["ps", "-a"]);
    assert!(ps.contains("Exited"), "{ps}");
    env.assert_clean();
    assert_eq!(env.inspect("m")["NetworkSettings"]["IPAddress"], "");
    env.ok(&["rm", "m"]);
    env.assert_clean();
}

#[test]
fn ipv6_reaches_between_containers_and_the_default_network_is_dual_stack() {
    let Some(env) = Env::new() else { return };
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.233.0.0/24",
        "--subnet",
        "fd00:233::/64",
        "n6",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "a",
        "--network",
        "n6",
        IMAGE,
        "sleep",
        "1000",
    ]);
    let s = env.inspect("a")["NetworkSettings"].clone();
    let a6 = s["GlobalIPv6Address"].as_str().unwrap().to_string();
    assert!(a6.starts_with("fd00:233::"), "{s}");
    assert_eq!(
        (&s["GlobalIPv6PrefixLen"], &s["IPv6Gateway"]),
        (&64.into(), &"fd00:233::1".into())
    );
    assert!(
        s["IPAddress"].as_str().unwrap().starts_with("10.233.0."),
        "{s}"
    );
    // Duplicate address detection may hold a fresh address back for a moment.
    let ping = format!("for i in 1 2 3 4 5; do ping -6 -c1 -W2 {a6} >/dev/null && echo reached && exit; sleep 1; done");
    assert_eq!(
        env.ok(&["run", "--rm", "--network", "n6", IMAGE, "sh", "-c", &ping]),
        "reached\n"
    );
    // The default network has an IPv6 range and route too.
    let out = env.ok(&[
        "run",
        "--rm",
        IMAGE,
        "sh",
        "-c",
        "ip -6 -o addr show eth0 scope global; ip -6 route show default",
    ]);
    assert!(
        out.contains("inet6 fd") && out.contains("default via fd"),
        "{out}"
    );
    env.fails(
        &["network", "create", "--subnet", "fd00:233:0:0:1::/80", "n7"],
        "overlaps network n6 (fd00:233::/64)",
    );
    env.fails(
        &["network", "create", "--subnet", "fd00::1/64", "n7"],
        "host bits set",
    );
    env.ok(&["rm", "-f", "a"]);
    env.assert_clean();
}

/// A namespace beyond the test's host: reachable from it over a veth (198.51.100.0/24),
/// with no route back to any container subnet, so only masqueraded traffic gets answers.
struct Outside(String, String);

impl Outside {
    fn new(env: &Env) -> Outside {
        let out = Outside(format!("{}-out", env.ns), env.ns.clone());
        ip(&["netns", "add", &out.0]);
        ip(&[
            "-n", &env.ns, "link", "add", "vout", "type", "veth", "peer", "name", "vin", "netns",
            &out.0,
        ]);
        ip(&[
            "-n",
            &env.ns,
            "addr",
            "add",
            "198.51.100.1/24",
            "dev",
            "vout",
        ]);
        ip(&["-n", &env.ns, "link", "set", "vout", "up"]);
        ip(&["-n", &out.0, "addr", "add", "198.51.100.2/24", "dev", "vin"]);
        ip(&["-n", &out.0, "link", "set", "vin", "up"]);
        out
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        // Deleting the pair now: a namespace's own links go only when the kernel gets
        // round to destroying it.
        let _ = Command::new("ip")
            .args(["-n", &self.1, "link", "del", "vout"])
            .status();
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn outbound_traffic_is_forwarded_and_masqueraded_by_rules_per_network() {
    let Some(env) = Env::new() else { return };
    let outside = Outside::new(&env);
    // As Docker leaves a host: forwarding dropped unless a rule accepts it.
    ip(&[
        "netns", "exec", &env.ns, "iptables", "-P", "FORWARD", "DROP",
    ]);
    ip(&[
        "netns",
        "exec",
        &env.ns,
        "ip6tables",
        "-P",
        "FORWARD",
        "DROP",
    ]);
    let nat = || {
        let o = Command::new("ip")
            .args(["netns", "exec", &env.ns, "iptables-save", "-t", "nat"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("berth:berth") && l.contains("MASQUERADE"))
            .count()
    };
    let forward = || {
        let o = Command::new("ip")
            .args(["netns", "exec", &env.ns, "iptables-save", "-t", "filter"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| l.contains("berth:berth") && l.starts_with("-A FORWARD"))
            .count()
    };
    for _ in 0..2 {
        let out = env.ok(&["run", "--rm", IMAGE, "ping", "-c1", "-W5", "198.51.100.2"]);
        assert!(out.contains("1 packets received"), "{out}");
    }
    assert_eq!(nat(), 1, "one rule for the network, not one per container");
    assert_eq!(forward(), 2, "accept from the subnet, and replies to it");
    env.ok(&["run", "-d", "--name", "a", IMAGE, "sleep", "1000"]);
    env.ok(&["rm", "-f", "a"]);
    assert_eq!(nat(), 1, "the rule stays with the network");
    assert_eq!(env.ok(&["network", "prune"]), "berth\n");
    assert_eq!((nat(), forward()), (0, 0), "network rm removes them");
    drop(outside); // its veth pair goes with it
    env.assert_clean();
}
