//! Messages between the parent (`berth create`) and the container's init process, over a
//! SOCK_SEQPACKET socketpair: one JSON message per run of packets, so message boundaries
//! survive.
//!
//! A packet cannot exceed the socket's send buffer (net.core.wmem_default, about 208 KiB:
//! larger sends fail with EMSGSIZE), and Kubernetes sends configs of several hundred KiB.
//! So a message travels in fragments of at most [`FRAGMENT`] bytes, each led by one byte
//! that says whether more follow.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

/// Largest message either side accepts (a config.json is refused above 16 MiB earlier).
pub const MAX_MESSAGE: usize = 32 << 20;
/// Payload bytes per packet: well below the smallest default send buffer.
const FRAGMENT: usize = 32 << 10;
const MORE: u8 = 1;
const LAST: u8 = 0;

pub struct Channel {
    fd: OwnedFd,
}

/// A connected pair; the second end is inherited by the child.
pub fn pair() -> Result<(Channel, Channel)> {
    let (a, b) = socket::socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(|e| Error::Sys {
        op: "socketpair".into(),
        source: e,
    })?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn from_fd(fd: OwnedFd) -> Channel {
        Channel { fd }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    pub fn into_fd(self) -> OwnedFd {
        self.fd
    }

    pub fn send<T: Serialize>(&self, msg: &T) -> Result<()> {
        let data = serde_json::to_vec(msg).expect("messages serialize");
        let mut chunks = data.chunks(FRAGMENT).peekable();
        let mut packet = Vec::with_capacity(FRAGMENT.min(data.len()) + 1);
        loop {
            let chunk = chunks.next().unwrap_or_default();
            packet.clear();
            packet.push(if chunks.peek().is_some() { MORE } else { LAST });
            packet.extend_from_slice(chunk);
            self.send_packet(&packet)?;
            if chunks.peek().is_none() {
                return Ok(());
            }
        }
    }

    fn send_packet(&self, packet: &[u8]) -> Result<()> {
        loop {
            match socket::send(self.fd.as_raw_fd(), packet, socket::MsgFlags::MSG_NOSIGNAL) {
                Ok(_) => return Ok(()),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    return Err(Error::Sys {
                        op: "send to container init".into(),
                        source: e,
                    })
                }
            }
        }
    }

    /// Receive one message; `Ok(None)` when the other side closed the channel.
    pub fn recv<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.recv_with(socket::MsgFlags::empty())
    }

    /// Receive one message if one is already waiting, without blocking: the last words
    /// of a peer that may have failed (`Ok(None)` if there are none).
    pub fn try_recv<T: DeserializeOwned>(&self) -> Result<Option<T>> {
        self.recv_with(socket::MsgFlags::MSG_DONTWAIT)
    }

    fn recv_with<T: DeserializeOwned>(&self, flags: socket::MsgFlags) -> Result<Option<T>> {
        let mut message = Vec::new();
        loop {
            let Some(packet) = self.recv_packet(flags)? else {
                return Ok(None);
            };
            let (&more, payload) = packet
                .split_first()
                .ok_or_else(|| Error::Init("empty packet from the other side".into()))?;
            if message.len() + payload.len() > MAX_MESSAGE {
                return Err(Error::Init(format!(
                    "message from the other side is larger than {MAX_MESSAGE} bytes"
                )));
            }
            message.extend_from_slice(payload);
            if more == LAST {
                break;
            }
        }
        serde_json::from_slice(&message)
            .map(Some)
            .map_err(|e| Error::Init(format!("malformed message from the other side: {e}")))
    }

    /// One packet; `None` when the peer closed (or, with MSG_DONTWAIT, nothing waits).
    fn recv_packet(&self, flags: socket::MsgFlags) -> Result<Option<Vec<u8>>> {
        let mut reset_seen = false;
        let mut recv = |buf: &mut [u8], extra: socket::MsgFlags| loop {
            match socket::recv(self.fd.as_raw_fd(), buf, flags | extra) {
                Ok(n) => return Ok(Some(n)),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN)
                    if flags.contains(socket::MsgFlags::MSG_DONTWAIT) =>
                {
                    return Ok(None)
                }
                // The peer closed with messages of ours unread: the kernel reports that
                // once, then still delivers what the peer had sent us (its last words).
                Err(nix::errno::Errno::ECONNRESET) if !reset_seen => reset_seen = true,
                Err(e) => {
                    return Err(Error::Sys {
                        op: "receive from container init".into(),
                        source: e,
                    })
                }
            }
        };
        // Peek at the packet's real length first (MSG_TRUNC), so each packet costs
        // exactly its size instead of a zeroed worst-case buffer.
        let Some(len) = recv(
            &mut [0u8; 1],
            socket::MsgFlags::MSG_PEEK | socket::MsgFlags::MSG_TRUNC,
        )?
        else {
            return Ok(None);
        };
        if len > FRAGMENT + 1 {
            return Err(Error::Init(format!(
                "packet of {len} bytes from the other side is too large"
            )));
        }
        let mut buf = vec![0u8; len.max(1)];
        match recv(&mut buf, socket::MsgFlags::empty())? {
            Some(0) | None => Ok(None),
            Some(n) => {
                buf.truncate(n);
                Ok(Some(buf))
            }
        }
    }
}

/// What the child side reports to the parent.
#[derive(Debug, Serialize, Deserialize)]
pub enum ChildMsg {
    /// (user-namespace path) the first child unshared a user namespace: write its maps.
    MapIds { pid: i32 },
    /// The pid (host view) of the process that becomes the container's init.
    InitPid { pid: i32 },
    /// Namespaces are set up; run the createRuntime/prestart hooks now.
    NamespacesReady,
    /// The container is created and waits for `start`.
    Created,
    /// Setup failed; the message is the one line to show the user.
    Failed(String),
}

/// What the parent sends to the child side.
#[derive(Debug, Serialize, Deserialize)]
pub enum ParentMsg {
    IdsMapped,
    /// The init process is in its cgroup (and resources are applied).
    CgroupReady,
    Config(Box<crate::init::InitConfig>),
    /// Run a process in an existing container (`berth exec`).
    Exec(Box<crate::init::ExecConfig>),
    /// Hooks done; the state JSON is for createContainer hooks.
    Continue {
        state: serde_json::Value,
    },
}
