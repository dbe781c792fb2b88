//! virtio-vsock round trips with the hybrid unix-socket host side, against the guest's
//! polled vsock driver: one guest-initiated and one host-initiated stream.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc;
use std::time::Duration;

use berth_vmm::{ShutdownReason, Vm, VsockConfig};
use common::guest_config;

/// Stops the VM if the guest gets stuck, so a broken device fails instead of hanging.
const WATCHDOG: Duration = Duration::from_secs(120);

fn read_line(s: &mut UnixStream) -> String {
    let mut line = Vec::new();
    let mut b = [0u8; 1];
    while s.read_exact(&mut b).is_ok() && b[0] != b'\n' {
        line.push(b[0]);
    }
    String::from_utf8(line).unwrap()
}

#[test]
fn guest_and_host_initiated_streams_carry_data_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut cfg = guest_config("vsock", &dir.path().join("console"));
    cfg.vsock = Some(VsockConfig {
        guest_cid: 42,
        uds: uds.clone(),
    });

    // The guest connects to host port 5000: the VMM dials "<uds>_5000".
    let port_5000 = UnixListener::bind(format!("{}_5000", uds.display())).unwrap();
    let (done_tx, done_rx) = mpsc::channel();
    let guest_side = std::thread::spawn(move || {
        let (mut s, _) = port_5000.accept().unwrap();
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        let mut ping = [0u8; 15];
        s.read_exact(&mut ping).unwrap();
        s.write_all(b"pong").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap(); // the guest's SHUTDOWN closes our end
        done_tx.send(()).unwrap();
        (String::from_utf8(ping.to_vec()).unwrap(), rest)
    });

    let vm = Vm::build(&cfg).unwrap();
    assert!(uds.exists());
    let stop = vm.stop_handle();
    let uds2 = uds.clone();
    let host_side = std::thread::spawn(move || {
        done_rx.recv_timeout(WATCHDOG).unwrap();
        // The guest refuses the first attempt (RST): the VMM closes our stream.
        let mut s = UnixStream::connect(&uds2).unwrap();
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        s.write_all(b"CONNECT 6000\n").unwrap();
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty(), "refused connection got {rest:?}");
        let mut s = UnixStream::connect(&uds2).unwrap();
        s.set_read_timeout(Some(WATCHDOG)).unwrap();
        s.write_all(b"CONNECT 6000\n").unwrap();
        let ok = read_line(&mut s);
        s.write_all(b"hello guest").unwrap();
        let mut echo = [0u8; 17];
        s.read_exact(&mut echo).unwrap();
        (ok, String::from_utf8(echo.to_vec()).unwrap())
    });
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(WATCHDOG);
        stop.stop();
    });
    let report = vm.run().unwrap();
    let out = std::fs::read_to_string(dir.path().join("console")).unwrap();
    assert_eq!(report.reason, ShutdownReason::DebugExit(50), "{out}");
    assert_eq!(
        out,
        "cid=42\nconnected\ngot: pong\nclosed\nrefused\naccepted on 6000\ndone\n"
    );
    let (ping, rest) = guest_side.join().unwrap();
    assert_eq!(ping, "ping from guest");
    assert!(rest.is_empty());
    let (ok, echo) = host_side.join().unwrap();
    assert_eq!(ok, format!("OK {}", (1u32 << 30) + 1));
    assert_eq!(echo, "echo: hello guest");
    // The VM is gone: its socket is removed.
    assert!(!uds.exists());
    drop(watchdog);
}

#[test]
fn an_existing_socket_path_and_host_cids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("taken.sock");
    std::fs::write(&uds, b"").unwrap();
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    cfg.vsock = Some(VsockConfig {
        guest_cid: 42,
        uds: uds.clone(),
    });
    let e = Vm::build(&cfg).unwrap_err().to_string();
    assert!(
        e.starts_with(&format!("vsock socket {}: already exists", uds.display())),
        "{e}"
    );
    cfg.vsock = Some(VsockConfig {
        guest_cid: 2,
        uds: dir.path().join("free.sock"),
    });
    let e = Vm::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("config field vsock.guest_cid:"), "{e}");
    assert!(!dir.path().join("free.sock").exists());
}

#[test]
fn a_failed_build_removes_the_socket_it_created() {
    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let mut cfg = guest_config("hello", &dir.path().join("console"));
    cfg.vsock = Some(VsockConfig {
        guest_cid: 42,
        uds: uds.clone(),
    });
    // The tap is set up after the vsock device; its bad name fails the build.
    cfg.net = Some(berth_vmm::NetConfig {
        tap: "bad/name".into(),
    });
    let e = Vm::build(&cfg).unwrap_err().to_string();
    assert!(e.starts_with("tap bad/name:"), "{e}");
    assert!(!uds.exists(), "socket left behind");
}
