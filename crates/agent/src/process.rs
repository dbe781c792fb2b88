//! The agent's side of one container process: its shim, output pipes, stdin and exit.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::Mutex;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{ChildStdin, Command};
use tokio::sync::{mpsc, watch};

use crate::proto::{output_chunk::Stream, OutputChunk};
use crate::shim::{ShimMsg, ShimTask, REPORT_FD};

/// Output chunks buffered for a reader that has not come yet; beyond that the process
/// blocks on its pipe, as it would writing to a slow terminal.
const OUTPUT_BACKLOG: usize = 64;
const CHUNK: usize = 32 * 1024;
/// Exit code recorded when the shim itself died without reporting one.
const UNKNOWN_EXIT: i32 = 255;

pub struct Proc {
    pub pid: i32,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    output: Mutex<Option<mpsc::Receiver<OutputChunk>>>,
    exit: watch::Receiver<Option<i32>>,
}

impl Proc {
    /// Start a shim for `task` on container `id`; returns once the process exists (or
    /// with the runtime's one-line reason it could not be made).
    pub async fn spawn(
        exe: &Path,
        runtime_root: &Path,
        id: &str,
        task: &ShimTask,
        stdin: bool,
    ) -> Result<Proc, String> {
        let task = serde_json::to_string(task).map_err(|e| e.to_string())?;
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()
            .map_err(|e| format!("socketpair for the shim: {e}"))?;
        let theirs_fd = theirs.as_raw_fd();
        let mut cmd = Command::new(exe);
        cmd.arg("shim")
            .arg(runtime_root)
            .arg(id)
            .arg(task)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // SAFETY: between fork and exec only dup2/fcntl run (async-signal-safe); they give
        // the child the report socket as fd 3 without the close-on-exec flag, while the
        // parent's copy keeps it (so no other child spawned meanwhile inherits it). dup2
        // onto itself leaves the flag, so then it is cleared by hand.
        unsafe {
            cmd.pre_exec(move || {
                let r = if theirs_fd == REPORT_FD {
                    libc::fcntl(REPORT_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(theirs_fd, REPORT_FD)
                };
                if r < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(|e| format!("{}: {e}", exe.display()))?;
        drop(theirs);
        ours.set_nonblocking(true)
            .map_err(|e| format!("shim socket: {e}"))?;
        let ours =
            tokio::net::UnixStream::from_std(ours).map_err(|e| format!("shim socket: {e}"))?;
        let mut report = BufReader::new(ours).lines();

        let pid = match next_msg(&mut report).await {
            Some(ShimMsg::Created { pid }) => pid,
            Some(ShimMsg::Failed { error }) => {
                let _ = child.wait().await;
                return Err(error);
            }
            other => {
                let status = child.wait().await;
                return Err(format!(
                    "the container monitor ended without creating the process ({other:?}, {status:?})"
                ));
            }
        };

        let (tx, rx) = mpsc::channel(OUTPUT_BACKLOG);
        if let Some(out) = child.stdout.take() {
            tokio::spawn(pump(out, Stream::Stdout, tx.clone()));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(pump(err, Stream::Stderr, tx));
        }
        let (exit_tx, exit) = watch::channel(None);
        let stdin = child.stdin.take();
        tokio::spawn(async move {
            let code = match next_msg(&mut report).await {
                Some(ShimMsg::Exited { code }) => code,
                _ => UNKNOWN_EXIT,
            };
            let _ = child.wait().await;
            let _ = exit_tx.send(Some(code));
        });
        Ok(Proc {
            pid,
            stdin: tokio::sync::Mutex::new(stdin),
            output: Mutex::new(Some(rx)),
            exit,
        })
    }

    /// The exit code once known.
    pub fn exit_code(&self) -> Option<i32> {
        *self.exit.borrow()
    }

    pub async fn wait(&self) -> i32 {
        let mut exit = self.exit.clone();
        let code = exit.wait_for(Option::is_some).await.map(|c| *c);
        code.ok().flatten().unwrap_or(UNKNOWN_EXIT)
    }

    /// The output receiver; only the first caller gets it.
    pub fn take_output(&self) -> Option<mpsc::Receiver<OutputChunk>> {
        self.output.lock().ok().and_then(|mut o| o.take())
    }

    pub async fn write_stdin(&self, data: &[u8]) -> Result<(), String> {
        let mut stdin = self.stdin.lock().await;
        let pipe = stdin.as_mut().ok_or("the process's stdin is not open")?;
        pipe.write_all(data)
            .await
            .map_err(|e| format!("stdin: {e}"))
    }

    pub async fn close_stdin(&self) {
        self.stdin.lock().await.take();
    }
}

async fn next_msg(
    report: &mut tokio::io::Lines<BufReader<tokio::net::UnixStream>>,
) -> Option<ShimMsg> {
    let line = report.next_line().await.ok().flatten()?;
    serde_json::from_str(&line).ok()
}

/// Move one pipe's bytes into the output channel until EOF (or nobody will ever read).
async fn pump(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    stream: Stream,
    tx: mpsc::Sender<OutputChunk>,
) {
    let mut buf = vec![0u8; CHUNK];
    let mut reader = Some(tx);
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let Some(tx) = &reader else { continue };
                let chunk = OutputChunk {
                    stream: stream as i32,
                    data: buf[..n].to_vec(),
                };
                // A reader that went away: keep draining, or the process would block.
                if tx.send(chunk).await.is_err() {
                    reader = None;
                }
            }
        }
    }
}
