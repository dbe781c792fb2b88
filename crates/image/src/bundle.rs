//! Container bundles: `config.json` + an OverlayFS rootfs stacked on the image's snapshots,
//! with this container's own upper/work dirs under `<root>/containers/<id>/`.
//! The overlay is mounted with the new mount API (one `lowerdir+` per layer, no limit from
//! the one-page option string), else with mount(2); when both fail (no OverlayFS) the
//! layers are copied flat into the rootfs instead.

use std::ffi::{CStr, CString};
use std::fs;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::error::{from_json, Error, IoContext, Result};
use crate::oci::Compression;
use crate::snapshot;
use crate::spec::{build_spec, RunOverrides, VolumeMount};
use crate::store::{temp_name, write_atomic, Image, ImageId, Store, TempPath};
use crate::unpack::{open_in_root, unpack_layer, WhiteoutMode};

const RECORD: &str = "container.json";

/// A prepared bundle. Until [`Bundle::commit`] the container counts as being created:
/// this process holds a lock on its directory, and once the lock is gone (the creator
/// died, or dropped the bundle uncommitted) the container is abandoned, listed by
/// [`Store::abandoned_bundles`] and removed by [`Store::prune`]. Call [`Bundle::remove`]
/// (or [`Store::remove_bundle`]) when the container is deleted.
#[derive(Debug)]
pub struct Bundle {
    pub id: String,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// false when the rootfs is a flat copy because OverlayFS was unavailable.
    pub overlay: bool,
    store: Store,
    /// flock on the container directory while it is being created.
    creating: Option<Flock<fs::File>>,
}

impl Bundle {
    /// Unmount the rootfs and delete the container's upper/work dirs and volumes.
    pub fn remove(self) -> Result<()> {
        self.store.remove_bundle(&self.id)
    }

    /// Mark the container complete (the caller has recorded it wherever it keeps its
    /// containers); from now on only `remove_bundle` deletes it.
    pub fn commit(&mut self) -> Result<()> {
        let cdir = self.store.root().join("containers").join(&self.id);
        let path = cdir.join(RECORD);
        let mut rec: ContainerRecord = from_json(&fs::read(&path).at(&path)?, RECORD)?;
        rec.complete = true;
        write_atomic(&path, &serde_json::to_vec(&rec).expect("record serialises"))?;
        self.creating = None;
        Ok(())
    }
}

/// On-disk record of a container, so removal and GC work from any process.
#[derive(Serialize, Deserialize)]
struct ContainerRecord {
    bundle: PathBuf,
    rootfs: PathBuf,
    overlay: bool,
    image: ImageId,
    chain_ids: Vec<Digest>,
    /// false from the start of `create_bundle` until [`Bundle::commit`]; records written
    /// before the field existed are complete.
    #[serde(default = "yes")]
    complete: bool,
}

fn yes() -> bool {
    true
}

/// A container whose creator went away before committing it (see [`Bundle`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AbandonedBundle {
    pub id: String,
    /// The image it was being made from, when its record got that far.
    pub image: Option<ImageId>,
    /// The bundle directory the creator asked for.
    pub bundle: Option<PathBuf>,
    /// When its directory was made.
    pub created: Option<std::time::SystemTime>,
}

/// Name prefix of a container directory before it is renamed into place (see
/// `create_bundle`); one left by a crash is empty and removed by `prune`.
pub(crate) const CREATING_PREFIX: &str = ".creating-";

/// Try to take the creation lock of a container directory without waiting: `None` when
/// another process holds it (that container is being created right now).
fn try_lock_dir(cdir: &Path) -> Result<Option<Flock<fs::File>>> {
    let f = fs::File::open(cdir).at(cdir)?;
    match Flock::lock(f, FlockArg::LockExclusiveNonblock) {
        Ok(l) => Ok(Some(l)),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).at(cdir),
    }
}

fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::Bundle {
            id: id.to_string(),
            reason: "ID must match [A-Za-z0-9][A-Za-z0-9_.-]{0,127}".into(),
        })
    }
}

