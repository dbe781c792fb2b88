//! The guest side: the Agent service. Containers are made by `berth-runtime` (through a
//! shim per process, [`crate::shim`]) under `<state>/runtime`, with bundles under
//! `<state>/bundles/<id>` and block rootfs mounted at `<state>/bundles/<id>/rootfs`.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use berth_runtime::Runtime;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::Signal;
use tokio::sync::{watch, Mutex};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::process::Proc;
use crate::proto::{self, agent_server};
use crate::shim::ShimTask;

/// How long RemoveContainer waits for a killed container's init to be reaped.
const KILL_GRACE: Duration = Duration::from_secs(10);

struct Container {
    bundle: PathBuf,
    /// The rootfs the agent mounted (block rootfs), unmounted on removal.
    mounted: Option<PathBuf>,
    init: Arc<Proc>,
    execs: HashMap<String, Arc<Proc>>,
}

/// The Agent service. `exe` is the agent binary (re-run as `shim` and as container init).
pub struct AgentService {
    exe: PathBuf,
    state_dir: PathBuf,
    runtime_root: PathBuf,
    versioned: AtomicBool,
    containers: Mutex<HashMap<String, Container>>,
    /// Ids being created: reserved without holding `containers` across the create.
    creating: std::sync::Mutex<HashSet<String>>,
    shutdown: watch::Sender<bool>,
}

/// An id reserved in `creating`, released on drop.
struct Reserved<'a> {
    set: &'a std::sync::Mutex<HashSet<String>>,
    id: String,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        if let Ok(mut set) = self.set.lock() {
            set.remove(&self.id);
        }
    }
}

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

fn runtime_status(e: berth_runtime::Error) -> Status {
    match e {
        berth_runtime::Error::NotFound(_) => Status::not_found(e.to_string()),
        berth_runtime::Error::Exists(_) => Status::already_exists(e.to_string()),
        berth_runtime::Error::BadState { .. } => Status::failed_precondition(e.to_string()),
        berth_runtime::Error::InvalidId { .. } | berth_runtime::Error::Config(_) => {
            Status::invalid_argument(e.to_string())
        }
        _ => Status::internal(e.to_string()),
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f).await.map_err(internal)?
}

/// The v2 cgroup directory of `pid` (its `0::` line), under the cgroup2 mount.
fn cgroup_dir(pid: i32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    // mountinfo: ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS... - FSTYPE SOURCE SUPER
    let point = mounts.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (post.split(' ').next() == Some("cgroup2")).then(|| pre.split(' ').nth(4))?
    })?;
    Some(Path::new(point).join(rel.trim_start_matches('/')))
}

fn read_u64(dir: &Path, file: &str, key: Option<&str>) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join(file)).ok()?;
    let value = match key {
        None => text.trim(),
        Some(k) => text
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix(' '))?,
    };
    value.trim().parse().ok()
}

impl AgentService {
    pub fn new(exe: PathBuf, state_dir: PathBuf) -> AgentService {
        AgentService {
            exe,
            runtime_root: state_dir.join("runtime"),
            state_dir,
            versioned: AtomicBool::new(false),
            containers: Mutex::new(HashMap::new()),
            creating: std::sync::Mutex::new(HashSet::new()),
            shutdown: watch::Sender::new(false),
        }
    }

