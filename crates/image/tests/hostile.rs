//! Hostile inputs that used to hang or never end, performed for real: image layouts and
//! archives whose index or blobs are FIFOs, devices or links to /dev/zero, blobs larger
//! than their descriptors, and a registry that sends one byte of a blob and then stalls.
//! Each operation runs on a thread with a generous deadline, so a regression fails the
//! test instead of hanging it.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use berth_image::oci::{self, Compression, Descriptor, Manifest, RunConfig};
use berth_image::{Digest, Error, PullOptions, Reference, Store};
use common::{tar, Entry};

const DEADLINE: Duration = Duration::from_secs(60);

/// Run `f` on a thread; panic if it takes longer than [`DEADLINE`]. `unblock` is called
/// first on a timeout (to release a thread stuck on a FIFO before the test fails).
fn within_deadline<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
    unblock: impl FnOnce(),
) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(v) => v,
        Err(_) => {
            unblock();
            panic!("operation still running after {DEADLINE:?}: it hangs");
        }
    }
}

fn mkfifo(p: &Path) {
    let _ = fs::remove_file(p);
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Open a FIFO read-write (never blocks) and close it: a reader blocked on it wakes.
fn poke(p: &Path) {
    let _ = fs::OpenOptions::new().read(true).write(true).open(p);
}

fn layer_tar() -> Vec<u8> {
    tar(&[Entry::dir("etc"), Entry::file("etc/hello", b"hi\n")])
}

/// An OCI layout at `dir` with one layer; returns the layer blob's path.
fn layout(dir: &Path) -> PathBuf {
    common::build_layout(
        dir,
        &[(layer_tar(), Compression::None)],
        RunConfig::default(),
        "latest",
    );
    let layer = Digest::of(&layer_tar());
    dir.join("blobs/sha256").join(layer.hex())
}

fn assert_store_clean(root: &Path) {
    for d in ["ingest", "tmp"] {
        let left: Vec<_> = fs::read_dir(root.join(d)).unwrap().collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    let index = fs::read_to_string(root.join("index.json")).unwrap();
    assert!(!index.contains("sha256"), "nothing recorded: {index}");
}

/// Import `src` into a fresh store under `t`, within the deadline; returns the error.
fn import_err(t: &Path, src: &Path, fifo: Option<PathBuf>) -> Error {
    let root = t.join("store");
    let store = Store::open(&root).unwrap();
    let src = src.to_path_buf();
    let result = within_deadline(
        move || store.import(&src, None).map(|_| ()),
        || {
            if let Some(f) = &fifo {
                poke(f)
            }
        },
    );
    let e = result.expect_err("hostile input was accepted");
    assert_store_clean(&root);
    e
}

fn msg(e: &Error) -> String {
    let s = e.to_string();
    assert_eq!(s.lines().count(), 1, "one line: {s}");
    s
}

#[test]
fn fifo_as_index_json_is_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("layout");
    layout(&dir);
    mkfifo(&dir.join("index.json"));
    let e = import_err(t.path(), &dir, Some(dir.join("index.json")));
    assert!(
        matches!(e, Error::InputFile { .. }) && msg(&e).contains("index.json: is a FIFO"),
        "{e}"
    );
}

#[test]
fn fifo_as_a_layout_blob_is_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("layout");
    let blob = layout(&dir);
    mkfifo(&blob);
    let e = import_err(t.path(), &dir, Some(blob.clone()));
    assert!(msg(&e).contains("is a FIFO"), "{e}");
    assert!(msg(&e).contains(&blob.file_name().unwrap().to_string_lossy().to_string()));
}

#[test]
fn oversized_blob_is_cut_off_at_its_descriptor_size() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("layout");
    let blob = layout(&dir);
    fs::OpenOptions::new()
        .append(true)
        .open(&blob)
        .unwrap()
        .write_all(&[0u8; 4096])
        .unwrap();
    let e = import_err(t.path(), &dir, None);
    assert!(msg(&e).contains("but its descriptor says"), "{e}");
}

