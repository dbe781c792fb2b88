//! Root filesystem steps: propagation, bind the rootfs, mounts, devices, createContainer
//! hooks, pivot_root, then sysctls, masked and read-only paths, and a read-only root.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType, Mount, Spec};

use super::{CgroupGate, InitConfig};
use crate::error::{Error, Result};
use crate::fs::{fd_path, io_err, ProcFs, Root};
use crate::mount::{propagation_flag, MountOptions};

fn sys(op: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
    let op = op.into();
    move |source| Error::Sys { op, source }
}

/// The container's own procfs and sysfs, each as a handle on the root of the mount berth
/// made, checked to be that filesystem. Masked and read-only paths are resolved from these
/// handles (never through a path the container could have replaced).
#[derive(Default)]
pub struct KernelFs {
    proc: Option<(PathBuf, OwnedFd)>,
    sys: Option<(PathBuf, OwnedFd)>,
}

impl KernelFs {
    /// Record the mount just made at `dest` if it is procfs or sysfs.
    fn note(&mut self, root: &Root, dest: &Path, typ: &str) -> Result<()> {
        let (magic, slot) = match typ {
            "proc" => (libc::PROC_SUPER_MAGIC, &mut self.proc),
            "sysfs" => (libc::SYSFS_MAGIC, &mut self.sys),
            _ => return Ok(()),
        };
        let fd = open_ordinary(root, dest)?;
        let st = nix::sys::stat::fstat(&fd).map_err(|e| io_err(dest, e))?;
        // Both are kernfs-style filesystems whose root directory is inode 1.
        if crate::fs::fs_magic(&fd).map_err(|e| io_err(dest, e))? != magic || st.st_ino != 1 {
            return Err(Error::Init(format!(
                "{}: the {typ} mount berth just made is not there",
                dest.display()
            )));
        }
        *slot = Some((crate::mount::normalize(dest), fd));
        Ok(())
    }

    /// Open `path` (a masked or read-only path) through the procfs or sysfs handle it lies
    /// in: no symlink, no magic link, no mount crossed (unless `xdev`, to reach a mount
    /// berth itself just made there), and the result still on that filesystem. `None`
    /// when `path` is under neither.
    fn open(&self, path: &Path, flags: OFlag, xdev: bool) -> Option<Result<OwnedFd>> {
        let path = crate::mount::normalize(path);
        let (base, fd, magic) = [
            (self.proc.as_ref(), libc::PROC_SUPER_MAGIC),
            (self.sys.as_ref(), libc::SYSFS_MAGIC),
        ]
        .into_iter()
        .find_map(|(h, magic)| {
            h.filter(|(base, _)| path.starts_with(base))
                .map(|(base, fd)| (base, fd, magic))
        })?;
        let rel = path.strip_prefix(base).expect("checked");
        let rel = if rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            rel
        };
        let mut resolve =
            libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS;
        if !xdev {
            resolve |= libc::RESOLVE_NO_XDEV;
        }
        Some(
            crate::fs::openat2(std::os::fd::AsFd::as_fd(fd), rel, flags, 0, resolve)
                .map_err(|e| io_err(&path, e))
                .and_then(|f| {
                    if crate::fs::fs_magic(&f).map_err(|e| io_err(&path, e))? != magic {
                        return Err(Error::Init(format!(
                            "{} is not on the container's own procfs/sysfs",
                            path.display()
                        )));
                    }
                    Ok(f)
                }),
        )
    }
}

/// Resolve `dest` inside the root with no symlink in it: procfs and sysfs go on ordinary
/// directories only (a symlinked /proc once redirected them).
fn open_ordinary(root: &Root, dest: &Path) -> Result<OwnedFd> {
    crate::fs::openat2(
        root.fd(),
        &crate::fs::relative(dest),
        OFlag::O_PATH | OFlag::O_DIRECTORY,
        0,
        libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_SYMLINKS | libc::RESOLVE_NO_MAGICLINKS,
    )
    .map_err(|e| {
        Error::Init(format!(
            "{}: must be an ordinary directory for this mount (no symlink): {}",
            dest.display(),
            std::io::Error::from(e)
        ))
    })
}

