//! Tests on this machine's real hierarchies. They need root; without it they say so and
//! pass vacuously. Every cgroup is named `berth-test-<pid>-<test>` and removed by a guard,
//! every helper process is killed by a guard, even when an assertion fails.
//!
//! Processes under test are this test binary re-run as a helper (`helper_entry`), which
//! waits on stdin until the test has moved it into the cgroup, then does one thing.

use crate::{detect, manager, CgroupConfig, Hierarchy, Manager, OomEvent};
use oci_spec::runtime::*;
use std::io::{Read, Write as _};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const HELPER_ENV: &str = "BERTH_CGROUPS_HELPER";
/// Upper bound for things that normally take milliseconds; only guards against hangs.
const PATIENCE: Duration = Duration::from_secs(30);

/// Not a test: the body of helper processes (does nothing in a normal test run).
#[test]
fn helper_entry() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    let mut gate = [0u8; 1];
    let _ = std::io::stdin().read_exact(&mut gate);
    let say = |s: String| {
        println!("HELPER {s}");
        let _ = std::io::stdout().flush();
    };
    let (mode, arg) = mode.split_once(':').unwrap_or((mode.as_str(), ""));
    match mode {
        "alloc" => {
            // Touch 512 MiB one page at a time.
            let mut chunks = Vec::new();
            for _ in 0..512 {
                let mut c = vec![0u8; 1 << 20];
                for i in (0..c.len()).step_by(4096) {
                    c[i] = 1;
                }
                chunks.push(c);
            }
            say(format!("survived {}", chunks.len()));
        }
        "fork" => {
            // SAFETY: the child only calls _exit.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                // SAFETY: _exit is async-signal-safe.
                unsafe { libc::_exit(0) };
            }
            if pid < 0 {
                say(format!(
                    "errno={}",
                    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
                ));
            } else {
                // SAFETY: waiting for our own child; a null status pointer is allowed.
                unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
                say("forked".into());
            }
        }
        "count" => {
            let mut n = 0u64;
            loop {
                n += 1;
                let _ = std::fs::write(arg, n.to_string());
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        "open" => {
            for p in arg.split(',') {
                match std::fs::OpenOptions::new().read(true).write(true).open(p) {
                    Ok(_) => say(format!("{p} ok")),
                    Err(e) => say(format!("{p} errno={}", e.raw_os_error().unwrap_or(0))),
                }
            }
        }
        "hold" => {
            // Charge some memory to the cgroup, then wait.
            let mut c = vec![0u8; 8 << 20];
            for i in (0..c.len()).step_by(4096) {
                c[i] = 1;
            }
            say(format!("holding {}", c.len()));
            loop {
                std::thread::sleep(Duration::from_secs(1));
            }
        }
        "sleep" => loop {
            std::thread::sleep(Duration::from_secs(1));
        },
        other => say(format!("unknown mode {other}")),
    }
    std::process::exit(0);
}

/// A helper process, killed and reaped on drop.
struct Helper {
    child: Option<Child>,
}

