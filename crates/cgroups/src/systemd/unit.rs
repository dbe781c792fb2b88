//! systemd's `cgroupsPath` syntax (`slice:prefix:name`, as runc reads it), unit names, and
//! where a unit's cgroup lives (slice names expanded the way systemd nests slices).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The slice a container's scope goes into when cgroupsPath leaves it empty.
pub(crate) const DEFAULT_SLICE: &str = "system.slice";
/// The scope prefix used when berth picks the unit name (no cgroupsPath).
pub(crate) const DEFAULT_PREFIX: &str = "berth";
/// systemd's UNIT_NAME_MAX (256) without the terminating NUL.
const UNIT_NAME_MAX: usize = 255;

/// A container's transient scope unit and the slice it lives in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemdUnit {
    /// The scope, e.g. `berth-c1.scope`.
    pub unit: String,
    /// Its slice, e.g. `system.slice`.
    pub slice: String,
    /// Slices (outermost first) that did not exist before this scope started: systemd
    /// made them for it, and `destroy` stops those that are empty again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created_slices: Vec<String>,
}

fn bad(path: &str, reason: &'static str) -> Error {
    Error::InvalidPath {
        path: path.to_string(),
        reason,
    }
}

/// Characters systemd accepts in a unit name (unit-name.c: alnum and `:-_.\`), minus `:`,
/// which separates the fields here, and `\`, which would be an escape.
fn valid_name_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl SystemdUnit {
    /// Parses `slice:prefix:name` (runc's systemd cgroupsPath), or builds
    /// `system.slice:berth:<id>` without one. An empty slice means `system.slice`; an
    /// empty prefix names the scope `<name>.scope`, otherwise `<prefix>-<name>.scope`.
    pub fn parse(cgroups_path: Option<&str>, id: &str) -> Result<SystemdUnit> {
        let owned;
        let path = match cgroups_path {
            Some(p) => p,
            None => {
                owned = format!("{DEFAULT_SLICE}:{DEFAULT_PREFIX}:{id}");
                &owned
            }
        };
        let parts: Vec<&str> = path.split(':').collect();
        let [slice, prefix, name] = parts[..] else {
            return Err(bad(
                path,
                "the systemd cgroup driver expects slice:prefix:name (e.g. system.slice:berth:ID)",
            ));
        };
        let slice = if slice.is_empty() {
            DEFAULT_SLICE
        } else {
            slice
        };
        expand_slice(slice).map_err(|reason| bad(path, reason))?;
        if name.is_empty() {
            return Err(bad(path, "the name part (after the second ':') is empty"));
        }
        if !valid_name_chars(name) || !valid_name_chars(prefix) {
            return Err(bad(
                path,
                "prefix and name may hold only letters, digits, '-', '_' and '.'",
            ));
        }
        if name.ends_with(".slice") {
            return Err(bad(
                path,
                "a name ending in .slice (the container as a slice) is not supported; name a scope",
            ));
        }
        let unit = if prefix.is_empty() {
            format!("{name}.scope")
        } else {
            format!("{prefix}-{name}.scope")
        };
        if unit.len() > UNIT_NAME_MAX {
            return Err(bad(path, "the unit name would exceed 255 bytes"));
        }
        Ok(SystemdUnit {
            unit,
            slice: slice.to_string(),
            created_slices: Vec::new(),
        })
    }

    /// The slices from the outermost to the scope's own, each with its cgroup relative to
    /// the cgroup2 root (empty for `-.slice`, the root).
    pub fn slice_chain(&self) -> Vec<(String, PathBuf)> {
        let path = expand_slice(&self.slice).expect("validated in parse");
        let mut dir = PathBuf::from("/");
        path.split('/')
            .filter(|c| !c.is_empty())
            .map(|c| {
                dir.push(c);
                (c.to_string(), dir.clone())
            })
            .collect()
    }

    /// The unit's cgroup relative to the cgroup2 root: slice path, then the scope.
    pub fn cgroup(&self) -> PathBuf {
        let mut p = PathBuf::from(expand_slice(&self.slice).expect("validated in parse"));
        p.push(&self.unit);
        p
    }
}

