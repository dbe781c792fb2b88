//! The systemd driver: a container's cgroup is a transient scope unit that systemd creates
//! (StartTransientUnit with `Delegate=yes`), so systemd knows about it, accounts it to its
//! slice and never rearranges it. Resource limits go to systemd as unit properties and
//! then, in full, through cgroupfs into the scope's directory (runc's order: systemd for
//! what it knows, cgroupfs for exact values and everything else, e.g. devices).
//!
//! Invariants:
//! - Pure cgroup v2 only, root only; elsewhere [`crate::manager`] refuses with one line.
//! - No D-Bus before the container's init exists: `create`/`apply` only validate and
//!   remember; `add_process` of the first pid starts the unit with that pid. The bus
//!   connection lives for one operation (the runtime forks around these calls).
//! - Reading, freezing, killing and joining go through cgroupfs on the scope's directory
//!   only, so `destroy` kills exactly the scope's processes before StopUnit.

mod bus;
mod props;
mod unit;

pub use unit::SystemdUnit;

use crate::error::{Error, Result};
use crate::layout::CgroupPaths;
use crate::manager::{CgroupState, FsManager, Manager};
use crate::oom::OomWatcher;
use crate::stats::Stats;
use crate::{CgroupConfig, Hierarchy};
use oci_spec::runtime::LinuxResources;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

pub(crate) struct SystemdManager {
    unit: SystemdUnit,
    description: String,
    fs: FsManager,
    /// Resources given to `apply` before the unit exists; sent with StartTransientUnit.
    pending: Mutex<Option<LinuxResources>>,
    /// Whether the unit exists (started here, or reopened from a stored state).
    started: AtomicBool,
    /// The cgroup2 mount point.
    mount: PathBuf,
    /// `unit.created_slices`, filled in by `start`.
    created_slices: Mutex<Vec<String>>,
}

/// Why this host cannot use the systemd driver, if it cannot.
fn check_host(hierarchy: Hierarchy) -> Result<()> {
    if hierarchy != Hierarchy::V2 {
        return Err(Error::NoSystemd(
            "needs a pure cgroup v2 host (this one mounts cgroup v1 controllers); drop --systemd-cgroup to use cgroupfs".into(),
        ));
    }
    if !bus::booted() {
        return Err(Error::NoSystemd(
            "systemd is not running on this host (no /run/systemd/system); drop --systemd-cgroup to use cgroupfs".into(),
        ));
    }
    // SAFETY: geteuid cannot fail and has no memory effects.
    if unsafe { libc::geteuid() } != 0 {
        return Err(Error::NoSystemd(
            "rootless containers would need the user's own systemd instance, which berth does not drive; run as root or drop --systemd-cgroup".into(),
        ));
    }
    Ok(())
}

/// The manager of a not-yet-started scope for `cfg` (`cfg.path` in slice:prefix:name form).
pub(crate) fn manager(cfg: &CgroupConfig) -> Result<SystemdManager> {
    let l = crate::layout::Layout::detect(&cfg.root)?;
    check_host(l.hierarchy)?;
    let unit = SystemdUnit::parse(cfg.path.as_deref(), &cfg.id)?;
    let mount = l.unified.expect("v2 has a unified mount").mountpoint;
    let dir = under(&mount, &unit.cgroup());
    let state = CgroupState {
        hierarchy: Hierarchy::V2,
        paths: CgroupPaths {
            v1: Default::default(),
            unified: Some(dir),
        },
        unified_mount: Some(mount.clone()),
        created: Vec::new(),
        systemd: Some(unit.clone()),
    };
    Ok(SystemdManager {
        description: format!("berth container {}", cfg.id),
        unit,
        fs: FsManager::new(state),
        pending: Mutex::new(None),
        started: AtomicBool::new(false),
        mount,
        created_slices: Mutex::new(Vec::new()),
    })
}

/// `rel` (absolute from the cgroup2 root) under the mount point.
fn under(mount: &std::path::Path, rel: &std::path::Path) -> PathBuf {
    mount.join(rel.strip_prefix("/").unwrap_or(rel))
}

