//! A sealed in-memory copy of the berth binary. The container's init runs from it, so
//! `/proc/<pid>/exe` of any berth process inside a container points at an immutable
//! memfd instead of the host's berth binary: a container cannot overwrite the host binary
//! through it (CVE-2019-5736).

use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

use crate::error::{Error, IoContext, Result};

const MFD_EXEC: libc::c_uint = 0x10;
const SEALS: libc::c_int =
    libc::F_SEAL_SEAL | libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE;

fn memfd_create(name: &str, flags: libc::c_uint) -> nix::Result<OwnedFd> {
    let c = CString::new(name).expect("no NUL");
    // SAFETY: valid C string; the returned fd is new and owned by us.
    let fd = Errno::result(unsafe { libc::memfd_create(c.as_ptr(), flags) })?;
    // SAFETY: fd was just returned by the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Copy /proc/self/exe into a sealed, executable memfd.
pub fn sealed_self_copy() -> Result<OwnedFd> {
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

    #[test]
    fn copy_is_sealed_against_writes() {
        let fd = sealed_self_copy().unwrap();
        let mut f = File::options()
            .write(true)
            .open(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        // Reopening for write must fail, or writing through it must fail.
        if let Ok(f) = f.as_mut() {
            assert!(f.write_all(b"x").is_err());
        }
        assert!(File::from(fd).set_len(0).is_err());
    }
}
