//! vmm: a KVM microVM monitor built from rust-vmm crates.
//!
//! [`Vm::build`] turns a [`VmConfig`] into a VM whose memory, boot state and devices are
//! complete; [`Vm::run`] runs every vCPU on its own thread and returns an [`ExitReport`]
//! with the [`ShutdownReason`] and the VM-exit table ([`ExitStats`]).
//!
//! Invariants:
//! - Guest memory is checked when built ([`memory`]): regions disjoint, the
//!   guest-physical -> host-virtual map injective and inside its own mappings, and
//!   disjoint from every other live VM's memory in this process.
//! - KVM memory slots are registered only from a [`memory::GuestRam`], which outlives the
//!   VM and vCPU fds (drop order in [`Vm`]). Its regions are 2 MiB aligned mappings,
//!   each owned by the vm-memory region over it (unmapped with the last clone).
//! - Devices are reached only through the buses; device ranges never overlap.
//! - The first recorded [`ShutdownReason`] wins; once set, every vCPU thread leaves
//!   KVM_RUN (kicked by a signal) and `run` joins them all before returning.
//! - With `VmConfig::confine` (the default) every vCPU thread and device backend thread
//!   sets no_new_privs, drops all capabilities and installs a seccomp allow-list
//!   ([`confine`]) before it touches guest code or data; a vCPU that cannot be confined
//!   stops the VM, a backend that cannot fails `build`. Nothing runs unconfined.
//! - Devices with host-side fds (vsock sockets, tap, console pty) have one backend thread
//!   each, stopped and joined when the [`Vm`] is dropped, before anything else.
//! - Bad input (config, kernel, initrd, disk, tap, socket path) yields one [`Error`]
//!   naming the field or path; nothing is left behind since every resource is owned and
//!   dropped (the vsock socket file is removed, a tap created here disappears).

pub mod acpi;
pub mod boot;
pub mod bus;
pub mod config;
pub mod confine;
pub mod control;
pub mod cpu;
pub mod devices;
pub mod error;
pub mod layout;
pub mod memory;
pub mod stats;
mod vcpu;
pub mod vm;

pub use config::{ConsoleConfig, DiskConfig, NetConfig, VmConfig, VsockConfig};
pub use control::ShutdownReason;
pub use error::{Error, Result};
pub use stats::{ExitCounter, ExitKind, ExitStats};
pub use vm::{ExitReport, StopHandle, Vm};
