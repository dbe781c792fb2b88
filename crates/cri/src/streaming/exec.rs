//! Exec over SPDY with the `v4.channel.k8s.io` remote-command protocol: the client
//! opens one stream per channel (header `streamtype`: error, stdin, stdout, stderr,
//! resize); the process runs through the exec helper (`berth cri exec`), whose stdio
//! are pipes to this server; when it ends, the error stream carries a metav1.Status
//! (`Success`, or `NonZeroExitCode` with the code as the cause `ExitCode`).

use std::os::fd::{AsRawFd, OwnedFd};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use super::session::{self, Event, Sender, Session};
use super::ExecRequest;
use crate::monitor::{ExecMode, ExecResult};
use crate::Cri;

/// How long the client has to open its streams (kubelet: 30 s).
const STREAM_CREATION: Duration = Duration::from_secs(30);
/// After the process exits, how long its output may still drain (a background child
/// may hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

/// The stream ids of the channels, as the client opened them.
#[derive(Default, Debug)]
struct Channels {
    error: Option<u32>,
    stdin: Option<u32>,
    stdout: Option<u32>,
    stderr: Option<u32>,
    resize: Option<u32>,
}

impl Channels {
    fn complete(&self, r: &ExecRequest) -> bool {
        self.error.is_some()
            && (!r.stdin || self.stdin.is_some())
            && (!r.stdout || self.stdout.is_some())
            && (!r.stderr || r.tty || self.stderr.is_some())
            && (!r.tty || self.resize.is_some())
    }
}

/// Wait for the client's streams; streams of unknown type are reset.
async fn channels(s: &mut Session, r: &ExecRequest) -> Option<Channels> {
    let mut c = Channels::default();
    while !c.complete(r) {
        match s.events.recv().await? {
            Event::Stream { id, headers, .. } => {
                let slot = match session::header(&headers, "streamtype") {
                    Some("error") => &mut c.error,
                    Some("stdin") => &mut c.stdin,
                    Some("stdout") => &mut c.stdout,
                    Some("stderr") => &mut c.stderr,
                    Some("resize") => &mut c.resize,
                    _ => {
                        s.tx.reset(id, super::spdy::RST_REFUSED_STREAM).await;
                        continue;
                    }
                };
                *slot = Some(id);
            }
            Event::Closed => return None,
            Event::Data { .. } | Event::Reset { .. } => {}
        }
    }
    Some(c)
}

/// The metav1.Status kubelet writes on the error channel.
pub(super) fn status(outcome: &Result<i32, String>, cmd: &[String]) -> String {
    match outcome {
        Ok(0) => serde_json::json!({"metadata": {}, "status": "Success"}),
        Ok(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        Err(e) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("Internal error occurred: {e}"),
            "reason": "InternalError",
            "details": {"causes": [{"message": e}]},
            "code": 500,
        }),
    }
    .to_string()
}

/// Copy `from` to stream `id` until EOF, then close the stream.
async fn pump(mut from: impl AsyncRead + Unpin, tx: Sender, id: u32) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !tx.data(id, &buf[..n], false).await {
                    return;
                }
            }
        }
    }
    tx.data(id, &[], true).await;
}

/// A terminal size on the resize channel.
#[derive(Deserialize)]
struct Size {
    #[serde(rename = "Width")]
    width: u16,
    #[serde(rename = "Height")]
    height: u16,
}

/// Complete JSON objects in `buf` (what is left is an incomplete one).
pub(super) fn sizes(buf: &mut Vec<u8>) -> Vec<(u16, u16)> {
    let mut out = Vec::new();
    let mut it = serde_json::Deserializer::from_slice(buf).into_iter::<Size>();
    let mut used = 0;
    loop {
        match it.next() {
            Some(Ok(s)) => {
                out.push((s.width, s.height));
                used = it.byte_offset();
            }
            Some(Err(e)) if e.is_eof() => break,
            // Garbage: drop what was sent so far.
            Some(Err(_)) => {
                used = buf.len();
                break;
            }
            None => {
                used = buf.len();
                break;
            }
        }
    }
    buf.drain(..used);
    out
}

/// Run the exec request on an upgraded connection.
pub async fn serve(cri: Arc<Cri>, r: ExecRequest, mut s: Session) {
    let Ok(Some(ch)) = tokio::time::timeout(STREAM_CREATION, channels(&mut s, &r)).await else {
        tracing::info!(
            container = r.container_id,
            "exec: the client did not open its streams"
        );
        return;
    };
    let outcome = run(&cri, &r, &ch, &mut s).await;
    if let Some(id) = ch.error {
        s.tx.data(id, status(&outcome, &r.cmd).as_bytes(), true)
            .await;
    }
    s.finish(Duration::from_secs(5)).await;
}

