//! The vCPU run loop: one thread per vCPU, exits dispatched to the buses and recorded.

use std::sync::Arc;
use std::time::Instant;

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::bus::Bus;
use crate::control::{Control, ShutdownReason};
use crate::stats::{ExitKind, Recorder};

/// Devices shared by all vCPU threads.
pub struct Buses {
    pub io: Bus,
    pub mmio: Bus,
}

const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
const KVM_SYSTEM_EVENT_RESET: u32 = 2;

/// Runs `vcpu` until the VM stops or, without an irqchip, until it halts.
pub fn run(id: u8, mut vcpu: VcpuFd, buses: Arc<Buses>, control: Arc<Control>) -> Recorder {
    let mut rec = Recorder::default();
    while !control.stopped() {
        let result = vcpu.run();
        let t0 = Instant::now();
        let (kind, dev, halt) = match result {
            Ok(VcpuExit::IoIn(port, data)) => {
                (ExitKind::IoIn, buses.io.read(u64::from(port), data), false)
            }
            Ok(VcpuExit::IoOut(port, data)) => (
                ExitKind::IoOut,
                buses.io.write(u64::from(port), data),
                false,
            ),
            Ok(VcpuExit::MmioRead(addr, data)) => {
                (ExitKind::MmioRead, buses.mmio.read(addr, data), false)
            }
            Ok(VcpuExit::MmioWrite(addr, data)) => {
                (ExitKind::MmioWrite, buses.mmio.write(addr, data), false)
            }
            Ok(VcpuExit::Hlt) => (ExitKind::Hlt, None, true),
            Ok(VcpuExit::Shutdown) => {
                control.stop(ShutdownReason::TripleFault);
                (ExitKind::Shutdown, None, false)
            }
            Ok(VcpuExit::SystemEvent(event, _)) => {
                control.stop(match event {
                    KVM_SYSTEM_EVENT_SHUTDOWN => ShutdownReason::PowerOff,
                    KVM_SYSTEM_EVENT_RESET => ShutdownReason::Reset,
                    other => ShutdownReason::Error(format!("vcpu {id}: system event {other}")),
                });
                (ExitKind::SystemEvent, None, false)
            }
            Ok(VcpuExit::FailEntry(reason, cpu)) => {
                control.stop(ShutdownReason::Error(format!(
                    "vcpu {id}: KVM_EXIT_FAIL_ENTRY reason {reason:#x} on host cpu {cpu}"
                )));
                (ExitKind::FailEntry, None, false)
            }
            Ok(VcpuExit::InternalError) => {
                control.stop(ShutdownReason::Error(format!(
                    "vcpu {id}: KVM_EXIT_INTERNAL_ERROR"
                )));
                (ExitKind::InternalError, None, false)
            }
            Ok(other) => {
                control.stop(ShutdownReason::Error(format!(
                    "vcpu {id}: unhandled exit {other:?}"
                )));
                (ExitKind::Other, None, false)
            }
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {
                (ExitKind::Interrupted, None, false)
            }
            Err(e) => {
                control.stop(ShutdownReason::Error(format!("vcpu {id}: KVM_RUN: {e}")));
                (ExitKind::Other, None, false)
            }
        };
        rec.record(kind, dev, t0.elapsed());
        if halt {
            break;
        }
    }
    rec
}
