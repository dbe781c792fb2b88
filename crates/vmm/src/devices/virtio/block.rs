//! virtio-blk over a raw image file: read, write (unless read-only), flush, get-id.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::memory::GuestMem;

use virtio_queue::Queue;

use super::{drain_queue, read_config_bytes, Chain, VirtioDevice, TYPE_BLOCK, VIRTIO_F_VERSION_1};
use crate::error::{Error, Result};

const SECTOR: u64 = 512;
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

pub struct Block {
    file: File,
    read_only: bool,
    /// Capacity in bytes, a whole number of sectors (a trailing partial sector is hidden).
    capacity: u64,
    id: [u8; ID_LEN],
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
        })
    }

    /// Executes one request; returns (status, bytes of data written to the guest).
    fn execute(
        &mut self,
        kind: u32,
        sector: u64,
        r: &mut impl Read,
        data_len: usize,
        w: &mut impl Write,
    ) -> (u8, usize) {
        let in_range = |len: u64| {
            sector
                .checked_mul(SECTOR)
                .and_then(|o| o.checked_add(len))
                .is_some_and(|end| end <= self.capacity)
        };
        match kind {
            T_IN => {
                if !in_range(data_len as u64) {
                    return (S_IOERR, 0);
                }
                let mut buf = vec![0u8; data_len];
                match self
                    .file
                    .read_exact_at(&mut buf, sector * SECTOR)
                    .and_then(|_| w.write_all(&buf))
                {
                    Ok(()) => (S_OK, data_len),
                    Err(_) => (S_IOERR, 0),
                }
            }
            T_OUT => {
                let mut buf = Vec::new();
                if self.read_only || r.read_to_end(&mut buf).is_err() || !in_range(buf.len() as u64)
                {
                    return (S_IOERR, 0);
                }
                match self.file.write_all_at(&buf, sector * SECTOR) {
                    Ok(()) => (S_OK, 0),
                    Err(_) => (S_IOERR, 0),
                }
            }
            T_FLUSH => match self.file.sync_all() {
                Ok(()) => (S_OK, 0),
                Err(_) => (S_IOERR, 0),
            },
            T_GET_ID => {
                let n = data_len.min(ID_LEN);
                match w.write_all(&self.id[..n]) {
                    Ok(()) => (S_OK, n),
                    Err(_) => (S_IOERR, 0),
                }
            }
            _ => (S_UNSUPP, 0),
        }
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_FLUSH | if self.read_only { F_RO } else { 0 }
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        // struct virtio_blk_config starts with `le64 capacity` in sectors.
        read_config_bytes(&(self.capacity / SECTOR).to_le_bytes(), offset, data);
    }
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> bool {
        match queues.get_mut(usize::from(queue)) {
            Some(q) => drain_queue(q, mem, |chain| self.handle(chain, mem)),
            None => false,
        }
    }
}

impl Block {
    fn handle(&mut self, chain: Chain<'_>, mem: &GuestMem) -> u32 {
        let (Ok(mut r), Ok(mut w)) = (chain.clone().reader(mem), chain.writer(mem)) else {
            return 0;
        };
        // Layout: readable header {le32 type, le32 reserved, le64 sector}, data, then one
        // writable status byte at the very end.
        let avail = w.available_bytes();
        let Some(data_len) = avail.checked_sub(1) else {
            return 0;
        };
        let Ok(mut status_w) = w.split_at(data_len) else {
            return 0;
        };
        let (status, written) = match r.read_obj::<[u8; 16]>() {
            Ok(h) => {
                let kind = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
                let sector =
                    u64::from_le_bytes([h[8], h[9], h[10], h[11], h[12], h[13], h[14], h[15]]);
                self.execute(kind, sector, &mut r, data_len, &mut w)
            }
            Err(_) => (S_IOERR, 0),
        };
        match status_w.write_all(&[status]) {
            Ok(()) => written as u32 + 1,
            Err(_) => written as u32,
        }
    }
}
