//! Path resolution that cannot escape a root, and a checked handle on procfs.
//!
//! Every path taken from a bundle or image is resolved with openat2(2) and
//! `RESOLVE_IN_ROOT`: `..` and absolute symlinks are clamped to the rootfs, so a hostile
//! rootfs cannot make berth touch a host path. Operations then act on the resolved fd
//! (through `/proc/self/fd/N` for mount(2)), so a symlink swapped in after resolution
//! cannot redirect them either (CVE-2021-30465).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::error::{Error, Result};

/// openat2(2) with the given resolve flags.
pub fn openat2(
    dir: BorrowedFd<'_>,
    path: &Path,
    flags: OFlag,
    mode: u32,
    resolve: u64,
) -> nix::Result<OwnedFd> {
    let c = CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL)?;
    // SAFETY: open_how is plain data; all-zero is a valid value.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | OFlag::O_CLOEXEC).bits() as u64;
    how.mode = mode as u64;
    how.resolve = resolve;
    loop {
        // SAFETY: `c` is a valid C string and `how` a properly sized open_how that outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dir.as_raw_fd(),
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        match Errno::result(fd) {
            // SAFETY: the kernel returned a new fd that nothing else owns.
            Ok(fd) => return Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
            Err(Errno::EAGAIN) | Err(Errno::EINTR) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The `/proc/self/fd/N` path that names an open fd (for syscalls that take paths).
pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// A directory that paths are resolved inside of, never outside.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

const IN_ROOT: u64 = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;

impl Root {
    pub fn open(path: &Path) -> Result<Root> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(path, e))?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    fn display(&self, inner: &Path) -> PathBuf {
        self.path.join(relative(inner))
    }

    /// Open `inner` (interpreted inside the root) with `flags`.
    pub fn open_in(&self, inner: &Path, flags: OFlag) -> Result<OwnedFd> {
        openat2(self.fd(), &relative(inner), flags, 0, IN_ROOT)
            .map_err(|e| io_err(&self.display(inner), e))
    }

    /// Resolve `inner` to an `O_PATH` fd, creating missing directories (and, when `file`
    /// is set, an empty regular file as the last component), all inside the root.
    pub fn create_path(&self, inner: &Path, file: bool) -> Result<OwnedFd> {
        self.create_path_depth(inner, file, 0)
    }

    fn create_path_depth(&self, inner: &Path, file: bool, depth: u32) -> Result<OwnedFd> {
        let rel = relative(inner);
        match openat2(self.fd(), &rel, OFlag::O_PATH, 0, IN_ROOT) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(io_err(&self.display(inner), e)),
        }
        let mut done = PathBuf::new();
        let comps: Vec<_> = rel.components().collect();
        for (i, comp) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let name = comp.as_os_str();
            let next = done.join(name);
            match openat2(self.fd(), &next, OFlag::O_PATH, 0, IN_ROOT) {
                Ok(fd) if last => return Ok(fd),
                Ok(_) => {}
                Err(Errno::ENOENT) => {
                    let parent = openat2(
                        self.fd(),
                        &relative(&done),
                        OFlag::O_PATH | OFlag::O_DIRECTORY,
                        0,
                        IN_ROOT,
                    )
                    .map_err(|e| io_err(&self.display(&done), e))?;
                    let created = if last && file {
                        nix::fcntl::openat(
                            &parent,
                            name,
                            OFlag::O_CREAT
                                | OFlag::O_EXCL
                                | OFlag::O_WRONLY
                                | OFlag::O_NOFOLLOW
                                | OFlag::O_CLOEXEC,
                            Mode::from_bits_truncate(0o644),
                        )
                        .map(drop)
                    } else {
                        nix::sys::stat::mkdirat(&parent, name, Mode::from_bits_truncate(0o755))
                    };
                    match created {
                        Ok(()) => {}
                        Err(Errno::EEXIST) => {
                            // A symlink whose target does not exist yet: create the target,
                            // still inside the root, and continue from there.
                            if let Ok(target) = nix::fcntl::readlinkat(&parent, name) {
                                let target = PathBuf::from(target);
                                let base = if target.is_absolute() {
                                    PathBuf::from("/")
                                } else {
                                    Path::new("/").join(&done)
                                };
                                let rest: PathBuf = comps[i + 1..].iter().collect();
                                if depth >= 40 {
                                    return Err(io_err(&self.display(inner), Errno::ELOOP));
                                }
                                return self.create_path_depth(
                                    &base.join(target).join(rest),
                                    file,
                                    depth + 1,
                                );
                            }
                        }
                        Err(e) => return Err(io_err(&self.display(&next), e)),
                    }
                    // Re-resolve: if something raced us with a symlink, RESOLVE_IN_ROOT still
                    // keeps the result inside the root.
                    let fd = openat2(self.fd(), &next, OFlag::O_PATH, 0, IN_ROOT)
                        .map_err(|e| io_err(&self.display(&next), e))?;
                    if last {
                        return Ok(fd);
                    }
                }
                Err(e) => return Err(io_err(&self.display(&next), e)),
            }
            done = next;
        }
        // `inner` was the root itself.
        openat2(self.fd(), Path::new("."), OFlag::O_PATH, 0, IN_ROOT)
            .map_err(|e| io_err(&self.path, e))
    }
}

