//! virtio-blk over a raw image file: read, write (unless read-only), flush, get-id.
//!
//! Limits, offered in the config space (`VIRTIO_BLK_F_SEG_MAX`, `VIRTIO_BLK_F_SIZE_MAX`)
//! and enforced before any I/O: at most [`SEG_MAX`] data descriptors of at most
//! [`SIZE_MAX`] bytes each, so at most [`MAX_DATA`] bytes per request. A request beyond
//! them, with a buffer outside guest memory, or with a malformed header is answered
//! `VIRTIO_BLK_S_IOERR` (unknown types `VIRTIO_BLK_S_UNSUPP`) and nothing is read or
//! written; a chain without a writable status byte is returned with used length 0. Data
//! moves between guest memory and the file through one [`CHUNK`]-byte buffer owned by
//! the device, so a request costs no allocation however large it is.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::memory::GuestMem;

use virtio_queue::Queue;

use super::{
    drain_queue, read_config_bytes, DescChain, QueueResult, RequestError, VirtioDevice, TYPE_BLOCK,
    VIRTIO_F_VERSION_1,
};
use crate::error::{Error, Result};

const SECTOR: u64 = 512;
const F_SIZE_MAX: u64 = 1 << 1;
const F_SEG_MAX: u64 = 1 << 2;
const F_RO: u64 = 1 << 5;
const F_FLUSH: u64 = 1 << 9;

const T_IN: u32 = 0;
const T_OUT: u32 = 1;
const T_FLUSH: u32 = 4;
const T_GET_ID: u32 = 8;

const S_OK: u8 = 0;
const S_IOERR: u8 = 1;
const S_UNSUPP: u8 = 2;

/// Length of the serial string a GET_ID request returns.
const ID_LEN: usize = 20;
/// The request header: le32 type, le32 reserved, le64 sector.
const HDR_LEN: u64 = 16;

/// Entries in the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Data descriptors per request: the queue less the header and status descriptors.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Bytes per data descriptor.
pub const SIZE_MAX: u32 = 1 << 20;
/// Data bytes per request.
pub const MAX_DATA: u64 = SEG_MAX as u64 * SIZE_MAX as u64;
/// Bytes moved between guest memory and the file per step.
pub const CHUNK: usize = 256 * 1024;

pub struct Block {
    file: File,
    read_only: bool,
    /// Capacity in bytes, a whole number of sectors (a trailing partial sector is hidden).
    capacity: u64,
    id: [u8; ID_LEN],
    /// The one buffer requests move through (see the module docs).
    bounce: Vec<u8>,
    refused: u64,
}