/// Reopens the scope of a stored state (the unit was started by the command that stored it).
pub(crate) fn from_state(mut state: CgroupState, mut unit: SystemdUnit) -> SystemdManager {
    let mount = state
        .unified_mount
        .clone()
        .unwrap_or_else(|| PathBuf::from(crate::DEFAULT_ROOT));
    // systemd owns every directory of a scope's tree: never rmdir them as cgroupfs
    // ancestors. A state recorded before the scope started (a create killed midway) lists
    // the missing slice directories there; they are slices systemd may have made for it.
    for (name, rel) in unit.slice_chain() {
        if state.created.contains(&under(&mount, &rel)) && !unit.created_slices.contains(&name) {
            unit.created_slices.push(name);
        }
    }
    state.created.clear();
    SystemdManager {
        description: String::new(),
        created_slices: Mutex::new(unit.created_slices.clone()),
        unit,
        fs: FsManager::new(state),
        pending: Mutex::new(None),
        started: AtomicBool::new(true),
        mount,
    }
}

impl SystemdManager {
    fn dir(&self) -> PathBuf {
        self.fs
            .paths()
            .into_iter()
            .next()
            .expect("one v2 directory")
    }

    /// Checks everything `r` would do (both as properties and as cgroupfs writes).
    fn validate(r: &LinuxResources) -> Result<props::Props> {
        let props = props::resources(r)?;
        crate::v2::plan(
            r,
            &crate::resources::Probe {
                has: &|_| false,
                mem_limit: None,
                devices_list: None,
            },
        )?;
        if let Some(d) = r.devices() {
            crate::devices::parse_rules(d)?;
        }
        Ok(props)
    }

    fn start(&self, pid: i32) -> Result<()> {
        let r = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let props = props::scope(
            &self.unit.slice,
            self.description.clone(),
            &[pid as u32],
            r.as_ref(),
        )?;
        let missing: Vec<String> = self
            .unit
            .slice_chain()
            .into_iter()
            .filter(|(_, rel)| !under(&self.mount, rel).exists())
            .map(|(name, _)| name)
            .collect();
        let bus = bus::Bus::connect()?;
        *self
            .created_slices
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = missing;
        bus.start_transient(&self.unit.unit, &props, &|| {
            self.started.store(true, Ordering::SeqCst)
        })?;
        let res = (|| {
            let dir = self.dir();
            if !dir.is_dir() {
                return Err(Error::Systemd {
                    op: "StartTransientUnit",
                    unit: self.unit.unit.clone(),
                    reason: format!("the job is done but {} does not exist", dir.display()),
                });
            }
            match &r {
                Some(r) => self.fs.write_resources(r),
                None => Ok(()),
            }
        })();
        if res.is_err() {
            let _ = self.stop(Some(bus));
        }
        res
    }

    /// Kills what is left in the scope (its cgroup only), then StopUnit + ResetFailedUnit.
    fn stop(&self, bus: Option<bus::Bus>) -> Result<()> {
        let dir = self.dir();
        if dir.is_dir() && !self.fs.pids()?.is_empty() {
            self.fs.kill_all(libc::SIGKILL)?;
            crate::manager::wait_for("kill before StopUnit", &dir, || {
                Ok(self.fs.pids()?.is_empty())
            })?;
        }
        let bus = match bus {
            Some(b) => Some(b),
            None if bus::booted() => match bus::Bus::connect() {
                Ok(b) => Some(b),
                // Without systemd nothing can hold the unit; only a directory is a leftover.
                Err(e) if dir.exists() => return Err(e),
                Err(_) => None,
            },
            None => None,
        };
        if let Some(bus) = &bus {
            bus.stop(&self.unit.unit)?;
        }
        // systemd removed the scope's cgroup with the unit; anything still there is ours.
        self.fs.destroy()?;
        // Slices systemd made for this scope go too, innermost first, while nothing else
        // lives in them (a slice with units has child cgroups).
        let Some(bus) = bus else { return Ok(()) };
        let mut created = self
            .created_slices
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let chain = self.unit.slice_chain();
        for (name, rel) in chain.iter().rev() {
            if !created.contains(name) {
                break;
            }
            let dir = under(&self.mount, rel);
            let busy = std::fs::read_dir(&dir)
                .map(|rd| {
                    rd.flatten()
                        .any(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                })
                .unwrap_or(false);
            if busy {
                break;
            }
            bus.stop(name)?;
            created.retain(|n| n != name);
        }
        Ok(())
    }
}

impl Manager for SystemdManager {
    fn create(&self) -> Result<()> {
        // Refuse before anything starts: a second container must never adopt (and later
        // stop) another container's scope.
        let dir = self.dir();
        if dir.exists() {
            return Err(Error::Systemd {
                op: "create",
                unit: self.unit.unit.clone(),
                reason: format!(
                    "{} already exists: another container uses this cgroupsPath",
                    dir.display()
                ),
            });
        }
        Ok(())
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        if self.started.load(Ordering::SeqCst) {
            self.fs.add_process(pid)
        } else {
            self.start(pid)
        }
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        if self.started.load(Ordering::SeqCst) {
            return self.update(r);
        }
        Self::validate(r)?;
        *self.pending.lock().unwrap_or_else(|p| p.into_inner()) = Some(r.clone());
        Ok(())
    }