async fn run(
    cri: &Arc<Cri>,
    r: &ExecRequest,
    ch: &Channels,
    s: &mut Session,
) -> Result<i32, String> {
    let mode = ExecMode {
        stdin: r.stdin,
        tty: r.tty,
        resize_fd: r.tty.then_some(3),
    };
    let (exe, argv, result) = {
        let (cri, r, mode) = (cri.clone(), r.clone(), mode.clone());
        tokio::task::spawn_blocking(move || {
            let ctr = cri.layout.container(&r.container_id)?;
            let result = cri
                .layout
                .container_dir(&ctr.id)
                .join(format!("exec-{}.json", &crate::meta::random_id()?[..16]));
            let (exe, argv) = cri.exec_helper(&ctr.id, &r.cmd, 0, &result, &mode)?;
            Ok::<_, crate::Error>((exe, argv, result))
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?
    };
    let mut cmd = tokio::process::Command::new(exe);
    cmd.args(argv)
        .stdin(if r.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(if ch.stdout.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if ch.stderr.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    // The resize channel reaches the helper as fd 3: lines "WIDTH HEIGHT".
    let resize = if r.tty {
        let (rd, wr) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
        let fd = rd.as_raw_fd();
        // SAFETY: dup2 is async-signal-safe; the pipe's read end lives until spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(fd, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Some((rd, std::fs::File::from(wr)))
    } else {
        None
    };
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("starting the exec helper: {e}"))?;
    let mut resize: Option<std::fs::File> = resize.map(|(rd, wr): (OwnedFd, _)| {
        drop(rd);
        wr
    });
    let pid = child.id().map(|p| nix::unistd::Pid::from_raw(p as i32));
    let mut outputs = Vec::new();
    for (pipe, id) in [
        (
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>),
            ch.stdout,
        ),
        (
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn AsyncRead + Unpin + Send>),
            ch.stderr,
        ),
    ] {
        if let (Some(p), Some(id)) = (pipe, id) {
            outputs.push(tokio::spawn(pump(p, s.tx.clone(), id)));
        }
    }
    let mut stdin = child.stdin.take();
    let mut resize_buf = Vec::new();
    let mut connected = true;
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            ev = s.events.recv(), if connected => match ev {
                Some(Event::Data { id, data, fin }) if Some(id) == ch.stdin => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                    if fin {
                        stdin = None;
                    }
                }
                Some(Event::Reset { id }) if Some(id) == ch.stdin => stdin = None,
                Some(Event::Data { id, data, .. }) if Some(id) == ch.resize => {
                    resize_buf.extend_from_slice(&data);
                    if resize_buf.len() > 4096 {
                        resize_buf.clear();
                    }
                    for (w, h) in sizes(&mut resize_buf) {
                        if let Some(f) = resize.as_mut() {
                            use std::io::Write;
                            let _ = writeln!(f, "{w} {h}");
                        }
                    }
                }
                Some(Event::Closed) | None => {
                    // The client is gone: hang up, as a closed terminal does.
                    connected = false;
                    stdin = None;
                    if let Some(pid) = pid {
                        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP);
                    }
                }
                Some(_) => {}
            },
        }
    };
    drop((stdin, resize));
    for o in outputs {
        let abort = o.abort_handle();
        if tokio::time::timeout(DRAIN, o).await.is_err() {
            abort.abort();
        }
    }
    let res: Option<ExecResult> = crate::meta::read(&result).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(&result);
    match res {
        Some(ExecResult {
            exit_code: Some(code),
            ..
        }) => Ok(code),
        Some(ExecResult { error: Some(e), .. }) => Err(e),
        _ => Err(format!(
            "the exec helper exited ({}) without a result",
            status.map(|s| s.to_string()).unwrap_or_default()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_messages_split_anywhere() {
        let mut b = br#"{"Width":80,"Height":24}{"Width":1"#.to_vec();
        assert_eq!(sizes(&mut b), [(80, 24)]);
        b.extend_from_slice(b"20,\"Height\":40}\n");
        assert_eq!(sizes(&mut b), [(120, 40)]);
        assert!(b.is_empty() || b == b"\n");
        let mut b = b"garbage{".to_vec();
        assert!(sizes(&mut b).is_empty());
        assert!(b.is_empty());
    }

    #[test]
    fn exit_codes_reach_the_status() {
        let cmd = vec!["sh".to_string()];
        let v: serde_json::Value = serde_json::from_str(&status(&Ok(0), &cmd)).unwrap();
        assert_eq!(v["status"], "Success");
        let v: serde_json::Value = serde_json::from_str(&status(&Ok(3), &cmd)).unwrap();
        assert_eq!(v["reason"], "NonZeroExitCode");
        assert_eq!(v["details"]["causes"][0]["reason"], "ExitCode");
        assert_eq!(v["details"]["causes"][0]["message"], "3");
        let v: serde_json::Value =
            serde_json::from_str(&status(&Err("boom".into()), &cmd)).unwrap();
        assert_eq!(v["reason"], "InternalError");
    }
}
