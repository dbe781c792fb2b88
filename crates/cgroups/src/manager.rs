//! The cgroupfs manager: one container's cgroup on a v1, v2 or hybrid host.

use crate::error::{Error, Result};
use crate::fsutil::{self, Write};
use crate::layout::CgroupPaths;
use crate::oom::OomWatcher;
use crate::resources::Probe;
use crate::stats::Stats;
use crate::{bpf, devices, v1, v2, Hierarchy};
use oci_spec::runtime::LinuxResources;
use serde::{Deserialize, Serialize};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long freeze and destroy wait for the kernel before giving up.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything needed to reopen a container's cgroup in a later command. Store it after
/// `create()`: relative cgroupsPaths depend on the caller's own cgroup, and only this
/// state remembers which ancestor directories `create()` made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupState {
    pub hierarchy: Hierarchy,
    pub paths: CgroupPaths,
    /// The cgroup2 mount point (controllers are delegated from here down on v2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unified_mount: Option<PathBuf>,
    /// Directories `destroy()` removes once empty, outermost first: those `create()` made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub created: Vec<PathBuf>,
    /// The scope unit, when the systemd driver made this cgroup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd: Option<crate::systemd::SystemdUnit>,
}

/// One container's cgroup. Obtain with [`crate::manager`] or [`crate::manager_from_state`].
pub trait Manager: Send + Sync {
    /// `mkdir -p` in every hierarchy; on v1 seeds cpuset.cpus/mems from the parent, on v2
    /// delegates the available controllers down to the new directory. On failure removes
    /// whatever it made.
    fn create(&self) -> Result<()>;
    /// Moves a process (all its threads) into the cgroup in every hierarchy.
    fn add_process(&self, pid: i32) -> Result<()>;
    /// Applies a full resource spec after `create()`. On failure, removes the directories
    /// `create()` made as long as no process has joined yet.
    fn apply(&self, r: &LinuxResources) -> Result<()>;
    /// Applies the fields set in `r` to an existing cgroup (`berth update`).
    fn update(&self, r: &LinuxResources) -> Result<()>;
    /// Freezes every process and waits until the kernel reports the cgroup frozen.
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    fn is_frozen(&self) -> Result<bool>;
    /// Every process in the cgroup and its descendants.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Signals every process; SIGKILL uses cgroup.kill where the kernel has it, other
    /// signals are sent with the cgroup frozen so no child escapes by forking.
    fn kill_all(&self, sig: i32) -> Result<()>;
    fn stats(&self) -> Result<Stats>;
    fn oom_watcher(&self) -> Result<OomWatcher>;
    /// Kills what is left, removes the cgroup (and nested ones) and the ancestors `create()`
    /// made. A missing directory is not an error.
    fn destroy(&self) -> Result<()>;
    /// The cgroup's directories, v1 controllers first.
    fn paths(&self) -> Vec<PathBuf>;
    /// A directory fd of the cgroup2 directory, for clone3(CLONE_INTO_CGROUP). On hybrid
    /// hosts this covers only the process-tracking v2 tree, not the v1 controllers.
    fn v2_dir_fd(&self) -> Option<OwnedFd>;
    /// What to store for reopening with [`crate::manager_from_state`].
    fn state(&self) -> CgroupState;
}

/// The cgroupfs driver for all three host layouts.
pub(crate) struct FsManager {
    hierarchy: Hierarchy,
    paths: CgroupPaths,
    unified_mount: Option<PathBuf>,
    created: Mutex<Vec<PathBuf>>,
}

