//! Shared helpers: build the freestanding test guest once, run it, read its console.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use berth_vmm::{ConsoleConfig, ExitReport, Vm, VmConfig};

/// Compiles guests/{start.S,guest.c} into an ELF linked at 1 MiB.
pub fn guest_elf() -> &'static Path {
    static ELF: OnceLock<PathBuf> = OnceLock::new();
    ELF.get_or_init(|| {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("guests");
        // Named by a hash of the sources, so runs share one file per guest version; built
        // under a per-process name and renamed, so concurrent test binaries do not race.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for f in ["start.S", "guest.c", "guest.ld"] {
            std::hash::Hash::hash(
                &std::fs::read(src.join(f)).expect("read guest source"),
                &mut h,
            );
        }
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let out = dir.join(format!(
            "berth-vmm-guest-{:016x}.elf",
            std::hash::Hasher::finish(&h)
        ));
        if out.exists() {
            return out;
        }
        let tmp = dir.join(format!("berth-vmm-guest-{}.tmp", std::process::id()));
        let status = Command::new("gcc")
            .args([
                "-ffreestanding",
                "-nostdlib",
                "-static",
                "-fno-pic",
                "-no-pie",
                "-mno-red-zone",
                "-mgeneral-regs-only",
                "-fno-stack-protector",
                "-fcf-protection=none",
                "-O2",
                "-Wall",
                "-Werror",
                "-Wl,--build-id=none",
            ])
            .arg(format!("-Wl,-T,{}", src.join("guest.ld").display()))
            .arg("-o")
            .arg(&tmp)
            .arg(src.join("start.S"))
            .arg(src.join("guest.c"))
            .status()
            .expect("run gcc");
        assert!(status.success(), "gcc failed to build the test guest");
        std::fs::rename(&tmp, &out).expect("rename the test guest into place");
        out
    })
}

/// A config for the test guest running `test=NAME`, console into `console`.
pub fn guest_config(test: &str, console: &Path) -> VmConfig {
    let mut cfg = VmConfig::new(guest_elf());
    cfg.cmdline = format!("test={test}");
    cfg.memory_mib = 16;
    cfg.irqchip = false;
    cfg.console = ConsoleConfig::File(console.to_path_buf());
    cfg
}

/// Builds and runs `cfg`; returns the report and the console output.
pub fn run(cfg: &VmConfig) -> (ExitReport, String) {
    let vm = Vm::build(cfg).expect("build VM");
    let report = vm.run().expect("run VM");
    let ConsoleConfig::File(path) = &cfg.console else {
        panic!("console must be a file")
    };
    (report, std::fs::read_to_string(path).unwrap_or_default())
}
