//! `process.terminal`: a pty from the container's own devpts, its master sent to the
//! `--console-socket` (SCM_RIGHTS, as runc does), its slave bound over /dev/console.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};

use super::InitConfig;
use crate::error::{Error, Result};
use crate::fs::{fd_path, fs_magic, io_err, Root};

/// Open a new pty pair inside the container (after pivot_root). The ptmx node is checked
/// to belong to a devpts mount, so a symlink planted at /dev/ptmx or /dev/pts/ptmx cannot
/// hand us a host device (CVE-2025-52565).
pub fn open_pty(root: &Root) -> Result<(OwnedFd, OwnedFd)> {
    let master = root.open_in(Path::new("/dev/pts/ptmx"), OFlag::O_RDWR | OFlag::O_NOCTTY)?;
    if fs_magic(&master).map_err(|e| io_err(Path::new("/dev/pts/ptmx"), e))?
        != libc::DEVPTS_SUPER_MAGIC
    {
        return Err(Error::Init(
            "/dev/pts/ptmx is not on a devpts filesystem".into(),
        ));
    }
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK with a pointer to an int on a pty master.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    nix::errno::Errno::result(r).map_err(|e| Error::Sys {
        op: "unlock pty".into(),
        source: e,
    })?;
    // TIOCGPTPEER opens the slave through the master, not through a path.
    // SAFETY: ioctl on a valid pty master fd returns a new fd.
    let slave = unsafe {
        libc::ioctl(
            master.as_raw_fd(),
            libc::TIOCGPTPEER,
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    let slave = nix::errno::Errno::result(slave).map_err(|e| Error::Sys {
        op: "open pty slave".into(),
        source: e,
    })?;
    // SAFETY: the kernel just returned this fd.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Send the pty master over the console socket.
pub fn send_master(socket: RawFd, master: &OwnedFd) -> Result<()> {
    let fds = [master.as_raw_fd()];
    let name = b"/dev/ptmx";
    sendmsg::<()>(
        socket,
        &[IoSlice::new(name)],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )
    .map_err(|e| Error::Sys {
        op: "send the pty master to the console socket".into(),
        source: e,
    })?;
    Ok(())
}

pub fn set_size(fd: &OwnedFd, height: u64, width: u64) {
    let ws = libc::winsize {
        ws_row: height as u16,
        ws_col: width as u16,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ with a valid winsize pointer.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
}

/// Set up the console if the process asks for a terminal; returns the slave to use as
/// the process's stdio.
pub fn setup(cfg: &InitConfig) -> Result<Option<OwnedFd>> {
    let process = cfg.spec.process().as_ref().expect("validated");
    if !process.terminal().unwrap_or(false) {
        return Ok(None);
    }
    let socket = cfg.console_socket.ok_or_else(|| {
        Error::Config("field process.terminal: true needs --console-socket".into())
    })?;
    let root = Root::open(Path::new("/"))?;
    let (master, slave) = open_pty(&root)?;
    if let Some(size) = process.console_size() {
        set_size(&master, size.height(), size.width());
    }
    let console = root.create_path(Path::new("/dev/console"), true)?;
    mount(
        Some(&fd_path(&slave)),
        &fd_path(&console),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| Error::Sys {
        op: "bind the pty over /dev/console".into(),
        source: e,
    })?;
    send_master(socket, &master)?;
    // SAFETY: closing an fd we were handed and no longer need.
    unsafe { libc::close(socket) };
    // Stop holding the caller's stdio now: a client that reads `create`'s output to EOF
    // (containerd's shim with a terminal) would otherwise wait until `start`.
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard fds, which this process owns.
        let r = unsafe { libc::dup2(slave.as_raw_fd(), fd) };
        nix::errno::Errno::result(r).map_err(|e| Error::Sys {
            op: "dup2 console".into(),
            source: e,
        })?;
    }
    Ok(Some(slave))
}
