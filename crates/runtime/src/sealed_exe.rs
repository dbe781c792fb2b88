//! A copy of the berth binary that a container cannot write to. The container's init
//! runs from it, so `/proc/<pid>/exe` of any berth process inside a container never
//! points at the writable host binary (CVE-2019-5736).
//!
//! Preferred: the binary opened through a *detached* read-only overlayfs mount (no upper
//! layer, so two lower layers: berth's own directory on top of an unrelated host directory
//! that only pads the stack). Writes through it fail with EROFS whatever the mount flags,
//! the mount is attached nowhere so nobody can remount it, and no bytes are copied (runc
//! 1.2 protects itself the same way).
//! Fallback (no overlayfs, or no privilege to mount it): a sealed memfd copy.

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;

use crate::error::{Error, IoContext, Result};

const MFD_EXEC: libc::c_uint = 0x10;
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;
const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 2;
const MOUNT_ATTR_NODEV: libc::c_uint = 4;

/// The berth binary opened so that it cannot be written, for fexecve.
pub struct SealedExe {
    pub file: OwnedFd,
    /// The detached overlay mount the file was opened through. Closing its last fd
    /// dissolves the mount, and that waits for an RCU grace period (1-8 ms measured here):
    /// it is handed to the process started from `file`, which closes it while the parent
    /// works on (see [`SEAL_MOUNT_FD_ENV`]).
    pub mount: Option<OwnedFd>,
}

/// Environment variable naming the inherited fd of [`SealedExe::mount`] that a
/// re-executed berth closes first thing.
pub const SEAL_MOUNT_FD_ENV: &str = "_BERTH_SEAL_MOUNT_FD";

/// An fd of the berth binary that cannot be written, for fexecve.
pub fn sealed_self() -> Result<SealedExe> {
    match overlay_self() {
        Ok((file, mount)) => Ok(SealedExe {
            file,
            mount: Some(mount),
        }),
        Err(e) => {
            tracing::debug!("read-only overlay of the berth binary unavailable ({e}); using a sealed memfd copy");
            Ok(SealedExe {
                file: memfd_self()?,
                mount: None,
            })
        }
    }
}

/// In a re-executed berth: the overlay mount fd the parent handed over (see
/// [`SealedExe::mount`]), to close before anything of a container is joined.
pub fn inherited_mount() -> Option<OwnedFd> {
    std::env::var(SEAL_MOUNT_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
        // SAFETY: the parent passed this fd for us to own; nothing else uses it.
        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
}

fn new_fd(r: libc::c_long) -> nix::Result<OwnedFd> {
    // SAFETY: on success the kernel returned a new fd that nothing else owns.
    Errno::result(r).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn cstr(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// Create a detached mount of filesystem `fstype` with string options.
fn detached_mount(fstype: &str, options: &[(&str, String)]) -> nix::Result<OwnedFd> {
    let name = cstr(fstype);
    // SAFETY: fsopen with a valid C string.
    let ctx = new_fd(unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) })?;
    for (key, value) in options {
        let (k, v) = (cstr(key), cstr(value));
        // SAFETY: fsconfig on our fs context with valid C strings.
        Errno::result(unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                ctx.as_raw_fd(),
                FSCONFIG_SET_STRING,
                k.as_ptr(),
                v.as_ptr(),
                0,
            )
        })?;
    }
    // SAFETY: fsconfig CMD_CREATE takes no key or value.
    Errno::result(unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            ctx.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            0usize,
            0usize,
            0,
        )
    })?;
    let attrs = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    // SAFETY: fsmount on a created fs context.
    new_fd(unsafe { libc::syscall(libc::SYS_fsmount, ctx.as_raw_fd(), FSMOUNT_CLOEXEC, attrs) })
}

