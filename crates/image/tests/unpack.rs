//! Layer unpack against the real filesystem: metadata fidelity, whiteout semantics in both
//! modes, and a corpus of hostile layers that must be rejected without writing outside.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use berth_image::oci::Compression;
use berth_image::{unpack_layer, Error, WhiteoutMode};
use common::{tar, Entry};

fn unpack(
    entries: &[Entry],
    target: &Path,
    mode: WhiteoutMode,
) -> berth_image::Result<berth_image::UnpackStats> {
    unpack_layer(&tar(entries)[..], Compression::None, target, mode)
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 256];
    // SAFETY: valid C strings and a buffer of the stated length.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

fn xattr_set(path: &Path, name: &str, value: &[u8]) {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and a value of the stated length.
    let r = unsafe {
        libc::setxattr(
            p.as_ptr(),
            n.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(r, 0, "setxattr {name}: {}", std::io::Error::last_os_error());
}

#[test]
fn preserves_types_owners_modes_times_and_xattrs() {
    let t = tempfile::tempdir().unwrap();
    let stats = unpack(
        &[
            Entry::dir("etc/").mode(0o750).owner(10, 20),
            Entry::file("etc/conf", b"hello")
                .mode(0o4755)
                .owner(1234, 5678)
                .xattr("user.berth", b"v1"),
            Entry::symlink("etc/link", "/etc/conf"),
            Entry::hardlink("etc/hard", "etc/conf"),
            Entry::fifo("run/fifo"),
            Entry::chardev("dev/null", 1, 3),
        ],
        t.path(),
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert_eq!((stats.entries, stats.bytes), (6, 5));
    let root = t.path();
    let m = fs::symlink_metadata(root.join("etc/conf")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.permissions().mode() & 0o7777, m.mtime()),
        (1234, 5678, 0o4755, 1_600_000_000)
    );
    assert_eq!(fs::read(root.join("etc/conf")).unwrap(), b"hello");
    assert_eq!(
        getxattr(&root.join("etc/conf"), "user.berth").as_deref(),
        Some(&b"v1"[..])
    );
    let d = fs::symlink_metadata(root.join("etc")).unwrap();
    assert_eq!(
        (d.uid(), d.gid(), d.permissions().mode() & 0o7777, d.mtime()),
        (10, 20, 0o750, 1_600_000_000)
    );
    assert_eq!(
        fs::read_link(root.join("etc/link")).unwrap(),
        Path::new("/etc/conf")
    );
    assert_eq!(
        fs::symlink_metadata(root.join("etc/hard")).unwrap().ino(),
        m.ino()
    );
    assert!(fs::symlink_metadata(root.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    let c = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(c.file_type().is_char_device());
    assert_eq!(c.rdev(), nix::sys::stat::makedev(1, 3));
    // Parents missing from the tar were created.
    assert!(root.join("run").is_dir());
}

#[test]
fn modes_and_groups_are_exact_under_a_default_acl_and_a_set_group_id_dir() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    // A default ACL that gives "other" nothing: new files under it would get 0640 for a
    // 0644 entry if creation alone set their mode.
    let mut acl = 2u32.to_le_bytes().to_vec(); // POSIX ACL xattr version
    for (tag, perm) in [(0x01u16, 7u16), (0x04, 5), (0x20, 0)] {
        // ACL_USER_OBJ, ACL_GROUP_OBJ, ACL_OTHER; no id
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&u32::MAX.to_le_bytes());
    }
    fs::create_dir(root.join("acl")).unwrap();
    xattr_set(&root.join("acl"), "system.posix_acl_default", &acl);
    // A set-group-ID directory of another group: new files would inherit group 4242.
    fs::create_dir(root.join("sgid")).unwrap();
    std::os::unix::fs::chown(root.join("sgid"), Some(0), Some(4242)).unwrap();
    fs::set_permissions(root.join("sgid"), fs::Permissions::from_mode(0o2775)).unwrap();
    unpack(
        &[
            Entry::file("acl/f", b"f").mode(0o644),
            Entry::file("acl/sub/g", b"g").mode(0o755),
            Entry::file("sgid/f", b"f").mode(0o644).owner(0, 0),
            Entry::dir("sgid/d/").mode(0o2755).owner(0, 4243),
            Entry::file("sgid/d/g", b"g").mode(0o600).owner(0, 0),
        ],
        root,
        WhiteoutMode::Apply,
    )
    .unwrap();
    let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(meta("acl/f").permissions().mode() & 0o7777, 0o644);
    assert_eq!(meta("acl/sub/g").permissions().mode() & 0o7777, 0o755);
    assert_eq!(meta("sgid/f").gid(), 0);
    assert_eq!((meta("sgid/d").gid(), meta("sgid/d/g").gid()), (4243, 0));
}

#[test]
fn pax_records_override_ustar_ids_and_times() {
    let t = tempfile::tempdir().unwrap();
    let big = Entry::file("big", b"x")
        .pax("uid", b"3000000000")
        .pax("gid", b"3000000001")
        .pax("mtime", b"1700000000.25");
    unpack(&[big], t.path(), WhiteoutMode::Apply).unwrap();
    let m = fs::symlink_metadata(t.path().join("big")).unwrap();
    assert_eq!(
        (m.uid(), m.gid(), m.mtime()),
        (3_000_000_000, 3_000_000_001, 1_700_000_000)
    );
    let too_big = Entry::file("huge", b"x").pax("uid", b"5000000000");
    assert!(matches!(
        unpack(&[too_big], t.path(), WhiteoutMode::Apply),
        Err(Error::UnsafeEntry { .. })
    ));
}

#[test]
fn compressed_layers_give_the_same_diff_id() {
    let raw = tar(&[Entry::file("a", &vec![7u8; 100_000]), Entry::dir("d/")]);
    let mut ids = Vec::new();
    for c in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let t = tempfile::tempdir().unwrap();
        let s = unpack_layer(
            &common::compress(&raw, c)[..],
            c,
            t.path(),
            WhiteoutMode::Apply,
        )
        .unwrap();
        assert_eq!(fs::read(t.path().join("a")).unwrap().len(), 100_000);
        ids.push(s.diff_id.unwrap());
    }
    assert!(ids.iter().all(|d| *d == berth_image::Digest::of(&raw)));
}

#[test]
fn apply_mode_whiteouts_and_opaque_dirs() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    unpack(
        &[
            Entry::file("a/old1", b"1"),
            Entry::file("a/old2", b"2"),
            Entry::file("b/keep", b"k"),
            Entry::file("b/gone", b"g"),
            Entry::dir("c/"),
            Entry::file("c/deep", b"d"),
        ],
        root,
        WhiteoutMode::Apply,
    )
    .unwrap();
    // The opaque marker comes after a new entry of the same directory: that entry must
    // survive (the marker applies to lower layers only).
    unpack(
        &[
            Entry::file("a/new", b"n"),
            Entry::file("a/sub/deep", b"no dir entry for a/sub"),
            Entry::file("a/.wh..wh..opq", b""),
            Entry::file("b/.wh.gone", b""),
            Entry::file(".wh.c", b""),
        ],
        root,
        WhiteoutMode::Apply,
    )
    .unwrap();
    let names = |d: &str| {
        let mut v: Vec<String> = fs::read_dir(root.join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names("a"), ["new", "sub"]);
    assert_eq!(names("b"), ["keep"]);
    assert!(!root.join("c").exists());
}

#[test]
fn upper_layer_entries_replace_whatever_is_at_their_path() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    unpack(
        &[
            Entry::file("f", b"file"),
            Entry::file("d/inner", b"in a dir"),
            Entry::file("h", b"to be a hardlink"),
            Entry::fifo("p"),
            Entry::symlink("s", "/nowhere"),
            Entry::file("c", b"to be a device"),
            Entry::dir("keep/").mode(0o755),
            Entry::file("keep/old", b"kept"),
        ],
        root,
        WhiteoutMode::Apply,
    )
    .unwrap();
    unpack(
        &[
            Entry::dir("f/").mode(0o711),
            Entry::file("d", b"a file now"),
            Entry::file("target", b"linked"),
            Entry::hardlink("h", "target"),
            Entry::symlink("p", "target"),
            Entry::dir("s/"),
            Entry::chardev("c", 1, 3),
            Entry::dir("keep/").mode(0o700),
        ],
        root,
        WhiteoutMode::Apply,
    )
    .unwrap();
    let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert!(meta("f").is_dir() && meta("f").permissions().mode() & 0o7777 == 0o711);
    assert_eq!(fs::read(root.join("d")).unwrap(), b"a file now");
    assert_eq!(meta("h").ino(), meta("target").ino());
    assert_eq!(fs::read_link(root.join("p")).unwrap(), Path::new("target"));
    assert!(meta("s").is_dir());
    assert!(meta("c").file_type().is_char_device());
    // A directory entry over a directory keeps its content and takes the new mode.
    assert_eq!(meta("keep").permissions().mode() & 0o7777, 0o700);
    assert_eq!(fs::read(root.join("keep/old")).unwrap(), b"kept");
}

