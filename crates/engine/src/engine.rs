//! The engine: image store + runtime + per-container metadata.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_image::{PullOptions, Store};

use crate::bundle::Bundles;
use crate::spec::ANNOTATION_STOP_SIGNAL;
use berth_runtime::oci::Process;
use berth_runtime::{CreateOptions, ExecOptions, Runtime};
use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use serde_json::{json, Value};

use crate::container::{generated_name, validate_name, Container, State, Status, LOG};
use crate::error::{sys, Error, IoContext, Result};
use crate::net::{self, NetSettings};
use crate::options::{Network, RunOptions};
use berth_runtime::foreground::{self, ConsoleSocket};

use crate::tty;

/// How long `rm -f` and `stop` wait for the monitor to record an exit after SIGKILL.
const REAP_LIMIT: Duration = Duration::from_secs(10);

/// `exec` flags (docker's), turned into a runtime process by [`Engine::exec_process`].
#[derive(Clone, Debug, Default)]
pub struct ExecRequest {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub tty: bool,
    /// `-i`: keep stdin (otherwise /dev/null).
    pub interactive: bool,
}

pub struct Engine {
    data_root: PathBuf,
    bundles: Bundles,
    runtime: Runtime,
    net: NetSettings,
    vm: crate::vm::VmSettings,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

fn random_bytes(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0; n];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .at("/dev/urandom")?;
    Ok(b)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `pid` is a live process (not a zombie nobody reaped yet).
fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        // The state follows the command name, which is in parentheses and may hold any byte.
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    })
}

/// Point fd `target` at `file` (the container's init inherits fds 0-2).
fn redirect(file: &impl AsRawFd, target: i32) -> Result<()> {
    // SAFETY: dup2 on two fds this process owns.
    if unsafe { libc::dup2(file.as_raw_fd(), target) } < 0 {
        return Err(sys(format!("dup2 onto fd {target}"))(nix::Error::last()));
    }
    Ok(())
}

fn dev_null() -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .at("/dev/null")
}

/// Prepare this process to attach a container process: stdin from /dev/null unless
/// `interactive`, subreaper (an init or exec'd process may be our grandchild), and the
/// forwarded signals blocked so the wait can sigwait them. Returns that mask.
fn attach_process(interactive: bool) -> Result<SigSet> {
    if !interactive {
        redirect(&dev_null()?, 0)?;
    }
    foreground::become_subreaper();
    let mask = foreground::signal_mask();
    mask.thread_block().map_err(sys("sigprocmask"))?;
    Ok(mask)
}

impl Engine {
    /// Open the image store at `data_root` and the runtime state at `runtime_root`.
    pub fn open(data_root: &Path, runtime_root: &Path) -> Result<Engine> {
        // Absolute, since bundles name files under it (a relative root would be read
        // relative to the bundle).
        let data_root = &std::path::absolute(data_root).at(data_root)?;
        let runtime_root = &std::path::absolute(runtime_root).at(runtime_root)?;
        let bundles = Bundles::new(&Store::open(data_root)?)?;
        Ok(Engine {
            data_root: data_root.to_path_buf(),
            bundles,
            runtime: Runtime::new(runtime_root),
            net: NetSettings::new(data_root, runtime_root),
            vm: crate::vm::VmSettings::from_env(),
        })
    }

    /// What VM containers boot (defaults from [`crate::vm::VmSettings::from_env`]).
    pub fn vm_settings_mut(&mut self) -> &mut crate::vm::VmSettings {
        &mut self.vm
    }

    /// Where networks, plugins and the CNI cache are (defaults from [`Engine::open`]).
    pub fn net_settings(&self) -> &NetSettings {
        &self.net
    }