impl Block {
    pub fn open(path: &Path, read_only: bool, index: usize) -> Result<Self> {
        let disk_err = |reason: String| Error::Disk {
            path: path.to_path_buf(),
            reason,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(|e| disk_err(format!("open: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| disk_err(format!("stat: {e}")))?;
        if !meta.is_file() {
            return Err(disk_err("not a regular file".into()));
        }
        let capacity = meta.len() / SECTOR * SECTOR;
        if capacity == 0 {
            return Err(disk_err("smaller than one 512-byte sector".into()));
        }
        let mut id = [0u8; ID_LEN];
        let name = format!("berth-disk{index}");
        id[..name.len()].copy_from_slice(name.as_bytes());
        Ok(Block {
            file,
            read_only,
            capacity,
            id,
            bounce: vec![0u8; CHUNK],
            refused: 0,
        })
    }

    /// Executes the request in `chain` (checked by [`Block::check`]); returns the status
    /// and the data bytes written to the guest.
    fn execute(&mut self, chain: &DescChain, mem: &GuestMem, kind: u32, sector: u64) -> (u8, u64) {
        // The status byte is the last writable byte; data for the guest precedes it.
        let data_in = chain.writable_len() - 1;
        let data_out = chain.readable_len() - HDR_LEN;
        let in_range = |len: u64| {
            sector
                .checked_mul(SECTOR)
                .and_then(|o| o.checked_add(len))
                .is_some_and(|end| end <= self.capacity)
        };
        let head = chain.head();
        let ok = |r: std::result::Result<(), IoError>, n: u64| match r {
            Ok(()) => (S_OK, n),
            Err(e) => {
                tracing::debug!("virtio-blk: request {head}: {e}");
                (S_IOERR, 0)
            }
        };
        match kind {
            T_IN if in_range(data_in) => ok(
                self.read_disk(chain, mem, sector * SECTOR, data_in),
                data_in,
            ),
            T_OUT if !self.read_only && in_range(data_out) => {
                ok(self.write_disk(chain, mem, sector * SECTOR, data_out), 0)
            }
            T_IN | T_OUT => (S_IOERR, 0),
            T_FLUSH => ok(self.file.sync_all().map_err(IoError::Disk), 0),
            T_GET_ID => {
                let n = data_in.min(ID_LEN as u64) as usize;
                ok(write_exact(chain, mem, 0, &self.id[..n]), n as u64)
            }
            _ => (S_UNSUPP, 0),
        }
    }

    /// File bytes at `pos` into the chain's writable data, [`CHUNK`] bytes at a time.
    fn read_disk(
        &mut self,
        chain: &DescChain,
        mem: &GuestMem,
        pos: u64,
        len: u64,
    ) -> std::result::Result<(), IoError> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let buf = &mut self.bounce[..n];
            self.file
                .read_exact_at(buf, pos + done)
                .map_err(IoError::Disk)?;
            write_exact(chain, mem, done, buf)?;
            done += n as u64;
        }
        Ok(())
    }

    /// The chain's readable data (after the header) to the file at `pos`, by chunks.
    fn write_disk(
        &mut self,
        chain: &DescChain,
        mem: &GuestMem,
        pos: u64,
        len: u64,
    ) -> std::result::Result<(), IoError> {
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            let buf = &mut self.bounce[..n];
            if chain.read_at(mem, HDR_LEN + done, buf)? != n {
                return Err(IoError::Short);
            }
            self.file
                .write_all_at(buf, pos + done)
                .map_err(IoError::Disk)?;
            done += n as u64;
        }
        Ok(())
    }

    /// The device's limits (module docs): descriptor count and sizes, data bytes, memory.
    fn check(chain: &DescChain, mem: &GuestMem) -> std::result::Result<(), RequestError> {
        if chain.readable_len() < HDR_LEN || chain.writable_len() == 0 {
            return Err(RequestError::Malformed(
                "no request header or no status byte",
            ));
        }
        let descs = chain.descs().len() as u64;
        if descs > u64::from(SEG_MAX) + 2 {
            return Err(RequestError::TooLarge {
                what: "descriptor count",
                len: descs,
                max: u64::from(SEG_MAX) + 2,
            });
        }
        // A descriptor may carry the header or the status byte besides its data.
        let max_desc = u64::from(SIZE_MAX) + HDR_LEN + 1;
        if let Some(d) = chain.descs().iter().find(|d| u64::from(d.len) > max_desc) {
            return Err(RequestError::TooLarge {
                what: "descriptor",
                len: u64::from(d.len),
                max: max_desc,
            });
        }
        let data = (chain.readable_len() - HDR_LEN) + (chain.writable_len() - 1);
        if data > MAX_DATA {
            return Err(RequestError::TooLarge {
                what: "request data",
                len: data,
                max: MAX_DATA,
            });
        }
        chain.check_memory(mem)
    }

    fn handle(&mut self, chain: &DescChain, mem: &GuestMem) -> u32 {
        let Some(status_at) = chain.writable_len().checked_sub(1) else {
            self.refused += 1;
            tracing::debug!("virtio-blk: chain {} has no status byte", chain.head());
            return 0;
        };
        let (status, written) = match Self::check(chain, mem) {
            Ok(()) => {
                let mut h = [0u8; HDR_LEN as usize];
                match chain.read_at(mem, 0, &mut h) {
                    Ok(16) => {
                        let kind = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                        let sector = u64::from_le_bytes([
                            h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15],
                        ]);
                        self.execute(chain, mem, kind, sector)
                    }
                    _ => (S_IOERR, 0),
                }
            }
            Err(e) => {
                self.refused += 1;
                tracing::debug!("virtio-blk: request {} refused: {e}", chain.head());
                (S_IOERR, 0)
            }
        };
        if chain
            .write_at(mem, status_at, &[status])
            .is_ok_and(|n| n == 1)
        {
            // written <= MAX_DATA < 2^32.
            written as u32 + 1
        } else {
            0
        }
    }
}

/// Why an accepted request failed (answered `VIRTIO_BLK_S_IOERR`).
#[derive(Debug, thiserror::Error)]
enum IoError {
    #[error("disk image: {0}")]
    Disk(std::io::Error),
    #[error(transparent)]
    Guest(#[from] RequestError),
    #[error("the chain ended before the request's data")]
    Short,
}

/// Writes all of `data` at `offset` of the chain's writable bytes.
fn write_exact(
    chain: &DescChain,
    mem: &GuestMem,
    offset: u64,
    data: &[u8],
) -> std::result::Result<(), IoError> {
    match chain.write_at(mem, offset, data)? {
        n if n == data.len() => Ok(()),
        _ => Err(IoError::Short),
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
            | F_SIZE_MAX
            | F_SEG_MAX
            | F_FLUSH
            | if self.read_only { F_RO } else { 0 }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config: le64 capacity (sectors), le32 size_max, le32 seg_max.
        let mut cfg = [0u8; 16];
        cfg[..8].copy_from_slice(&(self.capacity / SECTOR).to_le_bytes());
        cfg[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        cfg[12..].copy_from_slice(&SEG_MAX.to_le_bytes());
        read_config_bytes(&cfg, offset, data);
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
