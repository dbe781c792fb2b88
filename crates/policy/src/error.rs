//! The policy crate's errors: each renders as one line naming what failed and where.
//! Every variant is "bad input" for the CLI (exit status 2).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Runtime(#[from] berth_runtime::Error),
    #[error("policy {path}: {why}")]
    Policy { path: PathBuf, why: String },
    #[error("{arg}: neither a bundle (a directory with config.json) nor a container under {root}")]
    NotFound { arg: String, root: PathBuf },
    #[error("container {id:?} is {status}: verify needs a running (or paused) container")]
    NotLive { id: String, status: String },
    #[error("container {id:?} exited during verify (reading {what})")]
    Exited { id: String, what: String },
    #[error("pid {pid} is not a process of container {id:?} (not in its pid namespace)")]
    NotInContainer { id: String, pid: i32 },
    #[error("{path}: cannot parse: {why}")]
    Parse { path: PathBuf, why: String },
}

pub type Result<T> = std::result::Result<T, Error>;
