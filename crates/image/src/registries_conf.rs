//! containers-registries.conf(5), version 2: where a reference is really pulled from.
//!
//! ```toml
//! [[registry]]
//! prefix = "example.com/team"          # optional, defaults to location; "*.example.com" too
//! location = "internal.example.com/team"
//! insecure = false                     # plain HTTP (and no TLS check) for this endpoint
//! blocked = false                      # refuse to pull anything matching the prefix
//! [[registry.mirror]]                  # tried in order before the location
//! location = "mirror.local:5000/team"
//! insecure = true
//! pull-from-mirror = "all"             # or "digest-only", "tag-only"
//! ```
//!
//! Files: `$BERTH_REGISTRIES_CONF` alone when set, else `/etc/containers/registries.conf`
//! then `/etc/containers/registries.conf.d/*.conf` in name order; an entry of a later file
//! replaces an earlier one with the same prefix (as containers/image merges drop-ins).
//! Missing files are an empty configuration. Keys this crate does not use
//! (`unqualified-search-registries`, `[aliases]`, v1 tables) are ignored.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::reference::Reference;

/// Environment variable naming the one registries.conf to read.
pub const REGISTRIES_CONF_ENV: &str = "BERTH_REGISTRIES_CONF";
const SYSTEM_CONF: &str = "/etc/containers/registries.conf";
const SYSTEM_CONF_DIR: &str = "/etc/containers/registries.conf.d";
const MAX_CONF_BYTES: u64 = 1 << 20;

#[derive(Clone, Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    registry: Vec<RegistryEntry>,
}

/// One `[[registry]]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct RegistryEntry {
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub blocked: bool,
    #[serde(default)]
    pub mirror: Vec<Mirror>,
}

/// One `[[registry.mirror]]` table.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub struct Mirror {
    pub location: String,
    #[serde(default)]
    pub insecure: bool,
    #[serde(default)]
    pub pull_from_mirror: Option<String>,
}

/// The merged configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistriesConf {
    pub registries: Vec<RegistryEntry>,
}

/// Where to try a pull: the reference rewritten for one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub reference: Reference,
    pub insecure: bool,
    /// true for a mirror (its failure falls through to the next endpoint).
    pub mirror: bool,
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::InputFile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

