//! The per-container monitor (`berth cri monitor`), as conmon is for CRI-O: a small
//! process, nobody's child (it forks away from the server at once), that
//!
//! 1. creates the container in the runtime with init's stdout and stderr on two pipes
//!    (init waits for `start`, which the server sends through the runtime),
//! 2. reports `ok <init pid> <monitor pid>` (or `error <message>`) on its stdout,
//! 3. copies both pipes into the CRI log (`<RFC 3339 nano> <stdout|stderr> <P|F> <line>`),
//! 4. as subreaper, waits for init, releases the runtime state (cgroup, state dir) and
//!    then records `exit.json` (code, time, OOM kill); the bundle stays until removal.
//!
//! The server can be restarted or killed at any time: the monitor does not need it.
//! The helper behind ExecSync (`berth cri exec`) lives here too: it shares the
//! subreaper-and-wait logic.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use serde::{Deserialize, Serialize};

use crate::error::{sys, Error, IoContext, Result};
use crate::meta::{self, Container, Exit};

/// The longest line written as one log entry; longer ones are split into `P` entries.
const MAX_LINE: usize = 16 * 1024;

/// Whether `pid` is a live process (not a zombie).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|state| !matches!(state, 'Z' | 'X'))
    })
}

/// Whether `pid` is still the monitor of container `id` (not a process that reused
/// the pid after the monitor died).
pub fn is_monitor(pid: i32, id: &str) -> bool {
    pid > 0
        && alive(pid)
        && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let args: Vec<&[u8]> = c.split(|b| *b == 0).collect();
            args.windows(2)
                .any(|w| w == [&b"monitor"[..], &b"--runtime-root"[..]])
                && args.contains(&id.as_bytes())
        })
}

fn redirect(fd: &impl AsRawFd, target: i32) -> Result<()> {
    // SAFETY: dup2 on fds this process owns.
    if unsafe { libc::dup2(fd.as_raw_fd(), target) } < 0 {
        return Err(sys(format!("dup2 onto fd {target}"))(nix::Error::last()));
    }
    Ok(())
}

fn dev_null() -> Result<File> {
    File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .at("/dev/null")
}

fn subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
}

/// Exit code the way a shell reports it.
fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Reap children until `pid` exits, or until `deadline`. `Ok(None)`: timed out.
fn wait_for(pid: Pid, deadline: Option<Instant>) -> Result<Option<i32>> {
    loop {
        let flags = deadline.map(|_| WaitPidFlag::WNOHANG);
        match waitpid(None, flags) {
            Ok(ws) if ws.pid() == Some(pid) => {
                if let Some(c) = exit_code(ws) {
                    return Ok(Some(c));
                }
            }
            Ok(WaitStatus::StillAlive) => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(None);
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Ok(_) | Err(nix::errno::Errno::EINTR) => {}
            // Not ours to reap (should not happen: we are its subreaper).
            Err(nix::errno::Errno::ECHILD) => return Ok(Some(255)),
            Err(e) => return Err(sys("waitpid")(e)),
        }
    }
}

/// One CRI log entry.
fn entry(stream: &str, partial: bool, line: &[u8]) -> Vec<u8> {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let mut out = format!("{ts} {stream} {} ", if partial { "P" } else { "F" }).into_bytes();
    out.extend_from_slice(line);
    out.push(b'\n');
    out
}

/// Set by SIGUSR1 (ReopenContainerLog, after kubelet rotated the file away).
static REOPEN: AtomicBool = AtomicBool::new(false);

extern "C" fn on_reopen(_: libc::c_int) {
    REOPEN.store(true, Ordering::SeqCst);
}

/// SIGUSR1 asks the monitor to reopen its log path; reads are restarted, not failed.
fn handle_reopen() {
    let action = nix::sys::signal::SigAction::new(
        nix::sys::signal::SigHandler::Handler(on_reopen),
        nix::sys::signal::SaFlags::SA_RESTART,
        nix::sys::signal::SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    let _ = unsafe { nix::sys::signal::sigaction(Signal::SIGUSR1, &action) };
}

/// The container's log file, shared by the stdout and stderr copiers.
struct Log {
    file: Mutex<File>,
    /// Where it is reopened on SIGUSR1 (`None`: output discarded).
    path: Option<std::path::PathBuf>,
    /// Attached clients: each gets every chunk of output as [`attach_frame`]s.
    attached: Mutex<Vec<UnixStream>>,
}

/// How output reaches an attached client: the stream (1 stdout, 2 stderr), the
/// length (u32, big-endian), the bytes.
pub fn attach_frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(stream);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

fn open_log(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).at(parent)?;
    }
    File::options()
        .create(true)
        .append(true)
        .open(path)
        .at(path)
}

