//! Self-confinement of the VMM's threads (vCPUs and device backends) before they touch
//! guest code or guest data: no_new_privs, every capability dropped, and a seccomp
//! allow-list (one list for both kinds of thread). All three are per-thread in Linux, so
//! confining the vCPU threads leaves the embedding process (the caller's threads) alone.

use berth_seccomp::Filter;

use crate::error::{Error, Result};

/// KVM_RUN = _IO(KVMIO=0xae, 0x80): the one KVM ioctl a vCPU thread issues.
const KVM_RUN: u64 = 0xae80;

/// fcntl(F_GETFD): Rust's std checks a descriptor is open before closing it (debug builds).
const F_GETFD: i32 = libc::F_GETFD;

/// FIONBIO: `set_nonblocking` on a vsock connection's socket.
const FIONBIO: u64 = libc::FIONBIO;
/// virtio-vsock dials `<uds>_<port>` for guest-initiated streams: unix sockets only.
const AF_UNIX: i32 = libc::AF_UNIX;

/// mprotect(PROT_READ|PROT_WRITE) only: malloc commits arena memory this way; making
/// memory executable stays forbidden.
const PROT_RW: i32 = libc::PROT_READ | libc::PROT_WRITE;

/// What a VMM thread does after confinement: KVM_RUN, device I/O on already open files
/// (console, disk images, tap, eventfds), unix-socket accept/connect/send/recv for vsock,
/// epoll for backends, getrandom for virtio-rng, locks, the kick signal's return, and
/// thread exit (closing the vCPU fd, unmapping its kvm_run page and stacks).
/// Anything else kills the process (SIGSYS), as Firecracker does.
fn thread_profile() -> String {
    let allowed = [
        "read",
        "write",
        "pread64",
        "pwrite64",
        "preadv",
        "pwritev",
        "fsync",
        "fdatasync",
        "getrandom",
        "futex",
        "accept4",
        "connect",
        "epoll_ctl",
        "epoll_wait",
        "epoll_pwait",
        "recvfrom",
        "sendto",
        "sched_yield",
        "clock_gettime",
        "rt_sigreturn",
        "rt_sigprocmask",
        "sigaltstack",
        "mmap",
        "munmap",
        "mremap",
        "madvise",
        "brk",
        "close",
        "exit",
        "exit_group",
        "gettid",
        "getpid",
    ];
    let names = allowed
        .iter()
        .map(|n| format!("\"{n}\""))
        .collect::<Vec<_>>()
        .join(",");
    format!(
        r#"{{"defaultAction":"SCMP_ACT_KILL_PROCESS","syscalls":[
            {{"names":[{names}],"action":"SCMP_ACT_ALLOW"}},
            {{"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{{"index":1,"value":{KVM_RUN},"op":"SCMP_CMP_EQ"}}]}},
            {{"names":["ioctl"],"action":"SCMP_ACT_ALLOW","args":[{{"index":1,"value":{FIONBIO},"op":"SCMP_CMP_EQ"}}]}},
            {{"names":["mprotect"],"action":"SCMP_ACT_ALLOW","args":[{{"index":2,"value":{PROT_RW},"op":"SCMP_CMP_EQ"}}]}},
            {{"names":["socket"],"action":"SCMP_ACT_ALLOW","args":[{{"index":0,"value":{AF_UNIX},"op":"SCMP_CMP_EQ"}}]}},
            {{"names":["fcntl"],"action":"SCMP_ACT_ALLOW","args":[{{"index":1,"value":{F_GETFD},"op":"SCMP_CMP_EQ"}}]}}]}}"#
    )
}

/// The compiled filter (compile once, install in each VMM thread).
pub fn thread_filter() -> Result<Filter> {
    let profile = berth_seccomp::parse_profile(&thread_profile()).map_err(|e| Error::Confine {
        step: "seccomp profile",
        reason: e.to_string(),
    })?;
    berth_seccomp::compile(&profile).map_err(|e| Error::Confine {
        step: "seccomp compile",
        reason: e.to_string(),
    })
}

/// Confines the calling thread: no_new_privs, capabilities cleared (bounding set first,
/// while CAP_SETPCAP is still effective), then `filter`.
pub fn confine_current_thread(filter: &Filter) -> Result<()> {
    // SAFETY: prctl with integer arguments only changes this thread's flags.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(Error::Confine {
            step: "no_new_privs",
            reason: std::io::Error::last_os_error().to_string(),
        });
    }
    let caps_err = |e: caps::errors::CapsError| Error::Confine {
        step: "drop capabilities",
        reason: e.to_string(),
    };
    if caps::has_cap(None, caps::CapSet::Effective, caps::Capability::CAP_SETPCAP)
        .map_err(caps_err)?
    {
        for cap in caps::read(None, caps::CapSet::Bounding).map_err(caps_err)? {
            caps::drop(None, caps::CapSet::Bounding, cap).map_err(caps_err)?;
        }
    }
    for set in [
        caps::CapSet::Ambient,
        caps::CapSet::Inheritable,
        caps::CapSet::Effective,
        caps::CapSet::Permitted,
    ] {
        caps::clear(None, set).map_err(caps_err)?;
    }
    filter.install().map_err(|e| Error::Confine {
        step: "seccomp install",
        reason: e.to_string(),
    })?;
    Ok(())
}
