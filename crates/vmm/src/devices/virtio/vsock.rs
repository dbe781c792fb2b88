//! virtio-vsock with Firecracker's hybrid host side: the guest's AF_VSOCK streams become
//! unix-socket connections on the host.
//!
//! - Host -> guest: a host program connects to the unix socket `uds`, writes
//!   `CONNECT <port>\n`, and once the guest accepts reads `OK <host port>\n`; after that
//!   the stream carries the connection's bytes.
//! - Guest -> host: a guest connecting to CID 2 (the host), port P, is connected to the
//!   unix socket `<uds>_P`, where a host program listens; no handshake line.
//!
//! Only stream sockets. Flow control follows the virtio spec: we never send the guest
//! more than its advertised buffer space (`buf_alloc - (tx_cnt - fwd_cnt)`), and we
//! advertise `BUF_ALLOC` with `fwd_cnt` counting bytes written to the host socket, so the
//! bytes held for a slow host program stay below `BUF_ALLOC` per connection.
//!
//! Limits: a packet from the guest carries at most [`MAX_PKT`] bytes of payload (Linux's
//! `VIRTIO_VSOCK_MAX_PKT_BUF_SIZE`); a longer one, one whose length exceeds its chain,
//! or one with a buffer outside guest memory is dropped, counted, and its connection
//! reset. A guest that sends beyond the credit we gave it (more than `BUF_ALLOC` bytes
//! waiting for the host program) has that connection reset, so at most `BUF_ALLOC` bytes
//! wait per connection toward the host and at most `MAX_PAYLOAD` toward the guest
//! (whatever `buf_alloc` the guest claims). At most [`MAX_CONNS`] connections (and host
//! handshakes) exist at once. Replies without payload are queued once per (connection,
//! op); while [`CONTROL_MAX`] of them wait for rx buffers, transmit chains stay in the
//! ring until the guest takes the replies.
//!
//! All sockets are non-blocking; a backend thread ([`crate::devices::backend::Backend`]) wakes on the epoll set and
//! calls the transport's `service`, which lands in [`VirtioDevice::poll`].

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::memory::GuestMem;
use virtio_queue::{Queue, QueueT};
use vm_memory::ByteValued;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::{
    add_used, next_chain, read_config_bytes, DescChain, QueueError, QueueResult, VirtioDevice,
    TYPE_VSOCK, VIRTIO_F_VERSION_1,
};
use crate::devices::backend::STOP_TOKEN;
use crate::error::{Error, Result};

const HOST_CID: u64 = 2;
const TYPE_STREAM: u16 = 1;
const OP_REQUEST: u16 = 1;
const OP_RESPONSE: u16 = 2;
const OP_RST: u16 = 3;
const OP_SHUTDOWN: u16 = 4;
const OP_RW: u16 = 5;
const OP_CREDIT_UPDATE: u16 = 6;
const OP_CREDIT_REQUEST: u16 = 7;
/// SHUTDOWN flags: no more receiving | no more sending.
const SHUTDOWN_BOTH: u32 = 3;

const TXQ: usize = 1;
const HDR_LEN: u32 = std::mem::size_of::<Header>() as u32;
/// Receive buffer we advertise per connection.
const BUF_ALLOC: u32 = 256 * 1024;
/// Largest payload read from a host socket per packet, and the most held for the guest
/// per connection.
const MAX_PAYLOAD: usize = 64 * 1024;
/// Largest payload accepted from the guest in one packet.
pub const MAX_PKT: u32 = 64 * 1024;
/// Connections (established, awaiting a response, or in the host handshake) at once.
pub const MAX_CONNS: usize = 128;
/// Payload-less replies waiting for rx buffers before transmit processing pauses.
pub const CONTROL_MAX: usize = 512;
/// Host ports handed to host-initiated connections count up from here.
const FIRST_LOCAL_PORT: u32 = 1 << 30;
/// Longest `CONNECT <port>\n` line accepted.
const MAX_HANDSHAKE: usize = 32;
/// Epoll token of the listener; connections use their fd.
const LISTENER_TOKEN: u64 = STOP_TOKEN - 1;

