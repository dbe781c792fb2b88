//! Linux security modules. berth applies AppArmor profiles and SELinux labels only where
//! the host has the module; asking for one elsewhere is an error, not a silent no-op.
//!
//! AppArmor: `process.apparmorProfile` becomes the process's confinement at its execve
//! (the profile must be loaded). The request is written as `exec <profile>` to the task's
//! own attr file through a checked procfs handle on the host's /proc, opened before
//! anything of the container's is joined: init writes it before pivot_root, `exec` before
//! setns (the request survives fork). A fake /proc, or a bind mount over /proc/self/attr
//! (CVE-2019-16884), therefore cannot divert it; a handle that is not procfs, or a path
//! that crosses a mount, is refused rather than written through.

use std::io::ErrorKind;
use std::path::Path;

use oci_spec::runtime::Process;

use crate::error::{Error, Result};
use crate::fs::ProcFs;

/// Whether AppArmor is enabled on this host.
pub fn apparmor_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|s| s.trim() == "Y")
        && Path::new("/sys/kernel/security/apparmor").exists()
}

/// Whether SELinux is enabled on this host.
pub fn selinux_enabled() -> bool {
    Path::new("/sys/fs/selinux/enforce").exists()
}

/// The profile `process` asks for, if any.
pub fn apparmor_profile(process: &Process) -> Option<&str> {
    process
        .apparmor_profile()
        .as_deref()
        .filter(|p| !p.is_empty())
}

/// Asks AppArmor to confine this process with its profile from the next execve on.
/// Uses the per-LSM `attr/apparmor/exec` (Linux 5.1+) and falls back to `attr/exec`.
pub fn apply_apparmor(process: &Process, proc: &ProcFs) -> Result<()> {
    let Some(profile) = apparmor_profile(process) else {
        return Ok(());
    };
    // Whether the host has AppArmor was checked at create/exec (config validation).
    let request = format!("exec {profile}");
    let field = "field process.apparmorProfile";
    let opened = match proc.open_write("self/attr/apparmor/exec") {
        Err(Error::Io { source, .. }) if source.kind() == ErrorKind::NotFound => proc
            .open_write("self/attr/exec")
            .map(|f| (f, "/proc/self/attr/exec")),
        other => other.map(|f| (f, "/proc/self/attr/apparmor/exec")),
    };
    let (mut file, path) = opened.map_err(|e| match e {
        Error::Io { path, source } if source.raw_os_error() == Some(libc::EXDEV) => {
            Error::Config(format!(
                "{field}: {} is covered by a mount, not procfs's own file (CVE-2019-16884); refusing to start unconfined",
                path.display()
            ))
        }
        Error::Io { path, source } => {
            Error::Config(format!("{field}: opening {} failed: {source}", path.display()))
        }
        Error::Init(why) => Error::Config(format!("{field}: {why}; refusing to start unconfined")),
        other => other,
    })?;
    std::io::Write::write_all(&mut file, request.as_bytes()).map_err(|source| {
        let hint = if source.kind() == ErrorKind::NotFound {
            format!(" (profile {profile:?} is not loaded; see aa-status)")
        } else {
            String::new()
        };
        Error::Config(format!(
            "{field}: writing {request:?} to {path} failed: {source}{hint}"
        ))
    })
}