    pub fn net_settings_mut(&mut self) -> &mut NetSettings {
        &mut self.net
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    fn containers_dir(&self) -> PathBuf {
        self.data_root.join("containers")
    }

    /// Serialises name checks and creation among engine processes.
    fn lock(&self) -> Result<Flock<File>> {
        let p = self.data_root.join("containers.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        Flock::lock(f, FlockArg::LockExclusive)
            .map_err(|(_, e)| sys(format!("flock {}", p.display()))(e))
    }

    /// [`Engine::lock`] unless another process holds it (`None` then).
    fn try_lock(&self) -> Result<Option<Flock<File>>> {
        let p = self.data_root.join("containers.lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
            Ok(l) => Ok(Some(l)),
            Err((_, nix::Error::EWOULDBLOCK)) => Ok(None),
            Err((_, e)) => Err(sys(format!("flock {}", p.display()))(e)),
        }
    }

    /// Undo the network state a crash left behind, and return the container IDs done:
    /// * a container that no longer runs, whose recorder (monitor or foreground CLI) is
    ///   dead, but whose metadata still says attached (the recorder was killed before
    ///   it detached): CNI DEL, namespace removed, metadata saved;
    /// * a container whose create was interrupted (listed dead): its cache entries and
    ///   namespace ([`net::sweep`]);
    /// * CNI cache entries (this data root's) of IDs no container has (its directory
    ///   is gone): DEL from the cache, aardvark-dns records and namespace removed.
    ///
    /// Creation holds the engine lock, so with it held nothing is half-made by a live
    /// process. `wait`: block for the lock (`system prune`); else skip when it is taken
    /// (the start of every command must not queue behind a create).
    pub fn reclaim_network(&self, wait: bool) -> Result<Vec<String>> {
        let _lock = if wait {
            self.lock()?
        } else {
            match self.try_lock()? {
                Some(l) => l,
                None => return Ok(Vec::new()),
            }
        };
        let all = self.list()?;
        let mut done = Vec::new();
        for c in &all {
            let stale = c.network.as_ref().is_some_and(|n| n.attached)
                && c.state.status == Status::Exited
                && !alive(c.state.monitor_pid);
            if stale {
                let mut fresh = c.clone();
                self.network_down(&mut fresh);
                fresh.save()?;
                done.push(c.id.clone());
            } else if c.state.status == Status::Dead && self.has_net_leftovers(&c.id) {
                self.sweep_logged(&c.id, &mut done);
            }
        }
        for id in self.net_leftover_ids() {
            if !all.iter().any(|c| c.id == id) {
                self.sweep_logged(&id, &mut done);
            }
        }
        Ok(done)
    }

    /// [`net::sweep`]; a failure is logged (the next command tries again).
    fn sweep_logged(&self, id: &str, done: &mut Vec<String>) {
        match net::sweep(&self.net, id) {
            Ok(()) => done.push(id.to_string()),
            Err(e) => tracing::warn!(id, error = %e, "reclaiming a crashed container's network"),
        }
    }

    /// Whether a cache entry or a namespace of `id` exists.
    fn has_net_leftovers(&self, id: &str) -> bool {
        !self.net.cni.cached_for(id).is_empty() || self.net.netns_dir.join(id).exists()
    }

    /// Container IDs (64 hex digits, as [`Engine::create`] makes them; anything else
    /// is not berth's to touch) with a CNI cache entry. The cache is this data root's;
    /// the namespace directory is not scanned, since the runtime root may be shared with
    /// another data root whose containers this one does not know.
    fn net_leftover_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.net.cni.cached_ids();
        ids.retain(|id| {
            id.len() == 64 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        });
        ids
    }

    /// Every engine container, oldest first, with its live status; containers whose
    /// creation was interrupted (creator killed after the rootfs was mounted) are listed
    /// as dead, so `ps -a` shows them and `rm` removes them.
    pub fn list(&self) -> Result<Vec<Container>> {
        let dir = self.containers_dir();
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            if let Some(c) = Container::load(&e.path())? {
                out.push(self.refresh(c));
            }
        }
        for b in self.bundles.abandoned()? {
            if out.iter().any(|c| c.id == b.id) {
                continue; // metadata written, commit not: a created container
            }
            let cdir = dir.join(&b.id);
            let created = b.created.map_or_else(now, |t| {
                chrono::DateTime::<chrono::Utc>::from(t)
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
            });
            out.push(Container {
                name: String::new(),
                image_id: b.image.as_ref().map(|i| i.to_string()).unwrap_or_default(),
                command: Vec::new(),
                created,
                options: RunOptions {
                    image: b.image.map(|i| i.to_string()).unwrap_or_default(),
                    ..RunOptions::default()
                },
                bundle: cdir.join("bundle"),
                log_path: cdir.join(LOG),
                stop_signal: "SIGKILL".into(),
                state: State {
                    status: Status::Dead,
                    ..State::default()
                },
                network: None,
                id: b.id,
            });
        }
        out.sort_by(|a, b| a.created.cmp(&b.created));
        Ok(out)
    }

