//! Property tests for the guest memory map (the EPT properties of the theory):
//! regions disjoint, gpa -> hva injective and inside each region's mapping, and
//! disjoint between two live VMs of one process.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use berth_vmm::memory::{check_layout, GuestRam, Region};
use proptest::prelude::*;

const PAGE: u64 = 4096;

/// 1..5 regions of 1..64 pages separated by 0..64-page gaps, starting anywhere below 4 GiB.
fn layouts() -> impl Strategy<Value = Vec<Region>> {
    (
        0u64..(1 << 20),
        prop::collection::vec((1u64..64, 0u64..64), 1..5),
    )
        .prop_map(|(start, parts)| {
            let mut at = start * PAGE;
            parts
                .into_iter()
                .map(|(pages, gap)| {
                    let r = Region {
                        start: at,
                        size: pages * PAGE,
                    };
                    at += (pages + gap) * PAGE;
                    r
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn built_maps_translate_injectively_inside_their_regions(layout in layouts(), probes in prop::collection::vec(any::<u64>(), 16)) {
        let ram = GuestRam::new(&layout, true).unwrap();
        let host = ram.host_ranges();
        prop_assert_eq!(host.len(), layout.len());
        for (r, &(hs, he)) in layout.iter().zip(&host) {
            prop_assert_eq!((he - hs) as u64, r.size);
            for p in &probes {
                let off = p % r.size;
                // Offsets are preserved: the map is a translation per region.
                prop_assert_eq!(ram.translate(r.start + off), Some(hs + off as usize));
            }
        }
        let mut sorted = host.clone();
        sorted.sort();
        for w in sorted.windows(2) {
            prop_assert!(w[0].1 <= w[1].0, "host ranges overlap: {:?}", w);
        }
        // Addresses in the gaps are not RAM.
        for w in layout.windows(2) {
            let end = w[0].start + w[0].size;
            if end < w[1].start {
                prop_assert_eq!(ram.translate(end), None);
            }
        }
    }

    #[test]
    fn overlapping_layouts_are_rejected(layout in layouts(), which in any::<prop::sample::Index>(), shift in 1u64..64) {
        // Move a copy of one region so it starts inside that region.
        let r = layout[which.index(layout.len())];
        let clash = Region { start: r.start + (shift % (r.size / PAGE)) * PAGE, size: r.size };
        let mut bad = layout.clone();
        bad.push(clash);
        let err = GuestRam::new(&bad, false).unwrap_err().to_string();
        prop_assert!(err.contains("overlap"), "{}", err);
    }

    #[test]
    fn two_live_vms_never_share_host_memory(a in layouts(), b in layouts()) {
        let ra = GuestRam::new(&a, false).unwrap();
        let rb = GuestRam::new(&b, true).unwrap();
        for &(s1, e1) in &ra.host_ranges() {
            for &(s2, e2) in &rb.host_ranges() {
                prop_assert!(e1 <= s2 || e2 <= s1);
            }
        }
    }
}

#[test]
fn misaligned_empty_and_wrapping_regions_are_rejected() {
    for bad in [
        vec![Region { start: 0, size: 0 }],
        vec![Region {
            start: 100,
            size: PAGE,
        }],
        vec![Region {
            start: 0,
            size: PAGE + 1,
        }],
        vec![Region {
            start: u64::MAX - PAGE + 1,
            size: 2 * PAGE,
        }],
        vec![],
    ] {
        assert!(check_layout(&bad).is_err(), "{bad:?}");
    }
}

/// The smaps block (header line to VmFlags) of the mapping that starts at `addr`.
fn smaps_of(addr: usize) -> Vec<String> {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let head = format!("{addr:x}-");
    let mut block = Vec::new();
    for l in smaps.lines().skip_while(|l| !l.starts_with(&head)) {
        block.push(l.to_string());
        if l.starts_with("VmFlags:") {
            break;
        }
    }
    block
}

#[test]
fn regions_are_2mib_aligned_advised_for_huge_pages_and_outlive_ram_in_clones() {
    use vm_memory::{Bytes, GuestAddress};
    let layout = [
        Region {
            start: 0,
            size: 6 << 20,
        },
        Region {
            start: 1 << 32,
            size: 4 << 20,
        },
    ];
    for hugepages in [true, false] {
        let ram = GuestRam::new(&layout, hugepages).unwrap();
        for (start, end) in ram.host_ranges() {
            assert_eq!(
                start % (2 << 20),
                0,
                "region at {start:#x} not 2 MiB aligned"
            );
            let smaps = smaps_of(start);
            assert!(
                smaps[0].starts_with(&format!("{start:x}-{end:x} ")),
                "the mapping is exactly the region: {smaps:?}"
            );
            // VmFlags: hg = MADV_HUGEPAGE, nh = MADV_NOHUGEPAGE.
            let flag = if hugepages { " hg" } else { " nh" };
            let flags = smaps.last().unwrap();
            assert!(
                flags.starts_with("VmFlags:") && flags.contains(flag),
                "{smaps:?}"
            );
        }
        // A clone of the memory keeps the mapping alive after the GuestRam is gone.
        let mem = ram.memory().clone();
        drop(ram);
        mem.write_obj(0x1234_5678u32, GuestAddress(5 << 20))
            .unwrap();
        assert_eq!(
            mem.read_obj::<u32>(GuestAddress(5 << 20)).unwrap(),
            0x1234_5678
        );
    }
}
