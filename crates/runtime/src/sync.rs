//! Messages between the parent (`berth create`) and the container's init process, over a
//! SOCK_SEQPACKET socketpair: one JSON message per packet, so message boundaries survive.

use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{self, AddressFamily, SockFlag, SockType};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

const MAX_MESSAGE: usize = 4 << 20;

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
        loop {
            match socket::send(self.fd.as_raw_fd(), &data, socket::MsgFlags::MSG_NOSIGNAL) {
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
        let mut reset_seen = false;
        let mut recv = |buf: &mut [u8], flags: socket::MsgFlags| loop {
            match socket::recv(self.fd.as_raw_fd(), buf, flags) {
                Ok(n) => return Ok(n),
                Err(nix::errno::Errno::EINTR) => continue,
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
        // Peek at the packet's real length first (MSG_TRUNC), so each message costs
        // exactly its size instead of a zeroed worst-case buffer.
        let len = recv(
            &mut [0u8; 1],
            socket::MsgFlags::MSG_PEEK | socket::MsgFlags::MSG_TRUNC,
        )?;
        if len > MAX_MESSAGE {
            return Err(Error::Init(format!(
                "message of {len} bytes from the other side is too large"
            )));
        }
        let mut buf = vec![0u8; len.max(1)];
        let n = recv(&mut buf, socket::MsgFlags::empty())?;
        if n == 0 {
            return Ok(None);
        }
        serde_json::from_slice(&buf[..n])
            .map(Some)
            .map_err(|e| Error::Init(format!("malformed message from the other side: {e}")))
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