    /// Combine recorded state with the runtime's view: a container whose init is gone
    /// but whose exit nobody recorded (monitor killed, host rebooted) reads as exited.
    fn refresh(&self, mut c: Container) -> Container {
        if matches!(c.state.status, Status::Running | Status::Paused) {
            c.state.status = match self.runtime.state(&c.id).map(|s| s.status) {
                Ok(berth_runtime::Status::Running) => Status::Running,
                Ok(berth_runtime::Status::Paused) => Status::Paused,
                Ok(berth_runtime::Status::Created | berth_runtime::Status::Creating) => {
                    Status::Created
                }
                _ => Status::Exited,
            };
        }
        c
    }

    /// Find a container by full ID, name, or unique ID prefix.
    pub fn get(&self, reference: &str) -> Result<Container> {
        find(&self.list()?, reference).cloned()
    }

    /// Pull the image if needed, make the bundle (overlay rootfs + config.json with the
    /// flags applied), the log file and the metadata. Nothing runs yet.
    pub fn create(&self, opts: &RunOptions) -> Result<Container> {
        let _lock = self.lock()?;
        let existing = self.list()?;
        let name = match &opts.name {
            Some(n) => {
                validate_name(n)?;
                if let Some(c) = existing.iter().find(|c| &c.name == n) {
                    return Err(Error::NameInUse {
                        name: n.clone(),
                        id: c.id.clone(),
                    });
                }
                n.clone()
            }
            None => loop {
                let n = generated_name(&random_bytes(3)?);
                if !existing.iter().any(|c| c.name == n) {
                    break n;
                }
            },
        };
        if opts.isolation == crate::vm::Isolation::Vm {
            crate::vm::check(opts, &self.vm)?;
        }
        // An unknown network or a -p it cannot take fails before anything is made.
        let cni_net = net::resolve(&self.net, &opts.network)?;
        net::check_flags(opts, cni_net.as_ref())?;
        let mut opts = opts.clone();
        // The namespace to join (container:, ns:) and whose /etc files to share.
        let (joined, shared) = match &opts.network {
            Network::Container(r) => {
                let target = find(&existing, r)?;
                if target.state.status != Status::Running {
                    return Err(Error::BadState {
                        id: target.id.clone(),
                        why: format!(
                            "is {}: --network container: needs it running",
                            target.state.status
                        ),
                    });
                }
                let path = match target.network.as_ref().filter(|n| n.attached) {
                    Some(st) => st.netns.clone(),
                    None => PathBuf::from(format!("/proc/{}/ns/net", target.state.pid)),
                };
                opts.network = Network::Container(target.id.clone());
                (Some(path), Some(target.dir().to_path_buf()))
            }
            Network::Path(p) => (Some(berth_net::NetNs::existing(p)?.path), None),
            _ => (None, None),
        };
        let id = hex(&random_bytes(32)?);
        let image = self
            .bundles
            .store()
            .find_or_pull(&opts.image, &PullOptions::default())?;
        if opts.publish_all {
            let exposed = image
                .config
                .config
                .exposed_ports
                .clone()
                .unwrap_or_default();
            let more = net::exposed_ports(exposed.into_keys(), &opts.ports);
            opts.ports.extend(more);
            net::check_flags(&opts, cni_net.as_ref())?;
        }
        net::check_ports_taken(
            &opts.ports,
            existing
                .iter()
                .filter_map(|c| Some((c.name.as_str(), c.network.as_ref()?))),
        )?;
        let opts = &opts;
        let dir = self.containers_dir().join(&id);
        let mut bundle =
            self.bundles
                .create(&opts.image, &id, &opts.overrides(), &dir.join("bundle"))?;
        let mut attached = None;
        let made = (|| {
            let spec = opts.apply(&bundle.spec)?;
            let mut v = serde_json::to_value(&spec).expect("spec serializes");
            if let Some(n) = &cni_net {
                let st = attached.insert(net::attach(&self.net, &id, &name, n, opts)?);
                net::join_netns(&mut v, &st.netns);
            }
            if let Some(path) = &joined {
                net::join_netns(&mut v, path);
            }
            net::etc_files(&mut v, &dir, opts, attached.as_ref(), shared.as_deref())?;
            let spec: oci_spec::runtime::Spec =
                serde_json::from_value(v).map_err(|e| Error::BadFlag {
                    flag: "--network",
                    value: opts.network.to_string(),
                    reason: format!("gives an invalid spec: {e}"),
                })?;
            let cfg = bundle.dir.join("config.json");
            let json = serde_json::to_vec_pretty(&spec).expect("spec serializes");
            berth_fsutil::replace_file(&cfg, &json)?;
            let log_path = dir.join(LOG);
            File::create(&log_path).at(&log_path)?;
            let c = Container {
                id: id.clone(),
                name,
                image_id: image.id.to_string(),
                command: spec
                    .process()
                    .as_ref()
                    .and_then(|p| p.args().clone())
                    .unwrap_or_default(),
                created: now(),
                options: opts.clone(),
                bundle: bundle.dir.clone(),
                log_path,
                stop_signal: spec
                    .annotations()
                    .as_ref()
                    .and_then(|a| a.get(ANNOTATION_STOP_SIGNAL).cloned())
                    .unwrap_or_else(|| "SIGTERM".into()),
                state: State::default(),
                network: attached.clone(),
            };
            c.save()?;
            bundle.commit()?;
            Ok(c)
        })();
        if made.is_err() {
            if let Some(st) = attached.as_mut() {
                if let Err(e) = net::detach(&self.net, &id, st) {
                    tracing::warn!(id, error = %e, "undoing the network of a failed create");
                }
            }
            let _ = bundle.remove();
        }
        made
    }

