//! Image config + user overrides -> OCI runtime spec, the way Docker combines them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use nix::fcntl::OFlag;
use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use berth_image::oci::RunConfig;
use berth_image::open_in_root;

use crate::error::{Error, IoContext, Result};

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Docker's default capability set (one list, shared with the default seccomp profile).
pub use berth_seccomp::DEFAULT_CAPABILITIES;
/// Annotations the image-spec conversion rules define.
pub const ANNOTATION_STOP_SIGNAL: &str = "org.opencontainers.image.stopSignal";
pub const ANNOTATION_EXPOSED_PORTS: &str = "org.opencontainers.image.exposedPorts";
const MAX_ID_FILE: u64 = 4 << 20;

/// What the user asked for on the command line; `None` keeps the image's value.
#[derive(Clone, Debug, Default)]
pub struct RunOverrides {
    /// `--entrypoint`; setting it also drops the image's Cmd, as Docker does.
    pub entrypoint: Option<Vec<String>>,
    /// Arguments after the image name; empty keeps the image's Cmd.
    pub cmd: Vec<String>,
    /// `-e KEY=VALUE`, replacing image variables of the same name.
    pub env: Vec<String>,
    /// `-u user[:group]`.
    pub user: Option<String>,
    /// `-w DIR`.
    pub workdir: Option<String>,
    /// `-t`.
    pub tty: bool,
    /// `--hostname`; defaults to the first 12 characters of the container ID.
    pub hostname: Option<String>,
}

/// A resolved process identity.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub home: String,
}

/// Read a small regular file inside `rootfs`, resolving symlinks as if `rootfs` were `/`.
/// Missing files give `None`; a device or fifo planted at the path is refused.
pub(crate) fn read_in_root(rootfs: &Path, rel: &str) -> Result<Option<String>> {
    let host = rootfs.join(rel.trim_start_matches('/'));
    let Some(f) = open_in_root(rootfs, rel, OFlag::O_RDONLY | OFlag::O_NONBLOCK)? else {
        return Ok(None);
    };
    if !f.metadata().at(&host)?.is_file() {
        return Err(Error::User {
            spec: rel.to_string(),
            reason: format!("{} is not a regular file", host.display()),
        });
    }
    let mut s = String::new();
    f.take(MAX_ID_FILE).read_to_string(&mut s).at(&host)?;
    Ok(Some(s))
}

