//! Loading a compiled program into the kernel with seccomp(2).
//!
//! Nothing here allocates: the runtime calls `install` in the container's init right before
//! execve, possibly in a child forked from a multi-threaded process.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use libc::{c_ulong, c_void};
use oci_spec::runtime::LinuxSeccompFilterFlag;

use crate::policy::{
    RET_ALLOW, RET_ERRNO, RET_KILL_PROCESS, RET_KILL_THREAD, RET_LOG, RET_TRACE, RET_TRAP,
    RET_USER_NOTIF,
};
use crate::{Error, Filter};

/// OCI flag, its name, and its SECCOMP_FILTER_FLAG_* bit.
pub(crate) const FLAGS: [(LinuxSeccompFilterFlag, &str, c_ulong); 4] = [
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagTsync,
        "SECCOMP_FILTER_FLAG_TSYNC",
        libc::SECCOMP_FILTER_FLAG_TSYNC,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagLog,
        "SECCOMP_FILTER_FLAG_LOG",
        libc::SECCOMP_FILTER_FLAG_LOG,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow,
        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
        libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
    ),
    (
        LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv,
        "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
        libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
    ),
];

/// Action names and their SECCOMP_RET_* values (action part only).
pub(crate) const ACTIONS: [(&str, u32); 9] = [
    ("SCMP_ACT_KILL", RET_KILL_THREAD),
    ("SCMP_ACT_KILL_THREAD", RET_KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", RET_KILL_PROCESS),
    ("SCMP_ACT_TRAP", RET_TRAP),
    ("SCMP_ACT_ERRNO", RET_ERRNO),
    ("SCMP_ACT_TRACE", RET_TRACE),
    ("SCMP_ACT_ALLOW", RET_ALLOW),
    ("SCMP_ACT_LOG", RET_LOG),
    ("SCMP_ACT_NOTIFY", RET_USER_NOTIF),
];

fn seccomp(op: libc::c_uint, flags: c_ulong, args: *const c_void) -> io::Result<libc::c_long> {
    // SAFETY: seccomp(2) reads at most `args` (a sock_fprog or a u32, or NULL for probes,
    // which the kernel rejects with EFAULT without side effects); it does not retain it.
    let ret = unsafe { libc::syscall(libc::SYS_seccomp, op, flags, args) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Whether the running kernel knows filter flag `bit`: with a NULL program the kernel
/// validates the flags first (EINVAL) and only then faults on the program (EFAULT).
pub(crate) fn kernel_has_flag(bit: c_ulong) -> bool {
    // WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER.
    let probe = if bit == libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV {
        bit | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER
    } else {
        bit
    };
    matches!(
        seccomp(libc::SECCOMP_SET_MODE_FILTER, probe, std::ptr::null()),
        Err(e) if e.raw_os_error() == Some(libc::EFAULT)
    )
}

/// Whether the running kernel knows the action `ret` (SECCOMP_GET_ACTION_AVAIL, Linux 4.14).
pub(crate) fn kernel_has_action(ret: u32) -> bool {
    seccomp(
        libc::SECCOMP_GET_ACTION_AVAIL,
        0,
        (&ret as *const u32).cast(),
    )
    .is_ok()
}

impl Filter {
    /// Loads the filter into the calling thread (all threads with TSYNC) with seccomp(2).
    ///
    /// The caller must have set no_new_privs (`prctl(PR_SET_NO_NEW_PRIVS, 1)`) when the spec
    /// asks for it; without no_new_privs the kernel requires CAP_SYS_ADMIN in the caller's user
    /// namespace and returns [`Error::NeedNoNewPrivs`] otherwise. When the profile uses
    /// SCMP_ACT_NOTIFY the filter is installed with SECCOMP_FILTER_FLAG_NEW_LISTENER and the
    /// listener fd is returned (close-on-exec). Does not allocate.
    pub fn install(&self) -> Result<Option<OwnedFd>, Error> {
        for &(name, ret) in &ACTIONS {
            if self.action_mask & action_bit(ret) != 0 && !kernel_has_action(ret) {
                return Err(Error::UnsupportedAction { action: name });
            }
        }
        let mut flags = 0;
        for &(_, name, bit) in &FLAGS {
            if self.flags & bit != 0 {
                if !kernel_has_flag(bit) {
                    return Err(Error::UnsupportedFlag { flag: name });
                }
                flags |= bit;
            }
        }
        if self.uses_notify {
            flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER;
            // With both TSYNC and NEW_LISTENER the kernel cannot return a thread id on
            // failure, so it insists on TSYNC_ESRCH (report failure as ESRCH).
            if flags & libc::SECCOMP_FILTER_FLAG_TSYNC != 0 {
                flags |= libc::SECCOMP_FILTER_FLAG_TSYNC_ESRCH;
            }
        }
        let prog = libc::sock_fprog {
            len: self.program.len() as u16,
            filter: self.program.as_ptr().cast_mut(),
        };
        let ret = seccomp(
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            (&prog as *const libc::sock_fprog).cast(),
        )
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EACCES) => Error::NeedNoNewPrivs,
            _ => Error::Install(e),
        })?;
        if self.uses_notify {
            // SAFETY: with NEW_LISTENER a successful seccomp(2) returns a new fd we now own.
            return Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) }));
        }
        if ret > 0 {
            // TSYNC without ESRCH reports the thread that could not be synchronised.
            return Err(Error::Tsync { tid: ret });
        }
        Ok(None)
    }
}

/// One bit per SECCOMP_RET action (the action is the top 16 bits; 0x8000 is KILL_PROCESS).
pub(crate) fn action_bit(ret: u32) -> u32 {
    match ret & crate::policy::RET_ACTION_FULL {
        RET_KILL_PROCESS => 1 << 0,
        RET_KILL_THREAD => 1 << 1,
        RET_TRAP => 1 << 2,
        RET_ERRNO => 1 << 3,
        RET_USER_NOTIF => 1 << 4,
        RET_TRACE => 1 << 5,
        RET_LOG => 1 << 6,
        // RET_ALLOW, the only other value a policy produces.
        _ => 1 << 7,
    }
}
