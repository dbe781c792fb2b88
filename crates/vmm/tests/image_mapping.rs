//! Large page-aligned kernel and initrd reads are mapped copy-on-write from the file into
//! guest RAM instead of copied: the guest sees the file's bytes, its writes stay private.

mod common;

use berth_vmm::layout::ZERO_PAGE;
use berth_vmm::Vm;
use common::guest_config;
use vm_memory::{Bytes, GuestAddress};

#[test]
fn a_large_initrd_is_mapped_copy_on_write_into_guest_ram() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initrd");
    // 3 MiB of mapped pages plus a 123-byte tail that is read, with a position pattern.
    let content: Vec<u8> = (0..(3 << 20) + 123u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&initrd, &content).unwrap();
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    cfg.initrd = Some(initrd.clone());
    cfg.memory_mib = 64;
    let vm = Vm::build(&cfg).unwrap();
    let mem = vm.ram().memory();

    let rd_addr = u64::from(
        mem.read_obj::<u32>(GuestAddress(ZERO_PAGE + 0x218))
            .unwrap(),
    );
    let rd_size = mem
        .read_obj::<u32>(GuestAddress(ZERO_PAGE + 0x21c))
        .unwrap();
    assert_eq!(rd_size as usize, content.len());
    let mut seen = vec![0u8; content.len()];
    mem.read_slice(&mut seen, GuestAddress(rd_addr)).unwrap();
    assert!(seen == content, "guest RAM differs from the initrd file");

    // The file itself backs the initrd's pages, inside the guest RAM mapping.
    let (ram_start, ram_end) = vm.ram().host_ranges()[0];
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let mapped: Vec<(usize, usize)> = maps
        .lines()
        .filter(|l| l.ends_with(initrd.to_str().unwrap()))
        .map(|l| {
            let (s, e) = l.split(' ').next().unwrap().split_once('-').unwrap();
            (
                usize::from_str_radix(s, 16).unwrap(),
                usize::from_str_radix(e, 16).unwrap(),
            )
        })
        .collect();
    assert_eq!(mapped.len(), 1, "{maps}");
    let (s, e) = mapped[0];
    assert_eq!(e - s, 3 << 20);
    assert!(s >= ram_start && e <= ram_end, "mapping outside guest RAM");
    assert_eq!(Some(s), vm.ram().translate(rd_addr));

    // A guest write changes guest RAM only, never the file.
    mem.write_slice(b"guest was here", GuestAddress(rd_addr + 4096))
        .unwrap();
    let mut back = [0u8; 14];
    mem.read_slice(&mut back, GuestAddress(rd_addr + 4096))
        .unwrap();
    assert_eq!(&back, b"guest was here");
    assert!(
        std::fs::read(&initrd).unwrap() == content,
        "the file changed"
    );
}

#[test]
fn a_small_initrd_is_copied() {
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("small");
    std::fs::write(&initrd, vec![0xa5u8; 64 << 10]).unwrap();
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    cfg.initrd = Some(initrd.clone());
    let vm = Vm::build(&cfg).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    assert!(!maps.contains(initrd.to_str().unwrap()), "{maps}");
    let mem = vm.ram().memory();
    let rd_addr = u64::from(
        mem.read_obj::<u32>(GuestAddress(ZERO_PAGE + 0x218))
            .unwrap(),
    );
    let mut seen = vec![0u8; 64 << 10];
    mem.read_slice(&mut seen, GuestAddress(rd_addr)).unwrap();
    assert!(seen.iter().all(|&b| b == 0xa5));
}