impl RegistriesConf {
    /// Read the files named in the module docs.
    pub fn load_default() -> Result<RegistriesConf> {
        if let Some(p) = std::env::var_os(REGISTRIES_CONF_ENV).filter(|p| !p.is_empty()) {
            return RegistriesConf::load(&[PathBuf::from(p)]);
        }
        let mut files = vec![PathBuf::from(SYSTEM_CONF)];
        if let Ok(dir) = std::fs::read_dir(SYSTEM_CONF_DIR) {
            let mut drop_ins: Vec<PathBuf> = dir
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "conf"))
                .collect();
            drop_ins.sort();
            files.extend(drop_ins);
        }
        RegistriesConf::load(&files)
    }

    /// Read `files` in order (missing ones skipped); later entries replace earlier ones
    /// with the same prefix.
    pub fn load(files: &[PathBuf]) -> Result<RegistriesConf> {
        let mut conf = RegistriesConf::default();
        for path in files {
            let text = match crate::unpack::open_regular(path) {
                Ok((f, _)) => crate::unpack::read_limited(f, MAX_CONF_BYTES, path)?,
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                    continue
                }
                Err(e) => return Err(e),
            };
            let text = String::from_utf8(text).map_err(|_| bad(path, "not UTF-8"))?;
            let file: File = toml::from_str(&text)
                .map_err(|e| bad(path, e.to_string().replace('\n', " ").trim().to_string()))?;
            for mut entry in file.registry {
                let prefix = match (&entry.prefix, &entry.location) {
                    (Some(p), _) | (None, Some(p)) if !p.is_empty() => p.clone(),
                    _ => return Err(bad(path, "a [[registry]] needs a prefix or a location")),
                };
                if prefix.starts_with("*.") && entry.location.is_some() {
                    return Err(bad(
                        path,
                        format!("[[registry]] prefix {prefix:?}: a wildcard prefix cannot have a location"),
                    ));
                }
                for m in &entry.mirror {
                    if let Some(p) = &m.pull_from_mirror {
                        if !["all", "digest-only", "tag-only"].contains(&p.as_str()) {
                            return Err(bad(
                                path,
                                format!("mirror {}: pull-from-mirror {p:?}: expected all, digest-only or tag-only", m.location),
                            ));
                        }
                    }
                }
                entry.prefix = Some(prefix.clone());
                conf.registries
                    .retain(|e| e.prefix.as_deref() != Some(prefix.as_str()));
                conf.registries.push(entry);
            }
        }
        Ok(conf)
    }

    /// The entry whose prefix matches `r` best: the longest path prefix, else the most
    /// specific `*.domain` wildcard.
    fn entry_for(&self, r: &Reference) -> Option<&RegistryEntry> {
        let name = r.name();
        let host = r.registry();
        self.registries
            .iter()
            .filter_map(|e| {
                let p = e.prefix.as_deref()?;
                let hit = match p.strip_prefix("*.") {
                    Some(domain) => host
                        .split(':')
                        .next()
                        .is_some_and(|h| h.ends_with(&format!(".{domain}"))),
                    None => {
                        name == p
                            || name
                                .strip_prefix(p)
                                .is_some_and(|rest| rest.starts_with('/'))
                    }
                };
                // A path prefix beats any wildcard; longer beats shorter.
                hit.then(|| (!p.starts_with("*."), p.len(), e))
            })
            .max_by_key(|(exact, len, _)| (*exact, *len))
            .map(|(_, _, e)| e)
    }

    /// Where to pull `r` from, in order: the matching entry's mirrors (those its
    /// `pull-from-mirror` allows for this reference), then its location; without a match,
    /// `r` itself. A blocked entry is an error.
    pub fn endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>> {
        let Some(e) = self.entry_for(r) else {
            return Ok(vec![Endpoint {
                reference: r.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        let prefix = e.prefix.as_deref().unwrap_or_default();
        if e.blocked {
            return Err(Error::Registry {
                registry: r.registry().to_string(),
                reason: format!("{r}: blocked by registries.conf (prefix {prefix:?})"),
            });
        }
        // What the prefix matched: the host for a wildcard, else the prefix itself.
        let matched = if prefix.starts_with("*.") {
            r.registry()
        } else {
            prefix
        };
        let name = r.name();
        let rest = name.get(matched.len()..).unwrap_or_default();
        let rewrite = |location: &str| -> Result<Reference> {
            let mut s = format!("{location}{rest}");
            if let Some(t) = r.tag() {
                s = format!("{s}:{t}");
            }
            if let Some(d) = r.digest() {
                s = format!("{s}@{d}");
            }
            s.parse()
        };
        let mut out = Vec::new();
        for m in &e.mirror {
            let allowed = match m.pull_from_mirror.as_deref() {
                Some("digest-only") => r.digest().is_some(),
                Some("tag-only") => r.digest().is_none(),
                _ => true,
            };
            if allowed {
                out.push(Endpoint {
                    reference: rewrite(&m.location)?,
                    insecure: m.insecure,
                    mirror: true,
                });
            }
        }
        out.push(Endpoint {
            reference: rewrite(e.location.as_deref().unwrap_or(matched))?,
            insecure: e.insecure,
            mirror: false,
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(text: &str) -> RegistriesConf {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("r.conf");
        std::fs::write(&p, text).unwrap();
        RegistriesConf::load(&[p]).unwrap()
    }

    fn names(c: &RegistriesConf, r: &str) -> Vec<String> {
        c.endpoints(&r.parse().unwrap())
            .unwrap()
            .into_iter()
            .map(|e| format!("{}{}", e.reference, if e.insecure { " (http)" } else { "" }))
            .collect()
    }

    #[test]
    fn mirrors_then_location_with_the_prefix_rewritten() {
        let c = conf(
            r#"
unqualified-search-registries = ["docker.io"]
[aliases]
"x" = "docker.io/library/x"
[[registry]]
prefix = "example.com/team"
location = "internal.example.com/t"
[[registry.mirror]]
location = "mirror.local:5000/cache"
insecure = true
[[registry.mirror]]
location = "other.local/m"
pull-from-mirror = "digest-only"
[[registry]]
location = "docker.io"
[[registry.mirror]]
location = "hub-cache.local"
[[registry]]
prefix = "*.corp.example"
[[registry.mirror]]
location = "corp-mirror.local"
[[registry]]
prefix = "evil.example"
blocked = true
"#,
        );
        assert_eq!(
            names(&c, "example.com/team/app:1"),
            [
                "mirror.local:5000/cache/app:1 (http)",
                "internal.example.com/t/app:1"
            ]
        );
        let d = "sha256:".to_string() + &"a".repeat(64);
        assert_eq!(
            names(&c, &format!("example.com/team/app@{d}")).len(),
            3,
            "digest-only mirror joins for a digest"
        );
        // "example.com/teamx" is not under the prefix "example.com/team".
        assert_eq!(
            names(&c, "example.com/teamx/a"),
            ["example.com/teamx/a:latest"]
        );
        assert_eq!(
            names(&c, "busybox"),
            [
                "hub-cache.local/library/busybox:latest",
                "docker.io/library/busybox:latest"
            ]
        );
        assert_eq!(
            names(&c, "a.corp.example/x"),
            ["corp-mirror.local/x:latest", "a.corp.example/x:latest"]
        );
        let e = c
            .endpoints(&"evil.example/x".parse().unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("blocked"), "{e}");
    }

    #[test]
    fn later_files_replace_entries_and_bad_files_are_one_line_errors() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.conf"), d.path().join("b.conf"));
        std::fs::write(&a, "[[registry]]\nlocation = \"q.io\"\nblocked = true\n").unwrap();
        std::fs::write(&b, "[[registry]]\nprefix = \"q.io\"\nlocation = \"q.io\"\n").unwrap();
        let c = RegistriesConf::load(&[a.clone(), b, d.path().join("missing")]).unwrap();
        assert_eq!(c.registries.len(), 1);
        assert!(!c.registries[0].blocked);
        std::fs::write(&a, "[[registry]]\nlocation = 3\n").unwrap();
        let e = RegistriesConf::load(std::slice::from_ref(&a))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(&a.display().to_string()) && !e.contains('\n'),
            "{e}"
        );
        std::fs::write(
            &a,
            "[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"x\"\n",
        )
        .unwrap();
        assert!(RegistriesConf::load(&[a]).is_err());
    }
}