impl Helper {
    fn spawn(mode: &str) -> Helper {
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "tests::host::helper_entry",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(HELPER_ENV, mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Helper { child: Some(child) }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().unwrap().id() as i32
    }

    /// Lets the helper go on past its gate.
    fn release(&mut self) {
        let mut stdin = self.child.as_mut().unwrap().stdin.take().unwrap();
        stdin.write_all(b"g").unwrap();
    }

    /// Waits (bounded) for exit; returns the status and the helper's own output lines.
    fn finish(&mut self) -> (ExitStatus, Vec<String>) {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                start.elapsed() < PATIENCE,
                "helper {} did not exit",
                child.id()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        self.child = None;
        let lines = out
            .lines()
            .filter_map(|l| l.strip_prefix("HELPER "))
            .map(str::to_string)
            .collect();
        (status, lines)
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Destroys the cgroup on drop.
struct Cg(std::boxed::Box<dyn Manager>);

impl std::ops::Deref for Cg {
    type Target = dyn Manager;
    fn deref(&self) -> &(dyn Manager + 'static) {
        &*self.0
    }
}

impl Drop for Cg {
    fn drop(&mut self) {
        if let Err(e) = self.0.destroy() {
            eprintln!("cleanup of {:?} failed: {e}", self.0.paths());
        }
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no side effects.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipping: needs root");
    }
    root
}

fn test_path(name: &str) -> String {
    format!("/berth-test-{}-{name}/ctr", std::process::id())
}

/// The container's cgroup on the host's main layout (v1 controllers on hybrid hosts).
fn host_cgroup(name: &str) -> Cg {
    let m = manager(&CgroupConfig::new(name, Some(test_path(name)))).unwrap();
    let cg = Cg(m);
    cg.create().unwrap();
    cg
}

/// A cgroup on the cgroup2 tree (the unified mount on hybrid hosts), if there is one.
fn v2_cgroup(name: &str) -> Option<Cg> {
    let root = match detect().ok()? {
        Hierarchy::V2 => PathBuf::from(crate::DEFAULT_ROOT),
        Hierarchy::Hybrid => PathBuf::from("/sys/fs/cgroup/unified"),
        Hierarchy::V1 => return None,
    };
    let mut cfg = CgroupConfig::new(name, Some(test_path(name)));
    cfg.root = root;
    let cg = Cg(manager(&cfg).unwrap());
    cg.create().unwrap();
    Some(cg)
}

fn v2(cg: &Cg) -> bool {
    cg.state().hierarchy == Hierarchy::V2
}

/// The directory holding `file` (v1: that controller's directory).
fn dir_of(cg: &Cg, file: &str) -> Option<PathBuf> {
    let st = cg.state();
    if st.hierarchy == Hierarchy::V2 {
        return st.paths.unified.filter(|d| d.join(file).exists());
    }
    st.paths.v1.get(crate::fsutil::controller_of(file)).cloned()
}

fn read(cg: &Cg, file: &str) -> String {
    let d = dir_of(cg, file).unwrap_or_else(|| panic!("no directory for {file}"));
    std::fs::read_to_string(d.join(file))
        .unwrap()
        .trim()
        .to_string()
}

fn has(cg: &Cg, file: &str) -> bool {
    dir_of(cg, file).is_some_and(|d| d.join(file).exists())
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn devices(rules: &[(bool, Option<i64>, Option<i64>)]) -> LinuxResources {
    let list = rules
        .iter()
        .map(|&(allow, major, minor)| {
            let mut b = LinuxDeviceCgroupBuilder::default()
                .allow(allow)
                .access("rwm");
            if let (Some(ma), Some(mi)) = (major, minor) {
                b = b.typ(LinuxDeviceType::C).major(ma).minor(mi);
            }
            b.build().unwrap()
        })
        .collect::<Vec<_>>();
    LinuxResourcesBuilder::default()
        .devices(list)
        .build()
        .unwrap()
}

fn open_in(cg: &Cg, paths: &str) -> Vec<String> {
    let mut h = Helper::spawn(&format!("open:{paths}"));
    cg.add_process(h.pid()).unwrap();
    h.release();
    let (st, out) = h.finish();
    assert!(st.success(), "{st:?}");
    out
}

#[test]
fn detect_matches_the_mounts() {
    let expect = if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        Hierarchy::V2
    } else if Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        Hierarchy::Hybrid
    } else {
        Hierarchy::V1
    };
    assert_eq!(detect().unwrap(), expect);
}

#[test]
fn relative_path_is_below_own_cgroup() {
    let name = format!("berth-test-{}-rel", std::process::id());
    let m = manager(&CgroupConfig::new("x", Some(name.clone()))).unwrap();
    let own =
        crate::layout::parse_proc_cgroup(&std::fs::read_to_string("/proc/self/cgroup").unwrap());
    let st = m.state();
    for (ctrl, dir) in &st.paths.v1 {
        let expect = own[ctrl.as_str()].trim_start_matches('/');
        assert!(
            dir.ends_with(Path::new(expect).join(&name)),
            "{ctrl}: {dir:?}"
        );
    }
    if st.hierarchy == Hierarchy::V2 {
        let parent = Path::new(&own[""])
            .parent()
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let want = Path::new(crate::DEFAULT_ROOT)
            .join(parent.strip_prefix("/").unwrap())
            .join(&name);
        assert_eq!(st.paths.unified.unwrap(), want);
    }
    assert!(
        m.paths().iter().all(|p| !p.exists()),
        "manager() must not create anything"
    );
}

#[test]
fn limits_are_applied_and_destroy_kills_the_rest() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("limits");
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 << 20)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(512u64)
                .quota(20_000)
                .period(100_000u64)
                .cpus("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(20).build().unwrap())
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    let mut h = Helper::spawn("sleep");
    cg.add_process(h.pid()).unwrap();
    assert_eq!(cg.pids().unwrap(), vec![h.pid()]);
    let proc_cg = std::fs::read_to_string(format!("/proc/{}/cgroup", h.pid())).unwrap();
    assert!(proc_cg.contains(&test_path("limits")), "{proc_cg}");
    if v2(&cg) {
        assert_eq!(read(&cg, "memory.max"), (64u64 << 20).to_string());
        assert_eq!(
            read(&cg, "cpu.weight"),
            crate::shares_to_weight(512).to_string()
        );
        assert_eq!(read(&cg, "cpu.max"), "20000 100000");
    } else {
        assert_eq!(
            read(&cg, "memory.limit_in_bytes"),
            (64u64 << 20).to_string()
        );
        assert_eq!(read(&cg, "cpu.shares"), "512");
        assert_eq!(read(&cg, "cpu.cfs_quota_us"), "20000");
        assert_eq!(read(&cg, "cpu.cfs_period_us"), "100000");
    }
    assert_eq!(read(&cg, "pids.max"), "20");
    assert_eq!(read(&cg, "cpuset.cpus"), "0");

    let stats = cg.stats().unwrap();
    assert!(stats.pids.current >= 1, "{stats:?}");
    assert_eq!(stats.pids.limit, 20);
    assert_eq!(stats.memory.usage.limit, 64 << 20);
    let json = serde_json::to_value(&stats).unwrap();
    assert_eq!(json["memory"]["usage"]["limit"], 64u64 << 20);

    // An update changes only what it names.
    let upd = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(30).build().unwrap())
        .build()
        .unwrap();
    cg.update(&upd).unwrap();
    assert_eq!(read(&cg, "pids.max"), "30");
    assert_eq!(read(&cg, "cpuset.cpus"), "0");

