//! fork(2) straight into a cgroup2 directory: clone3(CLONE_INTO_CGROUP), Linux >= 5.7.
//! The child never migrates, so it never waits for cgroup_threadgroup_rwsem.

use std::os::fd::{AsRawFd, BorrowedFd};

/// clone3(2) arguments (linux/sched.h).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// Forks into the cgroup2 directory `cgroup`, creating the namespaces in `clone_flags` in
/// the same step; returns 0 in the child and the child's pid in the parent, like fork.
///
/// # Safety
/// As for fork in a program that may have other threads: the child must only make
/// async-signal-safe calls until it execs or exits.
pub unsafe fn fork_into(cgroup: BorrowedFd<'_>, clone_flags: libc::c_int) -> std::io::Result<i32> {
    let args = CloneArgs {
        flags: u64::from(clone_flags as u32) | CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: cgroup.as_raw_fd() as u64,
        ..Default::default()
    };
    // SAFETY: a valid args struct of its declared size; no stack is given, so the child
    // runs on a copy of ours (fork semantics); the caller upholds the rest.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            &args as *const CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r as i32)
    }
}
