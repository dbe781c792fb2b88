//! Bad input yields one clear line naming the field or path, and leaves nothing behind.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use berth_vmm::{DiskConfig, NetConfig, Vm, VmConfig};
use common::guest_config;

fn build_err(cfg: &VmConfig) -> String {
    let msg = Vm::build(cfg).unwrap_err().to_string();
    assert!(!msg.contains('\n'), "multi-line error: {msg}");
    msg
}

/// Tests in this file run one at a time so the fd count below sees only its own test.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn missing_corrupt_and_truncated_kernels_are_named() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut cfg = guest_config("hello", &console);
    cfg.kernel = dir.path().join("nope");
    let e = build_err(&cfg);
    assert!(
        e.starts_with(&format!("kernel {}: open:", cfg.kernel.display())),
        "{e}"
    );

    cfg.kernel = dir.path().join("garbage");
    std::fs::write(&cfg.kernel, vec![0x90u8; 8192]).unwrap();
    assert!(build_err(&cfg).contains("neither an ELF file nor a bzImage"));

    // A real ELF header with its program headers cut off.
    let elf = std::fs::read(common::guest_elf()).unwrap();
    cfg.kernel = dir.path().join("truncated");
    std::fs::write(&cfg.kernel, &elf[..80]).unwrap();
    assert!(build_err(&cfg).contains("ELF load"));

    // An ELF whose segment lies outside guest memory.
    let mut far = elf.clone();
    far[24..32].copy_from_slice(&0x4000_0000u64.to_le_bytes()); // e_entry
    let phoff = u64::from_le_bytes(far[32..40].try_into().unwrap()) as usize;
    far[phoff + 24..phoff + 32].copy_from_slice(&0x4000_0000u64.to_le_bytes()); // p_paddr
    cfg.kernel = dir.path().join("far");
    std::fs::write(&cfg.kernel, &far).unwrap();
    assert!(build_err(&cfg).starts_with("kernel "));
}

#[test]
fn config_limits_are_enforced() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    cfg.memory_mib = 1;
    assert!(build_err(&cfg).starts_with("config field memory_mib:"));
    cfg.memory_mib = 16;
    cfg.vcpus = 0;
    assert!(build_err(&cfg).starts_with("config field vcpus:"));
    cfg.vcpus = 200;
    assert!(build_err(&cfg).starts_with("config field vcpus:"));
    cfg.vcpus = 1;
    cfg.cmdline = "x".repeat(5000);
    assert!(build_err(&cfg).starts_with("config field cmdline:"));
    cfg.cmdline = "test=hello".into();
    // Invalid names are refused before /dev/net/tun is touched (no host interface made).
    cfg.net = Some(NetConfig {
        tap: "no/slash".into(),
    });
    assert!(build_err(&cfg).starts_with("tap no/slash: interface names"));
    cfg.net = Some(NetConfig {
        tap: "x".repeat(16),
    });
    assert!(build_err(&cfg).starts_with("tap xxxxxxxxxxxxxxxx: interface names"));
}

#[test]
fn bad_disks_and_initrds_are_named_and_nothing_leaks() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    // Warm up once-only allocations (guest build, signal handler) before counting fds.
    let _ = Vm::build(&cfg).unwrap();
    let before = open_fds();

    cfg.disks.push(DiskConfig {
        path: dir.path().join("missing.img"),
        read_only: false,
    });
    assert!(build_err(&cfg).contains("missing.img: open:"));
    let tiny = dir.path().join("tiny.img");
    std::fs::write(&tiny, b"short").unwrap();
    cfg.disks[0].path = tiny;
    assert!(build_err(&cfg).contains("smaller than one 512-byte sector"));
    cfg.disks[0].path = dir.path().to_path_buf();
    assert!(build_err(&cfg).starts_with("disk "));
    cfg.disks.clear();

    cfg.initrd = Some(dir.path().join("no-initrd"));
    assert!(build_err(&cfg).starts_with("initrd "));
    let huge = dir.path().join("huge-initrd");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    cfg.initrd = Some(huge);
    assert!(build_err(&cfg).contains("do not fit"));

    assert_eq!(open_fds(), before, "a failed build leaked file descriptors");
}