/// struct virtio_vsock_hdr, little-endian like the host (x86_64).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, packed)]
struct Header {
    src_cid: u64,
    dst_cid: u64,
    src_port: u32,
    dst_port: u32,
    len: u32,
    type_: u16,
    op: u16,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
}

// SAFETY: plain integers, packed without padding; every bit pattern is a valid value.
unsafe impl ByteValued for Header {}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Host-initiated, REQUEST sent, waiting for the guest's RESPONSE.
    AwaitingResponse,
    Established,
}

/// Connection key: (host port, guest port).
type Key = (u32, u32);

struct Conn {
    stream: UnixStream,
    state: State,
    peer_buf_alloc: u32,
    peer_fwd_cnt: u32,
    /// Bytes sent to the guest.
    tx_cnt: u32,
    /// Bytes from the guest written to the host socket.
    fwd_cnt: u32,
    /// `fwd_cnt` as last told to the guest.
    fwd_cnt_sent: u32,
    to_host: Vec<u8>,
    to_guest: Vec<u8>,
    host_eof: bool,
    shutdown_sent: bool,
}

impl Conn {
    fn new(stream: UnixStream, state: State, peer: &Header) -> Self {
        Conn {
            stream,
            state,
            peer_buf_alloc: peer.buf_alloc,
            peer_fwd_cnt: peer.fwd_cnt,
            tx_cnt: 0,
            fwd_cnt: 0,
            fwd_cnt_sent: 0,
            to_host: Vec::new(),
            to_guest: Vec::new(),
            host_eof: false,
            shutdown_sent: false,
        }
    }

    /// Bytes the guest can still take.
    fn credit(&self) -> usize {
        self.peer_buf_alloc
            .saturating_sub(self.tx_cnt.wrapping_sub(self.peer_fwd_cnt)) as usize
    }

