//! The content store: an OCI image layout at the data root plus berth's own directories.
//!
//! ```text
//! <root>/oci-layout, index.json       OCI image-layout; index.json names every image
//! <root>/blobs/sha256/<hex>           content-addressed blobs, written atomically
//! <root>/ingest/                      temp files of blobs being written
//! <root>/snapshots/<chain-id hex>/    one unpacked layer each (see snapshot.rs)
//! <root>/containers/<id>/             a container's overlay upper/work and record
//! <root>/volumes/<id>/                a container's anonymous volumes
//! ```
//!
//! Locks: `gc.lock` is held shared by every writer (import, pull, bundle creation) and
//! exclusive by `prune`, so GC never deletes what a writer is about to reference;
//! `index.lock` serialises read-modify-write of index.json.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::{Digest, HashingWriter};
use crate::error::{from_json, Error, IoContext, Result};
use crate::oci::{self, Descriptor, ImageConfig, Index, Manifest, RunConfig};
use crate::reference::Reference;

/// An image's ID: the digest of its config blob, as Docker defines it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageId(pub Digest);

impl std::fmt::Display for ImageId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// An image resolved in the store: its manifest, parsed config and names.
#[derive(Clone, Debug)]
pub struct Image {
    pub id: ImageId,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub names: Vec<Reference>,
}

/// One row of `berth images`.
#[derive(Clone, Debug, Serialize)]
pub struct ImageSummary {
    pub id: ImageId,
    pub manifest_digest: Digest,
    /// Full references (`docker.io/library/busybox:latest`); empty for a dangling image.
    pub names: Vec<String>,
    pub created: Option<String>,
    /// Sum of the layer blob sizes as stored (compressed when the layers are).
    pub size: u64,
}

/// Docker-inspect-like description of an image.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageInfo {
    pub id: ImageId,
    pub repo_tags: Vec<String>,
    pub repo_digests: Vec<String>,
    pub created: Option<String>,
    pub author: Option<String>,
    pub architecture: String,
    pub os: String,
    pub config: RunConfig,
    #[serde(rename = "RootFS")]
    pub root_fs: InspectRootFs,
    pub size: u64,
    pub manifest_digest: Digest,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InspectRootFs {
    #[serde(rename = "Type")]
    pub kind: String,
    pub layers: Vec<Digest>,
}

/// What `prune` removed.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PruneReport {
    pub blobs_removed: usize,
    pub snapshots_removed: usize,
    pub bytes_freed: u64,
}

/// What the store's consumers still use, so `remove`, `prune_images` and `prune` keep it.
/// The store itself knows no containers: the engine (or any other consumer) says which
/// images its containers were created from and which snapshots their root filesystems
/// stack.
#[derive(Clone, Debug, Default)]
pub struct InUse {
    /// Image ID -> one container created from it (named in the "in use" error).
    pub images: BTreeMap<ImageId, String>,
    /// Chain IDs of snapshots mounted or copied into a container's root filesystem.
    pub snapshots: BTreeSet<Digest>,
}

