//! `berth vm run`: replaces this process with `berth-vmm` (installed next to `berth`), so
//! that a running microVM's monitor is a small process of its own; see
//! src/bin/berth-vmm.rs for the options.

use std::os::unix::process::CommandExt;

use anyhow::Context;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: VmCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum VmCommand {
    /// Boot a kernel (bzImage or ELF vmlinux) and wait until the guest shuts down
    /// (`berth vm run --help` lists the options).
    #[command(disable_help_flag = true)]
    Run {
        /// Options of berth-vmm: --kernel K [--initrd I] [--cmdline C] [--cpus N]
        /// [--memory MiB] [--disk FILE[,ro]] [--net TAP] [--vsock CID,SOCK] [--rng]
        /// [--console stdio|pty|FILE] [--stats] [--no-irqchip] [--no-hugepages].
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

pub fn run(a: &Args) -> anyhow::Result<u8> {
    let VmCommand::Run { args } = &a.command;
    let exe = std::env::current_exe().context("locating the berth binary")?;
    let vmm = exe.with_file_name("berth-vmm");
    if !vmm.exists() {
        anyhow::bail!(
            "vm run: {} not found (it is built and installed with berth: make build)",
            vmm.display()
        );
    }
    let err = std::process::Command::new(&vmm).args(args).exec();
    Err(err).with_context(|| format!("vm run: executing {}", vmm.display()))
}
