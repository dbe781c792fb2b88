//! virtio-mmio transport, register layout of the virtio 1.x spec section 4.2.2.
//!
//! When a device reports a queue the driver broke ([`super::QueueError`]) the transport
//! sets DEVICE_NEEDS_RESET, raises a configuration-change interrupt (virtio 1.2 section
//! 2.1.2) and uses none of the device's queues until the driver resets it.

use crate::memory::GuestMem;
use virtio_queue::{Queue, QueueT};

use super::VirtioDevice;
use crate::bus::BusDevice;
use crate::devices::IrqLine;

const MAGIC: u32 = 0x7472_6976; // "virt"
const VERSION: u32 = 2;
const VENDOR: u32 = 0x4854_5245; // "ERTH"

const STATUS_DRIVER_OK: u32 = 4;
const STATUS_FEATURES_OK: u32 = 8;
const STATUS_NEEDS_RESET: u32 = 0x40;
const STATUS_FAILED: u32 = 0x80;
const INT_USED_RING: u32 = 1;
const INT_CONFIG: u32 = 2;

pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    queues: Vec<Queue>,
    mem: GuestMem,
    irq: IrqLine,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    status: u32,
    interrupt_status: u32,
}

impl MmioTransport {
    pub fn new(device: Box<dyn VirtioDevice>, mem: GuestMem, irq: IrqLine) -> Self {
        let queues = device
            .queue_max_sizes()
            .iter()
            // Sizes are compile-time powers of two, which is all Queue::new checks.
            .filter_map(|&s| Queue::new(s).ok())
            .collect();
        MmioTransport {
            device,
            queues,
            mem,
            irq,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            status: 0,
            interrupt_status: 0,
        }
    }

    fn queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn reset(&mut self) {
        for q in &mut self.queues {
            q.reset();
        }
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.status = 0;
        self.interrupt_status = 0;
    }

    fn notify(&mut self, index: u32) {
        if !self.queues_usable() || index as usize >= self.queues.len() {
            return;
        }
        let r = self
            .device
            .notify(index as u16, &mut self.queues, &self.mem)
            .and_then(|used| Ok(used | self.device.poll(&mut self.queues, &self.mem)?));
        self.finish(r);
    }

    /// Device-initiated work (backend threads call this when their sockets wake them).
    pub fn service(&mut self) {
        if self.queues_usable() {
            let r = self.device.poll(&mut self.queues, &self.mem);
            self.finish(r);
        }
    }

    /// Interrupts for used buffers, or enters DEVICE_NEEDS_RESET for a broken queue.
    fn finish(&mut self, r: super::QueueResult) {
        match r {
            Ok(used) => self.interrupt_if(used),
            Err(e) => {
                // Once per reset: the queues are not used again until then.
                tracing::warn!(
                    "virtio device type {}: {e}; device needs reset",
                    self.device.device_type()
                );
                self.status |= STATUS_NEEDS_RESET;
                // Chains completed before the broken one are in the used ring too.
                self.interrupt_status |= INT_CONFIG | INT_USED_RING;
                let _ = self.irq.trigger();
            }
        }
    }

    /// The driver is up and every queue it enabled is valid. Disabled queues stay
    /// unused (a driver may leave, say, the vsock event queue off).
    fn queues_usable(&self) -> bool {
        self.status & STATUS_DRIVER_OK != 0
            && self.status & (STATUS_FAILED | STATUS_NEEDS_RESET) == 0
            && self
                .queues
                .iter()
                .all(|q| !q.ready() || q.is_valid(&self.mem))
    }

    fn interrupt_if(&mut self, used: bool) {
        if used {
            self.interrupt_status |= INT_USED_RING;
            // A lost interrupt only delays a polling guest; nothing to recover here.
            let _ = self.irq.trigger();
        }
    }

