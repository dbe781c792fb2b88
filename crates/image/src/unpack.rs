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

use std::collections::HashSet;
use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io::{self, BufReader, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

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
    cached_parent: Option<(Vec<Vec<u8>>, OwnedFd)>,
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

    fn parent(&mut self, comps: &[Vec<u8>], entry: &str) -> Result<OwnedFd> {
        let parent = &comps[..comps.len() - 1];
        if let Some((p, fd)) = &self.cached_parent {
            if p == parent {
                return fd.try_clone().at(self.target);
            }
        }
        let fd = self.open_dir(parent, entry, true)?;
        self.cached_parent = Some((parent.to_vec(), fd.try_clone().at(self.target)?));
        Ok(fd)
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
        // Anything we remove may be the cached parent (or one of its ancestors).
        self.cached_parent = None;
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

    fn apply_entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<u64> {
        let raw = e.path_bytes().into_owned();
        let entry = String::from_utf8_lossy(&raw).into_owned();
        let comps = clean_path(&raw, &entry)?;
        let Some(name) = comps.last().cloned() else {
            return Ok(0); // the layer root itself ("./"): the target already exists
        };
        let host = self.host_path(&comps);
        let pfd = self.parent(&comps, &entry)?;
        let parent_comps = &comps[..comps.len() - 1];

        if let Some(hidden) = name.strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            if name == OPAQUE_MARKER.as_bytes() {
                return self.opaque(pfd.as_fd(), parent_comps);
            }
            if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
                tracing::debug!(entry, "ignoring reserved whiteout-prefixed entry");
                return Ok(0);
            }
            if hidden.is_empty() || hidden == b"." || hidden == b".." {
                return Err(reject(&entry, "whiteout names no file of its directory"));
            }
            let victim = self.host_path(parent_comps).join(OsStr::from_bytes(hidden));
            self.remove_at(pfd.as_fd(), hidden, &victim)?;
            if self.mode == WhiteoutMode::Overlay {
                mknodat(
                    pfd.as_fd(),
                    &cstr(hidden)[..],
                    SFlag::S_IFCHR,
                    Mode::empty(),
                    0,
                )
                .at(&victim)?;
            }
            return Ok(0);
        }

        let hdr = e.header().clone();
        let kind = hdr.entry_type();
        let pax = self.pax(&mut e, &entry)?;
        let c = cstr(&name);
        let perm = Mode::from_bits_truncate(
            hdr.mode()
                .map_err(|err| reject(&entry, &format!("bad mode: {err}")))?
                & 0o7777,
        );
        let id = |field: &str, pax: Option<u64>, hdr: std::io::Result<u64>| -> Result<u32> {
            let v = match pax {
                Some(v) => v,
                None => hdr.map_err(|err| reject(&entry, &format!("bad {field}: {err}")))?,
            };
            u32::try_from(v).map_err(|_| reject(&entry, &format!("{field} {v} out of range")))
        };
        let uid = Uid::from_raw(id("uid", pax.uid, hdr.uid())?);
        let gid = Gid::from_raw(id("gid", pax.gid, hdr.gid())?);
        let mtime = pax.mtime.unwrap_or_else(|| hdr.mtime().unwrap_or(0) as i64);
        let ts = TimeSpec::new(mtime, 0);
        let mut written = 0;

        if kind.is_dir() {
            let existing = nix::sys::stat::fstatat(
                pfd.as_fd(),
                &c[..],
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .ok();
            let is_dir = existing
                .is_some_and(|st| st.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits());
            if !is_dir {
                self.remove_at(pfd.as_fd(), &name, &host)?;
                mkdirat(pfd.as_fd(), &c[..], Mode::from_bits_truncate(0o700)).at(&host)?;
            }
            fchownat(
                pfd.as_fd(),
                &c[..],
                Some(uid),
                Some(gid),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .at(&host)?;
            fchmodat(pfd.as_fd(), &c[..], perm, FchmodatFlags::FollowSymlink).at(&host)?;
            self.dir_times.push((comps.clone(), mtime));
        } else {
            self.remove_at(pfd.as_fd(), &name, &host)?;
            if kind.is_file() || kind == tar::EntryType::Continuous {
                let fd = openat(
                    pfd.as_fd(),
                    &c[..],
                    OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_WRONLY
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    Mode::from_bits_truncate(0o600),
                )
                .at(&host)?;
                let mut f = File::from(fd);
                written = io::copy(&mut e, &mut f).at(&host)?;
                fchown(f.as_fd(), Some(uid), Some(gid)).at(&host)?;
                fchmod(f.as_fd(), perm).at(&host)?;
                futimens(f.as_fd(), &ts, &ts).at(&host)?;
            } else if kind.is_symlink() {
                let target = e
                    .link_name_bytes()
                    .ok_or_else(|| reject(&entry, "symlink without target"))?;
                symlinkat(&cstr(&target)[..], pfd.as_fd(), &c[..]).at(&host)?;
                fchownat(
                    pfd.as_fd(),
                    &c[..],
                    Some(uid),
                    Some(gid),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .at(&host)?;
                utimensat(
                    pfd.as_fd(),
                    &c[..],
                    &ts,
                    &ts,
                    UtimensatFlags::NoFollowSymlink,
                )
                .at(&host)?;
            } else if kind.is_hard_link() {
                let raw_target = e
                    .link_name_bytes()
                    .ok_or_else(|| reject(&entry, "hardlink without target"))?;
                let tcomps = clean_path(&raw_target, &entry)?;
                let Some(tname) = tcomps.last() else {
                    return Err(reject(&entry, "hardlink to the layer root"));
                };
                let tdir = self.open_dir(&tcomps[..tcomps.len() - 1], &entry, false)?;
                linkat(
                    tdir.as_fd(),
                    &cstr(tname)[..],
                    pfd.as_fd(),
                    &c[..],
                    nix::fcntl::AtFlags::empty(),
                )
                .map_err(|err| {
                    reject(
                        &entry,
                        &format!(
                            "hardlink target {:?}: {err}",
                            String::from_utf8_lossy(&raw_target)
                        ),
                    )
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
                mknodat(
                    pfd.as_fd(),
                    &c[..],
                    sflag,
                    perm,
                    nix::sys::stat::makedev(major, minor),
                )
                .at(&host)?;
                fchownat(
                    pfd.as_fd(),
                    &c[..],
                    Some(uid),
                    Some(gid),
                    nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
                )
                .at(&host)?;
                fchmodat(pfd.as_fd(), &c[..], perm, FchmodatFlags::FollowSymlink).at(&host)?;
                utimensat(
                    pfd.as_fd(),
                    &c[..],
                    &ts,
                    &ts,
                    UtimensatFlags::NoFollowSymlink,
                )
                .at(&host)?;
            } else {
                return Err(reject(&entry, &format!("unsupported entry type {kind:?}")));
            }
        }
        for (k, v) in pax.xattrs {
            set_xattr(pfd.as_fd(), &name, &k, &v, &host)?;
        }
        if self.mode == WhiteoutMode::Apply {
            // Ancestors too: a tar may omit the dir entries of the paths it creates.
            for n in 1..=comps.len() {
                self.created.insert(comps[..n].join(&b'/'));
            }
        }
        Ok(written)
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
                let parent = self.open_dir(dir_comps, "", false)?;
                let r = self.clear_dir(parent.as_fd(), b".", &host, &keep);
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
pub(crate) fn open_in_root(dir: &Path, rel: &str, flags: OFlag) -> Result<Option<File>> {
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

/// Unpack one layer blob (`compression` as its media type says) onto `target`, streaming,
/// and return the digest of the uncompressed stream (its diff_id) with counts.
pub fn unpack_layer(
    blob: impl Read,
    compression: Compression,
    target: &Path,
    mode: WhiteoutMode,
) -> Result<UnpackStats> {
    let decoded = compression
        .decoder(BufReader::with_capacity(1 << 17, blob))
        .at(target)?;
    let mut hashing = HashingReader::new(decoded);
    let mut u = Unpacker::new(target, mode)?;
    let mut stats = UnpackStats::default();
    {
        let mut archive = tar::Archive::new(&mut hashing);
        for e in archive.entries().at(target)? {
            let e = e.map_err(|err| Error::Archive {
                path: target.to_path_buf(),
                reason: format!("corrupt layer tar: {err}"),
            })?;
            stats.bytes += u.apply_entry(e)?;
            stats.entries += 1;
        }
    }
    u.finish()?;
    let (diff_id, _) = hashing.finish().at(target)?;
    stats.diff_id = Some(diff_id);
    Ok(stats)
}
