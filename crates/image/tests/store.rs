//! Store, import and export against real files, checked with skopeo where it can read
//! the result.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use std::fs;
use std::process::Command;

use berth_image::oci::{Compression, RunConfig};
use berth_image::{ArchiveFormat, Error, Reference, Store};
use common::{tar, Entry};

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn import_busybox_layout_then_list_inspect_find_remove() {
    let t = tempfile::tempdir().unwrap();
    common::busybox_layout(&t.path().join("layout"), true);
    let store = Store::open(&t.path().join("store")).unwrap();
    let id = store
        .import(&t.path().join("layout"), Some(&r("busybox:test")))
        .unwrap();

    let list = store.list().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, id);
    assert_eq!(list[0].names, ["docker.io/library/busybox:test"]);

    // The store itself is an OCI layout another tool can read.
    let o = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci:{}:test", t.path().join("store").display()),
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "skopeo cannot read the store: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    let info = store.inspect("busybox:test").unwrap();
    assert_eq!(info.root_fs.layers.len(), 2);
    assert_eq!(
        info.config.cmd.as_deref(),
        Some(&["/bin/sh".to_string()][..])
    );
    assert_eq!(info.config.stop_signal.as_deref(), Some("SIGTERM"));
    // By ID prefix and by digest reference.
    assert_eq!(store.find(&id.0.hex()[..12]).unwrap().id, id);
    let by_digest = format!("busybox@{}", info.manifest_digest);
    assert_eq!(store.find(&by_digest).unwrap().id, id);
    assert!(matches!(
        store.find("busybox:other"),
        Err(Error::ImageNotFound(_))
    ));

    // A second name on the same image, then untag one name at a time.
    store
        .import(&t.path().join("layout"), Some(&r("localhost:5000/bb:v1")))
        .unwrap();
    assert_eq!(store.list().unwrap()[0].names.len(), 2);
    assert_eq!(
        store
            .remove("busybox:test", false, &Default::default())
            .unwrap(),
        ["docker.io/library/busybox:test"]
    );
    assert_eq!(store.list().unwrap()[0].names, ["localhost:5000/bb:v1"]);
    store
        .remove(&id.to_string(), false, &Default::default())
        .unwrap();
    assert!(store.list().unwrap().is_empty());

    // Everything is now garbage.
    let report = common::prune(&store);
    assert_eq!(report.blobs_removed, 4, "manifest, config, two layers");
    assert_eq!(
        fs::read_dir(t.path().join("store/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn retagging_leaves_the_old_image_dangling_not_lost() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let mk = |n: &str, content: &[u8]| {
        let dir = t.path().join(n);
        common::build_layout(
            &dir,
            &[(tar(&[Entry::file("f", content)]), Compression::Gzip)],
            RunConfig::default(),
            "latest",
        );
        dir
    };
    let a = store.import(&mk("a", b"a"), Some(&r("app"))).unwrap();
    let b = store.import(&mk("b", b"b"), Some(&r("app"))).unwrap();
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    let dangling = list.iter().find(|s| s.id == a).unwrap();
    assert!(dangling.names.is_empty());
    assert_eq!(store.find("app").unwrap().id, b);
    // Pruning images: dangling first, then (with `all`) everything unused.
    assert_eq!(store.prune_images(false, &Default::default()).unwrap(), [a]);
    assert_eq!(store.list().unwrap().len(), 1);
    assert_eq!(store.prune_images(true, &Default::default()).unwrap(), [b]);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(
        common::prune(&store).blobs_removed,
        6,
        "two manifests, configs and layers"
    );
}

#[test]
fn save_and_load_round_trip_in_both_formats() {
    let t = tempfile::tempdir().unwrap();
    common::busybox_layout(&t.path().join("layout"), true);
    let store = Store::open(&t.path().join("store")).unwrap();
    let id = store
        .import(&t.path().join("layout"), Some(&r("busybox:rt")))
        .unwrap();
    for (format, skopeo_transport) in [
        (ArchiveFormat::OciArchive, "oci-archive"),
        (ArchiveFormat::DockerArchive, "docker-archive"),
    ] {
        let out = t.path().join(format!("{skopeo_transport}.tar"));
        store.save("busybox:rt", &out, format).unwrap();
        // An independent reader accepts the archive.
        let o = Command::new("skopeo")
            .args([
                "inspect",
                "--raw",
                &format!("{skopeo_transport}:{}", out.display()),
            ])
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "skopeo rejects our {skopeo_transport}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let fresh = Store::open(&t.path().join(format!("store-{skopeo_transport}"))).unwrap();
        assert_eq!(
            fresh.import(&out, None).unwrap(),
            id,
            "{skopeo_transport}: same config, same image ID"
        );
        assert_eq!(
            fresh.list().unwrap()[0].names,
            ["docker.io/library/busybox:rt"]
        );
        // The loaded image unpacks to the same tree.
        let rootfs = t.path().join(format!("rootfs-{skopeo_transport}"));
        fs::create_dir(&rootfs).unwrap();
        fresh.unpack_flat("busybox:rt", &rootfs).unwrap();
        assert!(rootfs.join("bin/busybox").is_file());
        assert!(
            !rootfs.join("etc/motd").exists(),
            "layer 2 whiteout applied"
        );
        assert_eq!(fs::read_to_string(rootfs.join("opt/c")).unwrap(), "c\n");
    }
}

#[test]
fn import_archive_written_by_skopeo() {
    let t = tempfile::tempdir().unwrap();
    common::busybox_layout(&t.path().join("layout"), false);
    let arch = t.path().join("docker.tar");
    let o = Command::new("skopeo")
        .args([
            "copy",
            &format!("oci:{}:latest", t.path().join("layout").display()),
            &format!("docker-archive:{}:example.com/bb:1", arch.display()),
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let store = Store::open(&t.path().join("store")).unwrap();
    store.import(&arch, None).unwrap();
    assert_eq!(store.list().unwrap()[0].names, ["example.com/bb:1"]);
}

#[test]
fn import_plain_rootfs_tar_and_directory() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let raw = tar(&[Entry::dir("etc/"), Entry::file("etc/hostname", b"box\n")]);
    let gz = t.path().join("rootfs.tar.gz");
    fs::write(&gz, common::compress(&raw, Compression::Gzip)).unwrap();
    let id = store.import(&gz, Some(&r("rootfs:tar"))).unwrap();
    let img = store.find("rootfs:tar").unwrap();
    assert_eq!(img.id, id);
    assert_eq!(img.config.rootfs.diff_ids, [berth_image::Digest::of(&raw)]);
    assert_eq!(
        img.manifest.layers[0].media_type,
        berth_image::oci::OCI_LAYER_GZIP
    );

    let dir = t.path().join("tree");
    fs::create_dir_all(dir.join("usr/bin")).unwrap();
    fs::write(dir.join("usr/bin/tool"), b"#!/bin/sh\n").unwrap();
    std::os::unix::fs::symlink("usr/bin", dir.join("bin")).unwrap();
    store.import(&dir, Some(&r("rootfs:dir"))).unwrap();
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    store.unpack_flat("rootfs:dir", &out).unwrap();
    assert_eq!(fs::read(out.join("usr/bin/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(
        fs::read_link(out.join("bin")).unwrap(),
        std::path::Path::new("usr/bin")
    );
}

#[test]
fn tampered_layout_is_rejected_and_store_stays_clean() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let raw = tar(&[Entry::file("f", b"content")]);
    common::build_layout(
        &layout,
        &[(raw.clone(), Compression::None)],
        RunConfig::default(),
        "latest",
    );
    // Corrupt the layer blob in place (same size, different bytes).
    let layer = layout
        .join("blobs/sha256")
        .join(berth_image::Digest::of(&raw).hex());
    let mut bytes = fs::read(&layer).unwrap();
    bytes[600] ^= 0xff;
    fs::write(&layer, bytes).unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    assert!(matches!(
        store.import(&layout, Some(&r("bad"))),
        Err(Error::DigestMismatch { .. })
    ));
    assert!(
        store.list().unwrap().is_empty(),
        "nothing named after a failed import"
    );
    assert_eq!(
        fs::read_dir(t.path().join("store/ingest")).unwrap().count(),
        0
    );
}

#[test]
fn prune_keeps_what_images_use_and_cleans_crash_leftovers() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let layout = t.path().join("layout");
    common::build_layout(
        &layout,
        &[(tar(&[Entry::file("f", b"x")]), Compression::Gzip)],
        RunConfig::default(),
        "latest",
    );
    store.import(&layout, Some(&r("keep"))).unwrap();
    // What a crash mid-write leaves: a partial ingest file and a half-unpacked snapshot.
    fs::write(t.path().join("store/ingest/123-0-0"), b"partial").unwrap();
    fs::create_dir_all(t.path().join("store/snapshots/.tmp-123-0-0/fs/x")).unwrap();
    // An unreferenced blob.
    fs::write(
        t.path()
            .join("store/blobs/sha256")
            .join(berth_image::Digest::of(b"orphan").hex()),
        b"orphan",
    )
    .unwrap();
    let report = common::prune(&store);
    assert_eq!((report.blobs_removed, report.snapshots_removed), (1, 1));
    assert_eq!(
        fs::read_dir(t.path().join("store/ingest")).unwrap().count(),
        0
    );
    let out = t.path().join("out");
    fs::create_dir(&out).unwrap();
    store.unpack_flat("keep", &out).unwrap();
    assert_eq!(fs::read(out.join("f")).unwrap(), b"x");
}

#[test]
fn concurrent_imports_all_land_in_the_index() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    let layouts: Vec<_> = (0..6)
        .map(|i| {
            let dir = t.path().join(format!("l{i}"));
            // Every image shares one layer and has one of its own: blob writers collide.
            let layers = [
                (tar(&[Entry::file("shared", b"same")]), Compression::Gzip),
                (
                    tar(&[Entry::file("own", format!("{i}").as_bytes())]),
                    Compression::None,
                ),
            ];
            common::build_layout(&dir, &layers, RunConfig::default(), "latest");
            dir
        })
        .collect();
    std::thread::scope(|s| {
        for (i, dir) in layouts.iter().enumerate() {
            let store = store.clone();
            s.spawn(move || store.import(dir, Some(&r(&format!("app{i}:v")))).unwrap());
        }
    });
    let list = store.list().unwrap();
    assert_eq!(list.len(), 6);
    for i in 0..6 {
        assert!(store.find(&format!("app{i}:v")).is_ok());
    }
}

#[test]
fn hostile_archives_cannot_escape_or_read_outside() {
    let t = tempfile::tempdir().unwrap();
    let store = Store::open(&t.path().join("store")).unwrap();
    // An oci-archive whose extraction would write outside the temp dir.
    let evil = t.path().join("evil.tar");
    fs::write(
        &evil,
        tar(&[
            Entry::file("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
            Entry::file("../../evil", b"x"),
        ]),
    )
    .unwrap();
    assert!(matches!(
        store.import(&evil, None),
        Err(Error::UnsafeEntry { .. })
    ));
    assert!(!t.path().join("evil").exists() && !t.path().join("store/evil").exists());
    // A docker-archive naming files outside itself: resolved inside the archive, so missing.
    let secret = t.path().join("secret.json");
    fs::write(
        &secret,
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#,
    )
    .unwrap();
    let manifest = format!(
        r#"[{{"Config":"../../../../../../..{}","RepoTags":["x:1"],"Layers":[]}}]"#,
        secret.display()
    );
    let arch = t.path().join("docker.tar");
    fs::write(
        &arch,
        tar(&[Entry::file("manifest.json", manifest.as_bytes())]),
    )
    .unwrap();
    let err = store.import(&arch, None).unwrap_err();
    assert!(matches!(err, Error::Archive { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}