/// Resolve `user[:group]` (names or numbers) against the image's /etc/passwd and
/// /etc/group, as Docker does: numeric IDs need not exist; names must.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser> {
    let passwd = read_in_root(rootfs, "/etc/passwd")?.unwrap_or_default();
    let group = read_in_root(rootfs, "/etc/group")?.unwrap_or_default();
    let bad = |reason: String| Error::User {
        spec: spec.to_string(),
        reason,
    };
    let (user_part, group_part) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let pw_entries: Vec<Vec<&str>> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 7)
        .collect();
    let entry = pw_entries
        .iter()
        .find(|f| f[0] == user_part || (user_part.parse::<u32>().is_ok() && f[2] == user_part));
    let (uid, mut gid, name, home) = match (entry, user_part.parse::<u32>()) {
        (Some(f), _) => {
            let uid = f[2]
                .parse::<u32>()
                .map_err(|_| bad(format!("bad uid {:?} in /etc/passwd", f[2])))?;
            let gid = f[3]
                .parse::<u32>()
                .map_err(|_| bad(format!("bad gid {:?} in /etc/passwd", f[3])))?;
            (uid, gid, Some(f[0].to_string()), f[5].to_string())
        }
        (None, Ok(uid)) => (uid, 0, None, "/".to_string()),
        (None, Err(_)) => {
            return Err(bad(format!(
                "no user {user_part:?} in the image's /etc/passwd"
            )))
        }
    };
    let groups: Vec<Vec<&str>> = group
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .filter(|f| f.len() >= 4)
        .collect();
    if let Some(g) = group_part {
        gid = match (groups.iter().find(|f| f[0] == g), g.parse::<u32>()) {
            (_, Ok(n)) => n,
            (Some(f), Err(_)) => f[2]
                .parse()
                .map_err(|_| bad(format!("bad gid {:?} in /etc/group", f[2])))?,
            (None, Err(_)) => return Err(bad(format!("no group {g:?} in the image's /etc/group"))),
        };
    }
    let mut additional_gids = Vec::new();
    if let (Some(name), None) = (&name, group_part) {
        for f in &groups {
            if f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(ResolvedUser {
        uid,
        gid,
        additional_gids,
        home,
    })
}

/// Merge `KEY=VALUE` lists; later entries replace earlier ones of the same key.
/// An entry keeps the position of its last occurrence. Linear: an image may list
/// thousands of variables (removing duplicates pairwise took minutes for 100,000).
fn merge_env(base: &[String], overrides: &[String]) -> Vec<String> {
    let key = |kv: &str| kv.split_once('=').map_or(kv, |(k, _)| k).to_string();
    let all: Vec<&String> = base.iter().chain(overrides).collect();
    let mut last = std::collections::HashMap::with_capacity(all.len());
    for (i, kv) in all.iter().enumerate() {
        last.insert(key(kv), i);
    }
    all.iter()
        .enumerate()
        .filter(|(i, kv)| last.get(&key(kv)) == Some(i))
        .map(|(_, kv)| (*kv).clone())
        .collect()
}

/// The process arguments Docker would run.
pub fn command(cfg: &RunConfig, o: &RunOverrides) -> Result<Vec<String>> {
    let (entrypoint, cmd) = match &o.entrypoint {
        Some(ep) => (ep.clone(), o.cmd.clone()),
        None => {
            let cmd = if o.cmd.is_empty() {
                cfg.cmd.clone().unwrap_or_default()
            } else {
                o.cmd.clone()
            };
            (cfg.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(Error::Spec(
            "no command: the image has no Entrypoint or Cmd and none was given".into(),
        ));
    }
    Ok(args)
}

/// A bind mount of an anonymous volume: host `source` onto `destination` in the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VolumeMount {
    pub source: std::path::PathBuf,
    pub destination: String,
}

/// Build the runtime spec for a container of this image config. `rootfs` is the mounted
/// root (for user lookup), `volumes` the anonymous volume binds prepared by the caller.
pub fn build_spec(
    cfg: &RunConfig,
    o: &RunOverrides,
    rootfs: &Path,
    container_id: &str,
    volumes: &[VolumeMount],
) -> Result<Spec> {
    let args = command(cfg, o)?;
    let user_spec = o
        .user
        .clone()
        .or_else(|| cfg.user.clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;
    let mut env = merge_env(
        &[DEFAULT_PATH.to_string()],
        cfg.env.as_deref().unwrap_or_default(),
    );
    env = merge_env(&env, &o.env);
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", user.home));
    }
    if o.tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    berth_image::oci::check_process_limits(&env, &args).map_err(Error::Spec)?;
    let cwd = o
        .workdir
        .clone()
        .or_else(|| cfg.working_dir.clone())
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".into());
    if !cwd.starts_with('/') {
        return Err(Error::Spec(format!(
            "working directory {cwd:?} must be absolute"
        )));
    }
    let mut annotations = BTreeMap::new();
    for (k, v) in cfg.labels.iter().flatten() {
        annotations.insert(k.clone(), v.clone());
    }
    if let Some(sig) = &cfg.stop_signal {
        annotations.insert(ANNOTATION_STOP_SIGNAL.to_string(), sig.clone());
    }
    if let Some(ports) = &cfg.exposed_ports {
        let mut p: Vec<&String> = ports.keys().collect();
        p.sort();
        annotations.insert(
            ANNOTATION_EXPOSED_PORTS.to_string(),
            p.into_iter().cloned().collect::<Vec<_>>().join(","),
        );
    }
    let mut mounts = default_mounts();
    for v in volumes {
        mounts.push(json!({"destination": v.destination, "type": "bind", "source": v.source, "options": ["rbind", "rw"]}));
    }
    let caps = DEFAULT_CAPABILITIES;
    let hostname = o
        .hostname
        .clone()
        .unwrap_or_else(|| container_id.chars().take(12).collect());
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": o.tty,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": args,
            "env": env,
            "cwd": cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": hostname,
        "mounts": mounts,
        "annotations": annotations,
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
                "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
                "/sys/firmware", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    serde_json::from_value(spec).map_err(|e| Error::Spec(e.to_string()))
}

fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc"}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("etc")).unwrap();
        fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/var/www:/bin/false\n",
        )
        .unwrap();
        fs::write(
            d.path().join("etc/group"),
            "root:x:0:\nwww:x:33:\nstaff:x:50:www,other\nadm:x:4:www\n",
        )
        .unwrap();
        d
    }

    #[test]
    fn env_merge_keeps_the_last_of_each_key_in_its_place() {
        let base: Vec<String> = ["A=1", "B=2", "A=3", "C"].map(String::from).to_vec();
        let over: Vec<String> = ["B=4", "D=5"].map(String::from).to_vec();
        assert_eq!(merge_env(&base, &over), ["A=3", "C", "B=4", "D=5"]);
        // 100,000 entries, half of them duplicates: linear, so this returns at once.
        let big: Vec<String> = (0..100_000).map(|i| format!("V{}=x", i % 50_000)).collect();
        assert_eq!(merge_env(&big, &[]).len(), 50_000);
    }

    #[test]
    fn resolves_users_like_docker() {
        let r = rootfs();
        let u = resolve_user(r.path(), "www").unwrap();
        assert_eq!(
            u,
            ResolvedUser {
                uid: 33,
                gid: 33,
                additional_gids: vec![50, 4],
                home: "/var/www".into()
            }
        );
        assert_eq!(resolve_user(r.path(), "").unwrap().uid, 0);
        assert_eq!(
            resolve_user(r.path(), "1234").unwrap(),
            ResolvedUser {
                uid: 1234,
                gid: 0,
                additional_gids: vec![],
                home: "/".into()
            }
        );
        let u = resolve_user(r.path(), "www:staff").unwrap();
        assert_eq!((u.uid, u.gid, u.additional_gids.len()), (33, 50, 0));
        assert_eq!(resolve_user(r.path(), "33:7").unwrap().gid, 7);
        assert!(matches!(
            resolve_user(r.path(), "nobody"),
            Err(Error::User { .. })
        ));
        assert!(matches!(
            resolve_user(r.path(), "www:nogroup"),
            Err(Error::User { .. })
        ));
    }

    #[test]
    fn passwd_symlink_cannot_escape_rootfs() {
        let r = rootfs();
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        // Absolute symlink: resolved inside the rootfs, where /etc/shadow does not exist.
        std::os::unix::fs::symlink("/etc/shadow", r.path().join("etc/passwd")).unwrap();
        assert!(matches!(
            resolve_user(r.path(), "root"),
            Err(Error::User { .. })
        ));
        fs::remove_file(r.path().join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../../../../../../etc/passwd", r.path().join("etc/passwd"))
            .unwrap();
        // `..` stops at the rootfs: this loops back onto itself, never the host's file.
        assert!(resolve_user(r.path(), "root").is_err());
    }

    #[test]
    fn overrides_follow_docker_rules() {
        let cfg = RunConfig {
            entrypoint: Some(vec!["/ep".into()]),
            cmd: Some(vec!["a".into()]),
            env: Some(vec!["A=1".into(), "PATH=/x".into()]),
            working_dir: Some("/srv".into()),
            stop_signal: Some("SIGQUIT".into()),
            ..Default::default()
        };
        let mut o = RunOverrides::default();
        assert_eq!(command(&cfg, &o).unwrap(), ["/ep", "a"]);
        o.cmd = vec!["b".into()];
        assert_eq!(command(&cfg, &o).unwrap(), ["/ep", "b"]);
        o.entrypoint = Some(vec!["/sh".into()]);
        o.cmd.clear();
        assert_eq!(
            command(&cfg, &o).unwrap(),
            ["/sh"],
            "--entrypoint drops the image Cmd"
        );
        assert!(command(&RunConfig::default(), &RunOverrides::default()).is_err());

        let r = rootfs();
        o.env = vec!["A=2".into()];
        o.user = Some("www".into());
        let vols = [VolumeMount {
            source: "/v/1".into(),
            destination: "/data".into(),
        }];
        let spec = build_spec(&cfg, &o, r.path(), "0123456789abcdef", &vols).unwrap();
        let p = spec.process().as_ref().unwrap();
        assert_eq!(
            p.env().as_ref().unwrap(),
            &["PATH=/x", "A=2", "HOME=/var/www"]
        );
        assert_eq!(p.cwd(), &std::path::PathBuf::from("/srv"));
        assert_eq!(p.user().uid(), 33);
        assert_eq!(spec.hostname().as_deref(), Some("0123456789ab"));
        assert_eq!(
            spec.annotations().as_ref().unwrap()[ANNOTATION_STOP_SIGNAL],
            "SIGQUIT"
        );
        assert!(spec
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .any(|m| m.destination() == Path::new("/data")));
        let caps = p
            .capabilities()
            .as_ref()
            .unwrap()
            .bounding()
            .as_ref()
            .unwrap();
        assert_eq!(caps.len(), DEFAULT_CAPABILITIES.len());
    }
}
