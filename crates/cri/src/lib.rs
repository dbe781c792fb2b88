//! cri: a Kubernetes CRI v1 gRPC server (`berth cri serve`) so kubelet and crictl can
//! use berth in place of containerd.
//!
//! Invariants:
//! * Every pod and container is a directory under the CRI root with a JSON record
//!   ([`meta`]); the server keeps no state in memory, so a restarted server serves the
//!   same pods and containers, and containers never depend on the server process.
//! * A pod has no pause container: its network, IPC and UTS namespaces are pinned by
//!   bind mounts of their nsfs files ([`pod`]); its containers join them by path.
//! * Each container has one monitor process (forked away from the server) that holds
//!   its stdio, writes the CRI log and is the only writer of its `exit.json`
//!   ([`monitor`]). The server is the only writer of `container.json` and `pod.json`.
//! * A failed RunPodSandbox or CreateContainer leaves nothing behind (namespaces, CNI
//!   attachment, bundle, runtime state, directories): each step is undone.
//! * Stop and remove of unknown IDs succeed, as CRI requires; every other error reaches
//!   the client as a gRPC status with one line saying what failed ([`Error::status`]).
//! * The generated API is confined to [`api`]; TLS is not used (unix socket, 0660).
//! * Exec/Attach/PortForward URLs point at the [`streaming`] server on 127.0.0.1 by
//!   default, each with a random single-use token that expires after a minute.

pub mod api;
pub mod config;
mod container;
pub mod error;
mod events;
mod images;
pub mod meta;
pub mod monitor;
mod pod;
mod server;
mod service;
mod stats;
pub mod streaming;

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

pub use config::Config;
pub use error::{Error, Result};
pub use server::serve;

/// The runtime and image services' shared state: handles on disk state only.
pub struct Cri {
    pub(crate) config: Config,
    pub(crate) layout: meta::Layout,
    pub(crate) store: berth_image::Store,
    /// Container root filesystems on `store`'s snapshots.
    pub(crate) bundles: berth_engine::Bundles,
    pub(crate) runtime: berth_runtime::Runtime,
    pub(crate) cni: berth_net::Cni,
    /// This binary: the monitor and the ExecSync helper are its hidden subcommands.
    pub(crate) exe: PathBuf,
    /// The previous CPU sample of each container (for nano-cores).
    pub(crate) cpu_samples: stats::CpuSamples,
    /// Serialises creation and removal (name checks, directories) in this server.
    lock: Mutex<()>,
}

impl Cri {
    pub fn open(config: Config) -> Result<Cri> {
        let layout = meta::Layout::new(&config.root)?;
        let store = berth_image::Store::open(&layout.images())?;
        let bundles = berth_engine::Bundles::new(&store)?;
        std::fs::create_dir_all(&config.runtime_root).map_err(|source| Error::Io {
            path: config.runtime_root.clone(),
            source,
        })?;
        let cni = berth_net::Cni::new(config.cni_plugin_dirs.clone(), config.cni_cache_dir.clone());
        let exe = std::env::current_exe().map_err(|source| Error::Io {
            path: "/proc/self/exe".into(),
            source,
        })?;
        Ok(Cri {
            runtime: berth_runtime::Runtime::new(&config.runtime_root),
            config,
            layout,
            store,
            bundles,
            cni,
            exe,
            cpu_samples: Default::default(),
            lock: Mutex::new(()),
        })
    }

    /// Remove what a server killed inside RunPodSandbox or CreateContainer left before
    /// it wrote the record: pod directories without `pod.json` (their pinned IPC/UTS
    /// namespaces) and container directories without `container.json` (bundle, runtime
    /// state). Called before serving, so no request races it.
    pub fn sweep(&self) -> Result<()> {
        for (kind, record) in [("pods", meta::POD), ("containers", meta::CONTAINER)] {
            let dir = self.config.root.join(kind);
            let entries = std::fs::read_dir(&dir).map_err(|source| Error::Io {
                path: dir.clone(),
                source,
            })?;
            for e in entries.flatten() {
                let path = e.path();
                if path.join(record).exists() {
                    continue;
                }
                let id = e.file_name().to_string_lossy().into_owned();
                tracing::warn!(kind, id, "removing what an interrupted create left");
                if kind == "pods" {
                    for ns in ["net", "ipc", "uts"] {
                        pod::unpin(&path.join("ns").join(ns));
                    }
                } else {
                    let _ = self.runtime.delete(&id, true);
                    let _ = self.bundles.remove(&id);
                }
                if let Err(e) = std::fs::remove_dir_all(&path) {
                    tracing::warn!(path = %path.display(), error = %e, "sweep");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(|p| p.into_inner())
    }
}
