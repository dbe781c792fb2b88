//! The container's init: runs inside the container's namespaces (from the sealed berth
//! copy), prepares the container step by step, waits for `start`, then becomes the user
//! process. Each step is a small function; a failed step is reported to the parent as one
//! line and init exits, taking its namespaces (and every mount made in them) with it.

mod console;
mod process;
mod rootfs;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::namespaces::{self, Plan};
use crate::sync::{Channel, ChildMsg, ParentMsg};

pub use process::{become_process, listen_for_start, request_start, ExecProcess};

/// Everything init needs, sent by the parent once init is in its cgroup.
#[derive(Debug, Serialize, Deserialize)]
pub struct InitConfig {
    pub id: String,
    pub spec: Spec,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub state_dir: PathBuf,
    pub plan: Plan,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    /// fd (inherited) of the connected `--console-socket`.
    pub console_socket: Option<i32>,
    /// fd (inherited) of the socket `start` connects to.
    pub start_listener: i32,
    pub seccomp: Option<crate::seccomp::Compiled>,
    /// The container's cgroup directories, bind-mounted when it has no cgroup namespace
    /// (empty when it has no cgroup).
    pub cgroup_mounts: Vec<berth_cgroups::CgroupMount>,
}

/// Entry point of `berth init`. Never returns.
pub fn main(channel_fd: i32) -> ! {
    // Non-dumpable until the user process is exec'd (execve makes it dumpable again):
    // a container process may not ptrace us or open our /proc/PID/fd while we hold the
    // channel to the host and sit in its pid namespace (CVE-2016-9962).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    // The vfork-style spawn left every signal blocked (see spawn.rs); exec has reset all
    // handlers to their defaults, so take signals again, as a forked init did.
    let _ = nix::sys::signal::sigprocmask(
        nix::sys::signal::SigmaskHow::SIG_SETMASK,
        Some(&nix::sys::signal::SigSet::empty()),
        None,
    );
    // The detached mount berth was executed from: dissolving it waits for an RCU grace
    // period, so it is closed here, beside the parent's work instead of before it.
    let mount = crate::sealed_exe::inherited_mount();
    // SAFETY: the parent passed this fd number for us to own.
    let ch = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(channel_fd) });
    let err = match run(&ch, mount) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = ch.send(&ChildMsg::Failed(err.to_string()));
    std::process::exit(1)
}

/// A process to run in an existing container (`berth exec`); this process has already
/// joined the container's namespaces and cgroup.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecConfig {
    /// Host pid of the container's init, whose namespaces to join.
    pub target: i32,
    pub process: oci_spec::runtime::Process,
    pub seccomp: Option<crate::seccomp::Compiled>,
    pub preserve_fds: u32,
    pub console_socket: Option<i32>,
    pub state: serde_json::Value,
}

fn run(ch: &Channel, mount: Option<OwnedFd>) -> Result<std::convert::Infallible> {
    let cfg = match ch.recv::<ParentMsg>()? {
        Some(ParentMsg::Config(cfg)) => {
            drop(mount);
            *cfg
        }
        Some(ParentMsg::Exec(cfg)) => return join_container(ch, *cfg, mount),
        _ => return Err(Error::Init("no configuration from the parent".into())),
    };
    let keep: Vec<i32> = [ch.fd().as_raw_fd(), cfg.start_listener]
        .into_iter()
        .chain(cfg.console_socket)
        .collect();
    process::close_stray_fds(cfg.preserve_fds, &keep)?;
    // A handle on the host's procfs, opened before anything in the container can interfere,
    // for the /proc writes made before pivot_root; closed before the container is created.
    let proc = crate::fs::ProcFs::open(std::path::Path::new("/proc"))?;
    join_namespaces(&cfg)?;
    create_time_namespace(&cfg, &proc)?;
    set_host_names(&cfg.spec)?;
    // SAFETY: the parent passed us this listening socket to own.
    let start_listener =
        unsafe { std::os::unix::net::UnixListener::from_raw_fd(cfg.start_listener) };
    // The parent moves us into our cgroup while we set up: the first migration into a v1
    // cgroup waits for an RCU grace period (5-15 ms), so it runs beside this work. Only a
    // new cgroup namespace (rooted where we are when it is made) and the hooks need us in
    // the cgroup; otherwise the wait ends just before `created`.
    let mut cgroup = CgroupGate {
        ch,
        new_namespace: cfg.plan.new_cgroup,
        entered: false,
    };
    let kernel_fs = rootfs::mount_all(&cfg, &proc, &mut cgroup)?;
    // runc's order: mounts, then the createRuntime hooks (run by the parent), then pivot.
    let hooks = cfg.spec.hooks().as_ref();
    let has_hooks = hooks.is_some_and(|h| {
        [h.prestart(), h.create_runtime(), h.create_container()]
            .iter()
            .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
    });
    let state = if has_hooks {
        cgroup.wait()?;
        ch.send(&ChildMsg::NamespacesReady)?;
        match ch.recv::<ParentMsg>()? {
            Some(ParentMsg::Continue { state }) => state,
            _ => {
                return Err(Error::Init(
                    "parent went away during createRuntime hooks".into(),
                ))
            }
        }
    } else {
        serde_json::Value::Null
    };
    let mut cfg = cfg;
    if let Some(s) = cfg.seccomp.as_mut() {
        s.connect_listener()?;
    }
    process::set_oom_score_adj(cfg.spec.process().as_ref().expect("validated"), &proc)?;
    // The AppArmor profile takes effect at the user process's execve.
    crate::lsm::apply_apparmor(cfg.spec.process().as_ref().expect("validated"), &proc)?;
    drop(proc);
    rootfs::finish(&cfg, &kernel_fs, &state)?;
    drop(kernel_fs); // the waiting init holds no directory fd

    let console = console::setup(&cfg)?;
    let exec = process::prepare(&cfg, console)?;
    cgroup.wait()?;
    ch.send(&ChildMsg::Created)?;
    process::wait_for_start_and_exec(start_listener, exec, &cfg)
}

