//! Where the hierarchies are mounted, which cgroup this process is in, and how an OCI
//! `cgroupsPath` maps onto directories.

use crate::error::{Error, Result};
use crate::Hierarchy;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

pub(crate) const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
pub(crate) const CGROUP_SUPER_MAGIC: i64 = 0x27e0eb;
pub(crate) const TMPFS_MAGIC: i64 = 0x0102_1994;

/// v1 controllers this crate manages (others mounted on the host are left alone). Named
/// hierarchies without controllers (`name=systemd`) are managed too, as runc and crun do:
/// the container gets its own directory there, so it never sees the host's tree.
pub(crate) const V1_CONTROLLERS: &[&str] = &[
    "cpuset",
    "cpu",
    "cpuacct",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "hugetlb",
    "perf_event",
    "rdma",
    "misc",
];

/// One mounted hierarchy: its mount point and the cgroup path shown at that mount point
/// (`/` unless the mount was made inside a cgroup namespace or is a bind mount).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Mount {
    pub mountpoint: PathBuf,
    pub mount_root: String,
    /// This process's cgroup in that hierarchy, from /proc/self/cgroup.
    pub own: String,
}

/// The host's cgroup mounts as seen from `root`.
#[derive(Debug, Clone)]
pub(crate) struct Layout {
    pub hierarchy: Hierarchy,
    /// v1 controller name (or `name=X` of a named hierarchy) -> mount (co-mounted
    /// controllers share one mount).
    pub v1: BTreeMap<String, Mount>,
    pub unified: Option<Mount>,
}

fn statfs_magic(path: &Path) -> Result<i64> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Error::InvalidPath {
        path: path.display().to_string(),
        reason: "contains a NUL byte",
    })?;
    // SAFETY: `c` is a valid NUL-terminated string and `buf` a writable statfs struct.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: see above; statfs only writes into `buf`.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(Error::Io {
            op: "statfs",
            path: path.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    #[allow(clippy::unnecessary_cast)]
    Ok(buf.f_type as i64)
}