/// Everything before pivot_root that needs no hook: propagation, mounts, devices, sysctls.
pub fn mount_all(cfg: &InitConfig, proc: &ProcFs, cgroup: &mut CgroupGate) -> Result<KernelFs> {
    let spec = &cfg.spec;
    let linux = spec.linux().as_ref().expect("validated");
    if !cfg.plan.has_mount_ns() {
        // The caller's own mount namespace: no propagation change, no mount (validation
        // refused every mount-related field), only the namespaced sysctls.
        write_sysctls(spec, proc)?;
        return Ok(KernelFs::default());
    }
    // Stop our mounts from propagating back to the host (and the host's into us, unless
    // rootfsPropagation asks for it).
    let prop = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>)
        .map_err(sys("make / a slave mount"))?;
    // pivot_root refuses a shared new root (rootfsPropagation "shared"): make the mount
    // holding the rootfs private first, so the bind below is private too. The requested
    // propagation is applied to "/" again after the pivot.
    if let Some(parent) = cfg.rootfs.parent().and_then(mount_point_of) {
        mount(
            None::<&str>,
            &parent,
            None::<&str>,
            MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(sys(format!("make {} private", parent.display())))?;
    }
    // pivot_root needs the new root to be a mount point; binding it onto itself makes it one.
    mount(
        Some(&cfg.rootfs),
        &cfg.rootfs,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("bind mount rootfs {}", cfg.rootfs.display())))?;
    let root = Root::open(&cfg.rootfs)?;
    let in_userns = cfg.plan.uses_user_ns();
    let cgroup_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Cgroup);
    // Without a cgroup namespace the container's own cgroup directories are bind-mounted
    // (the parent named them); a new cgroup namespace must wait until we are in the cgroup.
    let cgroup_binds = (!cgroup_ns).then_some(cfg.cgroup_mounts.as_slice());
    let gated = cfg.plan.new_cgroup;
    let mounts = spec.mounts().clone().unwrap_or_default();
    let dev_is_bound = mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && MountOptions::parse(m.options().as_deref().unwrap_or_default()).is_bind()
    });
    // cgroup mounts in a new cgroup namespace need the parent to have moved us into our
    // cgroup (slow, see CgroupGate): do every other mount first, unless a later mount lies
    // beneath a cgroup mount and so must follow it.
    let is_cgroup = |m: &Mount| matches!(m.typ().as_deref(), Some("cgroup" | "cgroup2"));
    let deferrable = |i: usize| {
        gated
            && is_cgroup(&mounts[i])
            && !mounts[i + 1..]
                .iter()
                .any(|later| later.destination().starts_with(mounts[i].destination()))
    };
    let mut kernel_fs = KernelFs::default();
    let mut mount = |i: usize, m: &Mount| {
        mount_one(
            &root,
            &cfg.bundle,
            m,
            in_userns,
            cgroup_binds,
            &mut kernel_fs,
        )
        .map_err(|e| Error::Init(format!("mounts[{i}] {}: {e}", m.destination().display())))
    };
    for (i, m) in mounts.iter().enumerate() {
        if deferrable(i) {
            continue;
        }
        if gated && is_cgroup(m) {
            cgroup.wait()?;
        }
        mount(i, m)?;
    }
    create_devices(
        &root,
        linux.devices().as_deref().unwrap_or_default(),
        in_userns,
        !dev_is_bound,
    )?;
    write_sysctls(spec, proc)?;
    if gated {
        cgroup.wait()?;
    }
    for (i, m) in mounts.iter().enumerate().filter(|(i, _)| deferrable(*i)) {
        mount(i, m)?;
    }
    Ok(kernel_fs)
}