/// `berth exec`: join every namespace of the container's init (user first, so the others
/// can be joined with its privileges), then fork so the child is in its pid namespace. The
/// child waits until the parent has put it in the container's cgroup.
fn join_container(
    ch: &Channel,
    cfg: ExecConfig,
    mount: Option<OwnedFd>,
) -> Result<std::convert::Infallible> {
    // Nothing of the host's but stdio, the preserved fds, the channel, the console socket
    // and (until the fork below) the overlay mount fd may enter the container with us.
    let keep: Vec<i32> = [ch.fd().as_raw_fd()]
        .into_iter()
        .chain(cfg.console_socket)
        .chain(mount.as_ref().map(|m| m.as_raw_fd()))
        .collect();
    process::close_stray_fds(cfg.preserve_fds, &keep)?;
    // The AppArmor request, through the host's procfs before anything of the container's
    // is joined (nothing goes through the container's /proc, which its processes can
    // replace). It is kept by the fork below and takes effect at the execve.
    if crate::lsm::apparmor_profile(&cfg.process).is_some() {
        let proc = crate::fs::ProcFs::open(std::path::Path::new("/proc"))?;
        crate::lsm::apply_apparmor(&cfg.process, &proc)?;
    }
    let mut namespaces = Vec::new();
    for kind in ["user", "ipc", "uts", "net", "pid", "cgroup", "time", "mnt"] {
        let theirs = PathBuf::from(format!("/proc/{}/ns/{kind}", cfg.target));
        let ours = PathBuf::from(format!("/proc/self/ns/{kind}"));
        let inode =
            |p: &PathBuf| std::fs::metadata(p).map(|m| std::os::unix::fs::MetadataExt::ino(&m));
        match (inode(&theirs), inode(&ours)) {
            (Ok(a), Ok(b)) if a == b => continue, // already there (joining one's own userns fails)
            (Err(_), _) if kind == "time" || kind == "cgroup" => continue, // not in this kernel
            _ => {}
        }
        let fd = nix::fcntl::open(
            &theirs,
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| crate::fs::io_err(&theirs, e))?;
        namespaces.push((kind, fd));
    }
    for (kind, fd) in &namespaces {
        use std::os::fd::AsFd;
        nix::sched::setns(fd.as_fd(), namespaces::flag_of(kind)).map_err(|e| Error::Sys {
            op: format!("join the container's {kind} namespace"),
            source: e,
        })?;
    }
    drop(namespaces);
    // SAFETY: single-threaded; the child continues on a copy of this stack.
    match unsafe { nix::unistd::fork() }.map_err(|e| Error::Sys {
        op: "fork into the container".into(),
        source: e,
    })? {
        nix::unistd::ForkResult::Parent { child } => {
            ch.send(&ChildMsg::InitPid {
                pid: child.as_raw(),
            })?;
            // Our end of the channel first: the parent learns that the process has
            // exec'd when every copy of it is closed, which must not wait for the mount.
            // SAFETY: closes the channel's fd, which nothing uses any more (we exit below
            // without running destructors).
            unsafe { libc::close(ch.fd().as_raw_fd()) };
            // The last copy of the mount fd dissolves the mount: while the parent places
            // the process in its cgroup.
            drop(mount);
            std::process::exit(0)
        }
        nix::unistd::ForkResult::Child => drop(mount),
    }
    match ch.recv::<ParentMsg>()? {
        Some(ParentMsg::Continue { .. }) => run_exec(cfg),
        _ => Err(Error::Init(
            "parent went away before the process was placed in its cgroup".into(),
        )),
    }
}

