//! The streaming server behind Exec, Attach and PortForward, as kubelet's
//! (`k8s.io/kubelet/pkg/cri/streaming`) is: the RPC stores the request under a random
//! single-use token and answers with a URL on this server; the client then upgrades an
//! HTTP/1.1 request to that URL to SPDY/3.1 (`X-Stream-Protocol-Version`
//! `v4.channel.k8s.io` for exec/attach, `portforward.k8s.io` for port forwarding) and
//! speaks the remote-command protocol over it.
//!
//! Tokens expire after [`TOKEN_TTL`] and are removed when used: a replayed, expired or
//! guessed token, or one used on the wrong path, gets 404 and nothing runs.

mod exec;
mod portforward;
mod session;
pub mod spdy;
mod websocket;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::error::{Error, Result};
use crate::Cri;

/// How long a URL stays valid (kubelet's cache keeps them a minute too).
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// At most this many URLs wait to be used (kubelet: 1000), then ResourceExhausted.
const MAX_TOKENS: usize = 1000;
/// The longest HTTP request head read before the upgrade.
const MAX_HEAD: usize = 16 << 10;
/// The remote-command protocols offered for exec and attach, best first.
const EXEC_PROTOCOLS: &[&str] = &["v4.channel.k8s.io"];
const PORT_FORWARD_PROTOCOLS: &[&str] = &["portforward.k8s.io"];
/// The channel protocols offered for exec over WebSocket, best first.
const WS_EXEC_PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// What a token stands for.
#[derive(Clone, Debug)]
pub enum Request {
    Exec(ExecRequest),
    /// Attach to the container's own stdio (its monitor's attach socket).
    Attach(ExecRequest),
    /// Forward to ports of the pod: its network namespace (`None`: the host's).
    PortForward {
        pod_id: String,
        netns: Option<std::path::PathBuf>,
    },
}

#[derive(Clone, Debug)]
pub struct ExecRequest {
    pub container_id: String,
    /// Attach to the container's process instead of running `cmd`.
    pub attach: bool,
    pub cmd: Vec<String>,
    pub tty: bool,
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

impl Request {
    fn path(&self) -> &'static str {
        match self {
            Request::Exec(_) => "exec",
            Request::Attach(_) => "attach",
            Request::PortForward { .. } => "portforward",
        }
    }
}

/// The server: its address and the tokens waiting to be used.
pub struct Streaming {
    addr: SocketAddr,
    tokens: Mutex<HashMap<String, (Request, Instant)>>,
}

