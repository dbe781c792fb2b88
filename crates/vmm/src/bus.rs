//! Port-I/O and MMIO buses: address ranges mapped to devices, fixed once the VM is built.

use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};

/// A device reachable by port I/O or MMIO. `offset` is relative to the device's base.
pub trait BusDevice: Send {
    fn read(&mut self, offset: u64, data: &mut [u8]);
    fn write(&mut self, offset: u64, data: &[u8]);
}

struct Entry {
    base: u64,
    len: u64,
    name: String,
    dev: Arc<Mutex<dyn BusDevice>>,
}

/// One address space (ports or MMIO). Lookups return the entry's index, used as the
/// device key in exit statistics.
#[derive(Default)]
pub struct Bus {
    entries: Vec<Entry>,
}

impl Bus {
    pub fn insert(
        &mut self,
        name: &str,
        base: u64,
        len: u64,
        dev: Arc<Mutex<dyn BusDevice>>,
    ) -> Result<()> {
        let overlap = |e: &Entry| base < e.base + e.len && e.base < base.saturating_add(len);
        if len == 0 || base.checked_add(len).is_none() {
            return Err(Error::BusOverlap {
                name: name.into(),
                base,
                len,
                other: "the address space end".into(),
            });
        }
        if let Some(e) = self.entries.iter().find(|e| overlap(e)) {
            return Err(Error::BusOverlap {
                name: name.into(),
                base,
                len,
                other: e.name.clone(),
            });
        }
        self.entries.push(Entry {
            base,
            len,
            name: name.into(),
            dev,
        });
        Ok(())
    }

    fn find(&self, addr: u64) -> Option<(usize, u64)> {
        self.entries
            .iter()
            .position(|e| addr >= e.base && addr - e.base < e.len)
            .map(|i| (i, addr - self.entries[i].base))
    }

    /// Reads from the device at `addr`; unclaimed addresses read as all ones.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> Option<usize> {
        match self.find(addr) {
            Some((i, off)) => {
                lock(&self.entries[i].dev).read(off, data);
                Some(i)
            }
            None => {
                data.fill(0xff);
                None
            }
        }
    }

    /// Writes to the device at `addr`; writes to unclaimed addresses are dropped.
    pub fn write(&self, addr: u64, data: &[u8]) -> Option<usize> {
        let (i, off) = self.find(addr)?;
        lock(&self.entries[i].dev).write(off, data);
        Some(i)
    }

    pub fn name(&self, index: usize) -> &str {
        &self.entries[index].name
    }
}

/// Locks a device, tolerating poison: a panicked vCPU thread must not wedge the others.
pub(crate) fn lock<T: ?Sized>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