/// createContainer hooks, pivot_root, masked and read-only paths, read-only root.
pub fn finish(cfg: &InitConfig, kernel_fs: &KernelFs, state: &serde_json::Value) -> Result<()> {
    let spec = &cfg.spec;
    let linux = spec.linux().as_ref().expect("validated");
    if let Some(hooks) = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
    {
        crate::hooks::run("createContainer", &hooks, state)?;
    }
    // runc creates a missing cwd; do it inside the rootfs, before it can become read-only.
    let cwd = spec.process().as_ref().expect("validated").cwd();
    Root::open(&cfg.rootfs)?.create_path(cwd, false)?;
    if !cfg.plan.has_mount_ns() {
        // pivot_root here would move the root of the caller's (the host's) namespace.
        nix::unistd::chroot(&cfg.rootfs).map_err(|e| io_err(&cfg.rootfs, e))?;
        return nix::unistd::chdir("/").map_err(sys("chdir /"));
    }
    enter_root(&cfg.rootfs, cfg.no_pivot)?;
    let new_root = Root::open(Path::new("/"))?;
    let masked: Vec<PathBuf> = linux
        .masked_paths()
        .iter()
        .flatten()
        .map(|p| crate::mount::normalize(Path::new(p)))
        .collect();
    for p in &masked {
        mask_path(&new_root, kernel_fs, p)?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        let p = crate::mount::normalize(Path::new(p));
        // Masking already made it an empty read-only tmpfs or /dev/null (Kubernetes lists
        // some paths in both).
        if masked.iter().any(|m| p.starts_with(m)) {
            continue;
        }
        readonly_path(&new_root, kernel_fs, &p)?;
    }
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        remount_readonly(&new_root.open_in(Path::new("/"), OFlag::O_PATH)?, "/")?;
    }
    if let Some(p) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(propagation_flag)
    {
        mount(None::<&str>, "/", None::<&str>, p, None::<&str>)
            .map_err(sys("set rootfs propagation"))?;
    }
    Ok(())
}

/// Refuse a destination that resolved onto procfs or sysfs, unless the mount is one the
/// kernel-filesystem rule allows there (see [`crate::mount::kernel_fs_rule`]; this catches
/// what lexical checks cannot: a symlink in the image leading there).
fn check_landing(dest: &OwnedFd, m: &Mount, typ: &str) -> Result<()> {
    let magic = crate::fs::fs_magic(dest).map_err(|e| io_err(m.destination(), e))?;
    let lexical = crate::mount::normalize(m.destination());
    let allowed = if magic == libc::PROC_SUPER_MAGIC {
        crate::mount::PROC_OVERRIDES
            .iter()
            .any(|p| lexical == Path::new(p))
    } else if magic == libc::SYSFS_MAGIC {
        matches!(typ, "cgroup" | "cgroup2") && lexical == Path::new("/sys/fs/cgroup")
    } else {
        true
    };
    if allowed {
        Ok(())
    } else {
        Err(Error::Init(format!(
            "destination resolves into the container's {}; refusing to mount over it",
            if magic == libc::PROC_SUPER_MAGIC {
                "procfs"
            } else {
                "sysfs"
            }
        )))
    }
}

