//! The crate's error type. Each message is one line naming the pod, container, image or
//! path; [`Error::status`] picks the gRPC code a CRI client acts on.

use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No pod sandbox has this ID (or unique ID prefix).
    #[error("pod sandbox {0:?} not found")]
    PodNotFound(String),
    /// No container has this ID (or unique ID prefix).
    #[error("container {0:?} not found")]
    ContainerNotFound(String),
    /// An ID prefix matches more than one pod or container.
    #[error("{kind} ID prefix {prefix:?} is ambiguous: give more of the ID")]
    Ambiguous { kind: &'static str, prefix: String },
    /// The request is malformed or asks for something berth does not do.
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
    /// A field berth does not support (yet).
    #[error("{0}")]
    Unsupported(String),
    /// The operation does not fit the current state.
    #[error("{0}")]
    BadState(String),
    /// A name (pod or container metadata) is already taken.
    #[error("{what} name {name:?} is already used by {id}")]
    NameInUse {
        what: &'static str,
        name: String,
        id: String,
    },
    /// The config file is unreadable or invalid.
    #[error("config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
    /// The monitor could not create the container.
    #[error("container {id}: {reason}")]
    Monitor { id: String, reason: String },
    /// Too many requests wait (streaming URLs not yet used).
    #[error("{0}")]
    Exhausted(String),
    /// ExecSync ran out of time.
    #[error("command {cmd:?} timed out after {secs} s")]
    Timeout { cmd: String, secs: i64 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: corrupt record: {source}")]
    Record {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{what}: {source}")]
    Sys { what: String, source: nix::Error },
    #[error(transparent)]
    Image(#[from] berth_image::Error),
    #[error(transparent)]
    Runtime(#[from] berth_runtime::Error),
    #[error(transparent)]
    Net(#[from] berth_net::Error),
    #[error(transparent)]
    Seccomp(#[from] berth_seccomp::Error),
    /// Building a container's root filesystem or base spec (the engine's bundles).
    #[error(transparent)]
    Bundle(berth_engine::Error),
}

impl From<berth_engine::Error> for Error {
    /// The lower crates' errors keep their own variant (and so their gRPC code).
    fn from(e: berth_engine::Error) -> Error {
        match e {
            berth_engine::Error::Image(e) => Error::Image(e),
            berth_engine::Error::Runtime(e) => Error::Runtime(e),
            berth_engine::Error::Net(e) => Error::Net(e),
            berth_engine::Error::Seccomp(e) => Error::Seccomp(e),
            e => Error::Bundle(e),
        }
    }
}

impl Error {
    /// The gRPC status for this error: the code a client acts on, the one-line message.
    pub fn status(&self) -> tonic::Status {
        use tonic::Code;
        let code = match self {
            Error::PodNotFound(_) | Error::ContainerNotFound(_) => Code::NotFound,
            Error::Image(berth_image::Error::ImageNotFound(_)) => Code::NotFound,
            Error::Ambiguous { .. } | Error::Invalid { .. } => Code::InvalidArgument,
            Error::Image(berth_image::Error::InvalidReference { .. }) => Code::InvalidArgument,
            Error::Unsupported(_) => Code::Unimplemented,
            Error::BadState(_) => Code::FailedPrecondition,
            Error::NameInUse { .. } => Code::AlreadyExists,
            Error::Timeout { .. } => Code::DeadlineExceeded,
            Error::Exhausted(_) => Code::ResourceExhausted,
            _ => Code::Internal,
        };
        tonic::Status::new(code, self.to_string())
    }
}

berth_fsutil::io_context!(Error);

pub(crate) fn sys(what: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let what = what.into();
    move |source| Error::Sys { what, source }
}

pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}