    fn read_reg(&mut self, offset: u64) -> u32 {
        let features = self.device.features();
        match offset {
            0x000 => MAGIC,
            0x004 => VERSION,
            0x008 => self.device.device_type(),
            0x00c => VENDOR,
            0x010 => match self.device_features_sel {
                0 => features as u32,
                1 => (features >> 32) as u32,
                _ => 0,
            },
            0x034 => self.queue().map_or(0, |q| u32::from(q.max_size())),
            0x044 => self.queue().map_or(0, |q| u32::from(q.ready())),
            0x060 => self.interrupt_status,
            0x070 => self.status,
            0x0fc => 0,
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        let ready = self.queue().is_some_and(|q| q.ready());
        match offset {
            0x014 => self.device_features_sel = v,
            0x020 => {
                let shift = match self.driver_features_sel {
                    0 => 0,
                    1 => 32,
                    _ => return,
                };
                self.driver_features &= !(0xffff_ffffu64 << shift);
                self.driver_features |= u64::from(v) << shift;
            }
            0x024 => self.driver_features_sel = v,
            0x030 => self.queue_sel = v,
            0x038 if !ready => {
                if let Some(q) = self.queue() {
                    q.set_size(v as u16);
                }
            }
            0x044 => {
                if let Some(q) = self.queue() {
                    q.set_ready(v == 1);
                }
            }
            0x050 => self.notify(v),
            0x064 => self.interrupt_status &= !v,
            0x070 => self.write_status(v),
            0x080 | 0x084 | 0x090 | 0x094 | 0x0a0 | 0x0a4 if !ready => {
                let Some(q) = self.queue() else { return };
                let (lo, hi) = if offset & 4 == 0 {
                    (Some(v), None)
                } else {
                    (None, Some(v))
                };
                match offset & !4 {
                    0x080 => q.set_desc_table_address(lo, hi),
                    0x090 => q.set_avail_ring_address(lo, hi),
                    _ => q.set_used_ring_address(lo, hi),
                }
            }
            _ => {}
        }
    }

    fn write_status(&mut self, v: u32) {
        if v == 0 {
            self.reset();
            return;
        }
        // FEATURES_OK is only accepted for a subset of what the device offers, and
        // the driver must accept the modern interface.
        if v & STATUS_FEATURES_OK != 0 && self.status & STATUS_FEATURES_OK == 0 {
            let offered = self.device.features();
            if self.driver_features & !offered != 0
                || self.driver_features & super::VIRTIO_F_VERSION_1 == 0
            {
                self.status = v & !STATUS_FEATURES_OK;
                return;
            }
        }
        // DEVICE_NEEDS_RESET is the device's to set; only a reset (0) clears it.
        self.status = v | (self.status & STATUS_NEEDS_RESET);
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= 0x100 {
            self.device.read_config(offset - 0x100, data);
            return;
        }
        let v = if data.len() == 4 {
            self.read_reg(offset)
        } else {
            0
        };
        for (i, b) in data.iter_mut().enumerate() {
            *b = v.to_le_bytes().get(i).copied().unwrap_or(0);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Registers are 32-bit only; config space is read-only for blk and rng.
        if offset < 0x100 {
            if let Ok(bytes) = <[u8; 4]>::try_from(data) {
                self.write_reg(offset, u32::from_le_bytes(bytes));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::{QueueError, QueueResult, VIRTIO_F_VERSION_1};
    use crate::memory::{GuestRam, Region};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// A device whose queue is broken by the driver on every notification.
    struct Broken(Arc<AtomicU32>);

    impl VirtioDevice for Broken {
        fn device_type(&self) -> u32 {
            2
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[8]
        }
        fn features(&self) -> u64 {
            VIRTIO_F_VERSION_1
        }
        fn read_config(&self, _offset: u64, data: &mut [u8]) {
            data.fill(0);
        }
        fn notify(&mut self, _q: u16, _qs: &mut [Queue], _m: &GuestMem) -> QueueResult {
            self.0.fetch_add(1, Ordering::Relaxed);
            Err(QueueError::TooLong { head: 0, size: 8 })
        }
    }

    fn write(t: &mut MmioTransport, offset: u64, v: u32) {
        t.write(offset, &v.to_le_bytes());
    }

    fn read(t: &mut MmioTransport, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn a_broken_queue_sets_needs_reset_until_the_driver_resets() {
        let ram = GuestRam::new(
            &[Region {
                start: 0,
                size: 1 << 20,
            }],
            false,
        )
        .unwrap();
        let calls = Arc::new(AtomicU32::new(0));
        let dev = Box::new(Broken(calls.clone()));
        let mut t = MmioTransport::new(dev, ram.memory().clone(), IrqLine::new(5).unwrap());
        let setup = |t: &mut MmioTransport| {
            write(t, 0x070, 1 | 2);
            write(t, 0x024, 1);
            write(t, 0x020, 1);
            write(t, 0x070, 1 | 2 | STATUS_FEATURES_OK);
            write(t, 0x030, 0);
            write(t, 0x038, 8);
            write(t, 0x080, 0x1000);
            write(t, 0x090, 0x2000);
            write(t, 0x0a0, 0x3000);
            write(t, 0x044, 1);
            write(t, 0x070, 1 | 2 | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
        };
        setup(&mut t);
        write(&mut t, 0x050, 0);
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        assert_ne!(read(&mut t, 0x070) & STATUS_NEEDS_RESET, 0);
        assert_eq!(read(&mut t, 0x060), INT_CONFIG | INT_USED_RING);
        // The driver cannot clear the bit by writing its own status, and the device's
        // queues are left alone meanwhile.
        write(&mut t, 0x070, 1 | 2 | STATUS_FEATURES_OK | STATUS_DRIVER_OK);
        assert_ne!(read(&mut t, 0x070) & STATUS_NEEDS_RESET, 0);
        write(&mut t, 0x050, 0);
        t.service();
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        // A reset brings the device back.
        write(&mut t, 0x070, 0);
        assert_eq!(read(&mut t, 0x070), 0);
        setup(&mut t);
        write(&mut t, 0x050, 0);
        assert_eq!(calls.load(Ordering::Relaxed), 2);
    }
}
