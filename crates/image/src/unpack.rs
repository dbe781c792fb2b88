//! Streaming, hostile-input-safe application of one layer tar to a directory.
//!
//! Every path is resolved below the target with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`, and the final component is always
//! created or replaced with `*at` calls that do not follow it. So a layer can neither name
//! a path outside the target (absolute, `..`) nor write through a symlink planted by an
//! earlier entry or layer: such entries are rejected with an error naming them. Legitimate
//! layers never need either, because a layer diff records real paths.
//!
//! Two whiteout modes:
//! * [`WhiteoutMode::Overlay`]: the layer is unpacked alone into an empty directory and
//!   whiteouts are stored the way OverlayFS reads them (a 0/0 character device for
//!   `.wh.name`, the `trusted.overlay.opaque=y` xattr for `.wh..wh..opq`), so the kernel
//!   applies them when the layers are stacked.
//! * [`WhiteoutMode::Apply`]: layers are applied one after another into one directory and
//!   whiteouts delete what lower layers put there (the flattened rootfs `umoci unpack`
//!   produces); an opaque marker removes everything in its directory that this layer did
//!   not itself create, so it acts "before the layer's other entries" whatever its position.
//!
//! Speed (see docs/performance.md): the blob is decompressed and hashed on a second
//! thread, at most four 256 KiB chunks ahead of the entries being applied; each entry
//! costs the calls that make it and little more: its directory stays open while entries
//! of that directory follow, a name is created first and only replaced when that fails
//! with EEXIST, a file's data goes out in one write, and chown/chmod are skipped when
//! creation already gave the entry's owner and mode. On failure the error reported is the
//! first one in stream order: a decoding error when the stream broke before the unpack
//! failed, else the unpack's.

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{
    fchmod, fchmodat, futimens, mkdirat, mknodat, utimensat, FchmodatFlags, Mode, SFlag,
    UtimensatFlags,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchown, fchownat, linkat, symlinkat, unlinkat, Gid, Uid, UnlinkatFlags};

use crate::digest::{Digest, HashingReader};
use crate::error::{Error, IoContext, Result};
use crate::oci::Compression;

const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_MARKER: &str = ".wh..wh..opq";
const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const PAX_XATTR_PREFIX: &str = "SCHILY.xattr.";

/// How whiteout entries are materialised; see the module docs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    Overlay,
    Apply,
}

/// What one layer unpack did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UnpackStats {
    /// Digest of the uncompressed tar stream: the layer's diff_id.
    pub diff_id: Option<Digest>,
    pub entries: u64,
    pub bytes: u64,
}

fn reject(entry: &str, reason: &str) -> Error {
    Error::UnsafeEntry {
        entry: entry.to_string(),
        reason: reason.to_string(),
    }
}

