//! berth-agent: the init (PID 1) of a berth microVM and the protocol the host speaks to it.
//!
//! The host (engine) boots `berth-vmm` with an initramfs whose `/init` is this binary; the
//! agent mounts the guest's pseudo file systems, loads the modules the initramfs lists,
//! and serves the [`proto`] service (gRPC) on vsock port [`VSOCK_PORT`]. The host reaches
//! it through the VMM's hybrid vsock socket ([`client::AgentClient::connect_vsock`]).
//!
//! Invariants:
//! - Containers run with the same `berth-runtime` as on the host: the spec is applied
//!   inside the guest too (namespaces, cgroup v2, seccomp, capabilities, user).
//! - Each container process has a monitor of its own (`berth-agent shim`, [`shim`]): its
//!   stdio are the pipes the agent reads, it is the subreaper of the container, and it
//!   reports `created` and the exit code over a socket on fd 3. The agent's own stdio never
//!   reach a container.
//! - The first call on an agent is Version; a host that speaks another [`PROTOCOL`] is
//!   refused in one line, and so is every other call before a Version that matched.
//! - Every client call but Wait and Output has a deadline ([`client::Timeouts`]).

pub mod client;
pub mod error;
pub mod guest;
mod process;
pub mod server;
pub mod shim;

/// The generated messages, client and server of `proto/agent.proto`.
pub mod proto {
    tonic::include_proto!("berth.agent.v1");
}

/// The protocol version of `proto/agent.proto`; bumped on any incompatible change.
pub const PROTOCOL: u32 = 1;

/// The vsock port the agent listens on in the guest.
pub const VSOCK_PORT: u32 = 1024;

pub use client::{AgentClient, Timeouts};
pub use error::{Error, Result};
