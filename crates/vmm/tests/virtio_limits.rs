//! A hostile guest against the virtio devices: descriptor chains built in real guest
//! memory (an mmap, as a VM gets it) with virtio-queue's driver-side `MockSplitQueue`,
//! handed to the real device code. Every allocation the handlers make is observable: a
//! counting global allocator records, per thread, the peak of live heap bytes during a
//! call, and the tests assert it stays under a small bound.
//!
//! - `*_attack_*`: the reported attack (one chain of 85 x 48 MiB buffers) and its
//!   net-transmit twin, each refused with an error and a bounded footprint.
//! - `fuzz_*`: random descriptor tables, chains and available rings for each device: no
//!   panic, bounded allocation, and a used ring that matches a reference model.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use berth_vmm::devices::virtio::block::{self, Block};
use berth_vmm::devices::virtio::net::{self, Net};
use berth_vmm::devices::virtio::rng::{self, Rng};
use berth_vmm::devices::virtio::vsock::Vsock;
use berth_vmm::devices::virtio::{QueueError, VirtioDevice};
use berth_vmm::memory::{x86_layout, GuestMem, GuestRam};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use virtio_queue::desc::{split::Descriptor, RawDescriptor};
use virtio_queue::mock::{AvailRing, DescriptorTable, UsedRing};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};