/// Decodes the octal escapes (`\040` for space) mountinfo uses in paths.
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() {
            let oct = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(oct, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup mount from mountinfo: (mount point, mount root, fstype, super options).
fn parse_mountinfo(text: &str) -> Vec<(PathBuf, String, String, String)> {
    text.lines()
        .filter_map(|line| {
            let (pre, post) = line.split_once(" - ")?;
            let pre: Vec<&str> = pre.split(' ').collect();
            let post: Vec<&str> = post.split(' ').collect();
            let fstype = *post.first()?;
            if fstype != "cgroup" && fstype != "cgroup2" {
                return None;
            }
            Some((
                PathBuf::from(unescape(pre.get(4)?)),
                unescape(pre.get(3)?),
                fstype.to_string(),
                post.get(2).copied().unwrap_or("").to_string(),
            ))
        })
        .collect()
}

/// /proc/self/cgroup: hierarchy id, controller list, path. Returns controller -> path,
/// with the v2 entry under the key "".
pub(crate) fn parse_proc_cgroup(text: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if ctrls.is_empty() {
            map.insert(String::new(), path.to_string());
        } else {
            for c in ctrls.split(',') {
                map.insert(c.to_string(), path.to_string());
            }
        }
    }
    map
}

impl Layout {
    /// Probes the hierarchies mounted at or under `root` (normally /sys/fs/cgroup).
    pub fn detect(root: &Path) -> Result<Layout> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(crate::error::io_err("read", "/proc/self/mountinfo"))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(crate::error::io_err("read", "/proc/self/cgroup"))?;
        Self::from_tables(root, statfs_magic(root)?, &mountinfo, &own)
    }

    pub(crate) fn from_tables(
        root: &Path,
        magic: i64,
        mountinfo: &str,
        proc_cgroup: &str,
    ) -> Result<Layout> {
        let own = parse_proc_cgroup(proc_cgroup);
        let mounts = parse_mountinfo(mountinfo);
        let own_of = |key: &str| own.get(key).cloned().unwrap_or_else(|| "/".to_string());
        if magic == CGROUP2_SUPER_MAGIC {
            let mount_root = mounts
                .iter()
                .rev()
                .find(|(mp, _, fs, _)| mp == root && fs == "cgroup2")
                .map(|m| m.1.clone())
                .unwrap_or_else(|| "/".to_string());
            return Ok(Layout {
                hierarchy: Hierarchy::V2,
                v1: BTreeMap::new(),
                unified: Some(Mount {
                    mountpoint: root.to_path_buf(),
                    mount_root,
                    own: own_of(""),
                }),
            });
        }
        if magic != TMPFS_MAGIC && magic != CGROUP_SUPER_MAGIC {
            return Err(Error::UnknownHierarchy(root.to_path_buf()));
        }
        let mut v1 = BTreeMap::new();
        let mut unified = None;
        for (mp, mroot, fs, opts) in mounts {
            if mp.parent() != Some(root) {
                continue;
            }
            if fs == "cgroup2" {
                unified = Some(Mount {
                    mountpoint: mp,
                    mount_root: mroot,
                    own: own_of(""),
                });
                continue;
            }
            for opt in opts.split(',') {
                if V1_CONTROLLERS.contains(&opt) || opt.starts_with("name=") {
                    v1.insert(
                        opt.to_string(),
                        Mount {
                            mountpoint: mp.clone(),
                            mount_root: mroot.clone(),
                            own: own_of(opt),
                        },
                    );
                }
            }
        }
        if !v1.keys().any(|k| !k.starts_with("name=")) {
            return Err(Error::UnknownHierarchy(root.to_path_buf()));
        }
        let hierarchy = if unified.is_some() {
            Hierarchy::Hybrid
        } else {
            Hierarchy::V1
        };
        Ok(Layout {
            hierarchy,
            v1,
            unified,
        })
    }
}

/// Validates a `cgroupsPath` lexically: no `..`, no NUL, not empty once cleaned.
/// Returns the cleaned components and whether it was absolute.
pub(crate) fn clean_cgroups_path(path: &str) -> Result<(bool, Vec<String>)> {
    let bad = |reason| Error::InvalidPath {
        path: path.to_string(),
        reason,
    };
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    // systemd-driver syntax "slice:prefix:name" is not a cgroupfs path.
    if path.contains(':') {
        return Err(bad(
            "looks like a systemd slice:prefix:name path; pass --systemd-cgroup for the systemd driver",
        ));
    }
    let p = Path::new(path);
    let mut parts = Vec::new();
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(bad("'..' would escape the cgroup root")),
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::Prefix(_) => return Err(bad("unexpected path prefix")),
        }
    }
    if parts.is_empty() {
        return Err(bad("names the hierarchy root itself"));
    }
    Ok((p.is_absolute(), parts))
}

/// The cgroup (relative to the hierarchy root) a container uses, following runc's cgroupfs
/// rules: absolute paths are taken from the hierarchy root; relative paths are joined to
/// this process's own cgroup (on v2, to its parent, since the own cgroup usually has
/// processes and so cannot delegate controllers).
pub(crate) fn container_dir(mount: &Mount, absolute: bool, parts: &[String], v2: bool) -> PathBuf {
    let mut dir = mount.mountpoint.clone();
    if !absolute {
        // Strip the mount root: /proc/self/cgroup paths are relative to the hierarchy root,
        // the mount may show a subtree of it.
        let own = Path::new(&mount.own);
        let rel = own
            .strip_prefix(&mount.mount_root)
            .unwrap_or(own)
            .to_path_buf();
        let rel = if v2 {
            rel.parent().map(Path::to_path_buf).unwrap_or_default()
        } else {
            rel
        };
        for c in rel.components() {
            if let Component::Normal(s) = c {
                dir.push(s);
            }
        }
    }
    for p in parts {
        dir.push(p);
    }
    dir
}

