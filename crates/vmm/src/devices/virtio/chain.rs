//! Descriptor chains as the devices see them: walked once, checked against the queue, and
//! then read and written in pieces the caller sizes, never gathered into one buffer.
//!
//! The guest writes the descriptor table and may change it while the device works, so a
//! chain is read exactly once ([`DescChain::walk`]) into a list of at most queue-size
//! descriptors; everything afterwards uses that copy. Lengths are summed with checked
//! arithmetic and every buffer access goes through vm-memory's bounds checks.
//!
//! Two kinds of bad chains, handled differently (virtio 1.2 sections 2.1.2 and 2.7.5.2):
//! - A broken *queue* — a head or `next` index beyond the queue, a chain longer than the
//!   queue (which includes every loop), an indirect descriptor (`VIRTIO_F_INDIRECT_DESC`
//!   is never offered), a descriptor table outside guest memory, more than 2^32 bytes in
//!   one chain, or an available index more than a queue size ahead — is a driver bug
//!   the device cannot step over: [`QueueError`]; the transport sets DEVICE_NEEDS_RESET
//!   and stops using the device's queues until the driver resets it.
//! - A well-formed chain whose *request* is bad (a buffer outside guest memory, a length
//!   beyond the device's limits) is answered through the used ring by the device: an
//!   error status where the device has one (virtio-blk), otherwise used length 0.

use vm_memory::{Address, Bytes, GuestAddress, GuestMemory};

use crate::memory::GuestMem;

/// Size of one split-ring descriptor in the table.
const DESC_SIZE: u64 = 16;
const F_NEXT: u16 = 1;
const F_WRITE: u16 = 2;
const F_INDIRECT: u16 = 4;

/// Why a queue cannot be used any more (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("descriptor index {index} is beyond the queue size {size}")]
    IndexOutOfRange { index: u16, size: u16 },
    #[error("chain from head {head} is longer than the queue size {size} (or loops)")]
    TooLong { head: u16, size: u16 },
    #[error("chain from head {head} uses an indirect descriptor, which was not negotiated")]
    Indirect { head: u16 },
    #[error("descriptor table entry at {addr:#x} is not in guest memory")]
    Table { addr: u64 },
    #[error("chain from head {head} holds more than 2^32 bytes")]
    TooManyBytes { head: u16 },
    #[error("available ring is unreadable or its index is more than the queue size ahead")]
    AvailRing,
    #[error("used ring is not writable")]
    UsedRing,
}

/// A request a device refuses without breaking the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("buffer {addr:#x}+{len:#x} is not in guest memory")]
    OutsideMemory { addr: u64, len: u32 },
    #[error("{what} is {len} bytes, the device takes at most {max}")]
    TooLarge {
        what: &'static str,
        len: u64,
        max: u64,
    },
    #[error("{0}")]
    Malformed(&'static str),
}

/// One descriptor as read from the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub write: bool,
}

/// A chain read once from the descriptor table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescChain {
    head: u16,
    descs: Vec<Desc>,
    readable: u64,
    writable: u64,
}

