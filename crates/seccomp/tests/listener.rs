//! `send_listener` against a real unix socket: the agent side receives the
//! ContainerProcessState JSON and the fd, which refers to the same open file.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;

use berth_seccomp::{send_listener, Error};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixAddr};

#[test]
fn sends_process_state_and_fd() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.sock");
    let agent = UnixListener::bind(&path).unwrap();
    let file = tempfile::tempfile().unwrap();
    let state = serde_json::json!({
        "ociVersion": "1.2.0", "id": "c1", "status": "creating", "pid": 4242,
        "bundle": "/b", "annotations": {}
    });

    send_listener(&path, "MKNOD=/dev/null", &state, file.as_fd()).unwrap();

    let (mut conn, _) = agent.accept().unwrap();
    let mut buf = vec![0u8; 8192];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<UnixAddr>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .unwrap();
        let fds: Vec<i32> = msg
            .cmsgs()
            .unwrap()
            .flat_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => fds,
                other => panic!("unexpected control message {other:?}"),
            })
            .collect();
        (msg.bytes, fds)
    };
    let mut text = buf[..n].to_vec();
    conn.read_to_end(&mut text).unwrap();
    let got: serde_json::Value = serde_json::from_slice(&text).unwrap();
    assert_eq!(got["ociVersion"], "1.2.0");
    assert_eq!(got["fds"], serde_json::json!(["seccompFd"]));
    assert_eq!(got["pid"], 4242);
    assert_eq!(got["metadata"], "MKNOD=/dev/null");
    assert_eq!(got["state"], state);

    assert_eq!(fds.len(), 1);
    // SAFETY: the fd arrived via SCM_RIGHTS and is ours.
    let received = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fds[0]) });
    let (a, b) = (received.metadata().unwrap(), file.metadata().unwrap());
    assert_eq!((a.dev(), a.ino()), (b.dev(), b.ino()));
}

#[test]
fn bad_state_or_path_is_an_error_naming_it() {
    let file = tempfile::tempfile().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing.sock");
    let state = serde_json::json!({"ociVersion": "1.2.0", "pid": 1});
    let err = send_listener(&path, "", &state, file.as_fd()).unwrap_err();
    assert!(matches!(err, Error::Listener { .. }));
    assert!(err.to_string().contains("missing.sock"), "{err}");

    let no_pid = serde_json::json!({"ociVersion": "1.2.0"});
    let err = send_listener(&path, "", &no_pid, file.as_fd()).unwrap_err();
    assert!(err.to_string().contains("state.pid"), "{err}");
}