fn lock(m: &Mutex<Vec<PathBuf>>) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FsManager {
    pub(crate) fn new(state: CgroupState) -> FsManager {
        FsManager {
            hierarchy: state.hierarchy,
            paths: state.paths,
            unified_mount: state.unified_mount,
            created: Mutex::new(state.created),
        }
    }

    fn v1_dir(&self, w: &Write) -> Result<PathBuf> {
        self.v1_dir_of(w.field, &w.file)
    }

    fn v1_dir_of(&self, field: &str, file: &str) -> Result<PathBuf> {
        let ctrl = fsutil::controller_of(file);
        self.paths
            .v1
            .get(ctrl)
            .cloned()
            .ok_or_else(|| Error::MissingController {
                field: field.to_string(),
                controller: ctrl.to_string(),
                file: PathBuf::from(file),
            })
    }

    fn unified(&self) -> Option<&Path> {
        self.paths.unified.as_deref()
    }

    /// The v1 freezer directory, if this layout freezes through v1.
    fn v1_freezer(&self) -> Option<&Path> {
        self.paths.v1.get("freezer").map(PathBuf::as_path)
    }

    /// The directory whose cgroup.procs lists the container's processes.
    fn tracking_dir(&self) -> Option<&Path> {
        self.unified().or_else(|| {
            ["freezer", "pids", "memory", "cpu", "devices"]
                .iter()
                .find_map(|c| self.paths.v1.get(*c))
                .or_else(|| self.paths.v1.values().next())
                .map(PathBuf::as_path)
        })
    }

    pub(crate) fn write_resources(&self, r: &LinuxResources) -> Result<()> {
        match self.hierarchy {
            Hierarchy::V1 | Hierarchy::Hybrid => {
                let mem_limit = self
                    .paths
                    .v1
                    .get("memory")
                    .and_then(|d| fsutil::read_u64(&d.join("memory.limit_in_bytes")).ok());
                let has = |file: &str| {
                    self.v1_dir_of("", file)
                        .map(|d| d.join(file).exists())
                        .unwrap_or(false)
                };
                let devices_list = self
                    .paths
                    .v1
                    .get("devices")
                    .and_then(|d| std::fs::read_to_string(d.join("devices.list")).ok());
                let plan = v1::plan(
                    r,
                    &Probe {
                        has: &has,
                        mem_limit,
                        devices_list,
                    },
                )?;
                fsutil::run_plan(&plan, &|w| self.v1_dir(w))
            }
            Hierarchy::V2 => {
                let dir = self.v2_dir()?;
                let has = |file: &str| dir.join(file).exists();
                let plan = v2::plan(
                    r,
                    &Probe {
                        has: &has,
                        mem_limit: None,
                        devices_list: None,
                    },
                )?;
                fsutil::run_plan(&plan, &|_| Ok(dir.to_path_buf()))?;
                if let Some(d) = r.devices() {
                    let prog = devices::compile(&devices::parse_rules(d)?);
                    let fd = bpf::load_device_prog(&prog)?;
                    let cg = open_dir(dir)?;
                    bpf::replace_device_prog(cg.as_fd(), &fd)?;
                }
                Ok(())
            }
        }
    }

    /// checkBeforeUpdate: refuses a memory limit below what the cgroup already uses.
    pub(crate) fn check_update(&self, r: &LinuxResources) -> Result<()> {
        if let Some(m) = r.memory() {
            if let (Some(true), Some(limit)) = (m.check_before_update(), m.limit()) {
                let usage = match (self.hierarchy, self.paths.v1.get("memory"), self.unified()) {
                    (Hierarchy::V2, _, Some(d)) => Some(d.join("memory.current")),
                    (_, Some(d), _) => Some(d.join("memory.usage_in_bytes")),
                    _ => None,
                };
                if let Some(f) = usage {
                    let used = fsutil::read_u64(&f)?;
                    if limit > 0 && (limit as u64) < used {
                        return Err(Error::InvalidValue {
                            field: "memory.limit".into(),
                            reason: format!(
                                "{limit} is below current usage {used} ({}) and checkBeforeUpdate is set",
                                f.display()
                            ),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    fn v2_dir(&self) -> Result<&Path> {
        self.unified()
            .ok_or_else(|| Error::NoUnified(format!("{:?}", self.paths.dirs())))
    }

    /// Removes the directories this manager created, deepest first, if nothing joined.
    fn undo_create(&self) {
        if !self.pids().map(|p| p.is_empty()).unwrap_or(false) {
            return;
        }
        let mut created = lock(&self.created);
        for d in created.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
        created.clear();
    }

    fn create_inner(&self, created: &mut Vec<PathBuf>) -> Result<()> {
        for dir in self.paths.dirs() {
            created.extend(fsutil::mkdir_all(&dir)?);
        }
        if let Some(cpuset) = self.paths.v1.get("cpuset") {
            seed_cpuset(cpuset)?;
        }
        if self.hierarchy == Hierarchy::V2 {
            if let (Some(mount), Some(dir)) = (&self.unified_mount, self.unified()) {
                v2::enable_controllers(mount, dir)?;
            }
        }
        Ok(())
    }

    fn freeze_v2(dir: &Path, on: bool) -> Result<()> {
        fsutil::write_file(dir, "cgroup.freeze", if on { "1" } else { "0" }, "freeze")?;
        let want = u64::from(on);
        wait_for("freeze", dir, || {
            Ok(fsutil::keyed_value(&dir.join("cgroup.events"), "frozen")? == Some(want))
        })
    }
}

/// Opens a cgroup directory for bpf attach or CLONE_INTO_CGROUP.
fn open_dir(dir: &Path) -> Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map(OwnedFd::from)
        .map_err(crate::error::io_err("open", dir))
}

/// Polls `done` with growing sleeps until it is true or SETTLE_TIMEOUT passes.
pub(crate) fn wait_for(
    what: &'static str,
    path: &Path,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let start = Instant::now();
    let mut delay = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(());
        }
        if start.elapsed() > SETTLE_TIMEOUT {
            return Err(Error::Timeout {
                what,
                path: path.to_path_buf(),
                reason: format!("still not done after {:?}", SETTLE_TIMEOUT),
            });
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_millis(50));
    }
}

/// A new v1 cpuset starts with empty cpus/mems and refuses tasks until they are set:
/// copy them from the parent, top-down, wherever they are empty.
fn seed_cpuset(dir: &Path) -> Result<()> {
    let mut chain = Vec::new();
    let mut cur = Some(dir);
    while let Some(d) = cur {
        if !d.join("cpuset.cpus").exists() {
            break;
        }
        chain.push(d);
        cur = d.parent();
    }
    chain.reverse();
    for pair in chain.windows(2) {
        for file in ["cpuset.cpus", "cpuset.mems"] {
            let mine = fsutil::read_string(&pair[1].join(file))?;
            if mine.trim().is_empty() {
                let parent = fsutil::read_string(&pair[0].join(file))?;
                fsutil::write_file(pair[1], file, parent.trim(), "cpuset (copied from parent)")?;
            }
        }
    }
    Ok(())
}

/// Pids of `dir` and every cgroup below it.
fn pids_recursive(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    out.extend(fsutil::read_pids(&dir.join("cgroup.procs"))?);
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for e in rd.flatten() {
        if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            pids_recursive(&e.path(), out)?;
        }
    }
    Ok(())
}

/// rmdir of a cgroup and the cgroups nested in it, deepest first.
fn remove_tree(dir: &Path) -> Result<()> {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                remove_tree(&e.path())?;
            }
        }
    }
    fsutil::rmdir_retry(dir)
}