/// An oci-archive tar of the layout at `dir`, with the layer blob's member replaced by
/// `member` (same path).
fn archive_with_layer_member(t: &Path, member: impl Fn(&str) -> Entry) -> PathBuf {
    let dir = t.join("layout");
    let blob = layout(&dir);
    let mut entries = vec![
        Entry::file("oci-layout", &fs::read(dir.join("oci-layout")).unwrap()),
        Entry::file("index.json", &fs::read(dir.join("index.json")).unwrap()),
        Entry::dir("blobs"),
        Entry::dir("blobs/sha256"),
    ];
    for e in fs::read_dir(dir.join("blobs/sha256")).unwrap() {
        let p = e.unwrap().path();
        let rel = format!("blobs/sha256/{}", p.file_name().unwrap().to_string_lossy());
        entries.push(if p == blob {
            member(&rel)
        } else {
            Entry::file(&rel, &fs::read(&p).unwrap())
        });
    }
    let out = t.join("hostile.tar");
    fs::write(&out, tar(&entries)).unwrap();
    out
}

#[test]
fn archive_member_linking_to_dev_zero_is_refused() {
    let t = tempfile::tempdir().unwrap();
    // Both an absolute link and one climbing out of the archive: neither is followed.
    for target in ["/dev/zero", "../../../../../../../../dev/zero"] {
        let tar = archive_with_layer_member(t.path(), |rel| Entry::symlink(rel, target));
        let e = import_err(t.path(), &tar, None);
        assert!(msg(&e).contains("is a symlink"), "{target}: {e}");
        fs::remove_dir_all(t.path().join("store")).unwrap();
        fs::remove_dir_all(t.path().join("layout")).unwrap();
    }
}

#[test]
fn archive_member_that_is_a_device_or_fifo_is_refused() {
    let t = tempfile::tempdir().unwrap();
    for (member, kind) in [
        (
            Entry::chardev as fn(&str, u32, u32) -> Entry,
            "a character device",
        ),
        (|p: &str, _, _| Entry::fifo(p), "a FIFO"),
    ] {
        // 1:5 is /dev/zero: read, it would fill the disk.
        let tar = archive_with_layer_member(t.path(), |rel| member(rel, 1, 5));
        let e = import_err(t.path(), &tar, None);
        assert!(msg(&e).contains(kind), "{kind}: {e}");
        fs::remove_dir_all(t.path().join("store")).unwrap();
        fs::remove_dir_all(t.path().join("layout")).unwrap();
    }
}

#[test]
fn load_of_a_fifo_or_device_path_is_refused_at_once() {
    let t = tempfile::tempdir().unwrap();
    let fifo = t.path().join("archive.fifo");
    mkfifo(&fifo);
    let e = import_err(t.path(), &fifo, Some(fifo.clone()));
    assert!(msg(&e).contains("is a FIFO"), "{e}");
    fs::remove_dir_all(t.path().join("store")).unwrap();
    let e = import_err(t.path(), Path::new("/dev/zero"), None);
    assert!(msg(&e).contains("/dev/zero: is a character device"), "{e}");
}