    /// Run `c` attached to this process's stdio (stdin only with `-i`) and wait for it.
    /// Changes process-wide state (fd 0, signal mask, subreaper): meant for the CLI.
    pub fn run_attached(&self, c: &mut Container) -> Result<i32> {
        if c.options.isolation == crate::vm::Isolation::Vm {
            return self.run_vm(c);
        }
        let mask = attach_process(c.options.interactive)?;
        // This process records the exit: `stop`/`rm -f` wait for it as for a monitor.
        c.state.monitor_pid = std::process::id() as i32;
        let console = console_for(c)?;
        let (pid, master) = match self.start_with_console(c, console.as_ref()) {
            Ok(s) => s,
            Err(e) => {
                self.discard(c);
                return Err(e);
            }
        };
        let code = foreground::wait_attached(pid, master, c.options.interactive, &mask)?;
        self.finish(c, code);
        Ok(code.unwrap_or(255))
    }

    /// A VM container in the foreground: the VM lives as long as the container.
    fn run_vm(&self, c: &mut Container) -> Result<i32> {
        c.state.monitor_pid = std::process::id() as i32;
        c.state.status = Status::Running;
        c.state.started_at = Some(now());
        c.save()?;
        let vm_dir = c.dir().join("vm");
        match crate::vm::run(&self.vm, &c.options, &c.bundle, &vm_dir) {
            Ok(code) => {
                self.finish(c, Some(code));
                Ok(code)
            }
            Err(e) => {
                self.discard(c);
                Err(e)
            }
        }
    }

    /// `exec`: run `r` in the container attached to this process's stdio and return its
    /// exit code; with `detach`, return once it runs. Same process-wide effects as
    /// [`Engine::run_attached`].
    pub fn exec(&self, reference: &str, r: &ExecRequest, detach: bool) -> Result<i32> {
        let (c, process) = self.exec_process(reference, r)?;
        let mask = attach_process(r.interactive)?;
        let console = r.tty.then(|| ConsoleSocket::bind(&c.id)).transpose()?;
        let opts = ExecOptions {
            process,
            console_socket: console.as_ref().map(|s| s.path.clone()),
            preserve_fds: 0,
            pid_file: None,
        };
        let pid = self.runtime.exec(&c.id, &opts)?;
        let master = console.as_ref().map(ConsoleSocket::receive).transpose()?;
        if detach {
            return Ok(0);
        }
        Ok(foreground::wait_attached(pid, master, r.interactive, &mask)?.unwrap_or(255))
    }

    /// Start `c` and, with a console socket (`-t`), receive the pty master from it.
    fn start_with_console(
        &self,
        c: &mut Container,
        console: Option<&ConsoleSocket>,
    ) -> Result<(Pid, Option<File>)> {
        let pid = self.start(c, console)?;
        let master = console.map(ConsoleSocket::receive).transpose()?;
        Ok((pid, master))
    }