/// Resolved directories of one container's cgroup, ready to be stored and reopened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupPaths {
    /// v1 controller name -> directory (co-mounted controllers repeat the same directory).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub v1: BTreeMap<String, PathBuf>,
    /// The cgroup2 directory (the whole cgroup on v2, process tracking on hybrid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified: Option<PathBuf>,
}

/// A container's cgroup in one mounted hierarchy, as a container without a cgroup namespace
/// bind-mounts it at `/sys/fs/cgroup/<name>` (as runc does), seeing nothing above it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    /// The hierarchy's mount directory under the cgroup root (`memory`, `cpu,cpuacct`,
    /// `systemd`, `unified`); empty for the single hierarchy of a pure v2 host.
    pub name: String,
    /// The container's directory in that hierarchy.
    pub dir: PathBuf,
    /// Whether this is the cgroup2 hierarchy.
    pub v2: bool,
}

impl CgroupPaths {
    /// One entry per mounted hierarchy (co-mounted controllers once, v1 first), for
    /// hierarchies mounted at `root/<name>` or, on pure v2, at `root` itself.
    pub fn mounts(&self, root: &Path) -> Vec<CgroupMount> {
        let name = |dir: &Path, v2: bool| {
            let rel = dir.strip_prefix(root).unwrap_or(dir);
            match rel.components().next() {
                Some(Component::Normal(n)) if !(v2 && self.v1.is_empty()) => {
                    n.to_string_lossy().into_owned()
                }
                _ => String::new(),
            }
        };
        let mut out: Vec<CgroupMount> = Vec::new();
        let v1 = self.v1.values().map(|d| (d, false));
        for (dir, v2) in v1.chain(self.unified.iter().map(|d| (d, true))) {
            if !out.iter().any(|m| m.dir == *dir) {
                out.push(CgroupMount {
                    name: name(dir, v2),
                    dir: dir.clone(),
                    v2,
                });
            }
        }
        out
    }

