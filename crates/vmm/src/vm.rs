//! Building a VM from a [`VmConfig`] and running it to a [`ShutdownReason`].

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use crate::memory::GuestMem;
use berth_seccomp::Filter;
use kvm_bindings::{
    kvm_pit_config, kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY,
};
use kvm_ioctls::{Kvm, VcpuFd, VmFd};
use vmm_sys_util::epoll::Epoll;
use vmm_sys_util::signal::{register_signal_handler, Killable, SIGRTMIN};

use crate::boot::{self, LoadedKernel};
use crate::bus::{lock, Bus, BusDevice};
use crate::config::{VmConfig, MAX_VCPUS};
use crate::control::{Control, ShutdownReason};
use crate::cpu;
use crate::devices::backend::Backend;
use crate::devices::legacy::{DebugExit, Rtc, SleepControl, I8042, SLEEP_REGS_LEN};
use crate::devices::serial::Console;
use crate::devices::virtio::net::Net;
use crate::devices::virtio::vsock::Vsock;
use crate::devices::virtio::{block::Block, mmio::MmioTransport, rng::Rng, VirtioDevice};
use crate::devices::IrqLine;
use crate::error::{io, kvm, Error, Result};
use crate::layout::*;
use crate::memory::{x86_layout, GuestRam};
use crate::stats::{ExitKind, ExitStats};
use crate::vcpu::{self, Buses};

/// Smallest guest RAM accepted: boot structures plus a kernel at 1 MiB.
pub const MIN_MEMORY_MIB: u32 = 4;

/// How a run ended.
#[derive(Debug, Clone)]
pub struct ExitReport {
    pub reason: ShutdownReason,
    pub stats: ExitStats,
}

/// A built VM: memory loaded, devices attached, vCPUs configured, not yet running.
pub struct Vm {
    // Field order is drop order: device threads stop first; vCPUs and the VM fd go
    // before guest memory is unmapped.
    _backends: Vec<Backend>,
    vcpus: Vec<VcpuFd>,
    buses: Arc<Buses>,
    control: Arc<Control>,
    filter: Option<Arc<Filter>>,
    console_pty: Option<PathBuf>,
    _vm: VmFd,
    ram: GuestRam,
    kernel: LoadedKernel,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm")
            .field("vcpus", &self.vcpus.len())
            .field("ram", &self.ram)
            .field("kernel", &self.kernel)
            .finish()
    }
}

fn validate(cfg: &VmConfig) -> Result<()> {
    let bad = |field, reason: &str| {
        Err(Error::Config {
            field,
            reason: reason.into(),
        })
    };
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return bad(
            "vcpus",
            &format!("{} is outside 1..={MAX_VCPUS}", cfg.vcpus),
        );
    }
    if cfg.memory_mib < MIN_MEMORY_MIB {
        return bad(
            "memory_mib",
            &format!(
                "{} MiB is below the minimum of {MIN_MEMORY_MIB} MiB",
                cfg.memory_mib
            ),
        );
    }
    if u64::from(cfg.memory_mib) << 20 > 1 << 40 {
        return bad("memory_mib", "more than 1 TiB");
    }
    let virtio = cfg.disks.len()
        + usize::from(cfg.rng)
        + usize::from(cfg.vsock.is_some())
        + usize::from(cfg.net.is_some());
    if VIRTIO_IRQ_BASE as usize + virtio > IOAPIC_PINS as usize {
        return bad(
            "disks",
            &format!("{virtio} virtio devices exceed the {IOAPIC_PINS} IOAPIC pins"),
        );
    }
    Ok(())
}