impl Log {
    /// Copy raw output to the attached clients; one that cannot take it within a
    /// second is dropped rather than holding the container's output back.
    fn tee(&self, stream: u8, data: &[u8]) {
        let Ok(mut clients) = self.attached.lock() else {
            return;
        };
        if clients.is_empty() {
            return;
        }
        let frame = attach_frame(stream, data);
        clients.retain_mut(|c| c.write_all(&frame).is_ok());
    }

    fn write(&self, bytes: &[u8]) {
        let Ok(mut f) = self.file.lock() else { return };
        if REOPEN.swap(false, Ordering::SeqCst) {
            if let Some(new) = self.path.as_deref().and_then(|p| open_log(p).ok()) {
                *f = new;
            }
        }
        let _ = f.write_all(bytes);
    }
}

/// Copy `pipe` into `log` as CRI log entries until EOF.
fn copy_log(mut pipe: File, stream: &'static str, log: Arc<Log>) {
    let mut buf = vec![0u8; 32 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let write = |bytes: Vec<u8>| log.write(&bytes);
    let id = if stream == "stdout" { 1 } else { 2 };
    loop {
        let n = match pipe.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        log.tee(id, &buf[..n]);
        pending.extend_from_slice(&buf[..n]);
        loop {
            match pending.iter().position(|b| *b == b'\n') {
                Some(i) if i <= MAX_LINE => {
                    write(entry(stream, false, &pending[..i]));
                    pending.drain(..=i);
                }
                _ if pending.len() >= MAX_LINE => {
                    write(entry(stream, true, &pending[..MAX_LINE]));
                    pending.drain(..MAX_LINE);
                }
                _ => break,
            }
        }
    }
    if !pending.is_empty() {
        write(entry(stream, false, &pending));
    }
}

/// Accept attach clients: each is added to the output fan-out, and what it sends goes
/// to the container's stdin (if it has one); its EOF detaches it, and with
/// `stdin_once` also closes the container's stdin.
fn serve_attach((listener, stdin, once): (UnixListener, Option<File>, bool), log: Arc<Log>) {
    let stdin = Arc::new(Mutex::new(stdin));
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
            let (Ok(out), Ok(mut input)) = (conn.try_clone(), conn.try_clone()) else {
                continue;
            };
            if let Ok(mut clients) = log.attached.lock() {
                clients.push(out);
            }
            let stdin = stdin.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match input.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            let Ok(mut s) = stdin.lock() else { break };
                            if let Some(f) = s.as_mut() {
                                if f.write_all(&buf[..n]).is_err() {
                                    *s = None;
                                }
                            }
                        }
                    }
                }
                if once {
                    if let Ok(mut s) = stdin.lock() {
                        *s = None;
                    }
                }
            });
        }
    });
}

/// `berth cri monitor --runtime-root R --dir D ID`: returns the process exit code.
/// Call only while this process has a single thread (it forks).
pub fn run(runtime_root: &Path, dir: &Path, id: &str) -> i32 {
    // SAFETY: single-threaded (documented above), so the child may run arbitrary code.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { .. }) => return 0,
        Ok(ForkResult::Child) => {}
        Err(e) => {
            println!("error fork: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    // Hold no directory of the server's (it may be unmounted while the container runs).
    let _ = std::env::set_current_dir("/");
    // The report channel: stdout as the server passed it, kept off the container.
    let status =
        match nix::fcntl::fcntl(std::io::stdout(), nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(3)) {
            // SAFETY: a fresh fd from F_DUPFD_CLOEXEC, owned by nobody else.
            Ok(fd) => unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) },
            Err(e) => {
                println!("error dup stdout: {e}");
                return 1;
            }
        };
    let code = monitor(runtime_root, dir, id, status);
    // SAFETY: leave without running destructors of state shared with the parent.
    unsafe { libc::_exit(code) }
}

