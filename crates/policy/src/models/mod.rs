//! The seed's formal models as code. Each model is small enough to check exhaustively
//! or with property tests (see `tests/models.rs`), and where berth has the real rule the
//! tests compare the two.
//!
//! - [`idmap`]: uid/gid maps are injective and non-overlapping (§2.4.4, like the EPT map
//!   of §1.4.2); checked against `berth_runtime::config::validate_id_map`.
//! - [`capset`]: the five capability sets under capset, bounding-set drops, ambient
//!   changes and execve (setuid, file capabilities, no_new_privs); delegation only
//!   removes rights (§4.4.2).
//! - [`cgroup`]: cgroup trees, effective limits, and the §2.2.6 allocation (guarantee,
//!   then weight share, capped by limit); a child never exceeds its parent (§4.2.1).
//! - [`lifecycle`]: the OCI state machine (§3.1.1) with berth's command rules.

pub mod capset;
pub mod cgroup;
pub mod idmap;
pub mod lifecycle;
