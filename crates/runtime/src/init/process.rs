//! The last steps of init: process attributes (rlimits, oom score, personality, I/O
//! priority, scheduler), waiting for `start`, and becoming the user process (user and
//! groups, capabilities, no_new_privs, seccomp, closing fds, execve).

use std::collections::HashSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use caps::{CapSet, Capability};
use oci_spec::runtime::{LinuxCapabilities, PosixRlimit, Process};
use serde::{Deserialize, Serialize};

use super::InitConfig;
use crate::error::{Error, Result};
use crate::fs::ProcFs;
use crate::state::START_SOCKET;

/// What `start` sends to the waiting init.
#[derive(Debug, Serialize, Deserialize)]
pub struct StartRequest {
    pub state: serde_json::Value,
}

/// Bind the socket `start` connects to, in the container's state directory.
///
/// The parent binds it (init may run as a mapped uid that cannot enter the root-only state
/// directory) and init inherits the listening fd.
pub fn listen_for_start(state_dir: &Path) -> Result<UnixListener> {
    // A state path can be longer than sun_path allows; bind through a short fd path.
    let dir = std::fs::File::open(state_dir).map_err(|e| Error::Io {
        path: state_dir.into(),
        source: e,
    })?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{START_SOCKET}", dir.as_raw_fd()));
    UnixListener::bind(path).map_err(|e| Error::Io {
        path: state_dir.join(START_SOCKET),
        source: e,
    })
}

/// Everything needed to turn this process into the user process.
pub struct ExecProcess {
    pub process: Process,
    pub program: PathBuf,
    pub console: Option<OwnedFd>,
    pub preserve_fds: u32,
    pub seccomp: Option<crate::seccomp::Compiled>,
}

/// Steps that do not depend on `start`: applied now so their errors surface at create.
pub fn prepare(cfg: &InitConfig, console: Option<OwnedFd>) -> Result<ExecProcess> {
    if let Some(p) = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref())
    {
        set_personality(p)?;
    }
    if let Some(p) = cfg
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.memory_policy().as_ref())
    {
        crate::mempolicy::MemoryPolicy::parse(p)?.apply()?;
    }
    let mut process = cfg.spec.process().clone().expect("validated");
    set_home(&mut process);
    apply_attributes(&process)?;
    let program = find_program(&process)?;
    let seccomp = cfg.seccomp.clone();
    Ok(ExecProcess {
        process,
        program,
        console,
        preserve_fds: cfg.preserve_fds,
        seccomp,
    })
}

/// `linux.personality`: the execution domain (LINUX or LINUX32, e.g. for `uname -m` of
/// 32-bit userlands). Flags are not defined by the spec yet and are refused.
fn set_personality(p: &oci_spec::runtime::LinuxPersonality) -> Result<()> {
    if p.flags().as_ref().is_some_and(|f| !f.is_empty()) {
        return Err(Error::Config(
            "field linux.personality.flags: no flags are supported".into(),
        ));
    }
    let domain: libc::c_ulong = match p.domain() {
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux => 0x0000,
        oci_spec::runtime::LinuxPersonalityDomain::PerLinux32 => 0x0008,
    };
    // SAFETY: personality(2) only changes this process's execution domain.
    let r = unsafe { libc::personality(domain) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(|e| Error::Sys {
            op: "field linux.personality: personality".into(),
            source: e,
        })
}

/// oom_score_adj, through a checked procfs handle.
pub fn set_oom_score_adj(process: &Process, proc: &ProcFs) -> Result<()> {
    match process.oom_score_adj() {
        Some(adj) => proc.write("self/oom_score_adj", &adj.to_string()),
        None => Ok(()),
    }
}

/// Close every fd this process holds except stdio, the `--preserve-fds` range and `keep`:
/// a container waiting for `start` must not hold anything of the host's (runc's waiting
/// init holds only its stdio and sync fds).
pub fn close_stray_fds(preserve: u32, keep: &[i32]) -> Result<()> {
    let fds: Vec<i32> = std::fs::read_dir("/proc/self/fd")
        .map_err(|e| Error::Io {
            path: "/proc/self/fd".into(),
            source: e,
        })?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    for fd in fds {
        if fd >= 3 + preserve as i32 && !keep.contains(&fd) {
            // SAFETY: closing an fd nothing in this process uses (the read_dir fd is
            // already closed; a stale number just gets EBADF).
            unsafe { libc::close(fd) };
        }
    }
    Ok(())
}

/// rlimits, I/O priority and scheduler.
pub fn apply_attributes(process: &Process) -> Result<()> {
    for rl in process.rlimits().iter().flatten() {
        set_rlimit(rl)?;
    }
    if let Some(sched) = process.scheduler() {
        set_scheduler(sched)?;
    }
    if let Some(prio) = process.io_priority() {
        use oci_spec::runtime::IOPriorityClass::*;
        let class = match prio.class() {
            IoprioClassRt => 1,
            IoprioClassBe => 2,
            IoprioClassIdle => 3,
        };
        let value = (class << 13) | (prio.priority() & 0x1fff);
        // SAFETY: plain syscall with integer arguments (IOPRIO_WHO_PROCESS, self).
        let r = unsafe { libc::syscall(libc::SYS_ioprio_set, 1, 0, value) };
        nix::errno::Errno::result(r).map_err(|e| Error::Sys {
            op: "field process.ioPriority: ioprio_set".into(),
            source: e,
        })?;
    }
    Ok(())
}

fn set_rlimit(rl: &PosixRlimit) -> Result<()> {
    let resource = rlimit_resource(&rl.typ().to_string()).ok_or_else(|| {
        Error::Config(format!("field process.rlimits: unknown type {}", rl.typ()))
    })?;
    let lim = libc::rlimit {
        rlim_cur: rl.soft(),
        rlim_max: rl.hard(),
    };
    // SAFETY: setrlimit with a valid rlimit struct.
    let r = unsafe { libc::setrlimit(resource, &lim) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(|e| Error::Sys {
            op: format!(
                "field process.rlimits: set {} to {}/{}",
                rl.typ(),
                rl.soft(),
                rl.hard()
            ),
            source: e,
        })
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        _ => return None,
    })
}