impl Vm {
    /// Builds the VM in named steps; on error everything created so far is released by
    /// drop (locals drop in reverse order, so the VM fd goes before guest memory).
    pub fn build(cfg: &VmConfig) -> Result<Vm> {
        validate(cfg)?;
        let ram = GuestRam::new(&x86_layout(cfg.memory_mib), cfg.hugepages)?;
        let kvm_sys = Kvm::new().map_err(kvm("open /dev/kvm"))?;
        let vm = create_vm(&kvm_sys, &ram, cfg.irqchip)?;
        let (kernel, initrd) = load_guest(&ram, cfg)?;
        let filter = if cfg.confine {
            Some(Arc::new(crate::confine::thread_filter()?))
        } else {
            None
        };
        let control = Arc::new(Control::default());
        let mut backends = Vec::new();
        let (io_bus, console_pty) = legacy_devices(&vm, cfg, &control, &filter, &mut backends)?;
        let (mmio_bus, mmio_devices) =
            virtio_devices(&vm, cfg, ram.memory(), &filter, &mut backends)?;
        crate::acpi::write_tables(ram.memory(), cfg.vcpus, &mmio_devices)?;
        boot::write_boot_params(ram.memory(), &kernel, &cfg.cmdline, initrd, ram.regions())?;
        let entry = kernel.boot_entry();
        if let boot::Entry::Pvh(_) = entry {
            boot::write_pvh_start_info(ram.memory(), initrd, ram.regions())?;
        }
        let vcpus = create_vcpus(&kvm_sys, &vm, cfg, entry)?;
        Ok(Vm {
            _backends: backends,
            vcpus,
            buses: Arc::new(Buses {
                io: io_bus,
                mmio: mmio_bus,
            }),
            control,
            filter,
            console_pty,
            _vm: vm,
            ram,
            kernel,
        })
    }

    /// Guest RAM (for inspection by tests and the lead's tooling).
    pub fn ram(&self) -> &GuestRam {
        &self.ram
    }

    /// Where and how the kernel was loaded.
    pub fn kernel(&self) -> &LoadedKernel {
        &self.kernel
    }

    /// The console pty's path, with [`crate::ConsoleConfig::Pty`].
    pub fn console_pty(&self) -> Option<&Path> {
        self.console_pty.as_deref()
    }

