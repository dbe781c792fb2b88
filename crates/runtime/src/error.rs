//! The runtime's error type: every variant renders as one line that names what failed.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{op}: {source}")]
    Sys {
        op: String,
        #[source]
        source: nix::Error,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error("invalid container id {id:?}: {why}")]
    InvalidId { id: String, why: &'static str },
    #[error("container {0:?} already exists")]
    Exists(String),
    #[error("container {0:?} does not exist")]
    NotFound(String),
    #[error("container {id:?} is {status}: {why}")]
    BadState {
        id: String,
        status: String,
        why: String,
    },
    #[error("unknown signal {0:?}")]
    UnknownSignal(String),
    #[error("container init: {0}")]
    Init(String),
    #[error("hook {kind}[{index}] {path}: {why}")]
    Hook {
        kind: &'static str,
        index: usize,
        path: String,
        why: String,
    },
    #[error("{0}")]
    Seccomp(#[from] berth_seccomp::Error),
    #[error("cgroups: {0}")]
    Cgroups(#[from] berth_cgroups::Error),
    #[error("{0}")]
    Unsupported(String),
    /// An error already rendered by the container's init.
    #[error("{0}")]
    Reported(String),
}

pub type Result<T> = std::result::Result<T, Error>;

berth_fsutil::io_context!(Error);