fn mount_one(
    root: &Root,
    bundle: &Path,
    m: &Mount,
    in_userns: bool,
    cgroup_binds: Option<&[berth_cgroups::CgroupMount]>,
    kernel_fs: &mut KernelFs,
) -> Result<()> {
    let opts = MountOptions::parse(m.options().as_deref().unwrap_or_default());
    let typ = m
        .typ()
        .as_deref()
        .unwrap_or(if opts.is_bind() { "bind" } else { "none" });
    let source = m.source().clone().unwrap_or_else(|| PathBuf::from(typ));
    let bind_of_kernel_fs = opts.is_bind()
        && matches!(
            crate::mount::normalize(m.destination()).to_str(),
            Some("/proc" | "/sys")
        );
    if opts.is_bind() || typ == "bind" {
        let src = if source.is_absolute() {
            source
        } else {
            bundle.join(source)
        };
        let meta = std::fs::metadata(&src).map_err(|e| Error::Io {
            path: src.clone(),
            source: e,
        })?;
        let dest = if bind_of_kernel_fs {
            open_ordinary(root, m.destination())?
        } else {
            root.create_path(m.destination(), !meta.is_dir())?
        };
        check_landing(&dest, m, typ)?;
        let flags = MsFlags::MS_BIND | (opts.flags & MsFlags::MS_REC);
        if let Some(recursive) = opts.idmap {
            idmapped_bind(&src, &dest, recursive || flags.contains(MsFlags::MS_REC), m)?;
        } else {
            mount(
                Some(&src),
                &fd_path(&dest),
                None::<&str>,
                flags,
                None::<&str>,
            )
            .map_err(sys(format!("bind {}", src.display())))?;
        }
        // The fd still names the directory under the new mount; reopen to get the mount.
        let mounted = root.open_in(m.destination(), OFlag::O_PATH)?;
        let extra = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !extra.is_empty() {
            remount(&mounted, extra, &m.destination().display().to_string())?;
        }
        finish_mount(&mounted, &opts)?;
        if bind_of_kernel_fs {
            // A rootless bind of the host's /proc or /sys stands for the container's own.
            let kind = if m.destination().ends_with("proc") {
                "proc"
            } else {
                "sysfs"
            };
            kernel_fs.note(root, m.destination(), kind)?;
        }
        let _ = in_userns;
        return Ok(());
    }
    let dest = if matches!(typ, "proc" | "sysfs") {
        open_ordinary(root, m.destination())?
    } else {
        root.create_path(m.destination(), false)?
    };
    check_landing(&dest, m, typ)?;
    let data = opts.data_string();
    match typ {
        "cgroup" | "cgroup2" => match cgroup_binds {
            None => mount_cgroup(root, m, &dest, &opts)?,
            Some(dirs) => bind_cgroups(root, m, &dest, &opts, dirs)?,
        },
        _ => {
            let flags = opts.flags & !MsFlags::MS_REMOUNT;
            mount(
                Some(&source),
                &fd_path(&dest),
                Some(typ),
                flags,
                data.as_deref(),
            )
            .or_else(|e| {
                // In a user namespace without its own network namespace, sysfs cannot be
                // mounted; runc binds the host's /sys read-only instead.
                if typ == "sysfs" && e == nix::errno::Errno::EPERM {
                    mount(
                        Some("/sys"),
                        &fd_path(&dest),
                        None::<&str>,
                        MsFlags::MS_BIND | MsFlags::MS_REC,
                        None::<&str>,
                    )?;
                    let d = root
                        .open_in(m.destination(), OFlag::O_PATH)
                        .map_err(|_| nix::errno::Errno::EPERM)?;
                    remount_flags(
                        &d,
                        MsFlags::MS_RDONLY
                            | MsFlags::MS_NOSUID
                            | MsFlags::MS_NODEV
                            | MsFlags::MS_NOEXEC,
                    )
                } else {
                    Err(e)
                }
            })
            .map_err(sys(format!("mount {typ}")))?;
            let mounted = root.open_in(m.destination(), OFlag::O_PATH)?;
            finish_mount(&mounted, &opts)?;
            kernel_fs.note(root, m.destination(), typ)?;
        }
    }
    Ok(())
}

/// Propagation changes and recursive attributes, applied to the new mount.
fn finish_mount(mounted: &OwnedFd, opts: &MountOptions) -> Result<()> {
    for p in &opts.propagation {
        mount(
            None::<&str>,
            &fd_path(mounted),
            None::<&str>,
            *p,
            None::<&str>,
        )
        .map_err(sys("set mount propagation"))?;
    }
    if opts.recursive_set != 0 || opts.recursive_clear != 0 {
        setattr(mounted, opts.recursive_set, opts.recursive_clear, 0)?;
    }
    Ok(())
}

const AT_RECURSIVE: libc::c_uint = 0x8000;

fn setattr(fd: &OwnedFd, set: u64, clear: u64, userns: i32) -> Result<()> {
    let attr = libc::mount_attr {
        attr_set: set,
        attr_clr: clear,
        propagation: 0,
        userns_fd: userns as u64,
    };
    let empty = c"";
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, and a correctly sized mount_attr.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH as libc::c_uint) | AT_RECURSIVE,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(sys("mount_setattr"))
}

