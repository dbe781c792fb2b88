//! Loading and validating a bundle's `config.json`.
//!
//! Parsing is strict about types: a field of the wrong type names its JSON path. Unknown
//! fields are ignored (logged at debug with their path), because the runtime spec says
//! runtimes MUST NOT fail on unknown properties: newer clients add fields before runtimes
//! learn them. Validation runs before any side effect, so a bad bundle leaves nothing
//! behind.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxIdMapping, LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// Supplementary groups the kernel accepts (NGROUPS_MAX).
pub const MAX_GROUPS: usize = 65536;

/// Largest container ID accepted (runc accepts any length; a bound keeps paths sane).
pub const MAX_ID_LEN: usize = 1024;

/// Check a container ID: non-empty, bounded, `[A-Za-z0-9_+.-]` only, not `.` or `..`.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |why| {
        Err(Error::InvalidId {
            id: id.to_string(),
            why,
        })
    };
    if id.is_empty() {
        return bad("empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("longer than 1024 bytes");
    }
    if id == "." || id == ".." {
        return bad("may not be . or ..");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'))
    {
        return bad("only letters, digits and _ + - . are allowed");
    }
    Ok(())
}

/// Parse a spec from JSON text, refusing mistyped fields by their path and ignoring
/// unknown ones.
pub fn parse_spec(text: &[u8]) -> Result<Spec> {
    let mut unknown = Vec::new();
    let mut json = serde_json::Deserializer::from_slice(text);
    let mut record = |path: serde_ignored::Path| unknown.push(path.to_string());
    let ignoring = serde_ignored::Deserializer::new(&mut json, &mut record);
    let spec: Spec = serde_path_to_error::deserialize(ignoring).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            Error::Config(inner.to_string())
        } else {
            Error::Config(format!("field {path}: {inner}"))
        }
    })?;
    json.end().map_err(|e| Error::Config(e.to_string()))?;
    for field in &unknown {
        // serde_ignored renders each Option level as "?"; drop those segments.
        let field: Vec<&str> = field.split('.').filter(|s| *s != "?").collect();
        tracing::debug!(
            field = field.join("."),
            "config.json: ignoring unknown field"
        );
    }
    Ok(spec)
}

/// Largest config.json accepted (Kubernetes sends a few hundred KiB at most).
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// Load `config.json` from a bundle directory: a regular file of at most
/// [`MAX_CONFIG_BYTES`] (a FIFO or /dev/zero there must not hang or exhaust memory).
pub fn load_bundle_spec(bundle: &Path) -> Result<Spec> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let path = bundle.join("config.json");
    let io = |source| Error::Io {
        path: path.clone(),
        source,
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(&path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(Error::Config(format!(
            "{} is {} bytes; at most {MAX_CONFIG_BYTES} are accepted",
            path.display(),
            meta.len()
        )));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut text)
        .map_err(io)?;
    parse_spec(&text)
}

/// The absolute rootfs path of a bundle's spec.
pub fn rootfs_path(bundle: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Config("field root: missing".into()))?;
    let path = if root.path().is_absolute() {
        root.path().clone()
    } else {
        bundle.join(root.path())
    };
    let meta = fs::metadata(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(Error::Config(format!(
            "field root.path: {} is not a directory",
            path.display()
        )));
    }
    Ok(path)
}

/// Sysctls that are namespaced, and the namespace each one needs (runc's rule).
fn sysctl_namespace(key: &str) -> Option<LinuxNamespaceType> {
    const IPC_KEYS: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC_KEYS.contains(&key) || key.starts_with("fs.mqueue.") {
        Some(LinuxNamespaceType::Ipc)
    } else if key.starts_with("net.") {
        Some(LinuxNamespaceType::Network)
    } else if key == "kernel.hostname" || key == "kernel.domainname" {
        Some(LinuxNamespaceType::Uts)
    } else {
        None
    }
}

/// Check that an id map is injective: no two extents overlap on the container side nor on
/// the host side, and no extent wraps around the 32-bit id space. This is the same property
/// the theory asks of a guest-physical to host-physical map (no two guest ids share a host id).
pub fn validate_id_map(kind: &str, map: &[LinuxIdMapping]) -> Result<()> {
    let bad = |why: String| Err(Error::Config(format!("field linux.{kind}: {why}")));
    for (i, m) in map.iter().enumerate() {
        if m.size() == 0 {
            return bad(format!("extent {i} has size 0"));
        }
        let end = |start: u32| u64::from(start) + u64::from(m.size());
        if end(m.container_id()) > 1 << 32 || end(m.host_id()) > 1 << 32 {
            return bad(format!("extent {i} overflows the 32-bit id range"));
        }
    }
    for (i, a) in map.iter().enumerate() {
        for (j, b) in map.iter().enumerate().skip(i + 1) {
            let overlap = |x: u32, y: u32| {
                let (x, y) = (u64::from(x), u64::from(y));
                x < y + u64::from(b.size()) && y < x + u64::from(a.size())
            };
            if overlap(a.container_id(), b.container_id()) {
                return bad(format!("extents {i} and {j} overlap on the container side"));
            }
            if overlap(a.host_id(), b.host_id()) {
                return bad(format!("extents {i} and {j} overlap on the host side"));
            }
        }
    }
    Ok(())
}

