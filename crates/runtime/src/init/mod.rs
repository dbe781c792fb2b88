//! The container's init: runs inside the container's namespaces (from the sealed berth
//! copy), prepares the container step by step, waits for `start`, then becomes the user
//! process. Each step is a small function; a failed step is reported to the parent as one
//! line and init exits, taking its namespaces (and every mount made in them) with it.

mod console;
mod process;
mod rootfs;

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::namespaces::{self, Plan};
use crate::sync::{Channel, ChildMsg, ParentMsg};

pub use process::{become_process, request_start, ExecProcess};

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
}

/// Entry point of `berth init`. Never returns.
pub fn main(channel_fd: i32) -> ! {
    // SAFETY: the parent passed this fd number for us to own.
    let ch = Channel::from_fd(unsafe { OwnedFd::from_raw_fd(channel_fd) });
    let err = match run(&ch) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = ch.send(&ChildMsg::Failed(err.to_string()));
    std::process::exit(1)
}

fn run(ch: &Channel) -> Result<std::convert::Infallible> {
    let cfg = match ch.recv::<ParentMsg>()? {
        Some(ParentMsg::Config(cfg)) => *cfg,
        _ => return Err(Error::Init("no configuration from the parent".into())),
    };
    // A handle on the host's procfs, opened before anything in the container can interfere;
    // it stays valid after pivot_root, and every /proc write of init goes through it.
    let proc = crate::fs::ProcFs::open(std::path::Path::new("/proc"))?;
    join_namespaces(&cfg)?;
    create_late_namespaces(&cfg, &proc)?;
    ch.send(&ChildMsg::NamespacesReady)?;
    let state = match ch.recv::<ParentMsg>()? {
        Some(ParentMsg::Continue { state }) => state,
        _ => {
            return Err(Error::Init(
                "parent went away during createRuntime hooks".into(),
            ))
        }
    };
    set_host_names(&cfg.spec)?;
    let start_listener = process::listen_for_start(&cfg.state_dir)?;
    rootfs::prepare(&cfg, &state, &proc)?;
    let console = console::setup(&cfg)?;
    let exec = process::prepare(&cfg, console, &proc)?;
    ch.send(&ChildMsg::Created)?;
    process::wait_for_start_and_exec(start_listener, exec, &cfg, &proc)
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

/// The cgroup namespace (now that we are in our cgroup) and the time namespace (whose
/// offsets can only be written before any process is in it: unshare applies to children,
/// so write the offsets, then move ourselves in with setns on time_for_children).
fn create_late_namespaces(cfg: &InitConfig, proc: &crate::fs::ProcFs) -> Result<()> {
    if cfg.plan.new_cgroup {
        namespaces::unshare(CloneFlags::CLONE_NEWCGROUP, "cgroup")?;
    }
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