impl DescChain {
    /// Reads the chain starting at `head` from the table at `table` of a queue of `size`
    /// entries. At most `size` descriptors are read, so memory and time are bounded by
    /// the queue whatever the table holds.
    pub fn walk(mem: &GuestMem, table: u64, size: u16, head: u16) -> Result<Self, QueueError> {
        let mut descs = Vec::new();
        let (mut readable, mut writable) = (0u64, 0u64);
        let mut index = head;
        loop {
            if index >= size {
                return Err(QueueError::IndexOutOfRange { index, size });
            }
            if descs.len() >= usize::from(size) {
                return Err(QueueError::TooLong { head, size });
            }
            // Cannot overflow: index < 2^16, so the offset is below 2^20.
            let addr = table
                .checked_add(u64::from(index) * DESC_SIZE)
                .ok_or(QueueError::Table { addr: table })?;
            let raw: [u8; 16] = mem
                .read_obj(GuestAddress(addr))
                .map_err(|_| QueueError::Table { addr })?;
            let d_addr = u64::from_le_bytes([
                raw[0], raw[1], raw[2], raw[3], raw[4], raw[5], raw[6], raw[7],
            ]);
            let d_len = u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]);
            let flags = u16::from_le_bytes([raw[12], raw[13]]);
            let next = u16::from_le_bytes([raw[14], raw[15]]);
            if flags & F_INDIRECT != 0 {
                return Err(QueueError::Indirect { head });
            }
            let write = flags & F_WRITE != 0;
            let total = if write { &mut writable } else { &mut readable };
            *total += u64::from(d_len);
            if readable + writable > u64::from(u32::MAX) {
                return Err(QueueError::TooManyBytes { head });
            }
            descs.push(Desc {
                addr: d_addr,
                len: d_len,
                write,
            });
            if flags & F_NEXT == 0 {
                break;
            }
            index = next;
        }
        Ok(DescChain {
            head,
            descs,
            readable,
            writable,
        })
    }

    pub fn head(&self) -> u16 {
        self.head
    }

    pub fn descs(&self) -> &[Desc] {
        &self.descs
    }

    /// Bytes in the device-readable descriptors.
    pub fn readable_len(&self) -> u64 {
        self.readable
    }

    /// Bytes in the device-writable descriptors.
    pub fn writable_len(&self) -> u64 {
        self.writable
    }

    /// Every buffer lies inside guest memory (checked before a device acts, so a request
    /// is refused whole rather than half done).
    pub fn check_memory(&self, mem: &GuestMem) -> Result<(), RequestError> {
        for d in &self.descs {
            if !in_memory(mem, d.addr, d.len) {
                return Err(RequestError::OutsideMemory {
                    addr: d.addr,
                    len: d.len,
                });
            }
        }
        Ok(())
    }

    /// Copies readable bytes from `offset` (counted over the readable descriptors only)
    /// into `buf`; returns how many were copied (short at the end of the chain).
    pub fn read_at(
        &self,
        mem: &GuestMem,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, RequestError> {
        let mut done = 0;
        for (addr, len) in self.pieces(false, offset, buf.len()) {
            let addr = addr.ok_or_else(|| outside(u64::MAX, len))?;
            let dst = &mut buf[done..done + len];
            mem.read_slice(dst, GuestAddress(addr))
                .map_err(|_| outside(addr, len))?;
            done += len;
        }
        Ok(done)
    }

    /// Copies `data` into the writable bytes from `offset` (counted over the writable
    /// descriptors only); returns how many were copied (short at the end of the chain).
    pub fn write_at(
        &self,
        mem: &GuestMem,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, RequestError> {
        let mut done = 0;
        for (addr, len) in self.pieces(true, offset, data.len()) {
            let addr = addr.ok_or_else(|| outside(u64::MAX, len))?;
            mem.write_slice(&data[done..done + len], GuestAddress(addr))
                .map_err(|_| outside(addr, len))?;
            done += len;
        }
        Ok(done)
    }

    /// Guest ranges (address, length) covering `want` bytes from `offset` of one direction;
    /// the address is None where it would pass 2^64.
    fn pieces(
        &self,
        write: bool,
        offset: u64,
        want: usize,
    ) -> impl Iterator<Item = (Option<u64>, usize)> + '_ {
        let mut skip = offset;
        let mut left = want;
        self.descs
            .iter()
            .filter(move |d| d.write == write)
            .filter_map(move |d| {
                let len = u64::from(d.len);
                if skip >= len {
                    skip -= len;
                    return None;
                }
                if left == 0 {
                    return None;
                }
                let start = skip;
                skip = 0;
                // Fits: at most u32::MAX and at most `left`.
                let n = usize::try_from(len - start).unwrap_or(usize::MAX).min(left);
                left -= n;
                Some((d.addr.checked_add(start), n))
            })
    }
}

fn outside(addr: u64, len: usize) -> RequestError {
    RequestError::OutsideMemory {
        addr,
        len: u32::try_from(len).unwrap_or(u32::MAX),
    }
}