/// Held while something is being made from the store's content (a pull, an import, a
/// root filesystem on its snapshots): `prune` waits until every lease is dropped.
#[derive(Debug)]
pub struct Lease(#[allow(dead_code)] Flock<File>);

/// The exclusive GC lock: no lease is held while it is. `prune` takes it by reference,
/// so a consumer can compute its [`InUse`] (and drop its own half-made work) under the
/// same lock, with no creation racing in between.
#[derive(Debug)]
pub struct GcLock(#[allow(dead_code)] Flock<File>);

/// Handle on a data root. Cheap to clone; all state is on disk.
#[derive(Clone, Debug)]
pub struct Store {
    root: PathBuf,
}

pub use berth_fsutil::{temp_name, TempPath};

/// Write `bytes` to `path` atomically and durably (the index and blobs' neighbours are
/// records other data depends on).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(berth_fsutil::replace_file_durably(path, bytes)?)
}

/// Mode of the data root and of its directories: nobody but the owner may traverse them.
pub const PRIVATE_MODE: u32 = 0o700;

/// Create `path` (and missing parents) or check the existing directory: it must belong
/// to this user, and its mode is reduced to [`PRIVATE_MODE`] when it grants anything to
/// group or others.
pub fn private_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let insecure = |reason: String| Error::InsecureDataRoot {
        path: path.to_path_buf(),
        reason,
    };
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_MODE)
        .create(path)
    {
        Ok(()) => {}
        Err(e) => return Err(e).at(path),
    }
    let meta = fs::metadata(path).at(path)?;
    if !meta.is_dir() {
        return Err(insecure("not a directory".into()));
    }
    let euid = nix::unistd::geteuid().as_raw();
    if meta.uid() != euid {
        return Err(insecure(format!(
            "owned by uid {}, not by this user (uid {euid}); another user could reach the \
             containers' root filesystems: chown it or pick another --data-root",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(PRIVATE_MODE)).map_err(|e| {
            insecure(format!(
                "mode {mode:04o} lets other users reach container root filesystems, and \
                 chmod {PRIVATE_MODE:o} failed: {e}"
            ))
        })?;
        tracing::warn!(path = %path.display(), "mode {mode:04o} tightened to {PRIVATE_MODE:04o}");
    }
    Ok(())
}

fn lock_file(path: &Path, arg: FlockArg) -> Result<Flock<File>> {
    let f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .at(path)?;
    Flock::lock(f, arg).map_err(|(_, e)| Error::Io {
        path: path.to_path_buf(),
        source: e.into(),
    })
}

impl Store {
    /// Open (creating if needed) the store at `root`. The root and the directories that
    /// hold unpacked layers and container root filesystems are made private to their
    /// owner (0700, as podman keeps its storage): through them another host user could
    /// otherwise run an image's set-uid binaries or open its device nodes. A root with
    /// group or other bits is tightened; one owned by another user is refused.
    pub fn open(root: &Path) -> Result<Store> {
        let s = Store {
            root: root.to_path_buf(),
        };
        private_dir(root)?;
        for d in ["blobs", "blobs/sha256", "ingest", "snapshots", "tmp"] {
            private_dir(&root.join(d))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let index = root.join("index.json");
        if !index.exists() {
            let _l = s.index_lock()?;
            if !index.exists() {
                s.write_index(&Index::empty())?;
            }
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(d.hex())
    }

    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    pub(crate) fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.blob_path(d)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::BlobNotFound(d.clone()),
            _ => Error::Io {
                path: self.blob_path(d),
                source: e,
            },
        })
    }

    /// Read a small blob (manifest, config) whole, re-verifying its digest.
    pub(crate) fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut bytes)
            .at(self.blob_path(d))?;
        let actual = Digest::of(&bytes);
        if &actual != d {
            return Err(Error::DigestMismatch {
                expected: d.clone(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Stream `r` into the store. When `expected` is given, the content must match its
    /// digest and size or nothing is stored. The blob appears atomically (rename of a fully
    /// written, fsynced temp file); concurrent writers of one blob write identical bytes,
    /// so whichever rename lands last wins harmlessly.
    pub(crate) fn write_blob(
        &self,
        r: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64)> {
        if let Some((d, _)) = expected {
            if self.has_blob(d) {
                io::copy(r, &mut io::sink()).at(self.blob_path(d))?;
                return Ok((
                    d.clone(),
                    fs::metadata(self.blob_path(d)).at(self.blob_path(d))?.len(),
                ));
            }
        }
        let tmp = TempPath::new(self.root.join("ingest").join(temp_name("")));
        let f = File::create(tmp.path()).at(tmp.path())?;
        let mut w = HashingWriter::new(io::BufWriter::with_capacity(1 << 17, f));
        io::copy(r, &mut w).at(tmp.path())?;
        let (buf, digest, len) = w.finish();
        let f = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .at(tmp.path())?;
        if let Some((d, size)) = expected {
            if &digest != d {
                return Err(Error::DigestMismatch {
                    expected: d.clone(),
                    actual: digest,
                });
            }
            if len != size {
                return Err(Error::SizeMismatch {
                    digest,
                    expected: size,
                    actual: len,
                });
            }
        }
        f.sync_all().at(tmp.path())?;
        let dest = self.blob_path(&digest);
        fs::rename(tmp.path(), &dest).at(&dest)?;
        tmp.keep();
        let dir = self.root.join("blobs/sha256");
        File::open(&dir).and_then(|d| d.sync_all()).at(&dir)?;
        Ok((digest, len))
    }

    pub(crate) fn write_blob_bytes(&self, bytes: &[u8]) -> Result<Digest> {
        Ok(self.write_blob(&mut &bytes[..], None)?.0)
    }

    /// Take a [`Lease`]: waits while `prune` runs, then keeps it from starting.
    pub fn lease(&self) -> Result<Lease> {
        self.gc_lock(false).map(Lease)
    }

    /// Take the exclusive GC lock (waits for every [`Lease`] to go).
    pub fn lock_gc(&self) -> Result<GcLock> {
        self.gc_lock(true).map(GcLock)
    }

    /// Held shared by writers, exclusive by GC.
    pub(crate) fn gc_lock(&self, exclusive: bool) -> Result<Flock<File>> {
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        lock_file(&self.root.join("gc.lock"), arg)
    }

    fn index_lock(&self) -> Result<Flock<File>> {
        lock_file(&self.root.join("index.lock"), FlockArg::LockExclusive)
    }

    fn read_index(&self) -> Result<Index> {
        let p = self.root.join("index.json");
        from_json(&fs::read(&p).at(&p)?, &p.display().to_string())
    }

    fn write_index(&self, index: &Index) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| Error::Json {
            what: "index.json".into(),
            source: e,
        })?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Record `manifest` in index.json under `name` (moving the name off any other image),
    /// or as an unnamed image when `name` is None. An image that loses its last name stays
    /// as an unnamed (dangling) entry, like Docker's `<none>` images.
    pub(crate) fn record_image(
        &self,
        manifest: &Descriptor,
        name: Option<&Reference>,
    ) -> Result<()> {
        let _l = self.index_lock()?;
        let mut index = self.read_index()?;
        let mut desc =
            Descriptor::new(&manifest.media_type, manifest.digest.clone(), manifest.size);
        if let Some(n) = name {
            desc.annotations
                .insert(oci::ANNOTATION_IMAGE_NAME.into(), n.to_string());
            desc.annotations.insert(
                oci::ANNOTATION_REF_NAME.into(),
                n.tag().unwrap_or("latest").to_string(),
            );
            let mut orphaned = BTreeSet::new();
            index.manifests.retain(|d| {
                let same_name =
                    d.annotations.get(oci::ANNOTATION_IMAGE_NAME) == Some(&n.to_string());
                if same_name && d.digest != manifest.digest {
                    orphaned.insert((d.media_type.clone(), d.digest.clone(), d.size));
                }
                // An unnamed entry of this manifest is superseded by the named one.
                let unnamed_self = d.digest == manifest.digest
                    && !d.annotations.contains_key(oci::ANNOTATION_IMAGE_NAME);
                !same_name && !unnamed_self
            });
            for (mt, dg, size) in orphaned {
                if !index.manifests.iter().any(|d| d.digest == dg) {
                    index.manifests.push(Descriptor::new(&mt, dg, size));
                }
            }
        } else if index.manifests.iter().any(|d| d.digest == manifest.digest) {
            return Ok(());
        }
        index.manifests.push(desc);
        self.write_index(&index)
    }

    fn load_image(&self, manifest_digest: &Digest, names: Vec<Reference>) -> Result<Image> {
        let manifest: Manifest = from_json(
            &self.read_blob(manifest_digest)?,
            &format!("manifest {manifest_digest}"),
        )?;
        let config: ImageConfig = from_json(
            &self.read_blob(&manifest.config.digest)?,
            &format!("config {}", manifest.config.digest),
        )?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::Archive {
                path: self.blob_path(manifest_digest),
                reason: format!(
                    "manifest has {} layers but config lists {} diff_ids",
                    manifest.layers.len(),
                    config.rootfs.diff_ids.len()
                ),
            });
        }
        Ok(Image {
            id: ImageId(manifest.config.digest.clone()),
            manifest_digest: manifest_digest.clone(),
            manifest,
            config,
            names,
        })
    }

    /// Every image in the store, grouped by manifest, with its names.
    fn entries(&self) -> Result<BTreeMap<Digest, Vec<Reference>>> {
        let mut out: BTreeMap<Digest, Vec<Reference>> = BTreeMap::new();
        for d in self.read_index()?.manifests {
            let names = out.entry(d.digest.clone()).or_default();
            if let Some(n) = d.annotations.get(oci::ANNOTATION_IMAGE_NAME) {
                names.push(n.parse()?);
            }
        }
        Ok(out)
    }

    /// Resolve a name (`busybox`, `x:tag`, `x@sha256:..`) or an image-ID prefix. A short
    /// name is looked up as Docker normalises it (`docker.io/library/x`), then as a local
    /// image (`localhost/x`, what `load` names images from archives, as podman does).
    pub fn find(&self, image: &str) -> Result<Image> {
        let entries = self.entries()?;
        let mut candidates: Vec<Reference> = image.parse::<Reference>().into_iter().collect();
        if !crate::reference::is_qualified(image) {
            candidates.extend(crate::reference::parse_local(image));
        }
        for r in candidates {
            for (md, names) in &entries {
                let hit = match r.digest() {
                    Some(d) => {
                        d == md && names.iter().all(|n| n.name() == r.name()) || names.contains(&r)
                    }
                    None => names.contains(&r),
                };
                if hit {
                    return self.load_image(md, names.clone());
                }
            }
        }
        let prefix = image.strip_prefix("sha256:").unwrap_or(image);
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::ImageNotFound(image.to_string()));
        }
        let mut found: Option<Image> = None;
        for (md, names) in entries {
            let img = self.load_image(&md, names)?;
            if img.id.0.hex().starts_with(prefix) || md.hex().starts_with(prefix) {
                if found.as_ref().is_some_and(|f| f.id != img.id) {
                    return Err(Error::AmbiguousImage(image.to_string()));
                }
                found = Some(img);
            }
        }
        found.ok_or_else(|| Error::ImageNotFound(image.to_string()))
    }

    /// All images, one row per manifest.
    pub fn list(&self) -> Result<Vec<ImageSummary>> {
        self.entries()?
            .into_iter()
            .map(|(md, names)| {
                let img = self.load_image(&md, names)?;
                Ok(ImageSummary {
                    id: img.id.clone(),
                    manifest_digest: md,
                    names: img.names.iter().map(|n| n.to_string()).collect(),
                    created: img.config.created.clone(),
                    size: img.manifest.layers.iter().map(|l| l.size).sum(),
                })
            })
            .collect()
    }

    /// Docker-inspect-like description.
    pub fn inspect(&self, image: &str) -> Result<ImageInfo> {
        let img = self.find(image)?;
        Ok(ImageInfo {
            id: img.id.clone(),
            repo_tags: img
                .names
                .iter()
                .filter(|n| n.tag().is_some())
                .map(|n| n.to_string())
                .collect(),
            repo_digests: img
                .names
                .iter()
                .map(|n| format!("{}@{}", n.name(), img.manifest_digest))
                .collect(),
            created: img.config.created.clone(),
            author: img.config.author.clone(),
            architecture: img.config.architecture.clone(),
            os: img.config.os.clone(),
            config: img.config.config.clone(),
            root_fs: InspectRootFs {
                kind: img.config.rootfs.kind.clone(),
                layers: img.config.rootfs.diff_ids.clone(),
            },
            size: img.manifest.layers.iter().map(|l| l.size).sum(),
            manifest_digest: img.manifest_digest,
        })
    }

    /// Untag: a name removes that name only; an ID removes every name of the image.
    /// Blobs stay until `prune`. Returns the names removed (the ID when it had none).
    /// Removing the last name of an image `in_use` names is refused unless `force` (the
    /// container keeps its snapshots either way), as `docker rmi` does.
    pub fn remove(&self, image: &str, force: bool, in_use: &InUse) -> Result<Vec<String>> {
        let img = self.find(image)?;
        let by_name = image
            .parse::<Reference>()
            .ok()
            .filter(|r| img.names.contains(r));
        let last_name = by_name.is_none() || img.names.len() == 1;
        if last_name && !force {
            if let Some(container) = in_use.images.get(&img.id) {
                return Err(Error::ImageInUse {
                    image: image.to_string(),
                    container: container.clone(),
                });
            }
        }
        let _l = self.index_lock()?;
        let mut index = self.read_index()?;
        let mut removed = Vec::new();
        index.manifests.retain(|d| {
            if d.digest != img.manifest_digest {
                return true;
            }
            let name = d.annotations.get(oci::ANNOTATION_IMAGE_NAME);
            let drop = match &by_name {
                Some(r) => name == Some(&r.to_string()),
                None => true,
            };
            if drop {
                removed.push(name.cloned().unwrap_or_else(|| img.id.to_string()));
            }
            !drop
        });
        self.write_index(&index)?;
        Ok(removed)
    }

    /// Drop images nothing needs from the index: unnamed (dangling) ones, or with `all`
    /// every image `in_use` does not name. Their content goes at the next
    /// [`Store::prune`]. Returns the IDs removed.
    pub fn prune_images(&self, all: bool, in_use: &InUse) -> Result<Vec<ImageId>> {
        let _l = self.index_lock()?;
        let mut index = self.read_index()?;
        let mut doomed = BTreeMap::new();
        for (md, names) in self.entries()? {
            let id = self.load_image(&md, Vec::new())?.id;
            if (all || names.is_empty()) && !in_use.images.contains_key(&id) {
                doomed.insert(md, id);
            }
        }
        index.manifests.retain(|d| !doomed.contains_key(&d.digest));
        self.write_index(&index)?;
        Ok(doomed.into_values().collect())
    }

    /// Digests of every blob reachable from index.json.
    fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut live = BTreeSet::new();
        for (md, names) in self.entries()? {
            let img = self.load_image(&md, names)?;
            live.insert(md);
            live.insert(img.manifest.config.digest.clone());
            live.extend(img.manifest.layers.iter().map(|l| l.digest.clone()));
        }
        Ok(live)
    }

    /// Remove blobs no image references, snapshots no image or `in_use` needs, and
    /// leftovers of interrupted writes. The caller holds the exclusive GC lock (so no
    /// pull, import or root filesystem creation is running) and computed `in_use` under it.
    pub fn prune(&self, _gc: &GcLock, in_use: &InUse) -> Result<PruneReport> {
        let mut report = PruneReport::default();
        let live = self.referenced_blobs()?;
        let blob_dir = self.root.join("blobs/sha256");
        for e in fs::read_dir(&blob_dir).at(&blob_dir)? {
            let e = e.at(&blob_dir)?;
            let keep = format!("sha256:{}", e.file_name().to_string_lossy())
                .parse::<Digest>()
                .is_ok_and(|d| live.contains(&d));
            if !keep {
                report.bytes_freed += e.metadata().map_or(0, |m| m.len());
                fs::remove_file(e.path()).at(e.path())?;
                report.blobs_removed += 1;
            }
        }
        let mut live_snaps = self.live_snapshots()?;
        live_snaps.extend(in_use.snapshots.iter().cloned());
        report.snapshots_removed = crate::snapshot::remove_unused(self, &live_snaps)?;
        for d in ["ingest", "tmp"] {
            let p = self.root.join(d);
            for e in fs::read_dir(&p).at(&p)? {
                let e = e.at(&p)?;
                let r = if e.file_type().at(e.path())?.is_dir() {
                    fs::remove_dir_all(e.path())
                } else {
                    fs::remove_file(e.path())
                };
                r.at(e.path())?;
            }
        }
        Ok(report)
    }

    /// Chain IDs used by any image in the index.
    fn live_snapshots(&self) -> Result<BTreeSet<Digest>> {
        let mut live = BTreeSet::new();
        for (md, names) in self.entries()? {
            live.extend(crate::snapshot::chain_ids(
                &self.load_image(&md, names)?.config.rootfs.diff_ids,
            ));
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_write_verifies_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = Digest::of(b"abc");
        let (got, n) = s.write_blob(&mut &b"abc"[..], Some((&d, 3))).unwrap();
        assert_eq!((got, n), (d.clone(), 3));
        assert_eq!(s.read_blob(&d).unwrap(), b"abc");
        // Same blob again (e.g. a concurrent writer) is harmless.
        s.write_blob(&mut &b"abc"[..], None).unwrap();
        let wrong = Digest::of(b"xyz");
        assert!(matches!(
            s.write_blob(&mut &b"abc"[..], Some((&wrong, 3))),
            Err(Error::DigestMismatch { .. })
        ));
        assert!(matches!(
            s.write_blob(&mut &b"abcd"[..], Some((&Digest::of(b"abcd"), 3))),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(!s.has_blob(&wrong));
        assert_eq!(
            fs::read_dir(dir.path().join("ingest")).unwrap().count(),
            0,
            "failed writes leave no temp files"
        );
    }

    #[test]
    fn concurrent_writers_of_one_blob() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
        let d = Digest::of(&data);
        std::thread::scope(|sc| {
            for _ in 0..4 {
                sc.spawn(|| s.write_blob(&mut &data[..], None).unwrap());
            }
        });
        assert_eq!(s.read_blob(&d).unwrap().len(), data.len());
    }

    #[test]
    fn corrupted_blob_is_detected_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let d = s.write_blob_bytes(b"{}").unwrap();
        fs::write(s.blob_path(&d), b"[]").unwrap();
        assert!(matches!(s.read_blob(&d), Err(Error::DigestMismatch { .. })));
    }
}