    fn update(&self, r: &LinuxResources) -> Result<()> {
        let props = Self::validate(r)?;
        self.fs.check_update(r)?;
        bus::Bus::connect()?.set_properties(&self.unit.unit, &props)?;
        self.fs.write_resources(r)
    }

    fn freeze(&self) -> Result<()> {
        self.fs.freeze()
    }

    fn thaw(&self) -> Result<()> {
        self.fs.thaw()
    }

    fn is_frozen(&self) -> Result<bool> {
        self.fs.is_frozen()
    }

    fn pids(&self) -> Result<Vec<i32>> {
        self.fs.pids()
    }

    fn kill_all(&self, sig: i32) -> Result<()> {
        self.fs.kill_all(sig)
    }

    fn stats(&self) -> Result<Stats> {
        self.fs.stats()
    }

    fn oom_watcher(&self) -> Result<OomWatcher> {
        self.fs.oom_watcher()
    }

    fn destroy(&self) -> Result<()> {
        if !self.started.load(Ordering::SeqCst) {
            // systemd never accepted our unit (e.g. UnitExists): a unit of that name is
            // someone else's, and berth made nothing: no directory, no unit.
            return Ok(());
        }
        self.stop(None)
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.fs.paths()
    }

    fn v2_dir_fd(&self) -> Option<OwnedFd> {
        // Before the unit exists there is no directory to be born in; the runtime then
        // moves init in with add_process, which starts the unit with init's pid.
        if self.started.load(Ordering::SeqCst) {
            self.fs.v2_dir_fd()
        } else {
            None
        }
    }

    fn state(&self) -> CgroupState {
        let mut s = self.fs.state();
        let mut unit = self.unit.clone();
        unit.created_slices = self
            .created_slices
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        s.systemd = Some(unit);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_without_systemd_on_v2_get_one_line() {
        let cfg = CgroupConfig::new("c1", None).with_systemd(true);
        match crate::manager(&cfg) {
            // A systemd v2 host (the systemd VM stage): the scope is only named here.
            Ok(m) => assert!(m.paths()[0].ends_with("system.slice/berth-c1.scope")),
            Err(e) => {
                let e = e.to_string();
                assert!(e.starts_with("systemd cgroup driver: "), "{e}");
                assert!(!e.contains('\n'), "{e}");
            }
        }
        assert!(check_host(Hierarchy::Hybrid)
            .unwrap_err()
            .to_string()
            .contains("pure cgroup v2"));
    }

    #[test]
    fn state_round_trip_reopens_the_scope() {
        let unit = SystemdUnit::parse(Some("a-b.slice:p:x"), "").unwrap();
        let state = CgroupState {
            hierarchy: Hierarchy::V2,
            paths: CgroupPaths {
                v1: Default::default(),
                unified: Some(PathBuf::from("/sys/fs/cgroup/a.slice/a-b.slice/p-x.scope")),
            },
            unified_mount: Some(PathBuf::from("/sys/fs/cgroup")),
            created: Vec::new(),
            systemd: Some(unit.clone()),
        };
        let json = serde_json::to_value(&state).unwrap();
        assert_eq!(json["systemd"]["unit"], "p-x.scope");
        let back: CgroupState = serde_json::from_value(json).unwrap();
        let m = crate::manager_from_state(back);
        assert_eq!(m.state(), state);
        // A state planned before the scope started: its missing directories are slices
        // systemd may make, never cgroupfs ancestors for berth to rmdir.
        let mut planned = state.clone();
        planned.created = vec![
            PathBuf::from("/sys/fs/cgroup/a.slice/a-b.slice"),
            PathBuf::from("/sys/fs/cgroup/a.slice/a-b.slice/p-x.scope"),
        ];
        let s = crate::manager_from_state(planned).state();
        assert!(s.created.is_empty());
        assert_eq!(
            s.systemd.unwrap().created_slices,
            vec!["a-b.slice".to_string()]
        );
    }
}
