//! Backend threads for devices with host-side file descriptors (vsock sockets, a tap):
//! each waits on its device's epoll set and, on any event, lets the transport run the
//! device's `poll`. The device registers its own fds; the stop eventfd uses [`STOP_TOKEN`].

use std::io::ErrorKind;
use std::os::unix::io::AsRawFd;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};
use vmm_sys_util::eventfd::EventFd;

use super::mmio::MmioTransport;
use crate::bus::lock;
use crate::error::{Error, Result};

/// Epoll token reserved for the backend's stop eventfd; devices use other values.
pub const STOP_TOKEN: u64 = u64::MAX;

/// The thread that waits on a device's host-side fds and services its transport.
/// Dropping it stops and joins the thread.
pub struct Backend {
    stop: EventFd,
    thread: Option<JoinHandle<()>>,
}

impl Backend {
    pub fn spawn(epoll: Arc<Epoll>, transport: Arc<Mutex<MmioTransport>>) -> Result<Backend> {
        let io = |e: std::io::Error| Error::Io {
            op: "virtio backend",
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
        let thread = std::thread::Builder::new()
            .name("virtio-backend".into())
            .spawn(move || {
                let mut events = [EpollEvent::default(); 32];
                loop {
                    match epoll.wait(-1, &mut events) {
                        Ok(n) if events[..n].iter().any(|e| e.data() == STOP_TOKEN) => break,
                        Ok(_) => lock(&transport).service(),
                        Err(e) if e.kind() == ErrorKind::Interrupted => {}
                        Err(e) => {
                            tracing::error!("virtio backend: epoll_wait: {e}");
                            break;
                        }
                    }
                }
            })
            .map_err(io)?;
        Ok(Backend {
            stop,
            thread: Some(thread),
        })
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
