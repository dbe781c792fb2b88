//! `berth cri serve --config FILE`: a small TOML file. Every key is optional; unknown
//! keys are refused so a typo does not silently keep a default.
//!
//! ```toml
//! listen = "unix:///run/berth/cri.sock"
//! root = "/var/lib/berth/cri"          # pods, containers, images
//! runtime_root = "/run/berth/cri"      # container state (default: <root>/runtime)
//! log_level = "info"                   # error, warn, info, debug, trace
//! cni_conf_dir = "/etc/cni/net.d"
//! cni_plugin_dirs = ["/usr/lib/cni", "/opt/cni/bin"]
//! insecure_registries = ["registry.local:5000"]
//! streaming_address = "127.0.0.1:0"   # Exec/Attach/PortForward URLs; port 0 = pick one
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_LISTEN: &str = "unix:///run/berth/cri.sock";
pub const DEFAULT_ROOT: &str = "/var/lib/berth/cri";
pub const DEFAULT_RUNTIME_ROOT: &str = "/run/berth/cri";

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<String>,
    root: Option<PathBuf>,
    runtime_root: Option<PathBuf>,
    log_level: Option<String>,
    cni_conf_dir: Option<PathBuf>,
    cni_plugin_dirs: Option<Vec<PathBuf>>,
    cni_cache_dir: Option<PathBuf>,
    #[serde(default)]
    insecure_registries: Vec<String>,
    streaming_address: Option<String>,
}

/// The server's settings, defaults filled in.
#[derive(Clone, Debug)]
pub struct Config {
    /// Path of the unix socket (`unix://` stripped).
    pub socket: PathBuf,
    pub root: PathBuf,
    pub runtime_root: PathBuf,
    pub log_level: String,
    pub cni_conf_dir: PathBuf,
    pub cni_plugin_dirs: Vec<PathBuf>,
    pub cni_cache_dir: PathBuf,
    pub insecure_registries: Vec<String>,
    /// Where the streaming server (exec, attach, port-forward) listens.
    pub streaming_address: std::net::SocketAddr,
}

/// `unix:///run/x.sock` or a bare absolute path -> the socket path.
pub fn parse_listen(s: &str) -> Result<PathBuf> {
    let path = s.strip_prefix("unix://").unwrap_or(s);
    if !path.starts_with('/') {
        return Err(Error::Invalid {
            field: "listen".into(),
            reason: format!("{s:?}: expected unix:///ABSOLUTE/PATH (only unix sockets are served)"),
        });
    }
    Ok(PathBuf::from(path))
}

impl Config {
    /// Read `file` (if any), then apply the command-line `listen` and `root`.
    pub fn load(file: Option<&Path>, listen: Option<&str>, root: Option<&Path>) -> Result<Config> {
        let f: File = match file {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| Error::Config {
                    path: p.to_path_buf(),
                    reason: e.to_string(),
                })?;
                toml::from_str(&text).map_err(|e| Error::Config {
                    path: p.to_path_buf(),
                    reason: e.message().to_string(),
                })?
            }
            None => File::default(),
        };
        let root_given = root.is_some() || f.root.is_some();
        let root = root
            .map(Path::to_path_buf)
            .or(f.root)
            .unwrap_or_else(|| DEFAULT_ROOT.into());
        if !root.is_absolute() {
            return Err(Error::Invalid {
                field: "root".into(),
                reason: format!("{}: must be an absolute path", root.display()),
            });
        }
        let runtime_root = f.runtime_root.unwrap_or_else(|| {
            if root_given {
                root.join("runtime")
            } else {
                DEFAULT_RUNTIME_ROOT.into()
            }
        });
        let socket = parse_listen(listen.or(f.listen.as_deref()).unwrap_or(DEFAULT_LISTEN))?;
        let log_level = f.log_level.unwrap_or_else(|| "info".into());
        if !["error", "warn", "info", "debug", "trace"].contains(&log_level.as_str()) {
            return Err(Error::Invalid {
                field: "log_level".into(),
                reason: format!("{log_level:?}: expected error, warn, info, debug or trace"),
            });
        }
        let streaming = f.streaming_address.as_deref().unwrap_or("127.0.0.1:0");
        let streaming_address = streaming.parse().map_err(|_| Error::Invalid {
            field: "streaming_address".into(),
            reason: format!("{streaming:?}: expected IP:PORT (e.g. 127.0.0.1:0)"),
        })?;
        Ok(Config {
            streaming_address,
            socket,
            cni_cache_dir: f.cni_cache_dir.unwrap_or_else(|| root.join("cni-cache")),
            root,
            runtime_root,
            log_level,
            cni_conf_dir: f
                .cni_conf_dir
                .unwrap_or_else(|| berth_net::DEFAULT_CONFIG_DIR.into()),
            cni_plugin_dirs: f.cni_plugin_dirs.unwrap_or_else(|| {
                berth_net::DEFAULT_PLUGIN_DIRS
                    .iter()
                    .map(PathBuf::from)
                    .collect()
            }),
            insecure_registries: f.insecure_registries,
        })
    }

    /// Only the log level of `file` (the binary sets up logging before anything else).
    pub fn log_level_of(file: &Path) -> Option<String> {
        let text = std::fs::read_to_string(file).ok()?;
        toml::from_str::<File>(&text).ok()?.log_level
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let c = Config::load(None, None, None).unwrap();
        assert_eq!(c.socket, Path::new("/run/berth/cri.sock"));
        assert_eq!(c.runtime_root, Path::new(DEFAULT_RUNTIME_ROOT));
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, "listen = \"unix:///tmp/x.sock\"\nlog_level = \"debug\"\ninsecure_registries = [\"r:5000\"]\n").unwrap();
        let c = Config::load(Some(&p), None, Some(Path::new("/srv/cri"))).unwrap();
        assert_eq!(c.socket, Path::new("/tmp/x.sock"));
        assert_eq!(c.runtime_root, Path::new("/srv/cri/runtime"));
        assert_eq!(c.insecure_registries, ["r:5000"]);
        assert_eq!(Config::log_level_of(&p).as_deref(), Some("debug"));
        std::fs::write(&p, "listn = \"x\"\n").unwrap();
        let e = Config::load(Some(&p), None, None).unwrap_err().to_string();
        assert!(e.contains("listn"), "{e}");
        assert!(parse_listen("tcp://1.2.3.4:1").is_err());
        assert_eq!(c.streaming_address.to_string(), "127.0.0.1:0");
        std::fs::write(&p, "streaming_address = \"localhost\"\n").unwrap();
        let e = Config::load(Some(&p), None, None).unwrap_err().to_string();
        assert!(e.contains("streaming_address"), "{e}");
        assert!(Config::load(None, None, Some(Path::new("rel"))).is_err());
    }
}
