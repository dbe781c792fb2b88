//! The vCPU thread confinement, tested in a child process (this test binary re-executed)
//! because a seccomp violation kills the whole process.
#![allow(clippy::unwrap_used)] // tests unwrap freely; library code may not

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use berth_vmm::confine::{confine_current_thread, thread_filter};

const CHILD: &str = "BERTH_VMM_CONFINE_CHILD";

/// In the child: confine a fresh thread, report its status, then try `what`.
fn child(what: &str) {
    let filter = thread_filter().unwrap();
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    let what = what.to_string();
    std::thread::spawn(move || {
        confine_current_thread(&filter).unwrap();
        // Allowed: write to an open fd, getrandom.
        let mut b = [0u8; 8];
        // SAFETY: valid buffer and length.
        let got = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
        assert_eq!(got, 8);
        println!("confined");
        if what == "forbidden" {
            // SAFETY: plain syscall without pointers; the filter kills the process here.
            unsafe { libc::syscall(libc::SYS_getppid) };
            println!("survived");
        }
    })
    .join()
    .unwrap();
    // The main thread is not confined: it can still open files.
    assert!(status.contains("Seccomp:"));
    std::fs::read_to_string("/proc/thread-self/status").unwrap();
    println!("main thread free");
}

fn run_child(what: &str) -> std::process::Output {
    if let Ok(w) = std::env::var(CHILD) {
        child(&w);
        std::process::exit(0);
    }
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "--nocapture",
            "--test-threads=1",
            &format!("child_{what}"),
        ])
        .env(CHILD, what)
        .output()
        .unwrap()
}

#[test]
fn child_allowed() {
    let out = run_child("allowed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("confined") && stdout.contains("main thread free"),
        "{stdout}"
    );
}

#[test]
fn child_forbidden() {
    let out = run_child("forbidden");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.signal(), Some(libc::SIGSYS), "{stdout}");
    assert!(
        stdout.contains("confined") && !stdout.contains("survived"),
        "{stdout}"
    );
}

#[test]
fn confined_thread_has_no_capabilities_and_seccomp_mode_2() {
    let filter = thread_filter().unwrap();
    // The thread reads its status through an fd opened before confinement.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // SAFETY: gettid has no arguments and cannot fail.
        let path = format!("/proc/self/task/{}/status", unsafe { libc::gettid() });
        let mut file = std::fs::File::open(path).unwrap();
        confine_current_thread(&filter).unwrap();
        // A plain read(2): read_to_string would statx(2) for a size hint, which is denied.
        let mut buf = vec![0u8; 16384];
        let n = std::io::Read::read(&mut file, &mut buf).unwrap();
        tx.send(String::from_utf8_lossy(&buf[..n]).into_owned())
            .unwrap();
    })
    .join()
    .unwrap();
    let status = rx.recv().unwrap();
    let field = |k: &str| {
        status
            .lines()
            .find(|l| l.starts_with(k))
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .to_string()
    };
    assert_eq!(field("Seccomp:"), "2");
    assert_eq!(field("NoNewPrivs:"), "1");
    assert_eq!(field("CapEff:"), "0000000000000000");
    assert_eq!(field("CapPrm:"), "0000000000000000");
    assert_eq!(field("CapBnd:"), "0000000000000000");
}
