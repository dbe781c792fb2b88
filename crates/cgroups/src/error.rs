//! The crate's error type: every variant names the field and/or file involved.

use std::io;
use std::path::PathBuf;

/// Errors returned by this crate. Each message is one line naming what failed and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("container id {0:?} cannot name a cgroup (empty, '.', '..' or contains '/')")]
    InvalidId(String),
    #[error("{field}: {reason}")]
    InvalidValue { field: String, reason: String },
    #[error(
        "{field}: no {file} (controller {controller} absent on this host or not enabled here)"
    )]
    MissingController {
        field: String,
        controller: String,
        file: PathBuf,
    },
    #[error("{field}: writing {value:?} to {file} failed: {source}")]
    Write {
        field: String,
        file: PathBuf,
        value: String,
        #[source]
        source: io::Error,
    },
    #[error("reading {file} failed: {source}")]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("unexpected content in {file}: {reason}")]
    Parse { file: PathBuf, reason: String },
    #[error("{op} {path} failed: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{field}: not supported on cgroup {hierarchy}")]
    Unsupported {
        field: String,
        hierarchy: &'static str,
    },
    #[error("this cgroup has no cgroup2 directory (paths: {0})")]
    NoUnified(String),
    #[error("cgroup root {0} is not a cgroup v1 or v2 hierarchy")]
    UnknownHierarchy(PathBuf),
    #[error("{what} in {path} did not finish: {reason}")]
    Timeout {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("systemd {op} of {unit} failed: {reason}")]
    Systemd {
        op: &'static str,
        unit: String,
        reason: String,
    },
    #[error("systemd cgroup driver: {0}")]
    NoSystemd(String),
    #[error("bpf {op} failed: {source}{log}")]
    Bpf {
        op: &'static str,
        #[source]
        source: io::Error,
        log: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) fn io_err(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { op, path, source }
}
