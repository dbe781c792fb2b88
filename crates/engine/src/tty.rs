//! `-t`: the runtime's init makes the pty inside the container and sends its master over a
//! `--console-socket` we listen on (SCM_RIGHTS, as runc does); we proxy it to our stdio,
//! with the local terminal in raw mode while the container runs.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};

use crate::error::{sys, IoContext, Result};

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