/// Split a tar path into clean components, rejecting absolute paths and `..`.
fn clean_path(raw: &[u8], entry: &str) -> Result<Vec<Vec<u8>>> {
    if raw.first() == Some(&b'/') {
        return Err(reject(entry, "absolute path"));
    }
    if raw.contains(&0) {
        return Err(reject(entry, "NUL byte in path"));
    }
    let mut out = Vec::new();
    for c in raw.split(|&b| b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err(reject(entry, "path contains '..'")),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn cstr(b: &[u8]) -> CString {
    CString::new(b).expect("NUL bytes rejected by clean_path")
}

/// What an entry's PAX records say about it.
#[derive(Default)]
struct PaxMeta {
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<i64>,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// A directory entries are created in, and what a new file in it gets by itself.
struct Parent {
    comps: Vec<Vec<u8>>,
    fd: OwnedFd,
    /// The owner a new file here gets, when it is sure: our euid and egid, when the
    /// directory's group is our egid (so set-group-ID inheritance gives the same group).
    new_owner: Option<(Uid, Gid)>,
    /// The umask alone limits the mode of a new file here: no default ACL does instead.
    umask_only: bool,
}

/// Applies the entries of one layer to a target directory.
struct Unpacker<'a> {
    root: OwnedFd,
    target: &'a Path,
    mode: WhiteoutMode,
    /// Paths this layer created, for opaque directories in Apply mode.
    created: HashSet<Vec<u8>>,
    /// Directories whose mtime is set once all their children exist.
    dir_times: Vec<(Vec<Vec<u8>>, i64)>,
    /// Last parent directory opened, reused for consecutive entries in one directory.
    cached_parent: Option<Parent>,
    /// Our euid and egid: the owner of the files we create.
    ids: (Uid, Gid),
    /// The process umask, when known.
    umask: Option<u32>,
    /// File data passes through here on its way to disk.
    buf: Vec<u8>,
}

impl<'a> Unpacker<'a> {
    fn new(target: &'a Path, mode: WhiteoutMode) -> Result<Self> {
        let root: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
            .open(target)
            .at(target)?
            .into();
        Ok(Unpacker {
            root,
            target,
            mode,
            created: HashSet::new(),
            dir_times: Vec::new(),
            cached_parent: None,
            ids: (nix::unistd::geteuid(), nix::unistd::getegid()),
            umask: current_umask(),
            buf: vec![0; CHUNK],
        })
    }

    fn host_path(&self, comps: &[Vec<u8>]) -> PathBuf {
        let mut p = self.target.to_path_buf();
        for c in comps {
            p.push(OsStr::from_bytes(c));
        }
        p
    }

    /// Open `comps` (a directory below the root) without following any symlink; create
    /// missing directories (0755, root-owned) when `create` is set, as tars may omit them.
    fn open_dir(&self, comps: &[Vec<u8>], entry: &str, create: bool) -> Result<OwnedFd> {
        let how = || {
            OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW)
                .resolve(
                    ResolveFlag::RESOLVE_BENEATH
                        | ResolveFlag::RESOLVE_NO_SYMLINKS
                        | ResolveFlag::RESOLVE_NO_MAGICLINKS,
                )
        };
        let map = |e: Errno, at: &[Vec<u8>]| match e {
            Errno::ELOOP | Errno::ENOTDIR => {
                reject(entry, "path passes through a symlink or non-directory")
            }
            Errno::EXDEV => reject(entry, "path escapes the target"),
            e => Error::Io {
                path: self.host_path(at),
                source: e.into(),
            },
        };
        if comps.is_empty() {
            return self.root.try_clone().at(self.target);
        }
        let joined = comps.join(&b'/');
        match openat2(self.root.as_fd(), &cstr(&joined)[..], how()) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) if create => {}
            Err(e) => return Err(map(e, comps)),
        }
        let mut fd = self.root.try_clone().at(self.target)?;
        for (i, c) in comps.iter().enumerate() {
            let name = cstr(c);
            fd = match openat2(fd.as_fd(), &name[..], how()) {
                Ok(next) => next,
                Err(Errno::ENOENT) => {
                    mkdirat(fd.as_fd(), &name[..], Mode::from_bits_truncate(0o755))
                        .at(self.host_path(&comps[..=i]))?;
                    openat2(fd.as_fd(), &name[..], how()).map_err(|e| map(e, &comps[..=i]))?
                }
                Err(e) => return Err(map(e, &comps[..=i])),
            };
        }
        Ok(fd)
    }

    /// The parent directory of `comps`, from the one-entry cache when consecutive entries
    /// share it (tars list a directory's files together). The caller hands it back with
    /// [`Self::keep_parent`]. Only entries in that directory can remove anything (a
    /// whiteout, a replaced entry, an opaque marker all act on its children), so a cached
    /// fd never outlives the path it was opened by.
    /// The same holds for its owner, mode and ACL: only an entry for the directory itself
    /// changes them, and its parent is another directory.
    fn take_parent(&mut self, comps: &[Vec<u8>], entry: &str) -> Result<Parent> {
        let parent = &comps[..comps.len() - 1];
        match self.cached_parent.take() {
            Some(p) if p.comps == parent => Ok(p),
            _ => {
                let fd = self.open_dir(parent, entry, true)?;
                let st = nix::sys::stat::fstat(&fd).at(self.host_path(parent))?;
                Ok(Parent {
                    comps: parent.to_vec(),
                    new_owner: (st.st_gid == self.ids.1.as_raw()).then_some(self.ids),
                    umask_only: !has_default_acl(fd.as_fd()),
                    fd,
                })
            }
        }
    }

    fn keep_parent(&mut self, parent: Parent) {
        self.cached_parent = Some(parent);
    }

    /// Run `create` (an `*at` call making `name` in `dir`); if something is already there,
    /// remove it (without following symlinks) and try once more. Creating first saves a
    /// stat per entry when the target is empty, the common case.
    fn create_replacing<T>(
        &mut self,
        dir: BorrowedFd,
        name: &[u8],
        host: &Path,
        mut create: impl FnMut() -> nix::Result<T>,
    ) -> Result<T> {
        match create() {
            Err(Errno::EEXIST) => {
                self.remove_at(dir, name, host)?;
                create().at(host)
            }
            r => r.at(host),
        }
    }

    /// Remove `name` in `dir` (recursively for directories), never following symlinks.
    /// Returns whether something was there.
    fn remove_at(&mut self, dir: BorrowedFd, name: &[u8], host: &Path) -> Result<bool> {
        let c = cstr(name);
        let st =
            match nix::sys::stat::fstatat(dir, &c[..], nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => return Ok(false),
                Err(e) => {
                    return Err(Error::Io {
                        path: host.to_path_buf(),
                        source: e.into(),
                    })
                }
            };
        if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFDIR {
            self.clear_dir(dir, name, host, &|_| false)?;
            unlinkat(dir, &c[..], UnlinkatFlags::RemoveDir).at(host)?;
        } else {
            unlinkat(dir, &c[..], UnlinkatFlags::NoRemoveDir).at(host)?;
        }
        Ok(true)
    }

    /// Remove the children of directory `dir/name` for which `keep` is false.
    fn clear_dir(
        &mut self,
        dir: BorrowedFd,
        name: &[u8],
        host: &Path,
        keep: &dyn Fn(&[u8]) -> bool,
    ) -> Result<()> {
        let fd = openat(
            dir,
            &cstr(name)[..],
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .at(host)?;
        let children: Vec<Vec<u8>> = nix::dir::Dir::from_fd(fd.try_clone().at(host)?)
            .at(host)?
            .into_iter()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_bytes().to_vec())
            .filter(|n| n != b"." && n != b"..")
            .collect();
        for child in children {
            if !keep(&child) {
                self.remove_at(fd.as_fd(), &child, &host.join(OsStr::from_bytes(&child)))?;
            }
        }
        Ok(())
    }

    fn apply_entry<R: Read>(&mut self, e: tar::Entry<'_, R>) -> Result<u64> {
        let raw = e.path_bytes().into_owned();
        let entry = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_path(&raw, &entry)?;
        if comps.is_empty() {
            return Ok(0); // the layer root itself ("./"): the target already exists
        }
        let parent = self.take_parent(&comps, &entry)?;
        let r = self.apply_in(e, &comps, &parent, &entry);
        self.keep_parent(parent);
        r
    }

    /// Apply entry `e` at `comps`, in directory `parent`.
    fn apply_in<R: Read>(
        &mut self,
        mut e: tar::Entry<'_, R>,
        comps: &[Vec<u8>],
        parent: &Parent,
        entry: &str,
    ) -> Result<u64> {
        let pfd = parent.fd.as_fd();
        let (name, parent_comps) = comps.split_last().expect("caller checked");
        let host = self.host_path(comps);

        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if name == OPAQUE_MARKER.as_bytes() {
                return self.opaque(pfd, parent_comps);
            }
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                tracing::debug!(entry, "ignoring reserved whiteout-prefixed entry");
                return Ok(0);
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(reject(entry, "whiteout names no file of its directory"));
            }
            let victim = self.host_path(parent_comps).join(OsStr::from_bytes(hidden));
            self.remove_at(pfd, hidden, &victim)?;
            if self.mode == WhiteoutMode::Overlay {
                mknodat(pfd, &cstr(hidden)[..], SFlag::S_IFCHR, Mode::empty(), 0).at(&victim)?;
            }
            return Ok(0);
        }

        let hdr = e.header().clone();
        let kind = hdr.entry_type();
        let pax = self.pax(&mut e, entry)?;
        let c = cstr(name);
        let perm = Mode::from_bits_truncate(
            hdr.mode()
                .map_err(|err| reject(entry, &format!("bad mode: {err}")))?
                & 0o7777,
        );
        let id = |field: &str, pax: Option<u64>, hdr: std::io::Result<u64>| -> Result<u32> {
            let v = match pax {
                Some(v) => v,
                None => hdr.map_err(|err| reject(entry, &format!("bad {field}: {err}")))?,
            };
            u32::try_from(v).map_err(|_| reject(entry, &format!("{field} {v} out of range")))
        };
        let uid = Uid::from_raw(id("uid", pax.uid, hdr.uid())?);
        let gid = Gid::from_raw(id("gid", pax.gid, hdr.gid())?);
        let mtime = pax.mtime.unwrap_or_else(|| hdr.mtime().unwrap_or(0) as i64);
        let ts = TimeSpec::new(mtime, 0);
        let nofollow = nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW;
        let mut written = 0;

        if kind.is_dir() {
            match mkdirat(pfd, &c[..], Mode::from_bits_truncate(0o700)) {
                Ok(()) => {}
                // An existing directory is kept with its content (a layer re-lists the
                // directories it changes); anything else in the way is replaced.
                Err(Errno::EEXIST) => {
                    let is_dir = nix::sys::stat::fstatat(pfd, &c[..], nofollow)
                        .is_ok_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits());
                    if !is_dir {
                        self.remove_at(pfd, name, &host)?;
                        mkdirat(pfd, &c[..], Mode::from_bits_truncate(0o700)).at(&host)?;
                    }
                }
                Err(err) => return Err(err).at(&host),
            }
            fchownat(pfd, &c[..], Some(uid), Some(gid), nofollow).at(&host)?;
            fchmodat(pfd, &c[..], perm, FchmodatFlags::FollowSymlink).at(&host)?;
            self.dir_times.push((comps.to_vec(), mtime));
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            // Created with its final mode when creation alone gives exactly that (no
            // set-ID or sticky bit, nothing the umask removes, no default ACL), else 0600
            // until the data and owner are in place, then chmod. Likewise chown only when
            // the owner creation gave is not the entry's.
            let final_mode = parent.umask_only
                && self
                    .umask
                    .is_some_and(|umask| perm.bits() & (0o7000 | umask) == 0);
            let create_mode = if final_mode {
                perm
            } else {
                Mode::from_bits_truncate(0o600)
            };
            let flags = OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_WRONLY
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC;
            let fd = self
                .create_replacing(pfd, name, &host, || openat(pfd, &c[..], flags, create_mode))?;
            let f = File::from(fd);
            written = self.copy_data(&mut e, &f).at(&host)?;
            if parent.new_owner != Some((uid, gid)) {
                fchown(f.as_fd(), Some(uid), Some(gid)).at(&host)?;
            }
            if !final_mode {
                fchmod(f.as_fd(), perm).at(&host)?;
            }
            futimens(f.as_fd(), &ts, &ts).at(&host)?;
        } else if kind.is_symlink() {
            let target = e
                .link_name_bytes()
                .ok_or_else(|| reject(entry, "symlink without target"))?;
            let target = cstr(&target);
            self.create_replacing(pfd, name, &host, || symlinkat(&target[..], pfd, &c[..]))?;
            fchownat(pfd, &c[..], Some(uid), Some(gid), nofollow).at(&host)?;
            utimensat(pfd, &c[..], &ts, &ts, UtimensatFlags::NoFollowSymlink).at(&host)?;
        } else if kind.is_hard_link() {
            let raw_target = e
                .link_name_bytes()
                .ok_or_else(|| reject(entry, "hardlink without target"))?;
            let tcomps = clean_path(&raw_target, entry)?;
            let Some((tname, tparent)) = tcomps.split_last() else {
                return Err(reject(entry, "hardlink to the layer root"));
            };
            let tdir = self.open_dir(tparent, entry, false)?;
            let tname = cstr(tname);
            let link = || {
                linkat(
                    tdir.as_fd(),
                    &tname[..],
                    pfd,
                    &c[..],
                    nix::fcntl::AtFlags::empty(),
                )
            };
            let linked = match link() {
                Err(Errno::EEXIST) => {
                    self.remove_at(pfd, name, &host)?;
                    link()
                }
                r => r,
            };
            linked.map_err(|err| {
                let target = String::from_utf8_lossy(&raw_target);
                reject(entry, &format!("hardlink target {target:?}: {err}"))
            })?;
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            let sflag = if kind.is_fifo() {
                SFlag::S_IFIFO
            } else if kind.is_block_special() {
                SFlag::S_IFBLK
            } else {
                SFlag::S_IFCHR
            };
            let major = hdr.device_major().ok().flatten().unwrap_or(0) as u64;
            let minor = hdr.device_minor().ok().flatten().unwrap_or(0) as u64;
            let dev = nix::sys::stat::makedev(major, minor);
            self.create_replacing(pfd, name, &host, || mknodat(pfd, &c[..], sflag, perm, dev))?;
            fchownat(pfd, &c[..], Some(uid), Some(gid), nofollow).at(&host)?;
            fchmodat(pfd, &c[..], perm, FchmodatFlags::FollowSymlink).at(&host)?;
            utimensat(pfd, &c[..], &ts, &ts, UtimensatFlags::NoFollowSymlink).at(&host)?;
        } else {
            return Err(reject(entry, &format!("unsupported entry type {kind:?}")));
        }
        for (k, v) in pax.xattrs {
            set_xattr(pfd, name, &k, &v, &host)?;
        }
        if self.mode == WhiteoutMode::Apply {
            // Ancestors too: a tar may omit the dir entries of the paths it creates. Every
            // path in the set has its ancestors there, so stop at the first one present.
            for n in (1..=comps.len()).rev() {
                if !self.created.insert(comps[..n].join(&b'/')) {
                    break;
                }
            }
        }
        Ok(written)
    }

    /// Copy an entry's data into `f` through one large buffer: one write per file for
    /// most files (io::copy's 8 KiB buffer costs a syscall per 8 KiB).
    fn copy_data(&mut self, src: &mut impl Read, mut f: &File) -> io::Result<u64> {
        let mut total = 0;
        loop {
            let n = fill(src, &mut self.buf)?;
            f.write_all(&self.buf[..n])?;
            total += n as u64;
            if n < self.buf.len() {
                return Ok(total);
            }
        }
    }

    /// `.wh..wh..opq` in the directory `dir_comps` (opened as `dir`).
    fn opaque(&mut self, dir: BorrowedFd, dir_comps: &[Vec<u8>]) -> Result<u64> {
        let host = self.host_path(dir_comps);
        match self.mode {
            WhiteoutMode::Overlay => {
                // "/." so the magic link is an intermediate component (followed) and
                // the xattr lands on the directory, not on the link.
                let proc = format!("/proc/self/fd/{}/.", dir.as_raw_fd());
                set_xattr_path(&proc, OVERLAY_OPAQUE_XATTR, b"y", &host, true)?;
            }
            WhiteoutMode::Apply => {
                let prefix = dir_comps.join(&b'/');
                let created = std::mem::take(&mut self.created);
                let keep = |child: &[u8]| {
                    let mut p = prefix.clone();
                    if !p.is_empty() {
                        p.push(b'/');
                    }
                    p.extend_from_slice(child);
                    created.contains(&p)
                };
                let r = self.clear_dir(dir, b".", &host, &keep);
                self.created = created;
                r?;
            }
        }
        Ok(0)
    }

    /// Metadata from the entry's PAX records: `uid`/`gid`/`mtime` (which override the
    /// ustar fields, e.g. for IDs too large for them) and `SCHILY.xattr.*` xattrs.
    /// OverlayFS's own `trusted.overlay.*` namespace is refused: a layer setting it could
    /// redirect lookups to other layers.
    fn pax<R: Read>(&self, e: &mut tar::Entry<'_, R>, entry: &str) -> Result<PaxMeta> {
        let mut out = PaxMeta::default();
        let Some(pax) = e
            .pax_extensions()
            .map_err(|err| reject(entry, &format!("bad PAX header: {err}")))?
        else {
            return Ok(out);
        };
        for ext in pax {
            let ext = ext.map_err(|err| reject(entry, &format!("bad PAX record: {err}")))?;
            let Ok(key) = ext.key() else { continue };
            let number = || {
                ext.value()
                    .ok()
                    .and_then(|v| v.split('.').next())
                    .and_then(|v| v.parse::<i64>().ok())
                    .ok_or_else(|| reject(entry, &format!("PAX {key} is not a number")))
            };
            match key {
                "uid" => {
                    out.uid = Some(
                        number()?
                            .try_into()
                            .map_err(|_| reject(entry, "negative PAX uid"))?,
                    )
                }
                "gid" => {
                    out.gid = Some(
                        number()?
                            .try_into()
                            .map_err(|_| reject(entry, "negative PAX gid"))?,
                    )
                }
                "mtime" => out.mtime = Some(number()?),
                _ => {}
            }
            if let Some(name) = key.strip_prefix(PAX_XATTR_PREFIX) {
                if name.starts_with("trusted.overlay.") {
                    return Err(reject(
                        entry,
                        &format!("xattr {name} is reserved for OverlayFS"),
                    ));
                }
                out.xattrs
                    .push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
        Ok(out)
    }

    /// Directory mtimes last: creating children changed them.
    fn finish(&mut self) -> Result<()> {
        for (comps, mtime) in std::mem::take(&mut self.dir_times) {
            let ts = TimeSpec::new(mtime, 0);
            let (dir, name) = comps.split_at(comps.len() - 1);
            let Ok(fd) = self.open_dir(dir, "", false) else {
                continue;
            }; // removed by a later entry
            match utimensat(
                fd.as_fd(),
                &cstr(&name[0])[..],
                &ts,
                &ts,
                UtimensatFlags::NoFollowSymlink,
            ) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => {
                    return Err(Error::Io {
                        path: self.host_path(&comps),
                        source: e.into(),
                    })
                }
            }
        }
        Ok(())
    }
}