    // destroy with a live process: killed, directories gone (ancestor too), twice is fine.
    let paths = cg.paths();
    cg.destroy().unwrap();
    let (st, _) = h.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL));
    for p in &paths {
        assert!(!p.exists(), "{p:?} left behind");
        assert!(
            !p.parent().unwrap().exists(),
            "{:?} (created by create) left behind",
            p.parent()
        );
    }
    cg.destroy().unwrap();
}

#[test]
fn checked_update_refuses_limit_below_usage() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("checked");
    if !has(&cg, "memory.limit_in_bytes") && !has(&cg, "memory.max") {
        eprintln!("skipping: no memory controller");
        return;
    }
    let mut h = Helper::spawn("hold");
    cg.add_process(h.pid()).unwrap();
    h.release();
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(4096)
                .check_before_update(true)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    wait_until("memory charged", || {
        cg.stats()
            .map(|s| s.memory.usage.usage > 4096)
            .unwrap_or(false)
    });
    let e = cg.update(&r).unwrap_err().to_string();
    assert!(
        e.starts_with("memory.limit: 4096 is below current usage"),
        "{e}"
    );
}

/// major:minor of a whole block device of this machine, if it has one.
fn some_block_device() -> Option<(i64, i64)> {
    let mut names: Vec<_> = std::fs::read_dir("/sys/block").ok()?.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    names.iter().find_map(|e| {
        let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
        let (ma, mi) = dev.trim().split_once(':')?;
        Some((ma.parse().ok()?, mi.parse().ok()?))
    })
}

