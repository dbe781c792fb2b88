//! Parent side of container creation: fork the process that becomes the container's init
//! into its namespaces and re-execute the sealed berth copy there.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, Spec};

use crate::error::{Error, Result};
use crate::fs::ProcFs;
use crate::namespaces::{self, Plan};
use crate::sealed_exe::{SealedExe, SEAL_MOUNT_FD_ENV};
use crate::sync::{self, Channel, ChildMsg, ParentMsg};

/// Environment variable that tells a re-executed berth it is a container init, and on
/// which fd its channel to the parent is.
pub const INIT_FD_ENV: &str = "_BERTH_INIT_FD";

/// fork(2) through clone(2), creating namespaces in the same step.
fn clone_fork(flags: libc::c_int) -> nix::Result<libc::pid_t> {
    // SAFETY: with a null stack pointer clone behaves like fork: the child continues on a
    // copy of this stack. The caller is single-threaded, and the child only makes
    // syscalls and exec()s or _exit()s.
    let r = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (flags | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    Errno::result(r).map(|p| p as libc::pid_t)
}

/// In a freshly forked child: run `f`, report failure over `ch`, never return.
fn child_main(ch: &Channel, f: impl FnOnce() -> Result<std::convert::Infallible>) -> ! {
    let e = match f() {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = ch.send(&ChildMsg::Failed(e.to_string()));
    // SAFETY: _exit is always safe; skip atexit handlers of the parent's image.
    unsafe { libc::_exit(1) }
}

/// `berth init`'s argv and environment as C arrays, built before the process that execs
/// them exists (that process shares our memory and must not allocate).
struct InitArgs {
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl InitArgs {
    fn new(ch: &Channel, exe: &SealedExe) -> InitArgs {
        let fd = ch.fd().as_raw_fd();
        let mut strings = vec![c"berth".to_owned(), c"init".to_owned()];
        strings.push(CString::new(format!("{INIT_FD_ENV}={fd}")).expect("no NUL in a number"));
        if let Some(mount) = &exe.mount {
            let env = format!("{SEAL_MOUNT_FD_ENV}={}", mount.as_raw_fd());
            strings.push(CString::new(env).expect("no NUL in a number"));
        }
        if let Ok(level) = std::env::var("_BERTH_LOG_LEVEL") {
            strings.push(CString::new(format!("_BERTH_LOG_LEVEL={level}")).unwrap_or_default());
        }
        let ptrs = |s: &[CString]| -> Vec<*const libc::c_char> {
            s.iter()
                .map(|a| a.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        let argv = ptrs(&strings[..2]);
        let envp = ptrs(&strings[2..]);
        InitArgs {
            _strings: strings,
            argv,
            envp,
        }
    }
}

/// What the vfork-style child reads and writes; it lives in the parent's memory.
struct ExecRequest {
    exe: libc::c_int,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    /// Set by the child when execve failed.
    errno: libc::c_int,
}

/// Body of the vfork-style child: only system calls, no allocation, no lock (it runs on
/// its own small stack in the parent's memory, while the parent waits in clone). Every
/// signal stays blocked until berth init, past the exec that reset all handlers, unblocks
/// them: no handler of the parent's can run in the parent's memory.
extern "C" fn exec_child(arg: *mut libc::c_void) -> libc::c_int {
    let req = arg.cast::<ExecRequest>();
    // SAFETY: `arg` is the ExecRequest the parent passed to clone; the parent is suspended
    // (CLONE_VFORK) until we exec or exit, so nothing else touches it. execveat reads
    // NUL-terminated arrays of C strings the parent keeps alive.
    unsafe {
        libc::syscall(
            libc::SYS_execveat,
            (*req).exe,
            c"".as_ptr(),
            (*req).argv,
            (*req).envp,
            libc::AT_EMPTY_PATH,
        );
        std::ptr::write_volatile(&mut (*req).errno, *libc::__errno_location());
        libc::_exit(127)
    }
}

/// Start the sealed berth copy as `berth init` in a new process made with clone `flags`
/// (the namespaces to create), talking over `ch`.
///
/// vfork-style (CLONE_VM | CLONE_VFORK): the child shares our memory until its execve, so
/// the kernel neither copies our page tables nor makes us take a copy-on-write fault on
/// every page we write afterwards; on this machine a page fault costs 10-20 us, and a
/// plain fork of the runtime cost milliseconds. The child only execs.
fn spawn_sealed(exe: &SealedExe, ch: &Channel, flags: libc::c_int) -> Result<Pid> {
    let args = InitArgs::new(ch, exe);
    inherit(ch, exe)?;
    // SAFETY: sigset_t is plain data, for which all zeroes is a valid (empty) value.
    let (mut all, mut saved): (libc::sigset_t, libc::sigset_t) = unsafe { std::mem::zeroed() };
    let mut req = ExecRequest {
        exe: exe.file.as_raw_fd(),
        argv: args.argv.as_ptr(),
        envp: args.envp.as_ptr(),
        errno: 0,
    };
    // No signal handler of ours may run in the child while it shares our memory: block
    // everything around clone (the child inherits that mask; berth init unblocks).
    // SAFETY: valid sigset pointers.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
    }
    let mut stack = vec![0u8; 64 << 10];
    // The stack grows down from the 16-byte aligned end of the buffer.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    // SAFETY: the child runs exec_child on its own stack and only makes system calls;
    // CLONE_VFORK suspends us until it has exec'd or exited, so `req`, `args` and `stack`
    // outlive its use of them.
    let pid = unsafe {
        libc::clone(
            exec_child,
            top as *mut libc::c_void,
            flags | libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&mut req as *mut ExecRequest).cast(),
        )
    };
    let clone_errno = Errno::last();
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    if pid < 0 {
        return Err(Error::Sys {
            op: "clone the container init".into(),
            source: clone_errno,
        });
    }
    // SAFETY: the child is gone or exec'd; nothing writes `req` any more.
    let errno = unsafe { std::ptr::read_volatile(&req.errno) };
    if errno != 0 {
        let _ = waitpid(Pid::from_raw(pid), None);
        return Err(Error::Sys {
            op: "execute the sealed berth copy".into(),
            source: Errno::from_raw(errno),
        });
    }
    Ok(Pid::from_raw(pid))
}

/// In a forked child (clone3 into a cgroup): replace this process with the sealed berth
/// copy running `berth init`.
fn exec_init(exe: &SealedExe, ch: &Channel) -> Result<std::convert::Infallible> {
    let args = InitArgs::new(ch, exe);
    inherit(ch, exe)?;
    // SAFETY: argv/envp are NULL-terminated arrays of valid C strings that outlive the call.
    unsafe { libc::fexecve(exe.file.as_raw_fd(), args.argv.as_ptr(), args.envp.as_ptr()) };
    Err(Error::Sys {
        op: "execute the sealed berth copy".into(),
        source: Errno::last(),
    })
}

/// Let the channel and the overlay mount fd survive the exec into berth init; everything
/// else of ours is close-on-exec. The caller closes its copies right after.
fn inherit(ch: &Channel, exe: &SealedExe) -> Result<()> {
    for fd in [Some(ch.fd()), exe.mount.as_ref()].into_iter().flatten() {
        // SAFETY: fcntl on an fd we own.
        Errno::result(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, 0) }).map_err(|e| {
            Error::Sys {
                op: "fcntl".into(),
                source: e,
            }
        })?;
    }
    Ok(())
}

/// The running init process and the parent's end of its channel.
pub struct Spawned {
    pub pid: Pid,
    pub channel: Channel,
    /// Whether `pid` is our own child (so we can waitpid it).
    pub is_child: bool,
    /// Whether init was born in its cgroup (clone3 CLONE_INTO_CGROUP).
    pub in_cgroup: bool,
}

/// Start the container's init process in the namespaces of `plan`.
pub fn spawn_init(
    spec: &Spec,
    plan: &Plan,
    exe: &SealedExe,
    cgroup: Option<&OwnedFd>,
) -> Result<Spawned> {
    let (parent, child) = sync::pair()?;
    if let Some(path) = &plan.join_pid {
        // Changes the pid namespace of our future children only.
        namespaces::join("pid", path)?;
    }
    if !plan.uses_user_ns() {
        let pid =
            match cgroup {
                Some(cg) => {
                    // SAFETY: as for clone_fork below: the child only execs or _exits.
                    let pid = unsafe { berth_cgroups::fork_into(cg.as_fd(), plan.create) }
                        .map_err(|e| Error::Sys {
                            op: "clone the container init".into(),
                            source: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EINVAL)),
                        })?;
                    if pid == 0 {
                        drop(parent);
                        child_main(&child, || exec_init(exe, &child));
                    }
                    Pid::from_raw(pid)
                }
                None => spawn_sealed(exe, &child, plan.create)?,
            };
        return Ok(Spawned {
            pid,
            channel: parent,
            is_child: true,
            in_cgroup: cgroup.is_some(),
        });
    }

    // With a user namespace: the first child joins existing namespaces, creates the user
    // namespace and waits for its id maps, creates the rest, then forks the init (so that
    // init is PID 1 of a pid namespace owned by the new user namespace) and exits.
    let first = clone_fork(0).map_err(|e| Error::Sys {
        op: "fork".into(),
        source: e,
    })?;
    if first == 0 {
        drop(parent);
        child_main(&child, || {
            for (kind, path) in &plan.join {
                namespaces::join(kind, path)?;
            }
            if let Some(path) = &plan.join_user {
                namespaces::join("user", path)?;
            }
            if plan.new_user {
                namespaces::unshare(nix::sched::CloneFlags::CLONE_NEWUSER, "user")?;
                child.send(&ChildMsg::MapIds {
                    pid: nix::unistd::getpid().as_raw(),
                })?;
                match child.recv::<ParentMsg>()? {
                    Some(ParentMsg::IdsMapped) => {}
                    _ => return Err(Error::Init("parent went away while mapping ids".into())),
                }
            }
            // Become root of the user namespace if root is mapped (runc does the same).
            let _ = nix::unistd::setresgid(0.into(), 0.into(), 0.into());
            let _ = nix::unistd::setresuid(0.into(), 0.into(), 0.into());
            if plan.create != 0 {
                namespaces::unshare(plan.create_flags(), "container")?;
            }
            let init = spawn_sealed(exe, &child, 0)?;
            child.send(&ChildMsg::InitPid { pid: init.as_raw() })?;
            // SAFETY: _exit skips the parent's atexit handlers in this forked copy.
            unsafe { libc::_exit(0) }
        });
    }
    drop(child);
    let first = Pid::from_raw(first);
    let result = (|| loop {
        match parent.recv::<ChildMsg>()? {
            Some(ChildMsg::MapIds { pid }) => {
                write_id_maps(spec, pid)?;
                parent.send(&ParentMsg::IdsMapped)?;
            }
            Some(ChildMsg::InitPid { pid }) => return Ok(Pid::from_raw(pid)),
            Some(ChildMsg::Failed(msg)) => return Err(Error::Reported(msg)),
            _ => {
                return Err(Error::Init(
                    "the namespace setup process exited unexpectedly".into(),
                ))
            }
        }
    })();
    if result.is_err() {
        // The first child may be waiting for its id maps: do not wait for it forever.
        let _ = nix::sys::signal::kill(first, nix::sys::signal::Signal::SIGKILL);
    }
    let _ = waitpid(first, None);
    Ok(Spawned {
        pid: result?,
        channel: parent,
        is_child: false,
        in_cgroup: false,
    })
}

