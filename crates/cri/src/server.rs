//! `berth cri serve`: the tonic server on a unix socket, until SIGTERM or SIGINT.

use std::fs::File;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;

use nix::fcntl::{Flock, FlockArg};
use tokio_stream::wrappers::UnixListenerStream;

use crate::api::image_service_server::ImageServiceServer;
use crate::api::runtime_service_server::RuntimeServiceServer;
use crate::error::{Error, IoContext, Result};
use crate::service::Service;
use crate::{Config, Cri};

/// Requests and responses up to this size (kubelet lists can be large).
const MAX_MESSAGE: usize = 16 << 20;

/// One server per root: a second one would race the first on every record.
fn lock_root(config: &Config) -> Result<Flock<File>> {
    std::fs::create_dir_all(&config.root).at(&config.root)?;
    let p = config.root.join("server.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .at(&p)?;
    Flock::lock(f, FlockArg::LockExclusiveNonblock).map_err(|_| {
        Error::BadState(format!(
            "{}: another berth cri serve uses this root",
            p.display()
        ))
    })
}

/// Bind the socket: its directory is made, a stale socket file replaced, mode 0660.
fn bind(config: &Config) -> Result<tokio::net::UnixListener> {
    let path = &config.socket;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).at(dir)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(Error::BadState(format!(
                    "{}: a server is already listening there",
                    path.display()
                )));
            }
            std::fs::remove_file(path).at(path)?;
        }
        Ok(_) => {
            return Err(Error::BadState(format!(
                "{}: exists and is not a socket",
                path.display()
            )))
        }
        Err(_) => {}
    }
    let l = tokio::net::UnixListener::bind(path).at(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).at(path)?;
    Ok(l)
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
    }
}

/// Serve until SIGTERM/SIGINT. Containers keep running after the server exits.
pub fn serve(config: Config) -> Result<()> {
    let _lock = lock_root(&config)?;
    let cri = Arc::new(Cri::open(config.clone())?);
    cri.sweep()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| Error::Io {
            path: "tokio runtime".into(),
            source,
        })?;
    rt.block_on(async {
        let listener = bind(&config)?;
        tracing::info!(
            socket = %config.socket.display(),
            root = %config.root.display(),
            runtime_root = %config.runtime_root.display(),
            "berth CRI server listening"
        );
        let streaming =
            crate::streaming::Streaming::start(config.streaming_address, cri.clone()).await?;
        let events = crate::events::Events::start(cri.clone());
        let svc = Service {
            cri,
            streaming,
            events,
        };
        let served = tonic::transport::Server::builder()
            .add_service(
                RuntimeServiceServer::new(svc.clone())
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .add_service(
                ImageServiceServer::new(svc)
                    .max_decoding_message_size(MAX_MESSAGE)
                    .max_encoding_message_size(MAX_MESSAGE),
            )
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown_signal())
            .await;
        let _ = std::fs::remove_file(&config.socket);
        served.map_err(|e| Error::BadState(format!("gRPC server: {e}")))
    })
}