/// Every container's ID and record.
fn containers(store: &Store) -> Result<Vec<(String, ContainerRecord)>> {
    let dir = store.root().join("containers");
    let mut out = Vec::new();
    for e in fs::read_dir(&dir).at(&dir)? {
        let e = e.at(&dir)?;
        let p = e.path().join(RECORD);
        if let Ok(bytes) = fs::read(&p) {
            let rec = from_json::<ContainerRecord>(&bytes, &p.display().to_string())?;
            out.push((e.file_name().to_string_lossy().into_owned(), rec));
        }
    }
    Ok(out)
}

/// Chain IDs used by existing containers (kept by `prune`).
pub(crate) fn snapshots_in_use(store: &Store) -> Result<Vec<Digest>> {
    Ok(containers(store)?
        .into_iter()
        .flat_map(|(_, r)| r.chain_ids)
        .collect())
}

/// Images that existing containers were created from.
pub(crate) fn images_in_use(store: &Store) -> Result<std::collections::BTreeSet<ImageId>> {
    Ok(containers(store)?
        .into_iter()
        .map(|(_, r)| r.image)
        .collect())
}

/// A container created from image `id`, if any.
pub(crate) fn container_using(store: &Store, id: &ImageId) -> Result<Option<String>> {
    Ok(containers(store)?
        .into_iter()
        .find(|(_, r)| &r.image == id)
        .map(|(c, _)| c))
}

/// Mount the overlay with the new mount API, falling back to mount(2) on kernels without
/// `lowerdir+` (before 6.8).
fn mount_overlay(lowers: &[PathBuf], upper: &Path, work: &Path, target: &Path) -> Result<()> {
    mount_overlay_fsconfig(lowers, upper, work, target).or_else(|e| {
        tracing::debug!(error = %e, "fsconfig overlay mount failed; trying mount(2)");
        mount_overlay_legacy(lowers, upper, work, target)
    })
}

/// One `fsconfig(lowerdir+)` per layer: no limit from the one-page option string, and no
/// escaping of ',' or ':' in paths.
fn mount_overlay_fsconfig(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<()> {
    let fail = |what: String| {
        let e = std::io::Error::last_os_error();
        Error::Io {
            path: target.to_path_buf(),
            source: std::io::Error::new(e.kind(), format!("{what}: {e}")),
        }
    };
    let cpath = |p: &Path| {
        CString::new(p.as_os_str().as_bytes()).map_err(|_| Error::Bundle {
            id: target.display().to_string(),
            reason: format!("NUL in path {}", p.display()),
        })
    };
    // SAFETY: a NUL-terminated filesystem name and flags; returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_fsopen, c"overlay".as_ptr(), libc::FSOPEN_CLOEXEC) };
    if raw < 0 {
        return Err(fail("fsopen overlay".into()));
    }
    // SAFETY: fsopen returned a fresh fd that nothing else owns.
    let fsfd = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let set = |key: &CStr, value: &Path| -> Result<()> {
        let v = cpath(value)?;
        // SAFETY: valid fs-context fd, NUL-terminated key and value, aux 0.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                fsfd.as_raw_fd(),
                libc::FSCONFIG_SET_STRING,
                key.as_ptr(),
                v.as_ptr(),
                0,
            )
        };
        if rc < 0 {
            return Err(fail(format!(
                "fsconfig {}={}",
                key.to_string_lossy(),
                value.display()
            )));
        }
        Ok(())
    };
    // The first lowerdir is the top layer.
    for l in lowers.iter().rev() {
        set(c"lowerdir+", l)?;
    }
    set(c"upperdir", upper)?;
    set(c"workdir", work)?;
    // SAFETY: valid fs-context fd; CMD_CREATE takes no key or value.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fsfd.as_raw_fd(),
            libc::FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    if rc < 0 {
        return Err(fail("fsconfig create overlay".into()));
    }
    // SAFETY: valid, configured fs-context fd; returns a new mount fd or -1.
    let raw = unsafe {
        libc::syscall(
            libc::SYS_fsmount,
            fsfd.as_raw_fd(),
            libc::FSMOUNT_CLOEXEC,
            0,
        )
    };
    if raw < 0 {
        return Err(fail("fsmount overlay".into()));
    }
    // SAFETY: fsmount returned a fresh fd that nothing else owns.
    let mnt = unsafe { OwnedFd::from_raw_fd(raw as RawFd) };
    let t = cpath(target)?;
    // SAFETY: valid mount fd with an empty from-path (F_EMPTY_PATH), NUL-terminated target.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            t.as_ptr(),
            libc::MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 {
        return Err(fail(format!("move_mount onto {}", target.display())));
    }
    Ok(())
}