impl Manager for FsManager {
    fn create(&self) -> Result<()> {
        let mut made = Vec::new();
        let res = self.create_inner(&mut made);
        if res.is_err() {
            for d in made.iter().rev() {
                let _ = std::fs::remove_dir(d);
            }
        } else {
            lock(&self.created).extend(made);
        }
        res
    }

    fn add_process(&self, pid: i32) -> Result<()> {
        for dir in self.paths.dirs() {
            fsutil::write_file(&dir, "cgroup.procs", &pid.to_string(), "pid")?;
        }
        Ok(())
    }

    fn apply(&self, r: &LinuxResources) -> Result<()> {
        let res = self.write_resources(r);
        if res.is_err() {
            self.undo_create();
        }
        res
    }

    fn update(&self, r: &LinuxResources) -> Result<()> {
        for dir in self.paths.dirs() {
            if !dir.is_dir() {
                return Err(Error::Io {
                    op: "update",
                    path: dir,
                    source: std::io::ErrorKind::NotFound.into(),
                });
            }
        }
        self.check_update(r)?;
        self.write_resources(r)
    }

    fn freeze(&self) -> Result<()> {
        if let Some(dir) = self.v1_freezer() {
            let res = wait_for("freeze", dir, || {
                // Writing FROZEN again nudges tasks that were busy (runc does the same).
                fsutil::write_file(dir, "freezer.state", "FROZEN", "freeze")?;
                Ok(fsutil::read_string(&dir.join("freezer.state"))?.trim() == "FROZEN")
            });
            if res.is_err() {
                let _ = self.thaw();
            }
            return res;
        }
        match self.unified() {
            Some(dir) => {
                let res = Self::freeze_v2(dir, true);
                if res.is_err() {
                    let _ = self.thaw();
                }
                res
            }
            None => Err(Error::MissingController {
                field: "freeze".into(),
                controller: "freezer".into(),
                file: "freezer.state".into(),
            }),
        }
    }