    /// Every distinct directory, v1 ones first.
    pub fn dirs(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        for d in self.v1.values().chain(self.unified.iter()) {
            if !out.contains(d) {
                out.push(d.clone());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
50 23 0:40 / /mnt/other\\040dir rw - cgroup cgroup rw,pids
";
    const PROC: &str = "9:name=systemd:/\n4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/u/v\n";

    #[test]
    fn mounts_name_each_hierarchy_once() {
        let root = Path::new("/sys/fs/cgroup");
        let paths = CgroupPaths {
            v1: [
                ("cpu", "/sys/fs/cgroup/cpu,cpuacct/berth-c"),
                ("cpuacct", "/sys/fs/cgroup/cpu,cpuacct/berth-c"),
                ("name=systemd", "/sys/fs/cgroup/systemd/berth-c"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), PathBuf::from(v)))
            .collect(),
            unified: Some(PathBuf::from("/sys/fs/cgroup/unified/berth-c")),
        };
        let m = paths.mounts(root);
        let names: Vec<(&str, bool)> = m.iter().map(|m| (m.name.as_str(), m.v2)).collect();
        assert_eq!(
            names,
            [
                ("cpu,cpuacct", false),
                ("systemd", false),
                ("unified", true)
            ]
        );
        let v2 = CgroupPaths {
            v1: BTreeMap::new(),
            unified: Some(PathBuf::from("/sys/fs/cgroup/berth-c")),
        };
        let m = v2.mounts(root);
        assert_eq!((m.len(), m[0].name.as_str(), m[0].v2), (1, "", true));
        assert_eq!(m[0].dir, Path::new("/sys/fs/cgroup/berth-c"));
    }

    #[test]
    fn hybrid_layout_from_mountinfo() {
        let l =
            Layout::from_tables(Path::new("/sys/fs/cgroup"), TMPFS_MAGIC, MOUNTINFO, PROC).unwrap();
        assert_eq!(l.hierarchy, Hierarchy::Hybrid);
        assert_eq!(
            l.v1.keys().collect::<Vec<_>>(),
            vec!["cpu", "cpuacct", "memory", "name=systemd"],
            "pids mounted elsewhere is not managed"
        );
        assert_eq!(l.v1["name=systemd"].own, "/");
        assert_eq!(
            l.v1["cpuacct"].mountpoint,
            Path::new("/sys/fs/cgroup/cpu,cpuacct")
        );
        assert_eq!(l.v1["memory"].own, "/a/b");
        assert_eq!(l.unified.as_ref().unwrap().own, "/u/v");
        let no_unified: String = MOUNTINFO
            .lines()
            .filter(|l| !l.contains("cgroup2"))
            .collect::<Vec<_>>()
            .join("\n");
        let l = Layout::from_tables(Path::new("/sys/fs/cgroup"), TMPFS_MAGIC, &no_unified, PROC)
            .unwrap();
        assert_eq!(l.hierarchy, Hierarchy::V1);
    }

    #[test]
    fn v2_layout_and_unknown_fs() {
        let mi = "30 23 0:27 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let l = Layout::from_tables(
            Path::new("/sys/fs/cgroup"),
            CGROUP2_SUPER_MAGIC,
            mi,
            "0::/x/y\n",
        )
        .unwrap();
        assert_eq!(l.hierarchy, Hierarchy::V2);
        assert_eq!(l.unified.unwrap().own, "/x/y");
        let e = Layout::from_tables(Path::new("/tmp"), 0xEF53, mi, "").unwrap_err();
        assert!(e.to_string().contains("/tmp"), "{e}");
    }

    #[test]
    fn cgroups_path_cleaning() {
        assert_eq!(
            clean_cgroups_path("/a//b/./c").unwrap(),
            (true, vec!["a".into(), "b".into(), "c".into()])
        );
        assert_eq!(
            clean_cgroups_path("a/b").unwrap(),
            (false, vec!["a".into(), "b".into()])
        );
        for bad in [
            "/a/../../etc",
            "..",
            "a/..",
            "/",
            "",
            "x\0y",
            "system.slice:berth:id",
        ] {
            let e = clean_cgroups_path(bad).unwrap_err();
            assert!(e.to_string().starts_with("cgroupsPath"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn relative_paths_follow_runc() {
        let m = Mount {
            mountpoint: "/sys/fs/cgroup/memory".into(),
            mount_root: "/".into(),
            own: "/a/b".into(),
        };
        let parts = vec!["x".to_string(), "y".to_string()];
        assert_eq!(
            container_dir(&m, true, &parts, false),
            Path::new("/sys/fs/cgroup/memory/x/y")
        );
        // v1: relative to our own cgroup.
        assert_eq!(
            container_dir(&m, false, &parts, false),
            Path::new("/sys/fs/cgroup/memory/a/b/x/y")
        );
        // v2: relative to the parent of our own cgroup.
        assert_eq!(
            container_dir(&m, false, &parts, true),
            Path::new("/sys/fs/cgroup/memory/a/x/y")
        );
        // A mount showing only a subtree: strip its root from our own path.
        let ns = Mount {
            mountpoint: "/sys/fs/cgroup".into(),
            mount_root: "/a".into(),
            own: "/a/b".into(),
        };
        assert_eq!(
            container_dir(&ns, false, &parts, false),
            Path::new("/sys/fs/cgroup/b/x/y")
        );
    }

    #[test]
    fn mountinfo_unescapes_spaces() {
        let m = parse_mountinfo(MOUNTINFO);
        assert!(m.iter().any(|(mp, ..)| mp == Path::new("/mnt/other dir")));
    }
}
