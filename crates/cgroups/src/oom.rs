//! OOM notification. v1: an eventfd registered on memory.oom_control through
//! cgroup.event_control. v2: inotify on memory.events, comparing the oom_kill counter.

use crate::error::{io_err, Error, Result};
use crate::fsutil;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What a wait observed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OomEvent {
    /// The cgroup hit its memory limit and the OOM killer ran (`count` new events).
    Oom { count: u64 },
    /// The cgroup was removed; no more events will come.
    Removed,
}

enum Source {
    V1 {
        efd: OwnedFd,
        // Kept open: closing it unregisters the eventfd.
        _oom_control: File,
        dir: PathBuf,
    },
    V2 {
        inotify: OwnedFd,
        events: PathBuf,
        seen: u64,
    },
}

/// Waits for OOM events of one cgroup. `as_fd()` becomes readable when `wait()` has
/// something to look at, for callers multiplexing with poll/epoll.
pub struct OomWatcher {
    src: Source,
}

fn read_fd(fd: BorrowedFd<'_>, buf: &mut [u8], what: &Path) -> Result<usize> {
    loop {
        // SAFETY: `buf` is valid writable memory of the given length; `fd` is open.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::Io {
                op: "read oom notification for",
                path: what.to_path_buf(),
                source: e,
            });
        }
    }
}

impl OomWatcher {
    pub(crate) fn v1(dir: &Path) -> Result<OomWatcher> {
        let ctl_path = dir.join("memory.oom_control");
        let oom_control = File::open(&ctl_path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::MissingController {
                    field: "oom notification".into(),
                    controller: "memory".into(),
                    file: ctl_path.clone(),
                }
            } else {
                Error::Io {
                    op: "open",
                    path: ctl_path.clone(),
                    source: e,
                }
            }
        })?;
        // SAFETY: eventfd has no memory effects; the result is checked below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io_err("eventfd for", dir)(std::io::Error::last_os_error()));
        }
        // SAFETY: fd was just returned by eventfd and is owned by nobody else.
        let efd = unsafe { OwnedFd::from_raw_fd(fd) };
        fsutil::write_file(
            dir,
            "cgroup.event_control",
            &format!("{} {}", efd.as_raw_fd(), oom_control.as_raw_fd()),
            "oom notification",
        )?;
        Ok(OomWatcher {
            src: Source::V1 {
                efd,
                _oom_control: oom_control,
                dir: dir.to_path_buf(),
            },
        })
    }

    pub(crate) fn v2(dir: &Path) -> Result<OomWatcher> {
        let events = dir.join("memory.events");
        if !events.exists() {
            return Err(Error::MissingController {
                field: "oom notification".into(),
                controller: "memory".into(),
                file: events,
            });
        }
        // SAFETY: inotify_init1 has no memory effects; the result is checked below.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io_err("inotify_init1 for", dir)(
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: fd was just returned by inotify_init1 and is owned by nobody else.
        let inotify = unsafe { OwnedFd::from_raw_fd(fd) };
        let c = CString::new(events.as_os_str().as_bytes()).map_err(|_| Error::InvalidPath {
            path: events.display().to_string(),
            reason: "contains a NUL byte",
        })?;
        // SAFETY: `c` is a valid C string; the fd is a live inotify instance.
        let wd =
            unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
        if wd < 0 {
            return Err(io_err("inotify_add_watch", &events)(
                std::io::Error::last_os_error(),
            ));
        }
        let seen = fsutil::keyed_value(&events, "oom_kill")?.unwrap_or(0);
        Ok(OomWatcher {
            src: Source::V2 {
                inotify,
                events,
                seen,
            },
        })
    }

    /// Blocks until the cgroup is OOM-killed or removed.
    pub fn wait(&mut self) -> Result<OomEvent> {
        match &mut self.src {
            Source::V1 { efd, dir, .. } => {
                let mut buf = [0u8; 8];
                read_fd(efd.as_fd(), &mut buf, dir)?;
                // The kernel also signals the eventfd when the cgroup goes away.
                if !dir.join("memory.oom_control").exists() {
                    return Ok(OomEvent::Removed);
                }
                Ok(OomEvent::Oom {
                    count: u64::from_ne_bytes(buf),
                })
            }
            Source::V2 {
                inotify,
                events,
                seen,
            } => loop {
                let now = match fsutil::keyed_value(events, "oom_kill") {
                    Ok(v) => v.unwrap_or(0),
                    Err(Error::Read { ref source, .. })
                        if matches!(source.raw_os_error(), Some(libc::ENOENT | libc::ENODEV)) =>
                    {
                        return Ok(OomEvent::Removed)
                    }
                    Err(e) => return Err(e),
                };
                if now > *seen {
                    let count = now - *seen;
                    *seen = now;
                    return Ok(OomEvent::Oom { count });
                }
                let mut buf = [0u8; 4096];
                read_fd(inotify.as_fd(), &mut buf, events)?;
            },
        }
    }
}

impl AsFd for OomWatcher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.src {
            Source::V1 { efd, .. } => efd.as_fd(),
            Source::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}