#[test]
fn io_weight_and_throttle() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("io");
    let weight = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    match (
        v2(&cg),
        has(&cg, "io.bfq.weight"),
        has(&cg, "io.weight"),
        has(&cg, "blkio.weight"),
    ) {
        (true, true, _, _) => {
            cg.update(&weight).unwrap();
            assert_eq!(read(&cg, "io.bfq.weight"), "default 500");
        }
        (true, false, true, _) => {
            cg.update(&weight).unwrap();
            assert_eq!(
                read(&cg, "io.weight"),
                format!("default {}", crate::blkio_weight_to_io_weight(500))
            );
        }
        (false, _, _, true) => {
            cg.update(&weight).unwrap();
            assert_eq!(read(&cg, "blkio.weight"), "500");
        }
        (false, _, _, false) if has(&cg, "blkio.bfq.weight") => {
            // BFQ shows its v1 weight file only below the root.
            cg.update(&weight).unwrap();
            assert_eq!(read(&cg, "blkio.bfq.weight"), "500");
        }
        _ => {
            // No proportional-weight scheduler here: the error names the field and file.
            let e = cg.update(&weight).unwrap_err().to_string();
            assert!(e.starts_with("blockIO.weight: no /sys/fs/cgroup/"), "{e}");
        }
    }
    let Some((major, minor)) = some_block_device() else {
        eprintln!("skipping throttle: no block device");
        return;
    };
    let throttle = LinuxResourcesBuilder::default()
        .block_io(
            LinuxBlockIoBuilder::default()
                .throttle_read_bps_device(vec![LinuxThrottleDeviceBuilder::default()
                    .major(major)
                    .minor(minor)
                    .rate(1_048_576u64)
                    .build()
                    .unwrap()])
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    cg.update(&throttle).unwrap();
    if v2(&cg) {
        let v = read(&cg, "io.max");
        assert!(v.contains(&format!("{major}:{minor} rbps=1048576 ")), "{v}");
    } else {
        let v = read(&cg, "blkio.throttle.read_bps_device");
        assert!(v.contains(&format!("{major}:{minor} 1048576")), "{v}");
    }
}

#[test]
fn hugetlb_and_unified_when_available() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("hugetlb");
    let file = if v2(&cg) {
        "hugetlb.2MB.max"
    } else {
        "hugetlb.2MB.limit_in_bytes"
    };
    if !has(&cg, file) {
        eprintln!("skipping: no hugetlb controller");
        return;
    }
    let r = LinuxResourcesBuilder::default()
        .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
            .page_size("2MB")
            .limit(4 << 20)
            .build()
            .unwrap()])
        .build()
        .unwrap();
    cg.apply(&r).unwrap();
    assert_eq!(read(&cg, file), (4u64 << 20).to_string());
    let unified = LinuxResourcesBuilder::default()
        .unified(std::collections::HashMap::from([(
            "memory.high".to_string(),
            "52428800".to_string(),
        )]))
        .build()
        .unwrap();
    if v2(&cg) {
        cg.update(&unified).unwrap();
        assert_eq!(read(&cg, "memory.high"), "52428800");
    } else {
        let e = cg.update(&unified).unwrap_err().to_string();
        assert_eq!(e, "unified: not supported on cgroup v1");
    }
}

#[test]
fn failed_apply_removes_created_dirs() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("badapply");
    // A value the kernel rejects (cpuset 9999 does not exist on this machine).
    let r = LinuxResourcesBuilder::default()
        .cpu(LinuxCpuBuilder::default().cpus("9999").build().unwrap())
        .build()
        .unwrap();
    let e = cg.apply(&r).unwrap_err().to_string();
    assert!(
        e.starts_with("cpu.cpus: writing \"9999\" to /sys/fs/cgroup/"),
        "{e}"
    );
    assert!(e.contains("cpuset.cpus failed"), "{e}");
    for p in cg.paths() {
        assert!(!p.parent().unwrap().exists(), "{p:?}: parent left behind");
    }
}

