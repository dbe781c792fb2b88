//! virtio-net over a tap, in a private network namespace so no host interface is touched:
//! the guest's frame appears on the tap, and a frame sent on the tap reaches the guest.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use berth_vmm::{NetConfig, ShutdownReason, Vm};
use common::guest_config;

const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

fn check(ret: libc::c_int, what: &str) -> libc::c_int {
    assert!(ret >= 0, "{what}: {}", std::io::Error::last_os_error());
    ret
}

/// Brings `name` up and returns a packet socket bound to it.
fn packet_socket(name: &str) -> OwnedFd {
    let mut ifr = [0u8; 40];
    ifr[..name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: plain socket/ioctl calls on a 40-byte struct ifreq we own.
    unsafe {
        let s = OwnedFd::from_raw_fd(check(
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0),
            "socket",
        ));
        check(
            libc::ioctl(s.as_raw_fd(), libc::SIOCGIFFLAGS, ifr.as_mut_ptr()),
            "SIOCGIFFLAGS",
        );
        let flags = i16::from_ne_bytes([ifr[16], ifr[17]]) | libc::IFF_UP as i16;
        ifr[16..18].copy_from_slice(&flags.to_ne_bytes());
        check(
            libc::ioctl(s.as_raw_fd(), libc::SIOCSIFFLAGS, ifr.as_mut_ptr()),
            "SIOCSIFFLAGS",
        );
        let index = libc::if_nametoindex(ifr.as_ptr().cast());
        assert_ne!(index, 0);
        let proto = (libc::ETH_P_ALL as u16).to_be();
        let p = OwnedFd::from_raw_fd(check(
            libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)),
            "packet socket",
        ));
        let mut sll: libc::sockaddr_ll = std::mem::zeroed();
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = index as i32;
        let len = std::mem::size_of::<libc::sockaddr_ll>() as u32;
        check(
            libc::bind(
                p.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                len,
            ),
            "bind",
        );
        let tv = libc::timeval {
            tv_sec: 60,
            tv_usec: 0,
        };
        let tvlen = std::mem::size_of::<libc::timeval>() as u32;
        check(
            libc::setsockopt(
                p.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                tvlen,
            ),
            "SO_RCVTIMEO",
        );
        p
    }
}

/// The next frame with our ethertype (skips the kernel's IPv6 chatter).
fn recv_ours(p: &OwnedFd) -> Vec<u8> {
    let mut buf = vec![0u8; 2048];
    loop {
        // SAFETY: reads into a buffer we own, within its length.
        let n = unsafe { libc::recv(p.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        assert!(
            n >= 0,
            "no frame from the guest: {}",
            std::io::Error::last_os_error()
        );
        if n >= 14 && buf[12..14] == ETHERTYPE {
            return buf[..n as usize].to_vec();
        }
    }
}

#[test]
fn frames_cross_the_tap_in_both_directions() {
    let dir = tempfile::tempdir().unwrap();
    let console = dir.path().join("console");
    let tap = format!("bvm{}", std::process::id() % 100_000);
    let t = std::thread::spawn(move || {
        // Network namespaces are per thread: this one and the VM's threads get a private one.
        // SAFETY: unshare only changes this thread's namespace membership.
        check(
            unsafe { libc::unshare(libc::CLONE_NEWNET) },
            "unshare(CLONE_NEWNET)",
        );
        let mut cfg = guest_config("net", &console);
        cfg.net = Some(NetConfig { tap: tap.clone() });
        let vm = Vm::build(&cfg).unwrap();
        // A second VM cannot attach to the same tap.
        let busy = Vm::build(&cfg).unwrap_err().to_string();
        assert!(busy.starts_with(&format!("tap {tap}: busy")), "{busy}");
        let p = packet_socket(&tap);
        let stop = vm.stop_handle();
        let runner = std::thread::spawn(move || vm.run().unwrap());
        let out_frame = recv_ours(&p);
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&out_frame[6..12]); // to the guest's MAC
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
        frame[12..14].copy_from_slice(&ETHERTYPE);
        frame[14..29].copy_from_slice(b"hello guest net");
        // SAFETY: sends a buffer we own on a bound packet socket.
        let sent = unsafe { libc::send(p.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(sent, 60);
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            stop.stop();
        });
        drop(watchdog);
        (out_frame, runner.join().unwrap())
    });
    let (out_frame, report) = t.join().unwrap();
    let out = std::fs::read_to_string(dir.path().join("console")).unwrap();
    assert_eq!(report.reason, ShutdownReason::DebugExit(70), "{out}");
    assert_eq!(&out_frame[..6], &[0xff; 6]);
    assert_eq!(&out_frame[14..34], b"hello from guest net");
    let mac: String = out_frame[6..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    assert_eq!(out, format!("mac={mac}\nsent\ngot: hello guest net\n"));
}
