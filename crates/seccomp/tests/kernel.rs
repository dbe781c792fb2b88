//! Real-kernel tests: each filter is installed in a forked child, which makes syscalls and
//! reports through its exit status. The test process itself never installs a filter.
//!
//! Other test threads may hold the allocator lock when we fork, so a child only makes raw
//! syscalls (`Filter::install` does not allocate) and leaves with `_exit`.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::arch::asm;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use berth_seccomp::{compile, default_profile, kernel_supports_flag, Error, Filter};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction as Act, LinuxSeccompArgBuilder,
    LinuxSeccompFilterFlag as Flag, LinuxSeccompOperator as Op, LinuxSyscall,
};

const X32_SYSCALL_BIT: i64 = 0x4000_0000;
const X32_GETPID: i64 = X32_SYSCALL_BIT | 39;
const I386_GETPID: u32 = 20;

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Exited(i32),
    Signaled(i32),
}

/// A forked child; killed and reaped on drop if the test fails before waiting for it.
struct Child {
    pid: libc::pid_t,
    reaped: bool,
}

impl Child {
    fn wait(mut self) -> Outcome {
        let mut status = 0;
        loop {
            // SAFETY: waiting for our own child; `status` is a valid out-pointer.
            let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if r == self.pid {
                break;
            }
            let err = io::Error::last_os_error();
            assert_eq!(err.raw_os_error(), Some(libc::EINTR), "waitpid: {err}");
        }
        self.reaped = true;
        if libc::WIFSIGNALED(status) {
            Outcome::Signaled(libc::WTERMSIG(status))
        } else {
            Outcome::Exited(libc::WEXITSTATUS(status))
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: plain syscalls on our own child pid.
            unsafe {
                libc::kill(self.pid, libc::SIGKILL);
                libc::waitpid(self.pid, std::ptr::null_mut(), 0);
            }
        }
    }
}

/// Forks; the child disables core dumps, sets no_new_privs when asked, runs `body` and
/// exits with its return value.
fn spawn(nnp: bool, body: impl FnOnce() -> i32) -> Child {
    // SAFETY: the child only makes syscalls and exits with _exit (see module docs).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let no_core = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: plain syscalls in the child; _exit never returns.
        unsafe {
            // No core files from the SIGSYS deaths, whatever core_pattern says.
            libc::setrlimit(libc::RLIMIT_CORE, &no_core);
            libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0);
            if nnp && libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                libc::_exit(120);
            }
            libc::_exit(body());
        }
    }
    Child { pid, reaped: false }
}

fn run_child(body: impl FnOnce() -> i32) -> Outcome {
    spawn(true, body).wait()
}

/// Installs `filter` in the child; exit code 121 says installation failed.
fn installed(filter: &Filter) -> bool {
    filter.install().is_ok()
}

/// A raw syscall: Ok(return value) or Err(errno).
fn sys(nr: i64, args: [u64; 3]) -> Result<i64, i32> {
    // SAFETY: the syscalls used by these tests take integer arguments only.
    let r = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    if r == -1 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(r)
    }
}

/// getpid through the i386 entry point (`int 0x80`), which seccomp sees as AUDIT_ARCH_I386.
fn i386_getpid() -> i32 {
    let ret: i32;
    // SAFETY: int 0x80 with eax = getpid takes no arguments and touches no memory; the
    // kernel may clobber r8-r11 on this path.
    unsafe {
        asm!("int 0x80", inlateout("eax") I386_GETPID as i32 => ret,
             out("r8") _, out("r9") _, out("r10") _, out("r11") _, options(nostack));
    }
    ret
}

fn rule(name: &str, action: Act, errno: Option<u32>) -> LinuxSyscall {
    let mut r = LinuxSyscall::default();
    r.set_names(vec![name.to_string()]);
    r.set_action(action);
    r.set_errno_ret(errno);
    r
}