impl Streaming {
    /// Bind `addr` (`127.0.0.1:0` picks a port) and serve on the current tokio runtime.
    pub async fn start(addr: SocketAddr, cri: Arc<Cri>) -> Result<Arc<Streaming>> {
        let listener = TcpListener::bind(addr).await.map_err(|source| Error::Io {
            path: format!("streaming address {addr}").into(),
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| Error::Io {
            path: format!("streaming address {addr}").into(),
            source,
        })?;
        let s = Arc::new(Streaming {
            addr,
            tokens: Mutex::new(HashMap::new()),
        });
        let server = s.clone();
        tokio::spawn(async move {
            loop {
                let Ok((sock, peer)) = listener.accept().await else {
                    continue;
                };
                let (server, cri) = (server.clone(), cri.clone());
                tokio::spawn(async move {
                    if let Err(e) = server.handle(sock, cri).await {
                        tracing::info!(%peer, error = %e, "streaming request failed");
                    }
                });
            }
        });
        tracing::info!(%addr, "streaming server listening");
        Ok(s)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Store `req` under a fresh token; the URL the client is to use.
    pub fn url_for(&self, req: Request) -> Result<String> {
        let token = crate::meta::random_id()?[..32].to_string();
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        t.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
        if t.len() >= MAX_TOKENS {
            return Err(Error::Exhausted(format!(
                "{MAX_TOKENS} streaming requests are waiting to be used; try again later"
            )));
        }
        let url = format!("http://{}/{}/{token}", self.addr, req.path());
        t.insert(token, (req, Instant::now()));
        Ok(url)
    }

    /// The request behind `token`, once: the token is gone afterwards.
    fn take(&self, path: &str, token: &str) -> Option<Request> {
        let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let (req, at) = t.remove(token)?;
        (at.elapsed() < TOKEN_TTL && req.path() == path).then_some(req)
    }

    async fn handle(&self, mut sock: TcpStream, cri: Arc<Cri>) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(1024);
        let (head_len, path, headers) = loop {
            let mut chunk = [0u8; 2048];
            let n = tokio::time::timeout(Duration::from_secs(30), sock.read(&mut chunk))
                .await
                .map_err(|_| std::io::Error::other("no request within 30 s"))??;
            if n == 0 {
                return Ok(());
            }
            buf.extend_from_slice(&chunk[..n]);
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut hs);
            match req.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => {
                    let headers: Vec<(String, String)> = req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (len, req.path.unwrap_or("/").to_string(), headers);
                }
                Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
                _ => return respond(&mut sock, 400, "malformed HTTP request").await,
            }
        };
        let early = buf.split_off(head_len);
        let path = path.split('?').next().unwrap_or_default();
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let Some(req) = self.take(kind, token) else {
            return respond(
                &mut sock,
                404,
                "no such streaming session (unknown, used or expired token)",
            )
            .await;
        };
        let values = |name: &str| -> Vec<String> {
            headers
                .iter()
                .filter(|(k, _)| k == name)
                .flat_map(|(_, v)| v.split(',').map(|s| s.trim().to_string()))
                .collect()
        };
        let upgrade = values("upgrade");
        if upgrade.iter().any(|u| u.eq_ignore_ascii_case("websocket")) {
            return self.websocket(sock, early, req, &values, cri).await;
        }
        if !upgrade.iter().any(|u| u.eq_ignore_ascii_case("spdy/3.1")) {
            return respond(&mut sock, 400, "expected Upgrade: SPDY/3.1").await;
        }
        let offered = values("x-stream-protocol-version");
        let ours = match req {
            Request::Exec(_) | Request::Attach(_) => EXEC_PROTOCOLS,
            Request::PortForward { .. } => PORT_FORWARD_PROTOCOLS,
        };
        let Some(proto) = ours.iter().find(|p| offered.iter().any(|o| o == *p)) else {
            let msg = format!(
                "unable to negotiate a protocol: client offers {offered:?}, server speaks {ours:?}"
            );
            return respond(&mut sock, 403, &msg).await;
        };
        sock.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: {proto}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
        let session = session::start(sock, early);
        match req {
            Request::Exec(r) | Request::Attach(r) => exec::serve(cri, r, session).await,
            Request::PortForward { pod_id, netns } => {
                portforward::serve(pod_id, netns, session).await
            }
        }
        Ok(())
    }
}

impl Streaming {
    /// The WebSocket handshake (RFC 6455 section 4.2.2) and the exec session on it.
    async fn websocket(
        &self,
        mut sock: TcpStream,
        early: Vec<u8>,
        req: Request,
        values: &(dyn Fn(&str) -> Vec<String> + Sync),
        cri: Arc<Cri>,
    ) -> std::io::Result<()> {
        let (Request::Exec(r) | Request::Attach(r)) = req else {
            return respond(&mut sock, 400, "port forwarding is served over SPDY only").await;
        };
        let key = values("sec-websocket-key");
        let (Some(key), true) = (
            key.first(),
            values("sec-websocket-version").iter().any(|v| v == "13"),
        ) else {
            return respond(
                &mut sock,
                400,
                "expected Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
            )
            .await;
        };
        let offered = values("sec-websocket-protocol");
        let Some(proto) = WS_EXEC_PROTOCOLS
            .iter()
            .find(|p| offered.iter().any(|o| o == *p))
        else {
            let msg = format!(
                "unable to negotiate a protocol: client offers {offered:?}, server speaks {WS_EXEC_PROTOCOLS:?}"
            );
            return respond(&mut sock, 403, &msg).await;
        };
        sock.write_all(
            format!(
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\nSec-WebSocket-Protocol: {proto}\r\n\r\n",
                websocket::accept_key(key)
            )
            .as_bytes(),
        )
        .await?;
        let (w, messages) = websocket::start(sock, early);
        exec::serve_ws(cri, r, w, messages, *proto == "v5.channel.k8s.io").await;
        Ok(())
    }
}

async fn respond(sock: &mut TcpStream, code: u16, msg: &str) -> std::io::Result<()> {
    let reason = match code {
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        _ => "Error",
    };
    let body = format!("{msg}\n");
    sock.write_all(
        format!(
            "HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    sock.shutdown().await
}