fn set_scheduler(s: &oci_spec::runtime::Scheduler) -> Result<()> {
    use oci_spec::runtime::LinuxSchedulerPolicy::*;
    let policy = match s.policy() {
        SchedOther => 0,
        SchedFifo => 1,
        SchedRr => 2,
        SchedBatch => 3,
        SchedIso => 4,
        SchedIdle => 5,
        SchedDeadline => 6,
    };
    #[repr(C)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }
    let attr = SchedAttr {
        size: std::mem::size_of::<SchedAttr>() as u32,
        policy,
        flags: 0,
        nice: s.nice().unwrap_or(0),
        priority: s.priority().unwrap_or(0) as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    };
    // SAFETY: sched_setattr(2) on ourselves with a correctly sized struct.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(|e| Error::Sys {
            op: "field process.scheduler: sched_setattr".into(),
            source: e,
        })
}

/// runc sets HOME from the container's /etc/passwd when the process env has none ("/" for
/// a uid that is not listed). Called inside the container root.
pub fn set_home(process: &mut Process) {
    let mut env = process.env().clone().unwrap_or_default();
    if env.iter().any(|e| e.starts_with("HOME=")) {
        return;
    }
    let uid = process.user().uid().to_string();
    let home = std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| {
            text.lines().find_map(|l| {
                let f: Vec<&str> = l.split(':').collect();
                (f.len() >= 6 && f[2] == uid).then(|| f[5].to_string())
            })
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "/".into());
    env.push(format!("HOME={home}"));
    process.set_env(Some(env));
}

fn env_path(process: &Process) -> String {
    process
        .env()
        .iter()
        .flatten()
        .find_map(|e| e.strip_prefix("PATH=").map(str::to_string))
        .unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into())
}

/// An io::Error's text without Rust's " (os error N)" suffix.
fn io_text(e: &std::io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_lowercase()
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Find args[0] the way execvp would, inside the container, so a missing program is
/// reported at create time.
pub fn find_program(process: &Process) -> Result<PathBuf> {
    let arg0 = &process.args().as_ref().expect("validated")[0];
    // Clients classify the failure by runc's wording ("no such file or directory" and
    // "executable file not found" mean 127, "permission denied" 126), so keep it.
    if arg0.contains('/') {
        let p = if Path::new(arg0).is_absolute() {
            PathBuf::from(arg0)
        } else {
            process.cwd().join(arg0)
        };
        return match std::fs::metadata(&p) {
            Err(e) => Err(Error::Reported(format!(
                "exec: {arg0:?}: stat {}: {}",
                p.display(),
                io_text(&e)
            ))),
            Ok(m) if !m.is_file() || m.permissions().mode() & 0o111 == 0 => Err(Error::Reported(
                format!("exec: {arg0:?}: permission denied"),
            )),
            Ok(_) => Ok(p),
        };
    }
    env_path(process)
        .split(':')
        .map(|dir| Path::new(dir).join(arg0))
        .find(|p| is_executable(p))
        .ok_or_else(|| {
            Error::Reported(format!(
                "exec: {arg0:?}: executable file not found in $PATH"
            ))
        })
}

/// Block until `start` connects, then become the user process. Failures after this point
/// are reported on the start connection, so `berth start` prints them.
pub fn wait_for_start_and_exec(
    listener: UnixListener,
    exec: ExecProcess,
    cfg: &InitConfig,
) -> Result<std::convert::Infallible> {
    let mut conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::Io {
                    path: START_SOCKET.into(),
                    source: e,
                })
            }
        }
    };
    drop(listener);
    let result = (|| {
        let req: StartRequest = read_request(&mut conn)?;
        if let Some(hooks) = cfg
            .spec
            .hooks()
            .as_ref()
            .and_then(|h| h.start_container().clone())
        {
            crate::hooks::run("startContainer", &hooks, &req.state)?;
        }
        become_process(&exec, &req.state)
    })();
    let e = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    let _ = conn.write_all(e.to_string().as_bytes());
    std::process::exit(127)
}

