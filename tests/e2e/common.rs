//! Shared fixtures: a busybox rootfs built once per test process, bundles made from
//! `berth spec`, a per-bundle state root, unique container ids, and guards that undo
//! everything (containers, netns, helper processes) even when a test fails.

use std::io::{Read, Seek, SeekFrom};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tempfile::TempDir;

/// A command that runs longer than this is a hang, not a slow machine.
const COMMAND_DEADLINE: Duration = Duration::from_secs(120);

pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

static ROOTFS: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_shared_rootfs() {
    if let Some(dir) = ROOTFS.get() {
        let _ = std::fs::remove_dir_all(dir.parent().expect("rootfs has a parent"));
    }
}

/// The busybox rootfs shared (read-only) by every container of this test process.
/// Built by scripts/busybox-rootfs.sh on first use and removed when the process exits.
pub fn shared_rootfs() -> &'static Path {
    ROOTFS.get_or_init(|| {
        let parent = workspace_root()
            .join("target")
            .join(format!("e2e-rootfs-{}", std::process::id()));
        let dir = parent.join("rootfs");
        build_rootfs(&dir);
        // SAFETY: registers a plain extern "C" fn with no captured state; it runs once at
        // exit (the test harness leaves through libc exit) and only removes our own dir.
        unsafe { libc::atexit(remove_shared_rootfs) };
        dir
    })
}