fn monitor(runtime_root: &Path, dir: &Path, id: &str, mut status: File) -> i32 {
    let runtime = berth_runtime::Runtime::new(runtime_root);
    let created = (|| -> Result<_> {
        let c: Container = meta::read(&dir.join(meta::CONTAINER))?
            .ok_or_else(|| Error::ContainerNotFound(id.to_string()))?;
        let log = Log {
            file: Mutex::new(match &c.log_path {
                Some(p) => open_log(p)?,
                None => dev_null()?,
            }),
            path: c.log_path.clone(),
            attached: Mutex::new(Vec::new()),
        };
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?;
        let null = dev_null()?;
        let stdin = match c.stdin {
            true => Some(nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(sys("pipe2"))?),
            false => None,
        };
        match &stdin {
            Some((r, _)) => redirect(r, 0)?,
            None => redirect(&null, 0)?,
        }
        redirect(&out_w, 1)?;
        redirect(&err_w, 2)?;
        subreaper();
        let made = runtime.create(
            id,
            &berth_runtime::CreateOptions {
                bundle: c.bundle.clone(),
                ..Default::default()
            },
        );
        // Our copies of the write ends go, so the pipes end when the container's do.
        redirect(&null, 0)?;
        redirect(&null, 1)?;
        redirect(&null, 2)?;
        drop((out_w, err_w));
        let created = made?;
        let dir_fd = File::open(dir).at(dir)?;
        let sock = meta::attach_socket_path(&dir_fd);
        let _ = std::fs::remove_file(&sock);
        let listener = UnixListener::bind(&sock).at(dir.join(meta::ATTACH_SOCKET))?;
        let stdin = stdin.map(|(_, w)| File::from(w));
        Ok((created, log, out_r, err_r, (listener, stdin, c.stdin_once)))
    })();
    let (created, log, out_r, err_r, attach) = match created {
        Ok(c) => c,
        Err(e) => {
            let _ = writeln!(status, "error {}", e.to_string().replace('\n', " "));
            let _ = runtime.delete(id, true);
            return 1;
        }
    };
    let oom = Arc::new(AtomicBool::new(false));
    if let Ok(mut w) = runtime.oom_watcher(id) {
        let oom = oom.clone();
        std::thread::spawn(move || {
            while let Ok(berth_runtime::cgroup::OomEvent::Oom { .. }) = w.wait() {
                oom.store(true, Ordering::SeqCst);
            }
        });
    }
    handle_reopen();
    let log = Arc::new(log);
    serve_attach(attach, log.clone());
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    for (fd, stream) in [(out_r, "stdout"), (err_r, "stderr")] {
        let (log, done) = (log.clone(), done_tx.clone());
        std::thread::spawn(move || {
            copy_log(File::from(fd as OwnedFd), stream, log);
            let _ = done.send(());
        });
    }
    let _ = writeln!(status, "ok {} {}", created.pid, std::process::id());
    drop(status);
    let code = wait_for(created.pid, None).ok().flatten().unwrap_or(255);
    // The pipes end when the last process holding them does; do not wait forever for
    // one that escaped the container's PID namespace.
    for _ in 0..2 {
        let _ = done_rx.recv_timeout(Duration::from_secs(2));
    }
    let _ = log.file.lock().map(|f| f.sync_all());
    let exit = Exit {
        code,
        finished_at: meta::now_nanos(),
        oom_killed: oom.load(Ordering::SeqCst),
    };
    // Release the runtime state first: once exit.json exists, the server may remove
    // the container, and nothing of it may still be in use then.
    let _ = runtime.delete(id, true);
    if let Err(e) = meta::write_atomic(&dir.join(meta::EXIT), &exit) {
        tracing::warn!(id, error = %e, "recording the exit");
    }
    0
}

/// What the ExecSync helper reports through its result file.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExecResult {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub error: Option<String>,
}

/// How the exec helper connects the process: ExecSync gives it no stdin; the
/// streaming server passes its stdin pipe and may ask for a terminal, whose size then
/// arrives as lines `WIDTH HEIGHT` on `resize_fd`; the client's first size, when it came
/// before the start, is the terminal's size from the beginning (`process.consoleSize`).
#[derive(Clone, Debug, Default)]
pub struct ExecMode {
    pub stdin: bool,
    pub tty: bool,
    pub resize_fd: Option<i32>,
    /// (width, height).
    pub console_size: Option<(u16, u16)>,
}

impl ExecMode {
    /// The helper's flags for this mode.
    pub fn args(&self) -> Vec<String> {
        let mut a = Vec::new();
        if self.stdin {
            a.push("--stdin".to_string());
        }
        if self.tty {
            a.push("--tty".to_string());
        }
        if let Some(fd) = self.resize_fd {
            a.extend(["--resize-fd".to_string(), fd.to_string()]);
        }
        if let Some((w, h)) = self.console_size {
            a.extend(["--console-size".to_string(), format!("{w}x{h}")]);
        }
        a
    }
}

/// Apply each `WIDTH HEIGHT` line read from `fd` to the pty `master` (TIOCSWINSZ, which
/// also sends SIGWINCH to the terminal's foreground process group).
fn resize_from(fd: i32, master: &File) -> Result<()> {
    use std::io::BufRead;
    // SAFETY: the server passed this fd to us for this purpose only; we own it now.
    let pipe = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let master = master.try_clone().at("pty master")?;
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut it = line.split_whitespace().map(|n| n.parse::<u16>());
            if let (Some(Ok(w)), Some(Ok(h))) = (it.next(), it.next()) {
                let ws = libc::winsize {
                    ws_row: h,
                    ws_col: w,
                    ws_xpixel: 0,
                    ws_ypixel: 0,
                };
                // SAFETY: TIOCSWINSZ reads a winsize we own from a pty master we own.
                unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
            }
        }
    });
    Ok(())
}