fn read_request(conn: &mut UnixStream) -> Result<StartRequest> {
    let mut len = [0u8; 4];
    conn.read_exact(&mut len).map_err(|e| Error::Io {
        path: START_SOCKET.into(),
        source: e,
    })?;
    let mut buf = vec![0u8; u32::from_le_bytes(len).min(16 << 20) as usize];
    conn.read_exact(&mut buf).map_err(|e| Error::Io {
        path: START_SOCKET.into(),
        source: e,
    })?;
    serde_json::from_slice(&buf).map_err(|e| Error::Init(format!("bad start request: {e}")))
}

/// Connect to a waiting init and ask it to start; returns once the user process runs
/// (the connection closes on exec) or with init's error.
pub fn request_start(state_dir: &Path, state: serde_json::Value) -> Result<()> {
    let dir = std::fs::File::open(state_dir).map_err(|e| Error::Io {
        path: state_dir.into(),
        source: e,
    })?;
    let path = PathBuf::from(format!("/proc/self/fd/{}/{START_SOCKET}", dir.as_raw_fd()));
    let mut conn = UnixStream::connect(&path).map_err(|e| Error::Io {
        path: state_dir.join(START_SOCKET),
        source: e,
    })?;
    let body = serde_json::to_vec(&StartRequest { state }).expect("serializes");
    conn.write_all(&(body.len() as u32).to_le_bytes())
        .and_then(|_| conn.write_all(&body))
        .map_err(|e| Error::Io {
            path: state_dir.join(START_SOCKET),
            source: e,
        })?;
    let mut reply = String::new();
    let _ = conn.read_to_string(&mut reply);
    if reply.is_empty() {
        Ok(())
    } else {
        Err(Error::Reported(reply))
    }
}

fn to_caps(set: &Option<oci_spec::runtime::Capabilities>) -> HashSet<Capability> {
    set.iter()
        .flatten()
        .filter_map(|c| format!("CAP_{c}").parse::<Capability>().ok())
        .collect()
}

fn capset_err(what: &str) -> impl FnOnce(caps::errors::CapsError) -> Error + '_ {
    move |e| Error::Init(format!("field process.capabilities.{what}: {e}"))
}

