//! virtio devices over the virtio-mmio transport (virtio 1.x, "version 2" registers).
//!
//! Queues are processed synchronously on the vCPU thread that writes QueueNotify: the
//! request is complete, and the used ring updated, before that vCPU re-enters the guest.
//!
//! The guest is hostile. Chains are read once and checked by [`chain`]; a device moves
//! data between guest memory and its backend in bounded pieces and never allocates by a
//! length the guest chose; each device documents its limits (docs/vmm.md lists them).
//! A broken queue ([`QueueError`]) puts the device in DEVICE_NEEDS_RESET; a bad request
//! is answered through the used ring and counted ([`VirtioDevice::refused`]).

pub mod block;
pub mod chain;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

use std::num::Wrapping;
use std::sync::atomic::Ordering;

use crate::memory::GuestMem;
use virtio_queue::{Queue, QueueT};

pub use chain::{DescChain, QueueError, RequestError};

/// Feature bit every device offers: the modern (non-legacy) interface.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;
pub const TYPE_VSOCK: u32 = 19;

/// Whether queue work changed any used ring (i.e. whether to interrupt the guest), or the
/// queue the driver broke (the transport then sets DEVICE_NEEDS_RESET).
pub type QueueResult = std::result::Result<bool, QueueError>;

/// Device-specific half of a virtio device; the transport owns queues and registers.
pub trait VirtioDevice: Send {
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the number of entries is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Offered features, including [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;
    /// Reads device config space at `offset` (bytes beyond it read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// The driver notified `queue` (all queues are ready and valid); returns whether any
    /// used ring changed, i.e. whether to interrupt the guest.
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> QueueResult;
    /// Device-initiated work, e.g. host data for the guest. Called after every notify and
    /// whenever the device's backend thread wakes; returns whether any used ring changed.
    fn poll(&mut self, _queues: &mut [Queue], _mem: &GuestMem) -> QueueResult {
        Ok(false)
    }
    /// Requests refused so far (bad or over-limit requests answered with an error or
    /// dropped); for tests and diagnostics.
    fn refused(&self) -> u64 {
        0
    }
}

/// The next available chain of `queue`, read and checked ([`DescChain::walk`]).
pub(crate) fn next_chain(
    queue: &mut Queue,
    mem: &GuestMem,
) -> std::result::Result<Option<DescChain>, QueueError> {
    let avail = queue
        .avail_idx(mem, Ordering::Acquire)
        .map_err(|_| QueueError::AvailRing)?;
    let pending = (avail - Wrapping(queue.next_avail())).0;
    if pending == 0 {
        return Ok(None);
    }
    if pending > queue.size() {
        return Err(QueueError::AvailRing);
    }
    // None now means the guest moved the index back under us.
    let head = queue
        .pop_descriptor_chain(mem)
        .ok_or(QueueError::AvailRing)?
        .head_index();
    DescChain::walk(mem, queue.desc_table(), queue.size(), head).map(Some)
}

/// Returns chain `head` to the driver with `len` bytes written.
pub(crate) fn add_used(
    queue: &mut Queue,
    mem: &GuestMem,
    head: u16,
    len: u32,
) -> std::result::Result<(), QueueError> {
    queue
        .add_used(mem, head, len)
        .map_err(|_| QueueError::UsedRing)
}

/// For request/response devices: completes the available chains of `queue` with
/// `handle` (which returns the bytes it wrote). At most one queue size of chains per call:
/// that is every chain the driver can have made available before its notification, and
/// it keeps a guest that refills the ring concurrently from holding the vCPU thread.
pub(crate) fn drain_queue(
    queue: &mut Queue,
    mem: &GuestMem,
    mut handle: impl FnMut(&DescChain) -> u32,
) -> QueueResult {
    let mut used = false;
    for _ in 0..queue.size() {
        let Some(chain) = next_chain(queue, mem)? else {
            break;
        };
        let len = handle(&chain);
        add_used(queue, mem, chain.head(), len)?;
        used = true;
    }
    Ok(used)
}

/// Copies `src` at `offset` into `data`, zero-filling what lies outside.
pub(crate) fn read_config_bytes(src: &[u8], offset: u64, data: &mut [u8]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b = usize::try_from(offset)
            .ok()
            .and_then(|o| o.checked_add(i))
            .and_then(|o| src.get(o).copied())
            .unwrap_or(0);
    }
}
