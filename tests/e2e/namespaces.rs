//! Namespaces: new ones differ from the host's, joined ones are the ones named by path,
//! and the namespace-scoped settings (hostname, id maps, time offsets) show inside.

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::json;

use crate::common::*;

/// Reads `ns` links inside the container and returns them in `kinds` order.
fn container_ns(b: &mut Bundle, kinds: &[&str]) -> Vec<String> {
    let script = kinds
        .iter()
        .map(|k| format!("readlink /proc/self/ns/{k}"))
        .collect::<Vec<_>>()
        .join("; ");
    b.sh(&script);
    let out = b.run().ok();
    out.stdout.lines().map(str::to_owned).collect()
}

#[test]
fn every_new_namespace_differs_from_the_host() {
    let mut b = Bundle::new();
    let kinds = ["pid", "net", "ipc", "uts", "mnt", "cgroup"];
    let inside = container_ns(&mut b, &kinds);
    assert_eq!(inside.len(), kinds.len(), "{inside:?}");
    for (kind, link) in kinds.iter().zip(&inside) {
        assert!(link.starts_with(&format!("{kind}:[")), "{link}");
        assert_ne!(*link, host_ns(kind), "{kind} namespace is the host's");
    }
}

#[test]
fn namespaces_not_listed_are_shared_with_the_host() {
    let mut b = Bundle::new();
    b.drop_namespace("network").drop_namespace("ipc");
    let inside = container_ns(&mut b, &["net", "ipc", "uts"]);
    assert_eq!(inside[0], host_ns("net"));
    assert_eq!(inside[1], host_ns("ipc"));
    assert_ne!(inside[2], host_ns("uts"));
}

/// A named network namespace made with `ip netns add`, deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new() -> NetNs {
        let name = unique_id("netns");
        output_of(Command::new("ip").args(["netns", "add", &name])).ok();
        NetNs(name)
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = output_of(Command::new("ip").args(["netns", "del", &self.0]));
    }
}

#[test]
fn joins_a_named_network_namespace_by_path() {
    let ns = NetNs::new();
    let ino = std::fs::metadata(ns.path()).unwrap().ino();
    let mut b = Bundle::new();
    b.namespace("network", Some(&ns.path()));
    let inside = container_ns(&mut b, &["net"]);
    assert_eq!(inside, [format!("net:[{ino}]")]);
}

#[test]
fn joins_the_network_namespace_of_a_running_process() {
    let helper = Helper::spawn(Command::new("unshare").args(["--net", "sleep", "1000"]));
    let link = format!("/proc/{}/ns/net", helper.pid());
    wait_until("helper unshared its netns", || {
        std::fs::read_link(&link)
            .map(|l| l.to_string_lossy() != host_ns("net"))
            .unwrap_or(false)
    });
    let want = std::fs::read_link(&link)
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let mut b = Bundle::new();
    b.namespace("network", Some(&link));
    assert_eq!(container_ns(&mut b, &["net"]), [want]);
}

#[test]
fn joining_a_namespace_of_the_wrong_type_fails() {
    let mut b = Bundle::new();
    b.namespace("network", Some("/proc/self/ns/uts"));
    let out = b.run().failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn hostname_and_domainname_are_set_in_the_uts_namespace() {
    let mut b = Bundle::new();
    b.spec["hostname"] = json!("e2e-host");
    b.spec["domainname"] = json!("e2e.example");
    b.sh("hostname; cat /proc/sys/kernel/domainname");
    let out = b.run().ok();
    assert_eq!(out.stdout, "e2e-host\ne2e.example\n");
}

#[test]
fn the_user_process_is_pid_1() {
    let mut b = Bundle::new();
    b.sh("echo $$; cat /proc/1/cmdline | tr '\\0' ' '; echo; ls /proc | grep -c '^[0-9]'");
    let out = b.run().ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "1");
    assert!(lines[1].starts_with("sh -c echo $$"), "{lines:?}");
    // Only the shell and its `ls` and `grep` children are visible.
    let visible: usize = lines[2].parse().unwrap();
    assert!(visible <= 4, "host processes visible: {visible}");
}

#[test]
fn user_namespace_maps_ids() {
    let mut b = Bundle::new();
    b.namespace("user", None);
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.sh("cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g; readlink /proc/self/ns/user");
    let out = b.run().ok();
    let lines: Vec<Vec<&str>> = out
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(lines[0], ["0", "100000", "65536"], "{out:?}");
    assert_eq!(lines[1], ["0", "100000", "65536"]);
    assert_eq!(lines[2], ["0"]);
    assert_eq!(lines[3], ["0"]);
    assert_ne!(lines[4][0], host_ns("user"));
}

#[test]
fn user_namespace_process_is_unprivileged_on_the_host() {
    let mut b = Bundle::new();
    b.namespace("user", None);
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.spec["process"]["args"] = json!(["sleep", "1000"]);
    let c = b.create("userns");
    c.start().ok();
    let status = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).unwrap();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
    assert_eq!(
        uid_line.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["100000"; 4],
        "root inside is uid 100000 outside"
    );
}

