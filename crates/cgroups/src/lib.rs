//! cgroups: v1, v2 and hybrid hierarchies behind one interface (the cgroupfs driver).
//!
//! Invariants:
//! - [`manager`] only reads the host (mountinfo, /proc/self/cgroup, statfs); it never
//!   creates anything. Directories appear only in [`Manager::create`].
//! - A container's cgroup never lies outside the hierarchy root: `cgroupsPath` values with
//!   `..` are refused, absolute paths are taken from the hierarchy root, relative ones from
//!   this process's own cgroup (its parent on v2), exactly as runc's cgroupfs driver does.
//!   Without a path the cgroup is `/berth-<id>` at the hierarchy root: flat like runc's
//!   and crun's `/<id>` (no shared parent to create and remove per container), with a
//!   prefix so an id such as `system.slice` can never name a host cgroup.
//! - Every resource field becomes an ordered list of (file, value) writes built before any
//!   write happens (the v1/v2 plans), so validation errors never leave half-applied
//!   limits. A failed write names the OCI field and the file.
//! - A failed `create` removes what it made; a failed `apply` does too while the cgroup is
//!   still empty; `destroy` is idempotent and removes nested cgroups and the ancestors
//!   `create` made (as recorded in [`CgroupState`]).
//! - On v2 the device controller is an eBPF program compiled here from the rules and
//!   attached with BPF_F_ALLOW_MULTI; an update attaches the new program before detaching
//!   the old one, so the cgroup is never unfiltered.
//! - With `CgroupConfig::systemd` the cgroup is a transient systemd scope (see [`systemd`]'s
//!   invariants); the runtime sees the same [`Manager`] either way, and a stored
//!   [`CgroupState`] says which driver reopens it.

mod bpf;
mod devices;
mod error;
mod fork;
mod fsutil;
mod layout;
mod manager;
mod oom;
mod resources;
mod stats;
mod systemd;
mod v1;
mod v2;

#[cfg(test)]
mod tests;

pub use error::{Error, Result};
pub use fork::fork_into;
pub use layout::{CgroupMount, CgroupPaths};
pub use manager::{CgroupState, Manager};
pub use oom::{OomEvent, OomWatcher};
pub use resources::{blkio_weight_to_io_weight, shares_to_weight, swap_v2};
pub use stats::{
    Blkio, BlkioEntry, Cpu, CpuUsage, Hugetlb, Memory, MemoryEntry, Pids, Stats, Throttling,
};
pub use systemd::SystemdUnit;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default cgroup mount point.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// How the host mounts cgroups.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hierarchy {
    /// Only v1 controller hierarchies.
    V1,
    /// One cgroup2 hierarchy at the root.
    V2,
    /// v1 controllers plus a cgroup2 tree (usually `unified/`) used to track processes.
    Hybrid,
}

/// Probes the hierarchy mounted at /sys/fs/cgroup.
pub fn detect() -> Result<Hierarchy> {
    Ok(layout::Layout::detect(Path::new(DEFAULT_ROOT))?.hierarchy)
}

/// Which cgroup a container uses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupConfig {
    /// OCI `linux.cgroupsPath`: a cgroupfs path, or `slice:prefix:name` with `systemd`.
    pub path: Option<String>,
    /// Container id; names the default cgroup `/berth-<id>`.
    pub id: String,
    /// Where cgroups are mounted; tests may pass another mount of the same hierarchies.
    pub root: PathBuf,
    /// Use the systemd driver (runc's `--systemd-cgroup`): a transient scope unit.
    pub systemd: bool,
}

impl CgroupConfig {
    pub fn new(id: impl Into<String>, path: Option<String>) -> CgroupConfig {
        CgroupConfig {
            path,
            id: id.into(),
            root: PathBuf::from(DEFAULT_ROOT),
            systemd: false,
        }
    }

    /// Selects the systemd driver (or cgroupfs with `false`).
    pub fn with_systemd(mut self, systemd: bool) -> CgroupConfig {
        self.systemd = systemd;
        self
    }
}

fn default_path(id: &str) -> Result<String> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(Error::InvalidId(id.to_string()));
    }
    Ok(format!("/berth-{id}"))
}

/// Resolves the config against a layout into the state of a not-yet-created cgroup.
fn resolve(cfg: &CgroupConfig, l: &layout::Layout) -> Result<CgroupState> {
    let path = match &cfg.path {
        Some(p) => p.clone(),
        None => default_path(&cfg.id)?,
    };
    let (absolute, parts) = layout::clean_cgroups_path(&path)?;
    let v2 = l.hierarchy == Hierarchy::V2;
    let v1 =
        l.v1.iter()
            .map(|(c, m)| (c.clone(), layout::container_dir(m, absolute, &parts, false)))
            .collect();
    let unified = l
        .unified
        .as_ref()
        .map(|m| layout::container_dir(m, absolute, &parts, v2));
    let paths = CgroupPaths { v1, unified };
    Ok(CgroupState {
        hierarchy: l.hierarchy,
        paths,
        unified_mount: l.unified.as_ref().map(|m| m.mountpoint.clone()),
        created: Vec::new(),
        systemd: None,
    })
}

/// Opens (without creating) the cgroup `cfg` describes on this host.
pub fn manager(cfg: &CgroupConfig) -> Result<Box<dyn Manager>> {
    if cfg.systemd {
        return Ok(Box::new(systemd::manager(cfg)?));
    }
    let l = layout::Layout::detect(&cfg.root)?;
    Ok(Box::new(manager::FsManager::new(resolve(cfg, &l)?)))
}

/// Reopens a cgroup from the state a previous command stored.
pub fn manager_from_state(state: CgroupState) -> Box<dyn Manager> {
    match state.systemd.clone() {
        Some(unit) => Box::new(systemd::from_state(state, unit)),
        None => Box::new(manager::FsManager::new(state)),
    }
}

/// What `berth features` reports under `linux.cgroup`.
pub fn features() -> oci_spec::runtime::Cgroup {
    let mut c = oci_spec::runtime::Cgroup::default();
    c.set_v1(Some(true));
    c.set_v2(Some(true));
    c.set_systemd(Some(true));
    c.set_systemd_user(Some(false));
    c.set_rdma(Some(true));
    c
}