/// The process umask, from /proc/self/status: reading it with umask(2) means setting it,
/// which would race with files other threads create meanwhile.
fn current_umask() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let value = status.lines().find_map(|l| l.strip_prefix("Umask:"))?;
    u32::from_str_radix(value.trim(), 8).ok()
}

/// Whether directory `dir` has a default ACL, which then sets new files' modes instead of
/// the umask. When unsure (an error other than "none"), says yes: files then get chmod.
fn has_default_acl(dir: BorrowedFd) -> bool {
    let Ok(path) = CString::new(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
        return true;
    };
    // SAFETY: path and the name are NUL-terminated; a null buffer of size 0 only asks
    // for the value's size.
    let rc = unsafe {
        libc::getxattr(
            path.as_ptr(),
            c"system.posix_acl_default".as_ptr(),
            std::ptr::null_mut(),
            0,
        )
    };
    rc >= 0
        || !matches!(
            io::Error::last_os_error().raw_os_error(),
            Some(libc::ENODATA) | Some(libc::ENOTSUP)
        )
}

fn set_xattr(dir: BorrowedFd, name: &[u8], key: &str, value: &[u8], host: &Path) -> Result<()> {
    let path = format!(
        "/proc/self/fd/{}/{}",
        dir.as_raw_fd(),
        String::from_utf8_lossy(name)
    );
    if String::from_utf8(name.to_vec()).is_err() {
        return Err(Error::UnsafeEntry {
            entry: host.display().to_string(),
            reason: "xattr on non-UTF-8 name".into(),
        });
    }
    set_xattr_path(&path, key, value, host, false)
}

