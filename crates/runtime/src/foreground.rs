//! A container process in the foreground of this process: the runc-style `run` and
//! `exec` and the docker-style attached `run`/`exec` all wait the same way.
//!
//! This process becomes the child subreaper (an init or exec'd process may be a
//! grandchild), blocks the signals it forwards so it can sigwait them, passes them on to
//! the container process, and, with `-t`, resizes the pty on SIGWINCH instead of
//! forwarding it. The pty master arrives over a `--console-socket` (SCM_RIGHTS, as runc
//! sends it) and is proxied to this process's stdio with the terminal in raw mode.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::error::{Error, IoContext, Result};

fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let op = op.into();
    move |source| Error::Sys { op, source }
}

/// The signals a foreground wait takes over: SIGCHLD and those it forwards.
pub fn signal_mask() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    crate::signal::FORWARDED.iter().for_each(|s| mask.add(*s));
    mask
}

/// Become the subreaper of our descendants, so a container process that is a grandchild
/// (user namespaces, exec) is reparented to us and we can collect its status.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Exit code the way a shell reports it.
pub fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Reap children until `pid` exits and return its exit code; with `forward` (blocked in
/// this thread), pass those signals on to `pid`. With a pty `master`, SIGWINCH resizes it
/// instead of being forwarded. `None` if `pid` was never ours to reap.
pub fn wait_for(
    pid: Pid,
    forward: Option<&SigSet>,
    master: Option<BorrowedFd<'_>>,
) -> Result<Option<i32>> {
    loop {
        let flags = forward.map(|_| WaitPidFlag::WNOHANG);
        loop {
            match waitpid(None, flags) {
                Ok(ws) if ws.pid() == Some(pid) => {
                    if let Some(c) = exit_code(ws) {
                        return Ok(Some(c));
                    }
                }
                Ok(WaitStatus::StillAlive) => break,
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => {}
                Err(nix::errno::Errno::ECHILD) => return Ok(None),
                Err(e) => return Err(sys("waitpid")(e)),
            }
        }
        let Some(mask) = forward else { continue };
        match (mask.wait().map_err(sys("sigwait"))?, master) {
            (Signal::SIGCHLD, _) => {}
            (Signal::SIGWINCH, Some(m)) => copy_winsize(m),
            (sig, _) => {
                let _ = kill(pid, sig);
            }
        }
    }
}

/// Wait for `pid` with its pty `master` (if any) proxied to our stdio (stdin only when
/// `interactive`) and our terminal in raw mode; `mask` is blocked and forwarded.
pub fn wait_attached(
    pid: Pid,
    master: Option<File>,
    interactive: bool,
    mask: &SigSet,
) -> Result<Option<i32>> {
    let raw = master.as_ref().and_then(|_| RawMode::enter());
    let output = match &master {
        Some(m) => {
            copy_winsize(m.as_fd());
            Some(proxy(m, interactive)?)
        }
        None => None,
    };
    let code = wait_for(pid, Some(mask), master.as_ref().map(|m| m.as_fd()));
    drop(master);
    if let Some(o) = output {
        // Drains what the container wrote before it exited.
        let _ = o.join();
    }
    drop(raw);
    code
}

/// A listening console socket, removed on drop.
pub struct ConsoleSocket {
    listener: UnixListener,
    pub path: PathBuf,
}

impl ConsoleSocket {
    /// Listen at a short path in the temp dir (unix socket paths are limited to 108 bytes).
    pub fn bind(id: &str) -> Result<ConsoleSocket> {
        let path = std::env::temp_dir().join(format!(
            "berth-console-{}-{}.sock",
            std::process::id(),
            &id[..id.len().min(12)]
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).at(&path)?;
        Ok(ConsoleSocket { listener, path })
    }

    /// The pty master the container's init sent (it connected during `create`, so the
    /// connection and the message are already queued).
    pub fn receive(&self) -> Result<File> {
        let (conn, _) = self.listener.accept().at(&self.path)?;
        let mut buf = [0u8; 256];
        let mut iov = [IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(sys(format!("recvmsg on {}", self.path.display())))?;
        for c in msg.cmsgs().map_err(sys("console socket control message"))? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this fd for us; nobody else owns it.
                    return Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }));
                }
            }
        }
        Err(sys(format!(
            "{}: no pty master received",
            self.path.display()
        ))(nix::Error::EBADMSG))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The local terminal in raw mode; restored on drop.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Raw mode on stdin if it is a terminal.
    pub fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = tcgetattr(stdin.as_fd()).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(stdin.as_fd(), SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSANOW, &self.saved);
    }
}

/// Give the pty our terminal's size (when stdin is a terminal).
pub fn copy_winsize(master: BorrowedFd<'_>) {
    // SAFETY: winsize is plain data; TIOCGWINSZ/TIOCSWINSZ read/write the one we own.
    unsafe {
        let mut ws: libc::winsize = std::mem::zeroed();
        if libc::ioctl(0, libc::TIOCGWINSZ, &mut ws) == 0 {
            libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
        }
    }
}

/// Proxy the pty: our stdin to the master (only with `-i`; that thread ends with our
/// stdin or the process), and the master to our stdout until every slave is closed
/// (read fails with EIO) — join the returned handle to drain the output.
pub fn proxy(master: &File, interactive: bool) -> Result<JoinHandle<()>> {
    // Unbuffered copies of fds 0 and 1: std's stdout would hold a prompt until newline.
    let dup = |fd: BorrowedFd<'_>, what: &str| -> Result<File> {
        Ok(File::from(fd.try_clone_to_owned().at(what)?))
    };
    if interactive {
        let mut to = master.try_clone().at("pty master")?;
        let mut stdin = dup(std::io::stdin().as_fd(), "stdin")?;
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut stdin, &mut to);
        });
    }
    let mut from = master.try_clone().at("pty master")?;
    let mut stdout = dup(std::io::stdout().as_fd(), "stdout")?;
    Ok(std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut stdout);
    }))
}