/// The classic option string; limited to one page, so to a few dozen layers.
fn mount_overlay_legacy(
    lowers: &[PathBuf],
    upper: &Path,
    work: &Path,
    target: &Path,
) -> Result<()> {
    // OverlayFS: the leftmost lowerdir is the top layer.
    let mut lower: Vec<String> = Vec::with_capacity(lowers.len());
    for p in lowers
        .iter()
        .rev()
        .chain([upper.to_path_buf(), work.to_path_buf()].iter())
    {
        let s = p
            .to_str()
            .filter(|s| !s.contains([',', ':']))
            .ok_or_else(|| Error::Bundle {
                id: target.display().to_string(),
                reason: format!(
                    "path {} cannot appear in overlay options (',' ':' or non-UTF-8)",
                    p.display()
                ),
            })?;
        lower.push(s.to_string());
    }
    let work_s = lower.pop().expect("pushed above");
    let upper_s = lower.pop().expect("pushed above");
    let opts = format!(
        "lowerdir={},upperdir={upper_s},workdir={work_s}",
        lower.join(":")
    );
    mount(
        Some("overlay"),
        target,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .at(target)
}

/// Copy the tree under the already-resolved directory `src` into `dest` by streaming a
/// tar through a pipe into the safe unpacker: symlinks are copied as links, never followed,
/// and nothing can land outside `dest`.
fn copy_tree(src: &std::fs::File, dest: &Path) -> Result<()> {
    let (r, w) = nix::unistd::pipe().at(dest)?;
    // The magic link names the directory `src` was resolved to, inside the rootfs.
    let src_path = PathBuf::from(format!("/proc/self/fd/{}", src.as_raw_fd()));
    std::thread::scope(|s| {
        let writer = s.spawn(move || {
            let mut b = tar::Builder::new(std::fs::File::from(w));
            b.follow_symlinks(false);
            b.append_dir_all(".", &src_path).and_then(|_| b.finish())
        });
        let unpacked = unpack_layer(
            std::fs::File::from(r),
            Compression::None,
            dest,
            WhiteoutMode::Apply,
        );
        let written = writer.join().expect("tar writer thread panicked").at(dest);
        unpacked.and(written)
    })?;
    Ok(())
}

/// Undo of a half-made container: runs unless disarmed.
struct Cleanup<'a> {
    store: &'a Store,
    id: &'a str,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.store.remove_bundle(self.id) {
                tracing::warn!(id = self.id, error = %e, "cleanup of failed bundle");
            }
        }
    }
}

