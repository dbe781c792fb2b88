//! Container lifecycle: create, start, state, kill, delete, list — the operations behind
//! runc's command line. Each takes the container's lock for its whole duration.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::Spec;

use crate::config;
use crate::error::{Error, IoContext, Result};
use crate::init::InitConfig;
use crate::lifecycle::{self, Operation};
use crate::namespaces::Plan;
use crate::state::{self, ContainerDir, OciState, Record, RuntimeRoot, Status};
use crate::sync::{ChildMsg, ParentMsg};

/// Options of `create` (and `run`).
#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
}

/// A created container's init process.
#[derive(Debug, Clone, Copy)]
pub struct Created {
    pub pid: Pid,
    /// Whether the caller can waitpid() it (it is our child, or we are its subreaper).
    pub is_child: bool,
}

pub struct Runtime {
    root: RuntimeRoot,
    /// `--systemd-cgroup`: new containers get a systemd scope (see cgroup.rs).
    pub(crate) systemd_cgroup: bool,
}

pub(crate) fn state_json(rec: &Record, status: Status) -> serde_json::Value {
    serde_json::json!({
        "ociVersion": "1.2.0",
        "id": rec.id,
        "status": status,
        "pid": rec.pid,
        "bundle": rec.bundle,
        "annotations": rec.annotations,
    })
}

pub(crate) fn load_spec_copy(dir: &Path) -> Result<Spec> {
    let p = dir.join(state::CONFIG_FILE);
    config::parse_spec(&std::fs::read(&p).at(&p)?)
}

/// Send to init; if init already died, report init's own last words instead of EPIPE.
/// Never waits for init: a live init that cannot take the message waits for us.
fn send(ch: &crate::sync::Channel, msg: &ParentMsg) -> Result<()> {
    ch.send(msg).map_err(|e| match ch.try_recv::<ChildMsg>() {
        Ok(Some(ChildMsg::Failed(why))) => Error::Reported(why),
        // Gone without a word: killed (the OOM killer in a small memory limit, a signal).
        _ if matches!(
            &e,
            Error::Sys {
                source: nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET,
                ..
            }
        ) =>
        {
            Error::Init(
                "the container init died during setup without a word (killed? out of memory?)"
                    .into(),
            )
        }
        _ => e,
    })
}

/// Undo a half-made container: kill its init, remove its cgroup and state directory.
/// Every step of `create` is recorded in state.json before it is taken, so `delete
/// --force` can do the same after a create that was killed midway.
struct CreateGuard {
    dir: Option<ContainerDir>,
    init: Option<(Pid, bool)>,
    cgroup: Option<berth_cgroups::CgroupState>,
}

impl Drop for CreateGuard {
    fn drop(&mut self) {
        if let Some((pid, is_child)) = self.init.take() {
            let _ = kill(pid, Signal::SIGKILL);
            if is_child {
                let _ = waitpid(pid, None);
            }
        }
        if let Some(state) = self.cgroup.take() {
            let _ = berth_cgroups::manager_from_state(state).destroy();
        }
        if let Some(dir) = self.dir.take() {
            let _ = dir.remove();
        }
    }
}

impl CreateGuard {
    fn dir(&self) -> &ContainerDir {
        self.dir
            .as_ref()
            .expect("the state directory exists for the whole create")
    }

    /// Record `rec` (state.json is replaced atomically).
    fn record(&self, rec: &Record) -> Result<()> {
        self.dir().save(rec)
    }

    /// Everything is done: nothing is undone any more.
    fn disarm(mut self) {
        self.init = None;
        self.cgroup = None;
        self.dir = None;
    }
}

