//! virtio-net over an existing (or newly created) tap device. The tap speaks virtio's
//! own 12-byte header (IFF_VNET_HDR with TUNSETVNETHDRSZ 12), so frames pass through
//! unchanged; no offloads are offered or enabled.
//!
//! Limits: a frame is at most [`MAX_FRAME`] bytes with its virtio-net header, in both
//! directions. A transmit chain longer than that (or with no frame after the header, or a
//! buffer outside guest memory) is returned to the guest unsent with used length 0 and
//! counted ([`VirtioDevice::refused`]); a received frame that does not fit the guest's
//! buffer is dropped and the buffer returned empty. Frames pass through two buffers of
//! `MAX_FRAME` bytes the device owns, one per direction; at most one received frame waits
//! for a guest buffer, the rest stay in the tap.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;

use crate::memory::GuestMem;
use virtio_queue::{Queue, QueueT};
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::{
    add_used, drain_queue, next_chain, read_config_bytes, DescChain, QueueResult, VirtioDevice,
    TYPE_NET, VIRTIO_F_VERSION_1,
};
use crate::error::{Error, Result};

const RXQ: usize = 0;
const TXQ: usize = 1;
const F_MAC: u64 = 1 << 5;
/// struct virtio_net_hdr_v1: 10 bytes of offload fields, then le16 num_buffers.
const VNET_HDR_LEN: usize = 12;
/// Largest frame with its header, either way (no offloads: 65535-byte MTU frames plus
/// the Ethernet header and a VLAN tag fit).
pub const MAX_FRAME: usize = VNET_HDR_LEN + 65_550;
const TAP_TOKEN: u64 = 0;

pub struct Net {
    tap: File,
    mac: [u8; 6],
    epoll: Arc<Epoll>,
    /// Frames to and from the tap pass through these.
    tx_buf: Vec<u8>,
    rx_buf: Vec<u8>,
    /// Length of the frame in `rx_buf` read while the guest had no rx buffer.
    pending: Option<usize>,
    refused: u64,
}