// ---- allocation accounting ----

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn account(delta: isize) {
    // try_with: nothing to count once the thread's locals are gone.
    let _ = LIVE.try_with(|l| {
        let v = l.get() + delta;
        l.set(v);
        let _ = PEAK.try_with(|p| p.set(p.get().max(v)));
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters are
// const-initialised thread locals (no allocation, no destructor) touched only by `account`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc(l) };
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout.
        let p = unsafe { System.alloc_zeroed(l) };
        if !p.is_null() {
            account(l.size() as isize);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` was allocated by System with layout `l` (all allocations are).
        unsafe { System.dealloc(p, l) };
        account(-(l.size() as isize));
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        // SAFETY: as for dealloc; the caller guarantees `new` is a valid size.
        let q = unsafe { System.realloc(p, l, new) };
        if !q.is_null() {
            account(new as isize);
            account(-(l.size() as isize));
        }
        q
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`; returns its result and the most heap bytes it held live at once (this thread).
fn peak_heap<R>(f: impl FnOnce() -> R) -> (R, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let r = f();
    let peak = PEAK.with(Cell::get) - start;
    (r, peak.max(0) as usize)
}

/// The footprint every request must stay under, however large the chain claims to be.
const BOUND: usize = 2 << 20;

// ---- the driver side ----

const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

fn guest(mib: u32) -> GuestRam {
    GuestRam::new(&x86_layout(mib), false).expect("guest memory")
}

/// A split queue of `size` entries at `at`, driven from the guest's side with
/// virtio-queue's mock rings. (Its `MockSplitQueue` lays the used ring over the second
/// half of the available ring in 0.18, counting ring length in entries not bytes, so the
/// layout is computed here.)
struct Driver<'a> {
    table: DescriptorTable<'a, GuestMem>,
    avail: AvailRing<'a, GuestMem>,
    used: UsedRing<'a, GuestMem>,
    addrs: [u64; 3],
    size: u16,
    posted: u16,
}

impl<'a> Driver<'a> {
    fn new(mem: &'a GuestMem, at: u64, size: u16) -> Self {
        let avail = at + 16 * u64::from(size);
        let used = (avail + 6 + 2 * u64::from(size)).next_multiple_of(4);
        Driver {
            table: DescriptorTable::new(mem, GuestAddress(at), size),
            avail: AvailRing::new(mem, GuestAddress(avail), size),
            used: UsedRing::new(mem, GuestAddress(used), size),
            addrs: [at, avail, used],
            size,
            posted: 0,
        }
    }

    /// The device's side of the queue, as a transport sets it up.
    fn queue(&self) -> Queue {
        let mut q = Queue::new(self.size).expect("queue size");
        q.set_size(self.size);
        let [desc, avail, used] = self.addrs.map(|a| (Some(a as u32), Some((a >> 32) as u32)));
        q.set_desc_table_address(desc.0, desc.1);
        q.set_avail_ring_address(avail.0, avail.1);
        q.set_used_ring_address(used.0, used.1);
        q.set_ready(true);
        q
    }

    fn set(&self, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let d = Descriptor::new(addr, len, flags, next);
        self.table
            .store(i, RawDescriptor::from(d))
            .expect("descriptor");
    }

    /// Writes `descs` (addr, len, flags) from index `first` as one chain; returns its head.
    fn chain(&self, first: u16, descs: &[(u64, u32, u16)]) -> u16 {
        for (k, &(addr, len, flags)) in descs.iter().enumerate() {
            let i = first + k as u16;
            let more = k + 1 < descs.len();
            let flags = if more { flags | F_NEXT } else { flags };
            self.set(i, addr, len, flags, i + 1);
        }
        first
    }

    /// Makes `head` available.
    fn post(&mut self, head: u16) {
        let slot = usize::from(self.posted % self.size);
        self.avail
            .ring()
            .ref_at(slot)
            .expect("avail slot")
            .store(head);
        self.posted = self.posted.wrapping_add(1);
        self.avail.idx().store(self.posted);
    }

    fn set_avail_idx(&self, idx: u16) {
        self.avail.idx().store(idx);
    }

    /// Used ring entries (id, len) so far.
    fn used(&self) -> Vec<(u32, u32)> {
        let n = self.used.idx().load();
        (0..n)
            .map(|i| {
                let e = self
                    .used
                    .ring()
                    .ref_at(usize::from(i % self.size))
                    .expect("used slot")
                    .load();
                (e.id(), e.len())
            })
            .collect()
    }
}

fn blk_header(mem: &GuestMem, at: u64, kind: u32, sector: u64) {
    let mut h = [0u8; 16];
    h[..4].copy_from_slice(&kind.to_le_bytes());
    h[8..].copy_from_slice(&sector.to_le_bytes());
    mem.write_slice(&h, GuestAddress(at)).unwrap();
}

fn disk(len: u64) -> (tempfile::NamedTempFile, Block) {
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().set_len(len).unwrap();
    let b = Block::open(f.path(), false, 0).unwrap();
    (f, b)
}

// Queues sit at 0x0, 0x8000 and 0xc000, each below 0x3000 bytes long.
const HDR: u64 = 0x4000;
const STATUS: u64 = 0x5000;
const DATA: u64 = 0x10_0000;
const MIB48: u32 = 48 << 20;

// ---- the reported attack ----

#[test]
fn blk_attack_85_buffers_of_48_mib_are_refused_with_ioerr_in_bounded_memory() {
    let ram = guest(128);
    let mem = ram.memory();
    let (file, mut blk) = disk(1 << 20);
    for (kind, dir) in [(0u32, F_WRITE), (1u32, 0)] {
        let mut d = Driver::new(mem, 0, block::QUEUE_SIZE);
        blk_header(mem, HDR, kind, 0);
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let mut descs = vec![(HDR, 16, 0)];
        // All 85 overlap the same 48 MiB of a 128 MiB guest: 4080 MiB claimed in total.
        descs.extend(std::iter::repeat_n((DATA, MIB48, dir), 85));
        descs.push((STATUS, 1, F_WRITE));
        let head = d.chain(0, &descs);
        d.post(head);
        let mut queues = vec![d.queue()];
        let refused = blk.refused();
        let (r, peak) = peak_heap(|| blk.notify(0, &mut queues, mem));
        assert_eq!(r, Ok(true));
        assert!(peak < BOUND, "type {kind}: {peak} bytes buffered");
        assert_eq!(d.used(), vec![(0, 1)], "type {kind}: status byte only");
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
            1,
            "IOERR"
        );
        assert_eq!(blk.refused(), refused + 1);
    }
    assert!(std::fs::read(file.path()).unwrap().iter().all(|&b| b == 0));
}

#[test]
fn blk_largest_allowed_request_moves_in_chunks() {
    // seg_max descriptors of size_max bytes: the most one request may carry, read from a
    // sparse disk into one overlapping 1 MiB guest buffer, then written back.
    let ram = guest(16);
    let mem = ram.memory();
    let (file, mut blk) = disk(block::MAX_DATA + (1 << 20));
    let segs = block::SEG_MAX as usize;
    let mut d = Driver::new(mem, 0, block::QUEUE_SIZE);
    let mut queues = vec![d.queue()];
    for (i, (kind, dir)) in [(0u32, F_WRITE), (1u32, 0)].into_iter().enumerate() {
        blk_header(mem, HDR, kind, 1);
        mem.write_slice(&[0x5a; 4096], GuestAddress(DATA)).unwrap();
        let mut descs = vec![(HDR, 16, 0)];
        descs.extend(std::iter::repeat_n((DATA, block::SIZE_MAX, dir), segs));
        descs.push((STATUS, 1, F_WRITE));
        let head = d.chain(0, &descs);
        d.post(head);
        let (r, peak) = peak_heap(|| blk.notify(0, &mut queues, mem));
        assert_eq!(r, Ok(true));
        assert!(peak < BOUND, "type {kind}: {peak} bytes buffered");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 0, "S_OK");
        let written = if kind == 0 { block::MAX_DATA + 1 } else { 1 };
        assert_eq!(d.used()[i], (0, written as u32));
    }
    // The write stored the zeros just read, except the first 4 KiB of every segment.
    let f = std::fs::File::open(file.path()).unwrap();
    let mut b = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, 512).unwrap();
    assert_eq!(b, [0x5a; 8]);
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut b, 512 + 4096).unwrap();
    assert_eq!(b, [0; 8]);
    assert_eq!(blk.refused(), 0);
}

