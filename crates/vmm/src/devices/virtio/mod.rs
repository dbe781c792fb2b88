//! virtio devices over the virtio-mmio transport (virtio 1.x, "version 2" registers).
//!
//! Queues are processed synchronously on the vCPU thread that writes QueueNotify: the
//! request is complete, and the used ring updated, before that vCPU re-enters the guest.

pub mod block;
pub mod mmio;
pub mod net;
pub mod rng;
pub mod vsock;

use crate::memory::GuestMem;
use virtio_queue::{DescriptorChain, Queue, QueueT};

/// Feature bit every device offers: the modern (non-legacy) interface.
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;

pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;
pub const TYPE_VSOCK: u32 = 19;

/// A chain as handed to a device: borrowed guest memory.
pub type Chain<'a> = DescriptorChain<&'a GuestMem>;

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
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> bool;
    /// Device-initiated work, e.g. host data for the guest. Called after every notify and
    /// whenever the device's backend thread wakes; returns whether any used ring changed.
    fn poll(&mut self, _queues: &mut [Queue], _mem: &GuestMem) -> bool {
        false
    }
}

/// For request/response devices: completes every available chain of `queue` with
/// `handle` (which returns the bytes it wrote). Returns whether any chain was used.
pub(crate) fn drain_queue(
    queue: &mut Queue,
    mem: &GuestMem,
    mut handle: impl FnMut(Chain<'_>) -> u32,
) -> bool {
    let mut used = false;
    while let Some(chain) = queue.pop_descriptor_chain(mem) {
        let head = chain.head_index();
        let len = handle(chain);
        if let Err(e) = queue.add_used(mem, head, len) {
            tracing::warn!("virtio: add_used({head}): {e}");
            break;
        }
        used = true;
    }
    used
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
