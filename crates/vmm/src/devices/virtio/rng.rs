//! virtio-rng: fills every device-writable buffer with bytes from getrandom(2).

use std::io::Write;

use crate::memory::GuestMem;

use virtio_queue::Queue;

use super::{drain_queue, Chain, VirtioDevice, TYPE_RNG, VIRTIO_F_VERSION_1};

/// Bytes served per request at most, so one guest request cannot pin the vCPU thread.
const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Default)]
pub struct Rng;

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
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> bool {
        match queues.get_mut(usize::from(queue)) {
            Some(q) => drain_queue(q, mem, |chain| self.handle(chain, mem)),
            None => false,
        }
    }
}

impl Rng {
    fn handle(&mut self, chain: Chain<'_>, mem: &GuestMem) -> u32 {
        let Ok(mut w) = chain.writer(mem) else {
            return 0;
        };
        let mut buf = vec![0u8; w.available_bytes().min(MAX_REQUEST)];
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
        match w.write_all(&buf[..filled]) {
            Ok(()) => filled as u32,
            Err(_) => w.bytes_written() as u32,
        }
    }
}
