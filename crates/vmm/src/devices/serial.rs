//! 16550 UART (vm-superio) on COM1 with output to stdout, a file, or nowhere.

use std::fs::File;
use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::Serial;

use super::IrqLine;
use crate::bus::BusDevice;
use crate::config::ConsoleConfig;
use crate::error::{Error, Result};

pub struct SerialDevice {
    uart: Serial<IrqLine, NoEvents, Box<dyn Write + Send>>,
}

impl SerialDevice {
    pub fn new(console: &ConsoleConfig, irq: IrqLine) -> Result<Self> {
        let out: Box<dyn Write + Send> = match console {
            ConsoleConfig::Stdout => Box::new(std::io::stdout()),
            ConsoleConfig::File(p) => {
                Box::new(File::create(p).map_err(|source| Error::Console {
                    target: p.display().to_string(),
                    source,
                })?)
            }
            ConsoleConfig::Null => Box::new(std::io::sink()),
        };
        Ok(SerialDevice {
            uart: Serial::new(irq, out),
        })
    }
}

impl BusDevice for SerialDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.uart.read(off);
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