#[test]
fn blk_one_more_segment_or_byte_is_refused() {
    let ram = guest(16);
    let mem = ram.memory();
    let (_file, mut blk) = disk(1 << 20);
    let mut d = Driver::new(mem, 0, block::QUEUE_SIZE);
    let mut queues = vec![d.queue()];
    blk_header(mem, HDR, 0, 0);
    // More than seg_max data descriptors cannot reach the device: with the header and the
    // status byte they exceed the queue, which breaks it (see the looping test). Each
    // descriptor may exceed size_max by the header and status bytes it might also carry,
    // but the data bytes of the request may not exceed seg_max * size_max.
    let too_big = vec![(DATA, block::SIZE_MAX + 18, F_WRITE)];
    let too_much = vec![(DATA, block::SIZE_MAX + 17, F_WRITE); block::SEG_MAX as usize];
    for data in [too_big, too_much] {
        let mut descs = vec![(HDR, 16, 0)];
        descs.extend(data);
        descs.push((STATUS, 1, F_WRITE));
        d.post(d.chain(0, &descs));
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        let (r, peak) = peak_heap(|| blk.notify(0, &mut queues, mem));
        assert_eq!(r, Ok(true));
        assert!(peak < BOUND, "{peak} bytes buffered");
        assert_eq!(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(), 1);
    }
    assert_eq!(d.used().iter().map(|u| u.1).collect::<Vec<_>>(), [1, 1]);
    assert_eq!(blk.refused(), 2);
}

#[test]
fn looping_and_overlong_chains_put_the_queue_out_of_service() {
    let ram = guest(16);
    let mem = ram.memory();
    let (_file, mut blk) = disk(1 << 20);
    let mut d = Driver::new(mem, 0, 8);
    d.set(0, HDR, 16, F_NEXT, 1);
    d.set(1, DATA, 512, F_NEXT | F_WRITE, 0);
    d.post(0);
    let mut queues = vec![d.queue()];
    assert_eq!(
        blk.notify(0, &mut queues, mem),
        Err(QueueError::TooLong { head: 0, size: 8 })
    );
    assert!(d.used().is_empty(), "a broken chain is not returned");
    // An available index more than a queue ahead.
    let d = Driver::new(mem, 0x8000, 8);
    d.set_avail_idx(9);
    let mut queues = vec![d.queue()];
    assert_eq!(blk.notify(0, &mut queues, mem), Err(QueueError::AvailRing));
}