impl Net {
    /// Attaches to tap `name` (created, non-persistent, if it does not exist).
    pub fn open(name: &str) -> Result<Self> {
        let err = |reason: String| Error::Tap {
            name: name.to_string(),
            reason,
        };
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains(['/', '\0']) {
            return Err(err(format!(
                "interface names are 1..{} bytes without '/'",
                libc::IFNAMSIZ - 1
            )));
        }
        let tap = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open("/dev/net/tun")
            .map_err(|e| err(format!("open /dev/net/tun: {e}")))?;
        // struct ifreq: name[IFNAMSIZ], then a union whose first member is short flags.
        let mut ifr = [0u8; 40];
        ifr[..name.len()].copy_from_slice(name.as_bytes());
        let flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
        ifr[libc::IFNAMSIZ..libc::IFNAMSIZ + 2].copy_from_slice(&flags.to_ne_bytes());
        // SAFETY: TUNSETIFF reads and writes a 40-byte struct ifreq, which `ifr` is.
        if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETIFF, ifr.as_mut_ptr()) } < 0 {
            let e = std::io::Error::last_os_error();
            return Err(err(match e.raw_os_error() {
                Some(libc::EBUSY) => "busy: another process has it attached".into(),
                Some(libc::EINVAL) => {
                    "exists and is not a tap with a virtio header (a tun device?)".into()
                }
                _ => format!("TUNSETIFF: {e}"),
            }));
        }
        let hdr_len = VNET_HDR_LEN as libc::c_int;
        // SAFETY: TUNSETVNETHDRSZ reads one int from the pointer.
        if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETVNETHDRSZ, &hdr_len) } < 0 {
            return Err(err(format!(
                "TUNSETVNETHDRSZ: {}",
                std::io::Error::last_os_error()
            )));
        }
        // SAFETY: TUNSETOFFLOAD takes its flags (none) by value.
        if unsafe { libc::ioctl(tap.as_raw_fd(), libc::TUNSETOFFLOAD, 0 as libc::c_ulong) } < 0 {
            return Err(err(format!(
                "TUNSETOFFLOAD: {}",
                std::io::Error::last_os_error()
            )));
        }
        let epoll = Epoll::new().map_err(|e| err(format!("epoll: {e}")))?;
        epoll
            .ctl(
                ControlOperation::Add,
                tap.as_raw_fd(),
                EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, TAP_TOKEN),
            )
            .map_err(|e| err(format!("epoll_ctl: {e}")))?;
        // A locally administered unicast address: 06:00 + four random bytes.
        let mut mac = [0x06, 0, 0, 0, 0, 0];
        // SAFETY: writes at most 4 bytes into the tail of `mac`.
        unsafe { libc::getrandom(mac[2..].as_mut_ptr().cast(), 4, 0) };
        Ok(Net {
            tap,
            mac,
            epoll: Arc::new(epoll),
            tx_buf: vec![0u8; MAX_FRAME],
            rx_buf: vec![0u8; MAX_FRAME],
            pending: None,
            refused: 0,
        })
    }

    pub fn epoll(&self) -> Arc<Epoll> {
        self.epoll.clone()
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The length of the next frame from the tap, now in `rx_buf`.
    fn read_frame(&mut self) -> Option<usize> {
        if let Some(n) = self.pending.take() {
            return Some(n);
        }
        loop {
            match self.tap.read(&mut self.rx_buf) {
                Ok(n) if n >= VNET_HDR_LEN => {
                    // The tap fills the 10-byte header; num_buffers is ours to set.
                    self.rx_buf[10..12].copy_from_slice(&1u16.to_le_bytes());
                    return Some(n);
                }
                Ok(_) => return None,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Sends the frame in a transmit chain to the tap, within the limits.
    fn transmit(&mut self, chain: &DescChain, mem: &GuestMem) {
        let len = chain.readable_len();
        let refuse = if len > MAX_FRAME as u64 {
            Some("longer than the largest frame")
        } else if len <= VNET_HDR_LEN as u64 {
            Some("no frame after the header")
        } else if chain.check_memory(mem).is_err() {
            Some("buffer outside guest memory")
        } else {
            None
        };
        if let Some(why) = refuse {
            self.refused += 1;
            tracing::debug!(
                "virtio-net: tx chain {} ({len} bytes) dropped: {why}",
                chain.head()
            );
            return;
        }
        let frame = &mut self.tx_buf[..len as usize];
        if chain.read_at(mem, 0, frame).is_ok_and(|n| n == frame.len()) {
            // A full tap queue drops the frame, as a congested link would.
            let _ = self.tap.write(frame);
        }
    }
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1 | F_MAC
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.mac, offset, data);
    }
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> QueueResult {
        // rx notifications mean "new buffers": `poll`, called next, fills them.
        if usize::from(queue) != TXQ {
            return Ok(false);
        }
        let Some(txq) = queues.get_mut(TXQ) else {
            return Ok(false);
        };
        drain_queue(txq, mem, |chain| {
            self.transmit(chain, mem);
            0
        })
    }
    fn poll(&mut self, queues: &mut [Queue], mem: &GuestMem) -> QueueResult {
        let Some(rxq) = queues.get_mut(RXQ).filter(|q| q.ready()) else {
            return Ok(false);
        };
        let mut used = false;
        while let Some(n) = self.read_frame() {
            let Some(chain) = next_chain(rxq, mem)? else {
                self.pending = Some(n);
                break;
            };
            let frame = &self.rx_buf[..n];
            let fits = chain.writable_len() >= n as u64 && chain.check_memory(mem).is_ok();
            // Too small for the frame: drop it, hand the buffer back empty.
            let len = match fits {
                true => chain.write_at(mem, 0, frame).unwrap_or(0),
                false => 0,
            };
            // At most MAX_FRAME bytes.
            add_used(rxq, mem, chain.head(), len as u32)?;
            used = true;
        }
        Ok(used)
    }
    fn refused(&self) -> u64 {
        self.refused
    }
}