    /// Writes what the host socket takes; false if the socket is broken.
    fn flush(&mut self) -> bool {
        while !self.to_host.is_empty() {
            match self.stream.write(&self.to_host) {
                Ok(0) => return false,
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
        true
    }

    /// Reads host bytes for the guest, never beyond its credit.
    fn fill_from_host(&mut self) {
        while !self.host_eof
            && self.state == State::Established
            && self.to_guest.len() < self.credit().min(MAX_PAYLOAD)
        {
            let want = self.credit().min(MAX_PAYLOAD) - self.to_guest.len();
            let start = self.to_guest.len();
            self.to_guest.resize(start + want, 0);
            let r = self.stream.read(&mut self.to_guest[start..]);
            self.to_guest.truncate(start + *r.as_ref().unwrap_or(&0));
            match r {
                Ok(0) => self.host_eof = true,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => self.host_eof = true,
            }
        }
    }
}

struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

pub struct Vsock {
    cid: u64,
    uds: PathBuf,
    listener: UnixListener,
    epoll: Arc<Epoll>,
    conns: HashMap<Key, Conn>,
    handshakes: Vec<Handshake>,
    /// Packets without payload for the guest: (key, op, flags).
    control: VecDeque<(Key, u16, u32)>,
    next_port: u32,
    /// Transmit processing paused on a full `control` queue.
    tx_stalled: bool,
    refused: u64,
}

impl Vsock {
    /// Listens on `uds` (which must not exist yet; it is removed on drop).
    pub fn new(cid: u64, uds: &Path) -> Result<Self> {
        let err = |reason: String| Error::Vsock {
            path: uds.to_path_buf(),
            reason,
        };
        if cid <= HOST_CID || cid >= u64::from(u32::MAX) {
            return Err(Error::Config {
                field: "vsock.guest_cid",
                reason: format!("{cid} is not in 3..2^32-1"),
            });
        }
        if uds.exists() {
            return Err(err("already exists; remove it or pick another path".into()));
        }
        let listener = UnixListener::bind(uds).map_err(|e| err(format!("bind: {e}")))?;
        let setup = || -> std::io::Result<Epoll> {
            listener.set_nonblocking(true)?;
            let epoll = Epoll::new()?;
            epoll.ctl(
                ControlOperation::Add,
                listener.as_raw_fd(),
                EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, LISTENER_TOKEN),
            )?;
            Ok(epoll)
        };
        let epoll = setup().map_err(|e| {
            let _ = std::fs::remove_file(uds);
            err(format!("listen: {e}"))
        })?;
        Ok(Vsock {
            cid,
            uds: uds.to_path_buf(),
            listener,
            epoll: Arc::new(epoll),
            conns: HashMap::new(),
            handshakes: Vec::new(),
            control: VecDeque::new(),
            next_port: FIRST_LOCAL_PORT,
            tx_stalled: false,
            refused: 0,
        })
    }

    /// The epoll set the backend thread waits on.
    pub fn epoll(&self) -> Arc<Epoll> {
        self.epoll.clone()
    }

    fn watch(&self, stream: &UnixStream) -> bool {
        let events =
            EventSet::IN | EventSet::OUT | EventSet::READ_HANG_UP | EventSet::EDGE_TRIGGERED;
        stream.set_nonblocking(true).is_ok()
            && self
                .epoll
                .ctl(
                    ControlOperation::Add,
                    stream.as_raw_fd(),
                    EpollEvent::new(events, stream.as_raw_fd() as u64),
                )
                .is_ok()
    }

    fn header(&self, key: Key, op: u16, flags: u32, len: u32) -> Header {
        let fwd_cnt = self.conns.get(&key).map_or(0, |c| c.fwd_cnt);
        Header {
            src_cid: HOST_CID,
            dst_cid: self.cid,
            src_port: key.0,
            dst_port: key.1,
            len,
            type_: TYPE_STREAM,
            op,
            flags,
            buf_alloc: BUF_ALLOC,
            fwd_cnt,
        }
    }

    fn rst(&mut self, key: Key) {
        self.conns.remove(&key);
        self.push_control(key, OP_RST, 0);
    }

    /// Queues a payload-less reply unless the same one already waits.
    fn push_control(&mut self, key: Key, op: u16, flags: u32) {
        if !self.control.iter().any(|&(k, o, _)| k == key && o == op) {
            self.control.push_back((key, op, flags));
        }
    }

    /// Transmit chains, while replies have room (see the module docs).
    fn drain_tx(&mut self, txq: &mut Queue, mem: &GuestMem) -> QueueResult {
        let mut used = false;
        for _ in 0..txq.size() {
            if self.control.len() >= CONTROL_MAX {
                self.tx_stalled = true;
                break;
            }
            let Some(chain) = next_chain(txq, mem)? else {
                break;
            };
            self.handle_packet(&chain, mem);
            add_used(txq, mem, chain.head(), 0)?;
            used = true;
        }
        Ok(used)
    }

    /// One transmit chain: its header, checked against the limits, then the packet.
    fn handle_packet(&mut self, chain: &DescChain, mem: &GuestMem) {
        let mut hdr = Header::default();
        if !chain
            .read_at(mem, 0, hdr.as_mut_slice())
            .is_ok_and(|n| n == HDR_LEN as usize)
        {
            self.refused += 1;
            tracing::debug!("vsock: tx chain {} has no header", chain.head());
            return;
        }
        let len = hdr.len;
        let room = chain.readable_len() - u64::from(HDR_LEN);
        if len > MAX_PKT || u64::from(len) > room || chain.check_memory(mem).is_err() {
            self.refused += 1;
            tracing::debug!(
                "vsock: tx chain {} ({len}-byte payload) refused",
                chain.head()
            );
            let key = (hdr.dst_port, hdr.src_port);
            if self.conns.contains_key(&key) {
                self.rst(key);
            }
            return;
        }
        self.handle_tx(hdr, chain, mem);
    }

    /// One packet from the guest (payload checked by `handle_packet`).
    fn handle_tx(&mut self, hdr: Header, chain: &DescChain, mem: &GuestMem) {
        let (src_cid, dst_cid, type_, op) = (hdr.src_cid, hdr.dst_cid, hdr.type_, hdr.op);
        if src_cid != self.cid || dst_cid != HOST_CID {
            return;
        }
        let key = (hdr.dst_port, hdr.src_port);
        if type_ != TYPE_STREAM {
            self.push_control(key, OP_RST, 0);
            return;
        }
        if let Some(c) = self.conns.get_mut(&key) {
            c.peer_buf_alloc = hdr.buf_alloc;
            c.peer_fwd_cnt = hdr.fwd_cnt;
        }
        match op {
            OP_REQUEST => self.guest_connect(key, &hdr),
            OP_RESPONSE => match self.conns.get_mut(&key) {
                Some(c) if c.state == State::AwaitingResponse => {
                    c.state = State::Established;
                    // Our own line, not guest data: it must not count in fwd_cnt. The
                    // socket is fresh, so a short line cannot block.
                    let ok = format!("OK {}\n", key.0);
                    if c.stream.write_all(ok.as_bytes()).is_err() {
                        self.rst(key);
                    }
                }
                _ => self.rst(key),
            },
            OP_RW => match self.conns.get_mut(&key) {
                Some(c) if c.state == State::Established => {
                    let len = hdr.len as usize;
                    let start = c.to_host.len();
                    if start + len > BUF_ALLOC as usize {
                        // Beyond the credit we gave: the guest ignores flow control.
                        self.refused += 1;
                        self.rst(key);
                        return;
                    }
                    c.to_host.resize(start + len, 0);
                    let read = chain.read_at(mem, u64::from(HDR_LEN), &mut c.to_host[start..]);
                    if !read.is_ok_and(|n| n == len) || !c.flush() {
                        self.rst(key);
                    }
                }
                _ => self.rst(key),
            },
            OP_SHUTDOWN => {
                if let Some(mut c) = self.conns.remove(&key) {
                    c.flush();
                }
                self.push_control(key, OP_RST, 0);
            }
            OP_RST => {
                self.conns.remove(&key);
            }
            OP_CREDIT_REQUEST if self.conns.contains_key(&key) => {
                self.push_control(key, OP_CREDIT_UPDATE, 0)
            }
            OP_CREDIT_UPDATE | OP_CREDIT_REQUEST => {}
            _ => self.rst(key),
        }
    }

    /// The guest connects to host port `key.0`: connect to `<uds>_<port>`.
    fn guest_connect(&mut self, key: Key, hdr: &Header) {
        if self.conns.contains_key(&key) {
            self.rst(key);
            return;
        }
        if self.conns.len() + self.handshakes.len() >= MAX_CONNS {
            self.refused += 1;
            self.push_control(key, OP_RST, 0);
            return;
        }
        let path = format!("{}_{}", self.uds.display(), key.0);
        match UnixStream::connect(&path) {
            Ok(s) if self.watch(&s) => {
                self.conns
                    .insert(key, Conn::new(s, State::Established, hdr));
                self.push_control(key, OP_RESPONSE, 0);
            }
            _ => self.push_control(key, OP_RST, 0),
        }
    }

    /// New host connections and their `CONNECT <port>` lines.
    fn accept_host_connections(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((s, _)) => {
                    // Over the limit the host program sees its connection closed.
                    if self.conns.len() + self.handshakes.len() < MAX_CONNS && self.watch(&s) {
                        self.handshakes.push(Handshake {
                            stream: s,
                            line: Vec::new(),
                        });
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let mut i = 0;
        while i < self.handshakes.len() {
            match read_handshake(&mut self.handshakes[i]) {
                HandshakeStep::Pending => i += 1,
                HandshakeStep::Failed => {
                    self.handshakes.swap_remove(i);
                }
                HandshakeStep::Connect(port) => {
                    let h = self.handshakes.swap_remove(i);
                    let key = (self.next_port, port);
                    self.next_port = self.next_port.checked_add(1).unwrap_or(FIRST_LOCAL_PORT);
                    self.conns.insert(
                        key,
                        Conn::new(h.stream, State::AwaitingResponse, &Header::default()),
                    );
                    self.push_control(key, OP_REQUEST, 0);
                }
            }
        }
    }

    /// Moves bytes between the host sockets and the per-connection buffers.
    fn pump_host(&mut self) {
        let (mut broken, mut credit, mut shutdown) = (Vec::new(), Vec::new(), Vec::new());
        for (&key, c) in self.conns.iter_mut() {
            if !c.flush() {
                broken.push(key);
                continue;
            }
            c.fill_from_host();
            if c.fwd_cnt.wrapping_sub(c.fwd_cnt_sent) >= BUF_ALLOC / 4 {
                credit.push(key);
            }
            if c.host_eof && c.to_guest.is_empty() && !c.shutdown_sent {
                c.shutdown_sent = true;
                if c.state == State::Established {
                    shutdown.push(key);
                } else {
                    broken.push(key);
                }
            }
        }
        for key in credit {
            self.push_control(key, OP_CREDIT_UPDATE, 0);
        }
        for key in shutdown {
            self.push_control(key, OP_SHUTDOWN, SHUTDOWN_BOTH);
        }
        for key in broken {
            self.rst(key);
        }
    }

    /// Writes one packet into the next rx chain; false when the guest has no buffer.
    fn deliver(
        &mut self,
        rxq: &mut Queue,
        mem: &GuestMem,
        key: Key,
        op: u16,
        flags: u32,
    ) -> std::result::Result<bool, QueueError> {
        let Some(chain) = next_chain(rxq, mem)? else {
            return Ok(false);
        };
        let len = self.write_packet(&chain, mem, key, op, flags);
        add_used(rxq, mem, chain.head(), len)?;
        Ok(true)
    }

    /// Returns the bytes written: header and payload, or 0 for an unusable buffer.
    fn write_packet(
        &mut self,
        chain: &DescChain,
        mem: &GuestMem,
        key: Key,
        op: u16,
        flags: u32,
    ) -> u32 {
        let room = chain.writable_len().saturating_sub(u64::from(HDR_LEN));
        if chain.writable_len() < u64::from(HDR_LEN) || chain.check_memory(mem).is_err() {
            self.refused += 1;
            return 0;
        }
        let payload = match (op, self.conns.get(&key)) {
            // At most MAX_PAYLOAD bytes are ever held.
            (OP_RW, Some(c)) => c.to_guest.len().min(c.credit()).min(room as usize),
            _ => 0,
        };
        let hdr = self.header(key, op, flags, payload as u32);
        if !chain
            .write_at(mem, 0, hdr.as_slice())
            .is_ok_and(|n| n == HDR_LEN as usize)
        {
            return 0;
        }
        let mut written = HDR_LEN;
        if let Some(c) = self.conns.get_mut(&key) {
            c.fwd_cnt_sent = c.fwd_cnt;
            let data = &c.to_guest[..payload];
            if payload > 0
                && chain
                    .write_at(mem, u64::from(HDR_LEN), data)
                    .is_ok_and(|n| n == payload)
            {
                c.to_guest.drain(..payload);
                c.tx_cnt = c.tx_cnt.wrapping_add(payload as u32);
                written += payload as u32;
            }
        }
        written
    }
}

enum HandshakeStep {
    Pending,
    Failed,
    Connect(u32),
}

fn read_handshake(h: &mut Handshake) -> HandshakeStep {
    let mut byte = [0u8; 1];
    // Byte by byte, so nothing after the newline (the connection's data) is consumed.
    loop {
        match h.stream.read(&mut byte) {
            Ok(0) => return HandshakeStep::Failed,
            Ok(_) if byte[0] == b'\n' => {
                let line = String::from_utf8_lossy(&h.line);
                return match line
                    .strip_prefix("CONNECT ")
                    .and_then(|p| p.trim().parse().ok())
                {
                    Some(port) => HandshakeStep::Connect(port),
                    None => HandshakeStep::Failed,
                };
            }
            Ok(_) if h.line.len() >= MAX_HANDSHAKE => return HandshakeStep::Failed,
            Ok(_) => h.line.push(byte[0]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => return HandshakeStep::Pending,
            Err(_) => return HandshakeStep::Failed,
        }
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds);
    }
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        TYPE_VSOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[256, 256, 256]
    }
    fn features(&self) -> u64 {
        VIRTIO_F_VERSION_1
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(&self.cid.to_le_bytes(), offset, data);
    }
    fn notify(&mut self, queue: u16, queues: &mut [Queue], mem: &GuestMem) -> QueueResult {
        // rx notifications only mean "new buffers": `poll`, called next, fills them.
        if usize::from(queue) != TXQ {
            return Ok(false);
        }
        match queues.get_mut(TXQ) {
            Some(txq) => self.drain_tx(txq, mem),
            None => Ok(false),
        }
    }
    fn poll(&mut self, queues: &mut [Queue], mem: &GuestMem) -> QueueResult {
        // Queues in order: rx, tx, event.
        let [rxq, txq, ..] = queues else {
            return Ok(false);
        };
        if !rxq.ready() {
            return Ok(false);
        }
        let mut used = false;
        // Delivering frees buffer space (more host bytes may be read), can expose an EOF
        // (a SHUTDOWN to send) and makes room for paused transmit chains, so repeat until
        // a round delivers nothing.
        loop {
            self.accept_host_connections();
            self.pump_host();
            let delivered = self.deliver_all(rxq, mem)?;
            let resume = self.tx_stalled && self.control.len() < CONTROL_MAX && txq.ready();
            if resume {
                self.tx_stalled = false;
                used |= self.drain_tx(txq, mem)?;
            }
            match delivered {
                Delivered::Nothing if !resume => return Ok(used),
                Delivered::Nothing => {}
                Delivered::Some => used = true,
                Delivered::OutOfBuffers => return Ok(true),
            }
        }
    }
    fn refused(&self) -> u64 {
        self.refused
    }
}

enum Delivered {
    Nothing,
    Some,
    OutOfBuffers,
}

impl Vsock {
    /// Control packets first, then data, while the guest has rx buffers.
    fn deliver_all(
        &mut self,
        rxq: &mut Queue,
        mem: &GuestMem,
    ) -> std::result::Result<Delivered, QueueError> {
        let mut any = false;
        while let Some(&(key, op, flags)) = self.control.front() {
            if !self.deliver(rxq, mem, key, op, flags)? {
                return Ok(if any {
                    Delivered::OutOfBuffers
                } else {
                    Delivered::Nothing
                });
            }
            self.control.pop_front();
            any = true;
        }
        let ready: Vec<Key> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.to_guest.is_empty() && c.credit() > 0)
            .map(|(k, _)| *k)
            .collect();
        for key in ready {
            if !self.deliver(rxq, mem, key, OP_RW, 0)? {
                return Ok(if any {
                    Delivered::OutOfBuffers
                } else {
                    Delivered::Nothing
                });
            }
            any = true;
        }
        Ok(if any {
            Delivered::Some
        } else {
            Delivered::Nothing
        })
    }
}