/// `berth cri exec --runtime-root R --timeout S --result FILE [--stdin] [--tty]
/// [--resize-fd N] ID -- CMD...`: run CMD in the container with this process's stdio
/// (a terminal proxied to it with `--tty`), wait (killing it after S seconds, 0 = no
/// limit, and then forwarding signals to it), and write an [`ExecResult`] to FILE.
/// Returns the exit code.
pub fn exec(
    runtime_root: &Path,
    id: &str,
    cmd: &[String],
    timeout: u64,
    result: &Path,
    mode: &ExecMode,
) -> i32 {
    let r = (|| -> Result<ExecResult> {
        let runtime = berth_runtime::Runtime::new(runtime_root);
        if !mode.stdin {
            redirect(&dev_null()?, 0)?;
        }
        subreaper();
        let base = runtime.base_process(id)?;
        let mut v = serde_json::to_value(&base).expect("process serializes");
        v["args"] = serde_json::json!(cmd);
        v["terminal"] = serde_json::json!(mode.tty);
        if let (true, Some((w, h))) = (mode.tty, mode.console_size) {
            v["consoleSize"] = serde_json::json!({"width": w, "height": h});
        }
        let process =
            serde_json::from_value(v).map_err(|e| crate::error::invalid("cmd", e.to_string()))?;
        let console = match mode.tty {
            true => Some(berth_runtime::foreground::ConsoleSocket::bind(id)?),
            false => None,
        };
        let mask = berth_runtime::foreground::signal_mask();
        if timeout == 0 {
            mask.thread_block().map_err(sys("block signals"))?;
        }
        let pid = runtime.exec(
            id,
            &berth_runtime::ExecOptions {
                process,
                console_socket: console.as_ref().map(|c| c.path.clone()),
                preserve_fds: 0,
                pid_file: None,
            },
        )?;
        let exited = |code: Option<i32>| ExecResult {
            exit_code: Some(code.unwrap_or(255)),
            timed_out: false,
            error: None,
        };
        if timeout == 0 {
            let master = match &console {
                Some(c) => Some(c.receive()?),
                None => None,
            };
            if let (Some(fd), Some(m)) = (mode.resize_fd, &master) {
                resize_from(fd, m)?;
            }
            let code = match master {
                Some(m) => {
                    berth_runtime::foreground::wait_attached(pid, Some(m), mode.stdin, &mask)?
                }
                None => berth_runtime::foreground::wait_for(pid, Some(&mask), None)?,
            };
            return Ok(exited(code));
        }
        let deadline = Instant::now() + Duration::from_secs(timeout);
        match wait_for(pid, Some(deadline))? {
            Some(code) => Ok(exited(Some(code))),
            None => {
                let _ = kill(pid, Signal::SIGKILL);
                let _ = wait_for(pid, Some(Instant::now() + Duration::from_secs(5)));
                Ok(ExecResult {
                    exit_code: None,
                    timed_out: true,
                    error: None,
                })
            }
        }
    })()
    .unwrap_or_else(|e| ExecResult {
        exit_code: None,
        timed_out: false,
        error: Some(e.to_string()),
    });
    let code = r.exit_code.unwrap_or(255);
    if meta::write_atomic(result, &r).is_err() {
        return 255;
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_follow_the_cri_format() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        let log = Arc::new(Log {
            file: Mutex::new(File::create(&p).unwrap()),
            path: Some(p.clone()),
            attached: Mutex::new(Vec::new()),
        });
        let src = d.path().join("in");
        let long = "x".repeat(MAX_LINE + 10);
        std::fs::write(&src, format!("one\ntwo\n{long}\ntail")).unwrap();
        copy_log(File::open(&src).unwrap(), "stdout", log);
        let text = std::fs::read_to_string(&p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        let parts: Vec<Vec<&str>> = lines.iter().map(|l| l.splitn(4, ' ').collect()).collect();
        assert!(chrono::DateTime::parse_from_rfc3339(parts[0][0]).is_ok());
        assert_eq!(parts[0][1..], ["stdout", "F", "one"]);
        assert_eq!(parts[1][1..], ["stdout", "F", "two"]);
        assert_eq!(parts[2][2], "P");
        assert_eq!(parts[2][3].len(), MAX_LINE);
        assert_eq!(parts[3][1..], ["stdout", "F", "xxxxxxxxxx"]);
        assert_eq!(parts[4][1..], ["stdout", "F", "tail"]);
    }
}
