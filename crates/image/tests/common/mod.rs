//! Test helpers: a raw tar writer (so tests can build the hostile archives a well-behaved
//! tar library refuses to write), OCI layout assembly, and small helpers.
#![allow(dead_code)] // each test binary uses a different subset

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_image::oci::{Compression, Descriptor, ImageConfig, Index, Manifest, RootFs, RunConfig};
use berth_image::Digest;

/// One tar entry with every header field a test may want to set.
#[derive(Clone)]
pub struct Entry {
    pub path: String,
    pub kind: u8,
    pub data: Vec<u8>,
    pub link: String,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
    /// PAX records (key, value), written in a PAX header before the entry.
    pub pax: Vec<(String, Vec<u8>)>,
}

impl Entry {
    fn new(path: &str, kind: u8, mode: u32) -> Entry {
        Entry {
            path: path.into(),
            kind,
            data: vec![],
            link: String::new(),
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            dev: (0, 0),
            pax: vec![],
        }
    }
    pub fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            data: data.to_vec(),
            ..Entry::new(path, b'0', 0o644)
        }
    }
    pub fn dir(path: &str) -> Entry {
        Entry::new(path, b'5', 0o755)
    }
    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry {
            link: target.into(),
            ..Entry::new(path, b'2', 0o777)
        }
    }
    pub fn hardlink(path: &str, target: &str) -> Entry {
        Entry {
            link: target.into(),
            ..Entry::new(path, b'1', 0o644)
        }
    }
    pub fn fifo(path: &str) -> Entry {
        Entry::new(path, b'6', 0o600)
    }
    pub fn chardev(path: &str, major: u32, minor: u32) -> Entry {
        Entry {
            dev: (major, minor),
            ..Entry::new(path, b'3', 0o666)
        }
    }
    pub fn mode(mut self, mode: u32) -> Entry {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Entry {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn xattr(self, k: &str, v: &[u8]) -> Entry {
        self.pax(&format!("SCHILY.xattr.{k}"), v)
    }
    pub fn pax(mut self, k: &str, v: &[u8]) -> Entry {
        self.pax.push((k.into(), v.to_vec()));
        self
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}\0", v, width = field.len() - 1);
    field.copy_from_slice(s.as_bytes());
}

fn header(name: &[u8], kind: u8, size: u64, e: &Entry) -> [u8; 512] {
    let mut h = [0u8; 512];
    assert!(
        name.len() <= 100 && e.link.len() <= 100,
        "test paths must fit a ustar header"
    );
    h[..name.len()].copy_from_slice(name);
    octal(&mut h[100..108], e.mode as u64);
    octal(&mut h[108..116], e.uid);
    octal(&mut h[116..124], e.gid);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime);
    h[156] = kind;
    h[157..157 + e.link.len()].copy_from_slice(e.link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], e.dev.0 as u64);
    octal(&mut h[337..345], e.dev.1 as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pad(buf: &mut Vec<u8>) {
    while !buf.len().is_multiple_of(512) {
        buf.push(0);
    }
}

/// Serialise entries as an uncompressed tar, byte for byte as given (no path checks).
pub fn tar(entries: &[Entry]) -> Vec<u8> {
    let mut buf = Vec::new();
    for e in entries {
        if !e.pax.is_empty() {
            let mut pax = Vec::new();
            for (k, v) in &e.pax {
                let body_len = 1 + k.len() + 1 + v.len() + 1;
                let mut len = body_len + 1;
                while len.to_string().len() + body_len != len {
                    len = len.to_string().len() + body_len;
                }
                pax.extend_from_slice(format!("{len} {k}=").as_bytes());
                pax.extend_from_slice(v);
                pax.push(b'\n');
            }
            buf.extend_from_slice(&header(b"PaxHeader", b'x', pax.len() as u64, e));
            buf.extend_from_slice(&pax);
            pad(&mut buf);
        }
        buf.extend_from_slice(&header(e.path.as_bytes(), e.kind, e.data.len() as u64, e));
        buf.extend_from_slice(&e.data);
        pad(&mut buf);
    }
    buf.extend_from_slice(&[0u8; 1024]);
    buf
}

/// `len` incompressible bytes (xorshift), so a compressed layer is as large as its tar.
pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn compress(data: &[u8], c: Compression) -> Vec<u8> {
    match c {
        Compression::None => data.to_vec(),
        Compression::Gzip => {
            let mut w = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            w.write_all(data).unwrap();
            w.finish().unwrap()
        }
        Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
    }
}

fn put_blob(dir: &Path, bytes: &[u8]) -> Digest {
    let d = Digest::of(bytes);
    fs::write(dir.join("blobs/sha256").join(d.hex()), bytes).unwrap();
    d
}

/// Write an OCI image layout at `dir` from uncompressed layer tars, each stored with the
/// given compression, and tag it `ref_name` in index.json.
pub fn build_layout(
    dir: &Path,
    layers: &[(Vec<u8>, Compression)],
    config: RunConfig,
    ref_name: &str,
) -> Digest {
    let blobs: Vec<_> = layers
        .iter()
        .map(|(tar, c)| (compress(tar, *c), *c, Digest::of(tar)))
        .collect();
    build_layout_from_blobs(dir, &blobs, config, ref_name)
}

/// [`build_layout`] from layer blobs as stored, each with its compression and the diff_id
/// its config claims (so a test can store a blob that does not decode to it).
pub fn build_layout_from_blobs(
    dir: &Path,
    layers: &[(Vec<u8>, Compression, Digest)],
    config: RunConfig,
    ref_name: &str,
) -> Digest {
    fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for (blob, c, diff_id) in layers {
        diff_ids.push(diff_id.clone());
        let d = put_blob(dir, blob);
        descs.push(Descriptor::new(c.oci_media_type(), d, blob.len() as u64));
    }
    let cfg = ImageConfig {
        created: Some("2024-01-01T00:00:00Z".into()),
        author: None,
        architecture: "amd64".into(),
        os: "linux".into(),
        config,
        rootfs: RootFs {
            kind: "layers".into(),
            diff_ids,
        },
    };
    let cb = serde_json::to_vec(&cfg).unwrap();
    let cd = put_blob(dir, &cb);
    let m = Manifest {
        schema_version: 2,
        media_type: Some(berth_image::oci::OCI_MANIFEST.into()),
        config: Descriptor::new(berth_image::oci::OCI_CONFIG, cd, cb.len() as u64),
        layers: descs,
        annotations: Default::default(),
    };
    let mb = serde_json::to_vec(&m).unwrap();
    let md = put_blob(dir, &mb);
    let mut desc = Descriptor::new(berth_image::oci::OCI_MANIFEST, md.clone(), mb.len() as u64);
    desc.annotations.insert(
        berth_image::oci::ANNOTATION_REF_NAME.into(),
        ref_name.into(),
    );
    let index = Index {
        manifests: vec![desc],
        ..Index::empty()
    };
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    md
}

/// Build the busybox fixture image with scripts/build-test-image.sh into `dir`.
pub fn busybox_layout(dir: &Path, multi_layer: bool) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-image.sh");
    let mut cmd = Command::new(script);
    cmd.arg(dir);
    if multi_layer {
        cmd.arg("--multi-layer");
    }
    let out = cmd.output().expect("run build-test-image.sh");
    assert!(
        out.status.success(),
        "build-test-image.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Prune with nothing in use outside the store (no containers in these tests).
pub fn prune(store: &berth_image::Store) -> berth_image::PruneReport {
    store
        .prune(&store.lock_gc().unwrap(), &berth_image::InUse::default())
        .unwrap()
}

/// A unique container ID for this test process.
pub fn cid(name: &str) -> String {
    format!("{name}-{}", std::process::id())
}

pub fn is_mounted(path: &Path) -> bool {
    let canon = fs::canonicalize(path).unwrap_or_else(|_| PathBuf::from(path));
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split(' ').nth(4) == Some(canon.to_str().unwrap()))
}
