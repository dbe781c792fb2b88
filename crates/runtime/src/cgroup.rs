//! The container's cgroup, through the cgroups crate. Its state is stored in the
//! container record so later commands (kill --all, pause, delete) reopen the same cgroup.

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Spec};

use berth_cgroups::{CgroupConfig, CgroupState, Manager};
pub use berth_cgroups::{OomEvent, OomWatcher, Stats};

use std::path::Path;

use crate::error::{Error, Result};
use crate::lifecycle::Operation;
use crate::state::Record;

/// Rootless callers only get a cgroup if they were delegated one they can write.
fn skip_cgroups(spec: &Spec) -> bool {
    nix::unistd::geteuid().as_raw() != 0
        && spec
            .linux()
            .as_ref()
            .and_then(|l| l.resources().as_ref())
            .is_none()
}

/// The container's cgroup: planned first (so the plan can be recorded before anything
/// exists), then created with its resources applied, waiting for the container's init.
pub struct Placement {
    mgr: Box<dyn Manager>,
    linux: oci_spec::runtime::Linux,
}

/// Plan the container's cgroup. A cgroup that already exists and holds processes is
/// refused (as runc does): those processes are not the container's, and `delete --force`
/// kills everything in the container's cgroup. With `systemd` the cgroup is a transient
/// scope that systemd starts once init exists (`Placement::add`); `clone_target` is then
/// None.
pub fn plan(spec: &Spec, id: &str, systemd: bool) -> Result<Option<Placement>> {
    if skip_cgroups(spec) {
        return Ok(None);
    }
    let linux = spec.linux().clone().expect("validated");
    let path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| p.to_string_lossy().into_owned());
    let mgr = berth_cgroups::manager(&CgroupConfig::new(id, path).with_systemd(systemd))?;
    for dir in mgr.paths() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        if let Some(pid) = procs.split_whitespace().next() {
            return Err(Error::Config(format!(
                "field linux.cgroupsPath: cgroup {} already holds processes (pid {pid}) that are not this container's",
                dir.display()
            )));
        }
    }
    Ok(Some(Placement { mgr, linux }))
}

impl Placement {
    /// What to record before `create`: the cgroup's directories, and as "created" every
    /// one of them (and their ancestors) that does not exist yet, so that a `delete` after
    /// a create killed midway removes exactly what it may have made.
    pub fn planned_state(&self) -> CgroupState {
        let mut state = self.mgr.state();
        let mut missing = Vec::new();
        for dir in self.mgr.paths() {
            let mut chain: Vec<_> = dir
                .ancestors()
                .take_while(|d| !d.exists())
                .map(Path::to_path_buf)
                .collect();
            chain.reverse();
            for d in chain {
                if !missing.contains(&d) && !state.created.contains(&d) {
                    missing.push(d);
                }
            }
        }
        state.created.extend(missing);
        state
    }

    /// Create the cgroup and apply its resources (nothing is left on failure).
    pub fn create(&self) -> Result<()> {
        self.mgr.create()?;
        if let Err(e) = self.mgr.apply(&with_default_devices(&self.linux)) {
            let _ = self.mgr.destroy();
            return Err(e.into());
        }
        Ok(())
    }

    /// On a pure v2 host, the cgroup directory for clone3(CLONE_INTO_CGROUP): the child is
    /// born in its cgroup and never migrates (no wait for cgroup_threadgroup_rwsem).
    pub fn clone_target(&self) -> Option<std::os::fd::OwnedFd> {
        if self.mgr.state().hierarchy == berth_cgroups::Hierarchy::V2 {
            self.mgr.v2_dir_fd()
        } else {
            None
        }
    }

    /// Move `pid` in; on failure the cgroup is removed.
    pub fn add(&self, pid: Pid) -> Result<()> {
        self.mgr.add_process(pid.as_raw()).map_err(|e| {
            let _ = self.mgr.destroy();
            e.into()
        })
    }

    pub fn state(&self) -> CgroupState {
        self.mgr.state()
    }
}