/// A bind mount whose ids are mapped through the container's user namespace.
fn idmapped_bind(src: &Path, dest: &OwnedFd, recursive: bool, m: &Mount) -> Result<()> {
    if m.uid_mappings().is_some() || m.gid_mappings().is_some() {
        return Err(Error::Unsupported("per-mount uidMappings/gidMappings are not supported yet; idmap uses the container's user namespace".into()));
    }
    let c = std::ffi::CString::new(src.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Config("NUL in mount source".into()))?;
    let flags = 1 /* OPEN_TREE_CLONE */ | libc::O_CLOEXEC as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: valid C string; returns a new fd.
    let tree = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, c.as_ptr(), flags) };
    let tree =
        nix::errno::Errno::result(tree).map_err(sys(format!("open_tree {}", src.display())))?;
    // SAFETY: the kernel just returned this fd.
    let tree: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(tree as i32) };
    let userns = nix::fcntl::open(
        "/proc/self/ns/user",
        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| io_err(Path::new("/proc/self/ns/user"), e))?;
    setattr(&tree, libc::MOUNT_ATTR_IDMAP, 0, userns.as_raw_fd())?;
    let empty = c"";
    // SAFETY: both fds are valid; empty paths with the EMPTY_PATH flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            empty.as_ptr(),
            dest.as_raw_fd(),
            empty.as_ptr(),
            0x4u32 | 0x40u32, /* F_EMPTY_PATH | T_EMPTY_PATH */
        )
    };
    nix::errno::Errno::result(r)
        .map(drop)
        .map_err(sys("move_mount idmapped bind"))
}

fn cgroup_mount_flags(opts: &MountOptions) -> MsFlags {
    (opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT))
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC
}

fn host_is_v2() -> Result<bool> {
    let f = std::fs::File::open("/sys/fs/cgroup").map_err(|e| Error::Io {
        path: "/sys/fs/cgroup".into(),
        source: e,
    })?;
    Ok(crate::fs::fs_magic(&f)
        .map(|t| t == libc::CGROUP2_SUPER_MAGIC)
        .unwrap_or(false))
}

/// cgroup mounts inside a cgroup namespace: cgroup2 where the host is pure v2, otherwise a
/// tmpfs holding each v1 hierarchy this process belongs to (the namespace makes each show
/// the container's own cgroup as its root).
fn mount_cgroup(root: &Root, m: &Mount, dest: &OwnedFd, opts: &MountOptions) -> Result<()> {
    let flags = cgroup_mount_flags(opts);
    if host_is_v2()? || m.typ().as_deref() == Some("cgroup2") {
        return mount(
            Some("cgroup2"),
            &fd_path(dest),
            Some("cgroup2"),
            flags,
            None::<&str>,
        )
        .map_err(sys("mount cgroup2"));
    }
    mount_cgroup_tmpfs(dest, flags)?;
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| Error::Io {
        path: "/proc/self/cgroup".into(),
        source: e,
    })?;
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls) = (parts.next(), parts.next().unwrap_or(""));
        let (name, data) = if ctrls.is_empty() {
            ("unified".to_string(), None)
        } else if let Some(named) = ctrls.strip_prefix("name=") {
            (named.to_string(), Some(format!("none,name={named}")))
        } else {
            (ctrls.to_string(), Some(ctrls.to_string()))
        };
        let sub = m.destination().join(&name);
        let d = root.create_path(&sub, false)?;
        let (fstype, data) = match &data {
            None => ("cgroup2", None),
            Some(d) => ("cgroup", Some(d.as_str())),
        };
        mount(Some(fstype), &fd_path(&d), Some(fstype), flags, data)
            .map_err(sys(format!("mount cgroup {name}")))?;
        link_comounted(root, m, &name)?;
    }
    seal_cgroup_tmpfs(root, m, flags)
}

/// cgroup mounts without a cgroup namespace: a fresh cgroup mount would show the host's
/// whole tree, so bind the container's own cgroup directories instead (as runc does).
fn bind_cgroups(
    root: &Root,
    m: &Mount,
    dest: &OwnedFd,
    opts: &MountOptions,
    own: &[berth_cgroups::CgroupMount],
) -> Result<()> {
    let flags = cgroup_mount_flags(opts);
    let bind = |dir: &Path, inner: &Path, at: &OwnedFd| -> Result<()> {
        mount(
            Some(dir),
            &fd_path(at),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("bind cgroup {}", dir.display())))?;
        remount(
            &root.open_in(inner, OFlag::O_PATH)?,
            flags,
            &dir.display().to_string(),
        )
    };
    if host_is_v2()? || m.typ().as_deref() == Some("cgroup2") {
        // No cgroup of its own (rootless without delegation): nothing to show.
        return match own.iter().find(|o| o.v2) {
            Some(unified) => bind(&unified.dir, m.destination(), dest),
            None => Ok(()),
        };
    }
    mount_cgroup_tmpfs(dest, flags)?;
    for o in own {
        let sub = m.destination().join(&o.name);
        bind(&o.dir, &sub, &root.create_path(&sub, false)?)?;
        link_comounted(root, m, &o.name)?;
    }
    seal_cgroup_tmpfs(root, m, flags)
}