#[test]
fn overlay_mode_stores_whiteouts_for_the_kernel() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path();
    unpack(
        &[
            Entry::file("a/.wh..wh..opq", b""),
            Entry::file("a/x", b"x"),
            Entry::file("b/.wh.gone", b""),
        ],
        root,
        WhiteoutMode::Overlay,
    )
    .unwrap();
    let wh = fs::symlink_metadata(root.join("b/gone")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout is a 0/0 char device"
    );
    assert_eq!(
        getxattr(&root.join("a"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(root.join("a/x").exists());
}

#[test]
fn later_entry_replaces_a_symlink_instead_of_writing_through_it() {
    let base = tempfile::tempdir().unwrap();
    let (target, outside) = (base.path().join("target"), base.path().join("outside"));
    fs::create_dir_all(&target).unwrap();
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("victim"), b"original").unwrap();
    let victim = outside.join("victim");
    unpack(
        &[
            Entry::symlink("f", victim.to_str().unwrap()),
            Entry::file("f", b"replaced"),
        ],
        &target,
        WhiteoutMode::Apply,
    )
    .unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"original");
    assert_eq!(fs::read(target.join("f")).unwrap(), b"replaced");
    assert!(fs::symlink_metadata(target.join("f")).unwrap().is_file());
}

/// Each case: a name, the layers (applied in order), and the entry the error must name.
fn hostile_corpus(outside: &Path) -> Vec<(&'static str, Vec<Vec<Entry>>, &'static str)> {
    let out = outside.to_str().unwrap().to_string();
    let esc = "../../../../../../../../..".to_string() + &out;
    vec![
        (
            "absolute path",
            vec![vec![Entry::file(&format!("{out}/evil"), b"x")]],
            "/evil",
        ),
        (
            "dot-dot",
            vec![vec![Entry::file("../outside/evil", b"x")]],
            "../outside/evil",
        ),
        (
            "inner dot-dot",
            vec![vec![Entry::file("a/../../outside/evil", b"x")]],
            "a/../../outside/evil",
        ),
        (
            "write through absolute symlink",
            vec![vec![
                Entry::symlink("lnk", &out),
                Entry::file("lnk/evil", b"x"),
            ]],
            "lnk/evil",
        ),
        (
            "write through relative symlink",
            vec![vec![
                Entry::symlink("lnk", &esc),
                Entry::file("lnk/evil", b"x"),
            ]],
            "lnk/evil",
        ),
        (
            "symlink to dot-dot chain",
            vec![vec![
                Entry::symlink("up", ".."),
                Entry::file("up/outside/evil", b"x"),
            ]],
            "up/outside/evil",
        ),
        (
            "symlink planted by an earlier layer",
            vec![
                vec![Entry::symlink("lnk", &out)],
                vec![Entry::file("lnk/evil", b"x")],
            ],
            "lnk/evil",
        ),
        (
            "dir entry through symlink",
            vec![vec![Entry::symlink("lnk", &out), Entry::dir("lnk/evil/")]],
            "lnk/evil/",
        ),
        (
            "hardlink to absolute host path",
            vec![vec![Entry::hardlink("h", "/etc/passwd")]],
            "h",
        ),
        (
            "hardlink with dot-dot",
            vec![vec![Entry::hardlink("h", "../outside/victim")]],
            "h",
        ),
        (
            "hardlink through symlink",
            vec![vec![
                Entry::symlink("lnk", &out),
                Entry::hardlink("h", "lnk/victim"),
            ]],
            "h",
        ),
        (
            "whiteout of the parent",
            vec![vec![Entry::file("a/.wh..", b"")]],
            "a/.wh..",
        ),
        (
            "whiteout of nothing",
            vec![vec![Entry::file(".wh.", b"")]],
            ".wh.",
        ),
        (
            "whiteout with dot-dot",
            vec![vec![Entry::file("../outside/.wh.victim", b"")]],
            "../outside/.wh.victim",
        ),
        (
            "whiteout through symlink",
            vec![vec![
                Entry::symlink("lnk", &out),
                Entry::file("lnk/.wh.victim", b""),
            ]],
            "lnk/.wh.victim",
        ),
        (
            "opaque through symlink",
            vec![vec![
                Entry::symlink("lnk", &out),
                Entry::file("lnk/.wh..wh..opq", b""),
            ]],
            "lnk/.wh..wh..opq",
        ),
        (
            "overlay xattr injection",
            vec![vec![
                Entry::dir("d/").xattr("trusted.overlay.redirect", b"/etc")
            ]],
            "d/",
        ),
    ]
}

