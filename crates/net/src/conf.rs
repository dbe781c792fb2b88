//! Network configurations: CNI `.conflist` files (and single-plugin `.conf`/`.json`
//! files, read as a list of one), found by network name in configuration directories.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::error::{Error, IoContext, Result};

/// One network: the parsed configuration list.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    pub name: String,
    pub cni_version: String,
    /// The plugin configurations in chain order, as written (each has a `type`).
    pub plugins: Vec<Value>,
    pub disable_check: bool,
    /// The file it came from (`None` when it came from the result cache).
    pub source: Option<PathBuf>,
}

/// Network names are file names and iptables comment material: keep them plain.
pub fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid {
            what: "network name",
            value: name.to_string(),
            reason: "must match [a-zA-Z0-9][a-zA-Z0-9_.-]* (at most 64 characters)".into(),
        })
    }
}

impl Network {
    /// Parse a configuration list (or a single plugin configuration) from `bytes`.
    pub fn parse(bytes: &[u8], source: Option<&Path>) -> Result<Network> {
        let path = source.map_or("<cache>".to_string(), |p| p.display().to_string());
        let bad = |reason: String| Error::Config {
            path: path.clone(),
            reason,
        };
        let v: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("not JSON: {e}")))?;
        let field = |v: &Value, f: &str| -> Result<String> {
            match v.get(f) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
                _ => Err(bad(format!("field {f}: missing or not a string"))),
            }
        };
        let name = field(&v, "name")?;
        validate_name(&name).map_err(|e| bad(format!("field name: {e}")))?;
        let cni_version = field(&v, "cniVersion")?;
        let plugins = match v.get("plugins") {
            Some(Value::Array(p)) if !p.is_empty() => p.clone(),
            Some(_) => return Err(bad("field plugins: must be a non-empty array".into())),
            // A single-plugin .conf: the whole object is the plugin.
            None => vec![v.clone()],
        };
        for (i, p) in plugins.iter().enumerate() {
            if !p.is_object() {
                return Err(bad(format!("field plugins[{i}]: not an object")));
            }
            field(p, "type").map_err(|_| bad(format!("field plugins[{i}].type: missing")))?;
        }
        Ok(Network {
            name,
            cni_version,
            plugins,
            disable_check: v["disableCheck"].as_bool().unwrap_or(false),
            source: source.map(Path::to_path_buf),
        })
    }

    pub fn load(path: &Path) -> Result<Network> {
        let bytes = std::fs::read(path).at(path)?;
        Network::parse(&bytes, Some(path))
    }

    /// The list as JSON (what the cache stores, what `network inspect` prints).
    pub fn to_json(&self) -> Value {
        json!({
            "cniVersion": self.cni_version,
            "name": self.name,
            "disableCheck": self.disable_check,
            "plugins": self.plugins,
        })
    }

    /// Every network in `dirs` (earlier directories win on equal names), sorted by
    /// name. Files that do not parse are skipped with a warning, as libcni does.
    pub fn list(dirs: &[PathBuf]) -> Result<Vec<Network>> {
        let mut out: Vec<Network> = Vec::new();
        for d in dirs {
            let mut files: Vec<PathBuf> = match std::fs::read_dir(d) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(d),
            };
            files.sort();
            for f in files {
                let ext = f.extension().and_then(|e| e.to_str()).unwrap_or("");
                if !matches!(ext, "conflist" | "conf" | "json") {
                    continue;
                }
                match Network::load(&f) {
                    Ok(n) if !out.iter().any(|o| o.name == n.name) => out.push(n),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "skipping network config"),
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// The network called `name` in `dirs`.
    pub fn find(dirs: &[PathBuf], name: &str) -> Result<Network> {
        Network::list(dirs)?
            .into_iter()
            .find(|n| n.name == name)
            .ok_or_else(|| Error::NoSuchNetwork(name.to_string()))
    }

    /// Whether CHECK applies: not disabled, and the version has it (0.4.0 and later).
    pub fn supports_check(&self) -> bool {
        !self.disable_check
            && !matches!(
                self.cni_version.as_str(),
                "0.1.0" | "0.2.0" | "0.3.0" | "0.3.1"
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_single_confs() {
        let n = Network::parse(
            br#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
            None,
        )
        .unwrap();
        assert_eq!((n.name.as_str(), n.plugins.len()), ("a", 2));
        let one =
            Network::parse(br#"{"cniVersion":"0.4.0","name":"b","type":"ptp"}"#, None).unwrap();
        assert_eq!(one.plugins[0]["type"], "ptp");
        for bad in [
            &br#"{"cniVersion":"1.0.0","plugins":[{"type":"x"}]}"#[..],
            br#"{"cniVersion":"1.0.0","name":"a","plugins":[]}"#,
            br#"{"cniVersion":"1.0.0","name":"a","plugins":[{"nope":1}]}"#,
            br#"{"name":"a","type":"x"}"#,
            br#"{"cniVersion":"1.0.0","name":"../x","type":"x"}"#,
            b"{",
        ] {
            let e = Network::parse(bad, None).unwrap_err().to_string();
            assert!(e.starts_with("network config <cache>: "), "{e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn find_by_name_first_dir_wins() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        std::fs::write(
            a.path().join("x.conflist"),
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"one"}]}"#,
        )
        .unwrap();
        std::fs::write(
            b.path().join("y.conflist"),
            r#"{"cniVersion":"1.0.0","name":"n","plugins":[{"type":"two"}]}"#,
        )
        .unwrap();
        std::fs::write(b.path().join("z.conf"), "garbage").unwrap();
        let dirs = [a.path().to_path_buf(), b.path().to_path_buf()];
        assert_eq!(Network::find(&dirs, "n").unwrap().plugins[0]["type"], "one");
        assert_eq!(
            Network::find(&dirs, "m").unwrap_err().to_string(),
            "no such network: m (see `berth network ls`)"
        );
    }
}