    /// A handle that stops the running VM from another thread (reason
    /// [`ShutdownReason::Stopped`]).
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.control.clone())
    }

    /// Runs every vCPU on its own thread until the VM stops; returns why and the exit table.
    pub fn run(self) -> Result<ExitReport> {
        install_kick_handler()?;
        let filter = self.filter.clone();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for (id, vcpu) in self.vcpus.into_iter().enumerate() {
            let (buses, control, tx) = (self.buses.clone(), self.control.clone(), tx.clone());
            let filter = filter.clone();
            let id = id as u8;
            let t = std::thread::Builder::new()
                .name(format!("vcpu{id}"))
                .spawn(move || {
                    let confined =
                        filter.map_or(Ok(()), |f| crate::confine::confine_current_thread(&f));
                    let rec = match confined {
                        Ok(()) => vcpu::run(id, vcpu, buses, control),
                        Err(e) => {
                            control.stop(ShutdownReason::Error(format!("vcpu {id}: {e}")));
                            Default::default()
                        }
                    };
                    // The receiver outlives every sender; a send error cannot happen.
                    let _ = tx.send(id);
                    rec
                })
                .map_err(io("spawn vcpu thread"))?;
            threads.push(t);
        }
        drop(tx);
        let mut running = threads.len();
        let mut finished = vec![false; threads.len()];
        while running > 0 {
            match rx.recv_timeout(Duration::from_millis(5)) {
                Ok(id) => {
                    finished[usize::from(id)] = true;
                    running -= 1;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            // A stop may race with a vCPU entering KVM_RUN, so kick until it is out.
            if self.control.stopped() {
                for (t, _) in threads.iter().zip(&finished).filter(|(_, done)| !**done) {
                    let _ = t.kill(kick_signal());
                }
            }
        }
        let mut stats = ExitStats::default();
        for (id, t) in threads.into_iter().enumerate() {
            let rec = t.join().map_err(|_| Error::Vcpu {
                id: id as u8,
                reason: "vcpu thread panicked".into(),
            })?;
            rec.merge_into(&mut stats, |kind, i| match kind {
                ExitKind::MmioRead | ExitKind::MmioWrite => self.buses.mmio.name(i).to_string(),
                _ => self.buses.io.name(i).to_string(),
            });
        }
        let reason = self.control.reason().unwrap_or(ShutdownReason::Halted);
        Ok(ExitReport { reason, stats })
    }
}

/// The VM with its memory slots and, for Linux guests, the in-kernel irqchip and PIT.
fn create_vm(kvm_sys: &Kvm, ram: &GuestRam, irqchip: bool) -> Result<VmFd> {
    let vm = kvm_sys.create_vm().map_err(kvm("KVM_CREATE_VM"))?;
    for (slot, (region, (host, _))) in ram.regions().iter().zip(ram.host_ranges()).enumerate() {
        let r = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start,
            memory_size: region.size,
            userspace_addr: host as u64,
        };
        // SAFETY: the host range is a live mapping owned by `ram`, which outlives the
        // VM fd (field order in `Vm`, declaration order in `build`), and it was checked
        // disjoint from the other slots.
        unsafe { vm.set_user_memory_region(r) }.map_err(kvm("KVM_SET_USER_MEMORY_REGION"))?;
    }
    if irqchip {
        vm.set_tss_address(KVM_TSS_ADDR as usize)
            .map_err(kvm("KVM_SET_TSS_ADDR"))?;
        vm.create_irq_chip().map_err(kvm("KVM_CREATE_IRQCHIP"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit).map_err(kvm("KVM_CREATE_PIT2"))?;
    }
    Ok(vm)
}

/// Kernel, initrd and the boot page tables and GDT; returns the kernel and initrd range.
fn load_guest(ram: &GuestRam, cfg: &VmConfig) -> Result<(LoadedKernel, Option<(u64, u64)>)> {
    let mem = ram.memory();
    let kernel = boot::load_kernel(mem, &cfg.kernel)?;
    let low_end = ram.regions()[0].size;
    if kernel.end > low_end {
        return Err(Error::Config {
            field: "memory_mib",
            reason: format!(
                "{} MiB cannot hold the kernel ending at {:#x}",
                cfg.memory_mib, kernel.end
            ),
        });
    }
    let initrd = cfg
        .initrd
        .as_deref()
        .map(|p| boot::load_initrd(mem, p, &kernel, low_end))
        .transpose()?;
    boot::write_page_tables_and_gdt(mem)?;
    Ok((kernel, initrd))
}

/// The port bus: COM1 (with its input thread for a pty), i8042, RTC, ACPI sleep
/// registers, debug-exit. Returns the bus and the console pty's path.
fn legacy_devices(
    vm: &VmFd,
    cfg: &VmConfig,
    control: &Arc<Control>,
    filter: &Option<Arc<Filter>>,
    backends: &mut Vec<Backend>,
) -> Result<(Bus, Option<PathBuf>)> {
    let mut bus = Bus::default();
    let console = Console::open(&cfg.console, irq_line(vm, cfg.irqchip, COM1_IRQ)?)?;
    let serial = Arc::new(Mutex::new(console.device));
    bus.insert("serial", u64::from(COM1_PORT), 8, serial.clone())?;
    if let Some(epoll) = console.input_epoll {
        backends.push(Backend::spawn(
            "console",
            epoll,
            filter.clone(),
            move || lock(&serial).pump_input(),
        )?);
    }
    bus.insert(
        "i8042",
        u64::from(I8042_PORT),
        5,
        shared(I8042::new(control.clone())),
    )?;
    bus.insert("rtc", u64::from(RTC_PORT), 2, shared(Rtc::default()))?;
    let sleep = shared(SleepControl::new(control.clone()));
    bus.insert(
        "acpi-sleep",
        u64::from(SLEEP_CONTROL_PORT),
        SLEEP_REGS_LEN,
        sleep,
    )?;
    bus.insert(
        "debug-exit",
        u64::from(DEBUG_EXIT_PORT),
        1,
        shared(DebugExit::new(control.clone())),
    )?;
    Ok((bus, console.pty))
}

/// The MMIO bus: one virtio-mmio window and GSI per device (disks, rng, vsock, net, in
/// that order), with a backend thread for devices that have host-side fds.
fn virtio_devices(
    vm: &VmFd,
    cfg: &VmConfig,
    mem: &GuestMem,
    filter: &Option<Arc<Filter>>,
    backends: &mut Vec<Backend>,
) -> Result<(Bus, Vec<crate::acpi::MmioDevice>)> {
    // (name, device, epoll set of a device with host-side fds)
    type Entry = (&'static str, Box<dyn VirtioDevice>, Option<Arc<Epoll>>);
    let mut devices: Vec<Entry> = Vec::new();
    for (i, d) in cfg.disks.iter().enumerate() {
        devices.push((
            "virtio-blk",
            Box::new(Block::open(&d.path, d.read_only, i)?),
            None,
        ));
    }
    if cfg.rng {
        devices.push(("virtio-rng", Box::new(Rng::default()), None));
    }
    if let Some(v) = &cfg.vsock {
        let dev = Vsock::new(v.guest_cid, &v.uds)?;
        let epoll = dev.epoll();
        devices.push(("virtio-vsock", Box::new(dev), Some(epoll)));
    }
    if let Some(n) = &cfg.net {
        let dev = Net::open(&n.tap)?;
        let epoll = dev.epoll();
        devices.push(("virtio-net", Box::new(dev), Some(epoll)));
    }
    let mut bus = Bus::default();
    let mut described = Vec::new();
    for (i, (kind, dev, epoll)) in devices.into_iter().enumerate() {
        let base = VIRTIO_MMIO_BASE + i as u64 * VIRTIO_MMIO_SIZE;
        let gsi = VIRTIO_IRQ_BASE + i as u32;
        let irq = irq_line(vm, cfg.irqchip, gsi)?;
        let t = Arc::new(Mutex::new(MmioTransport::new(dev, mem.clone(), irq)));
        if let Some(epoll) = epoll {
            let t = t.clone();
            backends.push(Backend::spawn(kind, epoll, filter.clone(), move || {
                lock(&t).service()
            })?);
        }
        bus.insert(&format!("{kind}@{base:#x}"), base, VIRTIO_MMIO_SIZE, t)?;
        described.push(crate::acpi::MmioDevice {
            base,
            len: VIRTIO_MMIO_SIZE,
            gsi,
        });
    }
    Ok((bus, described))
}

/// vCPUs with normalised CPUID, boot MSRs and registers, and (irqchip) LAPIC LINTs.
fn create_vcpus(
    kvm_sys: &Kvm,
    vm: &VmFd,
    cfg: &VmConfig,
    entry: boot::Entry,
) -> Result<Vec<VcpuFd>> {
    let supported = kvm_sys
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(kvm("KVM_GET_SUPPORTED_CPUID"))?;
    let mut vcpus = Vec::new();
    for id in 0..cfg.vcpus {
        let vcpu = vm
            .create_vcpu(u64::from(id))
            .map_err(kvm("KVM_CREATE_VCPU"))?;
        let mut cpuid = supported.clone();
        cpu::normalize_cpuid(&mut cpuid, id, cfg.vcpus);
        vcpu.set_cpuid2(&cpuid).map_err(kvm("KVM_SET_CPUID2"))?;
        cpu::set_msrs(&vcpu, id)?;
        cpu::set_boot_registers(&vcpu, entry)?;
        if cfg.irqchip {
            cpu::set_lint(&vcpu)?;
        }
        vcpus.push(vcpu);
    }
    Ok(vcpus)
}

/// Stops a VM from outside; cheap to clone and send to another thread.
#[derive(Debug, Clone)]
pub struct StopHandle(Arc<Control>);

impl StopHandle {
    pub fn stop(&self) {
        self.0.stop(ShutdownReason::Stopped);
    }
}

fn shared<D: BusDevice + 'static>(d: D) -> Arc<Mutex<dyn BusDevice>> {
    Arc::new(Mutex::new(d))
}

/// An interrupt line for `gsi`, wired to KVM when there is an irqchip.
fn irq_line(vm: &VmFd, irqchip: bool, gsi: u32) -> Result<IrqLine> {
    let line = IrqLine::new(gsi).map_err(io("eventfd"))?;
    if irqchip {
        vm.register_irqfd(&line.evt, gsi)
            .map_err(kvm("KVM_IRQFD"))?;
    }
    Ok(line)
}

fn kick_signal() -> i32 {
    SIGRTMIN() + 2
}

/// The kick signal only has to interrupt KVM_RUN (EINTR); its handler does nothing.
fn install_kick_handler() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        extern "C" fn noop(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}
        result = register_signal_handler(kick_signal(), noop).map_err(|e| Error::Io {
            op: "install vcpu kick handler",
            source: std::io::Error::from_raw_os_error(e.errno()),
        });
    });
    result
}
