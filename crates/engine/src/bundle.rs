//! Container bundles: `config.json` + an OverlayFS rootfs stacked on the image's snapshots,
//! with this container's own upper/work dirs under `<data-root>/containers/<id>/`.
//! The image store only keeps content; this module records which containers use which
//! images and snapshots ([`Bundles::in_use`]) and tells the store's GC.
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

use berth_image::oci::Compression;
use berth_image::snapshot::chain_ids;
use berth_image::store::temp_name;
use berth_image::{
    open_in_root, private_dir, unpack_layer, write_atomic, Digest, Image, ImageId, InUse,
    PruneReport, Store, TempPath, WhiteoutMode, PRIVATE_MODE,
};

use crate::error::{Error, IoContext, Result};
use crate::spec::{build_spec, RunOverrides, VolumeMount};

const RECORD: &str = "container.json";

/// A prepared bundle. Until [`Bundle::commit`] the container counts as being created:
/// this process holds a lock on its directory, and once the lock is gone (the creator
/// died, or dropped the bundle uncommitted) the container is abandoned, listed by
/// [`Bundles::abandoned`] and removed by [`Bundles::prune`]. Call [`Bundle::remove`]
/// (or [`Bundles::remove`]) when the container is deleted.
#[derive(Debug)]
pub struct Bundle {
    pub id: String,
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// false when the rootfs is a flat copy because OverlayFS was unavailable.
    pub overlay: bool,
    bundles: Bundles,
    /// flock on the container directory while it is being created.
    creating: Option<Flock<fs::File>>,
}

impl Bundle {
    /// Unmount the rootfs and delete the container's upper/work dirs and volumes.
    pub fn remove(self) -> Result<()> {
        self.bundles.remove(&self.id)
    }

    /// Mark the container complete (the caller has recorded it wherever it keeps its
    /// containers); from now on only [`Bundles::remove`] deletes it.
    pub fn commit(&mut self) -> Result<()> {
        let path = self.bundles.dir(&self.id).join(RECORD);
        let mut rec = read_record(&path)?;
        rec.complete = true;
        write_record(&path, &rec)?;
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

fn read_record(path: &Path) -> Result<ContainerRecord> {
    serde_json::from_slice(&fs::read(path).at(path)?).map_err(|source| Error::Metadata {
        path: path.to_path_buf(),
        source,
    })
}

fn write_record(path: &Path, rec: &ContainerRecord) -> Result<()> {
    let json = serde_json::to_vec(rec).map_err(|source| Error::Metadata {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(write_atomic(path, &json)?)
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
/// `Bundles::create`); one left by a crash is empty and removed by `prune`.
const CREATING_PREFIX: &str = ".creating-";

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
        )
        .map_err(Error::from);
        let written = writer.join().expect("tar writer thread panicked").at(dest);
        unpacked.and(written)
    })?;
    Ok(())
}

/// Undo of a half-made container: runs unless disarmed.
struct Cleanup<'a> {
    bundles: &'a Bundles,
    id: &'a str,
    armed: bool,
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        if self.armed {
            if let Err(e) = self.bundles.remove(self.id) {
                tracing::warn!(id = self.id, error = %e, "cleanup of failed bundle");
            }
        }
    }
}

/// The containers built on one image store: their records live beside the store's
/// content, under `<data-root>/containers/` (and anonymous volumes under `volumes/`).
#[derive(Clone, Debug)]
pub struct Bundles {
    store: Store,
}

impl Bundles {
    /// The bundles of `store`'s data root (directories made private on first use).
    pub fn new(store: &Store) -> Result<Bundles> {
        for d in ["containers", "volumes"] {
            private_dir(&store.root().join(d))?;
        }
        Ok(Bundles {
            store: store.clone(),
        })
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    fn dir(&self, id: &str) -> PathBuf {
        self.store.root().join("containers").join(id)
    }

    /// Every container's ID and record.
    fn records(&self) -> Result<Vec<(String, ContainerRecord)>> {
        let dir = self.store.root().join("containers");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            let p = e.path().join(RECORD);
            if p.exists() {
                out.push((
                    e.file_name().to_string_lossy().into_owned(),
                    read_record(&p)?,
                ));
            }
        }
        Ok(out)
    }

    /// What existing containers use: the images they were created from and the snapshots
    /// their root filesystems stack. Pass it to the store's `remove`, `prune_images` and
    /// `prune`.
    pub fn in_use(&self) -> Result<InUse> {
        let mut u = InUse::default();
        for (id, r) in self.records()? {
            u.images.entry(r.image).or_insert(id);
            u.snapshots.extend(r.chain_ids);
        }
        Ok(u)
    }