/// A registry on loopback that answers /v2/ and the manifest, serves the config, then
/// sends the headers and one byte of the layer and stalls until the test ends.
struct StallingRegistry {
    addr: String,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for StallingRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn response(status: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

fn stalling_registry(manifest: Vec<u8>, config: Vec<u8>, layer: Vec<u8>) -> StallingRegistry {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let config_path = format!("/v2/stall/blobs/{}", Digest::of(&config));
    let layer_path = format!("/v2/stall/blobs/{}", Digest::of(&layer));
    let thread = std::thread::spawn(move || {
        std::thread::scope(|s| {
            while !stop2.load(Ordering::SeqCst) {
                let mut conn = match listener.accept() {
                    Ok((c, _)) => c,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(10));
                        continue;
                    }
                };
                let (stop, manifest, config, layer) = (&stop2, &manifest, &config, &layer);
                let (config_path, layer_path) = (&config_path, &layer_path);
                s.spawn(move || {
                    conn.set_nonblocking(false).unwrap();
                    conn.set_read_timeout(Some(Duration::from_millis(100)))
                        .unwrap();
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !stop.load(Ordering::SeqCst) {
                        let n = match conn.read(&mut buf) {
                            Ok(0) => return,
                            Ok(n) => n,
                            Err(_) => continue, // read timeout: check stop, keep waiting
                        };
                        req.extend_from_slice(&buf[..n]);
                        let Some(end) = req.windows(4).position(|w| w == b"\r\n\r\n") else {
                            continue;
                        };
                        let head = String::from_utf8_lossy(&req[..end]).into_owned();
                        req.drain(..end + 4);
                        let path = head.split(' ').nth(1).unwrap_or("").to_string();
                        let out = if path == "/v2/" {
                            response("200 OK", "application/json", b"{}")
                        } else if path == "/v2/stall/manifests/latest" {
                            response("200 OK", oci::OCI_MANIFEST, manifest)
                        } else if &path == config_path {
                            response("200 OK", "application/octet-stream", config)
                        } else if &path == layer_path {
                            let mut r = format!(
                                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                                layer.len()
                            )
                            .into_bytes();
                            r.push(layer[0]);
                            let _ = conn.write_all(&r);
                            // Stall: the connection stays open, nothing more is sent.
                            while !stop.load(Ordering::SeqCst) {
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            return;
                        } else {
                            response("404 Not Found", "application/json", b"{}")
                        };
                        if conn.write_all(&out).is_err() {
                            return;
                        }
                    }
                });
            }
        });
    });
    StallingRegistry {
        addr,
        stop,
        thread: Some(thread),
    }
}

#[test]
fn stalled_registry_transfer_times_out_naming_the_blob() {
    let layer = common::noise(1 << 20, 7);
    let layer_tar = tar(&[Entry::file("big", &layer)]);
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": oci::host_arch(), "os": "linux", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(&layer_tar).to_string()]},
    }))
    .unwrap();
    let manifest = serde_json::to_vec(&Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        config: Descriptor::new(oci::OCI_CONFIG, Digest::of(&config), config.len() as u64),
        layers: vec![Descriptor::new(
            oci::OCI_LAYER,
            Digest::of(&layer_tar),
            layer_tar.len() as u64,
        )],
        annotations: Default::default(),
    })
    .unwrap();
    let reg = stalling_registry(manifest, config, layer_tar.clone());
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("store");
    let store = Store::open(&root).unwrap();
    let r: Reference = format!("{}/stall:latest", reg.addr).parse().unwrap();
    let opts = PullOptions {
        stall_timeout: Duration::from_millis(500),
        progress: false,
        ..PullOptions::default()
    };
    let s2 = store.clone();
    let result = within_deadline(move || s2.pull(&r, &opts).map(|_| ()), || {});
    let e = result.expect_err("a stalled transfer cannot succeed");
    let m = msg(&e);
    assert!(
        matches!(e, Error::Registry { .. })
            && m.contains(&Digest::of(&layer_tar).to_string())
            && m.contains("stalled"),
        "{m}"
    );
    // Nothing partial: no ingest temp file, no layer blob, no image recorded.
    assert_store_clean(&root);
    assert!(!root
        .join("blobs/sha256")
        .join(Digest::of(&layer_tar).hex())
        .exists());
    drop(reg);
}

/// docker-archive directories too: a FIFO manifest.json, and a layer that links to
/// /dev/zero, are refused without reading.
#[test]
fn docker_archive_with_fifo_manifest_or_dev_zero_layer_is_refused() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("docker");
    fs::create_dir_all(&dir).unwrap();
    mkfifo(&dir.join("manifest.json"));
    let e = import_err(t.path(), &dir, Some(dir.join("manifest.json")));
    assert!(msg(&e).contains("manifest.json: is a FIFO"), "{e}");
    fs::remove_dir_all(t.path().join("store")).unwrap();

    let config = serde_json::json!({
        "architecture": oci::host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [Digest::of(b"").to_string()]},
    });
    fs::write(
        dir.join("config.json"),
        serde_json::to_vec(&config).unwrap(),
    )
    .unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("layer.tar")).unwrap();
    fs::remove_file(dir.join("manifest.json")).unwrap();
    fs::write(
        dir.join("manifest.json"),
        br#"[{"Config":"config.json","RepoTags":["x:1"],"Layers":["layer.tar"]}]"#,
    )
    .unwrap();
    let e = import_err(t.path(), &dir, None);
    assert!(msg(&e).contains("layer.tar: is a symlink"), "{e}");
}
