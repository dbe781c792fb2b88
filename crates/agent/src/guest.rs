//! PID 1 duties in the guest: the pseudo file systems, cgroup v2 with every controller
//! delegated to the root's children, the initramfs's modules, and power-off.

use std::path::Path;

use nix::mount::{mount, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("mount {what} on {target}: {source}")]
    Mount {
        what: &'static str,
        target: &'static str,
        source: nix::Error,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("load module {path}: {source}")]
    Module { path: String, source: nix::Error },
}

/// The list of modules (paths in the initramfs, in load order) that the initramfs builder
/// writes; absent when the kernel needs none.
pub const MODULE_LIST: &str = "/berth/modules";

const NOSUID_NODEV_NOEXEC: MsFlags = MsFlags::MS_NOSUID
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC);

/// (fstype, target, flags, data), in order.
const MOUNTS: &[(&str, &str, MsFlags, &str)] = &[
    ("proc", "/proc", NOSUID_NODEV_NOEXEC, ""),
    ("sysfs", "/sys", NOSUID_NODEV_NOEXEC, ""),
    ("devtmpfs", "/dev", MsFlags::MS_NOSUID, "mode=0755"),
    (
        "devpts",
        "/dev/pts",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NOEXEC),
        "gid=5,mode=0620,ptmxmode=0666",
    ),
    ("tmpfs", "/dev/shm", NOSUID_NODEV_NOEXEC, "mode=1777"),
    (
        "tmpfs",
        "/run",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        "mode=0755",
    ),
    (
        "tmpfs",
        "/tmp",
        MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV),
        "mode=1777",
    ),
    (
        "cgroup2",
        "/sys/fs/cgroup",
        NOSUID_NODEV_NOEXEC,
        "nsdelegate",
    ),
];

fn io(path: &str) -> impl FnOnce(std::io::Error) -> GuestError + '_ {
    move |source| GuestError::Io {
        path: path.into(),
        source,
    }
}

/// Mount what a container host needs. A target that is already mounted (a devtmpfs the
/// kernel mounted itself) is left as it is.
pub fn mount_all() -> Result<(), GuestError> {
    for &(fstype, target, flags, data) in MOUNTS {
        std::fs::create_dir_all(target).map_err(io(target))?;
        match mount(Some(fstype), target, Some(fstype), flags, Some(data)) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => {}
            Err(source) => {
                return Err(GuestError::Mount {
                    what: fstype,
                    target,
                    source,
                })
            }
        }
    }
    // Every controller for the containers' cgroups (the agent stays in the root, which
    // the no-internal-processes rule exempts).
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .map_err(io("/sys/fs/cgroup/cgroup.controllers"))?;
    let enable: Vec<String> = controllers
        .split_whitespace()
        .map(|c| format!("+{c}"))
        .collect();
    if !enable.is_empty() {
        std::fs::write("/sys/fs/cgroup/cgroup.subtree_control", enable.join(" "))
            .map_err(io("/sys/fs/cgroup/cgroup.subtree_control"))?;
    }
    Ok(())
}

/// Load the modules [`MODULE_LIST`] names, in order (one already loaded is fine).
pub fn load_modules() -> Result<usize, GuestError> {
    let Ok(list) = std::fs::read_to_string(MODULE_LIST) else {
        return Ok(0);
    };
    let mut loaded = 0;
    for path in list.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let file = std::fs::File::open(path).map_err(io(path))?;
        match nix::kmod::finit_module(&file, c"", nix::kmod::ModuleInitFlags::empty()) {
            Ok(()) => loaded += 1,
            Err(nix::errno::Errno::EEXIST) => {}
            Err(source) => {
                return Err(GuestError::Module {
                    path: path.into(),
                    source,
                })
            }
        }
    }
    Ok(loaded)
}

/// Bring up the loopback interface (containers with a network namespace of their own do
/// this themselves; the agent's namespace is the VM's).
pub fn loopback_up() {
    // busybox's applet, wherever the initramfs linked it (PID 1 has no PATH).
    let Some(ip) = ["/sbin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists())
    else {
        tracing::warn!("no ip command in the initramfs: lo stays down");
        return;
    };
    let up = std::process::Command::new(ip)
        .args(["link", "set", "lo", "up"])
        .status();
    if !up.is_ok_and(|s| s.success()) {
        tracing::warn!("could not bring lo up");
    }
}

/// Flush the file systems and power the VM off (ACPI S5). Never returns.
pub fn power_off() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_POWER_OFF);
    // reboot(2) returns only on failure; PID 1 must not exit (the kernel would panic).
    loop {
        std::thread::park();
    }
}
