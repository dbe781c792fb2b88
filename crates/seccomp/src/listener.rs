//! Handing the seccomp notify fd to a seccomp agent, as runc does.
//!
//! The OCI runtime spec ("ContainerProcessState") defines the message: one write on a
//! connected SOCK_STREAM unix socket of the JSON
//! `{"ociVersion", "fds": ["seccompFd"], "pid", "metadata", "state"}` carrying the listener
//! fd as SCM_RIGHTS ancillary data; `fds[i]` names the i-th passed fd.

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;

use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags, UnixAddr};

use crate::Error;

/// Sends `fd` with the container process state to the agent listening on `path`.
///
/// `state_json` is the container's state (as `runc state` prints it); its `ociVersion` and
/// `pid` are copied to the top level as the spec requires. `metadata` is the profile's
/// `listenerMetadata` (empty when unset).
pub fn send_listener(
    path: &Path,
    metadata: &str,
    state_json: &serde_json::Value,
    fd: BorrowedFd<'_>,
) -> Result<(), Error> {
    // A bad state is reported before anything is connected.
    process_state(metadata, state_json)?;
    let stream = UnixStream::connect(path).map_err(|source| Error::Listener {
        path: path.to_path_buf(),
        source,
    })?;
    send_listener_on(&stream, path, metadata, state_json, fd)
}

/// Like [`send_listener`] on a stream connected earlier (a container's init connects
/// before pivot_root, while the agent's socket path is still reachable); `path` only
/// names it in errors.
pub fn send_listener_on(
    stream: &UnixStream,
    path: &Path,
    metadata: &str,
    state_json: &serde_json::Value,
    fd: BorrowedFd<'_>,
) -> Result<(), Error> {
    let message = process_state(metadata, state_json)?;
    let bytes = message.to_string().into_bytes();
    let io_err = |source: io::Error| Error::Listener {
        path: path.to_path_buf(),
        source,
    };
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        // The fd travels with the first chunk only; the agent reads until EOF or JSON end.
        let cmsgs: &[ControlMessage] = if sent == 0 { &cmsg } else { &[] };
        match sendmsg::<UnixAddr>(
            stream.as_raw_fd(),
            &iov,
            cmsgs,
            MsgFlags::MSG_NOSIGNAL,
            None,
        ) {
            Ok(n) => sent += n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(io_err(e.into())),
        }
    }
    Ok(())
}

/// Builds the ContainerProcessState JSON from the container state.
fn process_state(metadata: &str, state: &serde_json::Value) -> Result<serde_json::Value, Error> {
    let oci_version =
        state
            .get("ociVersion")
            .and_then(|v| v.as_str())
            .ok_or(Error::ListenerState {
                field: "ociVersion",
                problem: "missing or not a string",
            })?;
    let pid = state
        .get("pid")
        .and_then(|v| v.as_i64())
        .filter(|p| *p > 0)
        .ok_or(Error::ListenerState {
            field: "pid",
            problem: "missing or not a positive integer",
        })?;
    Ok(serde_json::json!({
        "ociVersion": oci_version,
        "fds": ["seccompFd"],
        "pid": pid,
        "metadata": metadata,
        "state": state,
    }))
}
