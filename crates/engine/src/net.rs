//! `--network none`: the container's new network namespace gets loopback up, as Docker
//! gives it (a fresh namespace has `lo` down, so even 127.0.0.1 is unreachable).

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::sched::{setns, CloneFlags};
use nix::unistd::Pid;

use crate::error::{sys, IoContext, Result};

/// Set `lo` up in the network namespace of `pid`. setns(CLONE_NEWNET) moves only the
/// calling thread, so a short-lived thread does it and the caller stays where it is.
pub(crate) fn loopback_up(pid: Pid) -> Result<()> {
    let path = format!("/proc/{pid}/ns/net");
    let ns = File::open(&path).at(&path)?;
    std::thread::spawn(move || -> Result<()> {
        setns(&ns, CloneFlags::CLONE_NEWNET).map_err(sys(format!("setns {path}")))?;
        // SAFETY: socket(2) with constant arguments; the fd is owned right after.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(sys("socket(AF_INET) for lo")(nix::Error::last()));
        }
        // SAFETY: `raw` is a fresh fd nobody else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: ifreq is plain data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
            *dst = *src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
        unsafe {
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                return Err(sys("SIOCGIFFLAGS lo")(nix::Error::last()));
            }
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                return Err(sys("SIOCSIFFLAGS lo")(nix::Error::last()));
            }
        }
        Ok(())
    })
    .join()
    .unwrap_or_else(|_| Err(sys("loopback thread")(nix::Error::EIO)))
}