/// The devices every container may use whatever its rules say (as runc allows them): the
/// standard nodes, ptys, mknod of any node, and the nodes listed in `linux.devices`.
fn with_default_devices(linux: &oci_spec::runtime::Linux) -> LinuxResources {
    let mut resources = linux.resources().clone().unwrap_or_default();
    let rule = |typ: &str,
                major: Option<i64>,
                minor: Option<i64>,
                access: &str|
     -> LinuxDeviceCgroup {
        serde_json::from_value(serde_json::json!({"allow": true, "type": typ, "major": major, "minor": minor, "access": access}))
            .expect("static device rule")
    };
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.extend([
        rule("c", None, None, "m"),
        rule("b", None, None, "m"),
        rule("c", Some(1), Some(3), "rwm"),
        rule("c", Some(1), Some(8), "rwm"),
        rule("c", Some(1), Some(7), "rwm"),
        rule("c", Some(5), Some(0), "rwm"),
        rule("c", Some(1), Some(5), "rwm"),
        rule("c", Some(1), Some(9), "rwm"),
        rule("c", Some(5), Some(1), "rwm"),
        rule("c", Some(136), None, "rwm"),
        rule("c", Some(5), Some(2), "rwm"),
    ]);
    for d in linux.devices().iter().flatten() {
        let typ = match d.typ() {
            LinuxDeviceType::B => "b",
            LinuxDeviceType::P => continue,
            _ => "c",
        };
        rules.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    resources.set_devices(Some(rules));
    resources
}

pub fn manager_of(rec: &Record) -> Option<Box<dyn Manager>> {
    let state: CgroupState = serde_json::from_value(rec.cgroup.clone()?).ok()?;
    Some(berth_cgroups::manager_from_state(state))
}

pub fn is_frozen(rec: &Record) -> bool {
    manager_of(rec).is_some_and(|m| m.is_frozen().unwrap_or(false))
}

pub fn thaw(rec: &Record) {
    if let Some(m) = manager_of(rec) {
        let _ = m.thaw();
    }
}

/// Signal every process of the container (`kill --all`); without a cgroup, only init.
pub fn signal_all(rec: &Record, sig: Signal) -> Result<()> {
    match manager_of(rec) {
        Some(m) => Ok(m.kill_all(sig as i32)?),
        None => nix::sys::signal::kill(Pid::from_raw(rec.pid), sig).map_err(|e| {
            crate::error::Error::Sys {
                op: format!("kill {}", rec.pid),
                source: e,
            }
        }),
    }
}

pub fn destroy(rec: &Record) -> Result<()> {
    match manager_of(rec) {
        Some(m) => Ok(m.destroy()?),
        None => Ok(()),
    }
}

impl crate::Runtime {
    /// Selects the systemd cgroup driver for containers this runtime creates (runc's
    /// `--systemd-cgroup`); containers already created keep the driver in their state.
    pub fn with_systemd_cgroup(mut self, on: bool) -> Self {
        self.systemd_cgroup = on;
        self
    }

    /// The manager of a container's cgroup, for a container in an allowed status.
    fn cgroup_of(&self, id: &str, op: Operation, what: &str) -> Result<(Record, Box<dyn Manager>)> {
        let (_dir, rec) = self.open(id)?;
        crate::lifecycle::check(id, op, self.status_of(&rec))?;
        let m = manager_of(&rec).ok_or_else(|| {
            Error::Unsupported(format!(
                "container {id:?} has no cgroup (rootless without delegation); cannot {what}"
            ))
        })?;
        Ok((rec, m))
    }

    /// Freeze every process of a running container.
    pub fn pause(&self, id: &str) -> Result<()> {
        Ok(self
            .cgroup_of(id, Operation::Pause, "pause it")?
            .1
            .freeze()?)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        Ok(self
            .cgroup_of(id, Operation::Resume, "resume it")?
            .1
            .thaw()?)
    }

    /// Change resource limits of a live container.
    pub fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        Ok(self
            .cgroup_of(id, Operation::Observe, "update it")?
            .1
            .update(resources)?)
    }

    pub fn stats(&self, id: &str) -> Result<Stats> {
        Ok(self
            .cgroup_of(id, Operation::Observe, "read its stats")?
            .1
            .stats()?)
    }

    /// Host pids of every process in the container.
    pub fn pids(&self, id: &str) -> Result<Vec<i32>> {
        Ok(self
            .cgroup_of(id, Operation::Observe, "list its processes")?
            .1
            .pids()?)
    }

    pub fn oom_watcher(&self, id: &str) -> Result<OomWatcher> {
        Ok(self
            .cgroup_of(id, Operation::Observe, "watch it")?
            .1
            .oom_watcher()?)
    }
}
