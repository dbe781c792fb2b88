//! policy: the seed's isolation theory made executable.
//!
//! - [`check`]: a container config (bundle or runtime container) against the rules of
//!   [`rules::RULES`], barrier by barrier (namespaces, user namespace, capabilities,
//!   seccomp, no_new_privs, masked/read-only paths, devices, host mounts, cgroup limits,
//!   LSM); a [`policyfile::Policy`] turns findings into violations.
//! - [`verify`]: a live container's kernel state (/proc/PID/*, its cgroup files) against
//!   the spec it was created from; every difference is listed.
//! - [`models`]: the seed's formal models (id maps, capability transitions, cgroup tree
//!   monotonicity, the OCI lifecycle) as code, checked by property tests.
//!
//! Invariants:
//! - check and verify only read: they never write to a container, its cgroup or state.
//! - Every error is one line and means "bad input" (exit status 2 in the CLI); findings
//!   and differences are results, not errors.
//! - Rule ids and the JSON schemas (`berth.check/v1`, `berth.verify/v1`) are stable:
//!   docs/policy.md documents them.

pub mod blp;
pub mod caps;
pub mod check;
pub mod error;
pub mod models;
pub mod policyfile;
pub mod report;
pub mod rules;
pub mod target;
pub mod verify;

pub use check::{check, Finding, Status};
pub use error::{Error, Result};
pub use policyfile::{Policy, Violation};
pub use report::CheckReport;
pub use target::{resolve, Target};
