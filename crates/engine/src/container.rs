//! A container's engine metadata: `<data-root>/containers/<id>/config.json`, written
//! atomically (temp + rename) so the CLI and the detached monitor can both update it.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::options::RunOptions;

pub(crate) const METADATA: &str = "config.json";
pub(crate) const LOG: &str = "log";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Exited,
    /// Its creation was interrupted (the creating process died); only `rm` applies.
    Dead,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Exited => "exited",
            Status::Dead => "dead",
        })
    }
}

/// What happened to the container's process, as last recorded.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's init while it runs.
    pub pid: i32,
    /// Pid of the process that waits for init and records its exit: the detached
    /// monitor, or the CLI of a foreground run.
    pub monitor_pid: i32,
    /// Exit code (128 + signal when killed); `None` when nobody saw the exit.
    pub exit_code: Option<i32>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
}

/// One container as the engine knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    /// 64 hex digits; also the runtime's container ID.
    pub id: String,
    pub name: String,
    /// The image ID the container was created from.
    pub image_id: String,
    /// The process arguments (entrypoint + cmd after the overrides).
    pub command: Vec<String>,
    pub created: String,
    pub options: RunOptions,
    /// `<dir>/bundle`: config.json + rootfs.
    pub bundle: PathBuf,
    /// The detached container's stdout and stderr.
    pub log_path: PathBuf,
    /// Signal `stop` sends first (the image's StopSignal, else SIGTERM).
    pub stop_signal: String,
    pub state: State,
    /// The CNI attachment of `--network bridge|NAME` (none for none/host).
    #[serde(default)]
    pub network: Option<crate::net::NetState>,
}

impl Container {
    /// `<data-root>/containers/<id>`.
    pub fn dir(&self) -> &Path {
        self.bundle.parent().expect("bundle is <dir>/bundle")
    }

    pub fn short_id(&self) -> &str {
        &self.id[..12]
    }

    pub(crate) fn save(&self) -> Result<()> {
        let path = self.dir().join(METADATA);
        let json = serde_json::to_vec_pretty(self).expect("metadata serializes");
        Ok(berth_fsutil::replace_file(&path, &json)?)
    }

    /// Read `dir/config.json`; `None` when the directory is not (yet) an engine container.
    pub(crate) fn load(dir: &Path) -> Result<Option<Container>> {
        let path = dir.join(METADATA);
        let mut text = Vec::new();
        match std::fs::File::open(&path) {
            Ok(f) => f.take(16 << 20).read_to_end(&mut text).at(&path)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).at(&path),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|source| Error::Metadata { path, source })
    }
}

/// Docker-like `adjective_noun` names.
pub(crate) fn generated_name(random: &[u8]) -> String {
    const ADJ: [&str; 16] = [
        "brave", "calm", "eager", "fond", "gentle", "happy", "jolly", "keen", "lucid", "merry",
        "noble", "quiet", "sharp", "swift", "tender", "witty",
    ];
    const NOUN: [&str; 16] = [
        "anchor", "barge", "buoy", "cutter", "dinghy", "ferry", "harbor", "jetty", "keel", "mast",
        "pier", "quay", "rudder", "schooner", "tug", "wharf",
    ];
    format!(
        "{}_{}_{:02x}",
        ADJ[random[0] as usize % 16],
        NOUN[random[1] as usize % 16],
        random[2]
    )
}

/// A name must be usable as a file name and look like Docker's.
pub(crate) fn validate_name(name: &str) -> Result<()> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 128
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"_.-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::BadFlag {
            flag: "--name",
            value: name.to_string(),
            reason: "must match [a-zA-Z0-9][a-zA-Z0-9_.-]*".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("web-1.a_b").is_ok());
        for n in ["", "-x", "a/b", "a b", "..", &"x".repeat(129)] {
            assert!(validate_name(n).is_err(), "{n}");
        }
        let n = generated_name(&[3, 200, 7]);
        assert_eq!(n, "fond_keel_07");
        assert!(validate_name(&n).is_ok());
    }

    #[test]
    fn metadata_round_trips_atomically() {
        let d = tempfile::tempdir().unwrap();
        let c = Container {
            id: "a".repeat(64),
            name: "n".into(),
            image_id: "sha256:x".into(),
            command: vec!["true".into()],
            created: "now".into(),
            options: RunOptions::default(),
            bundle: d.path().join("bundle"),
            log_path: d.path().join(LOG),
            stop_signal: "SIGTERM".into(),
            state: State::default(),
            network: None,
        };
        assert!(Container::load(d.path()).unwrap().is_none());
        c.save().unwrap();
        let back = Container::load(d.path()).unwrap().unwrap();
        assert_eq!((back.id, back.state.status), (c.id, Status::Created));
        assert_eq!(
            std::fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
        std::fs::write(d.path().join(METADATA), "{").unwrap();
        let e = Container::load(d.path()).unwrap_err().to_string();
        assert!(e.contains("corrupt container metadata"), "{e}");
    }
}
