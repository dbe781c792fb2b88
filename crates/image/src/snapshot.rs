//! Layer snapshots: each layer unpacked once, alone, in OverlayFS format, into
//! `<root>/snapshots/<chain-id hex>/fs`, and shared by every image whose layer stack has
//! the same prefix.
//!
//! Keyed by chain ID (as containerd does), not diff_id: a layer's whiteouts only mean
//! something on top of its parents, so the same diff on another parent stack is a
//! different snapshot. chain(L0) = diff_id(L0); chain(Ln) = sha256(chain(Ln-1) + " " +
//! diff_id(Ln)).
//!
//! A snapshot appears atomically: it is unpacked into a temp dir, verified against its
//! diff_id, flushed to disk (syncfs) and renamed into place; when two processes race,
//! the first rename wins and the loser discards its copy.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::oci::Compression;
use crate::store::{temp_name, Image, Store, TempPath};
use crate::unpack::{unpack_layer, WhiteoutMode};

/// Chain IDs of a layer stack, bottom first.
pub fn chain_ids(diff_ids: &[Digest]) -> Vec<Digest> {
    let mut out: Vec<Digest> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(parent) => Digest::of(format!("{parent} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

fn snapshot_dir(store: &Store, chain: &Digest) -> PathBuf {
    store.root().join("snapshots").join(chain.hex())
}

/// Make sure every layer of `image` has its snapshot; return their `fs` dirs, bottom first.
/// The caller holds the store's shared GC lock.
pub(crate) fn prepare(store: &Store, image: &Image) -> Result<Vec<PathBuf>> {
    let diff_ids = &image.config.rootfs.diff_ids;
    let mut dirs = Vec::with_capacity(diff_ids.len());
    for ((chain, diff_id), layer) in chain_ids(diff_ids)
        .iter()
        .zip(diff_ids)
        .zip(&image.manifest.layers)
    {
        let dir = snapshot_dir(store, chain);
        if !dir.join("fs").is_dir() {
            let tmp = TempPath::new(store.root().join("snapshots").join(temp_name(".tmp-")));
            let fs_dir = tmp.path().join("fs");
            {
                use std::os::unix::fs::DirBuilderExt;
                // Private like the data root: the layer's own files (set-uid binaries,
                // device nodes) must not be reachable by other host users.
                fs::DirBuilder::new()
                    .mode(crate::store::PRIVATE_MODE)
                    .create(tmp.path())
                    .at(tmp.path())?;
            }
            fs::create_dir(&fs_dir).at(&fs_dir)?;
            let blob = store.open_blob(&layer.digest)?;
            let stats = unpack_layer(
                blob,
                Compression::from_media_type(&layer.media_type)?,
                &fs_dir,
                WhiteoutMode::Overlay,
            )?;
            let actual = stats.diff_id.expect("unpack_layer always sets diff_id");
            if &actual != diff_id {
                return Err(Error::DigestMismatch {
                    expected: diff_id.clone(),
                    actual,
                });
            }
            // The unpacked files must be on disk before the rename publishes them, or a
            // crash could leave a "complete" snapshot with empty files. One syncfs is far
            // cheaper than an fsync per file.
            let fs_handle = fs::File::open(&fs_dir).at(&fs_dir)?;
            nix::unistd::syncfs(&fs_handle).at(&fs_dir)?;
            match fs::rename(tmp.path(), &dir) {
                Ok(()) => {
                    tmp.keep();
                    let parent = store.root().join("snapshots");
                    fs::File::open(&parent)
                        .and_then(|d| d.sync_all())
                        .at(&parent)?;
                }
                // Another process finished the same snapshot first; ours is dropped.
                Err(e) if dir.join("fs").is_dir() => {
                    tracing::debug!(error = %e, "snapshot raced, keeping the winner")
                }
                Err(e) => {
                    return Err(Error::Io {
                        path: dir,
                        source: e,
                    })
                }
            }
        }
        dirs.push(dir.join("fs"));
    }
    Ok(dirs)
}

/// Delete snapshots (and interrupted unpacks) not in `live`. Caller holds the exclusive
/// GC lock, so no unpack is in progress.
pub(crate) fn remove_unused(store: &Store, live: &BTreeSet<Digest>) -> Result<usize> {
    let dir = store.root().join("snapshots");
    let mut removed = 0;
    for e in fs::read_dir(&dir).at(&dir)? {
        let e = e.at(&dir)?;
        let keep = format!("sha256:{}", e.file_name().to_string_lossy())
            .parse::<Digest>()
            .is_ok_and(|d| live.contains(&d));
        if !keep {
            fs::remove_dir_all(e.path()).at(e.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Store {
    /// Make sure every layer of `image` has its snapshot; return their directories, bottom
    /// first (the lower dirs of an overlay). Hold a [`crate::Lease`] while they are in use
    /// and name their chain IDs in [`crate::InUse`] afterwards, or `prune` removes them.
    pub fn snapshots(&self, image: &Image) -> Result<Vec<PathBuf>> {
        prepare(self, image)
    }

    /// Unpack `image` flattened (whiteouts applied) into the existing directory `dir`,
    /// as `umoci unpack` does: the no-overlay fallback, also handy for inspection.
    pub fn unpack_flat(&self, image: &str, dir: &Path) -> Result<()> {
        let _lease = self.lease()?;
        self.unpack_image(&self.find(image)?, dir)
    }

    /// Apply every layer of `image` in order into `dir`. The caller holds a lease.
    pub fn unpack_image(&self, image: &Image, dir: &Path) -> Result<()> {
        for (layer, diff_id) in image
            .manifest
            .layers
            .iter()
            .zip(&image.config.rootfs.diff_ids)
        {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_matches_containerd_definition() {
        let a = Digest::of(b"a");
        let b = Digest::of(b"b");
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], Digest::of(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }
}
