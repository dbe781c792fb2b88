use berth_runtime::Runtime;
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use super::create::CreateArgs;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub create: CreateArgs,
    /// Start the container and return; do not wait for it.
    #[arg(long, short = 'd')]
    pub detach: bool,
    /// Keep the container's state after it exits (do not delete it).
    #[arg(long)]
    pub keep: bool,
    /// Container ID.
    pub id: String,
}

pub fn run(rt: &Runtime, a: &Args) -> anyhow::Result<u8> {
    if a.detach {
        rt.create(&a.id, &a.create.options())?;
        if let Err(e) = rt.start(&a.id) {
            let _ = rt.delete(&a.id, true);
            return Err(e.into());
        }
        return Ok(0);
    }
    // Become the subreaper so the container's init (a grandchild when a user namespace is
    // used) is reparented to us and we can collect its status.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let mask = forwarded_signals();
    let mut opts = a.create.options();
    // As runc: a terminal without --console-socket means berth itself holds the pty and
    // connects it to our stdio.
    let console = match opts.console_socket {
        None if wants_terminal(&opts.bundle) => {
            let socket = berth_engine::tty::ConsoleSocket::bind(&a.id)?;
            opts.console_socket = Some(socket.path.clone());
            Some(socket)
        }
        _ => None,
    };
    // Signals are forwarded only once there is a container to forward them to: during
    // create, SIGTERM and Ctrl-C end berth (and `delete` undoes what create had done).
    let created = rt.create(&a.id, &opts)?;
    mask.thread_block()?;
    let pty = match &console {
        Some(socket) => match socket.receive() {
            Ok(master) => Some(master),
            Err(e) => {
                let _ = rt.delete(&a.id, true);
                return Err(e.into());
            }
        },
        None => None,
    };
    let raw = pty
        .as_ref()
        .and_then(|_| berth_engine::tty::RawMode::enter());
    let output = match &pty {
        Some(master) => {
            use std::os::fd::AsFd;
            berth_engine::tty::copy_winsize(master.as_fd());
            Some(berth_engine::tty::proxy(master, true)?)
        }
        None => None,
    };
    let code = match rt.start(&a.id) {
        Ok(()) => wait_forwarding(created.pid, &mask)?,
        Err(e) => {
            drop(raw);
            let _ = rt.delete(&a.id, true);
            return Err(e.into());
        }
    };
    drop(pty);
    if let Some(out) = output {
        // Drains what the container wrote before it exited.
        let _ = out.join();
    }
    drop(raw);
    if !a.keep {
        rt.delete(&a.id, true)?;
    }
    Ok(code)
}

/// Whether the bundle's process asks for a terminal (an unreadable bundle is left to
/// `create` to report).
fn wants_terminal(bundle: &std::path::Path) -> bool {
    berth_runtime::config::load_bundle_spec(bundle)
        .ok()
        .and_then(|s| s.process().as_ref().and_then(|p| p.terminal()))
        .unwrap_or(false)
}

/// SIGCHLD plus the signals passed on to the container.
pub fn forwarded_signals() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in &berth_runtime::signal::FORWARDED {
        mask.add(*s);
    }
    mask
}

/// Wait for `pid`, passing forwarded signals to it; reap any other orphan that reaches us.
pub fn wait_forwarding(pid: nix::unistd::Pid, mask: &SigSet) -> anyhow::Result<u8> {
    loop {
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(p, code)) if p == pid => return Ok(code as u8),
                Ok(WaitStatus::Signaled(p, sig, _)) if p == pid => return Ok(128 + sig as u8),
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(_) => continue,
            }
        }
        let sig = mask.wait()?;
        if sig != Signal::SIGCHLD {
            let _ = kill(pid, sig);
        }
    }
}
