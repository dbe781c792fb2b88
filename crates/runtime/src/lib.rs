//! runtime: the OCI runtime — a bundle (config.json + rootfs) becomes a container.
//!
//! Invariants:
//! - Nothing is created before the whole config is validated; a failed `create` removes
//!   what it made (init process, cgroup, state directory). Mounts live in the container's
//!   own mount namespace and vanish with it.
//! - The container's init runs from a read-only view of berth (a detached overlay, or a
//!   sealed memfd copy), never from the host binary (CVE-2019-5736).
//! - Paths from the bundle are resolved inside the rootfs with openat2(RESOLVE_IN_ROOT)
//!   and acted on through the resolved fd.
//! - Writes to /proc go through a handle checked to be procfs.
//! - Only fds 0-2 and `--preserve-fds` reach the user process.

pub mod cgroup;
pub mod config;
mod container;
pub mod error;
mod exec;
pub mod features;
pub mod foreground;
pub mod fs;
mod hooks;
pub mod init;
pub mod lifecycle;
mod lsm;
mod mempolicy;
pub mod mount;
pub mod namespaces;
mod netdev;
mod sealed_exe;
mod seccomp;
pub mod signal;
pub mod spawn;
pub mod spec;
pub mod state;
mod sync;

pub use container::{CreateOptions, Created, Runtime};
pub use error::{Error, Result};
pub use exec::{merge_env, ExecOptions, ExecOverrides};
pub use oci_spec::runtime as oci;
pub use state::{OciState, Status};