/// lsetxattr on a path relative to an already-resolved directory fd (via /proc/self/fd),
/// so the final component is not followed. Unless `required`, ENOTSUP (filesystem
/// without that namespace) is logged and skipped, as Docker does.
fn set_xattr_path(path: &str, key: &str, value: &[u8], host: &Path, required: bool) -> Result<()> {
    let p = CString::new(path).map_err(|_| Error::UnsafeEntry {
        entry: host.display().to_string(),
        reason: "NUL in name".into(),
    })?;
    let k = CString::new(key).map_err(|_| Error::UnsafeEntry {
        entry: host.display().to_string(),
        reason: "NUL in xattr name".into(),
    })?;
    // SAFETY: p and k are valid NUL-terminated strings; value points to value.len() bytes.
    let rc = unsafe {
        libc::lsetxattr(
            p.as_ptr(),
            k.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if !required && err.raw_os_error() == Some(libc::ENOTSUP) {
            tracing::warn!(path = %host.display(), xattr = key, "filesystem does not support xattr; skipped");
            return Ok(());
        }
        return Err(Error::Io {
            path: host.to_path_buf(),
            source: err,
        });
    }
    Ok(())
}

/// Open a file inside `dir`, resolving symlinks as if `dir` were `/` (never outside it).
/// A missing file gives `None`.
pub fn open_in_root(dir: &Path, rel: &str, flags: OFlag) -> Result<Option<File>> {
    let root = File::open(dir).at(dir)?;
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&root, rel, how) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(Error::Io {
            path: dir.join(rel.trim_start_matches('/')),
            source: e.into(),
        }),
    }
}