fn map_text(map: &[LinuxIdMapping]) -> String {
    map.iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write uid_map and gid_map of `pid`'s new user namespace: directly when we are root (or
/// map only ourselves), through newuidmap/newgidmap otherwise.
fn write_id_maps(spec: &Spec, pid: i32) -> Result<()> {
    let linux = spec.linux().as_ref().expect("validated");
    let uids = linux.uid_mappings().clone().unwrap_or_default();
    let gids = linux.gid_mappings().clone().unwrap_or_default();
    let euid = nix::unistd::geteuid().as_raw();
    let egid = nix::unistd::getegid().as_raw();
    let only_self =
        |m: &[LinuxIdMapping], id: u32| m.len() == 1 && m[0].size() == 1 && m[0].host_id() == id;
    let proc = ProcFs::open(std::path::Path::new("/proc"))?;
    if euid == 0 || (only_self(&uids, euid) && only_self(&gids, egid)) {
        if euid != 0 {
            // Unprivileged writers must give up setgroups before writing gid_map.
            proc.write(&format!("{pid}/setgroups"), "deny")?;
        }
        proc.write(&format!("{pid}/uid_map"), &map_text(&uids))?;
        proc.write(&format!("{pid}/gid_map"), &map_text(&gids))?;
        return Ok(());
    }
    for (helper, map) in [("newuidmap", &uids), ("newgidmap", &gids)] {
        let mut cmd = std::process::Command::new(helper);
        cmd.arg(pid.to_string());
        for m in map.iter() {
            cmd.args([
                m.container_id().to_string(),
                m.host_id().to_string(),
                m.size().to_string(),
            ]);
        }
        let out = cmd.output().map_err(|e| {
            Error::Unsupported(format!(
                "{helper}: {e} (install the uidmap package to map more than your own id)"
            ))
        })?;
        if !out.status.success() {
            return Err(Error::Init(format!(
                "{helper}: {} (check /etc/subuid and /etc/subgid)",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Start the sealed berth copy for `exec`. It joins the container's namespaces itself,
/// after exec: once in the container's mount namespace, the host's dynamic loader and
/// paths are out of reach, so the exec of berth must happen first.
pub fn spawn_exec(exe: &SealedExe) -> Result<Spawned> {
    let (parent, child) = sync::pair()?;
    let pid = spawn_sealed(exe, &child, 0)?;
    Ok(Spawned {
        pid,
        channel: parent,
        is_child: true,
        in_cgroup: false,
    })
}