/// The same final steps as the container's own process. Success is the
/// channel closing on exec; errors go back over it.
fn run_exec(cfg: ExecConfig) -> Result<std::convert::Infallible> {
    let console = match (cfg.process.terminal().unwrap_or(false), cfg.console_socket) {
        (false, _) => None,
        (true, None) => return Err(Error::Config("exec --tty needs --console-socket".into())),
        (true, Some(socket)) => {
            let (master, slave) =
                console::open_pty(&crate::fs::Root::open(std::path::Path::new("/"))?)?;
            if let Some(size) = cfg.process.console_size() {
                console::set_size(&master, size.height(), size.width());
            }
            console::send_master(socket, &master)?;
            Some(slave)
        }
    };
    if let Some(socket) = cfg.console_socket {
        // SAFETY: the parent passed us this fd to own; nothing else uses it.
        drop(unsafe { OwnedFd::from_raw_fd(socket) });
    }
    // oom_score_adj was written by the parent, through the host's procfs: nothing here
    // goes through this container's /proc, which its processes can replace.
    let mut cfg = cfg;
    process::set_home(&mut cfg.process);
    process::apply_attributes(&cfg.process)?;
    let program = process::find_program(&cfg.process)?;
    let exec = ExecProcess {
        process: cfg.process,
        program,
        console,
        preserve_fds: cfg.preserve_fds,
        seccomp: cfg.seccomp,
    };
    become_process(&exec, &cfg.state)
}

/// Join the namespaces given by path (when the parent did not already do it for us).
fn join_namespaces(cfg: &InitConfig) -> Result<()> {
    if cfg.plan.uses_user_ns() {
        return Ok(()); // joined by the first child, before the user namespace existed
    }
    for (kind, path) in &cfg.plan.join {
        namespaces::join(kind, path)?;
    }
    Ok(())
}

/// Waits, once, for the parent to report that this process is in its cgroup, then creates
/// the cgroup namespace (rooted at the cgroup this process is in when it is created).
pub struct CgroupGate<'a> {
    ch: &'a Channel,
    new_namespace: bool,
    entered: bool,
}

impl CgroupGate<'_> {
    pub fn wait(&mut self) -> Result<()> {
        if self.entered {
            return Ok(());
        }
        match self.ch.recv::<ParentMsg>()? {
            Some(ParentMsg::CgroupReady) => {}
            _ => {
                return Err(Error::Init(
                    "parent went away while creating the cgroup".into(),
                ))
            }
        }
        if self.new_namespace {
            namespaces::unshare(CloneFlags::CLONE_NEWCGROUP, "cgroup")?;
        }
        self.entered = true;
        Ok(())
    }
}

/// The time namespace: its offsets can only be written before any process is in it, and
/// unshare applies to children, so write the offsets, then move ourselves in with setns
/// on time_for_children.
fn create_time_namespace(cfg: &InitConfig, proc: &crate::fs::ProcFs) -> Result<()> {
    if cfg.plan.new_time {
        namespaces::unshare(
            CloneFlags::from_bits_retain(namespaces::CLONE_NEWTIME),
            "time",
        )?;
        let offsets = cfg
            .spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().clone())
            .unwrap_or_default();
        if !offsets.is_empty() {
            let text: String = offsets
                .iter()
                .map(|(clock, o)| {
                    format!(
                        "{clock} {} {}\n",
                        o.secs().unwrap_or(0),
                        o.nanosecs().unwrap_or(0)
                    )
                })
                .collect();
            proc.write("self/timens_offsets", &text)?;
        }
        namespaces::join(
            "time",
            std::path::Path::new("/proc/self/ns/time_for_children"),
        )?;
    }
    Ok(())
}

fn set_host_names(spec: &Spec) -> Result<()> {
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        nix::unistd::sethostname(h).map_err(|e| Error::Sys {
            op: format!("sethostname {h:?}"),
            source: e,
        })?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        // SAFETY: pointer and length describe a valid buffer.
        let r = unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) };
        nix::errno::Errno::result(r).map_err(|e| Error::Sys {
            op: format!("setdomainname {d:?}"),
            source: e,
        })?;
    }
    Ok(())
}