/// `inner` without its leading `/`, so that it is relative to a root fd.
pub fn relative(inner: &Path) -> PathBuf {
    let rel: PathBuf = inner
        .components()
        .filter(|c| {
            !matches!(
                c,
                Component::RootDir | Component::Prefix(_) | Component::CurDir
            )
        })
        .collect();
    if rel.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        rel
    }
}

pub fn io_err(path: &Path, e: Errno) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::from(e),
    }
}

/// The filesystem magic of an fd (fstatfs f_type).
pub fn fs_magic(fd: &impl AsRawFd) -> nix::Result<i64> {
    // SAFETY: zeroed statfs is a valid out-parameter for fstatfs.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and `st` is a valid pointer.
    Errno::result(unsafe { libc::fstatfs(fd.as_raw_fd(), &mut st) })?;
    Ok(st.f_type as i64)
}

/// A handle on a procfs mount, checked to really be procfs, through which all writes to
/// /proc go. Paths under it are resolved without crossing a mount point and without magic
/// links, so a bind mount over /proc/self/attr or /proc/sys (CVE-2019-16884) is refused
/// instead of written through.
pub struct ProcFs {
    fd: OwnedFd,
}

impl ProcFs {
    pub fn open(path: &Path) -> Result<ProcFs> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err(path, e))?;
        if fs_magic(&fd).map_err(|e| io_err(path, e))? != libc::PROC_SUPER_MAGIC {
            return Err(Error::Init(format!(
                "{} is not a procfs mount",
                path.display()
            )));
        }
        Ok(ProcFs { fd })
    }

    /// Open a file under this procfs for writing.
    pub fn open_write(&self, rel: &str) -> Result<std::fs::File> {
        use std::os::fd::AsFd;
        let resolve = libc::RESOLVE_BENEATH | libc::RESOLVE_NO_MAGICLINKS | libc::RESOLVE_NO_XDEV;
        let fd = openat2(self.fd.as_fd(), Path::new(rel), OFlag::O_WRONLY, 0, resolve)
            .map_err(|e| io_err(&Path::new("/proc").join(rel), e))?;
        if fs_magic(&fd).map_err(|e| io_err(&Path::new("/proc").join(rel), e))?
            != libc::PROC_SUPER_MAGIC
        {
            return Err(Error::Init(format!("/proc/{rel} is not on procfs")));
        }
        Ok(std::fs::File::from(fd))
    }

    pub fn write(&self, rel: &str, data: &str) -> Result<()> {
        use std::io::Write;
        self.open_write(rel)?
            .write_all(data.as_bytes())
            .map_err(|source| Error::Io {
                path: Path::new("/proc").join(rel),
                source,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinks_cannot_escape_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir(&root).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("evil")).unwrap();
        std::os::unix::fs::symlink("../../../../tmp", root.join("up")).unwrap();
        let r = Root::open(&root).unwrap();
        // Creating through an absolute symlink lands inside the root, not in host /etc.
        r.create_path(Path::new("/evil/berth-probe/x"), false)
            .unwrap();
        assert!(root.join("etc/berth-probe/x").is_dir());
        assert!(!Path::new("/etc/berth-probe").exists());
        r.create_path(Path::new("/up/f"), true).unwrap();
        assert!(root.join("tmp/f").is_file());
        assert_eq!(relative(Path::new("/")), PathBuf::from("."));
    }

    #[test]
    fn procfs_handle_refuses_non_proc() {
        assert!(ProcFs::open(Path::new("/tmp")).is_err());
        let p = ProcFs::open(Path::new("/proc")).unwrap();
        // /proc/self is an ordinary symlink; writes through it are allowed.
        p.write("self/comm", "berth-test").unwrap();
        // A path that leaves procfs through a mount point is refused (sys/fs/binfmt_misc
        // may or may not be mounted, so test crossing into a non-existent path instead).
        assert!(p.open_write("../etc/passwd").is_err());
    }
}
