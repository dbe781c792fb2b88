//! virtio-blk against arbitrary descriptor tables, available rings and request headers
//! in real guest memory. Run with a malloc limit so any guest-sized allocation is a crash:
//! `cargo +nightly fuzz run blk_chain -- -malloc_limit_mb=4 -rss_limit_mb=512`.

#![no_main]

use std::sync::{Mutex, OnceLock};

use berth_vmm::devices::virtio::block::Block;
use berth_vmm::devices::virtio::VirtioDevice;
use berth_vmm::memory::{x86_layout, GuestRam};
use libfuzzer_sys::fuzz_target;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

const SIZE: u16 = 16;
const TABLE: u64 = 0;
const AVAIL: u64 = 0x1000;
const USED: u64 = 0x2000;
const DATA: u64 = 0x10_0000;

fn block() -> &'static Mutex<Block> {
    static BLK: OnceLock<Mutex<Block>> = OnceLock::new();
    BLK.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("berth-fuzz-{}.img", std::process::id()));
        std::fs::write(&path, vec![0u8; 1 << 20]).expect("disk image");
        Mutex::new(Block::open(&path, false, 0).expect("open disk image"))
    })
}

/// Input: 16 descriptors of 16 bytes, then avail idx and 16 heads (2 bytes each), then
/// bytes for the data pages. Addresses land in the data area unless their top bit says
/// otherwise, so most chains reach the request logic.
fuzz_target!(|input: &[u8]| {
    if input.len() < 16 * 16 + 34 {
        return;
    }
    let ram = GuestRam::new(&x86_layout(16), false).expect("guest memory");
    let mem = ram.memory();
    for i in 0..usize::from(SIZE) {
        let mut d = [0u8; 16];
        d.copy_from_slice(&input[i * 16..i * 16 + 16]);
        let raw = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
        let addr = if raw >> 63 == 1 {
            raw
        } else {
            DATA + raw % (2 << 20)
        };
        d[..8].copy_from_slice(&addr.to_le_bytes());
        mem.write_slice(&d, GuestAddress(TABLE + i as u64 * 16))
            .expect("table");
    }
    let ring = &input[256..290];
    mem.write_slice(&[0, 0], GuestAddress(AVAIL))
        .expect("avail flags");
    mem.write_slice(ring, GuestAddress(AVAIL + 2))
        .expect("avail ring");
    let data = &input[290..];
    for k in 0..16u64 {
        let n = data.len().min(4096);
        mem.write_slice(&data[..n], GuestAddress(DATA + k * 0x2_0000))
            .expect("data");
    }
    let mut q = Queue::new(SIZE).expect("queue");
    q.set_size(SIZE);
    q.set_desc_table_address(Some(TABLE as u32), Some(0));
    q.set_avail_ring_address(Some(AVAIL as u32), Some(0));
    q.set_used_ring_address(Some(USED as u32), Some(0));
    q.set_ready(true);
    let mut queues = vec![q];
    let mut blk = block().lock().unwrap_or_else(|p| p.into_inner());
    let _ = blk.notify(0, &mut queues, mem);
    // The used ring never claims more chains than were made available.
    let avail = u16::from_le_bytes([ring[0], ring[1]]);
    let used: u16 = mem.read_obj(GuestAddress(USED + 2)).expect("used idx");
    assert!(used <= avail.min(SIZE), "used {used} > available {avail}");
});
