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

/// Copy `from` to channel `ch` until EOF, then close the channel.
async fn pump(mut from: impl AsyncRead + Unpin, out: Out, ch: u8) {
    let mut buf = vec![0u8; 32 << 10];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if !out.write(ch, &buf[..n]).await {
                    return;
                }
            }
        }
    }
    out.close(ch).await;
}

/// How long a terminal exec waits for the client's first size before it starts anyway.
const FIRST_SIZE_WAIT: Duration = Duration::from_secs(1);

/// What arrived while waiting for the first size, then the client's input.
async fn next_input(
    early: &mut std::collections::VecDeque<Input>,
    inputs: &mut tokio::sync::mpsc::Receiver<Input>,
) -> Option<Input> {
    match early.pop_front() {
        Some(ev) => Some(ev),
        None => inputs.recv().await,
    }
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

/// The channel numbers (a WebSocket message's first byte; SPDY streams by type).
pub(super) const STDIN: u8 = 0;
pub(super) const STDOUT: u8 = 1;
pub(super) const STDERR: u8 = 2;
pub(super) const ERROR: u8 = 3;
pub(super) const RESIZE: u8 = 4;

/// What the client sends, whatever the transport.
pub(super) enum Input {
    Data(u8, Vec<u8>),
    /// The client closed this channel.
    End(u8),
    /// The connection is gone.
    Gone,
}

/// Where output goes: SPDY streams, or channels of a WebSocket.
#[derive(Clone)]
pub(super) enum Out {
    Spdy(Sender, [Option<u32>; 5]),
    Ws(super::websocket::Writer),
}

impl Out {
    fn has(&self, ch: u8) -> bool {
        match self {
            Out::Spdy(_, ids) => ids[ch as usize].is_some(),
            Out::Ws(_) => true,
        }
    }

    async fn write(&self, ch: u8, data: &[u8]) -> bool {
        match self {
            Out::Spdy(tx, ids) => match ids[ch as usize] {
                Some(id) => tx.data(id, data, false).await,
                None => true,
            },
            Out::Ws(w) => w.send(ch, data).await,
        }
    }

    /// The end of a channel: a FIN on SPDY. On a WebSocket the channels end with the
    /// connection (the v5 close message `[255, ch]` goes from client to server only:
    /// client-go discards it from a server).
    async fn close(&self, ch: u8) {
        if let Out::Spdy(tx, ids) = self {
            if let Some(id) = ids[ch as usize] {
                tx.data(id, &[], true).await;
            }
        }
    }
}

/// Run the exec request on an upgraded SPDY connection.
pub async fn serve(cri: Arc<Cri>, r: ExecRequest, mut s: Session) {
    let Ok(Some(ch)) = tokio::time::timeout(STREAM_CREATION, channels(&mut s, &r)).await else {
        tracing::info!(
            container = r.container_id,
            "exec: the client did not open its streams"
        );
        return;
    };
    let ids = [ch.stdin, ch.stdout, ch.stderr, ch.error, ch.resize];
    let out = Out::Spdy(s.tx.clone(), ids);
    let (itx, mut inputs) = tokio::sync::mpsc::channel(16);
    let adapter = tokio::spawn(async move {
        while let Some(ev) = s.events.recv().await {
            let input = match ev {
                Event::Data { id, data, fin } => {
                    let Some(c) = ids.iter().position(|i| *i == Some(id)) else {
                        continue;
                    };
                    if !data.is_empty() && itx.send(Input::Data(c as u8, data)).await.is_err() {
                        break;
                    }
                    if !fin {
                        continue;
                    }
                    Input::End(c as u8)
                }
                Event::Reset { id } => match ids.iter().position(|i| *i == Some(id)) {
                    Some(c) => Input::End(c as u8),
                    None => continue,
                },
                Event::Closed => Input::Gone,
                Event::Stream { .. } => continue,
            };
            let gone = matches!(input, Input::Gone);
            let _ = itx.send(input).await;
            if gone {
                break;
            }
        }
        s
    });
    let outcome = run(&cri, &r, &out, &mut inputs).await;
    out.write(ERROR, status(&outcome, &r.cmd).as_bytes()).await;
    out.close(ERROR).await;
    drop(inputs);
    if let Out::Spdy(tx, _) = &out {
        tx.goaway(0).await;
    }
    // Give the client a moment to close the connection itself.
    let _ = tokio::time::timeout(Duration::from_secs(5), adapter).await;
}

/// Run the exec request on an upgraded WebSocket (`v5`: channel close messages).
pub async fn serve_ws(
    cri: Arc<Cri>,
    r: ExecRequest,
    w: super::websocket::Writer,
    mut messages: tokio::sync::mpsc::Receiver<Vec<u8>>,
    v5: bool,
) {
    let out = Out::Ws(w.clone());
    let (itx, mut inputs) = tokio::sync::mpsc::channel(16);
    let adapter = tokio::spawn(async move {
        while let Some(m) = messages.recv().await {
            let input = match m.split_first() {
                Some((255, [c])) if v5 => Input::End(*c),
                Some((&c, data)) if c <= RESIZE && !data.is_empty() => {
                    Input::Data(c, data.to_vec())
                }
                _ => continue,
            };
            if itx.send(input).await.is_err() {
                return;
            }
        }
        let _ = itx.send(Input::Gone).await;
    });
    let outcome = run(&cri, &r, &out, &mut inputs).await;
    out.write(ERROR, status(&outcome, &r.cmd).as_bytes()).await;
    w.close().await;
    drop(inputs);
    let _ = tokio::time::timeout(Duration::from_secs(5), adapter).await;
}

async fn run(
    cri: &Arc<Cri>,
    r: &ExecRequest,
    out: &Out,
    inputs: &mut tokio::sync::mpsc::Receiver<Input>,
) -> Result<i32, String> {
    if r.attach {
        return attach(cri, r, out, inputs).await;
    }
    // client-go sends the terminal's size right after the streams are up; wait briefly
    // for it, so the process starts with its size (a `stty size` first thing would
    // otherwise see 0x0). What else arrives meanwhile is replayed below.
    let mut early = Vec::new();
    let mut console_size = None;
    if r.tty {
        let until = tokio::time::Instant::now() + FIRST_SIZE_WAIT;
        let mut buf = Vec::new();
        while console_size.is_none() {
            match tokio::time::timeout_at(until, inputs.recv()).await {
                Ok(Some(Input::Data(RESIZE, data))) => {
                    buf.extend_from_slice(&data);
                    console_size = sizes(&mut buf).pop();
                }
                Ok(Some(ev)) => {
                    let gone = matches!(ev, Input::Gone);
                    early.push(ev);
                    if gone {
                        break;
                    }
                }
                Ok(None) | Err(_) => break,
            }
        }
    }
    let mode = ExecMode {
        stdin: r.stdin,
        tty: r.tty,
        resize_fd: r.tty.then_some(3),
        console_size,
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
        .stdout(if r.stdout && out.has(STDOUT) {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(if r.stderr && !r.tty && out.has(STDERR) {
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
    if let Some(p) = child.stdout.take() {
        outputs.push(tokio::spawn(pump(p, out.clone(), STDOUT)));
    }
    if let Some(p) = child.stderr.take() {
        outputs.push(tokio::spawn(pump(p, out.clone(), STDERR)));
    }
    let mut stdin = child.stdin.take();
    let mut resize_buf = Vec::new();
    let mut connected = true;
    let mut early = std::collections::VecDeque::from(early);
    let status = loop {
        tokio::select! {
            st = child.wait() => break st,
            ev = next_input(&mut early, inputs), if connected => match ev {
                Some(Input::Data(STDIN, data)) => {
                    if let Some(w) = stdin.as_mut() {
                        if w.write_all(&data).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Some(Input::End(STDIN)) => stdin = None,
                Some(Input::Data(RESIZE, data)) => {
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
                Some(Input::Gone) | None => {
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

/// Attach: relay the monitor's attach socket (output frames from it, stdin to it)
/// until the container's output ends (it exited) or the client goes.
async fn attach(
    cri: &Arc<Cri>,
    r: &ExecRequest,
    out: &Out,
    inputs: &mut tokio::sync::mpsc::Receiver<Input>,
) -> Result<i32, String> {
    let dir = cri.layout.container_dir(&r.container_id);
    let sock = tokio::task::spawn_blocking(move || {
        let dir_fd = std::fs::File::open(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let s = std::os::unix::net::UnixStream::connect(crate::meta::attach_socket_path(&dir_fd))
            .map_err(|e| format!("the container's monitor does not answer: {e}"))?;
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        Ok::<_, String>(s)
    })
    .await
    .map_err(|e| e.to_string())??;
    let sock = tokio::net::UnixStream::from_std(sock).map_err(|e| e.to_string())?;
    let (mut rd, mut wr) = sock.into_split();
    let relay = async {
        loop {
            let mut head = [0u8; 5];
            if rd.read_exact(&mut head).await.is_err() {
                break;
            }
            let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
            let mut data = vec![0u8; len.min(1 << 20)];
            if rd.read_exact(&mut data).await.is_err() {
                break;
            }
            let ch = if head[0] == 2 { STDERR } else { STDOUT };
            let wanted = if ch == STDOUT { r.stdout } else { r.stderr };
            if wanted && !out.write(ch, &data).await {
                break;
            }
        }
        for c in [STDOUT, STDERR] {
            out.close(c).await;
        }
    };
    let feed = async {
        while let Some(i) = inputs.recv().await {
            match i {
                Input::Data(STDIN, d) if r.stdin => {
                    let written = wr.write_all(&d).await;
                    if written.is_err() {
                        break;
                    }
                }
                Input::End(STDIN) => {
                    let _ = wr.shutdown().await;
                }
                Input::Gone => break,
                _ => {}
            }
        }
    };
    tokio::select! {
        _ = relay => {}
        _ = feed => {}
    }
    Ok(0)
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