impl Store {
    /// Prepare a bundle for `image` at `bundle_dir`: snapshots (unpacked once, shared),
    /// an overlay rootfs at `bundle_dir/rootfs`, anonymous volumes, and `config.json`.
    pub fn create_bundle(
        &self,
        image: &str,
        container_id: &str,
        overrides: &RunOverrides,
        bundle_dir: &Path,
    ) -> Result<Bundle> {
        validate_id(container_id)?;
        let _gc = self.gc_lock(false)?;
        let img = self.find(image)?;
        // Images stored before the limits existed are checked again before anything is made.
        crate::oci::check_config_size(&img.manifest.config)?;
        img.config.check_limits(&img.manifest.config.digest)?;
        let lowers = snapshot::prepare(self, &img)?;
        let containers = self.root().join("containers");
        let cdir = containers.join(container_id);
        // The directory appears under its name already locked (made and locked under a
        // temp name, then renamed; the flock follows the inode), so nobody ever sees it
        // unlocked and half made. The lock is held until commit: while it is, `prune`
        // and `abandoned_bundles` leave this container alone; when this process dies,
        // the kernel drops it.
        let tmp = TempPath::new(containers.join(temp_name(CREATING_PREFIX)));
        std::os::unix::fs::DirBuilderExt::mode(
            &mut fs::DirBuilder::new(),
            crate::store::PRIVATE_MODE,
        )
        .create(tmp.path())
        .at(tmp.path())?;
        let creating = try_lock_dir(tmp.path())?.ok_or_else(|| Error::Bundle {
            id: container_id.into(),
            reason: "its new directory is locked by another process".into(),
        })?;
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            tmp.path(),
            nix::fcntl::AT_FDCWD,
            &cdir,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST => Error::Bundle {
                id: container_id.into(),
                reason: "already exists".into(),
            },
            e => Error::Io {
                path: cdir.clone(),
                source: e.into(),
            },
        })?;
        tmp.keep();
        let mut cleanup = Cleanup {
            store: self,
            id: container_id,
            armed: true,
        };
        let rootfs = bundle_dir.join("rootfs");
        let mut record = ContainerRecord {
            bundle: bundle_dir.to_path_buf(),
            rootfs: rootfs.clone(),
            overlay: true,
            image: img.id.clone(),
            chain_ids: snapshot::chain_ids(&img.config.rootfs.diff_ids),
            complete: false,
        };
        let write_record = |r: &ContainerRecord| {
            write_atomic(
                &cdir.join(RECORD),
                &serde_json::to_vec(r).expect("record serialises"),
            )
        };
        write_record(&record)?;
        fs::create_dir_all(&rootfs).at(&rootfs)?;
        let (upper, work) = (cdir.join("upper"), cdir.join("work"));
        for d in [&upper, &work] {
            fs::create_dir(d).at(d)?;
        }
        let mut lowers = lowers;
        if lowers.is_empty() {
            let empty = cdir.join("empty");
            fs::create_dir(&empty).at(&empty)?;
            lowers.push(empty);
        }
        if let Err(e) = mount_overlay(&lowers, &upper, &work, &rootfs) {
            tracing::warn!(error = %e, "overlay mount failed; copying layers into the rootfs");
            record.overlay = false;
            write_record(&record)?;
            self.flatten_into(&img, &rootfs)?;
        }
        let volumes = self.make_volumes(&img, container_id, &rootfs)?;
        let spec = build_spec(
            &img.config.config,
            overrides,
            &rootfs,
            container_id,
            &volumes,
        )?;
        let json = serde_json::to_vec_pretty(&spec).map_err(|e| Error::Spec(e.to_string()))?;
        write_atomic(&bundle_dir.join("config.json"), &json)?;
        cleanup.armed = false;
        Ok(Bundle {
            id: container_id.to_string(),
            dir: bundle_dir.to_path_buf(),
            rootfs,
            spec,
            overlay: record.overlay,
            store: self.clone(),
            creating: Some(creating),
        })
    }

    /// Containers whose creation was interrupted: a directory under `containers/` whose
    /// record is not complete (or missing) and whose creation lock nobody holds. What
    /// they made (an overlay mount, upper dir, volumes) is undone by `remove_bundle`.
    pub fn abandoned_bundles(&self) -> Result<Vec<AbandonedBundle>> {
        let dir = self.root().join("containers");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            let id = e.file_name().to_string_lossy().into_owned();
            if validate_id(&id).is_err() || !e.file_type().at(e.path())?.is_dir() {
                continue;
            }
            let rec_path = e.path().join(RECORD);
            let rec = match fs::read(&rec_path) {
                Ok(b) => Some(from_json::<ContainerRecord>(
                    &b,
                    &rec_path.display().to_string(),
                )?),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(err) => return Err(err).at(&rec_path),
            };
            if rec.as_ref().is_some_and(|r| r.complete) {
                continue;
            }
            // Held: being created now. Taken: the creator is gone; released at once.
            let Some(_lock) = try_lock_dir(&e.path())? else {
                continue;
            };
            out.push(AbandonedBundle {
                id,
                image: rec.as_ref().map(|r| r.image.clone()),
                bundle: rec.map(|r| r.bundle),
                created: e.metadata().ok().and_then(|m| m.modified().ok()),
            });
        }
        Ok(out)
    }

    /// Unpack `image` flattened (whiteouts applied) into the existing directory `dir`,
    /// as `umoci unpack` does: the no-overlay fallback, also handy for inspection.
    pub fn unpack_flat(&self, image: &str, dir: &Path) -> Result<()> {
        let _gc = self.gc_lock(false)?;
        self.flatten_into(&self.find(image)?, dir)
    }

    /// Apply every layer of `img` in order into `dir` (the no-overlay fallback).
    fn flatten_into(&self, img: &Image, dir: &Path) -> Result<()> {
        for (layer, diff_id) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
            let stats = unpack_layer(
                self.open_blob(&layer.digest)?,
                Compression::from_media_type(&layer.media_type)?,
                dir,
                WhiteoutMode::Apply,
            )?;
            let actual = stats.diff_id.expect("unpack_layer always sets diff_id");
            if &actual != diff_id {
                return Err(Error::DigestMismatch {
                    expected: diff_id.clone(),
                    actual,
                });
            }
        }
        Ok(())
    }

    /// One directory per image volume, seeded with what the image has at that path (as
    /// Docker does for a new anonymous volume).
    fn make_volumes(&self, img: &Image, id: &str, rootfs: &Path) -> Result<Vec<VolumeMount>> {
        let mut paths: Vec<&String> = img
            .config
            .config
            .volumes
            .iter()
            .flatten()
            .map(|(k, _)| k)
            .collect();
        paths.sort();
        let mut out = Vec::new();
        for dest in paths {
            if !dest.starts_with('/') {
                return Err(Error::Spec(format!(
                    "image volume {dest:?} is not an absolute path"
                )));
            }
            let source = self
                .root()
                .join("volumes")
                .join(id)
                .join(&Digest::of(dest.as_bytes()).hex()[..16]);
            fs::create_dir_all(&source).at(&source)?;
            if let Some(dir) = open_in_root(rootfs, dest, OFlag::O_PATH | OFlag::O_DIRECTORY)? {
                copy_tree(&dir, &source)?;
            }
            out.push(VolumeMount {
                source,
                destination: dest.clone(),
            });
        }
        Ok(out)
    }

    /// Remove a container's rootfs mount, upper/work dirs, volumes and config.json.
    /// Idempotent: removing a container that is already gone succeeds.
    pub fn remove_bundle(&self, container_id: &str) -> Result<()> {
        validate_id(container_id)?;
        let cdir = self.root().join("containers").join(container_id);
        let rec_path = cdir.join(RECORD);
        if let Ok(bytes) = fs::read(&rec_path) {
            let rec: ContainerRecord = from_json(&bytes, &rec_path.display().to_string())?;
            match umount2(&rec.rootfs, MntFlags::MNT_DETACH) {
                Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
                Err(e) => {
                    return Err(Error::Io {
                        path: rec.rootfs.clone(),
                        source: e.into(),
                    })
                }
            }
            if rec.rootfs.exists() {
                fs::remove_dir_all(&rec.rootfs).at(&rec.rootfs)?;
            }
            let cfg = rec.bundle.join("config.json");
            if cfg.exists() {
                fs::remove_file(&cfg).at(&cfg)?;
            }
        }
        for d in [self.root().join("volumes").join(container_id), cdir] {
            if d.exists() {
                fs::remove_dir_all(&d).at(&d)?;
            }
        }
        Ok(())
    }
}