    /// Untag `image` (see [`Store::remove`]), refusing the last name of an image a
    /// container was created from unless `force`.
    pub fn remove_image(&self, image: &str, force: bool) -> Result<Vec<String>> {
        Ok(self.store.remove(image, force, &self.in_use()?)?)
    }

    /// Drop dangling images (or with `all`, every image no container was created from).
    pub fn prune_images(&self, all: bool) -> Result<Vec<ImageId>> {
        Ok(self.store.prune_images(all, &self.in_use()?)?)
    }

    /// Garbage-collect the data root: containers whose creation was interrupted (mount,
    /// upper dir and all), then the store's unused blobs and snapshots. Runs under the
    /// store's exclusive GC lock, so no creation races with it. Returns the store's report
    /// and the number of containers removed.
    pub fn prune(&self) -> Result<(PruneReport, usize)> {
        let gc = self.store.lock_gc()?;
        let mut removed = 0;
        for b in self.abandoned()? {
            self.remove(&b.id)?;
            removed += 1;
        }
        // Directories of creations killed before their rename (no bundle is being
        // created now: creation holds a lease).
        let cdir = self.store.root().join("containers");
        for e in fs::read_dir(&cdir).at(&cdir)? {
            let e = e.at(&cdir)?;
            if e.file_name().to_string_lossy().starts_with(CREATING_PREFIX) {
                fs::remove_dir_all(e.path()).at(e.path())?;
            }
        }
        let report = self.store.prune(&gc, &self.in_use()?)?;
        Ok((report, removed))
    }

    /// Prepare a bundle for `image` at `bundle_dir`: snapshots (unpacked once, shared),
    /// an overlay rootfs at `bundle_dir/rootfs`, anonymous volumes, and `config.json`.
    pub fn create(
        &self,
        image: &str,
        container_id: &str,
        overrides: &RunOverrides,
        bundle_dir: &Path,
    ) -> Result<Bundle> {
        validate_id(container_id)?;
        let _lease = self.store.lease()?;
        let img = self.store.find(image)?;
        // Images stored before the limits existed are checked again before anything is made.
        berth_image::oci::check_config_size(&img.manifest.config)?;
        img.config.check_limits(&img.manifest.config.digest)?;
        let lowers = self.store.snapshots(&img)?;
        let containers = self.store.root().join("containers");
        let cdir = containers.join(container_id);
        // The directory appears under its name already locked (made and locked under a
        // temp name, then renamed; the flock follows the inode), so nobody ever sees it
        // unlocked and half made. The lock is held until commit: while it is, `prune`
        // and `abandoned_bundles` leave this container alone; when this process dies,
        // the kernel drops it.
        let tmp = TempPath::new(containers.join(temp_name(CREATING_PREFIX)));
        std::os::unix::fs::DirBuilderExt::mode(&mut fs::DirBuilder::new(), PRIVATE_MODE)
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
            bundles: self,
            id: container_id,
            armed: true,
        };
        let rootfs = bundle_dir.join("rootfs");
        let mut record = ContainerRecord {
            bundle: bundle_dir.to_path_buf(),
            rootfs: rootfs.clone(),
            overlay: true,
            image: img.id.clone(),
            chain_ids: chain_ids(&img.config.rootfs.diff_ids),
            complete: false,
        };
        let record_path = cdir.join(RECORD);
        write_record(&record_path, &record)?;
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
            write_record(&record_path, &record)?;
            self.store.unpack_image(&img, &rootfs)?;
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
            bundles: self.clone(),
            creating: Some(creating),
        })
    }

    /// Containers whose creation was interrupted: a directory under `containers/` whose
    /// record is not complete (or missing) and whose creation lock nobody holds. What
    /// they made (an overlay mount, upper dir, volumes) is undone by [`Bundles::remove`].
    pub fn abandoned(&self) -> Result<Vec<AbandonedBundle>> {
        let dir = self.store.root().join("containers");
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).at(&dir)? {
            let e = e.at(&dir)?;
            let id = e.file_name().to_string_lossy().into_owned();
            if validate_id(&id).is_err() || !e.file_type().at(e.path())?.is_dir() {
                continue;
            }
            let rec_path = e.path().join(RECORD);
            let rec = match rec_path.try_exists().at(&rec_path)? {
                true => Some(read_record(&rec_path)?),
                false => None,
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
                .store
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
    pub fn remove(&self, container_id: &str) -> Result<()> {
        validate_id(container_id)?;
        let cdir = self.dir(container_id);
        let rec_path = cdir.join(RECORD);
        if rec_path.exists() {
            let rec = read_record(&rec_path)?;
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
        for d in [self.store.root().join("volumes").join(container_id), cdir] {
            if d.exists() {
                fs::remove_dir_all(&d).at(&d)?;
            }
        }
        Ok(())
    }
}