/// Answer init until it reports `created`: run the createRuntime and prestart hooks when
/// it asks (its namespaces and mounts exist, pivot_root has not happened yet).
fn wait_until_created(ch: &crate::sync::Channel, spec: &Spec, rec: &Record) -> Result<()> {
    loop {
        match ch.recv::<ChildMsg>()? {
            Some(ChildMsg::NamespacesReady) => {
                let state = state_json(rec, Status::Creating);
                if let Some(h) = spec.hooks() {
                    for (kind, hooks) in [
                        ("prestart", h.prestart()),
                        ("createRuntime", h.create_runtime()),
                    ] {
                        if let Some(hooks) = hooks {
                            crate::hooks::run(kind, hooks, &state)?;
                        }
                    }
                }
                send(ch, &ParentMsg::Continue { state })?;
            }
            Some(ChildMsg::Created) => return Ok(()),
            Some(ChildMsg::Failed(msg)) => return Err(Error::Reported(msg)),
            Some(other) => return Err(Error::Init(format!("unexpected message {other:?}"))),
            None => return Err(Error::Init("the container init exited during setup".into())),
        }
    }
}

fn this_process() -> Option<(i32, u64)> {
    let pid = std::process::id() as i32;
    state::proc_stat(pid).map(|(start, _)| (pid, start))
}

impl Runtime {
    pub fn new(root: impl Into<PathBuf>) -> Runtime {
        Runtime {
            root: RuntimeRoot::new(root),
            systemd_cgroup: false,
        }
    }

    pub fn root(&self) -> &RuntimeRoot {
        &self.root
    }

