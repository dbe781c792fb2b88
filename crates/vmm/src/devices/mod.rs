//! Emulated devices. Legacy ones sit on the port bus; virtio devices on the MMIO bus
//! behind the virtio-mmio transport.

pub mod backend;
pub mod legacy;
pub mod serial;
pub mod virtio;

use vmm_sys_util::eventfd::EventFd;

/// An interrupt line: an eventfd registered with KVM as an irqfd (or, without an
/// irqchip, an eventfd nobody listens to, so triggering it is a no-op for the guest).
#[derive(Debug)]
pub struct IrqLine {
    pub gsi: u32,
    pub evt: EventFd,
}

impl IrqLine {
    pub fn new(gsi: u32) -> std::io::Result<Self> {
        Ok(IrqLine {
            gsi,
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    pub fn trigger(&self) -> std::io::Result<()> {
        self.evt.write(1)
    }
}

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        IrqLine::trigger(self)
    }
}