/// Runs `f` in a thread with its own network namespace (the tap is created there).
fn in_netns<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::spawn(move || {
        // SAFETY: unshare only changes this thread's namespace membership.
        let r = unsafe { libc::unshare(libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "unshare: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .unwrap()
}

fn tap_name(tag: &str) -> String {
    format!("bl{tag}{}", std::process::id() % 100_000)
}

#[test]
fn net_attack_oversized_tx_chains_are_dropped_counted_and_returned() {
    in_netns(|| {
        let ram = guest(128);
        let mem = ram.memory();
        let mut net = Net::open(&tap_name("a")).unwrap();
        let rx = Driver::new(mem, 0, 256);
        let mut tx = Driver::new(mem, 0x8000, 256);
        // The same 85 x 48 MiB chain, then one byte over the limit, then the largest frame.
        let attack: Vec<_> = std::iter::repeat_n((DATA, MIB48, 0), 85).collect();
        tx.post(tx.chain(0, &attack));
        let over = [(DATA, 12, 0), (DATA, net::MAX_FRAME as u32 - 11, 0)];
        tx.post(tx.chain(85, &over));
        tx.post(tx.chain(87, &[(DATA, net::MAX_FRAME as u32, 0)]));
        let mut queues = vec![rx.queue(), tx.queue()];
        let (r, peak) = peak_heap(|| net.notify(1, &mut queues, mem));
        assert_eq!(r, Ok(true));
        assert!(peak < BOUND, "{peak} bytes buffered");
        assert_eq!(tx.used(), vec![(0, 0), (85, 0), (87, 0)]);
        assert_eq!(net.refused(), 2);
    });
}

// ---- fuzzing ----

/// One random descriptor: (address, length, flags, next).
fn any_desc(mem_end: u64) -> impl Strategy<Value = (u64, u32, u16, u16)> {
    let addr = prop_oneof![
        4 => (0u64..64).prop_map(|k| DATA + k * 0x1000),
        1 => (0u64..64).prop_map(move |k| mem_end - k * 8),
        1 => Just(1u64 << 40),
        1 => (0u64..64).prop_map(|k| u64::MAX - k),
    ];
    let len = prop_oneof![
        Just(0u32),
        Just(1),
        Just(16),
        Just(44),
        Just(512),
        Just(4096),
        0u32..70_000,
        Just(1 << 20),
        Just(MIB48),
        Just(u32::MAX),
    ];
    let flags = prop_oneof![8 => 0u16..4, 1 => any::<u16>()];
    (addr, len, flags, 0u16..20)
}

/// A random queue: descriptor table, heads made available, the available index claimed,
/// and bytes for request headers.
#[derive(Clone)]
struct Case {
    descs: Vec<(u64, u32, u16, u16)>,
    heads: Vec<u16>,
    avail_idx: Option<u16>,
    data: Vec<u8>,
}

impl std::fmt::Debug for Case {
    // The header bytes are many and rarely matter: a checksum stands in for them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sum: u64 = self.data.iter().map(|&b| u64::from(b)).sum();
        f.debug_struct("Case")
            .field("descs", &self.descs)
            .field("heads", &self.heads)
            .field("avail_idx", &self.avail_idx)
            .field("data_sum", &sum)
            .finish()
    }
}

const FUZZ_QUEUE: u16 = 16;
const FUZZ_MIB: u32 = 16;

fn any_case() -> impl Strategy<Value = Case> {
    let end = u64::from(FUZZ_MIB) << 20;
    (
        prop::collection::vec(any_desc(end), usize::from(FUZZ_QUEUE)),
        prop::collection::vec(0u16..18, 0..=usize::from(FUZZ_QUEUE)),
        prop_oneof![6 => Just(None), 1 => any::<u16>().prop_map(Some)],
        prop::collection::vec(prop_oneof![3 => 0u8..10, 1 => any::<u8>()], 512),
    )
        .prop_map(|(descs, heads, avail_idx, data)| Case {
            descs,
            heads,
            avail_idx,
            data,
        })
}

/// Like [`any_case`] but without structural breakage (no indirect flag, `next` inside the
/// queue, a sane available index), so more chains reach the request logic; loops remain
/// possible.
fn well_formed_case() -> impl Strategy<Value = Case> {
    let end = u64::from(FUZZ_MIB) << 20;
    let desc = (any_desc(end), 0u16..4, 0u16..FUZZ_QUEUE)
        .prop_map(|((addr, len, _, _), flags, next)| (addr, len, flags, next));
    (
        prop::collection::vec(desc, usize::from(FUZZ_QUEUE)),
        prop::collection::vec(0u16..FUZZ_QUEUE, 0..=usize::from(FUZZ_QUEUE)),
        any_case(),
    )
        .prop_map(|(descs, heads, c)| Case {
            descs,
            heads,
            avail_idx: None,
            data: c.data,
        })
}

/// A receive queue of single writable buffers of random sizes (some too small for a
/// packet header, some outside guest memory), away from the transmit data pages.
fn rx_case() -> impl Strategy<Value = Case> {
    let addr = prop_oneof![
        6 => (0u64..64).prop_map(|k| DATA + 0x40_0000 + k * 0x1000),
        1 => Just(1u64 << 40),
    ];
    let len = prop_oneof![
        Just(0u32),
        Just(8),
        Just(43),
        Just(44),
        Just(100),
        Just(4096),
        Just(70_000)
    ];
    let desc = (addr, len).prop_map(|(a, l)| (a, l, F_WRITE, 0));
    (
        prop::collection::vec(desc, usize::from(FUZZ_QUEUE)),
        prop::collection::vec(0u16..FUZZ_QUEUE, 0..=usize::from(FUZZ_QUEUE)),
    )
        .prop_map(|(descs, heads)| Case {
            descs,
            heads,
            avail_idx: None,
            data: vec![0; 512],
        })
}

/// What a correct device must do with a chain: the reference model of a split-ring walk.
/// Some(writable bytes) for a usable chain, None for one that breaks the queue.
fn model_chain(c: &Case, head: u16) -> Option<u64> {
    let (mut idx, mut n, mut total, mut writable) = (head, 0u16, 0u64, 0u64);
    loop {
        let &(_, len, flags, next) = c.descs.get(usize::from(idx))?;
        if idx >= FUZZ_QUEUE || n == FUZZ_QUEUE || flags & F_INDIRECT != 0 {
            return None;
        }
        n += 1;
        total += u64::from(len);
        if total > u64::from(u32::MAX) {
            return None;
        }
        if flags & F_WRITE != 0 {
            writable += u64::from(len);
        }
        if flags & F_NEXT == 0 {
            return Some(writable);
        }
        idx = next;
    }
}

/// Lays `c` out in guest memory as queue `q` (at `at`); returns the driver.
fn lay_out<'a>(mem: &'a GuestMem, c: &Case, at: u64) -> Driver<'a> {
    let mut d = Driver::new(mem, at, FUZZ_QUEUE);
    for (i, &(addr, len, flags, next)) in c.descs.iter().enumerate() {
        d.set(i as u16, addr, len, flags, next);
    }
    // Request headers and payloads: 64 of the random bytes at each data page.
    for k in 0..64usize {
        let off = k * 7 % (c.data.len() - 64);
        mem.write_slice(
            &c.data[off..off + 64],
            GuestAddress(DATA + k as u64 * 0x1000),
        )
        .unwrap();
    }
    for &h in &c.heads {
        d.post(h);
    }
    if let Some(i) = c.avail_idx {
        d.set_avail_idx(i);
    }
    d
}

