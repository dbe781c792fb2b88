//! The smallest embedder of berth-vmm: boot a kernel with a serial console and exit with
//! the guest's status. `benches/vmm/density.sh` builds it statically to measure what the
//! VMM itself costs in memory, apart from the `berth` CLI around it.
//!
//!     boot KERNEL [CMDLINE [MEMORY_MIB [CONSOLE_FILE]]]

use std::process::ExitCode;

use berth_vmm::{ConsoleConfig, ShutdownReason, Vm, VmConfig};

const USAGE: &str = "usage: boot KERNEL [CMDLINE [MEMORY_MIB [CONSOLE_FILE]]]";

fn config(args: &[String]) -> Result<VmConfig, String> {
    let kernel = args.first().ok_or(USAGE)?;
    let mut cfg = VmConfig::new(kernel);
    if let Some(cmdline) = args.get(1) {
        cfg.cmdline = cmdline.clone();
    }
    if let Some(mib) = args.get(2) {
        cfg.memory_mib = mib
            .parse()
            .map_err(|_| format!("MEMORY_MIB {mib:?}: not a number"))?;
    }
    if let Some(file) = args.get(3) {
        cfg.console = ConsoleConfig::File(file.into());
    }
    if args.len() > 4 {
        return Err(USAGE.into());
    }
    Ok(cfg)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let run = || -> Result<ShutdownReason, String> {
        let vm = Vm::build(&config(&args)?).map_err(|e| e.to_string())?;
        Ok(vm.run().map_err(|e| e.to_string())?.reason)
    };
    match run() {
        Ok(ShutdownReason::Error(msg)) => {
            eprintln!("boot: vm stopped: {msg}");
            ExitCode::FAILURE
        }
        Ok(reason) => ExitCode::from(u8::try_from(reason.exit_code()).unwrap_or(1)),
        Err(msg) => {
            eprintln!("boot: {msg}");
            ExitCode::FAILURE
        }
    }
}