#[test]
fn oom_kill_is_notified() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("oom");
    let swap_file = if v2(&cg) {
        "memory.swap.max"
    } else {
        "memory.memsw.limit_in_bytes"
    };
    let mut mem = LinuxMemoryBuilder::default().limit(32 << 20);
    if has(&cg, swap_file) {
        // No swapping out of trouble: memory+swap equals the limit.
        mem = mem.swap(32 << 20);
    }
    cg.apply(
        &LinuxResourcesBuilder::default()
            .memory(mem.build().unwrap())
            .build()
            .unwrap(),
    )
    .unwrap();
    let mut w = cg.oom_watcher().unwrap();
    let mut h = Helper::spawn("alloc");
    cg.add_process(h.pid()).unwrap();
    h.release();
    let (st, out) = h.finish();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(st.signal(), Some(libc::SIGKILL), "helper said {out:?}");
    let mut pfd = libc::pollfd {
        fd: w.as_fd().as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd; bounded wait only guards against a hang.
    let n = unsafe { libc::poll(&mut pfd, 1, PATIENCE.as_millis() as i32) };
    assert_eq!(n, 1, "no OOM notification");
    match w.wait().unwrap() {
        OomEvent::Oom { count } => assert!(count >= 1),
        other => panic!("{other:?}"),
    }
    let m = cg.stats().unwrap().memory;
    if v2(&cg) {
        assert!(m.usage.failcnt > 0, "memory.events max: {m:?}");
    } else {
        // 6.x kernels no longer keep v1 failcnt for every counter; the peak shows the hit.
        assert_eq!(m.usage.max, 32 << 20, "{m:?}");
    }
}

#[test]
fn pids_limit_makes_fork_fail_with_eagain() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("pids");
    let mut h = Helper::spawn("fork");
    cg.add_process(h.pid()).unwrap();
    // Exactly the tasks (threads) the helper already has: one more fork is too many.
    let current = read(&cg, "pids.current");
    let limit: i64 = current.parse().unwrap();
    cg.apply(
        &LinuxResourcesBuilder::default()
            .pids(LinuxPidsBuilder::default().limit(limit).build().unwrap())
            .build()
            .unwrap(),
    )
    .unwrap();
    h.release();
    let (st, out) = h.finish();
    assert!(st.success());
    assert_eq!(out, vec![format!("errno={}", libc::EAGAIN)]);
}

#[test]
fn freezer_stops_a_counter() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("freezer");
    let tmp = tempfile::tempdir().unwrap();
    let counter = tmp.path().join("n");
    let mut h = Helper::spawn(&format!("count:{}", counter.display()));
    cg.add_process(h.pid()).unwrap();
    h.release();
    let value = || {
        std::fs::read_to_string(&counter)
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    wait_until("counter starts", || value() > 0);
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    let a = value();
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(value(), a, "counter moved while frozen");
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    wait_until("counter resumes", || value() > a);
    drop(h);
}

#[test]
fn device_rules_deny_dev_null() {
    if !is_root() {
        return;
    }
    let cg = host_cgroup("devices");
    // The usual OCI shape: deny everything, then allow a list; /dev/null (1:3) is not on it,
    // /dev/zero (1:5) is.
    cg.apply(&devices(&[(false, None, None), (true, Some(1), Some(5))]))
        .unwrap();
    let out = open_in(&cg, "/dev/null,/dev/zero");
    assert_eq!(
        out,
        vec![
            format!("/dev/null errno={}", libc::EPERM),
            "/dev/zero ok".to_string()
        ]
    );
    // Updates: add /dev/null to the list, then allow everything.
    cg.update(&devices(&[
        (false, None, None),
        (true, Some(1), Some(5)),
        (true, Some(1), Some(3)),
    ]))
    .unwrap();
    assert_eq!(open_in(&cg, "/dev/null"), vec!["/dev/null ok".to_string()]);
    if has(&cg, "devices.list") {
        // The kernel lists in insertion order: 1:3 was added, the list was not reset.
        assert_eq!(read(&cg, "devices.list"), "c 1:5 rwm\nc 1:3 rwm");
    }
    cg.update(&devices(&[(true, None, None)])).unwrap();
    assert_eq!(open_in(&cg, "/dev/null"), vec!["/dev/null ok".to_string()]);
    if has(&cg, "devices.list") {
        assert_eq!(read(&cg, "devices.list"), "a *:* rwm");
    }
}

