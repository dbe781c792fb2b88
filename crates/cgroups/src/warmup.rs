//! Overlapping the wait of the first cgroup v1 migration with a container's setup.
//!
//! Every write to a v1 `cgroup.procs` takes `cgroup_threadgroup_rwsem` for writing. When
//! no migration happened lately, that lock first has to switch its readers to the slow
//! path, which waits for an RCU grace period (5-15 ms measured here); it then stays in that
//! mode for one more grace period after the last writer, so writes in quick succession are
//! cheap (about 0.1 ms). Moving a process into the cgroup it is already in changes nothing
//! but takes the lock all the same. [`AttachWarmup`] does that in a forked child as soon as
//! `create` knows it will move init, so the grace period runs while the runtime parses,
//! clones and mounts, and the real move of init finds the lock ready.

use std::ffi::CString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

use crate::layout::{own_dir, Layout};

/// A forked child moving itself into its own v1 cgroup; reaped on drop.
pub struct AttachWarmup {
    pub(crate) pid: libc::pid_t,
}

impl AttachWarmup {
    /// Starts the warm-up in a v1 hierarchy mounted under `root`, or with `v2_too` in the
    /// cgroup2 one (a v2 migration takes the same lock; on a pure v2 host init is usually
    /// born in its cgroup instead). Returns `None` when there is nothing to warm up or
    /// anything fails: it only saves time.
    pub fn start(root: &Path, v2_too: bool) -> Option<AttachWarmup> {
        let layout = Layout::detect(root).ok()?;
        let v2 = layout.unified.as_ref().filter(|_| v2_too);
        let mount = layout.v1.values().next().or(v2)?;
        let procs = own_dir(mount).join("cgroup.procs");
        let procs = CString::new(procs.into_os_string().into_vec()).ok()?;
        // SAFETY: after fork the child makes only async-signal-safe calls (open, write,
        // _exit) on memory prepared before the fork.
        match unsafe { libc::fork() } {
            0 => {
                // SAFETY: see above; "0" in cgroup.procs means the writing process.
                unsafe {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd >= 0 {
                        libc::write(fd, b"0".as_ptr().cast(), 1);
                    }
                    libc::_exit(0)
                }
            }
            pid if pid > 0 => Some(AttachWarmup { pid }),
            _ => None,
        }
    }
}

impl Drop for AttachWarmup {
    fn drop(&mut self) {
        // SAFETY: waiting for our own child; it exits once its write returns.
        unsafe { libc::waitpid(self.pid, std::ptr::null_mut(), 0) };
    }
}