/// What a file type is called in errors.
fn file_kind(mode: u32) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symlink",
        _ => "not a regular file",
    }
}

/// Check that an opened file is a regular file; returns its size.
fn regular_size(f: &File, path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    let meta = f.metadata().at(path)?;
    if !meta.is_file() {
        return Err(Error::InputFile {
            path: path.to_path_buf(),
            reason: format!("is {}, not a regular file", file_kind(meta.mode())),
        });
    }
    Ok(meta.len())
}

/// Open `path` (symlinks followed: a user names it) for reading if it is a regular file,
/// and return it with its size. Anything else is refused before a byte is read: opening a
/// FIFO would block until a writer comes (O_NONBLOCK makes it return at once), and a
/// device such as /dev/zero never ends.
pub fn open_regular(path: &Path) -> Result<(File, u64)> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC | libc::O_NOCTTY)
        .open(path)
        .at(path)?;
    let size = regular_size(&f, path)?;
    Ok((f, size))
}

/// [`open_regular`] for a file inside `dir`, resolved as by [`open_in_root`] and without
/// following a symlink in the last component (an archive member that is a link to
/// /dev/zero). A missing file gives `None`.
pub(crate) fn open_regular_in(dir: &Path, rel: &str) -> Result<Option<(File, u64)>> {
    let path = dir.join(rel.trim_start_matches('/'));
    let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOFOLLOW | OFlag::O_NOCTTY;
    let f = match open_in_root(dir, rel, flags) {
        Ok(Some(f)) => f,
        Ok(None) => return Ok(None),
        Err(Error::Io { source, .. }) if source.raw_os_error() == Some(libc::ELOOP) => {
            return Err(Error::InputFile {
                path,
                reason: "is a symlink, not a regular file".into(),
            })
        }
        Err(e) => return Err(e),
    };
    let size = regular_size(&f, &path)?;
    Ok(Some((f, size)))
}