    /// Create and start `c` in the runtime and record it as running.
    fn start(&self, c: &mut Container, console: Option<&ConsoleSocket>) -> Result<Pid> {
        let opts = CreateOptions {
            bundle: c.bundle.clone(),
            console_socket: console.map(|s| s.path.clone()),
            ..Default::default()
        };
        let created = self.runtime.create(&c.id, &opts)?;
        let started = match c.options.network {
            Network::None => net::loopback_up(created.pid),
            // The namespace made at create has lo up; host is the host's; a joined
            // one is as its owner set it up.
            Network::Host
            | Network::Bridge
            | Network::Named(_)
            | Network::Container(_)
            | Network::Path(_) => Ok(()),
        }
        .and_then(|()| Ok(self.runtime.start(&c.id)?));
        if let Err(e) = started {
            let _ = self.runtime.delete(&c.id, true);
            return Err(e);
        }
        c.state.status = Status::Running;
        c.state.pid = created.pid.as_raw();
        c.state.started_at = Some(now());
        c.save()?;
        Ok(created.pid)
    }

    /// Record the exit, release the runtime state, and with `--rm` remove everything.
    fn finish(&self, c: &mut Container, code: Option<i32>) {
        let _ = self.runtime.delete(&c.id, true);
        self.network_down(c);
        if c.options.auto_remove {
            self.discard(c);
            return;
        }
        c.state.status = Status::Exited;
        c.state.exit_code = code;
        c.state.pid = 0;
        c.state.finished_at = Some(now());
        if let Err(e) = c.save() {
            tracing::warn!(id = c.id, error = %e, "recording the exit");
        }
    }

    /// Remove a container that never ran (or ran with --rm): runtime state, bundle, dir.
    fn discard(&self, c: &Container) {
        let _ = self.runtime.delete(&c.id, true);
        // Detach only if both the caller's copy and the recorded state say attached:
        // the monitor, or `finish` just before, may have detached already.
        let mut fresh = Container::load(c.dir())
            .ok()
            .flatten()
            .unwrap_or_else(|| c.clone());
        if c.network.as_ref().is_some_and(|n| n.attached) {
            self.network_down(&mut fresh);
        }
        // A create killed between CNI ADD and its metadata recorded nothing: its result
        // cache and namespace still say what to undo.
        if let Err(e) = net::sweep(&self.net, &c.id) {
            tracing::warn!(id = c.id, error = %e, "sweeping the network");
        }
        if let Err(e) = self.bundles.remove(&c.id) {
            tracing::warn!(id = c.id, error = %e, "removing the container");
        }
    }

    /// Detach `c` from its network (CNI DEL, namespace removed); the caller saves `c`.
    fn network_down(&self, c: &mut Container) {
        if let Some(st) = c.network.as_mut() {
            if let Err(e) = net::detach(&self.net, &c.id, st) {
                tracing::warn!(id = c.id, error = %e, "detaching the network");
                eprintln!("berth: container {}: {e}", c.short_id());
            }
        }
    }

    /// Start `c` in the background: a monitor process (forked twice, so it is nobody's
    /// child here) creates and starts the container with stdout/stderr to the log file,
    /// reports success over a pipe, then waits for init and records its exit (and with
    /// `--rm` removes the container). Fork: call only while this process has one thread.
    pub fn start_detached(&self, c: &mut Container) -> Result<()> {
        let (rd, wr) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
        // SAFETY: the caller is single-threaded (documented above), so the child may run
        // arbitrary code after fork.
        match unsafe { fork() }.map_err(sys("fork"))? {
            ForkResult::Child => {
                drop(rd);
                // SAFETY: as above; the grandchild becomes the monitor, the child exits.
                let code = match unsafe { fork() } {
                    Ok(ForkResult::Child) => self.monitor(c, wr),
                    Ok(ForkResult::Parent { .. }) => 0,
                    Err(_) => 1,
                };
                // SAFETY: leave the forked process without running the parent's atexit
                // handlers or destructors.
                unsafe { libc::_exit(code) }
            }
            ForkResult::Parent { child } => {
                drop(wr);
                let _ = waitpid(child, None);
                let mut msg = String::new();
                File::from(rd)
                    .read_to_string(&mut msg)
                    .at("monitor status pipe")?;
                match msg.strip_prefix("ok ") {
                    Some(pid) => {
                        c.state.status = Status::Running;
                        c.state.pid = pid.trim().parse().unwrap_or(0);
                        Ok(())
                    }
                    None if msg.is_empty() => Err(Error::Start {
                        id: c.id.clone(),
                        reason: "the monitor died before reporting".into(),
                    }),
                    None => Err(Error::Start {
                        id: c.id.clone(),
                        reason: msg.trim().to_string(),
                    }),
                }
            }
        }
    }