/// Checks the used ring of `d` against the model after the device returned `r`.
fn check_used(
    c: &Case,
    d: &Driver<'_>,
    r: &Result<bool, QueueError>,
    max_len: impl Fn(u64) -> u64,
) -> Result<(), TestCaseError> {
    let used = d.used();
    let claimed = c.avail_idx.unwrap_or(c.heads.len() as u16);
    let sane = claimed <= FUZZ_QUEUE && usize::from(claimed) <= c.heads.len();
    // The chains the device should complete before (possibly) stopping.
    let mut expect = Vec::new();
    let mut broken = !sane && claimed != 0;
    if sane {
        for &h in &c.heads[..usize::from(claimed)] {
            match model_chain(c, h) {
                Some(w) => expect.push((h, w)),
                None => {
                    broken = true;
                    break;
                }
            }
        }
    }
    prop_assert_eq!(r.is_err(), broken, "device result {:?}", r);
    prop_assert_eq!(used.len(), expect.len(), "used {:?}", used);
    for (&(id, len), &(h, w)) in used.iter().zip(&expect) {
        prop_assert_eq!(id, u32::from(h));
        prop_assert!(
            u64::from(len) <= max_len(w),
            "used len {} > {}",
            len,
            max_len(w)
        );
    }
    Ok(())
}

