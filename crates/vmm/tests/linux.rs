//! Loading the host's Debian kernel: bzImage parsing, zero page, ACPI, irqchip on this
//! machine's KVM. The kernel itself cannot boot on PVM (its ring 0 is emulated), so the
//! run is stopped from the host after the vCPUs have entered the guest.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::path::PathBuf;

use berth_vmm::boot::KernelFormat;
use berth_vmm::layout::{ACPI_ADDR, CMDLINE_ADDR, ZERO_PAGE};
use berth_vmm::{ConsoleConfig, ShutdownReason, Vm, VmConfig};
use vm_memory::{Bytes, GuestAddress};

fn debian_kernel() -> Option<PathBuf> {
    let mut k: Vec<PathBuf> = std::fs::read_dir("/boot")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .collect();
    k.sort();
    k.pop()
}

#[test]
fn debian_bzimage_is_loaded_with_zero_page_initrd_and_acpi() {
    let Some(kernel) = debian_kernel() else {
        eprintln!("skipped: no /boot/vmlinuz-* (install linux-image-amd64)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, vec![0x5au8; 3 * 4096 + 17]).unwrap();
    let mut cfg = VmConfig::new(&kernel);
    cfg.initrd = Some(initrd);
    cfg.cmdline = "console=ttyS0 reboot=t quiet".into();
    cfg.vcpus = 2;
    cfg.memory_mib = 256;
    cfg.console = ConsoleConfig::Null;
    let vm = Vm::build(&cfg).unwrap();
    assert_eq!(vm.kernel().format, KernelFormat::BzImage);
    assert_eq!(vm.kernel().entry, 0x100000 + 0x200);
    let mem = vm.ram().memory();
    let zp = |off: u64, len: usize| {
        let mut v = vec![0u8; len];
        mem.read_slice(&mut v, GuestAddress(ZERO_PAGE + off))
            .unwrap();
        v
    };
    let u32_at = |off: u64| u32::from_le_bytes(zp(off, 4).try_into().unwrap());
    assert_eq!(&zp(0x202, 4), b"HdrS");
    assert_eq!(zp(0x210, 1)[0], 0xff, "type_of_loader");
    assert_eq!(u32_at(0x228), CMDLINE_ADDR as u32);
    let (rd_addr, rd_size) = (u32_at(0x218), u32_at(0x21c));
    assert_eq!(rd_size, 3 * 4096 + 17);
    assert_eq!(rd_addr % 4096, 0);
    let mut rd = vec![0u8; rd_size as usize];
    mem.read_slice(&mut rd, GuestAddress(u64::from(rd_addr)))
        .unwrap();
    assert!(rd.iter().all(|&b| b == 0x5a));
    let mut cl = vec![0u8; cfg.cmdline.len() + 1];
    mem.read_slice(&mut cl, GuestAddress(CMDLINE_ADDR)).unwrap();
    assert_eq!(&cl[..cfg.cmdline.len()], cfg.cmdline.as_bytes());
    assert_eq!(cl[cfg.cmdline.len()], 0);
    let mut rsdp = [0u8; 8];
    mem.read_slice(&mut rsdp, GuestAddress(ACPI_ADDR)).unwrap();
    assert_eq!(&rsdp, b"RSD PTR ");

    // With the in-kernel irqchip and PIT, vCPU 0 enters the kernel; stop it from here.
    let stop = vm.stop_handle();
    let t = std::thread::spawn(move || vm.run().unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop.stop();
    let report = t.join().unwrap();
    eprintln!("{}", report.stats);
    assert!(
        matches!(
            report.reason,
            ShutdownReason::Stopped | ShutdownReason::TripleFault
        ),
        "{:?}",
        report.reason
    );
}
