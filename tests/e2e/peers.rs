//! The OCI spec surface side by side: the same bundle under runc, crun and berth. Where
//! berth differs from both peers it is a bug unless the spec says otherwise (each such
//! case is explained where the probe is listed). With BERTH_PEERS_TABLE=FILE the probes'
//! outputs are written there as a Markdown table (the issue's comparison table).

use std::process::Command;

use serde_json::json;

use crate::common::*;

/// Run the bundle under a peer runtime (`runc` or `crun`) and return the outcome. crun
/// refuses this host's hybrid cgroup layout unless the empty v2 tree is covered, so it
/// runs in a private mount namespace with a tmpfs over /sys/fs/cgroup/unified.
fn under_peer(peer: &str, b: &Bundle) -> Outcome {
    b.write();
    let root = tempfile::tempdir().unwrap();
    let id = unique_id(peer);
    let root = root.path().to_str().unwrap().to_owned();
    let bundle = b.path().to_str().unwrap().to_owned();
    let script = format!(
        "{cover} {peer} --root {root} run --bundle {bundle} {id}; rc=$?; \
         {peer} --root {root} delete --force {id} >/dev/null 2>&1; exit $rc",
        cover = if peer == "crun" {
            "umount /sys/fs/cgroup/unified 2>/dev/null; \
             mount -t tmpfs tmpfs /sys/fs/cgroup/unified;"
        } else {
            ""
        }
    );
    output_of(Command::new("unshare").args(["-m", "--propagation", "slave", "sh", "-c", &script]))
}

/// One row of the comparison.
struct Row {
    probe: &'static str,
    runc: String,
    crun: String,
    berth: String,
}

/// Run `script` under the three runtimes (after `edit`); berth must agree with at least
/// one peer (after `normalize`, for values that differ between any two runs).
fn compare(
    probe: &'static str,
    script: &str,
    edit: impl Fn(&mut Bundle),
    normalize: impl Fn(&str) -> String,
) -> Row {
    let mut b = Bundle::new();
    // crun 1.8 (Debian 12) knows runtime spec versions up to 1.0.x.
    b.spec["ociVersion"] = json!("1.0.2");
    edit(&mut b);
    b.sh(script);
    let out = |o: Outcome| {
        format!(
            "{}{}",
            normalize(o.stdout.trim()),
            if o.code == 0 {
                String::new()
            } else {
                format!(" [exit {}]", o.code)
            }
        )
    };
    let runc = out(under_peer("runc", &b));
    let crun = out(under_peer("crun", &b));
    let berth = out(b.run());
    Row {
        probe,
        runc,
        crun,
        berth,
    }
}

/// A file holding the test process's own namespace link of `kind` (for probes to compare).
fn host_ns_file(kind: &str) -> String {
    let dir = std::env::temp_dir().join(format!("berth-e2e-hostns-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join(kind);
    std::fs::write(&f, host_ns(kind)).unwrap();
    f.to_str().unwrap().to_owned()
}

fn same(s: &str) -> String {
    s.to_string()
}

/// Lines sorted (for listings whose order is not part of the contract).
fn sorted(s: &str) -> String {
    let mut v: Vec<&str> = s.lines().collect();
    v.sort();
    v.join("\n")
}

/// Mount point, type and options of mountinfo lines, sorted (ids and sources dropped).
fn mounts(s: &str) -> String {
    let mut v: Vec<String> = s
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let dash = f.iter().position(|x| *x == "-")?;
            Some(format!("{} {} {}", f[4], f[dash + 1], f[5]))
        })
        .collect();
    v.sort();
    v.join("\n")
}