fn fuzz(cases: u32, run: impl FnMut(&GuestMem, &Case) -> Result<(), TestCaseError>) {
    fuzz_with(any_case(), cases, run)
}

fn fuzz_with<S: Strategy>(
    strategy: S,
    cases: u32,
    run: impl FnMut(&GuestMem, &S::Value) -> Result<(), TestCaseError>,
) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let run = std::cell::RefCell::new(run);
    runner
        .run(&strategy, |c| {
            let ram = guest(FUZZ_MIB);
            (run.borrow_mut())(ram.memory(), &c)
        })
        .unwrap();
}

/// Cases per device; `BERTH_FUZZ_CASES` raises it for longer runs.
fn cases() -> u32 {
    std::env::var("BERTH_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(512)
}

#[test]
fn fuzz_blk_requests() {
    let (_file, mut blk) = disk(1 << 20);
    let (mut answered, mut broken, mut status) = (0, 0, 0);
    fuzz(cases(), |mem, c| {
        let d = lay_out(mem, c, 0);
        let mut queues = vec![d.queue()];
        let (r, peak) = peak_heap(|| blk.notify(0, &mut queues, mem));
        prop_assert!(peak < 64 << 10, "{} bytes allocated", peak);
        check_used(c, &d, &r, |w| w)?;
        answered += d.used().len();
        broken += usize::from(r.is_err());
        // A used length above 0: the status byte (and any data) reached the guest.
        status += d.used().iter().filter(|u| u.1 > 0).count();
        Ok(())
    });
    // The generator reaches every outcome: answered, broken queues, a status written.
    assert!(
        answered > 0 && broken > 0 && status > 0,
        "{answered} {broken} {status}"
    );
    assert!(blk.refused() > 0);
}

#[test]
fn fuzz_rng_requests() {
    let mut dev = Rng::default();
    fuzz(cases(), |mem, c| {
        let d = lay_out(mem, c, 0);
        let mut queues = vec![d.queue()];
        let (r, peak) = peak_heap(|| dev.notify(0, &mut queues, mem));
        prop_assert!(peak < 64 << 10, "{} bytes allocated", peak);
        check_used(c, &d, &r, |w| w.min(rng::MAX_REQUEST as u64))
    });
}

#[test]
fn fuzz_net_transmit() {
    in_netns(|| {
        let mut dev = Net::open(&tap_name("f")).unwrap();
        fuzz(cases(), |mem, c| {
            let rx = Driver::new(mem, 0x8000, FUZZ_QUEUE);
            let tx = lay_out(mem, c, 0);
            let mut queues = vec![rx.queue(), tx.queue()];
            let (r, peak) = peak_heap(|| dev.notify(1, &mut queues, mem));
            prop_assert!(peak < 64 << 10, "{} bytes allocated", peak);
            check_used(c, &tx, &r, |_| 0)
        });
    });
}

/// Vsock headers from the guest (CID 3) to the host under every data page, with random
/// ports, ops and lengths, so packets reach the connection logic and draw replies.
fn vsock_headers(mem: &GuestMem, c: &Case) {
    for k in 0..64usize {
        let b = &c.data[k * 8..k * 8 + 8];
        let len = match b[3] % 9 {
            0..=2 => 0u32,
            3 | 4 => u32::from(b[4]) * 16,
            5 => 64 << 10,
            6 => (64 << 10) + 1,
            7 => u32::MAX,
            _ => u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
        };
        let mut h = [0u8; 44];
        h[..8].copy_from_slice(&3u64.to_le_bytes());
        h[8..16].copy_from_slice(&2u64.to_le_bytes());
        h[16..20].copy_from_slice(&u32::from(b[0]).to_le_bytes());
        h[20..24].copy_from_slice(&u32::from(b[1]).to_le_bytes());
        h[24..28].copy_from_slice(&len.to_le_bytes());
        h[28..30].copy_from_slice(&u16::from(1 + b[2] / 200).to_le_bytes());
        h[30..32].copy_from_slice(&u16::from(b[2] % 9).to_le_bytes());
        h[36..40].copy_from_slice(&u32::from_le_bytes([0, 0, b[5], b[6]]).to_le_bytes());
        mem.write_slice(&h, GuestAddress(DATA + k as u64 * 0x1000))
            .unwrap();
    }
}

#[test]
fn fuzz_vsock_packets_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("v.sock");
    let mut replies = 0;
    let tx_case = prop_oneof![any_case(), well_formed_case()];
    fuzz_with((rx_case(), tx_case), cases(), |mem, (rc, c)| {
        let mut dev = Vsock::new(3, &sock).unwrap();
        // Replies to the packets land in random receive buffers.
        let rx = lay_out(mem, rc, 0x8000);
        let tx = lay_out(mem, c, 0);
        vsock_headers(mem, c);
        let mut queues = vec![rx.queue(), tx.queue(), Driver::new(mem, 0xc000, 4).queue()];
        let (r, peak) = peak_heap(|| {
            dev.notify(1, &mut queues, mem)
                .and_then(|u| Ok(u | dev.poll(&mut queues, mem)?))
        });
        prop_assert!(peak < 256 << 10, "{} bytes allocated", peak);
        let used = rx.used();
        for &(id, len) in &used {
            prop_assert!(id < u32::from(FUZZ_QUEUE));
            let w = model_chain(rc, id as u16).unwrap_or(0);
            prop_assert!(u64::from(len) <= w);
            replies += usize::from(len >= 44);
        }
        // The tx ring follows the model unless the rx ring broke the device first.
        if r.is_ok() {
            check_used(c, &tx, &r, |_| 0)?;
        }
        Ok(())
    });
    assert!(replies > 0, "no case delivered a reply");
}