/// Turn this (root, fully privileged) process into the configured user process and exec.
///
/// The seccomp filter goes in last, so that a profile only has to allow what the user
/// process needs: everything execve needs is built first (nothing allocates afterwards),
/// the cwd is checked, fds are closed and signals reset before it. With no_new_privs the
/// only system call after the filter is execve. Without no_new_privs the kernel wants
/// CAP_SYS_ADMIN to install a filter, so it is kept until then and dropped by one capset
/// right after, then execve (runc installs that filter before switching the user, which
/// takes more system calls under it).
pub fn become_process(
    exec: &ExecProcess,
    state: &serde_json::Value,
) -> Result<std::convert::Infallible> {
    let p = &exec.process;
    let nnp = p.no_new_privileges().unwrap_or(false);
    if let Some(console) = &exec.console {
        nix::unistd::setsid().map_err(|e| Error::Sys {
            op: "setsid".into(),
            source: e,
        })?;
        // SAFETY: TIOCSCTTY on our pty slave.
        unsafe { libc::ioctl(console.as_raw_fd(), libc::TIOCSCTTY, 0) };
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard fds, which this process owns.
            let r = unsafe { libc::dup2(console.as_raw_fd(), fd) };
            nix::errno::Errno::result(r).map_err(|e| Error::Sys {
                op: "dup2 console".into(),
                source: e,
            })?;
        }
    }
    let argv = ExecArgs::new(&exec.program, p)?;
    // As root first (runc's order: a cwd only root can reach still works); again as the
    // user below if that failed.
    let cwd_done = change_dir(p.cwd()).is_ok();
    let caps = p.capabilities().clone().unwrap_or_else(empty_caps);
    let bounding = to_caps(caps.bounding());
    for cap in caps::runtime::thread_all_supported() {
        if !bounding.contains(&cap) {
            caps::drop(None, CapSet::Bounding, cap).map_err(capset_err("bounding"))?;
        }
    }
    set_user(p)?;
    if !cwd_done {
        change_dir(p.cwd())?;
    }
    let effective = to_caps(caps.effective());
    let permitted = to_caps(caps.permitted());
    let final_sets = CapSets {
        effective: mask_of(&effective),
        permitted: mask_of(&permitted),
        inheritable: mask_of(&to_caps(caps.inheritable())),
    };
    let filter_needs_admin = exec.seccomp.is_some() && !nnp;
    let (mut install_effective, mut install_permitted) = (effective, permitted);
    if filter_needs_admin {
        install_effective.insert(Capability::CAP_SYS_ADMIN);
        install_permitted.insert(Capability::CAP_SYS_ADMIN);
    }
    caps::set(None, CapSet::Inheritable, &to_caps(caps.inheritable()))
        .map_err(capset_err("inheritable"))?;
    // Effective first: every capset call needs effective to stay within permitted.
    caps::set(None, CapSet::Effective, &install_effective).map_err(capset_err("effective"))?;
    caps::set(None, CapSet::Permitted, &install_permitted).map_err(capset_err("permitted"))?;
    // Raising an ambient capability needs it in permitted and inheritable; runc only warns
    // when it cannot (its own default spec asks for ambient caps without inheritable ones).
    for cap in to_caps(caps.ambient()) {
        if let Err(e) = caps::raise(None, CapSet::Ambient, cap) {
            tracing::warn!("cannot raise ambient capability {cap}: {e}");
        }
    }
    close_inherited_fds(exec.preserve_fds)?;
    reset_signals();
    if nnp {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
        nix::errno::Errno::result(r).map_err(|e| Error::Sys {
            op: "set no_new_privs".into(),
            source: e,
        })?;
    }
    if let Some(f) = &exec.seccomp {
        crate::seccomp::install(f, state)?;
        if filter_needs_admin {
            final_sets.apply()?;
        }
    }
    argv.exec()
}

/// Capability sets as the kernel's bit masks, applied with one capset(2) that does not
/// allocate (it runs under the seccomp filter).
struct CapSets {
    effective: u64,
    permitted: u64,
    inheritable: u64,
}

fn mask_of(set: &HashSet<Capability>) -> u64 {
    set.iter().fold(0, |m, c| m | c.bitmask())
}

impl CapSets {
    fn apply(&self) -> Result<()> {
        // struct __user_cap_header_struct and __user_cap_data_struct of <linux/capability.h>.
        #[repr(C)]
        struct Header {
            version: u32,
            pid: i32,
        }
        #[repr(C)]
        struct Data {
            effective: u32,
            permitted: u32,
            inheritable: u32,
        }
        // _LINUX_CAPABILITY_VERSION_3: two 32-bit words per set.
        let mut header = Header {
            version: 0x2008_0522,
            pid: 0,
        };
        let word = |m: u64, i: u32| (m >> (32 * i)) as u32;
        let data = [0u32, 1].map(|i| Data {
            effective: word(self.effective, i),
            permitted: word(self.permitted, i),
            inheritable: word(self.inheritable, i),
        });
        // SAFETY: capset(2) reads the header and two data structs, which outlive the call.
        let r = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
        nix::errno::Errno::result(r)
            .map(drop)
            .map_err(|e| Error::Sys {
                op: "field process.capabilities: capset".into(),
                source: e,
            })
    }
}

/// execve's arguments, built before the seccomp filter is installed: the exec itself
/// must be the only thing left to do, without allocating.
struct ExecArgs {
    path: CString,
    _strings: Vec<CString>,
    argv: Vec<*const libc::c_char>,
    envp: Vec<*const libc::c_char>,
}