#[test]
fn v2_device_program_enforced_and_replaced() {
    if !is_root() {
        return;
    }
    let Some(cg) = v2_cgroup("bpfdev") else {
        eprintln!("skipping: no cgroup2 tree");
        return;
    };
    cg.apply(&devices(&[(true, None, None), (false, Some(1), Some(3))]))
        .unwrap();
    let out = open_in(&cg, "/dev/null,/dev/zero");
    assert_eq!(
        out,
        vec![
            format!("/dev/null errno={}", libc::EPERM),
            "/dev/zero ok".to_string()
        ]
    );
    // Update: allow everything; the old program is detached, only the new one remains.
    cg.update(&devices(&[(true, None, None)])).unwrap();
    let dir = std::fs::File::open(&cg.paths()[0]).unwrap();
    assert_eq!(
        crate::bpf::query_device_progs(dir.as_fd()).unwrap().len(),
        1
    );
    assert_eq!(open_in(&cg, "/dev/null"), vec!["/dev/null ok".to_string()]);
}

#[test]
fn v2_freeze_kill_and_processes() {
    if !is_root() {
        return;
    }
    let Some(cg) = v2_cgroup("v2procs") else {
        eprintln!("skipping: no cgroup2 tree");
        return;
    };
    let mut a = Helper::spawn("sleep");
    let mut b = Helper::spawn("sleep");
    cg.add_process(a.pid()).unwrap();
    cg.add_process(b.pid()).unwrap();
    let mut want = vec![a.pid(), b.pid()];
    want.sort();
    assert_eq!(cg.pids().unwrap(), want);
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    assert!(!cg.is_frozen().unwrap());
    use std::os::unix::process::ExitStatusExt;
    // Not SIGKILL: signalled one by one under freeze.
    cg.kill_all(libc::SIGTERM).unwrap();
    assert_eq!(a.finish().0.signal(), Some(libc::SIGTERM));
    assert_eq!(b.finish().0.signal(), Some(libc::SIGTERM));
    // SIGKILL goes through cgroup.kill.
    let mut c = Helper::spawn("sleep");
    cg.add_process(c.pid()).unwrap();
    cg.kill_all(libc::SIGKILL).unwrap();
    assert_eq!(c.finish().0.signal(), Some(libc::SIGKILL));
}

#[test]
fn v2_clone_into_cgroup() {
    if !is_root() {
        return;
    }
    let Some(cg) = v2_cgroup("clone3") else {
        eprintln!("skipping: no cgroup2 tree");
        return;
    };
    let fd = cg.v2_dir_fd().unwrap();
    // SAFETY: the child only calls pause (async-signal-safe) until it is killed.
    let pid = unsafe { crate::fork_into(fd.as_fd(), 0) }.unwrap();
    if pid == 0 {
        loop {
            // SAFETY: pause has no memory effects.
            unsafe { libc::pause() };
        }
    }
    let in_cg = cg.pids();
    let line = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    // SAFETY: signalling and reaping our own child.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
        libc::waitpid(pid, std::ptr::null_mut(), 0);
    }
    assert_eq!(in_cg.unwrap(), vec![pid]);
    assert!(
        line.contains(&format!("0::{}", test_path("clone3"))),
        "{line}"
    );
}