/// Build a fresh busybox rootfs at `dest`.
fn build_rootfs(dest: &Path) {
    let script = workspace_root().join("scripts/busybox-rootfs.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(dest)
        .output()
        .expect("run busybox-rootfs.sh");
    assert!(
        out.status.success(),
        "busybox-rootfs.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A container id unique to this process and call: `e2e-<pid>-<tag>-<n>`.
pub fn unique_id(tag: &str) -> String {
    format!(
        "e2e-{}-{}-{}",
        std::process::id(),
        tag,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// What a finished command left: exit code (128+N when killed by signal N), stdout, stderr.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    #[track_caller]
    pub fn ok(self) -> Self {
        assert_eq!(self.code, 0, "command failed: {self:?}");
        self
    }

    #[track_caller]
    pub fn failed(self) -> Self {
        assert_ne!(self.code, 0, "command unexpectedly succeeded: {self:?}");
        self
    }
}

/// Run a command to completion with stdin from /dev/null, output captured, and a
/// deadline after which it is killed (so a hang fails the test instead of the suite).
/// Output goes to unlinked temp files, not pipes: a created container's init keeps the
/// caller's stdio open (as runc's does), so a pipe would never reach EOF.
pub fn output_of(cmd: &mut Command) -> Outcome {
    output_with_stdin(cmd, Stdio::null())
}

/// [`output_of`] with the given stdin.
pub fn output_with_stdin(cmd: &mut Command, stdin: Stdio) -> Outcome {
    let out = tempfile::tempfile().expect("stdout file");
    let err = tempfile::tempfile().expect("stderr file");
    let mut child = cmd
        .stdin(stdin)
        .stdout(out.try_clone().expect("dup stdout file"))
        .stderr(err.try_clone().expect("dup stderr file"))
        .spawn()
        .expect("spawn command");
    let status = wait_deadline(&mut child, COMMAND_DEADLINE);
    let read = |mut f: std::fs::File| {
        let mut s = String::new();
        f.seek(SeekFrom::Start(0)).expect("rewind output file");
        f.read_to_string(&mut s).expect("read output file");
        s
    };
    Outcome {
        code: status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        stdout: read(out),
        stderr: read(err),
    }
}

fn wait_deadline(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("wait for command") {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("command still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Poll `cond` until it holds; panics with `what` after a generous limit.
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An OCI bundle in a temp dir plus the state root (`--root`) the test's berth uses.
/// Starts from `berth spec`; `spec` is the parsed config.json that tests edit.
pub struct Bundle {
    pub spec: Value,
    dir: TempDir,
    root: TempDir,
}

impl Bundle {
    /// A bundle on the shared read-only busybox rootfs, terminal off, args `true`.
    pub fn new() -> Bundle {
        let dir = tempfile::Builder::new()
            .prefix("berth-e2e-bundle-")
            .tempdir()
            .expect("bundle dir");
        let root = tempfile::Builder::new()
            .prefix("berth-e2e-root-")
            .tempdir()
            .expect("state root");
        output_of(
            Command::new(berth_bin())
                .arg("spec")
                .arg("--bundle")
                .arg(dir.path()),
        )
        .ok();
        let text = std::fs::read_to_string(dir.path().join("config.json")).expect("spec");
        let mut spec: Value = serde_json::from_str(&text).expect("berth spec is JSON");
        spec["root"]["path"] = json!(shared_rootfs());
        spec["process"]["terminal"] = json!(false);
        spec["process"]["args"] = json!(["true"]);
        Bundle { spec, dir, root }
    }

    /// A bundle with its own writable copy of the rootfs at `<bundle>/rootfs`.
    pub fn with_own_rootfs() -> Bundle {
        let mut b = Bundle::new();
        let rootfs = b.path().join("rootfs");
        output_of(
            Command::new("cp")
                .arg("-a")
                .arg(shared_rootfs())
                .arg(&rootfs),
        )
        .ok();
        b.spec["root"] = json!({"path": "rootfs", "readonly": false});
        b
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The state root passed as `--root`.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The host path of the container's rootfs.
    pub fn rootfs(&self) -> PathBuf {
        let p = PathBuf::from(self.spec["root"]["path"].as_str().expect("root.path"));
        self.path().join(p)
    }

    /// process.args = ["sh", "-c", script].
    pub fn sh(&mut self, script: &str) -> &mut Self {
        self.spec["process"]["args"] = json!(["sh", "-c", script]);
        self
    }

    /// Append to a JSON array at `pointer` (e.g. "/mounts"), creating it if absent.
    pub fn push(&mut self, pointer: &str, item: Value) -> &mut Self {
        let slot = ensure_pointer(&mut self.spec, pointer);
        if !slot.is_array() {
            *slot = json!([]);
        }
        slot.as_array_mut().expect("array").push(item);
        self
    }

    /// Remove every namespace of `typ` from linux.namespaces.
    pub fn drop_namespace(&mut self, typ: &str) -> &mut Self {
        if let Some(a) = self.spec["linux"]["namespaces"].as_array_mut() {
            a.retain(|n| n["type"] != typ);
        }
        self
    }

    /// Set (or add) the namespace of `typ`, optionally with a path to join.
    pub fn namespace(&mut self, typ: &str, path: Option<&str>) -> &mut Self {
        self.drop_namespace(typ);
        let ns = match path {
            Some(p) => json!({"type": typ, "path": p}),
            None => json!({"type": typ}),
        };
        self.push("/linux/namespaces", ns)
    }

    pub fn write(&self) {
        std::fs::write(
            self.path().join("config.json"),
            serde_json::to_vec_pretty(&self.spec).expect("serialize spec"),
        )
        .expect("write config.json");
    }

    /// A `berth --root <root> ARGS` command.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// Run `berth --root <root> ARGS` to completion.
    pub fn berth(&self, args: &[&str]) -> Outcome {
        output_of(&mut self.cmd(args))
    }

    /// Write config.json, then `berth run --bundle <dir> <id>` in the foreground.
    pub fn run(&self) -> Outcome {
        let id = unique_id("run");
        let _guard = self.guard(&id);
        self.write();
        let dir = self.path().to_str().expect("utf-8 bundle path").to_owned();
        self.berth(&["run", "--bundle", &dir, &id])
    }

    /// Write config.json and `berth create` a container; the guard deletes it.
    pub fn create(&self, tag: &str) -> Guard<'_> {
        let id = unique_id(tag);
        let guard = self.guard(&id);
        self.write();
        let dir = self.path().to_str().expect("utf-8 bundle path").to_owned();
        self.berth(&["create", "--bundle", &dir, &id]).ok();
        guard
    }

    /// A guard that runs `berth delete --force <id>` when dropped.
    pub fn guard(&self, id: &str) -> Guard<'_> {
        Guard {
            bundle: self,
            id: id.to_owned(),
        }
    }
}

fn ensure_pointer<'a>(v: &'a mut Value, pointer: &str) -> &'a mut Value {
    let mut cur = v;
    for key in pointer.split('/').skip(1) {
        if !cur.is_object() {
            *cur = json!({});
        }
        cur = cur
            .as_object_mut()
            .expect("object")
            .entry(key)
            .or_insert(Value::Null);
    }
    cur
}

/// Deletes its container (`delete --force`) on drop, whatever state it is in.
pub struct Guard<'a> {
    pub bundle: &'a Bundle,
    pub id: String,
}

impl Guard<'_> {
    pub fn berth(&self, args: &[&str]) -> Outcome {
        self.bundle.berth(args)
    }

    /// `berth state <id>` parsed.
    pub fn state(&self) -> Value {
        let out = self.berth(&["state", &self.id]).ok();
        serde_json::from_str(&out.stdout).expect("state is JSON")
    }

    pub fn status(&self) -> String {
        self.state()["status"]
            .as_str()
            .expect("status string")
            .to_owned()
    }

    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().expect("pid number") as i32
    }

    #[track_caller]
    pub fn wait_status(&self, want: &str) {
        wait_until(&format!("{} to be {want}", self.id), || {
            self.status() == want
        });
    }

    pub fn start(&self) -> Outcome {
        self.berth(&["start", &self.id])
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.bundle.berth(&["delete", "--force", &self.id]);
    }
}

/// The test process's own namespace link, e.g. `net:[4026531840]`.
pub fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}"))
        .expect("read own ns link")
        .to_string_lossy()
        .into_owned()
}

/// The line of /proc/self/mountinfo output (`text`) whose mount point is `mnt`.
pub fn mountinfo_line<'a>(text: &'a str, mnt: &str) -> Option<&'a str> {
    text.lines().rfind(|l| l.split(' ').nth(4) == Some(mnt))
}

