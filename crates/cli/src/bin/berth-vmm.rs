//! `berth-vmm`: the process that runs a microVM. `berth vm run ARGS` replaces itself
//! with this program (found next to the `berth` binary), so the monitor of a running guest
//! carries only the VMM library and its argument parser, not the container runtime,
//! image store and engine: its memory overhead stays below 3 MiB (docs/performance.md).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use berth_vmm::{ConsoleConfig, DiskConfig, NetConfig, ShutdownReason, Vm, VmConfig, VsockConfig};
use clap::Parser;

/// Boot a kernel (bzImage or ELF vmlinux) in a KVM microVM and exit with the guest's
/// status (`berth vm run` executes this program).
#[derive(clap::Parser, Debug)]
#[command(name = "berth vm run", bin_name = "berth vm run", version)]
struct RunArgs {
    /// Kernel image: bzImage or ELF vmlinux.
    #[arg(long)]
    kernel: PathBuf,
    /// Initial ramdisk (initramfs).
    #[arg(long)]
    initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "console=ttyS0 reboot=t panic=-1")]
    cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    cpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    memory: u32,
    /// Raw disk image as virtio-blk; append ",ro" for read-only. Repeatable.
    #[arg(long = "disk", value_name = "FILE[,ro]")]
    disks: Vec<String>,
    /// Add a virtio-rng device.
    #[arg(long)]
    rng: bool,
    /// Existing tap device for virtio-net.
    #[arg(long, value_name = "TAP")]
    net: Option<String>,
    /// virtio-vsock with guest CID and host unix socket.
    #[arg(long, value_name = "CID,SOCK")]
    vsock: Option<String>,
    /// Serial console: "stdio", "pty" (a new pseudo-terminal, its path printed on
    /// stderr; what is typed there reaches the guest) or a file to write it to.
    #[arg(long, default_value = "stdio")]
    console: String,
    /// Print the VM-exit table to stderr when the VM stops.
    #[arg(long)]
    stats: bool,
    /// Freestanding guests: no LAPIC/IOAPIC/PIT, every vCPU starts at the entry point,
    /// HLT stops a vCPU.
    #[arg(long)]
    no_irqchip: bool,
    /// Back guest memory with 4 KiB pages only (default: 2 MiB aligned and advised for
    /// transparent huge pages, faster to boot; small guests then hold memory in 2 MiB steps).
    #[arg(long)]
    no_hugepages: bool,
}

fn config(a: &RunArgs) -> anyhow::Result<VmConfig> {
    let mut cfg = VmConfig::new(&a.kernel);
    cfg.initrd = a.initrd.clone();
    cfg.cmdline = a.cmdline.clone();
    cfg.vcpus = a.cpus;
    cfg.memory_mib = a.memory;
    cfg.rng = a.rng;
    cfg.irqchip = !a.no_irqchip;
    cfg.hugepages = !a.no_hugepages;
    for d in &a.disks {
        let (path, read_only) = match d.strip_suffix(",ro") {
            Some(p) => (p, true),
            None => (d.as_str(), false),
        };
        if path.is_empty() || path.contains(',') {
            bail!("--disk {d}: expected FILE or FILE,ro");
        }
        cfg.disks.push(DiskConfig {
            path: path.into(),
            read_only,
        });
    }
    cfg.net = a.net.clone().map(|tap| NetConfig { tap });
    if let Some(v) = &a.vsock {
        let (cid, sock) = v
            .split_once(',')
            .with_context(|| format!("--vsock {v}: expected CID,SOCK"))?;
        let guest_cid = cid
            .parse()
            .with_context(|| format!("--vsock {v}: CID {cid:?} is not a number"))?;
        cfg.vsock = Some(VsockConfig {
            guest_cid,
            uds: sock.into(),
        });
    }
    cfg.console = match a.console.as_str() {
        "stdio" => ConsoleConfig::Stdout,
        "pty" => ConsoleConfig::Pty,
        file => ConsoleConfig::File(file.into()),
    };
    Ok(cfg)
}

fn run(a: &RunArgs) -> anyhow::Result<u8> {
    let vm = Vm::build(&config(a)?)?;
    if let Some(pty) = vm.console_pty() {
        eprintln!("berth: console on {}", pty.display());
    }
    let report = vm.run()?;
    if a.stats {
        eprint!("{}", report.stats);
    }
    match &report.reason {
        ShutdownReason::Error(msg) => bail!("vm stopped: {msg}"),
        reason => Ok(u8::try_from(reason.exit_code()).unwrap_or(1)),
    }
}

fn main() -> ExitCode {
    match run(&RunArgs::parse()) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("berth vm run: {e:#}");
            ExitCode::FAILURE
        }
    }
}
