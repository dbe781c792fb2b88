//! Import (`load`/`import`) and export (`save`) of images: OCI layout directories,
//! oci-archive and docker-archive tars, and plain rootfs tars or directories.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::Path;

use crate::digest::{Digest, HashingReader};
use crate::error::{from_json, Error, IoContext, Result};
use crate::oci::{self, Compression, Descriptor, ImageConfig, Index, Manifest, RootFs, RunConfig};
use crate::reference::Reference;
use crate::store::{temp_name, ImageId, Store, TempPath};
use crate::unpack::{open_regular, open_regular_in, read_limited, unpack_layer, WhiteoutMode};

/// Archive formats `save` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveFormat {
    /// An OCI image layout in a tar (`podman save --format oci-archive`).
    OciArchive,
    /// `docker save` format: manifest.json, `<id>.json` config, `<diff_id>/layer.tar`.
    DockerArchive,
}

/// docker-archive's manifest.json entry.
#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn bad_archive(path: &Path, reason: impl Into<String>) -> Error {
    Error::Archive {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Sniff the compression of a file by its first bytes.
fn sniff_file(f: &mut File, path: &Path) -> Result<Compression> {
    let mut head = [0u8; 4];
    let n = f.read(&mut head).at(path)?;
    f.rewind().at(path)?;
    Ok(Compression::sniff(&head[..n]))
}

/// Digest of the decompressed content of `f` (a layer's diff_id).
fn diff_id_of(f: File, compression: Compression, path: &Path) -> Result<Digest> {
    let r = HashingReader::new(compression.decoder(io::BufReader::new(f)).at(path)?);
    Ok(r.finish().at(path)?.0)
}

impl Store {
    /// Import an image from `src`: an OCI layout directory, an oci-archive or
    /// docker-archive tar (optionally compressed), or a plain rootfs tar or directory
    /// (which becomes a one-layer image). `name` tags the (first) imported image and
    /// replaces names found in the archive. Returns the image ID.
    pub fn import(&self, src: &Path, name: Option<&Reference>) -> Result<ImageId> {
        let _gc = self.gc_lock(false)?;
        let meta = fs::metadata(src).at(src)?;
        if meta.is_dir() {
            if src.join("oci-layout").exists() {
                return self.import_oci_layout(src, name);
            }
            if src.join("manifest.json").exists() {
                return self.import_docker_dir(src, name);
            }
            return self.import_rootfs_dir(src, name);
        }
        let (mut f, _) = open_regular(src)?;
        let compression = sniff_file(&mut f, src)?;
        let mut kind = None;
        {
            let mut archive =
                tar::Archive::new(compression.decoder(io::BufReader::new(&mut f)).at(src)?);
            for e in archive
                .entries()
                .map_err(|e| bad_archive(src, format!("not a tar archive: {e}")))?
            {
                let e = e.map_err(|e| bad_archive(src, format!("not a tar archive: {e}")))?;
                let p = e.path_bytes();
                let p = p.strip_prefix(b"./").unwrap_or(&p);
                if p == b"oci-layout" || p == b"manifest.json" {
                    kind = Some(p == b"oci-layout");
                    if p == b"oci-layout" {
                        break; // an oci-archive may also carry a docker manifest.json
                    }
                }
            }
        }
        f.rewind().at(src)?;
        let Some(is_oci) = kind else {
            return self.import_rootfs_tar(f, compression, src, name);
        };
        let tmp = TempPath::new(self.tmp_dir().join(temp_name("import-")));
        fs::create_dir(tmp.path()).at(tmp.path())?;
        unpack_layer(f, compression, tmp.path(), WhiteoutMode::Apply)?;
        if is_oci {
            self.import_oci_layout(tmp.path(), name)
        } else {
            self.import_docker_dir(tmp.path(), name)
        }
    }

    /// Copy one blob out of a layout directory, verifying it against its descriptor: a
    /// regular file of exactly the descriptor's size (read no further than size + 1).
    fn copy_layout_blob(&self, dir: &Path, d: &Descriptor) -> Result<()> {
        let rel = format!("blobs/sha256/{}", d.digest.hex());
        let (f, size) = open_regular_in(dir, &rel)?
            .ok_or_else(|| bad_archive(dir, format!("missing blob {rel}")))?;
        if size != d.size {
            return Err(Error::InputFile {
                path: dir.join(&rel),
                reason: format!("{size} bytes, but its descriptor says {}", d.size),
            });
        }
        self.write_blob(&mut f.take(d.size + 1), Some((&d.digest, d.size)))?;
        Ok(())
    }

    fn import_oci_layout(&self, dir: &Path, name: Option<&Reference>) -> Result<ImageId> {
        let index_path = dir.join("index.json");
        let (f, _) =
            open_regular_in(dir, "index.json")?.ok_or_else(|| bad_archive(dir, "no index.json"))?;
        let bytes = read_limited(f, oci::MAX_MANIFEST_BYTES, &index_path)?;
        let index: Index = from_json(&bytes, &index_path.display().to_string())?;
        let mut first = None;
        for top in &index.manifests {
            let desc = if top.media_type == oci::OCI_INDEX
                || top.media_type == oci::DOCKER_MANIFEST_LIST
            {
                self.copy_layout_blob(dir, top)?;
                let nested: Index = from_json(
                    &self.read_blob(&top.digest)?,
                    &format!("index {}", top.digest),
                )?;
                nested
                    .select_platform(oci::host_arch())
                    .cloned()
                    .ok_or_else(|| {
                        bad_archive(
                            dir,
                            format!(
                                "index {} has no linux/{} image",
                                top.digest,
                                oci::host_arch()
                            ),
                        )
                    })?
            } else {
                top.clone()
            };
            self.copy_layout_blob(dir, &desc)?;
            let manifest: Manifest = from_json(
                &self.read_blob(&desc.digest)?,
                &format!("manifest {}", desc.digest),
            )?;
            oci::check_config_size(&manifest.config)?;
            self.copy_layout_blob(dir, &manifest.config)?;
            let config: ImageConfig = from_json(
                &self.read_blob(&manifest.config.digest)?,
                &format!("config {}", manifest.config.digest),
            )?;
            config.check_limits(&manifest.config.digest)?;
            for l in &manifest.layers {
                Compression::from_media_type(&l.media_type)?;
                self.copy_layout_blob(dir, l)?;
            }
            if config.rootfs.diff_ids.len() != manifest.layers.len() {
                return Err(bad_archive(
                    dir,
                    format!(
                        "manifest {} and its config disagree on the layer count",
                        desc.digest
                    ),
                ));
            }
            // podman's rule: the containerd name, else ref.name, and a name without a
            // registry is local (`big` -> localhost/big:latest), so `run big` finds it.
            let found_name = top
                .annotations
                .get(oci::ANNOTATION_IMAGE_NAME)
                .filter(|n| !n.is_empty())
                .or_else(|| top.annotations.get(oci::ANNOTATION_REF_NAME))
                .and_then(|n| match crate::reference::parse_local(n) {
                    Ok(r) => Some(r),
                    Err(e) => {
                        tracing::warn!(name = n, error = %e, "archive name ignored; image left unnamed");
                        None
                    }
                });
            let chosen = if first.is_none() {
                name.cloned().or(found_name)
            } else {
                found_name
            };
            let manifest_desc = Descriptor::new(
                manifest.media_type.as_deref().unwrap_or(&desc.media_type),
                desc.digest.clone(),
                desc.size,
            );
            self.record_image(&manifest_desc, chosen.as_ref())?;
            first.get_or_insert(ImageId(manifest.config.digest.clone()));
        }
        first.ok_or_else(|| bad_archive(dir, "index.json lists no images"))
    }

    fn import_docker_dir(&self, dir: &Path, name: Option<&Reference>) -> Result<ImageId> {
        let mpath = dir.join("manifest.json");
        let read = |rel: &str| -> Result<(File, u64)> {
            open_regular_in(dir, rel)?.ok_or_else(|| bad_archive(dir, format!("missing {rel}")))
        };
        let bytes = read_limited(read("manifest.json")?.0, oci::MAX_MANIFEST_BYTES, &mpath)?;
        let entries: Vec<DockerManifestEntry> = from_json(&bytes, &mpath.display().to_string())?;
        let mut first = None;
        for entry in entries {
            let cfg_path = dir.join(&entry.config);
            let cfg_bytes = read_limited(read(&entry.config)?.0, oci::MAX_CONFIG_BYTES, &cfg_path)?;
            let config: ImageConfig = from_json(&cfg_bytes, &entry.config)?;
            config.check_limits(&Digest::of(&cfg_bytes))?;
            if config.rootfs.diff_ids.len() != entry.layers.len() {
                return Err(bad_archive(
                    dir,
                    format!(
                        "{}: {} layers but {} diff_ids",
                        entry.config,
                        entry.layers.len(),
                        config.rootfs.diff_ids.len()
                    ),
                ));
            }
            let config_digest = self.write_blob_bytes(&cfg_bytes)?;
            let mut layers = Vec::new();
            for (rel, want) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
                let (mut f, len) = read(rel)?;
                let compression = sniff_file(&mut f, &dir.join(rel))?;
                let (digest, size) = self.write_blob(&mut f.take(len), None)?;
                let got = diff_id_of(self.open_blob(&digest)?, compression, &dir.join(rel))?;
                if &got != want {
                    return Err(Error::DigestMismatch {
                        expected: want.clone(),
                        actual: got,
                    });
                }
                layers.push(Descriptor::new(compression.oci_media_type(), digest, size));
            }
            let id = self.store_manifest(&cfg_bytes, config_digest, layers)?;
            let mut names: Vec<Reference> = Vec::new();
            if first.is_none() && name.is_some() {
                names.extend(name.cloned());
            } else {
                for t in entry.repo_tags.iter().flatten() {
                    names.push(t.parse()?);
                }
            }
            if names.is_empty() {
                self.record_image(&id.1, None)?;
            }
            for n in &names {
                self.record_image(&id.1, Some(n))?;
            }
            first.get_or_insert(id.0);
        }
        first.ok_or_else(|| bad_archive(dir, "manifest.json lists no images"))
    }

    /// Write an OCI manifest for a config and layers; returns the image ID and descriptor.
    fn store_manifest(
        &self,
        cfg_bytes: &[u8],
        config_digest: Digest,
        layers: Vec<Descriptor>,
    ) -> Result<(ImageId, Descriptor)> {
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(oci::OCI_MANIFEST.into()),
            config: Descriptor::new(
                oci::OCI_CONFIG,
                config_digest.clone(),
                cfg_bytes.len() as u64,
            ),
            layers,
            annotations: BTreeMap::new(),
        };
        let mbytes = serde_json::to_vec(&manifest).map_err(|e| Error::Json {
            what: "manifest".into(),
            source: e,
        })?;
        let md = self.write_blob_bytes(&mbytes)?;
        Ok((
            ImageId(config_digest),
            Descriptor::new(oci::OCI_MANIFEST, md, mbytes.len() as u64),
        ))
    }

    /// Store one layer blob as a new single-layer image.
    fn import_layer_blob(
        &self,
        digest: Digest,
        size: u64,
        compression: Compression,
        diff_id: Digest,
        name: Option<&Reference>,
    ) -> Result<ImageId> {
        let config = ImageConfig {
            created: Some(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
            author: None,
            architecture: oci::host_arch().into(),
            os: "linux".into(),
            config: RunConfig::default(),
            rootfs: RootFs {
                kind: "layers".into(),
                diff_ids: vec![diff_id],
            },
        };
        let cfg_bytes = serde_json::to_vec(&config).map_err(|e| Error::Json {
            what: "config".into(),
            source: e,
        })?;
        let cd = self.write_blob_bytes(&cfg_bytes)?;
        let (id, desc) = self.store_manifest(
            &cfg_bytes,
            cd,
            vec![Descriptor::new(compression.oci_media_type(), digest, size)],
        )?;
        self.record_image(&desc, name)?;
        Ok(id)
    }

    fn import_rootfs_tar(
        &self,
        mut f: File,
        compression: Compression,
        src: &Path,
        name: Option<&Reference>,
    ) -> Result<ImageId> {
        let (digest, size) = self.write_blob(&mut f, None)?;
        let diff_id = diff_id_of(self.open_blob(&digest)?, compression, src)?;
        self.import_layer_blob(digest, size, compression, diff_id, name)
    }

    fn import_rootfs_dir(&self, src: &Path, name: Option<&Reference>) -> Result<ImageId> {
        let tmp = TempPath::new(self.tmp_dir().join(temp_name("rootfs-")));
        {
            let f = File::create(tmp.path()).at(tmp.path())?;
            let mut b = tar::Builder::new(io::BufWriter::new(f));
            b.follow_symlinks(false);
            b.append_dir_all(".", src).at(src)?;
            b.into_inner()
                .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
                .at(tmp.path())?;
        }
        let mut f = File::open(tmp.path()).at(tmp.path())?;
        let (digest, size) = self.write_blob(&mut f, None)?;
        self.import_layer_blob(digest.clone(), size, Compression::None, digest, name)
    }

    /// Export `image` to `out` (written atomically) in `format`.
    pub fn save(&self, image: &str, out: &Path, format: ArchiveFormat) -> Result<()> {
        let img = self.find(image)?;
        let dir = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = TempPath::new(dir.join(temp_name(".berth-save-")));
        let f = File::create(tmp.path()).at(tmp.path())?;
        let mut b = tar::Builder::new(io::BufWriter::new(f));
        let add = |b: &mut tar::Builder<io::BufWriter<File>>,
                   path: &str,
                   size: u64,
                   r: &mut dyn Read|
         -> Result<()> {
            let mut h = tar::Header::new_ustar();
            h.set_size(size);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, path, r).at(tmp.path())
        };
        match format {
            ArchiveFormat::OciArchive => {
                add(
                    &mut b,
                    "oci-layout",
                    30,
                    &mut &br#"{"imageLayoutVersion":"1.0.0"}"#[..],
                )?;
                let mut desc = Descriptor::new(
                    img.manifest
                        .media_type
                        .as_deref()
                        .unwrap_or(oci::OCI_MANIFEST),
                    img.manifest_digest.clone(),
                    fs::metadata(self.blob_path(&img.manifest_digest))
                        .at(self.blob_path(&img.manifest_digest))?
                        .len(),
                );
                if let Some(n) = img.names.first() {
                    desc.annotations
                        .insert(oci::ANNOTATION_IMAGE_NAME.into(), n.to_string());
                    desc.annotations.insert(
                        oci::ANNOTATION_REF_NAME.into(),
                        n.tag().unwrap_or("latest").into(),
                    );
                }
                let index = Index {
                    manifests: vec![desc],
                    ..Index::empty()
                };
                let ib = serde_json::to_vec(&index).map_err(|e| Error::Json {
                    what: "index.json".into(),
                    source: e,
                })?;
                add(&mut b, "index.json", ib.len() as u64, &mut &ib[..])?;
                let blobs = [
                    img.manifest_digest.clone(),
                    img.manifest.config.digest.clone(),
                ]
                .into_iter()
                .chain(img.manifest.layers.iter().map(|l| l.digest.clone()));
                for d in blobs {
                    let mut f = self.open_blob(&d)?;
                    let size = f.metadata().at(self.blob_path(&d))?.len();
                    add(&mut b, &format!("blobs/sha256/{}", d.hex()), size, &mut f)?;
                }
            }
            ArchiveFormat::DockerArchive => {
                let cfg = self.read_blob(&img.manifest.config.digest)?;
                let cfg_name = format!("{}.json", img.id.0.hex());
                add(&mut b, &cfg_name, cfg.len() as u64, &mut &cfg[..])?;
                let mut layer_names = Vec::new();
                for (l, diff_id) in img.manifest.layers.iter().zip(&img.config.rootfs.diff_ids) {
                    // docker-archive layers are uncompressed tars; decompress to a temp file
                    // first because the tar header needs the size up front.
                    let plain = TempPath::new(self.tmp_dir().join(temp_name("layer-")));
                    let mut w = File::create(plain.path()).at(plain.path())?;
                    let mut dec = Compression::from_media_type(&l.media_type)?
                        .decoder(io::BufReader::new(self.open_blob(&l.digest)?))
                        .at(self.blob_path(&l.digest))?;
                    let size = io::copy(&mut dec, &mut w).at(plain.path())?;
                    w.flush().at(plain.path())?;
                    let rel = format!("{}/layer.tar", diff_id.hex());
                    add(
                        &mut b,
                        &rel,
                        size,
                        &mut File::open(plain.path()).at(plain.path())?,
                    )?;
                    layer_names.push(rel);
                }
                let entry = DockerManifestEntry {
                    config: cfg_name,
                    repo_tags: Some(
                        img.names
                            .iter()
                            .filter(|n| n.tag().is_some())
                            .map(|n| n.familiar())
                            .collect(),
                    ),
                    layers: layer_names,
                };
                let mb = serde_json::to_vec(&[entry]).map_err(|e| Error::Json {
                    what: "manifest.json".into(),
                    source: e,
                })?;
                add(&mut b, "manifest.json", mb.len() as u64, &mut &mb[..])?;
            }
        }
        let w = b.into_inner().at(tmp.path())?;
        let f = w.into_inner().map_err(|e| e.into_error()).at(tmp.path())?;
        f.sync_all().at(tmp.path())?;
        fs::rename(tmp.path(), out).at(out)?;
        tmp.keep();
        Ok(())
    }
}