    /// The monitor's life: returns its exit code.
    fn monitor(&self, c: &mut Container, status: OwnedFd) -> i32 {
        let mut status = File::from(status);
        let prepared = (|| -> Result<_> {
            nix::unistd::setsid().map_err(sys("setsid"))?;
            let log = File::options()
                .append(true)
                .open(&c.log_path)
                .at(&c.log_path)?;
            redirect(&dev_null()?, 0)?;
            redirect(&log, 1)?;
            redirect(&log, 2)?;
            // No other fd needs closing: the caller's are close-on-exec, and fds 0-2 (a
            // test's pipes, a terminal) were just replaced.
            // SAFETY: prctl with integer arguments.
            unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
            c.state.monitor_pid = std::process::id() as i32;
            let console = console_for(c)?;
            let (pid, master) = self.start_with_console(c, console.as_ref())?;
            // With -t the container writes to the pty: copy it into the log.
            let output = match master {
                Some(m) => Some(tty::proxy(&m, false)?),
                None => None,
            };
            Ok((pid, output))
        })();
        let (pid, output) = match prepared {
            Ok(p) => p,
            Err(e) => {
                let _ = write!(status, "{e}");
                self.discard(c);
                return 1;
            }
        };
        let _ = write!(status, "ok {pid}");
        drop(status);
        let code = foreground::wait_for(pid, None, None).unwrap_or(None);
        if let Some(o) = output {
            let _ = o.join();
        }
        self.finish(c, code);
        0
    }