/// The tmpfs holding one directory per v1 hierarchy.
fn mount_cgroup_tmpfs(dest: &OwnedFd, flags: MsFlags) -> Result<()> {
    mount(
        Some("tmpfs"),
        &fd_path(dest),
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )
    .map_err(sys("mount cgroup tmpfs"))
}

/// Co-mounted controllers (`cpu,cpuacct`) get a symlink per controller, as on the host,
/// created in the tmpfs berth just mounted (resolved inside the root: a symlinked /sys in
/// the image once made these links on the host).
fn link_comounted(root: &Root, m: &Mount, name: &str) -> Result<()> {
    let singles: Vec<&str> = name
        .split(',')
        .filter(|s| *s != name && !name.starts_with("name="))
        .collect();
    if singles.is_empty() {
        return Ok(());
    }
    let dir = root.open_in(m.destination(), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for single in singles {
        match nix::unistd::symlinkat(name, &dir, single) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(io_err(&m.destination().join(single), e)),
        }
    }
    Ok(())
}

/// The tmpfs becomes read-only once filled, if the mount asks for it.
fn seal_cgroup_tmpfs(root: &Root, m: &Mount, flags: MsFlags) -> Result<()> {
    if flags.contains(MsFlags::MS_RDONLY) {
        remount_flags(
            &root.open_in(m.destination(), OFlag::O_PATH)?,
            flags | MsFlags::MS_RDONLY,
        )
        .map_err(sys("remount cgroup tmpfs read-only"))?;
    }
    Ok(())
}