impl ExecArgs {
    fn new(program: &Path, p: &Process) -> Result<ExecArgs> {
        let cstr = |s: &[u8]| {
            CString::new(s).map_err(|_| Error::Config("NUL byte in process args or env".into()))
        };
        let path = cstr(program.as_os_str().as_bytes())?;
        let args: Vec<CString> = p
            .args()
            .iter()
            .flatten()
            .map(|a| cstr(a.as_bytes()))
            .collect::<Result<_>>()?;
        let env: Vec<CString> = p
            .env()
            .iter()
            .flatten()
            .map(|e| cstr(e.as_bytes()))
            .collect::<Result<_>>()?;
        let nul_terminated = |v: &[CString]| -> Vec<*const libc::c_char> {
            v.iter()
                .map(|s| s.as_ptr())
                .chain([std::ptr::null()])
                .collect()
        };
        let argv = nul_terminated(&args);
        let envp = nul_terminated(&env);
        Ok(ExecArgs {
            path,
            _strings: args.into_iter().chain(env).collect(),
            argv,
            envp,
        })
    }

    fn exec(&self) -> Result<std::convert::Infallible> {
        // SAFETY: path, argv and envp are NUL-terminated arrays of C strings owned by self.
        unsafe { libc::execve(self.path.as_ptr(), self.argv.as_ptr(), self.envp.as_ptr()) };
        Err(Error::Sys {
            op: format!("exec {}", self.path.to_string_lossy()),
            source: nix::errno::Errno::last(),
        })
    }
}

fn empty_caps() -> LinuxCapabilities {
    serde_json::from_str("{}").expect("empty capabilities parse")
}

/// Groups, gid and uid, keeping capabilities across the uid change so the configured sets
/// can then be applied.
fn set_user(p: &Process) -> Result<()> {
    let user = p.user();
    let uid = user.uid();
    let gid = user.gid();
    let groups: Vec<nix::unistd::Gid> = user
        .additional_gids()
        .iter()
        .flatten()
        .map(|g| (*g).into())
        .collect();
    // In a user namespace whose setgroups is "deny", setgroups is refused; skip it when no
    // additional groups are asked for (as runc does).
    let setgroups_denied = std::fs::read_to_string("/proc/self/setgroups")
        .map(|s| s.trim() == "deny")
        .unwrap_or(false);
    if !(setgroups_denied && groups.is_empty()) {
        nix::unistd::setgroups(&groups).map_err(|e| Error::Sys {
            op: "field process.user.additionalGids: setgroups".into(),
            source: e,
        })?;
    }
    caps::securebits::set_keepcaps(true).map_err(|e| Error::Init(format!("keepcaps: {e}")))?;
    nix::unistd::setresgid(gid.into(), gid.into(), gid.into()).map_err(|e| Error::Sys {
        op: format!("field process.user.gid: setresgid {gid}"),
        source: e,
    })?;
    nix::unistd::setresuid(uid.into(), uid.into(), uid.into()).map_err(|e| Error::Sys {
        op: format!("field process.user.uid: setresuid {uid}"),
        source: e,
    })?;
    caps::securebits::set_keepcaps(false).map_err(|e| Error::Init(format!("keepcaps: {e}")))?;
    if let Some(mask) = user.umask() {
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(
            mask as libc::mode_t,
        ));
    }
    Ok(())
}

/// chdir to the configured cwd and make sure we really are inside the container: a cwd
/// reached through a leaked host fd (e.g. /proc/self/fd/N, CVE-2024-21626) shows as
/// "(unreachable)" from getcwd.
fn change_dir(cwd: &Path) -> Result<()> {
    nix::unistd::chdir(cwd).map_err(|e| Error::Sys {
        op: format!("field process.cwd: chdir {}", cwd.display()),
        source: e,
    })?;
    let now = nix::unistd::getcwd().map_err(|e| Error::Sys {
        op: "getcwd".into(),
        source: e,
    })?;
    if !now.is_absolute() || now.as_os_str().as_bytes().starts_with(b"(unreachable)") {
        return Err(Error::Init(format!(
            "field process.cwd: {} is outside the container",
            cwd.display()
        )));
    }
    Ok(())
}

/// Mark every fd from 3 + preserve_fds upward close-on-exec, so nothing of berth's (or
/// the host's) reaches the container (CVE-2024-21626).
fn close_inherited_fds(preserve: u32) -> Result<()> {
    let first = 3 + preserve;
    // SAFETY: close_range only changes fd flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(|e| Error::Sys {
            op: "close_range".into(),
            source: e,
        })
}

/// Signal dispositions and mask are inherited across execve; Rust ignores SIGPIPE.
fn reset_signals() {
    use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
    for sig in Signal::iterator() {
        if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
            // SAFETY: setting the default disposition installs no Rust handler.
            let _ = unsafe { signal(sig, SigHandler::SigDfl) };
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}