#[test]
fn time_namespace_offsets_show_in_uptime() {
    const OFFSET: u64 = 10 * 86400;
    let host_uptime = || -> f64 {
        let s = std::fs::read_to_string("/proc/uptime").unwrap();
        s.split_whitespace().next().unwrap().parse().unwrap()
    };
    let mut b = Bundle::new();
    b.namespace("time", None);
    b.spec["linux"]["timeOffsets"] = json!({
        "boottime": {"secs": OFFSET, "nanosecs": 0},
        "monotonic": {"secs": OFFSET, "nanosecs": 0}
    });
    b.sh("cat /proc/uptime; readlink /proc/self/ns/time");
    let before = host_uptime();
    let out = b.run().ok();
    let after = host_uptime();
    let mut lines = out.stdout.lines();
    let inside: f64 = lines
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        inside >= before + OFFSET as f64 - 0.01 && inside <= after + OFFSET as f64 + 0.01,
        "uptime inside {inside}, host {before}..{after}, offset {OFFSET}"
    );
    assert_ne!(lines.next().unwrap(), host_ns("time"));
}

/// Rootless: an unprivileged user (uid 1500, no passwd entry needed) runs a container from
/// `berth spec --rootless`: a user namespace mapping only its own ids, no cgroups, state
/// under $XDG_RUNTIME_DIR/berth by default.
#[test]
fn rootless_user_runs_a_container() {
    use std::os::unix::fs::PermissionsExt;
    const UID: u32 = 1500;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.path().join("bundle");
    let xdg = dir.path().join("xdg");
    for d in [&bundle, &xdg] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(UID), Some(UID)).unwrap();
    }
    let as_user = |args: &[&str]| {
        let mut cmd = Command::new("setpriv");
        cmd.args([
            "--reuid",
            "1500",
            "--regid",
            "1500",
            "--clear-groups",
            berth_bin(),
        ])
        .args(args)
        .env("XDG_RUNTIME_DIR", &xdg);
        output_of(&mut cmd)
    };
    as_user(&["spec", "--rootless", "--bundle", bundle.to_str().unwrap()]).ok();
    let path = bundle.join("config.json");
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(spec["linux"]["uidMappings"][0]["hostID"], UID);
    spec["root"]["path"] = json!(shared_rootfs());
    spec["process"]["terminal"] = json!(false);
    spec["process"]["args"] = json!(["sh", "-c", "id -u; cat /proc/self/uid_map"]);
    std::fs::write(&path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let id = unique_id("rootless");
    let out = as_user(&["run", "--bundle", bundle.to_str().unwrap(), &id]).ok();
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[0], "0", "{out:?}");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        ["0", "1500", "1"],
        "{out:?}"
    );
    // The state lived under $XDG_RUNTIME_DIR/berth and is gone after run.
    let state = xdg.join("berth");
    assert!(state.is_dir(), "no state root at {state:?}");
    assert_eq!(std::fs::read_dir(&state).unwrap().count(), 0);
}

/// Rootless with a mapping beyond the caller's own id needs newuidmap and a range in
/// /etc/subuid; uid 1500 has none, so create fails naming where to look, leaving nothing.
#[test]
fn rootless_without_subordinate_ids_names_the_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bundle = dir.path().join("bundle");
    let state = dir.path().join("state");
    for d in [&bundle, &state] {
        std::fs::create_dir(d).unwrap();
        std::os::unix::fs::chown(d, Some(1500), Some(1500)).unwrap();
    }
    let mut b = Bundle::new();
    b.namespace("user", None);
    b.drop_namespace("network");
    b.spec["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 1500, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 1000}]);
    b.spec["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 1500, "size": 1}, {"containerID": 1, "hostID": 200000, "size": 1000}]);
    b.spec["linux"].as_object_mut().unwrap().remove("resources");
    b.spec["root"]["path"] = json!(shared_rootfs());
    std::fs::write(
        bundle.join("config.json"),
        serde_json::to_vec(&b.spec).unwrap(),
    )
    .unwrap();
    let id = unique_id("subuid");
    let out = output_of(
        Command::new("setpriv")
            .args([
                "--reuid",
                "1500",
                "--regid",
                "1500",
                "--clear-groups",
                berth_bin(),
            ])
            .args([
                "--root",
                state.to_str().unwrap(),
                "create",
                "--bundle",
                bundle.to_str().unwrap(),
                &id,
            ]),
    )
    .failed();
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(
        out.stderr.contains("newuidmap") && out.stderr.contains("/etc/subuid"),
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_dir(&state).unwrap().count(),
        0,
        "state left behind"
    );
}

/// `linux.netDevices` moves a host interface into the container under its new name; the
/// kernel destroys a virtual one (here one end of a veth pair, and with it the pair) with
/// the container's network namespace.
#[test]
fn net_devices_are_moved_in_and_renamed() {
    let host = format!("bve{}", std::process::id() % 1_000_000);
    let peer = format!("{host}p");
    let ip = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(args)
            .output()
            .expect("ip (iproute2)")
    };
    let made = ip(&[
        "link", "add", "name", &host, "type", "veth", "peer", "name", &peer,
    ]);
    assert!(made.status.success(), "{made:?}");
    // Removes the pair if the test fails before the container took one end.
    struct Veth(String);
    impl Drop for Veth {
        fn drop(&mut self) {
            let _ = std::process::Command::new("ip")
                .args(["link", "del", &self.0])
                .output();
        }
    }
    let _veth = Veth(peer.clone());
    let mut b = Bundle::new();
    b.spec["linux"]["netDevices"] = json!({ host.clone(): {"name": "ctr0"} });
    b.sh("ls /sys/class/net");
    let out = b.run().ok();
    let names: Vec<&str> = out.stdout.split_whitespace().collect();
    assert!(names.contains(&"ctr0"), "{out:?}");
    assert!(!names.contains(&host.as_str()), "{out:?}");
    // The kernel tears network namespaces down in a work queue, shortly after the exit.
    for dev in [&host, &peer] {
        wait_until(
            &format!("{dev} destroyed with the container's namespace"),
            || !ip(&["link", "show", dev]).status.success(),
        );
    }
}