/// Flags the kernel locks on a mount in a user namespace and that a remount must keep.
fn locked_flags(fd: &OwnedFd) -> MsFlags {
    match nix::sys::statvfs::fstatvfs(fd) {
        Ok(st) => {
            use nix::sys::statvfs::FsFlags;
            let f = st.flags();
            let mut out = MsFlags::empty();
            for (a, b) in [
                (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
                (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
                (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
                (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
                (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
                (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
            ] {
                if f.contains(a) {
                    out |= b;
                }
            }
            out
        }
        Err(_) => MsFlags::empty(),
    }
}

fn remount_flags(fd: &OwnedFd, flags: MsFlags) -> nix::Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    mount(
        None::<&str>,
        &fd_path(fd),
        None::<&str>,
        base | flags,
        None::<&str>,
    )
    .or_else(|e| {
        if e == nix::errno::Errno::EPERM {
            mount(
                None::<&str>,
                &fd_path(fd),
                None::<&str>,
                base | flags | locked_flags(fd),
                None::<&str>,
            )
        } else {
            Err(e)
        }
    })
}

fn remount(fd: &OwnedFd, flags: MsFlags, what: &str) -> Result<()> {
    remount_flags(fd, flags).map_err(sys(format!("remount {what}")))
}

fn remount_readonly(fd: &OwnedFd, what: &str) -> Result<()> {
    remount(fd, MsFlags::MS_RDONLY | locked_flags(fd), what)
}

struct DefaultDevice {
    path: &'static str,
    major: u64,
    minor: u64,
}

const DEFAULT_DEVICES: &[DefaultDevice] = &[
    DefaultDevice {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    DefaultDevice {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    DefaultDevice {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    DefaultDevice {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    DefaultDevice {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    DefaultDevice {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

/// Default devices (unless /dev is bound from the host), `linux.devices`, and the standard
/// symlinks. In a user namespace mknod is not allowed, so host devices are bind-mounted.
fn create_devices(
    root: &Root,
    devices: &[LinuxDevice],
    in_userns: bool,
    defaults: bool,
) -> Result<()> {
    if defaults {
        for d in DEFAULT_DEVICES {
            if devices.iter().any(|x| x.path() == Path::new(d.path)) {
                continue;
            }
            make_device(
                root,
                Path::new(d.path),
                SFlag::S_IFCHR,
                d.major,
                d.minor,
                0o666,
                0,
                0,
                in_userns,
            )?;
        }
        for (link, target) in [
            ("/dev/fd", "/proc/self/fd"),
            ("/dev/stdin", "/proc/self/fd/0"),
            ("/dev/stdout", "/proc/self/fd/1"),
            ("/dev/stderr", "/proc/self/fd/2"),
            ("/dev/ptmx", "pts/ptmx"),
        ] {
            symlink_in(root, target, Path::new(link))?;
        }
        if Path::new("/proc/kcore").exists() {
            symlink_in(root, "/proc/kcore", Path::new("/dev/core"))?;
        }
    }
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::Config(format!(
                    "field linux.devices: {} has type a",
                    d.path().display()
                )))
            }
        };
        let mode = d.file_mode().unwrap_or(0o666);
        make_device(
            root,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            in_userns,
        )?;
    }
    Ok(())
}

fn symlink_in(root: &Root, target: &str, link: &Path) -> Result<()> {
    let parent = root.create_path(link.parent().unwrap_or(Path::new("/")), false)?;
    let name = link.file_name().expect("link has a name");
    match nix::unistd::symlinkat(target, &parent, name) {
        Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(()),
        Err(e) => Err(io_err(&root.path().join(crate::fs::relative(link)), e)),
    }
}

#[allow(clippy::too_many_arguments)]
fn make_device(
    root: &Root,
    path: &Path,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    in_userns: bool,
) -> Result<()> {
    let parent = root.create_path(path.parent().unwrap_or(Path::new("/dev")), false)?;
    let name = path.file_name().ok_or_else(|| {
        Error::Config(format!("field linux.devices: bad path {}", path.display()))
    })?;
    let shown = root.path().join(crate::fs::relative(path));
    if in_userns {
        // Bind the host's device node onto an empty file.
        let dest = root.create_path(path, true)?;
        return mount(
            Some(path),
            &fd_path(&dest),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("bind device {}", path.display())));
    }
    let parent_path = fd_path(&parent).join(name);
    match mknod(
        &parent_path,
        kind,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major, minor),
    ) {
        Ok(()) => {}
        Err(nix::errno::Errno::EEXIST) => {
            // An entry from the image: only accept it if it is already the same device.
            let meta = std::fs::symlink_metadata(&parent_path).map_err(|e| Error::Io {
                path: shown.clone(),
                source: e,
            })?;
            if !(meta.file_type().is_char_device() || meta.file_type().is_block_device())
                || meta.rdev() != makedev(major, minor)
            {
                return Err(Error::Init(format!(
                    "{} exists and is not device {major}:{minor}",
                    shown.display()
                )));
            }
            return Ok(());
        }
        Err(e) => return Err(io_err(&shown, e)),
    }
    let dev = crate::fs::openat2(
        parent.as_fd_borrow(),
        Path::new(name),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| io_err(&shown, e))?;
    nix::unistd::fchownat(
        &dev,
        "",
        Some(uid.into()),
        Some(gid.into()),
        nix::fcntl::AtFlags::AT_EMPTY_PATH,
    )
    .map_err(|e| io_err(&shown, e))?;
    // mknod applies the umask; set the exact mode.
    std::fs::set_permissions(
        fd_path(&dev),
        std::os::unix::fs::PermissionsExt::from_mode(mode & 0o7777),
    )
    .map_err(|e| Error::Io {
        path: shown,
        source: e,
    })
}

trait AsFdBorrow {
    fn as_fd_borrow(&self) -> std::os::fd::BorrowedFd<'_>;
}
impl AsFdBorrow for OwnedFd {
    fn as_fd_borrow(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }
}

fn write_sysctls(spec: &Spec, proc: &ProcFs) -> Result<()> {
    for (key, value) in spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().clone())
        .unwrap_or_default()
    {
        proc.write(&format!("sys/{}", key.replace('.', "/")), &value)
            .map_err(|e| Error::Init(format!("sysctl {key}={value}: {e}")))?;
    }
    Ok(())
}

/// Enter the new root: pivot_root(".", ".") stacks the old root on top of the new one, and
/// detaching the top mount drops the host's tree. With `--no-pivot`, move and chroot.
fn enter_root(rootfs: &Path, no_pivot: bool) -> Result<()> {
    nix::unistd::chdir(rootfs).map_err(|e| io_err(rootfs, e))?;
    if no_pivot {
        mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>)
            .map_err(sys("move rootfs to /"))?;
        nix::unistd::chroot(".").map_err(sys("chroot"))?;
    } else {
        // An fd of the old root, to act on it (and only it) after the pivot: "." then
        // names the new root's mount, whose propagation settings must survive.
        let old_root = nix::fcntl::open(
            "/",
            OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(sys("open old root"))?;
        nix::unistd::pivot_root(".", ".").map_err(sys("pivot_root"))?;
        nix::unistd::fchdir(&old_root).map_err(sys("enter old root"))?;
        // Keep the detach from propagating to the host's mounts.
        mount(
            None::<&str>,
            ".",
            None::<&str>,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(sys("make old root a slave"))?;
        umount2(".", MntFlags::MNT_DETACH).map_err(sys("detach old root"))?;
    }
    nix::unistd::chdir("/").map_err(sys("chdir /"))
}

/// The mount point of the mount that contains `path` (longest matching mountinfo entry).
fn mount_point_of(path: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|mp| PathBuf::from(mp.replace("\\040", " ")))
        .filter(|mp| path.starts_with(mp))
        .max_by_key(|mp| mp.as_os_str().len())
}

/// The container's /dev/null, checked to really be the null device before it is used as a
/// mount source (a symlink or another node there must not become a host bind mount,
/// CVE-2025-31133).
fn verified_dev_null(root: &Root) -> Result<OwnedFd> {
    let fd = crate::fs::openat2(
        root.fd(),
        Path::new("dev/null"),
        OFlag::O_PATH | OFlag::O_NOFOLLOW,
        0,
        libc::RESOLVE_BENEATH | libc::RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| io_err(Path::new("/dev/null"), e))?;
    let st = nix::sys::stat::fstat(&fd).map_err(|e| io_err(Path::new("/dev/null"), e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFCHR
        || st.st_rdev != makedev(1, 3)
    {
        return Err(Error::Init(
            "/dev/null in the container is not the null device; refusing to mask with it".into(),
        ));
    }
    Ok(fd)
}

/// Open a masked or read-only path: through the container's own procfs or sysfs when it
/// lies in one, otherwise inside the root.
fn open_protected(root: &Root, kernel_fs: &KernelFs, path: &Path, flags: OFlag) -> Result<OwnedFd> {
    kernel_fs
        .open(path, flags, false)
        .unwrap_or_else(|| root.open_in(path, flags))
}

fn mask_path(root: &Root, kernel_fs: &KernelFs, path: &Path) -> Result<()> {
    let target = match open_protected(root, kernel_fs, path, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => fd,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(&target).map_err(|e| io_err(path, e))?;
    if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
        mount(
            Some("tmpfs"),
            &fd_path(&target),
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("nr_inodes=1,size=0"),
        )
        .map_err(sys(format!("mask {}", path.display())))
    } else {
        let null = verified_dev_null(root)?;
        mount(
            Some(&fd_path(&null)),
            &fd_path(&target),
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(sys(format!("mask {}", path.display())))
    }
}

fn readonly_path(root: &Root, kernel_fs: &KernelFs, path: &Path) -> Result<()> {
    let target = match open_protected(root, kernel_fs, path, OFlag::O_PATH) {
        Ok(fd) => fd,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    mount(
        Some(&fd_path(&target)),
        &fd_path(&target),
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(sys(format!("bind {} read-only", path.display())))?;
    // Reopen to get the bind just made (the fd still names what lies under it).
    let mounted = kernel_fs
        .open(path, OFlag::O_PATH, true)
        .unwrap_or_else(|| root.open_in(path, OFlag::O_PATH))?;
    remount(
        &mounted,
        MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | locked_flags(&mounted),
        &path.display().to_string(),
    )
}