    fn thaw(&self) -> Result<()> {
        if let Some(dir) = self.v1_freezer() {
            return fsutil::write_file(dir, "freezer.state", "THAWED", "thaw");
        }
        match self.unified() {
            Some(dir) => Self::freeze_v2(dir, false),
            None => Err(Error::MissingController {
                field: "thaw".into(),
                controller: "freezer".into(),
                file: "freezer.state".into(),
            }),
        }
    }

    fn is_frozen(&self) -> Result<bool> {
        if let Some(dir) = self.v1_freezer() {
            return Ok(fsutil::read_string(&dir.join("freezer.state"))?.trim() == "FROZEN");
        }
        match self.unified() {
            Some(dir) => Ok(fsutil::keyed_value(&dir.join("cgroup.events"), "frozen")? == Some(1)),
            None => Ok(false),
        }
    }

    fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        if let Some(dir) = self.tracking_dir() {
            pids_recursive(dir, &mut out)?;
        }
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    fn kill_all(&self, sig: i32) -> Result<()> {
        if sig == libc::SIGKILL {
            if let Some(dir) = self.unified().filter(|d| d.join("cgroup.kill").exists()) {
                return fsutil::write_file(dir, "cgroup.kill", "1", "kill");
            }
        }
        // Freeze first so nothing forks between listing and signalling.
        let frozen = self.freeze().is_ok();
        let mut res = Ok(());
        for pid in self.pids()? {
            // SAFETY: kill has no memory effects.
            if unsafe { libc::kill(pid, sig) } != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() != Some(libc::ESRCH) && res.is_ok() {
                    res = Err(Error::Io {
                        op: "kill",
                        path: PathBuf::from(format!("/proc/{pid}")),
                        source: e,
                    });
                }
            }
        }
        if frozen {
            self.thaw()?;
        }
        res
    }

    fn stats(&self) -> Result<Stats> {
        match self.hierarchy {
            Hierarchy::V1 | Hierarchy::Hybrid => v1::stats(&self.paths.v1),
            Hierarchy::V2 => v2::stats(self.v2_dir()?),
        }
    }

    fn oom_watcher(&self) -> Result<OomWatcher> {
        match (self.hierarchy, self.paths.v1.get("memory")) {
            (Hierarchy::V2, _) => OomWatcher::v2(self.v2_dir()?),
            (_, Some(dir)) => OomWatcher::v1(dir),
            (_, None) => Err(Error::MissingController {
                field: "oom notification".into(),
                controller: "memory".into(),
                file: "memory.oom_control".into(),
            }),
        }
    }

    fn destroy(&self) -> Result<()> {
        if !self.pids()?.is_empty() {
            self.kill_all(libc::SIGKILL)?;
            let dir = self.tracking_dir().unwrap_or(Path::new("/"));
            wait_for("kill before removal", dir, || Ok(self.pids()?.is_empty()))?;
        }
        let dirs = self.paths.dirs();
        for dir in &dirs {
            remove_tree(dir)?;
        }
        let mut created = lock(&self.created);
        for d in created.iter().rev().filter(|d| !dirs.contains(d)) {
            // Ancestors may hold other containers' cgroups by now: leave those.
            match std::fs::remove_dir(d) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENOENT | libc::ENOTEMPTY | libc::EBUSY)
                    ) => {}
                Err(source) => {
                    return Err(Error::Io {
                        op: "rmdir",
                        path: d.clone(),
                        source,
                    })
                }
            }
        }
        created.clear();
        Ok(())
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.paths.dirs()
    }

    fn v2_dir_fd(&self) -> Option<OwnedFd> {
        open_dir(self.unified()?).ok()
    }

    fn state(&self) -> CgroupState {
        CgroupState {
            hierarchy: self.hierarchy,
            paths: self.paths.clone(),
            unified_mount: self.unified_mount.clone(),
            created: lock(&self.created).clone(),
            systemd: None,
        }
    }
}
