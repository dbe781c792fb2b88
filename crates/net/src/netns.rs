//! Network namespaces that outlive the process that made them: a new namespace is
//! bind-mounted (nsfs) onto a file under the runtime root, so containers join it by path
//! and CNI plugins configure it before the container exists and after it exited.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};

use crate::error::{sys, Error, IoContext, Result};

/// A persistent network namespace at `path`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetNs {
    pub path: PathBuf,
}

impl NetNs {
    /// Create a namespace bind-mounted at `dir/name`, with loopback up. Nothing is left
    /// when this fails.
    pub fn create(dir: &Path, name: &str) -> Result<NetNs> {
        std::fs::create_dir_all(dir).at(dir)?;
        let path = dir.join(name);
        File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .at(&path)?;
        let ns = NetNs { path };
        let made = (|| {
            let target = ns.path.clone();
            // unshare(CLONE_NEWNET) moves only the calling thread: a short-lived thread
            // makes the namespace and bind-mounts its own ns file; the caller stays put.
            std::thread::spawn(move || -> Result<()> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(sys("unshare(CLONE_NEWNET)"))?;
                // Interfaces made here later (eth0) skip IPv6 duplicate address detection:
                // IPAM hands out unique addresses, and the bridge plugin's ADD would wait
                // for DAD to finish. /proc/sys/net is this thread's namespace's. Without
                // IPv6 the file is absent: nothing to do.
                let _ = std::fs::write("/proc/sys/net/ipv6/conf/default/accept_dad", "0");
                let me = format!("/proc/self/task/{}/ns/net", nix::unistd::gettid());
                mount(
                    Some(me.as_str()),
                    &target,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(sys(format!("bind-mount {me} on {}", target.display())))
            })
            .join()
            .unwrap_or_else(|_| Err(sys("netns thread")(nix::Error::EIO)))?;
            ns.loopback_up()
        })();
        if let Err(e) = made {
            let _ = ns.remove();
            return Err(e);
        }
        Ok(ns)
    }

    /// A network namespace someone else made (`--network ns:PATH`): PATH must open as
    /// a network namespace file (nsfs, `NS_GET_NSTYPE` says CLONE_NEWNET), so a plain
    /// file or another kind of namespace is refused here, not by the runtime later.
    pub fn existing(path: &Path) -> Result<NetNs> {
        let not = |reason: &str| Error::Invalid {
            what: "--network",
            value: format!("ns:{}", path.display()),
            reason: reason.to_string(),
        };
        let f = File::open(path).map_err(|e| not(&e.to_string()))?;
        // NS_GET_NSTYPE = _IO(0xb7, 0x3) (linux/nsfs.h); libc does not export it.
        const NS_GET_NSTYPE: libc::c_ulong = 0xb703;
        // SAFETY: an argument-less ioctl on an fd we own; it only returns a value.
        let kind = unsafe { libc::ioctl(f.as_raw_fd(), NS_GET_NSTYPE) };
        if kind < 0 {
            return Err(not("not a namespace file (nsfs)"));
        }
        if kind != libc::CLONE_NEWNET {
            return Err(not("a namespace, but not a network one"));
        }
        Ok(NetNs {
            path: path.to_path_buf(),
        })
    }

    /// Set `lo` up inside the namespace (a new one has it down).
    pub fn loopback_up(&self) -> Result<()> {
        self.run(|| {
            // SAFETY: socket(2) with constant arguments; the fd is owned right after.
            let raw =
                unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
            if raw < 0 {
                return Err(sys("socket(AF_INET) for lo")(nix::Error::last()));
            }
            // SAFETY: `raw` is a fresh fd nobody else owns.
            let sock = unsafe { OwnedFd::from_raw_fd(raw) };
            // SAFETY: ifreq is plain data; all-zero is a valid value.
            let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
            for (dst, src) in req.ifr_name.iter_mut().zip(b"lo") {
                *dst = *src as libc::c_char;
            }
            // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own.
            unsafe {
                if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
                    return Err(sys("SIOCGIFFLAGS lo")(nix::Error::last()));
                }
                req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
                if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
                    return Err(sys("SIOCSIFFLAGS lo")(nix::Error::last()));
                }
            }
            Ok(())
        })
    }

    /// Run `f` on a thread that joined this namespace (setns moves only that thread).
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let file = File::open(&self.path).at(&self.path)?;
        let path = self.path.clone();
        std::thread::spawn(move || {
            setns(&file, CloneFlags::CLONE_NEWNET)
                .map_err(sys(format!("setns {}", path.display())))?;
            f()
        })
        .join()
        .unwrap_or_else(|_| Err(sys("netns thread")(nix::Error::EIO)))
    }

    /// Unmount and delete; a namespace already gone is fine.
    pub fn remove(&self) -> Result<()> {
        match umount2(&self.path, MntFlags::MNT_DETACH) {
            Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
            Err(e) => return Err(sys(format!("umount {}", self.path.display()))(e)),
        }
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
                path: self.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn outlives_its_thread_and_goes_away() {
        if !root() {
            eprintln!("skipped: needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let ns = NetNs::create(d.path(), "c1").unwrap();
        let here = std::fs::read_link("/proc/self/ns/net").unwrap();
        let there = ns
            .run(|| Ok(std::fs::read_link("/proc/thread-self/ns/net").unwrap()))
            .unwrap();
        assert_ne!(here, there, "a namespace of its own");
        // lo is up: binding 127.0.0.1 works only then.
        let bound = ns
            .run(|| Ok(std::net::TcpListener::bind("127.0.0.1:0").is_ok()))
            .unwrap();
        assert!(bound);
        if Path::new("/proc/sys/net/ipv6").exists() {
            let dad = ns
                .run(|| {
                    Ok(
                        std::fs::read_to_string("/proc/sys/net/ipv6/conf/default/accept_dad")
                            .unwrap(),
                    )
                })
                .unwrap();
            assert_eq!(dad.trim(), "0", "no DAD for the container's interfaces");
        }
        assert!(
            NetNs::create(d.path(), "c1").is_err(),
            "no second one on the same path"
        );
        assert_eq!(NetNs::existing(&ns.path).unwrap(), ns);
        let plain = d.path().join("plain");
        std::fs::write(&plain, "x").unwrap();
        for (path, why) in [
            (plain.as_path(), "not a namespace file"),
            (Path::new("/proc/self/ns/uts"), "not a network one"),
            (Path::new("/nonexistent"), "No such file"),
        ] {
            let e = NetNs::existing(path).unwrap_err().to_string();
            assert!(e.starts_with("--network \"ns:") && e.contains(why), "{e}");
        }
        ns.remove().unwrap();
        assert!(!ns.path.exists());
        ns.remove().unwrap();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        assert!(!mounts.contains(d.path().to_str().unwrap()));
    }
}