#[test]
fn the_spec_surface_matches_runc_or_crun() {
    let rows = vec![
        compare(
            "process.args and exit code",
            "echo a b; exit 3",
            |_| {},
            same,
        ),
        compare(
            "process.env",
            "env | grep -v '^PWD=' | sort",
            |b| b.spec["process"]["env"] = json!(["PATH=/bin", "A=1", "B=two words"]),
            same,
        ),
        compare(
            "process.cwd (created if missing)",
            "pwd",
            |b| b.spec["process"]["cwd"] = json!("/tmp/new/dir"),
            same,
        ),
        compare(
            "process.user uid/gid/additionalGids",
            "id",
            |b| {
                b.spec["process"]["user"] =
                    json!({"uid": 1000, "gid": 1000, "additionalGids": [1, 65534]})
            },
            same,
        ),
        compare(
            "process.user.umask",
            "umask",
            |b| b.spec["process"]["user"]["umask"] = json!(0o027),
            same,
        ),
        compare(
            "process.rlimits",
            "ulimit -n; ulimit -Hn",
            |b| {
                b.spec["process"]["rlimits"] =
                    json!([{"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}])
            },
            same,
        ),
        compare(
            "process.oomScoreAdj",
            "cat /proc/self/oom_score_adj",
            |b| b.spec["process"]["oomScoreAdj"] = json!(500),
            same,
        ),
        compare(
            "process.capabilities (default)",
            "grep ^Cap /proc/self/status",
            |_| {},
            same,
        ),
        compare(
            "process.noNewPrivileges",
            "grep ^NoNewPrivs /proc/self/status",
            |b| b.spec["process"]["noNewPrivileges"] = json!(true),
            same,
        ),
        compare(
            "hostname",
            "hostname",
            |b| b.spec["hostname"] = json!("peer-host"),
            same,
        ),
        compare(
            "mounts under /proc",
            "grep ' /proc' /proc/self/mountinfo",
            |_| {},
            // runc 1.1 remounts readonlyPaths ro only; crun and berth add nosuid,nodev,noexec.
            |s| mounts(s).replace("ro,nosuid,nodev,noexec,", "ro,"),
        ),
        compare(
            "mounts under /dev",
            "grep ' /dev' /proc/self/mountinfo",
            |_| {},
            mounts,
        ),
        compare(
            "default devices",
            "ls -l /dev | grep '^c' | awk '{print $1, $5, $6, $NF}'",
            |_| {},
            sorted,
        ),
        compare(
            "masked paths read empty",
            "wc -c < /proc/keys; ls /sys/firmware | wc -l",
            |_| {},
            same,
        ),
        compare(
            "readonly paths refuse writes",
            "echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo wrote || echo refused",
            |_| {},
            same,
        ),
        compare(
            "linux.sysctl (namespaced)",
            "cat /proc/sys/net/ipv4/ip_forward",
            |b| b.spec["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"}),
            same,
        ),
        compare(
            "root.readonly",
            "touch /x 2>/dev/null && echo wrote || echo refused",
            |b| b.spec["root"]["readonly"] = json!(true),
            same,
        ),
        compare(
            "user namespace id maps",
            "cat /proc/self/uid_map /proc/self/gid_map; id -u",
            |b| {
                b.namespace("user", None);
                b.spec["linux"]["uidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
                b.spec["linux"]["gidMappings"] =
                    json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
            },
            |s| s.split_whitespace().collect::<Vec<_>>().join(" "),
        ),
        compare(
            "namespaces not listed are the host's",
            "for k in net ipc uts; do [ \"$(readlink /proc/self/ns/$k)\" = \"$(cat /hostns-$k)\" ] \
                 && echo $k host || echo $k own; done",
            |b| {
                b.drop_namespace("network").drop_namespace("ipc");
                for k in ["net", "ipc", "uts"] {
                    b.push(
                        "/mounts",
                        json!({"destination": format!("/hostns-{k}"), "type": "bind",
                               "source": host_ns_file(k), "options": ["bind", "ro"]}),
                    );
                }
            },
            same,
        ),
        compare("pid namespace: init is pid 1", "echo $$", |_| {}, same),
        compare(
            "linux.devices (a listed node)",
            "ls -l /dev/fuse | awk '{print $1, $5, $6}'",
            |b| {
                b.push("/linux/devices", json!({"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o620, "uid": 0, "gid": 0}));
                b.push(
                    "/linux/resources/devices",
                    json!({"allow": true, "type": "c", "major": 10, "minor": 229, "access": "rwm"}),
                );
            },
            same,
        ),
    ];
    let _ = std::fs::remove_dir_all(
        std::env::temp_dir().join(format!("berth-e2e-hostns-{}", std::process::id())),
    );
    if let Some(path) = std::env::var_os("BERTH_PEERS_TABLE") {
        let cell = |s: &str| s.replace('\n', "<br>").replace('|', "\\|");
        let mut md = String::from("| probe | runc | crun | berth |\n|---|---|---|---|\n");
        for r in &rows {
            md.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                r.probe,
                cell(&r.runc),
                cell(&r.crun),
                cell(&r.berth)
            ));
        }
        std::fs::write(path, md).unwrap();
    }
    let differing: Vec<String> = rows
        .iter()
        .filter(|r| r.berth != r.runc && r.berth != r.crun)
        .map(|r| {
            format!(
                "{}:\n  runc:  {:?}\n  crun:  {:?}\n  berth: {:?}",
                r.probe, r.runc, r.crun, r.berth
            )
        })
        .collect();
    assert!(
        differing.is_empty(),
        "berth differs from both peers:\n{}",
        differing.join("\n")
    );
}

/// v1 device rules read back from devices.list in the config's order and meaning, as
/// crun writes them (runc rewrites them into its own order).
#[test]
fn device_cgroup_list_reads_back_as_crun_writes_it() {
    if !std::path::Path::new("/sys/fs/cgroup/devices").exists() {
        return; // no v1 devices controller on this host
    }
    let mut b = Bundle::new();
    b.spec["ociVersion"] = json!("1.0.2");
    b.spec["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"},
        {"allow": true, "type": "b", "major": 8, "access": "r"},
        {"allow": false, "type": "c", "major": 1, "minor": 3, "access": "w"}
    ]);
    let list = "cat /sys/fs/cgroup/devices/devices.list";
    b.sh(list);
    b.drop_namespace("cgroup");
    // Without a cgroup namespace the container sees its own devices directory bound.
    let crun = under_peer("crun", &b);
    let berth = b.run();
    assert_eq!(berth.code, 0, "{berth:?}");
    assert_eq!(berth.stdout, crun.stdout, "berth {berth:?}\ncrun {crun:?}");
}
