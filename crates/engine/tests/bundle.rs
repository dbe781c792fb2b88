//! Bundles on real OverlayFS mounts: snapshots shared between containers, whiteouts and
//! opaque directories applied by the kernel, config.json from the image config, cleanup.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

// The image crate's fixtures (raw tar writer, OCI layouts), shared rather than copied.
#[path = "../../image/tests/common/mod.rs"]
mod common;

use std::fs;
use std::process::Command;

use berth_engine::{Bundles, RunOverrides};
use berth_image::oci::{Compression, RunConfig};
use berth_image::{Digest, Reference, Store};
use common::{tar, Entry};

/// Removes a container bundle even when the test panics.
struct BundleGuard<'a> {
    store: &'a Store,
    id: String,
}

impl Drop for BundleGuard<'_> {
    fn drop(&mut self) {
        let _ = bundles(self.store).remove(&self.id);
    }
}

fn bundles(store: &Store) -> Bundles {
    Bundles::new(store).unwrap()
}

fn snapshot_count(store: &Store) -> usize {
    fs::read_dir(store.root().join("snapshots"))
        .unwrap()
        .count()
}

#[test]
fn busybox_bundle_on_overlay_runs_and_is_removed() {
    let t = tempfile::tempdir().unwrap();
    common::busybox_layout(&t.path().join("layout"), true);
    let store = Store::open(&t.path().join("store")).unwrap();
    let name: Reference = "busybox:bundle".parse().unwrap();
    store.import(&t.path().join("layout"), Some(&name)).unwrap();

    let id = common::cid("bb-a");
    let guard = BundleGuard {
        store: &store,
        id: id.clone(),
    };
    let bdir = t.path().join("bundle-a");
    let o = RunOverrides {
        cmd: vec!["cat".into(), "/opt/c".into()],
        env: vec!["X=1".into()],
        ..Default::default()
    };
    let bundle = bundles(&store)
        .create("busybox:bundle", &id, &o, &bdir)
        .unwrap();
    assert!(bundle.overlay, "OverlayFS is available on this machine");
    assert!(common::is_mounted(&bundle.rootfs));
    let rootfs = &bundle.rootfs;
    // Layer 2's whiteouts hide layer 1's files in the merged view.
    assert!(!rootfs.join("etc/motd").exists());
    let mut opt: Vec<_> = fs::read_dir(rootfs.join("opt"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    opt.sort();
    assert_eq!(opt, ["c"]);
    // The busybox in the image really runs from this rootfs.
    let out = Command::new("chroot")
        .arg(rootfs)
        .args(["/bin/sh", "-c", "cat /opt/c /data/file2"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "c\n2\n",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(bdir.join("config.json")).unwrap()).unwrap();
    assert_eq!(
        spec["process"]["args"],
        serde_json::json!(["cat", "/opt/c"])
    );
    assert_eq!(spec["root"]["path"], "rootfs");
    assert!(spec["process"]["env"]
        .as_array()
        .unwrap()
        .contains(&"X=1".into()));
    assert_eq!(spec["annotations"]["org.berth.test"], "busybox");

    // A write in the container goes to its upper dir, not to the shared snapshot.
    fs::write(rootfs.join("etc/passwd"), b"changed").unwrap();
    let snaps = snapshot_count(&store);
    assert_eq!(snaps, 2);

    // A second container shares the snapshots and sees the pristine file.
    let id_b = common::cid("bb-b");
    let _guard_b = BundleGuard {
        store: &store,
        id: id_b.clone(),
    };
    let b = bundles(&store)
        .create(
            "busybox:bundle",
            &id_b,
            &RunOverrides::default(),
            &t.path().join("bundle-b"),
        )
        .unwrap();
    assert_eq!(snapshot_count(&store), snaps, "no second unpack");
    assert!(fs::read_to_string(b.rootfs.join("etc/passwd"))
        .unwrap()
        .starts_with("root:"));

    // prune keeps snapshots of live containers even once the image is untagged.
    let in_use = bundles(&store)
        .remove_image("busybox:bundle", false)
        .unwrap_err();
    assert!(
        matches!(
            in_use,
            berth_engine::Error::Image(berth_image::Error::ImageInUse { .. })
        ),
        "{in_use}"
    );
    bundles(&store)
        .remove_image("busybox:bundle", true)
        .unwrap();
    bundles(&store).prune().unwrap();
    assert_eq!(snapshot_count(&store), snaps);

    // Creating the same container twice is refused without disturbing the first.
    assert!(bundles(&store)
        .create("busybox:bundle", &id, &RunOverrides::default(), &bdir)
        .is_err());

    let rootfs_path = bundle.rootfs.clone();
    bundle.remove().unwrap();
    std::mem::forget(guard);
    assert!(!common::is_mounted(&rootfs_path));
    assert!(!rootfs_path.exists());
    assert!(!store.root().join("containers").join(&id).exists());
    b.remove().unwrap();
    assert_eq!(bundles(&store).prune().unwrap().0.snapshots_removed, 2);
}

#[test]
fn opaque_directory_hides_lower_entries_through_overlay() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let l1 = tar(&[
        Entry::file("d/lower1", b"1"),
        Entry::file("d/lower2", b"2"),
        Entry::file("keep", b"k"),
        Entry::file("data/seed", b"seeded"),
        Entry::symlink("data/link", "/etc/shadow"),
    ]);
    let l2 = tar(&[
        Entry::dir("d/"),
        Entry::file("d/.wh..wh..opq", b""),
        Entry::file("d/upper", b"u"),
    ]);
    let cfg = RunConfig {
        cmd: Some(vec!["/x".into()]),
        volumes: Some([("/data".to_string(), serde_json::json!({}))].into()),
        ..Default::default()
    };
    common::build_layout(
        &layout,
        &[(l1, Compression::Zstd), (l2, Compression::Gzip)],
        cfg,
        "latest",
    );
    let store = Store::open(&t.path().join("store")).unwrap();
    store
        .import(&layout, Some(&"opaque".parse().unwrap()))
        .unwrap();
    let id = common::cid("opq");
    let _g = BundleGuard {
        store: &store,
        id: id.clone(),
    };
    let b = bundles(&store)
        .create(
            "opaque",
            &id,
            &RunOverrides::default(),
            &t.path().join("bundle"),
        )
        .unwrap();
    let mut d: Vec<_> = fs::read_dir(b.rootfs.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    d.sort();
    assert_eq!(d, ["upper"]);
    assert!(b.rootfs.join("keep").exists());
    assert!(
        bundles(&store).prune_images(true).unwrap().is_empty(),
        "the container's image is kept"
    );
    // The anonymous volume is a bind source under the data root.
    let vol = b
        .spec
        .mounts()
        .as_ref()
        .unwrap()
        .iter()
        .find(|m| m.destination() == std::path::Path::new("/data"))
        .unwrap();
    let src = vol.source().clone().unwrap();
    assert!(src.starts_with(store.root().join("volumes")) && src.is_dir());
    // The new volume starts with the image's content at that path; links are copied, not followed.
    assert_eq!(fs::read(src.join("seed")).unwrap(), b"seeded");
    assert_eq!(
        fs::read_link(src.join("link")).unwrap(),
        std::path::Path::new("/etc/shadow")
    );

    // The flattened fallback produces the same tree.
    let flat = t.path().join("flat");
    fs::create_dir(&flat).unwrap();
    store.unpack_flat("opaque", &flat).unwrap();
    let mut f: Vec<_> = fs::read_dir(flat.join("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    f.sort();
    assert_eq!(f, d);
    b.remove().unwrap();
    assert!(!src.exists(), "anonymous volume removed with the container");
}

#[test]
fn failed_bundle_leaves_nothing_behind() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    // No Entrypoint/Cmd: building the spec fails after the rootfs was mounted.
    common::build_layout(
        &layout,
        &[(tar(&[Entry::file("f", b"x")]), Compression::None)],
        RunConfig::default(),
        "latest",
    );
    let store = Store::open(&t.path().join("store")).unwrap();
    store
        .import(&layout, Some(&"nocmd".parse().unwrap()))
        .unwrap();
    let id = common::cid("fail");
    let _g = BundleGuard {
        store: &store,
        id: id.clone(),
    };
    let bdir = t.path().join("bundle");
    assert!(matches!(
        bundles(&store).create("nocmd", &id, &RunOverrides::default(), &bdir),
        Err(berth_engine::Error::Spec(_))
    ));
    assert!(!common::is_mounted(&bdir.join("rootfs")));
    assert!(!bdir.join("rootfs").exists());
    assert!(!store.root().join("containers").join(&id).exists());
    assert!(bundles(&store)
        .create("nocmd", "../evil", &RunOverrides::default(), &bdir)
        .is_err());
}

#[test]
fn corrupt_gzip_layer_fails_in_one_line_and_leaves_no_partial_snapshot() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    // A good bottom layer, then a gzip layer cut short: the blob matches its digest (the
    // import takes it) but does not decompress to its diff_id.
    let good = tar(&[Entry::file("a", b"a")]);
    let raw = tar(&[Entry::file("big", &common::noise(2 << 20, 4))]);
    let gz = common::compress(&raw, Compression::Gzip);
    common::build_layout_from_blobs(
        &layout,
        &[
            (
                common::compress(&good, Compression::Gzip),
                Compression::Gzip,
                Digest::of(&good),
            ),
            (
                gz[..gz.len() / 2].to_vec(),
                Compression::Gzip,
                Digest::of(&raw),
            ),
        ],
        RunConfig {
            cmd: Some(vec!["/x".into()]),
            ..Default::default()
        },
        "latest",
    );
    let store = Store::open(&t.path().join("store")).unwrap();
    store
        .import(&layout, Some(&"cut".parse().unwrap()))
        .unwrap();
    let id = common::cid("cutgz");
    let _g = BundleGuard {
        store: &store,
        id: id.clone(),
    };
    let bdir = t.path().join("bundle");
    let err = bundles(&store)
        .create("cut", &id, &RunOverrides::default(), &bdir)
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            berth_engine::Error::Image(berth_image::Error::Archive { .. })
        ),
        "{msg}"
    );
    assert!(msg.contains("reading the layer stream (Gzip)"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    // Only the good layer's snapshot exists: no half-unpacked one, no temp dir.
    let names: Vec<_> = fs::read_dir(store.root().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, [Digest::of(&good).hex()]);
    assert!(!bdir.join("rootfs").exists());
    assert!(!store.root().join("containers").join(&id).exists());
}

#[test]
fn concurrent_bundles_share_one_snapshot_set() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let layers = [
        (
            tar(&[Entry::file("bin/tool", &vec![1u8; 1 << 20])]),
            Compression::Gzip,
        ),
        (tar(&[Entry::file("etc/conf", b"c")]), Compression::None),
    ];
    let cfg = RunConfig {
        cmd: Some(vec!["/bin/tool".into()]),
        ..Default::default()
    };
    common::build_layout(&layout, &layers, cfg, "latest");
    let store = Store::open(&t.path().join("store")).unwrap();
    store
        .import(&layout, Some(&"race".parse().unwrap()))
        .unwrap();
    let ids: Vec<String> = (0..4).map(|i| common::cid(&format!("race{i}"))).collect();
    let _guards: Vec<_> = ids
        .iter()
        .map(|id| BundleGuard {
            store: &store,
            id: id.clone(),
        })
        .collect();
    std::thread::scope(|s| {
        for id in &ids {
            let (store, dir) = (&store, t.path().join(id));
            // All four race to unpack the same two snapshots; renames decide the winners.
            s.spawn(move || {
                bundles(store)
                    .create("race", id, &RunOverrides::default(), &dir)
                    .unwrap()
            });
        }
    });
    assert_eq!(
        snapshot_count(&store),
        2,
        "one snapshot per layer, no leftovers"
    );
    for id in &ids {
        assert_eq!(
            fs::read(t.path().join(id).join("rootfs/etc/conf")).unwrap(),
            b"c"
        );
        bundles(&store).remove(id).unwrap();
    }
}

#[test]
fn deep_image_mounts_on_overlay_beyond_the_option_string_limit() {
    let t = tempfile::tempdir().unwrap();
    let layout = t.path().join("layout");
    let n = 80;
    let mut layers: Vec<_> = (0..n)
        .map(|i| {
            (
                tar(&[Entry::file(&format!("l{i}"), b"x")]),
                Compression::None,
            )
        })
        .collect();
    layers[40].0 = tar(&[Entry::file("l40", b"x"), Entry::file(".wh.l0", b"")]);
    let cfg = RunConfig {
        cmd: Some(vec!["/x".into()]),
        ..Default::default()
    };
    common::build_layout(&layout, &layers, cfg, "latest");
    let store = Store::open(&t.path().join("store")).unwrap();
    store
        .import(&layout, Some(&"deep".parse().unwrap()))
        .unwrap();
    // Precondition: the classic `lowerdir=a:b:...` string would not fit in one page.
    let per_layer = store
        .root()
        .join("snapshots")
        .join("0".repeat(64))
        .join("fs")
        .as_os_str()
        .len()
        + 1;
    assert!(per_layer * n > 4096);
    let id = common::cid("deep");
    let _g = BundleGuard {
        store: &store,
        id: id.clone(),
    };
    let b = bundles(&store)
        .create(
            "deep",
            &id,
            &RunOverrides::default(),
            &t.path().join("bundle"),
        )
        .unwrap();
    assert!(b.overlay, "mounted as overlay, not copied");
    assert!(common::is_mounted(&b.rootfs));
    assert!(
        !b.rootfs.join("l0").exists(),
        "whiteout in layer 40 applied by the kernel"
    );
    assert!((1..n).all(|i| b.rootfs.join(format!("l{i}")).exists()));
    b.remove().unwrap();
}

/// A bundle dropped uncommitted (its creator gone, as when `berth run` is killed) keeps
/// its overlay mount; it is listed as abandoned and `prune` unmounts and removes it. One
/// still held by its creator, or committed, is left alone.
#[test]
fn abandoned_bundle_is_listed_and_pruned_with_its_mount() {
    let t = tempfile::tempdir().unwrap();
    common::busybox_layout(&t.path().join("layout"), false);
    let store = Store::open(&t.path().join("store")).unwrap();
    store
        .import(&t.path().join("layout"), Some(&"bb:x".parse().unwrap()))
        .unwrap();
    let ids = [
        common::cid("gone"),
        common::cid("held"),
        common::cid("done"),
    ];
    let _guards: Vec<_> = ids
        .iter()
        .map(|id| BundleGuard {
            store: &store,
            id: id.clone(),
        })
        .collect();
    let make = |id: &str| {
        bundles(&store)
            .create(
                "bb:x",
                id,
                &Default::default(),
                &t.path().join(format!("bundle-{id}")),
            )
            .unwrap()
    };
    let gone = make(&ids[0]);
    let gone_rootfs = gone.rootfs.clone();
    drop(gone); // uncommitted: the creator's lock goes with it
    let held = make(&ids[1]);
    let mut done = make(&ids[2]);
    done.commit().unwrap();
    assert!(common::is_mounted(&gone_rootfs));

    let abandoned = bundles(&store).abandoned().unwrap();
    assert_eq!(
        abandoned.iter().map(|b| b.id.as_str()).collect::<Vec<_>>(),
        [ids[0].as_str()]
    );
    assert!(abandoned[0].image.is_some());
    let (_, containers_removed) = bundles(&store).prune().unwrap();
    assert_eq!(containers_removed, 1);
    assert!(!common::is_mounted(&gone_rootfs));
    assert!(!store.root().join("containers").join(&ids[0]).exists());
    assert!(common::is_mounted(&held.rootfs) && common::is_mounted(&done.rootfs));
    held.remove().unwrap();
    done.remove().unwrap();
}