/// Read all of `f` but refuse more than `limit` bytes (reads at most `limit + 1`).
pub(crate) fn read_limited(f: impl Read, limit: u64, path: &Path) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    f.take(limit + 1).read_to_end(&mut bytes).at(path)?;
    if bytes.len() as u64 > limit {
        return Err(Error::InputFile {
            path: path.to_path_buf(),
            reason: format!("larger than the limit of {limit} bytes"),
        });
    }
    Ok(bytes)
}

/// Size of the chunks of decoded layer passed from the decoder thread to the unpacker,
/// and of the buffer file data is written from.
const CHUNK: usize = 256 << 10;
/// Decoded chunks queued ahead of the unpacker: bounds memory to ~1 MiB per unpack.
const CHUNKS_AHEAD: usize = 4;

/// Read from `src` until `buf` is full or the stream ends; returns the bytes read.
fn fill(src: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match src.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// A chunk of the decoded layer stream: `buf[..len]`, `len > 0`.
struct Chunk {
    buf: Vec<u8>,
    len: usize,
}

/// The decoder thread: decompress and hash the whole blob, sending it on in chunks and
/// reusing the buffers the unpacker hands back. Returns the digest and length of the
/// decoded stream, or `None` when the unpacker hung up first (it failed, and its error
/// is the one to report).
fn decode(
    blob: impl Read,
    compression: Compression,
    chunks: SyncSender<Chunk>,
    spent: Receiver<Vec<u8>>,
) -> io::Result<Option<(Digest, u64)>> {
    let decoded = compression.decoder(BufReader::with_capacity(1 << 17, blob))?;
    let mut hashing = HashingReader::new(decoded);
    loop {
        let mut buf = spent.try_recv().unwrap_or_else(|_| vec![0; CHUNK]);
        let len = fill(&mut hashing, &mut buf)?;
        let end = len < buf.len();
        if len > 0 && chunks.send(Chunk { buf, len }).is_err() {
            return Ok(None);
        }
        if end {
            return hashing.finish().map(Some);
        }
    }
}

/// The unpacker's side of the pipeline: the decoded stream as a `Read`.
struct ChunkReader {
    chunks: Receiver<Chunk>,
    spent: Sender<Vec<u8>>,
    cur: Chunk,
    pos: usize,
    /// The decoder stopped sending: the stream ended, or decoding failed.
    ended: bool,
}

impl ChunkReader {
    fn new(chunks: Receiver<Chunk>, spent: Sender<Vec<u8>>) -> Self {
        ChunkReader {
            chunks,
            spent,
            cur: Chunk {
                buf: Vec::new(),
                len: 0,
            },
            pos: 0,
            ended: false,
        }
    }

    /// Consume what follows the tar's end marker, so the digest covers the whole stream.
    fn drain(&mut self) {
        while let Ok(c) = self.chunks.recv() {
            // The decoder is still running, so the send cannot fail.
            let _ = self.spent.send(c.buf);
        }
        self.ended = true;
    }
}

impl Read for ChunkReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.cur.len {
            let Ok(next) = self.chunks.recv() else {
                self.ended = true;
                return Ok(0);
            };
            let old = std::mem::replace(&mut self.cur, next);
            if !old.buf.is_empty() {
                // Ignored when the decoder already returned: the buffer is just freed.
                let _ = self.spent.send(old.buf);
            }
            self.pos = 0;
        }
        let n = out.len().min(self.cur.len - self.pos);
        out[..n].copy_from_slice(&self.cur.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Apply every entry of the tar `stream` with `u`, then the directory mtimes.
fn apply_all(u: &mut Unpacker, stream: impl Read, target: &Path) -> Result<UnpackStats> {
    let mut stats = UnpackStats::default();
    let mut archive = tar::Archive::new(stream);
    for e in archive.entries().at(target)? {
        let e = e.map_err(|err| Error::Archive {
            path: target.to_path_buf(),
            reason: format!("corrupt layer tar: {err}"),
        })?;
        stats.bytes += u.apply_entry(e)?;
        stats.entries += 1;
    }
    u.finish()?;
    Ok(stats)
}

/// Unpack one layer blob (`compression` as its media type says) onto `target`, streaming,
/// and return the digest of the uncompressed stream (its diff_id) with counts.
///
/// Decompression and hashing run on a second thread, a few chunks ahead of the entries
/// being written, so inflating overlaps the filesystem work.
pub fn unpack_layer(
    blob: impl Read + Send,
    compression: Compression,
    target: &Path,
    mode: WhiteoutMode,
) -> Result<UnpackStats> {
    let mut u = Unpacker::new(target, mode)?;
    let (chunk_tx, chunk_rx) = mpsc::sync_channel(CHUNKS_AHEAD);
    let (spent_tx, spent_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let decoder = std::thread::Builder::new()
            .name("layer-decoder".into())
            .spawn_scoped(s, move || decode(blob, compression, chunk_tx, spent_rx))
            .at(target)?;
        let mut reader = ChunkReader::new(chunk_rx, spent_tx);
        let applied = apply_all(&mut u, &mut reader, target);
        if applied.is_ok() {
            reader.drain();
        }
        let hit_end = reader.ended;
        drop(reader); // a decoder blocked on a full queue now returns
        let decoded = decoder.join().expect("layer decoder thread panicked");
        match (applied, decoded) {
            // A stream cut short by a decoding error can look like a short or broken tar:
            // the decoding error is the cause. An unpack error before the stream ended
            // came first and stands.
            (Ok(_), Err(err)) | (Err(_), Err(err)) if hit_end => Err(Error::Archive {
                path: target.to_path_buf(),
                reason: format!("reading the layer stream ({compression:?}): {err}"),
            }),
            (Err(e), _) => Err(e),
            (Ok(mut stats), Ok(Some((diff_id, _)))) => {
                stats.diff_id = Some(diff_id);
                Ok(stats)
            }
            (Ok(_), Ok(None)) => unreachable!("the unpacker drains the stream before hanging up"),
            (Ok(_), Err(_)) => unreachable!("a successful unpack read to the end"),
        }
    })
}
