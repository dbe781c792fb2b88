//! Shared stop state: the first shutdown reason recorded wins, and every vCPU loop
//! checks `stopped()` after each exit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// Why the VM stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShutdownReason {
    /// Every vCPU executed HLT (only without an in-kernel irqchip).
    Halted,
    /// Triple fault (KVM_EXIT_SHUTDOWN), e.g. Linux `reboot=t`.
    TripleFault,
    /// Guest asked for a reset through the i8042 controller (0xfe to port 0x64).
    Reset,
    /// ACPI S5 written to PM1a_CNT, or a KVM system event of type shutdown.
    PowerOff,
    /// Guest wrote `code` to the debug-exit port.
    DebugExit(u8),
    /// The host asked the VM to stop ([`crate::vm::StopHandle::stop`]).
    Stopped,
    /// The VMM hit an error it cannot continue from (message names the vCPU/device).
    Error(String),
}

impl ShutdownReason {
    /// A process exit status in the style of `qemu`/`firecracker` wrappers: 0 for a clean
    /// power-off or reboot, the guest's code for debug-exit, 1 for errors.
    pub fn exit_code(&self) -> i32 {
        match self {
            ShutdownReason::Halted
            | ShutdownReason::TripleFault
            | ShutdownReason::Reset
            | ShutdownReason::PowerOff
            | ShutdownReason::Stopped => 0,
            ShutdownReason::DebugExit(c) => i32::from(*c),
            ShutdownReason::Error(_) => 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Control {
    stopped: AtomicBool,
    reason: Mutex<Option<ShutdownReason>>,
}

impl Control {
    pub fn stop(&self, reason: ShutdownReason) {
        let mut r = crate::bus::lock(&self.reason);
        if r.is_none() {
            *r = Some(reason);
        }
        self.stopped.store(true, Ordering::SeqCst);
    }

    pub fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub fn reason(&self) -> Option<ShutdownReason> {
        crate::bus::lock(&self.reason).clone()
    }
}