// ---- vsock flow control ----

const VSOCK_OP_REQUEST: u16 = 1;
const VSOCK_OP_RW: u16 = 5;

/// A guest (CID 3) -> host packet header.
fn vsock_hdr(src_port: u32, dst_port: u32, len: u32, op: u16, buf_alloc: u32) -> [u8; 44] {
    let mut h = [0u8; 44];
    h[..8].copy_from_slice(&3u64.to_le_bytes());
    h[8..16].copy_from_slice(&2u64.to_le_bytes());
    h[16..20].copy_from_slice(&src_port.to_le_bytes());
    h[20..24].copy_from_slice(&dst_port.to_le_bytes());
    h[24..28].copy_from_slice(&len.to_le_bytes());
    h[28..30].copy_from_slice(&1u16.to_le_bytes());
    h[30..32].copy_from_slice(&op.to_le_bytes());
    h[36..40].copy_from_slice(&buf_alloc.to_le_bytes());
    h
}

/// rx at 0x0, tx at 0x8000, event at 0xc000, each of 256 entries.
fn vsock_queues(mem: &GuestMem) -> (Driver<'_>, Driver<'_>, Vec<Queue>) {
    let rx = Driver::new(mem, 0, 256);
    let tx = Driver::new(mem, 0x8000, 256);
    let ev = Driver::new(mem, 0xc000, 4);
    let queues = vec![rx.queue(), tx.queue(), ev.queue()];
    (rx, tx, queues)
}