/// The per-mount options field (6th) of a mountinfo line, split on commas.
pub fn mount_opts(line: &str) -> Vec<String> {
    line.split(' ')
        .nth(5)
        .unwrap_or("")
        .split(',')
        .map(str::to_owned)
        .collect()
}

/// Assert that a failed create/run left nothing behind: no state dir, no cgroup under
/// any hierarchy, no process mentioning the id or bundle or rooted in it, no host mount
/// of the bundle. Give the bundle its own rootfs, so that its processes are told apart
/// from those of concurrent tests on the shared rootfs.
#[track_caller]
pub fn assert_nothing_left(bundle: &Bundle, id: &str) {
    assert!(
        !bundle.root().join(id).exists(),
        "state dir of {id} left behind"
    );
    let leftovers: Vec<_> = std::fs::read_dir(bundle.root())
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "state root not empty: {leftovers:?}");
    for ctrl in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup root")
        .flatten()
    {
        let dir = ctrl.path().join(format!("berth-{id}"));
        assert!(!dir.exists(), "cgroup {} left behind", dir.display());
    }
    let bundle_path = bundle.path().to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").expect("/proc").flatten() {
        if !p
            .file_name()
            .to_string_lossy()
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            continue;
        }
        let cmdline = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // A container init's cmdline is just "berth init": it is recognised by its root
        // or cwd inside the bundle (the bundle must have its own rootfs for that).
        let inside = ["root", "cwd"].iter().any(|l| {
            std::fs::read_link(p.path().join(l))
                .map(|t| t.starts_with(bundle.path()))
                .unwrap_or(false)
        });
        assert!(
            !inside && !cmdline.contains(id) && !cmdline.contains(&bundle_path),
            "process {} left behind: {cmdline}",
            p.path().display()
        );
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&bundle_path) && !mounts.contains(id),
        "host mount of {id} or {bundle_path} left behind"
    );
}

/// A process kept alive for a test (e.g. to own a namespace); killed and reaped on drop.
pub struct Helper(pub Child);

impl Helper {
    pub fn spawn(cmd: &mut Command) -> Helper {
        Helper(cmd.spawn().expect("spawn helper"))
    }

    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Receives the pty master that berth sends over `--console-socket`.
fn receive_fd(listener: &UnixListener) -> OwnedFd {
    receive_fd_with_data(listener).1
}

/// Accept one connection and receive one message with one fd (SCM_RIGHTS).
pub fn receive_fd_with_data(listener: &UnixListener) -> (Vec<u8>, OwnedFd) {
    let (conn, _) = listener.accept().expect("berth connects to the socket");
    let mut data = vec![0u8; 64 * 1024];
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // Room for one cmsghdr carrying one fd, aligned as cmsg requires.
    let mut control = [0u64; 8];
    // SAFETY: zeroed msghdr is a valid empty header; the pointers set below point to
    // live locals that outlive the recvmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: conn is an open socket and msg describes valid buffers.
    let n = unsafe { libc::recvmsg(conn.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    assert!(n >= 0, "recvmsg: {}", std::io::Error::last_os_error());
    // SAFETY: msg was filled by recvmsg; CMSG_FIRSTHDR checks controllen itself.
    let cmsg = unsafe { libc::CMSG_FIRSTHDR(&msg) };
    assert!(!cmsg.is_null(), "no control message with the pty master");
    // SAFETY: cmsg is non-null and inside `control`.
    let (level, typ) = unsafe { ((*cmsg).cmsg_level, (*cmsg).cmsg_type) };
    assert_eq!((level, typ), (libc::SOL_SOCKET, libc::SCM_RIGHTS));
    // SAFETY: an SCM_RIGHTS message carries at least one int fd in its data.
    let fd = unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<libc::c_int>()) };
    data.truncate(n as usize);
    // SAFETY: the kernel installed this fd for us; we are its only owner.
    (data, unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Read a pty master until the other side is closed (EIO) and return the text without
/// carriage returns.
pub fn read_pty(master: OwnedFd) -> String {
    let mut pty = std::fs::File::from(master);
    let mut text = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match pty.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.raw_os_error() == Some(libc::EIO) => break,
            Err(e) => panic!("reading the pty master: {e}"),
        }
    }
    String::from_utf8_lossy(&text).replace('\r', "")
}

/// A unix socket for `--console-socket` and the thread that receives the pty master.
pub struct ConsoleSocket {
    _dir: TempDir,
    path: String,
    receiver: std::thread::JoinHandle<OwnedFd>,
}

impl ConsoleSocket {
    pub fn new() -> ConsoleSocket {
        let dir = tempfile::tempdir().expect("socket dir");
        let path = dir.path().join("console.sock");
        let listener = UnixListener::bind(&path).expect("bind console socket");
        ConsoleSocket {
            path: path.to_str().expect("utf-8 path").to_owned(),
            _dir: dir,
            receiver: std::thread::spawn(move || receive_fd(&listener)),
        }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    /// The pty master berth sent (blocks until it has).
    pub fn master(self) -> OwnedFd {
        self.receiver.join().expect("console receiver thread")
    }
}
