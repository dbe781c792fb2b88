//! The engine's error type: each message is one line naming the container, flag or path.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command-line value is malformed (`--memory 12q`, `-v rel:/x`, ...).
    #[error("{flag} {value:?}: {reason}")]
    BadFlag {
        flag: &'static str,
        value: String,
        reason: String,
    },
    /// No container has this ID, ID prefix or name.
    #[error("no such container: {0}")]
    NotFound(String),
    /// An ID prefix names more than one container.
    #[error("container reference {0:?} is ambiguous: give more of the ID or the name")]
    Ambiguous(String),
    /// `--name` is taken.
    #[error("--name {name:?}: already used by container {id}")]
    NameInUse { name: String, id: String },
    /// The operation does not fit the container's status.
    #[error("container {id}: {why}")]
    BadState { id: String, why: String },
    /// The detached monitor could not start the container.
    #[error("container {id}: start failed: {reason}")]
    Start { id: String, reason: String },
    /// A user or group name could not be resolved in the image.
    #[error("user {spec:?}: {reason}")]
    User { spec: String, reason: String },
    /// A container bundle could not be created or removed.
    #[error("container {id:?}: {reason}")]
    Bundle { id: String, reason: String },
    /// A runtime spec could not be built from the image config and the flags.
    #[error("runtime spec: {0}")]
    Spec(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt container metadata: {source}")]
    Metadata {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what}: {reason}")]
    Sys { what: String, reason: nix::Error },
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Seccomp(#[from] berth_seccomp::Error),
    #[error(transparent)]
    Net(#[from] berth_net::Error),
    /// `--isolation vm`: what a VM container cannot do, or its VM failed.
    #[error("--isolation vm: {0}")]
    Vm(String),
    #[error("--isolation vm: {0}")]
    Agent(#[from] berth_agent::Error),
    /// `network rm` of a network containers are attached to.
    #[error("network {network} is in use by container {container}: remove it first")]
    NetworkInUse { network: String, container: String },
}

berth_fsutil::io_context!(Error);

pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |reason| Error::Sys { what, reason }
}