/// Validate everything that can be checked before creating anything.
pub fn validate(spec: &Spec, bundle: &Path) -> Result<()> {
    let cfg = |msg: String| Err(Error::Config(msg));
    if !spec.version().starts_with("1.") {
        return cfg(format!(
            "field ociVersion: unsupported version {:?}",
            spec.version()
        ));
    }
    rootfs_path(bundle, spec)?;
    let process = match spec.process() {
        Some(p) => p,
        None => return cfg("field process: missing".into()),
    };
    match process.args() {
        Some(args) if !args.is_empty() && !args[0].is_empty() => {}
        _ => return cfg("field process.args: must name the program to run".into()),
    }
    if !process.cwd().is_absolute() {
        return cfg(format!(
            "field process.cwd: {:?} is not an absolute path",
            process.cwd()
        ));
    }
    for rl in process.rlimits().iter().flatten() {
        if rl.soft() > rl.hard() {
            return cfg(format!(
                "field process.rlimits: {} soft limit exceeds hard limit",
                rl.typ()
            ));
        }
    }
    if process
        .apparmor_profile()
        .as_deref()
        .is_some_and(|p| !p.is_empty())
        && !crate::lsm::apparmor_enabled()
    {
        return cfg("field process.apparmorProfile: AppArmor is not enabled on this host".into());
    }
    if process
        .selinux_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
        && !crate::lsm::selinux_enabled()
    {
        return cfg("field process.selinuxLabel: SELinux is not enabled on this host".into());
    }
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        if !m.destination().is_absolute() {
            return cfg(format!(
                "field mounts[{i}].destination: {:?} is not an absolute path",
                m.destination()
            ));
        }
        for opt in m.options().iter().flatten() {
            if crate::mount::MountOptions::known(opt).is_none() {
                return cfg(format!("field mounts[{i}].options: unknown option {opt:?}"));
            }
        }
        let bind =
            crate::mount::MountOptions::parse(m.options().as_deref().unwrap_or_default()).is_bind();
        let typ = m
            .typ()
            .as_deref()
            .unwrap_or(if bind { "bind" } else { "none" });
        if let Err(why) =
            crate::mount::kernel_fs_rule(m.destination(), typ, m.source().as_deref(), bind)
        {
            return cfg(format!(
                "field mounts[{i}].destination: {}: {why}",
                m.destination().display()
            ));
        }
    }
    let linux = match spec.linux() {
        Some(l) => l,
        None => return cfg("field linux: missing".into()),
    };
    if linux
        .mount_label()
        .as_deref()
        .is_some_and(|l| !l.is_empty())
        && !crate::lsm::selinux_enabled()
    {
        // crun's behaviour: a label nobody can apply is not worth failing the container.
        tracing::warn!("linux.mountLabel is ignored: SELinux is not enabled on this host");
    }
    let mut seen = HashSet::new();
    for ns in linux.namespaces().iter().flatten() {
        if !seen.insert(ns.typ()) {
            return cfg(format!("field linux.namespaces: {} listed twice", ns.typ()));
        }
        if let Some(path) = ns.path() {
            if !path.exists() {
                return cfg(format!(
                    "field linux.namespaces: {} namespace path {} does not exist",
                    ns.typ(),
                    path.display()
                ));
            }
        }
    }
    let has = |t: LinuxNamespaceType| seen.contains(&t);
    let new_ns = |t: LinuxNamespaceType| {
        linux
            .namespaces()
            .iter()
            .flatten()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    if new_ns(LinuxNamespaceType::User) {
        let uids = linux.uid_mappings().as_deref().unwrap_or_default();
        let gids = linux.gid_mappings().as_deref().unwrap_or_default();
        if uids.is_empty() || gids.is_empty() {
            return cfg(
                "field linux.uidMappings: a new user namespace needs uid and gid mappings".into(),
            );
        }
    }
    if !has(LinuxNamespaceType::User)
        && (linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty()))
    {
        return cfg("field linux.uidMappings: mappings given without a user namespace".into());
    }
    validate_id_map(
        "uidMappings",
        linux.uid_mappings().as_deref().unwrap_or_default(),
    )?;
    validate_id_map(
        "gidMappings",
        linux.gid_mappings().as_deref().unwrap_or_default(),
    )?;
    // A UTS namespace joined by path is the container's own too (runc and crun accept it).
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return cfg("field hostname: setting a hostname needs a uts namespace".into());
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has(LinuxNamespaceType::Uts) {
        return cfg("field domainname: setting a domainname needs a uts namespace".into());
    }
    let groups = process
        .user()
        .additional_gids()
        .as_ref()
        .map_or(0, Vec::len);
    if groups > MAX_GROUPS {
        return cfg(format!(
            "field process.user.additionalGids: {groups} groups, the kernel allows at most {MAX_GROUPS}"
        ));
    }
    if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty()) {
        if !new_ns(LinuxNamespaceType::Time) {
            return cfg("field linux.timeOffsets: needs a new time namespace".into());
        }
        for clock in linux.time_offsets().iter().flat_map(|t| t.keys()) {
            if clock != "monotonic" && clock != "boottime" {
                return cfg(format!("field linux.timeOffsets: unknown clock {clock:?}"));
            }
        }
    }
    for key in linux.sysctl().iter().flat_map(|s| s.keys()) {
        match sysctl_namespace(key) {
            None => {
                return cfg(format!(
                    "field linux.sysctl: {key} is not namespaced and would change the host"
                ))
            }
            Some(ns) if !new_ns(ns) => {
                return cfg(format!(
                    "field linux.sysctl: {key} needs a new {ns} namespace"
                ))
            }
            Some(_) => {}
        }
        if key.contains("..") || key.contains('/') {
            return cfg(format!("field linux.sysctl: invalid key {key:?}"));
        }
    }
    if let Some(prop) = linux.rootfs_propagation() {
        if crate::mount::propagation_flag(prop).is_none() {
            return cfg(format!(
                "field linux.rootfsPropagation: unknown value {prop:?}"
            ));
        }
    }
    for (i, d) in linux.devices().iter().flatten().enumerate() {
        if !d.path().is_absolute() || !d.path().starts_with("/dev") {
            return cfg(format!(
                "field linux.devices[{i}].path: {:?} must be an absolute path under /dev",
                d.path()
            ));
        }
    }
    for (field, paths) in [
        ("maskedPaths", linux.masked_paths()),
        ("readonlyPaths", linux.readonly_paths()),
    ] {
        for p in paths.iter().flatten() {
            if !p.starts_with('/') {
                return cfg(format!(
                    "field linux.{field}: {p:?} is not an absolute path"
                ));
            }
        }
    }
    if !has(LinuxNamespaceType::Mount) {
        // Without a mount namespace of its own every mount would land on the caller's
        // host: refuse what needs one (runc refuses masked and read-only paths alike).
        let needs = [
            (
                spec.mounts().as_ref().is_some_and(|m| !m.is_empty()),
                "mounts",
            ),
            (
                linux.masked_paths().as_ref().is_some_and(|m| !m.is_empty()),
                "linux.maskedPaths",
            ),
            (
                linux
                    .readonly_paths()
                    .as_ref()
                    .is_some_and(|m| !m.is_empty()),
                "linux.readonlyPaths",
            ),
            (
                spec.root()
                    .as_ref()
                    .and_then(|r| r.readonly())
                    .unwrap_or(false),
                "root.readonly",
            ),
            (
                linux.devices().as_ref().is_some_and(|d| !d.is_empty()),
                "linux.devices",
            ),
            (
                linux.rootfs_propagation().is_some(),
                "linux.rootfsPropagation",
            ),
        ];
        if let Some((_, field)) = needs.iter().find(|(set, _)| *set) {
            return cfg(format!("field {field}: needs a mount namespace"));
        }
    }
    if linux.intel_rdt().is_some() {
        return cfg("field linux.intelRdt: Intel RDT is not supported by berth".into());
    }
    if let Some(devices) = linux.net_devices() {
        let new_netns = linux.namespaces().iter().flatten().any(|n| {
            n.typ() == oci_spec::runtime::LinuxNamespaceType::Network && n.path().is_none()
        });
        crate::netdev::validate(devices, new_netns)?;
    }
    if let Some(p) = linux.memory_policy() {
        crate::mempolicy::MemoryPolicy::parse(p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(validate_id("abc-1.2_x+y").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x", "é"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
        assert!(validate_id(&"a".repeat(MAX_ID_LEN + 1)).is_err());
    }

    #[test]
    fn unknown_fields_are_ignored_and_mistyped_ones_name_their_path() {
        let spec =
            parse_spec(br#"{"ociVersion":"1.0.2","root":{"path":"rootfs","readOnly":true}}"#)
                .unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), None);
        let e = parse_spec(
            br#"{"ociVersion":"1.0.2","process":{"user":{"uid":"x","gid":0},"cwd":"/"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("process.user.uid"), "{e}");
        let e = parse_spec(br#"{"ociVersion":"1.0.2""#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("EOF"), "{e}");
    }

    fn map(c: u32, h: u32, s: u32) -> LinuxIdMapping {
        serde_json::from_value(serde_json::json!({"containerID": c, "hostID": h, "size": s}))
            .unwrap()
    }

    #[test]
    fn id_maps_must_be_injective() {
        assert!(validate_id_map("uidMappings", &[map(0, 100000, 65536)]).is_ok());
        assert!(validate_id_map("uidMappings", &[map(0, 1000, 1), map(1, 100000, 65535)]).is_ok());
        // host side overlap: two container ids on one host id
        assert!(validate_id_map("uidMappings", &[map(0, 1000, 10), map(100, 1005, 10)]).is_err());
        // container side overlap
        assert!(validate_id_map("uidMappings", &[map(0, 1000, 10), map(5, 5000, 10)]).is_err());
        assert!(validate_id_map("uidMappings", &[map(0, 1000, 0)]).is_err());
        assert!(validate_id_map("uidMappings", &[map(u32::MAX, 1000, 2)]).is_err());
    }
}