/// Where systemd puts a slice's cgroup: `a-b-c.slice` is `/a.slice/a-b.slice/a-b-c.slice`
/// (each dash opens a child slice), `-.slice` is the root `/`.
pub(crate) fn expand_slice(slice: &str) -> std::result::Result<String, &'static str> {
    let Some(base) = slice.strip_suffix(".slice") else {
        return Err("the slice must end in .slice");
    };
    if slice == "-.slice" {
        return Ok("/".into());
    }
    if base.is_empty() || base.contains('/') || !valid_name_chars(base) {
        return Err("the slice name is empty or holds characters systemd refuses");
    }
    if base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err("a slice name may not start or end with '-' or hold '--'");
    }
    let mut path = String::new();
    let mut prefix = String::new();
    for comp in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(comp);
        path.push('/');
        path.push_str(&prefix);
        path.push_str(".slice");
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_expand_as_systemd_nests_them() {
        assert_eq!(expand_slice("-.slice").unwrap(), "/");
        assert_eq!(expand_slice("system.slice").unwrap(), "/system.slice");
        assert_eq!(
            expand_slice("a-b-c.slice").unwrap(),
            "/a.slice/a-b.slice/a-b-c.slice"
        );
        assert_eq!(
            expand_slice("machine-berth.slice").unwrap(),
            "/machine.slice/machine-berth.slice"
        );
        for bad in [
            "system",
            ".slice",
            "-a.slice",
            "a-.slice",
            "a--b.slice",
            "a/b.slice",
            "a b.slice",
        ] {
            assert!(expand_slice(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cgroups_path_names_the_scope() {
        let u = SystemdUnit::parse(Some("system.slice:berth:c1"), "ignored").unwrap();
        assert_eq!(u.unit, "berth-c1.scope");
        assert_eq!(u.slice, "system.slice");
        assert_eq!(u.cgroup(), PathBuf::from("/system.slice/berth-c1.scope"));
        let d = SystemdUnit::parse(None, "abc").unwrap();
        assert_eq!(
            (d.unit.as_str(), d.slice.as_str()),
            ("berth-abc.scope", "system.slice")
        );
        let root = SystemdUnit::parse(Some("-.slice:p:x"), "").unwrap();
        assert_eq!(root.cgroup(), PathBuf::from("/p-x.scope"));
        let nested = SystemdUnit::parse(Some("a-b.slice::x"), "").unwrap();
        assert_eq!(nested.unit, "x.scope");
        assert_eq!(
            nested.slice_chain(),
            vec![
                ("a.slice".to_string(), PathBuf::from("/a.slice")),
                ("a-b.slice".to_string(), PathBuf::from("/a.slice/a-b.slice"))
            ]
        );
        assert!(root.slice_chain().is_empty());
        assert_eq!(nested.cgroup(), PathBuf::from("/a.slice/a-b.slice/x.scope"));
        let empty_slice = SystemdUnit::parse(Some(":libpod:0123abc"), "").unwrap();
        assert_eq!(empty_slice.slice, "system.slice");
        assert_eq!(empty_slice.unit, "libpod-0123abc.scope");
    }

    #[test]
    fn bad_cgroups_paths_are_refused_with_the_path() {
        for bad in [
            "/system.slice/x",
            "a:b",
            "a:b:c:d",
            "system:berth:x",
            "system.slice:berth:",
            "system.slice:be/rth:x",
            "system.slice:berth:x/y",
            "system.slice:berth:../x",
            "system.slice:berth:sub.slice",
            "a--b.slice:p:x",
        ] {
            let e = SystemdUnit::parse(Some(bad), "id").unwrap_err().to_string();
            assert!(e.starts_with(&format!("cgroupsPath {bad:?}")), "{bad}: {e}");
        }
        let long = format!("system.slice:p:{}", "x".repeat(260));
        assert!(SystemdUnit::parse(Some(&long), "").is_err());
    }
}