    /// Wait (up to `limit`) until the container's exit is recorded or nobody can record
    /// it any more (no monitor alive, runtime says stopped).
    fn wait_recorded(&self, id: &str, limit: Duration) -> Result<()> {
        let until = Instant::now() + limit;
        loop {
            let c = match self.get(id) {
                Ok(c) => c,
                Err(Error::NotFound(_)) => return Ok(()), // --rm removed it
                Err(e) => return Err(e),
            };
            let monitor_alive = c.state.monitor_pid > 0 && alive(c.state.monitor_pid);
            let recorded =
                Container::load(c.dir())?.is_some_and(|m| m.state.status == Status::Exited);
            if recorded || (!monitor_alive && c.state.status == Status::Exited) {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(Error::BadState {
                    id: c.id,
                    why: format!("still running {} s after SIGKILL", limit.as_secs()),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send the stop signal, then SIGKILL to every process after `timeout`; returns once
    /// the exit is recorded. Stopping a stopped container succeeds, as with Docker.
    pub fn stop(&self, reference: &str, timeout: Duration) -> Result<Container> {
        let c = self.get(reference)?;
        if matches!(c.state.status, Status::Running | Status::Paused) {
            let sig = berth_runtime::signal::parse(&c.stop_signal)?;
            if c.state.status == Status::Paused {
                let _ = self.runtime.resume(&c.id);
            }
            let _ = self.runtime.kill(&c.id, sig, false);
            let running = || matches!(self.get(&c.id).map(|c| c.state.status), Ok(Status::Running));
            let until = Instant::now() + timeout;
            while Instant::now() < until && running() {
                std::thread::sleep(Duration::from_millis(10));
            }
            if running() {
                let _ = self.runtime.kill(&c.id, Signal::SIGKILL, true);
            }
            self.wait_recorded(&c.id, REAP_LIMIT)?;
        }
        self.get(&c.id).or(Ok(c))
    }

    /// Send `sig` to the container's init.
    pub fn kill(&self, reference: &str, sig: Signal) -> Result<Container> {
        let c = self.get(reference)?;
        if c.state.status != Status::Running {
            return Err(Error::BadState {
                id: c.id,
                why: format!("is {}, not running", c.state.status),
            });
        }
        self.runtime.kill(&c.id, sig, false)?;
        Ok(c)
    }

    /// Remove a container: its runtime state, overlay rootfs, upper dir, log and metadata.
    /// A running one only with `force` (killed first).
    pub fn remove(&self, reference: &str, force: bool) -> Result<Container> {
        let c = self.get(reference)?;
        if matches!(c.state.status, Status::Running | Status::Paused) {
            if !force {
                return Err(Error::BadState {
                    id: c.id,
                    why: "is running: stop it first or use rm -f".into(),
                });
            }
            if c.state.status == Status::Paused {
                let _ = self.runtime.resume(&c.id);
            }
            let _ = self.runtime.kill(&c.id, Signal::SIGKILL, true);
            self.wait_recorded(&c.id, REAP_LIMIT)?;
        }
        self.discard(&c);
        Ok(c)
    }

    /// `network create`.
    pub fn network_create(&self, spec: &berth_net::NetworkSpec) -> Result<berth_net::Network> {
        Ok(self.net.networks.create(spec)?)
    }

    /// `network ls`: berth's networks (the default one made on first use) and the CNI
    /// config directory's.
    pub fn network_list(&self) -> Result<Vec<berth_net::Network>> {
        self.net.networks.get(berth_net::DEFAULT_NETWORK)?;
        Ok(self.net.networks.list()?)
    }

    /// `network inspect`: the summary, the configuration list and the attached containers.
    pub fn network_inspect(&self, name: &str) -> Result<Value> {
        let n = self.net.networks.get(name)?;
        let containers: serde_json::Map<String, Value> = self
            .list()?
            .into_iter()
            .filter_map(|c| {
                let st = c
                    .network
                    .as_ref()
                    .filter(|s| s.attached && s.network == n.name)?;
                Some((
                    c.id.clone(),
                    json!({"Name": c.name, "IPv4Address": st.address, "MacAddress": st.mac}),
                ))
            })
            .collect();
        Ok(json!({
            "Name": n.name,
            "Summary": berth_net::summary(&n),
            "Containers": containers,
            "Config": n.to_json(),
        }))
    }

    /// `network rm`: refused while a container is attached.
    pub fn network_remove(&self, name: &str) -> Result<berth_net::Network> {
        let _lock = self.lock()?;
        if let Some(c) = self.list()?.into_iter().find(|c| {
            c.network
                .as_ref()
                .is_some_and(|s| s.attached && s.network == name)
        }) {
            return Err(Error::NetworkInUse {
                network: name.to_string(),
                container: c.name,
            });
        }
        Ok(self.net.networks.remove(name)?)
    }

    /// `network prune`: remove every network berth wrote that no container is attached
    /// to (the default one too; it comes back on first use). Returns the names removed.
    pub fn network_prune(&self) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.net.networks.list()? {
            if !berth_net::summary(&n).managed {
                continue;
            }
            match self.network_remove(&n.name) {
                Ok(_) => removed.push(n.name),
                Err(Error::NetworkInUse { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Docker-inspect-like JSON.
    pub fn inspect(&self, reference: &str) -> Result<Value> {
        let c = self.get(reference)?;
        let spec_path = c.bundle.join("config.json");
        let spec: Value = std::fs::read(&spec_path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let o = &c.options;
        let proc_ = &spec["process"];
        let user = &proc_["user"];
        Ok(json!({
            "Id": c.id,
            "Name": format!("/{}", c.name),
            "Created": c.created,
            "Path": c.command.first(),
            "Args": c.command.get(1..).unwrap_or_default(),
            "State": {
                "Status": c.state.status.to_string(),
                "Running": c.state.status == Status::Running,
                "Paused": c.state.status == Status::Paused,
                "Pid": if c.state.status == Status::Exited { 0 } else { c.state.pid },
                "ExitCode": c.state.exit_code.unwrap_or(0),
                "StartedAt": c.state.started_at,
                "FinishedAt": c.state.finished_at,
            },
            "Image": c.image_id,
            "LogPath": c.log_path,
            "Config": {
                "Hostname": spec["hostname"],
                "User": format!("{}:{}", user["uid"], user["gid"]),
                "Env": proc_["env"],
                "Cmd": o.cmd,
                "Entrypoint": o.entrypoint,
                "Image": o.image,
                "WorkingDir": proc_["cwd"],
                "Tty": o.tty,
                "OpenStdin": o.interactive,
                "StopSignal": c.stop_signal,
            },
            "HostConfig": {
                "Binds": o.binds.iter().map(|b| format!("{}:{}:{}", b.source.display(), b.destination, if b.read_only {"ro"} else {"rw"})).collect::<Vec<_>>(),
                "AutoRemove": o.auto_remove,
                "NetworkMode": o.network,
                "PortBindings": o.ports.iter().map(|p| p.to_string()).collect::<Vec<_>>(),
                "Dns": o.dns,
                "ExtraHosts": o.add_hosts.iter().map(|(n, a)| format!("{n}:{a}")).collect::<Vec<_>>(),
                "Memory": o.memory.unwrap_or(0),
                "NanoCpus": o.cpus.map_or(0, |c| (c * 1e9).round() as i64),
                "PidsLimit": o.pids_limit,
                "ReadonlyRootfs": o.read_only,
                "CapAdd": o.cap_add,
                "CapDrop": o.cap_drop,
                "SecurityOpt": o.seccomp,
            },
            "Mounts": spec["mounts"].as_array().map(|m| m.iter().filter(|m| m["type"] == "bind").cloned().collect::<Vec<_>>()),
            "NetworkSettings": network_settings(&c),
            "GraphDriver": {"Name": "overlay", "Data": {"MergedDir": c.bundle.join("rootfs"), "UpperDir": c.dir().join("upper")}},
        }))
    }

    /// The process `exec` runs: the container's own (env, user, caps, seccomp inherited)
    /// with docker's exec flags applied; `-u` names resolve in the image's /etc/passwd.
    pub fn exec_process(&self, reference: &str, r: &ExecRequest) -> Result<(Container, Process)> {
        let c = self.get(reference)?;
        if c.state.status != Status::Running {
            return Err(Error::BadState {
                id: c.id,
                why: format!("is {}, not running", c.state.status),
            });
        }
        let base = self.runtime.base_process(&c.id)?;
        let mut v = serde_json::to_value(&base).expect("process serializes");
        v["args"] = json!(r.args);
        v["terminal"] = json!(r.tty);
        if let Some(w) = &r.workdir {
            v["cwd"] = json!(w);
        }
        let env: Vec<String> = serde_json::from_value(v["env"].take()).unwrap_or_default();
        v["env"] = json!(berth_runtime::merge_env(&env, &r.env));
        if let Some(u) = &r.user {
            let user = crate::spec::resolve_user(&c.bundle.join("rootfs"), u)?;
            v["user"] =
                json!({"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids});
        }
        let p = serde_json::from_value(v).map_err(|e| Error::BadFlag {
            flag: "exec",
            value: r.args.join(" "),
            reason: e.to_string(),
        })?;
        Ok((c, p))
    }
}

/// A container by full ID, name, or unique ID prefix.
fn find<'a>(all: &'a [Container], reference: &str) -> Result<&'a Container> {
    if let Some(c) = all
        .iter()
        .find(|c| c.id == reference || (!c.name.is_empty() && c.name == reference))
    {
        return Ok(c);
    }
    let mut hits = all
        .iter()
        .filter(|c| !reference.is_empty() && c.id.starts_with(reference));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (Some(_), Some(_)) => Err(Error::Ambiguous(reference.into())),
        _ => Err(Error::NotFound(reference.into())),
    }
}

/// docker inspect's NetworkSettings: the address while attached, the port maps.
fn network_settings(c: &Container) -> Value {
    let Some(st) = c.network.as_ref().filter(|s| s.attached) else {
        return json!({"IPAddress": "", "Ports": {}, "Networks": {}});
    };
    let (ip, prefix) = st
        .address
        .as_deref()
        .and_then(|a| a.split_once('/'))
        .map_or(("", 0), |(ip, p)| (ip, p.parse::<u8>().unwrap_or(0)));
    let mut ports = serde_json::Map::new();
    for p in &st.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        let host_ip = p.host_ip.map_or("0.0.0.0".to_string(), |i| i.to_string());
        let entry = ports.entry(key).or_insert_with(|| json!([]));
        if let Some(a) = entry.as_array_mut() {
            a.push(json!({"HostIp": host_ip, "HostPort": p.host_port.to_string()}));
        }
    }
    let (ip6, prefix6) = st
        .address6
        .as_deref()
        .and_then(|a| a.split_once('/'))
        .map_or(("", 0), |(ip, p)| (ip, p.parse::<u8>().unwrap_or(0)));
    json!({
        "IPAddress": ip,
        "IPPrefixLen": prefix,
        "Gateway": st.gateway,
        "GlobalIPv6Address": ip6,
        "GlobalIPv6PrefixLen": prefix6,
        "IPv6Gateway": st.gateway6,
        "MacAddress": st.mac,
        "SandboxKey": st.netns,
        "Ports": ports,
        "Networks": {st.network.clone(): {
            "IPAddress": ip, "IPPrefixLen": prefix, "Gateway": st.gateway, "MacAddress": st.mac,
            "GlobalIPv6Address": ip6, "GlobalIPv6PrefixLen": prefix6, "IPv6Gateway": st.gateway6,
        }},
    })
}

/// The socket the runtime sends a `-t` container's pty master to.
fn console_for(c: &Container) -> Result<Option<ConsoleSocket>> {
    Ok(c.options
        .tty
        .then(|| ConsoleSocket::bind(&c.id))
        .transpose()?)
}