fn overlay_self() -> std::result::Result<(OwnedFd, OwnedFd), String> {
    let exe = std::fs::read_link("/proc/self/exe").map_err(|e| e.to_string())?;
    let (dir, name) = match (exe.parent(), exe.file_name()) {
        (Some(d), Some(n)) if exe.is_absolute() => (d.to_path_buf(), n.to_os_string()),
        _ => return Err(format!("unusable exe path {}", exe.display())),
    };
    let dir_fd = File::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    // Overlayfs without an upper layer needs two lower layers. The lower one is never read
    // (the binary is found in the top one, and checked below), but layers may not nest,
    // and Linux before 6.x (Debian 12's 6.1) refuses detached mounts (an empty fsmount'ed
    // tmpfs) as layers: take an existing directory unrelated to berth's.
    let pad = ["/etc", "/dev", "/run"]
        .into_iter()
        .find(|p| !dir.starts_with(p) && !Path::new(p).starts_with(&dir))
        .ok_or_else(|| {
            format!(
                "no directory unrelated to {} to pad the overlay",
                dir.display()
            )
        })?;
    let lower = format!("/proc/self/fd/{}:{pad}", dir_fd.as_raw_fd());
    let ovl =
        detached_mount("overlay", &[("lowerdir", lower)]).map_err(|e| format!("overlay: {e}"))?;
    let file = nix::fcntl::openat(
        &ovl,
        name.as_os_str(),
        nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )
    .map_err(|e| format!("open through overlay: {e}"))?;
    // Make sure the overlay shows the very binary we are running (not a newer one installed
    // over it since we started).
    let ours = std::fs::metadata("/proc/self/exe").map_err(|e| e.to_string())?;
    let theirs = File::from(file);
    let meta = theirs.metadata().map_err(|e| e.to_string())?;
    if meta.ino() != ours.ino() || meta.size() != ours.size() || meta.mtime() != ours.mtime() {
        return Err("the berth binary changed since this process started".into());
    }
    Ok((OwnedFd::from(theirs), ovl))
}

fn memfd_create(name: &str, flags: libc::c_uint) -> nix::Result<OwnedFd> {
    let c = cstr(name);
    // SAFETY: valid C string; the returned fd is new and owned by us.
    let fd = Errno::result(unsafe { libc::memfd_create(c.as_ptr(), flags) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copy /proc/self/exe into a sealed, executable memfd.
fn memfd_self() -> Result<OwnedFd> {
    let base = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
    // MFD_EXEC exists since Linux 6.3 (and is required when vm.memfd_noexec=1); older
    // kernels reject the unknown flag with EINVAL, and make memfds executable anyway.
    let fd = match memfd_create("berth", base | MFD_EXEC) {
        Err(Errno::EINVAL) => memfd_create("berth", base),
        r => r,
    }
    .map_err(|e| Error::Sys {
        op: "memfd_create".into(),
        source: e,
    })?;
    let mut src = File::open("/proc/self/exe").at("/proc/self/exe")?;
    let mut dst = File::from(fd);
    std::io::copy(&mut src, &mut dst).at("memfd copy of /proc/self/exe")?;
    // SAFETY: fcntl on an fd we own.
    Errno::result(unsafe { libc::fcntl(dst.as_raw_fd(), libc::F_ADD_SEALS, SEALS) }).map_err(
        |e| Error::Sys {
            op: "seal the berth memfd".into(),
            source: e,
        },
    )?;
    Ok(OwnedFd::from(dst))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn assert_unwritable(fd: OwnedFd) {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        if let Ok(mut f) = File::options().write(true).open(&path) {
            assert!(f.write_all(b"x").is_err(), "wrote through {path}");
        }
        assert!(File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_len(0))
            .is_err());
    }

    #[test]
    fn overlay_copy_is_read_only() {
        // Needs CAP_SYS_ADMIN (tests run as root here).
        let (fd, _mount) = overlay_self().expect("overlay of the test binary");
        assert_unwritable(fd);
    }

    #[test]
    fn memfd_copy_is_sealed_against_writes() {
        assert_unwritable(memfd_self().unwrap());
    }
}
