//! `berth vm run`: boot a kernel in a KVM microVM and exit with the guest's status.

use std::path::PathBuf;

use anyhow::{bail, Context};
use berth_vmm::{ConsoleConfig, DiskConfig, NetConfig, ShutdownReason, Vm, VmConfig, VsockConfig};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: VmCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum VmCommand {
    /// Boot a kernel (bzImage or ELF vmlinux) and wait until the guest shuts down.
    Run(RunArgs),
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Kernel image: bzImage or ELF vmlinux.
    #[arg(long)]
    pub kernel: PathBuf,
    /// Initial ramdisk (initramfs).
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    /// Kernel command line.
    #[arg(long, default_value = "console=ttyS0 reboot=t panic=-1")]
    pub cmdline: String,
    /// Number of vCPUs.
    #[arg(long, default_value_t = 1)]
    pub cpus: u8,
    /// Guest memory in MiB.
    #[arg(long, default_value_t = 128)]
    pub memory: u32,
    /// Raw disk image as virtio-blk; append ",ro" for read-only. Repeatable.
    #[arg(long = "disk", value_name = "FILE[,ro]")]
    pub disks: Vec<String>,
    /// Add a virtio-rng device.
    #[arg(long)]
    pub rng: bool,
    /// Existing tap device for virtio-net.
    #[arg(long, value_name = "TAP")]
    pub net: Option<String>,
    /// virtio-vsock with guest CID and host unix socket.
    #[arg(long, value_name = "CID,SOCK")]
    pub vsock: Option<String>,
    /// Serial console: "stdio", "pty" (a new pseudo-terminal, its path printed on
    /// stderr; what is typed there reaches the guest) or a file to write it to.
    #[arg(long, default_value = "stdio")]
    pub console: String,
    /// Print the VM-exit table to stderr when the VM stops.
    #[arg(long)]
    pub stats: bool,
    /// Freestanding guests: no LAPIC/IOAPIC/PIT, every vCPU starts at the entry point,
    /// HLT stops a vCPU.
    #[arg(long)]
    pub no_irqchip: bool,
}

fn config(a: &RunArgs) -> anyhow::Result<VmConfig> {
    let mut cfg = VmConfig::new(&a.kernel);
    cfg.initrd = a.initrd.clone();
    cfg.cmdline = a.cmdline.clone();
    cfg.vcpus = a.cpus;
    cfg.memory_mib = a.memory;
    cfg.rng = a.rng;
    cfg.irqchip = !a.no_irqchip;
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

pub fn run(a: &Args) -> anyhow::Result<u8> {
    let VmCommand::Run(a) = &a.command;
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
        reason => {
            tracing::info!("vm stopped: {reason:?}");
            Ok(u8::try_from(reason.exit_code()).unwrap_or(1))
        }
    }
}
