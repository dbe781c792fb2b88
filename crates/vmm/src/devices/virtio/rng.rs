//! virtio-rng: fills device-writable buffers with bytes from getrandom(2).
//!
//! Limit: at most [`MAX_REQUEST`] bytes per request, drawn into one buffer the device
//! owns; a chain with a buffer outside guest memory is returned with used length 0.

use crate::memory::GuestMem;

use virtio_queue::Queue;

use super::{drain_queue, DescChain, QueueResult, VirtioDevice, TYPE_RNG, VIRTIO_F_VERSION_1};

/// Bytes served per request at most, so one guest request cannot pin the vCPU thread.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug)]
pub struct Rng {
    buf: Vec<u8>,
    refused: u64,
}

impl Default for Rng {
    fn default() -> Self {
        Rng {
            buf: vec![0u8; MAX_REQUEST],
            refused: 0,
        }
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> QueueResult {
        match queues.get_mut(usize::from(queue)) {
            Some(q) => drain_queue(q, mem, |chain| self.handle(chain, mem)),
            None => Ok(false),
        }
    }
    fn refused(&self) -> u64 {
        self.refused
    }
}

impl Rng {
    fn handle(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        if let Err(e) = chain.check_memory(mem) {
            self.refused += 1;
            tracing::debug!("virtio-rng: request {} refused: {e}", chain.head());
            return 0;
        }
        let want = chain.writable_len().min(MAX_REQUEST as u64) as usize;
        let buf = &mut self.buf[..want];
        let mut filled = 0;
        while filled < buf.len() {
            // SAFETY: the pointer and length describe the unfilled tail of `buf`.
            let n = unsafe {
                libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0)
            };
            if n <= 0 {
                break;
            }
            filled += n as usize;
        }
        // At most MAX_REQUEST bytes.
        chain.write_at(mem, 0, &buf[..filled]).unwrap_or(0) as u32
    }
}
