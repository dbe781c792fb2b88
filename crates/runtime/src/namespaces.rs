//! Which namespaces a container creates and which it joins, and the syscalls for both.
//!
//! Order matters and is fixed here: existing namespaces are joined first (while the process
//! still has the host's privileges), then a new user namespace is created (so that every
//! namespace created after it is owned by it), then the others. The pid namespace is special:
//! unshare/setns only change the namespace of *children*, so the process that becomes the
//! container's PID 1 is forked after it. The cgroup namespace is created once the process is
//! in its cgroup, and the time namespace once its clock offsets are written.

use std::os::fd::AsFd;
use std::path::PathBuf;

use nix::fcntl::OFlag;
use nix::sched::CloneFlags;
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// CLONE_NEWTIME (not in every libc/nix version).
pub const CLONE_NEWTIME: i32 = 0x80;

pub fn clone_flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(CLONE_NEWTIME),
    }
}

/// The name of a namespace type as in /proc/PID/ns.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Plan {
    /// Namespaces to create (flags), excluding user, cgroup and time which have their own steps.
    pub create: i32,
    pub new_user: bool,
    pub new_cgroup: bool,
    pub new_time: bool,
    /// Existing namespaces to join, in order, excluding user and pid.
    pub join: Vec<(String, PathBuf)>,
    pub join_user: Option<PathBuf>,
    pub join_pid: Option<PathBuf>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Plan {
        let mut plan = Plan::default();
        let namespaces = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().clone())
            .unwrap_or_default();
        for ns in namespaces {
            let t = ns.typ();
            match (t, ns.path()) {
                (LinuxNamespaceType::User, None) => plan.new_user = true,
                (LinuxNamespaceType::User, Some(p)) => plan.join_user = Some(p.clone()),
                (LinuxNamespaceType::Pid, Some(p)) => plan.join_pid = Some(p.clone()),
                (LinuxNamespaceType::Cgroup, None) => plan.new_cgroup = true,
                (LinuxNamespaceType::Time, None) => plan.new_time = true,
                (_, None) => plan.create |= clone_flag(t).bits(),
                (_, Some(p)) => plan.join.push((proc_name(t).to_string(), p.clone())),
            }
        }
        plan
    }

    pub fn create_flags(&self) -> CloneFlags {
        CloneFlags::from_bits_retain(self.create)
    }

    /// Whether the container has a mount namespace of its own (new or joined). Without
    /// one every mount would land in the caller's namespace: berth then only chroots.
    pub fn has_mount_ns(&self) -> bool {
        self.create & libc::CLONE_NEWNS != 0 || self.join.iter().any(|(kind, _)| kind == "mnt")
    }

    /// Whether the user-namespace path (two forks) is needed.
    pub fn uses_user_ns(&self) -> bool {
        self.new_user || self.join_user.is_some()
    }
}

/// The CLONE_NEW* flag of a namespace named as in /proc/PID/ns.
pub fn flag_of(kind: &str) -> CloneFlags {
    match kind {
        "mnt" => CloneFlags::CLONE_NEWNS,
        "cgroup" => CloneFlags::CLONE_NEWCGROUP,
        "uts" => CloneFlags::CLONE_NEWUTS,
        "ipc" => CloneFlags::CLONE_NEWIPC,
        "user" => CloneFlags::CLONE_NEWUSER,
        "pid" => CloneFlags::CLONE_NEWPID,
        "net" => CloneFlags::CLONE_NEWNET,
        "time" | "time_for_children" => CloneFlags::from_bits_retain(CLONE_NEWTIME),
        _ => CloneFlags::empty(),
    }
}

/// setns(2) into the namespace at `path`.
/// The kernel checks that the file really is a namespace of `kind` (EINVAL otherwise),
/// so a path to a namespace of another type is refused rather than joined.
pub fn join(kind: &str, path: &std::path::Path) -> Result<()> {
    let fd = nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| crate::fs::io_err(path, e))?;
    nix::sched::setns(fd.as_fd(), flag_of(kind)).map_err(|e| Error::Sys {
        op: format!("join {kind} namespace {}", path.display()),
        source: e,
    })
}

pub fn unshare(flags: CloneFlags, what: &str) -> Result<()> {
    nix::sched::unshare(flags).map_err(|e| Error::Sys {
        op: format!("create {what} namespace"),
        source: e,
    })
}
