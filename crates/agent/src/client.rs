//! The host side: connect to an agent (over the VMM's hybrid vsock socket, or a plain unix
//! socket in tests), agree on the protocol, and make calls with deadlines.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::error::{Error, Result};
use crate::proto::{self, agent_client};

/// How long each kind of call may take. Wait and Output have no deadline of their own.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Reaching the agent and its Version answer (a booting guest: retried until then).
    pub connect: Duration,
    /// CreateContainer (mounts, the container's init up to `created`).
    pub create: Duration,
    /// Every other call.
    pub call: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: Duration::from_secs(30),
            create: Duration::from_secs(60),
            call: Duration::from_secs(10),
        }
    }
}

/// A connected agent that answered Version with our protocol.
#[derive(Debug, Clone)]
pub struct AgentClient {
    rpc: agent_client::AgentClient<Channel>,
    timeouts: Timeouts,
    version: proto::VersionResponse,
}

/// Open a host-initiated vsock stream through Firecracker-style hybrid socket `uds`:
/// `CONNECT <port>\n`, answered `OK <host port>\n` once the guest accepts.
async fn hybrid_connect(uds: &Path, port: u32) -> Result<UnixStream> {
    let mut s = UnixStream::connect(uds)
        .await
        .map_err(|source| Error::Connect {
            path: uds.to_path_buf(),
            source,
        })?;
    let handshake = |why: String| Error::Handshake {
        path: uds.to_path_buf(),
        port,
        why,
    };
    s.write_all(format!("CONNECT {port}\n").as_bytes())
        .await
        .map_err(|e| handshake(e.to_string()))?;
    // Byte by byte: what follows the line is the agent's, not ours to consume.
    let mut line = Vec::new();
    loop {
        let b = s.read_u8().await.map_err(|e| {
            handshake(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => "refused (nobody listens yet)".into(),
                _ => e.to_string(),
            })
        })?;
        if b == b'\n' {
            break;
        }
        line.push(b);
        if line.len() > 32 {
            return Err(handshake("answer too long".into()));
        }
    }
    let line = String::from_utf8_lossy(&line);
    if !line.starts_with("OK ") {
        return Err(handshake(format!("unexpected answer {line:?}")));
    }
    Ok(s)
}

async fn deadline<T>(
    call: &'static str,
    after: Duration,
    f: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(after, f).await {
        Ok(Ok(r)) => Ok(r.into_inner()),
        Ok(Err(status)) => Err(Error::rpc(call, status)),
        Err(_) => Err(Error::Timeout { call, after }),
    }
}

impl AgentClient {
    /// An agent listening on a unix socket (host tests).
    pub async fn connect_unix(path: &Path, timeouts: Timeouts) -> Result<AgentClient> {
        let path = path.to_path_buf();
        Self::retrying(timeouts, move || {
            let path = path.clone();
            async move {
                UnixStream::connect(&path)
                    .await
                    .map_err(|source| Error::Connect { path, source })
            }
        })
        .await
    }

    /// An agent in a microVM, through the VMM's hybrid vsock socket `uds`.
    pub async fn connect_vsock(uds: &Path, port: u32, timeouts: Timeouts) -> Result<AgentClient> {
        let uds = uds.to_path_buf();
        Self::retrying(timeouts, move || {
            let uds = uds.clone();
            async move { hybrid_connect(&uds, port).await }
        })
        .await
    }

    /// Open the first stream (retried until `timeouts.connect`: a booting guest refuses
    /// until it listens), make the channel over it, and agree on the protocol.
    async fn retrying<F, Fut>(timeouts: Timeouts, open: F) -> Result<AgentClient>
    where
        F: Fn() -> Fut + Clone + Send + 'static,
        Fut: Future<Output = Result<UnixStream>> + Send,
    {
        let until = tokio::time::Instant::now() + timeouts.connect;
        let timeout = || Error::Timeout {
            call: "connect",
            after: timeouts.connect,
        };
        let first = loop {
            match tokio::time::timeout_at(until, open()).await {
                Ok(Ok(s)) => break s,
                Ok(Err(e)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    if tokio::time::Instant::now() >= until {
                        return Err(e);
                    }
                }
                // Stuck in an attempt (nobody answers the handshake): that is the news.
                Err(_) => return Err(timeout()),
            }
        };
        // The channel asks the connector again only if the stream breaks; the first ask
        // gets the stream we already have.
        let first = std::sync::Arc::new(std::sync::Mutex::new(Some(first)));
        let connector = tower::service_fn(move |_: Uri| {
            let (first, open) = (first.clone(), open.clone());
            async move {
                let taken = first.lock().map(|mut f| f.take()).unwrap_or(None);
                let s = match taken {
                    Some(s) => s,
                    None => open().await.map_err(std::io::Error::other)?,
                };
                Ok::<_, std::io::Error>(TokioIo::new(s))
            }
        });
        let endpoint =
            Endpoint::from_static("http://berth-agent").connect_timeout(timeouts.connect);
        let channel = tokio::time::timeout_at(until, endpoint.connect_with_connector(connector))
            .await
            .map_err(|_| timeout())??;
        let mut rpc = agent_client::AgentClient::new(channel);
        let version = deadline(
            "Version",
            timeouts.call,
            rpc.version(proto::VersionRequest {
                protocol: crate::PROTOCOL,
            }),
        )
        .await
        .map_err(|e| match e {
            // The agent refused us: say which versions disagree.
            Error::Rpc { message, .. } => Error::Rpc {
                call: "Version",
                message,
            },
            e => e,
        })?;
        if version.protocol != crate::PROTOCOL {
            return Err(Error::Version {
                host: crate::PROTOCOL,
                agent: version.protocol,
                agent_version: version.agent_version,
            });
        }
        Ok(AgentClient {
            rpc,
            timeouts,
            version,
        })
    }

