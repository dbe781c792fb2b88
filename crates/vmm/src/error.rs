//! The crate's error type: one variant per failure, each message one line naming the
//! field or path and what went wrong.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while building or running a VM.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config field {field}: {reason}")]
    Config { field: &'static str, reason: String },
    #[error("memory layout: {0}")]
    Layout(String),
    #[error("guest memory: {0}")]
    GuestMemory(String),
    #[error("kernel {path}: {reason}")]
    Kernel { path: PathBuf, reason: String },
    #[error("initrd {path}: {reason}")]
    Initrd { path: PathBuf, reason: String },
    #[error("disk {path}: {reason}")]
    Disk { path: PathBuf, reason: String },
    #[error("console {target}: {source}")]
    Console {
        target: String,
        source: std::io::Error,
    },
    #[error("vsock socket {path}: {reason}")]
    Vsock { path: PathBuf, reason: String },
    #[error("tap {name}: {reason}")]
    Tap { name: String, reason: String },
    #[error("kvm {op}: {source}")]
    Kvm {
        op: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("bus: device {name} at {base:#x}+{len:#x} overlaps {other}")]
    BusOverlap {
        name: String,
        base: u64,
        len: u64,
        other: String,
    },
    #[error("vcpu {id}: {reason}")]
    Vcpu { id: u8, reason: String },
    #[error("confinement {step}: {reason}")]
    Confine { step: &'static str, reason: String },
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        source: std::io::Error,
    },
}

/// Maps a kvm-ioctls error to [`Error::Kvm`] naming the ioctl.
pub(crate) fn kvm(op: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> Error {
    move |source| Error::Kvm { op, source }
}

/// Maps an io error to [`Error::Io`] naming the operation.
pub(crate) fn io(op: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io { op, source }
}