#[test]
fn hostile_layers_are_rejected_and_write_nothing_outside() {
    for mode in [WhiteoutMode::Apply, WhiteoutMode::Overlay] {
        let base = tempfile::tempdir().unwrap();
        let outside = base.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("victim"), b"original").unwrap();
        for (i, (name, layers, entry)) in hostile_corpus(&outside).into_iter().enumerate() {
            let target = base.path().join(format!("t{i}"));
            fs::create_dir(&target).unwrap();
            let mut result = Ok(Default::default());
            for layer in &layers {
                result = unpack(layer, &target, mode);
                if result.is_err() {
                    break;
                }
            }
            match result {
                Err(Error::UnsafeEntry { entry: e, reason }) => {
                    assert!(
                        e.contains(entry),
                        "{name} ({mode:?}): error names {e:?} ({reason}), expected {entry:?}"
                    )
                }
                other => panic!("{name} ({mode:?}): expected UnsafeEntry, got {other:?}"),
            }
            let mut left: Vec<_> = fs::read_dir(&outside)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            left.sort();
            assert_eq!(
                left,
                ["victim"],
                "{name} ({mode:?}) wrote outside the target"
            );
            assert_eq!(
                fs::read(outside.join("victim")).unwrap(),
                b"original",
                "{name} ({mode:?})"
            );
            assert_eq!(
                fs::metadata(outside.join("victim")).unwrap().nlink(),
                1,
                "{name} ({mode:?}) linked the victim"
            );
        }
    }
}

