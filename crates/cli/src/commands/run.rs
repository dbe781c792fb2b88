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

/// Signals a foreground `run` passes on to the container instead of acting on them.
const FORWARDED: &[Signal] = &[
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
];

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
    mask.thread_block()?;
    let created = rt.create(&a.id, &a.create.options())?;
    let code = match rt.start(&a.id) {
        Ok(()) => wait_forwarding(created.pid, &mask)?,
        Err(e) => {
            let _ = rt.delete(&a.id, true);
            return Err(e.into());
        }
    };
    if !a.keep {
        rt.delete(&a.id, true)?;
    }
    Ok(code)
}

/// SIGCHLD plus the signals passed on to the container.
pub fn forwarded_signals() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    for s in FORWARDED {
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