#[test]
fn vsock_a_guest_ignoring_credit_is_reset_and_host_data_waits_in_the_socket() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener =
        std::os::unix::net::UnixListener::bind(format!("{}_5000", uds.display())).unwrap();
    let mut dev = Vsock::new(3, &uds).unwrap();
    let ram = guest(16);
    let mem = ram.memory();
    let (_rx, mut tx, mut queues) = vsock_queues(mem);
    // The guest connects, claiming a 4 GiB receive buffer.
    mem.write_slice(
        &vsock_hdr(1000, 5000, 0, VSOCK_OP_REQUEST, u32::MAX),
        GuestAddress(HDR),
    )
    .unwrap();
    tx.post(tx.chain(0, &[(HDR, 44, 0)]));
    assert_eq!(dev.notify(1, &mut queues, mem), Ok(true));
    let (mut host, _) = listener.accept().unwrap();
    // The host program writes all the socket takes; the guest gives no rx buffers.
    host.set_nonblocking(true).unwrap();
    let chunk = vec![7u8; 64 << 10];
    let mut sent = 0;
    while let Ok(n) = host.write(&chunk) {
        sent += n;
    }
    assert!(sent > 64 << 10, "the socket took only {sent} bytes");
    let (r, peak) = peak_heap(|| dev.poll(&mut queues, mem));
    assert!(r.is_ok());
    assert!(peak < 256 << 10, "{peak} bytes held for the guest");

    // The guest sends 1 MiB in 64 KiB packets; the host program reads none of it.
    let refused = dev.refused();
    let payload = 64 << 10;
    mem.write_slice(
        &vsock_hdr(1000, 5000, payload, VSOCK_OP_RW, u32::MAX),
        GuestAddress(HDR),
    )
    .unwrap();
    let (_, peak) = peak_heap(|| {
        for i in 0..16u16 {
            tx.post(tx.chain(1 + i * 2, &[(HDR, 44, 0), (DATA, payload, 0)]));
            assert!(dev.notify(1, &mut queues, mem).is_ok());
        }
    });
    // BUF_ALLOC (256 KiB) at most; without the check the unread 1 MiB piles up.
    assert!(peak < 512 << 10, "{peak} bytes held for the host");
    assert_eq!(
        dev.refused(),
        refused + 1,
        "one reset for exceeding the credit"
    );
    assert_eq!(tx.used().len(), 17);
}

#[test]
fn vsock_replies_waiting_for_rx_buffers_pause_transmit() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = Vsock::new(3, &dir.path().join("v.sock")).unwrap();
    let ram = guest(16);
    let mem = ram.memory();
    let (mut rx, mut tx, mut queues) = vsock_queues(mem);
    // Data for connections that do not exist: each draws a reset, 256 per round, all
    // distinct, and the guest offers no rx buffer to take them.
    let post_round = |tx: &mut Driver<'_>, round: u32| {
        for i in 0..256u32 {
            let at = DATA + u64::from(round * 256 + i) * 64;
            mem.write_slice(
                &vsock_hdr(round * 256 + i, 9, 0, VSOCK_OP_RW, 0),
                GuestAddress(at),
            )
            .unwrap();
            tx.post(tx.chain(i as u16, &[(at, 44, 0)]));
        }
    };
    for round in 0..3 {
        post_round(&mut tx, round);
        let (r, peak) = peak_heap(|| dev.notify(1, &mut queues, mem));
        assert!(r.is_ok());
        assert!(peak < 64 << 10, "{peak} bytes queued");
    }
    // Two rounds fill the reply queue; the third waits in the ring.
    assert_eq!(tx.used().len(), 512);
    for i in 0..256u16 {
        rx.set(i, DATA + 0x10_0000 + u64::from(i) * 64, 44, F_WRITE, 0);
        rx.post(i);
    }
    assert_eq!(dev.poll(&mut queues, mem), Ok(true));
    assert_eq!(rx.used().len(), 256);
    assert_eq!(
        tx.used().len(),
        768,
        "transmit resumed once replies were taken"
    );
}