fn profile(default: Act, arches: &[Arch], rules: Vec<LinuxSyscall>) -> LinuxSeccomp {
    let mut p = LinuxSeccomp::default();
    p.set_default_action(default);
    if !arches.is_empty() {
        p.set_architectures(Some(arches.to_vec()));
    }
    p.set_syscalls(Some(rules));
    p
}

fn filter_for(name: &str, action: Act, errno: Option<u32>) -> Filter {
    compile(&profile(
        Act::ScmpActAllow,
        &[],
        vec![rule(name, action, errno)],
    ))
    .unwrap()
}

const SIGSYS: Outcome = Outcome::Signaled(libc::SIGSYS);

#[test]
fn errno_action_returns_errno_ret() {
    let f = filter_for("getppid", Act::ScmpActErrno, Some(42));
    let out = run_child(|| {
        if !installed(&f) {
            return 121;
        }
        match sys(libc::SYS_getppid, [0; 3]) {
            Err(42) => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn default_errno_ret_applies_to_unlisted_syscalls() {
    let mut p = profile(
        Act::ScmpActErrno,
        &[],
        vec![
            rule("exit_group", Act::ScmpActAllow, None),
            rule("exit", Act::ScmpActAllow, None),
        ],
    );
    p.set_default_errno_ret(Some(libc::EACCES as u32));
    let f = compile(&p).unwrap();
    let out = run_child(|| {
        if !installed(&f) {
            return 121;
        }
        match sys(libc::SYS_getpid, [0; 3]) {
            Err(libc::EACCES) => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn kill_process_and_kill_thread_end_with_sigsys() {
    for action in [
        Act::ScmpActKillProcess,
        Act::ScmpActKillThread,
        Act::ScmpActKill,
    ] {
        let f = filter_for("getppid", action, None);
        let out = run_child(|| {
            if !installed(&f) {
                return 121;
            }
            let _ = sys(libc::SYS_getppid, [0; 3]);
            1
        });
        assert_eq!(out, SIGSYS, "{action:?}");
    }
}

extern "C" fn exit_77(_: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(77) }
}

#[test]
fn trap_delivers_a_catchable_sigsys() {
    let f = filter_for("getppid", Act::ScmpActTrap, None);
    let out = run_child(|| {
        // SAFETY: installing a plain handler that only calls _exit.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = exit_77 as *const () as usize;
            if libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut()) != 0 {
                return 122;
            }
        }
        if !installed(&f) {
            return 121;
        }
        let _ = sys(libc::SYS_getppid, [0; 3]);
        1
    });
    assert_eq!(out, Outcome::Exited(77));
}

#[test]
fn log_allows_and_trace_without_tracer_is_enosys() {
    let parent = std::process::id() as i64;
    let f = filter_for("getppid", Act::ScmpActLog, None);
    let out = run_child(|| {
        if !installed(&f) {
            return 121;
        }
        match sys(libc::SYS_getppid, [0; 3]) {
            Ok(p) if p == parent => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));

    let f = filter_for("getppid", Act::ScmpActTrace, Some(3));
    let out = run_child(|| {
        if !installed(&f) {
            return 121;
        }
        match sys(libc::SYS_getppid, [0; 3]) {
            Err(libc::ENOSYS) => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn argument_conditions_compare_64_bit_values() {
    let arg = |index: usize, op: Op, value: u64, two: u64| {
        LinuxSeccompArgBuilder::default()
            .index(index)
            .op(op)
            .value(value)
            .value_two(two)
            .build()
            .unwrap()
    };
    let mut gt = rule("getppid", Act::ScmpActErrno, Some(11));
    gt.set_args(Some(vec![arg(0, Op::ScmpCmpGt, 0x1_0000_0000, 0)]));
    let mut masked_and_eq = rule("getppid", Act::ScmpActErrno, Some(12));
    masked_and_eq.set_args(Some(vec![
        arg(1, Op::ScmpCmpMaskedEq, 0xff_0000_0000, 0x12_0000_0000),
        arg(2, Op::ScmpCmpEq, 7, 0),
    ]));
    let f = compile(&profile(Act::ScmpActAllow, &[], vec![gt, masked_and_eq])).unwrap();
    let cases: [([u64; 3], Result<(), i32>); 6] = [
        ([0x1_0000_0001, 0, 0], Err(11)),
        ([0x1_0000_0000, 0, 0], Ok(())),
        ([0xffff_ffff, 0, 0], Ok(())),
        ([0, 0x12_ffff_ffff, 7], Err(12)),
        ([0, 0x12_ffff_ffff, 0x1_0000_0007], Ok(())),
        ([0, 0x13_0000_0000, 7], Ok(())),
    ];
    for (i, (args, want)) in cases.iter().enumerate() {
        let out = run_child(|| {
            if !installed(&f) {
                return 121;
            }
            match (sys(libc::SYS_getppid, *args), want) {
                (Ok(_), Ok(())) => 0,
                (Err(e), Err(w)) if e == *w => 0,
                _ => 1,
            }
        });
        assert_eq!(out, Outcome::Exited(0), "case {i}: args {args:x?}");
    }
}

#[test]
fn x32_numbers_cannot_bypass_an_x86_64_filter() {
    let only_64 = compile(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64],
        vec![rule("getpid", Act::ScmpActErrno, Some(5))],
    ))
    .unwrap();
    let out = run_child(|| {
        if !installed(&only_64) {
            return 121;
        }
        let _ = sys(X32_GETPID, [0; 3]);
        1
    });
    assert_eq!(out, SIGSYS);

    // With x32 listed, its rules apply (the filter answers before the kernel's own check
    // of whether x32 is enabled).
    let with_x32 = compile(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX32],
        vec![rule("getpid", Act::ScmpActErrno, Some(5))],
    ))
    .unwrap();
    let out = run_child(|| {
        if !installed(&with_x32) {
            return 121;
        }
        match (sys(X32_GETPID, [0; 3]), sys(libc::SYS_getpid, [0; 3])) {
            (Err(5), Err(5)) => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn i386_entry_is_filtered_by_arch() {
    let only_64 = compile(&profile(Act::ScmpActAllow, &[Arch::ScmpArchX86_64], vec![])).unwrap();
    let out = run_child(|| {
        if !installed(&only_64) {
            return 121;
        }
        i386_getpid();
        1
    });
    assert_eq!(out, SIGSYS);

    let with_x86 = compile(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX86],
        vec![rule("getpid", Act::ScmpActErrno, Some(9))],
    ))
    .unwrap();
    let out = run_child(|| {
        if !installed(&with_x86) {
            return 121;
        }
        if i386_getpid() == -9 {
            0
        } else {
            1
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}

#[test]
fn notify_listener_receives_and_answers() {
    let mut p = profile(
        Act::ScmpActAllow,
        &[],
        vec![rule("getppid", Act::ScmpActNotify, None)],
    );
    p.set_listener_path(Some("/nonexistent/agent.sock".into()));
    let f = compile(&p).unwrap();
    assert!(f.uses_notify());
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills the two-element array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both fds were just created and are owned here.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let wr_fd = wr.as_raw_fd();
    let child = spawn(true, || {
        let Ok(Some(listener)) = f.install() else {
            return 121;
        };
        let n = listener.as_raw_fd();
        // SAFETY: writing 4 bytes from a local to the pipe.
        if unsafe { libc::write(wr_fd, (&n as *const i32).cast(), 4) } != 4 {
            return 122;
        }
        match sys(libc::SYS_getppid, [0; 3]) {
            Ok(4242) => 0,
            _ => 1,
        }
    });
    drop(wr);
    let mut n: i32 = -1;
    // SAFETY: reading 4 bytes into a local.
    let got = unsafe { libc::read(rd.as_raw_fd(), (&mut n as *mut i32).cast(), 4) };
    assert_eq!(got, 4, "child did not report its listener fd");
    let listener = steal_fd(child.pid, n);

    // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed before RECV.
    let mut req: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl fills `req`, a correctly sized seccomp_notif.
    let r = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut req,
        )
    };
    assert_eq!(r, 0, "NOTIF_RECV: {}", io::Error::last_os_error());
    assert_eq!(req.data.nr as i64, libc::SYS_getppid);
    assert_eq!(req.data.arch, 0xc000_003e);
    assert_eq!(req.pid as i32, child.pid);
    let resp = libc::seccomp_notif_resp {
        id: req.id,
        val: 4242,
        error: 0,
        flags: 0,
    };
    // SAFETY: the ioctl reads `resp`, a correctly sized seccomp_notif_resp.
    let r = unsafe { libc::ioctl(listener.as_raw_fd(), libc::SECCOMP_IOCTL_NOTIF_SEND, &resp) };
    assert_eq!(r, 0, "NOTIF_SEND: {}", io::Error::last_os_error());
    assert_eq!(child.wait(), Outcome::Exited(0));
}

/// Duplicates fd `n` of process `pid` into this process (pidfd_getfd, Linux 5.6).
fn steal_fd(pid: libc::pid_t, n: i32) -> OwnedFd {
    // SAFETY: plain syscalls; each returned fd is new and owned by us.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0);
        assert!(pidfd >= 0, "pidfd_open: {}", io::Error::last_os_error());
        let pidfd = OwnedFd::from_raw_fd(pidfd as i32);
        let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), n, 0);
        assert!(fd >= 0, "pidfd_getfd: {}", io::Error::last_os_error());
        OwnedFd::from_raw_fd(fd as i32)
    }
}

#[test]
fn filter_flags_install_or_fail_naming_the_flag() {
    let flags = [
        Flag::SeccompFilterFlagTsync,
        Flag::SeccompFilterFlagLog,
        Flag::SeccompFilterFlagSpecAllow,
        Flag::SeccompFilterFlagWaitKillableRecv,
    ];
    for flag in flags {
        let mut rules = vec![rule("getppid", Act::ScmpActErrno, Some(33))];
        // WAIT_KILLABLE_RECV only means something with a listener.
        if flag == Flag::SeccompFilterFlagWaitKillableRecv {
            rules.push(rule("getpid", Act::ScmpActNotify, None));
        }
        let mut p = profile(Act::ScmpActAllow, &[], rules);
        p.set_listener_path(Some("/nonexistent/agent.sock".into()));
        p.set_flags(Some(vec![flag]));
        let f = compile(&p).unwrap();
        let supported = kernel_supports_flag(flag);
        let out = run_child(|| match f.install() {
            Ok(_) if supported => match sys(libc::SYS_getppid, [0; 3]) {
                Err(33) => 0,
                _ => 1,
            },
            Err(Error::UnsupportedFlag { .. }) if !supported => 0,
            _ => 2,
        });
        assert_eq!(
            out,
            Outcome::Exited(0),
            "{flag:?} (kernel supports it: {supported})"
        );
    }
}

#[test]
fn without_no_new_privs_and_cap_sys_admin_install_is_refused() {
    let f = filter_for("getppid", Act::ScmpActErrno, None);
    let child = spawn(false, || {
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        let header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let data = [0u32; 6];
        // SAFETY: capset reads a v3 header and two zeroed data structs: drop every capability.
        if unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) } != 0 {
            return 122;
        }
        match f.install() {
            Err(Error::NeedNoNewPrivs) => 0,
            _ => 1,
        }
    });
    assert_eq!(child.wait(), Outcome::Exited(0));
}

#[test]
fn default_profile_allows_ordinary_calls_and_blocks_namespaces() {
    let f = compile(&default_profile()).unwrap();
    let out = run_child(|| {
        if !installed(&f) {
            return 121;
        }
        if sys(libc::SYS_getppid, [0; 3]).is_err() {
            return 1;
        }
        if sys(libc::SYS_unshare, [libc::CLONE_NEWUTS as u64, 0, 0]) != Err(libc::EPERM) {
            return 2;
        }
        if sys(libc::SYS_clone3, [0, 0, 0]) != Err(libc::ENOSYS) {
            return 3;
        }
        if sys(libc::SYS_personality, [0xffff_ffff, 0, 0]).is_err() {
            return 4;
        }
        if sys(libc::SYS_personality, [0x0040_0000, 0, 0]) != Err(libc::EPERM) {
            return 5;
        }
        if sys(libc::SYS_umount2, [0, 0, 0]) != Err(libc::EPERM) {
            return 6;
        }
        if i386_getpid() <= 0 {
            return 7;
        }
        0
    });
    assert_eq!(out, Outcome::Exited(0));
}

/// A program big enough to need long-jump trampolines is accepted by the kernel and
/// dispatches correctly: every syscall but exit gets its own errno.
#[test]
fn large_program_with_trampolines_loads_and_dispatches() {
    let names = [
        "read",
        "write",
        "open",
        "close",
        "stat",
        "fstat",
        "lstat",
        "poll",
        "lseek",
        "mmap",
        "mprotect",
        "munmap",
        "brk",
        "rt_sigaction",
        "rt_sigprocmask",
        "ioctl",
        "pread64",
        "pwrite64",
        "readv",
        "writev",
        "access",
        "pipe",
        "select",
        "sched_yield",
        "mremap",
        "msync",
        "mincore",
        "madvise",
        "shmget",
        "shmat",
        "shmctl",
        "dup",
        "dup2",
        "pause",
        "nanosleep",
        "getitimer",
        "alarm",
        "setitimer",
        "getpid",
        "sendfile",
        "socket",
        "connect",
        "accept",
        "sendto",
        "recvfrom",
        "sendmsg",
        "recvmsg",
        "shutdown",
        "bind",
        "listen",
        "getsockname",
        "getpeername",
        "socketpair",
        "setsockopt",
        "getsockopt",
        "clone",
        "fork",
        "vfork",
        "execve",
        "wait4",
        "kill",
        "uname",
        "semget",
        "semop",
        "semctl",
        "shmdt",
        "msgget",
        "msgsnd",
        "msgrcv",
        "msgctl",
        "fcntl",
        "flock",
        "fsync",
        "fdatasync",
        "truncate",
        "ftruncate",
        "getdents",
        "getcwd",
        "chdir",
        "fchdir",
        "rename",
        "mkdir",
        "rmdir",
        "creat",
        "link",
        "unlink",
        "symlink",
        "readlink",
        "chmod",
        "fchmod",
        "chown",
        "fchown",
        "lchown",
        "umask",
        "gettimeofday",
        "getrlimit",
        "getrusage",
        "sysinfo",
        "times",
        "ptrace",
        "getuid",
        "syslog",
        "getgid",
        "setuid",
        "setgid",
        "geteuid",
        "getegid",
        "setpgid",
        "getppid",
        "getpgrp",
        "setsid",
    ];
    let rules: Vec<LinuxSyscall> = names
        .iter()
        .enumerate()
        .map(|(i, n)| rule(n, Act::ScmpActErrno, Some(100 + i as u32)))
        .collect();
    let want = 100 + names.iter().position(|n| *n == "getppid").unwrap() as i32;
    let f = compile(&profile(
        Act::ScmpActAllow,
        &[Arch::ScmpArchX86_64, Arch::ScmpArchX86, Arch::ScmpArchX32],
        rules,
    ))
    .unwrap();
    assert!(
        f.instructions().len() > 300,
        "{} instructions",
        f.instructions().len()
    );
    assert!(
        f.instructions().iter().any(|i| i.code == 0x05),
        "no trampoline (ja)"
    );
    let out = run_child(|| {
        if !installed(&f) {
            return 121;
        }
        match sys(libc::SYS_getppid, [0; 3]) {
            Err(e) if e == want => 0,
            _ => 1,
        }
    });
    assert_eq!(out, Outcome::Exited(0));
}