/// `[addr, addr + len)` is guest RAM (possibly spanning adjacent regions).
fn in_memory(mem: &GuestMem, addr: u64, len: u32) -> bool {
    if len == 0 {
        return true;
    }
    GuestAddress(addr).checked_add(u64::from(len) - 1).is_some()
        && mem.check_range(
            GuestAddress(addr),
            len as usize,
            vm_memory::Permissions::Read,
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{GuestRam, Region};

    fn ram() -> GuestRam {
        GuestRam::new(
            &[Region {
                start: 0,
                size: 1 << 20,
            }],
            false,
        )
        .unwrap()
    }

    fn put(mem: &GuestMem, i: u64, addr: u64, len: u32, flags: u16, next: u16) {
        let mut raw = [0u8; 16];
        raw[..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(i * 16)).unwrap();
    }

    #[test]
    fn loops_long_chains_bad_indices_and_indirect_break_the_queue() {
        let ram = ram();
        let mem = ram.memory();
        put(mem, 0, 0x1000, 8, F_NEXT, 1);
        put(mem, 1, 0x2000, 8, F_NEXT, 0);
        assert_eq!(
            DescChain::walk(mem, 0, 4, 0),
            Err(QueueError::TooLong { head: 0, size: 4 })
        );
        put(mem, 1, 0x2000, 8, F_NEXT, 9);
        assert_eq!(
            DescChain::walk(mem, 0, 4, 0),
            Err(QueueError::IndexOutOfRange { index: 9, size: 4 })
        );
        assert_eq!(
            DescChain::walk(mem, 0, 4, 4),
            Err(QueueError::IndexOutOfRange { index: 4, size: 4 })
        );
        put(mem, 1, 0x2000, 16, F_INDIRECT, 0);
        assert_eq!(
            DescChain::walk(mem, 0, 4, 0),
            Err(QueueError::Indirect { head: 0 })
        );
        put(mem, 0, 0x1000, u32::MAX, F_NEXT, 1);
        put(mem, 1, 0x2000, 1, F_WRITE, 0);
        assert_eq!(
            DescChain::walk(mem, 0, 4, 0),
            Err(QueueError::TooManyBytes { head: 0 })
        );
        assert!(matches!(
            DescChain::walk(mem, 1 << 40, 4, 0),
            Err(QueueError::Table { .. })
        ));
    }

    #[test]
    fn reads_and_writes_cross_descriptors_by_direction() {
        let ram = ram();
        let mem = ram.memory();
        put(mem, 0, 0x1000, 3, F_NEXT, 1);
        put(mem, 1, 0x3000, 2, F_NEXT | F_WRITE, 2);
        put(mem, 2, 0x2000, 4, F_NEXT, 3);
        put(mem, 3, 0x4000, 5, F_WRITE, 0);
        mem.write_slice(b"abc", GuestAddress(0x1000)).unwrap();
        mem.write_slice(b"defg", GuestAddress(0x2000)).unwrap();
        let c = DescChain::walk(mem, 0, 4, 0).unwrap();
        assert_eq!((c.readable_len(), c.writable_len()), (7, 7));
        c.check_memory(mem).unwrap();
        let mut buf = [0u8; 16];
        assert_eq!(c.read_at(mem, 1, &mut buf).unwrap(), 6);
        assert_eq!(&buf[..6], b"bcdefg");
        assert_eq!(c.write_at(mem, 1, b"WXYZ!").unwrap(), 5);
        assert_eq!(c.write_at(mem, 7, b"x").unwrap(), 0);
        let mut out = [0u8; 5];
        mem.read_slice(&mut out, GuestAddress(0x4000)).unwrap();
        assert_eq!(&out, b"XYZ!\0");
        mem.read_slice(&mut out[..2], GuestAddress(0x3000)).unwrap();
        assert_eq!(&out[..2], b"\0W");
    }

    #[test]
    fn buffers_outside_memory_are_a_request_error() {
        let ram = ram();
        let mem = ram.memory();
        put(mem, 0, (1 << 20) - 4, 8, 0, 0);
        let c = DescChain::walk(mem, 0, 4, 0).unwrap();
        assert!(matches!(
            c.check_memory(mem),
            Err(RequestError::OutsideMemory { .. })
        ));
        put(mem, 0, u64::MAX - 2, 8, 0, 0);
        let c = DescChain::walk(mem, 0, 4, 0).unwrap();
        assert!(c.check_memory(mem).is_err());
        let mut buf = [0u8; 8];
        assert!(c.read_at(mem, 0, &mut buf).is_err());
        // An offset past 2^64 does not wrap around to low guest memory (found by
        // fuzz_blk_requests: a status byte written over the descriptor table).
        put(mem, 0, u64::MAX - 30, 44, F_WRITE, 0);
        let c = DescChain::walk(mem, 0, 4, 0).unwrap();
        assert!(c.write_at(mem, 43, &[1]).is_err());
        let mut low = [0u8; 16];
        mem.read_slice(&mut low, GuestAddress(0)).unwrap();
        assert_eq!(
            u16::from_le_bytes([low[12], low[13]]),
            F_WRITE,
            "table intact"
        );
        put(mem, 0, u64::MAX - 30, 44, 0, 0);
        let c = DescChain::walk(mem, 0, 4, 0).unwrap();
        assert!(c.read_at(mem, 40, &mut buf).is_err());
    }
}
