//! Mount options as runc understands them, turned into mount(2) flags and a data string,
//! and the rule for what may be mounted on the container's /proc and /sys.

use std::path::{Component, Path, PathBuf};

use nix::mount::MsFlags;

/// What one option string does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOption {
    /// Set these flags.
    Set(MsFlags),
    /// Clear these flags (e.g. `rw`, `suid`).
    Clear(MsFlags),
    /// A propagation change applied after the mount (`rprivate`, `shared`, ...).
    Propagation(MsFlags),
    /// Recursive attribute applied with mount_setattr(AT_RECURSIVE) (`rro`, `rnosuid`, ...).
    Recursive { set: u64, clear: u64 },
    /// Use an id-mapped mount (the mount's uid/gid mappings or the container's).
    Idmap { recursive: bool },
}

/// Parsed options of one mount.
#[derive(Debug, Clone)]
pub struct MountOptions {
    pub flags: MsFlags,
    pub propagation: Vec<MsFlags>,
    pub data: Vec<String>,
    pub recursive_set: u64,
    pub recursive_clear: u64,
    pub idmap: Option<bool>,
}

// mount_setattr(2) attribute bits (linux/mount.h).
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR__ATIME: u64 = 0x70;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// The propagation flag named by `linux.rootfsPropagation` or a mount option.
pub fn propagation_flag(name: &str) -> Option<MsFlags> {
    Some(match name {
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        _ => return None,
    })
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: vec![],
            data: vec![],
            recursive_set: 0,
            recursive_clear: 0,
            idmap: None,
        }
    }
}

impl MountOptions {
    /// What a known option does; `None` for an option that is neither a flag nor
    /// filesystem data (`key=value` and bare words are passed on as data, so only
    /// flag-like misspellings are caught here).
    pub fn known(opt: &str) -> Option<MountOption> {
        use MountOption::*;
        let f = |flags| Some(Set(flags));
        let c = |flags| Some(Clear(flags));
        let r = |set, clear| Some(Recursive { set, clear });
        match opt {
            "defaults" => Some(Set(MsFlags::empty())),
            "ro" => f(MsFlags::MS_RDONLY),
            "rw" => c(MsFlags::MS_RDONLY),
            "suid" => c(MsFlags::MS_NOSUID),
            "nosuid" => f(MsFlags::MS_NOSUID),
            "dev" => c(MsFlags::MS_NODEV),
            "nodev" => f(MsFlags::MS_NODEV),
            "exec" => c(MsFlags::MS_NOEXEC),
            "noexec" => f(MsFlags::MS_NOEXEC),
            "sync" => f(MsFlags::MS_SYNCHRONOUS),
            "async" => c(MsFlags::MS_SYNCHRONOUS),
            "dirsync" => f(MsFlags::MS_DIRSYNC),
            "remount" => f(MsFlags::MS_REMOUNT),
            "mand" => f(MsFlags::MS_MANDLOCK),
            "nomand" => c(MsFlags::MS_MANDLOCK),
            "atime" => c(MsFlags::MS_NOATIME),
            "noatime" => f(MsFlags::MS_NOATIME),
            "diratime" => c(MsFlags::MS_NODIRATIME),
            "nodiratime" => f(MsFlags::MS_NODIRATIME),
            "relatime" => f(MsFlags::MS_RELATIME),
            "norelatime" => c(MsFlags::MS_RELATIME),
            "strictatime" => f(MsFlags::MS_STRICTATIME),
            "nostrictatime" => c(MsFlags::MS_STRICTATIME),
            "bind" => f(MsFlags::MS_BIND),
            "rbind" => f(MsFlags::MS_BIND | MsFlags::MS_REC),
            "silent" => f(MsFlags::MS_SILENT),
            "loud" => c(MsFlags::MS_SILENT),
            "lazytime" => f(MsFlags::MS_LAZYTIME),
            "nolazytime" => c(MsFlags::MS_LAZYTIME),
            "iversion" => f(MsFlags::MS_I_VERSION),
            "noiversion" => c(MsFlags::MS_I_VERSION),
            "rro" => r(MOUNT_ATTR_RDONLY, 0),
            "rrw" => r(0, MOUNT_ATTR_RDONLY),
            "rnosuid" => r(MOUNT_ATTR_NOSUID, 0),
            "rsuid" => r(0, MOUNT_ATTR_NOSUID),
            "rnodev" => r(MOUNT_ATTR_NODEV, 0),
            "rdev" => r(0, MOUNT_ATTR_NODEV),
            "rnoexec" => r(MOUNT_ATTR_NOEXEC, 0),
            "rexec" => r(0, MOUNT_ATTR_NOEXEC),
            "rnodiratime" => r(MOUNT_ATTR_NODIRATIME, 0),
            "rdiratime" => r(0, MOUNT_ATTR_NODIRATIME),
            "rrelatime" => r(MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME),
            "rnorelatime" => r(0, 0),
            "rnoatime" => r(MOUNT_ATTR_NOATIME, MOUNT_ATTR__ATIME),
            "ratime" => r(0, MOUNT_ATTR_NOATIME),
            "rstrictatime" => r(MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME),
            "rnostrictatime" => r(0, MOUNT_ATTR_STRICTATIME),
            "idmap" => Some(Idmap { recursive: false }),
            "ridmap" => Some(Idmap { recursive: true }),
            // Options that runc and podman pass and that only mean something to them.
            "tmpcopyup" | "notmpcopyup" | "copy-symlink" | "z" | "Z" | "U" => {
                Some(Set(MsFlags::empty()))
            }
            _ => propagation_flag(opt).map(Propagation).or_else(|| {
                // Filesystem data: `key=value` or a bare word such as `newinstance`.
                Some(Set(MsFlags::empty())).filter(|_| !opt.is_empty() && !opt.contains(','))
            }),
        }
    }