    /// Create a container from a bundle; init waits for `start`.
    ///
    /// The stages, each recorded before it is taken: state directory, cgroup, init
    /// process, init's configuration and cgroup placement, createRuntime/prestart hooks,
    /// `created`. A failure at any stage unwinds what the earlier ones made.
    pub fn create(&self, id: &str, opts: &CreateOptions) -> Result<Created> {
        config::validate_id(id)?;
        tracing::debug!(id, "create");
        let bundle = std::path::absolute(&opts.bundle).at(&opts.bundle)?;
        let spec = config::load_bundle_spec(&bundle)?;
        config::validate(&spec, &bundle)?;
        let plan = Plan::from_spec(&spec);
        let rootfs = config::rootfs_path(&bundle, &spec)?;
        let (seccomp, console) = crate::exec::seccomp_and_console(&spec, &opts.console_socket)?;

        // Stage 1: the state directory. It refuses a duplicate id before anything of the
        // existing container's (its cgroup) could be touched.
        let mut guard = CreateGuard {
            dir: Some(self.root.create_container_dir(id)?),
            init: None,
            cgroup: None,
        };
        let dir_path = guard.dir().path.clone();
        let placement = crate::cgroup::plan(&spec, id, self.systemd_cgroup)?;
        let mut rec = Record {
            id: id.to_string(),
            pid: 0,
            pid_start_time: 0,
            bundle: bundle.clone(),
            rootfs: rootfs.clone(),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            owner_uid: nix::unistd::geteuid().as_raw(),
            annotations: spec.annotations().clone().unwrap_or_default(),
            started: false,
            cgroup: None,
            exit_status: None,
            creating: true,
            creator: this_process(),
        };
        guard.record(&rec)?;
        std::fs::write(
            dir_path.join(state::CONFIG_FILE),
            serde_json::to_vec(&spec).expect("spec serializes"),
        )
        .at(dir_path.join(state::CONFIG_FILE))?;

        // Stage 2: the cgroup, before init exists. On a pure v2 host init is born in it;
        // elsewhere init is moved in right after it is sent its config, so the move's wait
        // (the first v1 migration waits for an RCU grace period) overlaps init's mounts.
        if let Some(p) = &placement {
            let planned = p.planned_state();
            rec.cgroup = Some(serde_json::to_value(&planned).expect("serializes"));
            guard.record(&rec)?;
            guard.cgroup = Some(planned);
            p.create()?;
            guard.cgroup = Some(p.state());
        }
        tracing::debug!(id, "state directory and cgroup ready");

        // Stage 3: the init process, from a sealed copy of berth.
        let exe = crate::sealed_exe::sealed_self()?;
        let start_listener = crate::init::listen_for_start(&dir_path)?;
        // The console socket and the start listener must survive the exec into init.
        for fd in console
            .as_ref()
            .map(|c| c.as_raw_fd())
            .into_iter()
            .chain([start_listener.as_raw_fd()])
        {
            // SAFETY: fcntl on an fd we own.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        }
        let target = placement
            .as_ref()
            .filter(|_| !plan.uses_user_ns())
            .and_then(|p| p.clone_target());
        let spawned = crate::spawn::spawn_init(&spec, &plan, &exe, target.as_ref())?;
        tracing::debug!(id, pid = spawned.pid.as_raw(), "init spawned");
        drop(exe);
        guard.init = Some((spawned.pid, spawned.is_child));
        rec.pid = spawned.pid.as_raw();
        rec.pid_start_time = state::proc_stat(rec.pid).map(|s| s.0).unwrap_or(0);
        guard.record(&rec)?;

        // Stage 4: init's configuration, devices, and its place in the cgroup.
        let ch = &spawned.channel;
        send(
            ch,
            &ParentMsg::Config(Box::new(InitConfig {
                id: id.to_string(),
                spec: spec.clone(),
                bundle: bundle.clone(),
                rootfs,
                state_dir: dir_path.clone(),
                plan,
                no_pivot: opts.no_pivot,
                preserve_fds: opts.preserve_fds,
                console_socket: console.as_ref().map(|c| c.as_raw_fd()),
                start_listener: start_listener.as_raw_fd(),
                seccomp,
                cgroup_mounts: placement
                    .as_ref()
                    .map(|p| {
                        p.state()
                            .paths
                            .mounts(std::path::Path::new(berth_cgroups::DEFAULT_ROOT))
                    })
                    .unwrap_or_default(),
            })),
        )?;
        drop(console);
        drop(start_listener);
        if let Some(devices) = spec.linux().as_ref().and_then(|l| l.net_devices().as_ref()) {
            crate::netdev::move_into(devices, spawned.pid.as_raw())?;
        }
        if let Some(p) = &placement {
            if !spawned.in_cgroup {
                p.add(spawned.pid)?;
            }
            rec.cgroup = Some(serde_json::to_value(p.state()).expect("serializes"));
        }
        guard.record(&rec)?;
        send(ch, &ParentMsg::CgroupReady)?;
        tracing::debug!(id, "cgroup ready");

        // Stage 5: hooks between namespaces and pivot_root, then `created`.
        wait_until_created(ch, &spec, &rec)?;
        tracing::debug!(id, "created");
        rec.pid_start_time = state::proc_stat(rec.pid)
            .map(|s| s.0)
            .unwrap_or(rec.pid_start_time);
        rec.creating = false;
        rec.creator = None;
        guard.record(&rec)?;
        if let Some(pid_file) = &opts.pid_file {
            write_pid_file(pid_file, rec.pid)?;
        }
        guard.disarm();
        Ok(Created {
            pid: spawned.pid,
            is_child: spawned.is_child,
        })
    }

    /// Read a record without taking the lock (state.json is replaced atomically).
    fn peek(&self, id: &str) -> Result<Record> {
        config::validate_id(id)?;
        let p = self.root.container_dir(id).join(state::STATE_FILE);
        let text = match std::fs::read(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(e).at(&p),
        };
        serde_json::from_slice(&text)
            .map_err(|e| Error::Init(format!("{}: corrupt state: {e}", p.display())))
    }

    pub(crate) fn open(&self, id: &str) -> Result<(ContainerDir, Record)> {
        config::validate_id(id)?;
        let dir = self.root.open_container_dir(id)?;
        let rec = dir.load()?;
        Ok((dir, rec))
    }

    pub fn status_of(&self, rec: &Record) -> Status {
        if rec.creating {
            // A create that died midway left a container that can only be deleted.
            return if state::creator_alive(rec) {
                Status::Creating
            } else {
                Status::Stopped
            };
        }
        if !state::init_alive(rec) {
            Status::Stopped
        } else if !rec.started {
            Status::Created
        } else if crate::cgroup::is_frozen(rec) {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn state(&self, id: &str) -> Result<OciState> {
        let rec = self.peek(id)?;
        let status = self.status_of(&rec);
        Ok(OciState {
            oci_version: "1.2.0".into(),
            id: rec.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                rec.pid
            },
            status,
            bundle: rec.bundle.clone(),
            rootfs: rec.rootfs.clone(),
            created: rec.created.clone(),
            owner: nix::unistd::User::from_uid(rec.owner_uid.into())
                .ok()
                .flatten()
                .map_or_else(|| rec.owner_uid.to_string(), |u| u.name),
            annotations: rec.annotations.clone(),
        })
    }

    pub fn list(&self) -> Result<Vec<OciState>> {
        Ok(self
            .root
            .list()?
            .iter()
            .filter_map(|id| self.state(id).ok())
            .collect())
    }

    /// Let a created container's init exec the user process.
    pub fn start(&self, id: &str) -> Result<()> {
        let (dir, mut rec) = self.open(id)?;
        lifecycle::check(id, Operation::Start, self.status_of(&rec))?;
        let spec = load_spec_copy(&dir.path)?;
        crate::init::request_start(&dir.path, state_json(&rec, Status::Created))?;
        rec.started = true;
        dir.save(&rec)?;
        let _ = std::fs::remove_file(dir.path.join(state::START_SOCKET));
        if let Some(hooks) = spec.hooks().as_ref().and_then(|h| h.poststart().clone()) {
            crate::hooks::run_logged("poststart", &hooks, &state_json(&rec, Status::Running));
        }
        Ok(())
    }

    /// Send a signal to the container's init, or with `all` to every process in it.
    pub fn kill(&self, id: &str, sig: Signal, all: bool) -> Result<()> {
        let (_dir, rec) = self.open(id)?;
        lifecycle::check(id, Operation::Kill, self.status_of(&rec))?;
        if all {
            crate::cgroup::signal_all(&rec, sig)?;
            return Ok(());
        }
        kill(Pid::from_raw(rec.pid), sig).map_err(|e| Error::Sys {
            op: format!("kill {} {sig}", rec.pid),
            source: e,
        })
    }

    /// Delete a stopped (or, with `force`, any) container and everything it holds, also
    /// what a `create` killed midway left.
    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let (dir, rec) = match self.open(id) {
            Ok(opened) => opened,
            Err(Error::NotFound(_)) if self.root.remove_unrecorded(id)? => return Ok(()),
            Err(e) => return Err(e),
        };
        let op = if force {
            Operation::DeleteForce
        } else {
            Operation::Delete
        };
        lifecycle::check(id, op, self.status_of(&rec))?;
        // A dead create may have left its init alive (it exits when it sees the channel
        // close, but need not have yet): kill it whatever the status says.
        if state::init_alive(&rec) {
            crate::cgroup::thaw(&rec);
            let _ = kill(Pid::from_raw(rec.pid), Signal::SIGKILL);
            wait_gone(&rec, Duration::from_secs(10));
        }
        crate::cgroup::destroy(&rec)?;
        if !rec.creating {
            if let Ok(spec) = load_spec_copy(&dir.path) {
                if let Some(hooks) = spec.hooks().as_ref().and_then(|h| h.poststop().clone()) {
                    crate::hooks::run_logged(
                        "poststop",
                        &hooks,
                        &state_json(&rec, Status::Stopped),
                    );
                }
            }
        }
        dir.remove()
    }
}

/// Poll until a process that is not our child is gone (or a zombie nobody reaps yet).
fn wait_gone(rec: &Record, limit: Duration) {
    let until = Instant::now() + limit;
    while state::init_alive(rec) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(2));
    }
}

pub(crate) fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension("berth-tmp");
    std::fs::write(&tmp, pid.to_string()).at(&tmp)?;
    std::fs::rename(&tmp, path).at(path)
}
