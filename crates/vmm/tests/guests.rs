//! End-to-end tests on this host's /dev/kvm with the freestanding guest in guests/.
//! Each test boots a VM through the ELF loader, the long-mode entry state and the
//! zero page, and checks what the guest reports on its serial console.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use berth_vmm::{DiskConfig, ExitKind, ShutdownReason};
use common::{guest_config, run};

#[test]
fn serial_console_reaches_the_file_and_debug_exit_stops_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    let (report, out) = run(&guest_config("hello", &dir.path().join("console")));
    assert_eq!(out, "hello from the guest\n");
    assert_eq!(report.reason, ShutdownReason::DebugExit(0));
    let serial_out = report.stats.get(ExitKind::IoOut, "serial").unwrap();
    // One THR write per character, at least (plus nothing else written to COM1).
    assert_eq!(serial_out.count, out.len() as u64);
    assert!(report.stats.get(ExitKind::IoIn, "serial").unwrap().count >= out.len() as u64);
    assert_eq!(
        report
            .stats
            .get(ExitKind::IoOut, "debug-exit")
            .unwrap()
            .count,
        1
    );
}

#[test]
fn unclaimed_port_and_mmio_exits_and_hlt_are_handled_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (report, out) = run(&guest_config("exits", &dir.path().join("console")));
    assert_eq!(out, "exits ok\n");
    assert_eq!(report.reason, ShutdownReason::Halted);
    let s = &report.stats;
    assert_eq!(s.get(ExitKind::IoOut, "-").unwrap().count, 1);
    assert_eq!(s.get(ExitKind::IoIn, "-").unwrap().count, 1);
    assert_eq!(s.get(ExitKind::MmioWrite, "-").unwrap().count, 1);
    assert_eq!(s.get(ExitKind::MmioRead, "-").unwrap().count, 1);
    assert_eq!(s.get(ExitKind::Hlt, "-").unwrap().count, 1);
    let table = s.to_string();
    assert!(
        table.contains("MmioWrite") && table.contains("TOTAL"),
        "{table}"
    );
}

#[test]
fn cpuid_reports_the_vcpu_apic_id_count_and_hypervisor() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("cpuid", &dir.path().join("console"));
    cfg.vcpus = 2;
    let (report, out) = run(&cfg);
    assert_eq!(out, "apic=0 count=2 hypervisor=1 sig=KVMKVMKVM\n");
    assert_eq!(report.reason, ShutdownReason::DebugExit(30));
}

#[test]
fn four_vcpus_each_run_on_their_own_thread() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("smp", &dir.path().join("console"));
    cfg.vcpus = 4;
    let (report, out) = run(&cfg);
    let mut ids: Vec<char> = out.chars().collect();
    ids.sort_unstable();
    assert_eq!(ids, vec!['0', '1', '2', '3'], "console: {out:?}");
    assert_eq!(report.reason, ShutdownReason::Halted);
    assert_eq!(report.stats.get(ExitKind::Hlt, "-").unwrap().count, 4);
}

#[test]
fn zero_page_carries_the_e820_map_and_the_rtc_answers() {
    let dir = tempfile::tempdir().unwrap();
    let (report, out) = run(&guest_config("bootparams", &dir.path().join("console")));
    assert_eq!(report.reason, ShutdownReason::DebugExit(40));
    let want_e820 = "e820 00000000+0009fc00:1 0009fc00+00060400:2 00100000+00f00000:1\n";
    assert!(out.starts_with(want_e820), "{out}");
    assert!(
        out.contains(&format!("ram_kib={}", 0x9fc00 / 1024 + 0xf00000 / 1024)),
        "{out}"
    );
    assert!(out.contains("loader=ff"), "{out}");
    assert!(out.contains("rtc_century=20"), "{out}");
}

#[test]
fn triple_fault_i8042_reset_and_acpi_poweroff_stop_the_vm() {
    let dir = tempfile::tempdir().unwrap();
    for (test, want) in [
        ("triple", ShutdownReason::TripleFault),
        ("reset", ShutdownReason::Reset),
        ("poweroff", ShutdownReason::PowerOff),
    ] {
        let (report, _) = run(&guest_config(test, &dir.path().join(test)));
        assert_eq!(report.reason, want, "test={test}");
    }
}

#[test]
fn virtio_blk_reads_writes_flushes_and_reports_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    let mut image = b"berth disk head!".to_vec();
    image.resize(8 * 512, 0);
    std::fs::write(&disk, &image).unwrap();
    let mut cfg = guest_config("blk", &dir.path().join("console"));
    cfg.disks.push(DiskConfig {
        path: disk.clone(),
        read_only: false,
    });
    let (report, out) = run(&cfg);
    assert_eq!(report.reason, ShutdownReason::DebugExit(10), "{out}");
    assert_eq!(
        out,
        "capacity=8 ro=0\n\
         read: used=513 status=0 data=berth disk head!\n\
         write: used=1 status=0\n\
         flush: used=1 status=0\n\
         id: used=21 status=0 id=berth-disk0\n\
         beyond: used=1 status=1\n"
    );
    let after = std::fs::read(&disk).unwrap();
    let want: Vec<u8> = (0..512).map(|i| b'A' + (i % 26) as u8).collect();
    assert_eq!(&after[512..1024], &want[..]);
    assert_eq!(&after[..16], b"berth disk head!");
    assert!(
        report
            .stats
            .get(ExitKind::MmioWrite, "virtio-blk@0xd0000000")
            .unwrap()
            .count
            > 0
    );
}