    /// Parse a mount's option list.
    pub fn parse(options: &[String]) -> MountOptions {
        let mut out = MountOptions::default();
        for opt in options {
            match Self::known(opt) {
                Some(MountOption::Set(f)) if !f.is_empty() || is_flag_word(opt) => out.flags |= f,
                Some(MountOption::Set(_)) => out.data.push(opt.clone()),
                Some(MountOption::Clear(f)) => out.flags &= !f,
                Some(MountOption::Propagation(p)) => out.propagation.push(p),
                Some(MountOption::Recursive { set, clear }) => {
                    out.recursive_set |= set;
                    out.recursive_clear |= clear;
                }
                Some(MountOption::Idmap { recursive }) => out.idmap = Some(recursive),
                None => out.data.push(opt.clone()),
            }
        }
        out
    }

    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }

    pub fn data_string(&self) -> Option<String> {
        (!self.data.is_empty()).then(|| self.data.join(","))
    }
}

/// Words accepted as options that carry no flag and no data.
fn is_flag_word(opt: &str) -> bool {
    matches!(
        opt,
        "defaults" | "tmpcopyup" | "notmpcopyup" | "copy-symlink" | "z" | "Z" | "U"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_data_and_propagation() {
        let o = MountOptions::parse(
            &[
                "nosuid",
                "noexec",
                "ro",
                "rw",
                "mode=755",
                "size=65536k",
                "rprivate",
                "rbind",
                "rro",
            ]
            .map(String::from),
        );
        assert!(o.flags.contains(
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC | MsFlags::MS_BIND | MsFlags::MS_REC
        ));
        assert!(!o.flags.contains(MsFlags::MS_RDONLY));
        assert_eq!(o.data_string().as_deref(), Some("mode=755,size=65536k"));
        assert_eq!(o.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(o.recursive_set, MOUNT_ATTR_RDONLY);
        assert!(o.is_bind());
    }

    #[test]
    fn comma_in_a_single_option_is_refused() {
        assert!(MountOptions::known("a,b").is_none());
    }
}

/// `path` with `.`, `..` and repeated slashes resolved lexically (`..` stops at `/`).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// Files under /proc that may be bind-mounted over (what LXCFS provides; runc allows
/// exactly these).
pub const PROC_OVERRIDES: &[&str] = &[
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Whether a mount of `typ` (a bind when `bind`, from `source`) may have `dest` as its
/// destination. Masked and read-only paths are applied through the container's own procfs
/// and sysfs, so nothing else may be mounted on or under /proc and /sys, where it could
/// stand in for them (CVE-2025-52881): only procfs at /proc, sysfs (or, rootless, a bind
/// of the host's /sys) at /sys, cgroup filesystems at and below /sys/fs/cgroup, and the
/// LXCFS files.
pub fn kernel_fs_rule(
    dest: &Path,
    typ: &str,
    source: Option<&Path>,
    bind: bool,
) -> Result<(), String> {
    let dest = normalize(dest);
    let bind = bind || typ == "bind" || typ == "rbind";
    if dest == Path::new("/proc") {
        return match (typ, bind, source) {
            ("proc", false, _) => Ok(()),
            (_, true, Some(src)) if normalize(src) == Path::new("/proc") => Ok(()),
            _ => Err("only procfs may be mounted at /proc".into()),
        };
    }
    if dest.starts_with("/proc") {
        return if bind && PROC_OVERRIDES.iter().any(|p| dest == Path::new(p)) {
            Ok(())
        } else {
            Err("mounts under /proc would stand in for procfs; only the LXCFS files may be bound there".into())
        };
    }
    if dest == Path::new("/sys") {
        return match (typ, bind, source) {
            ("sysfs", false, _) => Ok(()),
            (_, true, Some(src)) if normalize(src) == Path::new("/sys") => Ok(()),
            _ => Err("only sysfs may be mounted at /sys".into()),
        };
    }
    if dest.starts_with("/sys/fs/cgroup") {
        return Ok(());
    }
    if dest.starts_with("/sys") {
        return Err("mounts under /sys would stand in for sysfs; only cgroup mounts may go below /sys/fs/cgroup".into());
    }
    Ok(())
}

#[cfg(test)]
mod kernel_fs_tests {
    use super::*;

    fn rule(dest: &str, typ: &str, source: Option<&str>, bind: bool) -> bool {
        kernel_fs_rule(Path::new(dest), typ, source.map(Path::new), bind).is_ok()
    }

    #[test]
    fn normalize_is_lexical() {
        assert_eq!(normalize(Path::new("/a/./b//../c")), PathBuf::from("/a/c"));
        assert_eq!(
            normalize(Path::new("/../../proc/1")),
            PathBuf::from("/proc/1")
        );
        assert_eq!(normalize(Path::new("/")), PathBuf::from("/"));
    }

    #[test]
    fn only_kernel_filesystems_on_proc_and_sys() {
        // What runc, podman, containerd and Kubernetes send.
        assert!(rule("/proc", "proc", Some("proc"), false));
        assert!(rule("/sys", "sysfs", Some("sysfs"), false));
        assert!(rule("/sys", "none", Some("/sys"), true));
        assert!(rule("/sys/fs/cgroup", "cgroup", Some("cgroup"), false));
        assert!(rule(
            "/sys/fs/cgroup/systemd",
            "bind",
            Some("/sys/fs/cgroup/systemd"),
            true
        ));
        assert!(rule(
            "/proc/meminfo",
            "bind",
            Some("/var/lib/lxcfs/proc/meminfo"),
            true
        ));
        assert!(rule("/dev/shm", "tmpfs", None, false));
        assert!(rule("/procfs-lookalike", "tmpfs", None, false));
        // An image VOLUME /proc/1, tmpfs over /proc, anything under /sys.
        assert!(!rule("/proc/1", "bind", Some("/var/lib/x"), true));
        assert!(!rule("/proc/sys", "tmpfs", None, false));
        assert!(!rule("/proc", "tmpfs", None, false));
        assert!(!rule("/x/../proc/self", "bind", Some("/tmp"), true));
        assert!(!rule("/sys/kernel", "bind", Some("/tmp"), true));
        assert!(!rule("/sys", "tmpfs", None, false));
        assert!(!rule("/proc/meminfo", "tmpfs", None, false));
    }
}
