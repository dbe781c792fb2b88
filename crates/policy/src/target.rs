//! What `check` and `verify` look at: a bundle directory (its config.json), a config file,
//! or a runtime container (the config copy and record under the state root).

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use berth_runtime::state::{self, Record};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Bundle,
    /// A runtime container (state under `--root`).
    Container,
    /// A docker-style engine container, by name or id (its bundle).
    Engine,
}

/// A resolved target and its config as OCI JSON.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub kind: Kind,
    /// The argument as given (bundle path or container id).
    pub name: String,
    /// The config.json read.
    pub config: PathBuf,
    #[serde(skip)]
    pub spec: Value,
}

/// Read a file that may be hostile: only a regular file, at most `limit` bytes (a FIFO or
/// /dev/zero in its place must not hang or exhaust memory).
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let bad = |why: String| Error::Parse {
        path: path.to_path_buf(),
        why,
    };
    if !meta.is_file() {
        return Err(bad("not a regular file".into()));
    }
    if meta.len() > limit {
        return Err(bad(format!(
            "{} bytes; at most {limit} are accepted",
            meta.len()
        )));
    }
    let mut text = Vec::with_capacity(meta.len() as usize);
    file.take(limit + 1).read_to_end(&mut text).map_err(io)?;
    Ok(text)
}

fn read_spec(path: &Path) -> Result<Value> {
    let text = read_regular(path, berth_runtime::config::MAX_CONFIG_BYTES)?;
    let spec = berth_runtime::config::parse_spec(&text).map_err(|e| Error::Parse {
        path: path.to_path_buf(),
        why: e
            .to_string()
            .trim_start_matches("config.json: ")
            .to_string(),
    })?;
    Ok(serde_json::to_value(&spec).expect("a parsed spec serializes"))
}

/// Resolve `arg`: a directory is a bundle, a file is a config.json, anything else a
/// container id under `root`.
pub fn resolve(arg: &str, root: &Path) -> Result<Target> {
    let p = Path::new(arg);
    if p.is_dir() {
        let config = p.join("config.json");
        return Ok(Target {
            kind: Kind::Bundle,
            name: arg.to_string(),
            spec: read_spec(&config)?,
            config,
        });
    }
    if p.is_file() {
        return Ok(Target {
            kind: Kind::Bundle,
            name: arg.to_string(),
            spec: read_spec(p)?,
            config: p.to_path_buf(),
        });
    }
    let (dir, _) = container(arg, root)?;
    let config = dir.join(state::CONFIG_FILE);
    Ok(Target {
        kind: Kind::Container,
        name: arg.to_string(),
        spec: read_spec(&config)?,
        config,
    })
}

/// A runtime container's directory and record (read without the lock: state.json is
/// replaced atomically, and verify must not block the container's own commands).
pub fn container(id: &str, root: &Path) -> Result<(PathBuf, Record)> {
    let not_found = || Error::NotFound {
        arg: id.to_string(),
        root: root.to_path_buf(),
    };
    berth_runtime::config::validate_id(id).map_err(|_| not_found())?;
    let dir = root.join(id);
    let path = dir.join(state::STATE_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let rec: Record = serde_json::from_slice(&text).map_err(|e| Error::Parse {
        path: path.clone(),
        why: e.to_string(),
    })?;
    Ok((dir, rec))
}

/// The config copy in a runtime container's state directory, as OCI JSON.
pub fn resolve_config(dir: &Path) -> Result<Value> {
    read_spec(&dir.join(state::CONFIG_FILE))
}

/// An engine container's bundle (the caller resolved the name with the engine's API).
pub fn engine_bundle(name: &str, bundle: &Path) -> Result<Target> {
    let config = bundle.join("config.json");
    Ok(Target {
        kind: Kind::Engine,
        name: name.to_string(),
        spec: read_spec(&config)?,
        config,
    })
}