#[test]
fn read_only_virtio_blk_refuses_writes() {
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.img");
    std::fs::write(&disk, vec![0x41u8; 4096]).unwrap();
    let mut cfg = guest_config("blk-ro", &dir.path().join("console"));
    cfg.disks.push(DiskConfig {
        path: disk.clone(),
        read_only: true,
    });
    let (report, out) = run(&cfg);
    assert_eq!(report.reason, ShutdownReason::DebugExit(11), "{out}");
    assert!(out.starts_with("capacity=8 ro=1\n"), "{out}");
    assert!(out.contains("write: used=1 status=1\n"), "{out}");
    assert_eq!(std::fs::read(&disk).unwrap(), vec![0x41u8; 4096]);
}

#[test]
fn virtio_rng_fills_guest_buffers_with_fresh_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("rng", &dir.path().join("console"));
    cfg.rng = true;
    let (report, out) = run(&cfg);
    assert_eq!(report.reason, ShutdownReason::DebugExit(20), "{out}");
    let rounds: Vec<&str> = out
        .lines()
        .map(|l| l.strip_prefix("rng used=32 bytes=").expect(l))
        .collect();
    assert_eq!(rounds.len(), 2);
    assert!(
        rounds
            .iter()
            .all(|r| r.len() == 64 && r.chars().any(|c| c != '0')),
        "{out}"
    );
    assert_ne!(rounds[0], rounds[1]);
}

#[test]
fn memory_above_the_mmio_hole_is_a_second_region_in_e820() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("bootparams", &dir.path().join("console"));
    cfg.memory_mib = 4096;
    let (report, out) = run(&cfg);
    assert_eq!(report.reason, ShutdownReason::DebugExit(40));
    let ram = 0x9fc00 + (0xd000_0000 - 0x10_0000) + ((4096u64 << 20) - 0xd000_0000);
    assert!(out.contains(&format!("ram_kib={} ", ram / 1024)), "{out}");
}

#[test]
fn in_kernel_irqchip_and_pit_run_the_guest() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    cfg.irqchip = true;
    let (report, out) = run(&cfg);
    assert_eq!(out, "hello from the guest\n");
    assert_eq!(report.reason, ShutdownReason::DebugExit(0));
}

#[test]
fn virtio_interrupt_reaches_the_guest_through_ioapic_and_lapic() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("irq", &dir.path().join("console"));
    cfg.irqchip = true;
    cfg.rng = true;
    let (report, out) = run(&cfg);
    assert_eq!(report.reason, ShutdownReason::DebugExit(60), "{out}");
    assert_eq!(out, "irq count=1 used=16\n");
}

#[test]
fn pty_console_carries_input_to_the_guest_and_output_back() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = guest_config("echo", &dir.path().join("unused"));
    cfg.console = berth_vmm::ConsoleConfig::Pty;
    let vm = berth_vmm::Vm::build(&cfg).unwrap();
    let path = vm.console_pty().unwrap().to_path_buf();
    assert!(path.starts_with("/dev/pts"), "{path:?}");
    let tty = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let runner = std::thread::spawn(move || vm.run().unwrap());
    let mut lines = std::io::BufReader::new(tty.try_clone().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ready");
    (&tty).write_all(b"hi there\n").unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "echo: hi there");
    (&tty).write_all(b"bye\n").unwrap();
    let report = runner.join().unwrap();
    assert_eq!(report.reason, ShutdownReason::DebugExit(80));
}

#[test]
fn a_guest_asleep_in_an_in_kernel_hlt_is_stopped_by_the_stop_handle() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let mut cfg = guest_config("idle", &console);
    cfg.irqchip = true;
    let vm = berth_vmm::Vm::build(&cfg).unwrap();
    let stop = vm.stop_handle();
    let runner = std::thread::spawn(move || vm.run().unwrap());
    // Wait (bounded) until the guest has said it goes to sleep.
    for _ in 0..3000 {
        if std::fs::read_to_string(&console).unwrap_or_default() == "idle\n" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(std::fs::read_to_string(&console).unwrap(), "idle\n");
    stop.stop();
    let report = runner.join().unwrap();
    assert_eq!(report.reason, ShutdownReason::Stopped);
    // With the irqchip, HLT waits inside KVM: the VMM never sees it.
    assert_eq!(report.stats.kind_total(ExitKind::Hlt).count, 0);
}
