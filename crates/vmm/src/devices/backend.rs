//! Backend threads for devices with host-side file descriptors (vsock sockets, a tap, a
//! console pty): each waits on its device's epoll set and, on any event, runs the
//! device's service function (for virtio, the transport's `service`, which lands in the
//! device's `poll`). The device registers its own fds; the stop eventfd uses
//! [`STOP_TOKEN`].

use std::io::ErrorKind;
use std::os::unix::io::AsRawFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use berth_seccomp::Filter;

use crate::confine::confine_current_thread;
use crate::error::{Error, Result};

/// Epoll token reserved for the backend's stop eventfd; devices use other values.
pub const STOP_TOKEN: u64 = u64::MAX;

/// The thread that waits on a device's host-side fds and services the device.
/// Dropping it stops and joins the thread.
pub struct Backend {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    /// Starts the thread; with `filter` it confines itself first (see [`crate::confine`])
    /// and `spawn` fails if that fails.
    pub fn spawn(
        name: &str,
        epoll: Arc<Epoll>,
        filter: Option<Arc<Filter>>,
        mut service: impl FnMut() + Send + 'static,
    ) -> Result<Backend> {
        let io = |e: std::io::Error| Error::Io {
            op: "device backend thread",
            source: e,
        };
        let stop = EventFd::new(libc::EFD_NONBLOCK).map_err(io)?;
        epoll
            .ctl(
                ControlOperation::Add,
                stop.as_raw_fd(),
                EpollEvent::new(EventSet::IN, STOP_TOKEN),
            )
            .map_err(io)?;
        let (confined_tx, confined_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let confined = filter.map_or(Ok(()), |f| confine_current_thread(&f));
                let ok = confined.is_ok();
                // The receiver waits for this message; a send error cannot happen.
                let _ = confined_tx.send(confined);
                if !ok {
                    return;
                }
                let mut events = [EpollEvent::default(); 32];
                loop {
                    match epoll.wait(-1, &mut events) {
                        Ok(n) if events[..n].iter().any(|e| e.data() == STOP_TOKEN) => break,
                        Ok(_) => service(),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::error!("device backend: epoll_wait: {e}");
                            break;
                        }
                    }
                }
            })
            .map_err(io)?;
        let backend = Backend {
            stop,
            thread: Some(thread),
        };
        match confined_rx.recv() {
            Ok(Ok(())) => Ok(backend),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Error::Confine {
                step: "backend thread",
                reason: format!("{name} thread died before confining itself"),
            }),
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        let _ = self.stop.write(1);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
