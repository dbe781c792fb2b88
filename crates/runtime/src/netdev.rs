//! `linux.netDevices`: host network interfaces moved into the container's network
//! namespace (and renamed there), with one rtnetlink request each. When that namespace
//! goes away the kernel returns physical devices to the host's initial namespace and
//! destroys virtual ones (dummy, veth, ...), so nothing is left to undo at delete.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::errno::Errno;
use oci_spec::runtime::LinuxNetDevice;

use crate::error::{Error, Result};

const IFNAMSIZ: usize = 16;
const RTM_NEWLINK: u16 = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const IFLA_IFNAME: u16 = 3;
const IFLA_NET_NS_FD: u16 = 28;

fn bad(why: String) -> Error {
    Error::Config(format!("field linux.netDevices{why}"))
}

/// An interface name the kernel accepts (dev_valid_name): 1-15 bytes, not `.` or `..`, no
/// `/`, `:` or whitespace.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace())
}

/// Checks names and that the container gets a network namespace of its own.
pub fn validate(devices: &HashMap<String, LinuxNetDevice>, new_netns: bool) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    if !new_netns {
        return Err(bad(
            ": moving devices needs a new network namespace (linux.namespaces: network without a path)"
                .into(),
        ));
    }
    let mut targets = HashMap::new();
    for (host, d) in devices {
        if !valid_name(host) {
            return Err(bad(format!(": {host:?} is not a valid interface name")));
        }
        let target = d.name().as_deref().unwrap_or(host);
        if !valid_name(target) {
            return Err(bad(format!(
                ".{host}.name: {target:?} is not a valid interface name"
            )));
        }
        if let Some(other) = targets.insert(target.to_string(), host) {
            return Err(bad(format!(
                ": {other} and {host} would both be named {target:?} in the container"
            )));
        }
    }
    Ok(())
}

/// One netlink attribute: length, type, payload padded to 4 bytes.
fn push_attr(buf: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len() + (4 - len % 4) % 4, 0);
}

/// Moves each device into the network namespace of `pid`, under its new name.
pub fn move_into(devices: &HashMap<String, LinuxNetDevice>, pid: i32) -> Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    let ns_path = format!("/proc/{pid}/ns/net");
    let netns = std::fs::File::open(&ns_path).map_err(|e| Error::Io {
        path: ns_path.into(),
        source: e,
    })?;
    let sys = |op: &str| {
        let op = op.to_string();
        move |e: Errno| Error::Sys { op, source: e }
    };
    // SAFETY: socket(2) returns a new fd owned by nobody else.
    let sock = Errno::result(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    })
    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
    .map_err(sys("field linux.netDevices: netlink socket"))?;
    let mut names: Vec<&String> = devices.keys().collect();
    names.sort();
    for (seq, host) in names.into_iter().enumerate() {
        let target = devices[host].name().as_deref().unwrap_or(host);
        let cname = std::ffi::CString::new(host.as_str()).expect("validated name");
        // SAFETY: if_nametoindex reads a valid C string.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(bad(format!(": no network interface {host:?} on the host")));
        }
        // nlmsghdr (16 bytes) + ifinfomsg (16 bytes) + attributes.
        let mut msg = vec![0u8; 32];
        msg[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        msg[6..8].copy_from_slice(&(NLM_F_REQUEST | NLM_F_ACK).to_ne_bytes());
        msg[8..12].copy_from_slice(&(seq as u32 + 1).to_ne_bytes());
        msg[16] = libc::AF_UNSPEC as u8;
        msg[20..24].copy_from_slice(&(index as i32).to_ne_bytes());
        push_attr(
            &mut msg,
            IFLA_NET_NS_FD,
            &(netns.as_raw_fd() as u32).to_ne_bytes(),
        );
        let mut name = target.as_bytes().to_vec();
        name.push(0);
        push_attr(&mut msg, IFLA_IFNAME, &name);
        let len = msg.len() as u32;
        msg[0..4].copy_from_slice(&len.to_ne_bytes());
        // SAFETY: sending our own buffer on our socket (the kernel is the default peer).
        Errno::result(unsafe { libc::send(sock.as_raw_fd(), msg.as_ptr().cast(), msg.len(), 0) })
            .map_err(sys("field linux.netDevices: netlink send"))?;
        let mut reply = [0u8; 1024];
        // SAFETY: receiving into our own buffer.
        let n = Errno::result(unsafe {
            libc::recv(sock.as_raw_fd(), reply.as_mut_ptr().cast(), reply.len(), 0)
        })
        .map_err(sys("field linux.netDevices: netlink receive"))? as usize;
        let kind = u16::from_ne_bytes([reply[4], reply[5]]);
        if n < 20 || kind != NLMSG_ERROR {
            return Err(bad(format!(": moving {host:?}: unexpected netlink reply")));
        }
        let code = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
        if code != 0 {
            return Err(bad(format!(
                ": moving {host:?} into the container as {target:?}: {}",
                Errno::from_raw(-code).desc()
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn devices(json: serde_json::Value) -> HashMap<String, LinuxNetDevice> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn names_are_checked() {
        assert!(validate(
            &devices(serde_json::json!({"dummy0": {"name": "eth1"}})),
            true
        )
        .is_ok());
        for (json, new_netns, says) in [
            (
                serde_json::json!({"d0": {}}),
                false,
                "needs a new network namespace",
            ),
            (
                serde_json::json!({"a/b": {}}),
                true,
                "\"a/b\" is not a valid",
            ),
            (
                serde_json::json!({"d0": {"name": "x".repeat(16)}}),
                true,
                ".d0.name",
            ),
            (
                serde_json::json!({"d0": {"name": "e"}, "d1": {"name": "e"}}),
                true,
                "both be named",
            ),
        ] {
            let e = validate(&devices(json), new_netns).unwrap_err().to_string();
            assert!(e.contains("linux.netDevices") && e.contains(says), "{e}");
        }
    }
}