    /// What the agent said about itself.
    pub fn version(&self) -> &proto::VersionResponse {
        &self.version
    }

    pub async fn create(&self, req: proto::CreateContainerRequest) -> Result<()> {
        let mut rpc = self.rpc.clone();
        deadline(
            "CreateContainer",
            self.timeouts.create,
            rpc.create_container(req),
        )
        .await
        .map(drop)
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        let mut rpc = self.rpc.clone();
        deadline("Start", self.timeouts.call, rpc.start(container(id)))
            .await
            .map(drop)
    }

    pub async fn exec(&self, req: proto::ExecRequest) -> Result<()> {
        let mut rpc = self.rpc.clone();
        deadline("Exec", self.timeouts.create, rpc.exec(req))
            .await
            .map(drop)
    }

    pub async fn signal(&self, process: proto::ProcessRef, signal: i32, all: bool) -> Result<()> {
        let mut rpc = self.rpc.clone();
        let req = proto::SignalRequest {
            process: Some(process),
            signal,
            all,
        };
        deadline("Signal", self.timeouts.call, rpc.signal(req))
            .await
            .map(drop)
    }

    /// The exit code, once the process has exited (no deadline).
    pub async fn wait(&self, process: proto::ProcessRef) -> Result<i32> {
        let mut rpc = self.rpc.clone();
        rpc.wait(process)
            .await
            .map(|r| r.into_inner().exit_code)
            .map_err(|s| Error::rpc("Wait", s))
    }

    pub async fn resize(&self, process: proto::ProcessRef, rows: u32, cols: u32) -> Result<()> {
        let mut rpc = self.rpc.clone();
        let req = proto::ResizeRequest {
            process: Some(process),
            rows,
            cols,
        };
        deadline("Resize", self.timeouts.call, rpc.resize(req))
            .await
            .map(drop)
    }

    /// The process's output stream (opening it has a deadline, reading it none).
    pub async fn output(
        &self,
        process: proto::ProcessRef,
    ) -> Result<tonic::Streaming<proto::OutputChunk>> {
        let mut rpc = self.rpc.clone();
        deadline("Output", self.timeouts.call, rpc.output(process)).await
    }

    pub async fn write_stdin(&self, process: proto::ProcessRef, data: Vec<u8>) -> Result<()> {
        let mut rpc = self.rpc.clone();
        let req = proto::StdinRequest {
            process: Some(process),
            data,
        };
        deadline("WriteStdin", self.timeouts.call, rpc.write_stdin(req))
            .await
            .map(drop)
    }

    pub async fn close_stdin(&self, process: proto::ProcessRef) -> Result<()> {
        let mut rpc = self.rpc.clone();
        deadline("CloseStdin", self.timeouts.call, rpc.close_stdin(process))
            .await
            .map(drop)
    }

    pub async fn stats(&self, id: &str) -> Result<proto::StatsResponse> {
        let mut rpc = self.rpc.clone();
        deadline("Stats", self.timeouts.call, rpc.stats(container(id))).await
    }

    pub async fn remove(&self, id: &str) -> Result<()> {
        let mut rpc = self.rpc.clone();
        deadline(
            "RemoveContainer",
            self.timeouts.create,
            rpc.remove_container(container(id)),
        )
        .await
        .map(drop)
    }

    pub async fn shutdown(&self) -> Result<()> {
        let mut rpc = self.rpc.clone();
        deadline(
            "Shutdown",
            self.timeouts.create,
            rpc.shutdown(proto::Empty {}),
        )
        .await
        .map(drop)
    }
}

fn container(id: &str) -> proto::ContainerRef {
    proto::ContainerRef { id: id.into() }
}

/// A container's own process (`exec_id` None) or one of its exec'd processes.
pub fn process(container_id: &str, exec_id: Option<&str>) -> proto::ProcessRef {
    proto::ProcessRef {
        container_id: container_id.into(),
        exec_id: exec_id.unwrap_or_default().into(),
    }
}

/// Collect a process's whole output: (stdout, stderr).
pub async fn collect_output(
    mut stream: tonic::Streaming<proto::OutputChunk>,
) -> Result<(Vec<u8>, Vec<u8>)> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    while let Some(chunk) = stream
        .message()
        .await
        .map_err(|s| Error::rpc("Output", s))?
    {
        match proto::output_chunk::Stream::try_from(chunk.stream) {
            Ok(proto::output_chunk::Stream::Stderr) => err.extend_from_slice(&chunk.data),
            _ => out.extend_from_slice(&chunk.data),
        }
    }
    Ok((out, err))
}