    /// Turns true once Shutdown has removed every container.
    pub fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    fn check_version(&self) -> Result<(), Status> {
        if self.versioned.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(Status::failed_precondition(
                "call Version first (the protocol is not agreed yet)",
            ))
        }
    }

    async fn proc_of(&self, p: &proto::ProcessRef) -> Result<Arc<Proc>, Status> {
        let containers = self.containers.lock().await;
        let c = containers
            .get(&p.container_id)
            .ok_or_else(|| Status::not_found(format!("no container {:?}", p.container_id)))?;
        if p.exec_id.is_empty() {
            return Ok(c.init.clone());
        }
        c.execs.get(&p.exec_id).cloned().ok_or_else(|| {
            Status::not_found(format!(
                "no exec {:?} in container {:?}",
                p.exec_id, p.container_id
            ))
        })
    }

    /// Lay out the bundle: config.json with root.path at the rootfs; mount a block rootfs.
    fn make_bundle(
        bundle: &Path,
        spec_json: &[u8],
        rootfs: Option<proto::Rootfs>,
    ) -> Result<Option<PathBuf>, Status> {
        let mut spec: serde_json::Value = serde_json::from_slice(spec_json)
            .map_err(|e| Status::invalid_argument(format!("spec: {e}")))?;
        if !spec.is_object() {
            return Err(Status::invalid_argument("spec: not a JSON object"));
        }
        let source = rootfs
            .and_then(|r| r.source)
            .ok_or_else(|| Status::invalid_argument("rootfs: missing"))?;
        std::fs::create_dir_all(bundle)
            .map_err(|e| internal(format!("{}: {e}", bundle.display())))?;
        let (root, mounted) = match source {
            proto::rootfs::Source::Path(p) => {
                let p = PathBuf::from(p);
                if !p.is_absolute() || !p.is_dir() {
                    return Err(Status::invalid_argument(format!(
                        "rootfs {}: not an absolute path to a directory",
                        p.display()
                    )));
                }
                (p, None)
            }
            proto::rootfs::Source::Block(b) => {
                // virtio devices are probed asynchronously after the module loads: the
                // disk's node may appear after the agent is already serving.
                let until = std::time::Instant::now() + Duration::from_secs(10);
                while !Path::new(&b.device).exists() && std::time::Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let target = bundle.join("rootfs");
                std::fs::create_dir_all(&target).map_err(internal)?;
                let mut flags = MsFlags::MS_NODEV | MsFlags::MS_NOSUID;
                if !b.writable {
                    flags |= MsFlags::MS_RDONLY;
                }
                mount(
                    Some(b.device.as_str()),
                    &target,
                    Some(b.fstype.as_str()),
                    flags,
                    None::<&str>,
                )
                .map_err(|e| {
                    Status::invalid_argument(format!(
                        "rootfs: mount {} ({}) on {}: {e}",
                        b.device,
                        b.fstype,
                        target.display()
                    ))
                })?;
                (target.clone(), Some(target))
            }
        };
        let readonly = spec["root"]["readonly"].as_bool().unwrap_or(false);
        spec["root"] = serde_json::json!({"path": root, "readonly": readonly});
        let config = bundle.join("config.json");
        let written = serde_json::to_vec(&spec)
            .map_err(internal)
            .and_then(|text| std::fs::write(&config, text).map_err(internal));
        if let Err(e) = written {
            if let Some(m) = &mounted {
                let _ = umount2(m, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
        Ok(mounted)
    }

    fn unmake_bundle(bundle: &Path, mounted: Option<&Path>) {
        if let Some(m) = mounted {
            if let Err(e) = umount2(m, MntFlags::MNT_DETACH) {
                tracing::warn!("unmount {}: {e}", m.display());
            }
        }
        let _ = std::fs::remove_dir_all(bundle);
    }

    /// Kill what runs in the container, wait for its init, delete its runtime state.
    async fn remove(&self, id: &str, c: Container) -> Result<(), Status> {
        let root = self.runtime_root.clone();
        let (killed_id, running) = (id.to_string(), c.init.exit_code().is_none());
        if running {
            let _ = blocking(move || {
                Runtime::new(root)
                    .kill(&killed_id, Signal::SIGKILL, true)
                    .map_err(runtime_status)
            })
            .await;
            if tokio::time::timeout(KILL_GRACE, c.init.wait())
                .await
                .is_err()
            {
                tracing::warn!(id, "init not reaped {KILL_GRACE:?} after SIGKILL");
            }
        }
        let (root, deleted_id) = (self.runtime_root.clone(), id.to_string());
        let deleted = blocking(move || {
            Runtime::new(root)
                .delete(&deleted_id, true)
                .map_err(runtime_status)
        })
        .await;
        Self::unmake_bundle(&c.bundle, c.mounted.as_deref());
        deleted
    }
}

type OutputStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<proto::OutputChunk, Status>> + Send>>;

#[tonic::async_trait]
impl agent_server::Agent for AgentService {
    async fn version(
        &self,
        req: Request<proto::VersionRequest>,
    ) -> Result<Response<proto::VersionResponse>, Status> {
        let host = req.into_inner().protocol;
        if host != crate::PROTOCOL {
            return Err(Status::failed_precondition(format!(
                "berth-agent {} speaks protocol {}, the host speaks {host}: install matching berth and berth-agent binaries",
                env!("CARGO_PKG_VERSION"),
                crate::PROTOCOL
            )));
        }
        self.versioned.store(true, Ordering::Release);
        let kernel = nix::sys::utsname::uname()
            .map(|u| u.release().to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(Response::new(proto::VersionResponse {
            protocol: crate::PROTOCOL,
            agent_version: env!("CARGO_PKG_VERSION").into(),
            kernel,
        }))
    }

    async fn create_container(
        &self,
        req: Request<proto::CreateContainerRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let req = req.into_inner();
        berth_runtime::config::validate_id(&req.id).map_err(runtime_status)?;
        let _reserved = {
            let containers = self.containers.lock().await;
            let mut creating = self.creating.lock().map_err(internal)?;
            if containers.contains_key(&req.id) || !creating.insert(req.id.clone()) {
                return Err(Status::already_exists(format!(
                    "container {:?} already exists",
                    req.id
                )));
            }
            Reserved {
                set: &self.creating,
                id: req.id.clone(),
            }
        };
        let bundle = self.state_dir.join("bundles").join(&req.id);
        let mounted = Self::make_bundle(&bundle, &req.spec_json, req.rootfs).inspect_err(|_| {
            let _ = std::fs::remove_dir_all(&bundle);
        })?;
        let task = ShimTask::Create {
            bundle: bundle.clone(),
        };
        match Proc::spawn(&self.exe, &self.runtime_root, &req.id, &task, req.stdin).await {
            Ok(init) => {
                self.containers.lock().await.insert(
                    req.id,
                    Container {
                        bundle,
                        mounted,
                        init: Arc::new(init),
                        execs: HashMap::new(),
                    },
                );
                Ok(Response::new(proto::Empty {}))
            }
            Err(why) => {
                Self::unmake_bundle(&bundle, mounted.as_deref());
                Err(Status::failed_precondition(why))
            }
        }
    }

    async fn start(
        &self,
        req: Request<proto::ContainerRef>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let id = req.into_inner().id;
        if !self.containers.lock().await.contains_key(&id) {
            return Err(Status::not_found(format!("no container {id:?}")));
        }
        let root = self.runtime_root.clone();
        blocking(move || Runtime::new(root).start(&id).map_err(runtime_status)).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn exec(
        &self,
        req: Request<proto::ExecRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let req = req.into_inner();
        berth_runtime::config::validate_id(&req.exec_id)
            .map_err(|e| Status::invalid_argument(format!("exec id: {e}")))?;
        let process: serde_json::Value = serde_json::from_slice(&req.process_json)
            .map_err(|e| Status::invalid_argument(format!("process: {e}")))?;
        {
            let containers = self.containers.lock().await;
            let c = containers
                .get(&req.container_id)
                .ok_or_else(|| Status::not_found(format!("no container {:?}", req.container_id)))?;
            if c.execs.contains_key(&req.exec_id) {
                return Err(Status::already_exists(format!(
                    "exec {:?} already exists",
                    req.exec_id
                )));
            }
        }
        let task = ShimTask::Exec { process };
        let p = Proc::spawn(
            &self.exe,
            &self.runtime_root,
            &req.container_id,
            &task,
            req.stdin,
        )
        .await
        .map_err(Status::failed_precondition)?;
        let mut containers = self.containers.lock().await;
        let c = containers
            .get_mut(&req.container_id)
            .ok_or_else(|| Status::not_found("the container was removed meanwhile"))?;
        c.execs.insert(req.exec_id, Arc::new(p));
        Ok(Response::new(proto::Empty {}))
    }

    async fn signal(
        &self,
        req: Request<proto::SignalRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let req = req.into_inner();
        let p = req
            .process
            .ok_or_else(|| Status::invalid_argument("process: missing"))?;
        let sig = Signal::try_from(req.signal)
            .map_err(|_| Status::invalid_argument(format!("unknown signal {}", req.signal)))?;
        let proc = self.proc_of(&p).await?;
        if p.exec_id.is_empty() {
            let (root, id, all) = (self.runtime_root.clone(), p.container_id, req.all);
            blocking(move || {
                Runtime::new(root)
                    .kill(&id, sig, all)
                    .map_err(runtime_status)
            })
            .await?;
        } else {
            // The shim has not reaped it while no exit is recorded, so the pid is its own.
            if proc.exit_code().is_some() {
                return Err(Status::failed_precondition("the process has exited"));
            }
            nix::sys::signal::kill(nix::unistd::Pid::from_raw(proc.pid), sig)
                .map_err(|e| internal(format!("kill {}: {e}", proc.pid)))?;
        }
        Ok(Response::new(proto::Empty {}))
    }

    async fn wait(
        &self,
        req: Request<proto::ProcessRef>,
    ) -> Result<Response<proto::WaitResponse>, Status> {
        self.check_version()?;
        let proc = self.proc_of(&req.into_inner()).await?;
        let exit_code = proc.wait().await;
        Ok(Response::new(proto::WaitResponse { exit_code }))
    }

    async fn resize(
        &self,
        req: Request<proto::ResizeRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let p = req
            .into_inner()
            .process
            .ok_or_else(|| Status::invalid_argument("process: missing"))?;
        self.proc_of(&p).await?;
        // Processes get pipes, not a pty, so far: there is no window to resize.
        Err(Status::failed_precondition(
            "the process has no terminal (terminals in VM containers are not supported yet)",
        ))
    }

    type OutputStream = OutputStream;

    async fn output(
        &self,
        req: Request<proto::ProcessRef>,
    ) -> Result<Response<OutputStream>, Status> {
        self.check_version()?;
        let proc = self.proc_of(&req.into_inner()).await?;
        let rx = proc
            .take_output()
            .ok_or_else(|| Status::failed_precondition("the output already has a reader"))?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx).map(Ok))))
    }

    async fn write_stdin(
        &self,
        req: Request<proto::StdinRequest>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let req = req.into_inner();
        let p = req
            .process
            .ok_or_else(|| Status::invalid_argument("process: missing"))?;
        let proc = self.proc_of(&p).await?;
        proc.write_stdin(&req.data)
            .await
            .map_err(Status::failed_precondition)?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn close_stdin(
        &self,
        req: Request<proto::ProcessRef>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        self.proc_of(&req.into_inner()).await?.close_stdin().await;
        Ok(Response::new(proto::Empty {}))
    }

    async fn stats(
        &self,
        req: Request<proto::ContainerRef>,
    ) -> Result<Response<proto::StatsResponse>, Status> {
        self.check_version()?;
        let id = req.into_inner().id;
        let proc = self.proc_of(&crate::client::process(&id, None)).await?;
        if proc.exit_code().is_some() {
            return Err(Status::failed_precondition(format!(
                "container {id:?} is not running"
            )));
        }
        let dir = cgroup_dir(proc.pid)
            .ok_or_else(|| Status::failed_precondition("the container has no cgroup v2"))?;
        Ok(Response::new(proto::StatsResponse {
            memory_current: read_u64(&dir, "memory.current", None),
            memory_max: read_u64(&dir, "memory.max", None),
            cpu_usage_usec: read_u64(&dir, "cpu.stat", Some("usage_usec")),
            pids_current: read_u64(&dir, "pids.current", None),
        }))
    }

    async fn remove_container(
        &self,
        req: Request<proto::ContainerRef>,
    ) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let id = req.into_inner().id;
        let c = self
            .containers
            .lock()
            .await
            .remove(&id)
            .ok_or_else(|| Status::not_found(format!("no container {id:?}")))?;
        self.remove(&id, c).await?;
        Ok(Response::new(proto::Empty {}))
    }

    async fn shutdown(&self, _: Request<proto::Empty>) -> Result<Response<proto::Empty>, Status> {
        self.check_version()?;
        let all: Vec<(String, Container)> = self.containers.lock().await.drain().collect();
        for (id, c) in all {
            if let Err(e) = self.remove(&id, c).await {
                tracing::warn!(id, "shutdown: {}", e.message());
            }
        }
        self.shutdown.send_replace(true);
        Ok(Response::new(proto::Empty {}))
    }
}
