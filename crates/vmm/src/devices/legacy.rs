//! Small port-I/O devices: i8042 (reset only), CMOS RTC, ACPI sleep control, debug-exit.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use vm_superio::I8042Device;

use crate::bus::BusDevice;
use crate::control::{Control, ShutdownReason};

/// Stops the VM with a fixed reason when triggered.
pub struct StopTrigger {
    control: Arc<Control>,
    reason: ShutdownReason,
}

impl vm_superio::Trigger for StopTrigger {
    type E = std::convert::Infallible;
    fn trigger(&self) -> Result<(), Self::E> {
        self.control.stop(self.reason.clone());
        Ok(())
    }
}

/// i8042 keyboard controller at 0x60..0x64: answers reads with 0 ("input buffer empty",
/// so `reboot=k` proceeds) and turns command 0xfe (pulse reset line) into a VM reset.
pub struct I8042(I8042Device<StopTrigger>);

impl I8042 {
    pub fn new(control: Arc<Control>) -> Self {
        I8042(I8042Device::new(StopTrigger {
            control,
            reason: ShutdownReason::Reset,
        }))
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Some(b), Ok(off)) = (data.first_mut(), u8::try_from(offset)) {
            *b = self.0.read(off);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Some(&b), Ok(off)) = (data.first(), u8::try_from(offset)) {
            let _ = self.0.write(off, b);
        }
    }
}

/// MC146818 CMOS RTC at 0x70 (index) / 0x71 (data), BCD, 24-hour, reading the host's
/// UTC clock. The update-in-progress bit is never set, so Linux does not wait on it
/// (without this device its probe spins about four seconds).
pub struct Rtc {
    index: u8,
    nvram: [u8; 128],
}

impl Default for Rtc {
    fn default() -> Self {
        Rtc {
            index: 0,
            nvram: [0; 128],
        }
    }
}

const RTC_STATUS_A: u8 = 0x0a;
const RTC_STATUS_B: u8 = 0x0b;
const RTC_STATUS_C: u8 = 0x0c;
const RTC_STATUS_D: u8 = 0x0d;
const RTC_CENTURY: u8 = 0x32;

impl Rtc {
    fn register(&self, index: u8, now_secs: i64) -> u8 {
        let bcd = |v: i64| (((v / 10) << 4) | (v % 10)) as u8;
        let days = now_secs.div_euclid(86_400);
        let secs = now_secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        match index {
            0x00 => bcd(secs % 60),
            0x02 => bcd(secs / 60 % 60),
            0x04 => bcd(secs / 3600),
            0x06 => bcd((days + 4).rem_euclid(7) + 1),
            0x07 => bcd(d),
            0x08 => bcd(m),
            0x09 => bcd(y % 100),
            RTC_CENTURY => bcd(y / 100),
            RTC_STATUS_A => 0x26,
            RTC_STATUS_B => 0x02,
            RTC_STATUS_C => 0x00,
            RTC_STATUS_D => 0x80,
            i => self.nvram[usize::from(i & 0x7f)],
        }
    }
}

/// Days since 1970-01-01 -> (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

impl BusDevice for Rtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (1, Some(b)) = (offset, data.first_mut()) {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64);
            *b = self.register(self.index, now);
        }
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&b) = data.first() else { return };
        match offset {
            // Bit 7 of the index port is the NMI mask; it does not select a register.
            0 => self.index = b & 0x7f,
            _ if self.index > RTC_STATUS_D && self.index != RTC_CENTURY => {
                self.nvram[usize::from(self.index)] = b
            }
            _ => {}
        }
    }
}

/// ACPI hardware-reduced sleep control (offset 0) and status (offset 1) registers.
/// Writing SLP_EN with the S5 sleep type (the DSDT's `_S5_` package says 5) powers the
/// VM off; the status register reads as zero (no wake events).
pub struct SleepControl {
    control: Arc<Control>,
}

impl SleepControl {
    pub fn new(control: Arc<Control>) -> Self {
        SleepControl { control }
    }
}

pub const SLEEP_REGS_LEN: u64 = 2;
pub const S5_SLP_TYP: u8 = 5;
/// Sleep control register: SLP_TYPx in bits 2..5, SLP_EN is bit 5.
const SLP_EN: u8 = 1 << 5;

impl BusDevice for SleepControl {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (0, Some(&v)) = (offset, data.first()) {
            if v & SLP_EN != 0 && (v >> 2) & 7 == S5_SLP_TYP {
                self.control.stop(ShutdownReason::PowerOff);
            }
        }
    }
}

/// isa-debug-exit: a byte written here stops the VM with [`ShutdownReason::DebugExit`].
pub struct DebugExit {
    control: Arc<Control>,
}

impl DebugExit {
    pub fn new(control: Arc<Control>) -> Self {
        DebugExit { control }
    }
}

impl BusDevice for DebugExit {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            self.control.stop(ShutdownReason::DebugExit(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(20_786), (2026, 11, 29));
    }

    #[test]
    fn rtc_reads_bcd_time_and_never_updates() {
        let rtc = Rtc::default();
        // 2026-11-29 10:25:17 UTC, a Sunday.
        let t = 20_786 * 86_400 + 10 * 3600 + 25 * 60 + 17;
        assert_eq!(rtc.register(0x00, t), 0x17);
        assert_eq!(rtc.register(0x02, t), 0x25);
        assert_eq!(rtc.register(0x04, t), 0x10);
        assert_eq!(rtc.register(0x06, t), 0x01);
        assert_eq!(rtc.register(0x07, t), 0x29);
        assert_eq!(rtc.register(0x08, t), 0x11);
        assert_eq!(rtc.register(0x09, t), 0x26);
        assert_eq!(rtc.register(RTC_CENTURY, t), 0x20);
        assert_eq!(rtc.register(RTC_STATUS_A, t) & 0x80, 0);
    }
}