#[test]
fn corrupt_tar_is_an_error_not_a_panic() {
    let t = tempfile::tempdir().unwrap();
    let mut bytes = tar(&[Entry::file("a", b"hello")]);
    bytes[148] = b'9'; // break the header checksum
    assert!(unpack_layer(&bytes[..], Compression::None, t.path(), WhiteoutMode::Apply).is_err());
    assert!(unpack_layer(
        &b"\x1f\x8bnot gzip"[..],
        Compression::Gzip,
        t.path(),
        WhiteoutMode::Apply
    )
    .is_err());
}

/// A gzip layer of `entries` cut to two thirds of its length: it decodes cleanly for a
/// while (the decoder thread runs ahead of the unpacker), then fails.
fn truncated_gzip(entries: &[Entry]) -> Vec<u8> {
    let gz = common::compress(&tar(entries), Compression::Gzip);
    gz[..gz.len() * 2 / 3].to_vec()
}

#[test]
fn truncated_gzip_reports_the_decoding_error_in_one_line() {
    let t = tempfile::tempdir().unwrap();
    // 4 MiB: more than the decoder may queue ahead, so both threads block on each other.
    let blob = truncated_gzip(&[
        Entry::file("a", b"a"),
        Entry::file("big", &common::noise(4 << 20, 1)),
    ]);
    let err =
        unpack_layer(&blob[..], Compression::Gzip, t.path(), WhiteoutMode::Apply).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::Archive { .. }), "{msg}");
    assert!(msg.contains("reading the layer stream (Gzip)"), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
}

#[test]
fn unsafe_entry_before_a_broken_stream_is_the_error_reported() {
    let t = tempfile::tempdir().unwrap();
    let blob = truncated_gzip(&[
        Entry::file("../escape", b"x"),
        Entry::file("big", &common::noise(4 << 20, 2)),
    ]);
    // The unpacker stops at the first entry while the decoder still has megabytes to
    // send: the call must return (no thread left blocked) with the entry's error.
    let err =
        unpack_layer(&blob[..], Compression::Gzip, t.path(), WhiteoutMode::Apply).unwrap_err();
    assert!(matches!(err, Error::UnsafeEntry { .. }), "{err}");
    assert!(!t.path().join("big").exists());
}

#[test]
fn diff_id_covers_bytes_after_the_tar_end_marker() {
    let t = tempfile::tempdir().unwrap();
    let mut raw = tar(&[Entry::file("f", &common::noise(300_000, 3))]);
    // Padding beyond the end marker, longer than the decoder's chunks: still hashed.
    raw.extend_from_slice(&vec![0u8; 600_000]);
    let blob = common::compress(&raw, Compression::Gzip);
    let s = unpack_layer(&blob[..], Compression::Gzip, t.path(), WhiteoutMode::Apply).unwrap();
    assert_eq!(s.diff_id, Some(berth_image::Digest::of(&raw)));
    assert_eq!((s.entries, s.bytes), (1, 300_000));
    assert_eq!(fs::read(t.path().join("f")).unwrap(), &raw[512..300_512]);
}

/// Unmounts on drop, so a failing test leaves no mount behind.
struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}

#[test]
fn write_error_names_the_file() {
    let t = tempfile::tempdir().unwrap();
    let root = t.path().join("small");
    fs::create_dir(&root).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &root,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=512k"),
    )
    .unwrap();
    let _m = Mount(root.clone());
    // The file that does not fit, then entries the unpacker goes on with meanwhile.
    let mut entries = vec![Entry::file("big", &common::noise(2 << 20, 5))];
    let names: Vec<String> = (0..200).map(|i| format!("after{i}")).collect();
    entries.extend(names.iter().map(|n| Entry::file(n, b"x")));
    match unpack(&entries, &root, WhiteoutMode::Apply) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, root.join("big"));
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{source}");
        }
        other => panic!("expected ENOSPC on big, got {other:?}"),
    }
}
