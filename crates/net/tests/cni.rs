//! CNI invocation against the real plugins of /usr/lib/cni, as root. Every test makes
//! its own "host" network namespace (a [`NetNs`] under a temp dir) and runs the plugins
//! from a thread inside it, so bridges, veths and iptables rules live there and vanish
//! with it; the machine's own interfaces are never touched. Failure and hang cases use
//! fake plugins (shell scripts in a temp CNI_PATH), since a real plugin cannot be made
//! to hang or fail on demand.
//!
//! Run with `cargo test -p berth-net --test cni`.

#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_net::{conflist, Cni, Error, NetNs, Network, PortMapping, Request};
use serde_json::{json, Value};
use tempfile::TempDir;

const PLUGINS: &str = "/usr/lib/cni";

struct Host {
    dir: TempDir,
    ns: NetNs,
}

impl Host {
    fn new() -> Option<Host> {
        if !nix::unistd::geteuid().is_root() || !Path::new(PLUGINS).join("bridge").exists() {
            eprintln!("skipped: needs root and containernetworking-plugins");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("berth-net-")
            .tempdir()
            .unwrap();
        let ns = NetNs::create(dir.path(), "host").unwrap();
        Some(Host { dir, ns })
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn cni(&self, extra: Option<&Path>) -> Cni {
        let mut dirs = vec![PathBuf::from(PLUGINS)];
        dirs.extend(extra.map(Path::to_path_buf));
        Cni::new(dirs, self.path("results"))
    }

    /// A berth bridge network written to `<tmp>/<name>.conflist`.
    fn network(&self, name: &str, subnet: &str, extra: &[Value]) -> Network {
        let s: berth_net::Subnet = subnet.parse().unwrap();
        let mut v = conflist(
            name,
            "tbr0",
            (s, s.first_host()),
            None,
            false,
            &self.path("ipam"),
        );
        v["plugins"]
            .as_array_mut()
            .unwrap()
            .extend(extra.iter().cloned());
        let p = self.path(&format!("{name}.conflist"));
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        Network::load(&p).unwrap()
    }

    /// Run `f` with the plugins' "host" being this test's namespace.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.ns.run(move || Ok(f())).unwrap()
    }

    /// Interfaces of the host namespace.
    fn links(&self) -> Vec<String> {
        self.run(|| {
            // SAFETY: if_nameindex returns an array ending with a zero entry, freed below.
            unsafe {
                let list = libc::if_nameindex();
                let mut out = Vec::new();
                let mut p = list;
                while !p.is_null() && (*p).if_index != 0 {
                    out.push(
                        std::ffi::CStr::from_ptr((*p).if_name)
                            .to_string_lossy()
                            .into_owned(),
                    );
                    p = p.add(1);
                }
                if !list.is_null() {
                    libc::if_freenameindex(list);
                }
                out
            }
        })
    }

    fn veths(&self) -> Vec<String> {
        self.links()
            .into_iter()
            .filter(|l| l.starts_with("veth"))
            .collect()
    }

    /// IPs host-local holds for network `name` (its other files are bookkeeping).
    fn leases(&self, name: &str) -> Vec<String> {
        match std::fs::read_dir(self.path("ipam").join(name)) {
            Ok(d) => d
                .filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    fn container(&self, name: &str) -> NetNs {
        NetNs::create(&self.path("netns"), name).unwrap()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        for e in std::fs::read_dir(self.path("netns"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = NetNs { path: e.path() }.remove();
        }
        let _ = self.ns.remove();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        if !std::thread::panicking() {
            assert!(
                !mounts.contains(self.dir.path().to_str().unwrap()),
                "mounts left"
            );
        }
    }
}

fn request(id: &str, ns: &NetNs) -> Request {
    Request {
        container_id: id.into(),
        netns: Some(ns.path.clone()),
        ifname: "eth0".into(),
        ..Default::default()
    }
}

fn script(dir: &Path, name: &str, body: &str) {
    std::fs::create_dir_all(dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn attach_check_detach_with_the_real_chain() {
    let Some(h) = Host::new() else { return };
    let net = h.network("t1", "10.123.0.0/24", &[]);
    let c = h.container("c1");
    let cni = h.cni(None);
    let mut req = request("c1", &c);
    let mut pm: PortMapping = "18080:80".parse().unwrap();
    pm.assign().unwrap();
    req.capabilities
        .insert("portMappings".into(), json!([pm.to_cni()]));
    let (cni2, net2, req2) = (cni.clone(), net.clone(), req.clone());
    let a = h.run(move || cni2.attach(&net2, &req2)).unwrap();
    let (ip, prefix) = a.ipv4().unwrap();
    assert_eq!((ip.to_string(), prefix), ("10.123.0.2".to_string(), 24));
    assert_eq!(a.gateway().as_deref(), Some("10.123.0.1"));
    assert!(a.mac().is_some_and(|m| m.len() == 17));
    assert_eq!(h.veths().len(), 1);
    assert!(h.links().contains(&"tbr0".to_string()));
    assert_eq!(h.leases("t1"), ["10.123.0.2"]);
    // The container's side: eth0 with the address.
    let addrs = c
        .run(|| Ok(std::net::UdpSocket::bind("10.123.0.2:0").is_ok()))
        .unwrap();
    assert!(addrs, "eth0 holds 10.123.0.2 in the container namespace");
    // CHECK of an attachment without port maps (portmap 1.1.1's CHECK looks for an
    // IPv6 chain that its ADD never made when there are port maps: a plugin bug).
    let c_b = h.container("c1b");
    let req_b = request("c1b", &c_b);
    let (cni2, net2, req2) = (cni.clone(), net.clone(), req_b.clone());
    h.run(move || cni2.attach(&net2, &req2)).unwrap();
    let (cni2, req2) = (cni.clone(), req_b.clone());
    h.run(move || cni2.check("t1", &req2)).unwrap();
    let (cni2, req2) = (cni.clone(), req_b.clone());
    h.run(move || cni2.detach("t1", &req2, None)).unwrap();
    // DEL works from the cache after the config file is gone.
    std::fs::remove_file(net.source.as_ref().unwrap()).unwrap();
    let (cni2, req2) = (cni.clone(), req.clone());
    h.run(move || cni2.detach("t1", &req2, None)).unwrap();
    assert!(h.veths().is_empty(), "{:?}", h.veths());
    assert!(h.leases("t1").is_empty());
    assert!(!cni.is_attached("t1", "c1", "eth0"));
    // A second DEL with nothing cached is a no-op.
    let (cni2, req2) = (cni.clone(), req.clone());
    h.run(move || cni2.detach("t1", &req2, None)).unwrap();
}

#[test]
fn plugins_get_name_version_and_prev_result() {
    let Some(h) = Host::new() else { return };
    let fake = h.path("fake");
    let seen = h.path("seen.json");
    // Prints back its prevResult as its own result (what a pass-through plugin does).
    script(
        &fake,
        "spy",
        &format!(
            "cat > {s}; env | grep ^CNI_ | sort > {s}.$CNI_COMMAND; [ \"$CNI_COMMAND\" = ADD ] && jq -c .prevResult {s}; exit 0",
            s = seen.display()
        ),
    );
    let net = h.network("t2", "10.124.0.0/24", &[json!({"type": "spy", "x": 1})]);
    let c = h.container("c2");
    let cni = h.cni(Some(&fake));
    let mut req = request("c2", &c);
    req.args = vec![
        ("IgnoreUnknown".into(), "1".into()),
        ("K8S_POD_NAME".into(), "p".into()),
    ];
    let (cni2, net2, req2) = (cni.clone(), net.clone(), req.clone());
    let a = h.run(move || cni2.attach(&net2, &req2)).unwrap();
    let env = std::fs::read_to_string(format!("{}.ADD", seen.display())).unwrap();
    assert_eq!(
        env,
        format!(
            "CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p\nCNI_COMMAND=ADD\nCNI_CONTAINERID=c2\nCNI_IFNAME=eth0\nCNI_NETNS={}\nCNI_PATH={}:{}\n",
            c.path.display(),
            PLUGINS,
            fake.display()
        )
    );
    let conf: Value = serde_json::from_slice(&std::fs::read(&seen).unwrap()).unwrap();
    assert_eq!(
        (conf["name"].as_str(), conf["cniVersion"].as_str()),
        (Some("t2"), Some("1.0.0"))
    );
    assert_eq!(conf["x"], 1);
    assert_eq!(conf["prevResult"]["ips"][0]["address"], "10.124.0.2/24");
    assert_eq!(a.ipv4().unwrap().0.to_string(), "10.124.0.2");
    // DEL with a bare request: the arguments come from the cache.
    let (cni2, req2) = (cni.clone(), request("c2", &c));
    h.run(move || cni2.detach("t2", &req2, None)).unwrap();
    let conf: Value = serde_json::from_slice(&std::fs::read(&seen).unwrap()).unwrap();
    assert_eq!(
        conf["prevResult"]["ips"][0]["address"], "10.124.0.2/24",
        "DEL gets the cached result"
    );
    let env = std::fs::read_to_string(format!("{}.DEL", seen.display())).unwrap();
    assert!(
        env.contains("CNI_ARGS=IgnoreUnknown=1;K8S_POD_NAME=p\n"),
        "DEL gets the cached CNI_ARGS: {env}"
    );
    assert!(h.veths().is_empty() && h.leases("t2").is_empty());
}

#[test]
fn a_failing_plugin_is_one_line_and_undone() {
    let Some(h) = Host::new() else { return };
    let fake = h.path("fake");
    script(
        &fake,
        "broken",
        "cat >/dev/null; [ \"$CNI_COMMAND\" = DEL ] && exit 0\nprintf '%s' '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"cannot frob\",\"details\":\"the frobnicator\\nis gone\"}'; exit 1",
    );
    let net = h.network("t3", "10.125.0.0/24", &[json!({"type": "broken"})]);
    let c = h.container("c3");
    let cni = h.cni(Some(&fake));
    let req = request("c3", &c);
    let (cni2, req2) = (cni.clone(), req.clone());
    let e = h.run(move || cni2.attach(&net, &req2)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "CNI plugin broken (ADD, network t3): cannot frob: the frobnicator is gone"
    );
    assert!(
        h.veths().is_empty(),
        "the bridge plugin's veth was deleted again"
    );
    assert!(h.leases("t3").is_empty(), "and its lease released");
    assert!(!cni.is_attached("t3", "c3", "eth0"));
}

#[test]
fn a_hung_plugin_is_killed_at_the_deadline() {
    let Some(h) = Host::new() else { return };
    let fake = h.path("fake");
    let pidfile = h.path("pid");
    script(
        &fake,
        "hang",
        &format!("echo $$ > {}; exec sleep 600", pidfile.display()),
    );
    let net = Network::parse(
        br#"{"cniVersion":"1.0.0","name":"t4","plugins":[{"type":"hang"}]}"#,
        None,
    )
    .unwrap();
    let c = h.container("c4");
    let mut cni = h.cni(Some(&fake));
    cni.timeout = Duration::from_millis(300);
    let req = request("c4", &c);
    let e = h.run(move || cni.attach(&net, &req)).unwrap_err();
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "CNI plugin hang (ADD, network t4): no answer after 0.3 s, killed"
    );
    let pid = std::fs::read_to_string(&pidfile).unwrap();
    assert!(
        !Path::new(&format!("/proc/{}", pid.trim())).exists(),
        "the plugin is gone"
    );
}

#[test]
fn a_missing_plugin_runs_nothing() {
    let Some(h) = Host::new() else { return };
    let net = h.network("t5", "10.126.0.0/24", &[json!({"type": "no-such-plugin"})]);
    let c = h.container("c5");
    let cni = h.cni(None);
    let req = request("c5", &c);
    let e = h.run(move || cni.attach(&net, &req)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "CNI plugin no-such-plugin (network t5): not found in /usr/lib/cni (install containernetworking-plugins or set --cni-path)"
    );
    assert!(h.veths().is_empty() && h.leases("t5").is_empty());
}

#[test]
fn version_of_the_real_bridge() {
    let Some(h) = Host::new() else { return };
    let v = h.cni(None).versions("bridge").unwrap();
    assert!(v.iter().any(|v| v == "1.0.0"), "{v:?}");
}
