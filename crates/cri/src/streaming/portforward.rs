//! Port forwarding over SPDY (`portforward.k8s.io`): for each forwarded connection the
//! client opens an `error` and a `data` stream with the same `port` and `requestid`
//! headers; berth connects to 127.0.0.1:port inside the pod's network namespace and
//! copies both ways. A failure is written on that pair's error stream (as kubelet
//! does) and only that connection ends.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use super::session::{self, Event, Session};
use super::spdy;

/// A connection half-made: the streams seen so far for one request id.
#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
}

/// Connect to 127.0.0.1:`port` from inside the network namespace at `netns` (the
/// host's with `None`), on a thread of its own: setns changes only the calling thread,
/// and that thread ends here, so no pooled thread is left in the pod's namespace.
async fn connect(netns: Option<PathBuf>, port: u16) -> Result<tokio::net::TcpStream, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = (|| -> Result<std::net::TcpStream, String> {
            if let Some(ns) = &netns {
                let f = std::fs::File::open(ns).map_err(|e| format!("{}: {e}", ns.display()))?;
                nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(|e| format!("entering the pod's network namespace: {e}"))?;
            }
            let s = std::net::TcpStream::connect_timeout(
                &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(10),
            )
            .map_err(|e| format!("failed to connect to localhost:{port} inside the pod: {e}"))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(s)
        })();
        let _ = tx.send(r);
    });
    let s = rx
        .await
        .map_err(|_| "the connecting thread died".to_string())??;
    tokio::net::TcpStream::from_std(s).map_err(|e| e.to_string())
}

/// Forward every connection the client opens until it closes the session.
pub async fn serve(pod_id: String, netns: Option<PathBuf>, mut s: Session) {
    let mut pending: HashMap<String, Pair> = HashMap::new();
    // Client data per data stream, to the task that owns that connection.
    let mut routes: HashMap<u32, mpsc::Sender<Option<Vec<u8>>>> = HashMap::new();
    while let Some(ev) = s.events.recv().await {
        match ev {
            Event::Stream { id, headers } => {
                let kind = session::header(&headers, "streamtype").unwrap_or_default();
                let port = session::header(&headers, "port").and_then(|p| p.parse::<u16>().ok());
                let (Some(port), "error" | "data") = (port.filter(|p| *p > 0), kind) else {
                    s.tx.reset(id, spdy::RST_PROTOCOL_ERROR).await;
                    continue;
                };
                // Old clients send no request id: the error stream precedes its data
                // stream by one id (two, counting both sides' numbering).
                let rid = match session::header(&headers, "requestid") {
                    Some(r) => r.to_string(),
                    None if kind == "data" => format!("#{}", id.saturating_sub(2)),
                    None => format!("#{id}"),
                };
                let pair = pending.entry(rid.clone()).or_default();
                pair.port = port;
                match kind {
                    "error" => pair.error = Some(id),
                    _ => pair.data = Some(id),
                }
                if let Pair {
                    port,
                    error: Some(err),
                    data: Some(data),
                } = *pair
                {
                    pending.remove(&rid);
                    let (tx, rx) = mpsc::channel(16);
                    routes.insert(data, tx);
                    tokio::spawn(forward(
                        pod_id.clone(),
                        netns.clone(),
                        port,
                        err,
                        data,
                        s.tx.clone(),
                        rx,
                    ));
                }
            }
            Event::Data { id, data, fin } => {
                if let Some(r) = routes.get(&id) {
                    if !data.is_empty() && r.send(Some(data)).await.is_err() {
                        routes.remove(&id);
                        continue;
                    }
                    if fin {
                        let _ = r.send(None).await;
                        routes.remove(&id);
                    }
                }
            }
            Event::Reset { id } => {
                routes.remove(&id);
            }
            Event::Closed => break,
        }
    }
}

/// One forwarded connection: `from_client` carries the data stream's bytes (`None`: the
/// client closed its side).
async fn forward(
    pod_id: String,
    netns: Option<PathBuf>,
    port: u16,
    err: u32,
    data: u32,
    tx: session::Sender,
    mut from_client: mpsc::Receiver<Option<Vec<u8>>>,
) {
    let sock = match connect(netns, port).await {
        Ok(s) => s,
        Err(e) => {
            let msg = format!("error forwarding port {port} to pod {pod_id}: {e}");
            tracing::info!("{msg}");
            tx.data(err, msg.as_bytes(), true).await;
            tx.data(data, &[], true).await;
            return;
        }
    };
    let (mut rd, mut wr) = sock.into_split();
    let up = async {
        while let Some(Some(bytes)) = from_client.recv().await {
            if wr.write_all(&bytes).await.is_err() {
                break;
            }
        }
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; 32 << 10];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !tx.data(data, &buf[..n], false).await {
                        return;
                    }
                }
            }
        }
        tx.data(data, &[], true).await;
    };
    tokio::join!(up, down);
    tx.data(err, &[], true).await;
}
