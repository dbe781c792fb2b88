//! 16550 UART (vm-superio) on COM1. Output goes to stdout, a file, a pty or nowhere;
//! with a pty, what the host types there is fed into the receive FIFO.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::path::PathBuf;
use std::sync::Arc;

use vm_superio::serial::NoEvents;
use vm_superio::Serial;
use vmm_sys_util::epoll::{ControlOperation, Epoll, EpollEvent, EventSet};

use super::IrqLine;
use crate::bus::BusDevice;
use crate::config::ConsoleConfig;
use crate::error::{Error, Result};

const RBR: u64 = 0;
const LSR: u64 = 5;

pub struct SerialDevice {
    uart: Serial<IrqLine, NoEvents, Box<dyn Write + Send>>,
    /// Host input (the pty master, non-blocking).
    input: Option<File>,
    /// Kept open so the pty stays usable while nobody has attached to it.
    _pty_slave: Option<File>,
}

/// A pty's master side, its slave (raw mode) and the slave's path.
struct Pty {
    master: File,
    slave: File,
    path: PathBuf,
}

fn console_err(target: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Console {
        target: target.to_string(),
        source,
    }
}

fn open_pty() -> Result<Pty> {
    let err = console_err("pty");
    let (mut m, mut s) = (-1, -1);
    // SAFETY: openpty stores two new fds; null name, termios and winsize are allowed.
    let r = unsafe {
        libc::openpty(
            &mut m,
            &mut s,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    if r < 0 {
        return Err(err(std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created by openpty and are owned by nobody else.
    let (master, slave) = unsafe { (File::from_raw_fd(m), File::from_raw_fd(s)) };
    let mut path = [0u8; 64];
    // SAFETY: the fds are valid; the buffers are ours with the lengths given; termios is
    // plain data that tcgetattr fills before cfmakeraw/tcsetattr use it.
    unsafe {
        for fd in [m, s] {
            if libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) < 0 {
                return Err(err(std::io::Error::last_os_error()));
            }
        }
        if libc::fcntl(m, libc::F_SETFL, libc::O_NONBLOCK) < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(s, &mut t) < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        libc::cfmakeraw(&mut t);
        if libc::tcsetattr(s, libc::TCSANOW, &t) < 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
        if libc::ptsname_r(m, path.as_mut_ptr().cast(), path.len()) != 0 {
            return Err(err(std::io::Error::last_os_error()));
        }
    }
    let len = path.iter().position(|&b| b == 0).unwrap_or(path.len());
    let path = PathBuf::from(String::from_utf8_lossy(&path[..len]).into_owned());
    Ok(Pty {
        master,
        slave,
        path,
    })
}

/// A built console: the device, the pty path and the epoll set to wait on for input.
pub struct Console {
    pub device: SerialDevice,
    pub pty: Option<PathBuf>,
    pub input_epoll: Option<Arc<Epoll>>,
}

impl Console {
    /// Builds COM1 for `console`; a pty is created here.
    pub fn open(console: &ConsoleConfig, irq: IrqLine) -> Result<Console> {
        let (out, pty): (Box<dyn Write + Send>, Option<Pty>) = match console {
            ConsoleConfig::Stdout => (Box::new(std::io::stdout()), None),
            ConsoleConfig::File(p) => {
                let f = File::create(p).map_err(console_err(&p.display().to_string()))?;
                (Box::new(f), None)
            }
            ConsoleConfig::Pty => {
                let pty = open_pty()?;
                (
                    Box::new(pty.master.try_clone().map_err(console_err("pty"))?),
                    Some(pty),
                )
            }
            ConsoleConfig::Null => (Box::new(std::io::sink()), None),
        };
        let Some(pty) = pty else {
            let device = SerialDevice {
                uart: Serial::new(irq, out),
                input: None,
                _pty_slave: None,
            };
            return Ok(Console {
                device,
                pty: None,
                input_epoll: None,
            });
        };
        let epoll = Epoll::new().map_err(console_err("pty"))?;
        epoll
            .ctl(
                ControlOperation::Add,
                pty.master.as_raw_fd(),
                EpollEvent::new(EventSet::IN | EventSet::EDGE_TRIGGERED, 0),
            )
            .map_err(console_err("pty"))?;
        let device = SerialDevice {
            uart: Serial::new(irq, out),
            input: Some(pty.master),
            _pty_slave: Some(pty.slave),
        };
        Ok(Console {
            device,
            pty: Some(pty.path),
            input_epoll: Some(Arc::new(epoll)),
        })
    }
}

impl SerialDevice {
    /// Moves pending host input into the receive FIFO, never more than it can hold, so
    /// nothing has to be buffered here: the rest waits in the pty until the guest reads.
    pub fn pump_input(&mut self) {
        let cap = self.uart.fifo_capacity();
        let Some(input) = self.input.as_mut().filter(|_| cap > 0) else {
            return;
        };
        let mut buf = [0u8; 64];
        if let Ok(n) = input.read(&mut buf[..cap.min(64)]) {
            // Cannot overflow: at most `cap` bytes. A failed interrupt only delays a guest.
            let _ = self.uart.enqueue_raw_bytes(&buf[..n]);
        }
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.uart.read(off);
        }
        // The guest drained the FIFO or polls for data: top it up from the host.
        if offset == RBR || offset == LSR {
            self.pump_input();
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            // vm-superio flushes nothing itself; a lost console byte is not fatal.
            if self.uart.write(off, b).is_ok() && offset == 0 {
                let _ = self.uart.writer_mut().flush();
            }
        }
    }
}
