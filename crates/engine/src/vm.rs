//! `--isolation vm`: the container runs inside a berth microVM. The engine makes the
//! bundle as for a process container, copies its rootfs into an ext4 disk image, boots
//! `berth-vmm` with Debian's kernel and the agent initramfs
//! (`scripts/vm/mkagent-initramfs.sh`), and has `berth-agent` run the same spec with the
//! same runtime in the guest over vsock. The VM lives exactly as long as the container.
//!
//! So far: foreground `run` (stdout/stderr, exit code, -e, -w, -u, --memory, --cpus,
//! --rm), no network, no host binds, no terminal, no detach.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use berth_agent::client::process;
use berth_agent::proto::{self, output_chunk::Stream, rootfs::Source};
use berth_agent::{AgentClient, Timeouts};
use serde_json::Value;
use std::io::Write;

use crate::error::{Error, IoContext, Result};
use crate::options::{Network, RunOptions};

/// Guest RAM added to `--memory` for the kernel and the agent (and the default guest RAM
/// without `--memory`).
pub const OVERHEAD_MIB: u64 = 96;
const DEFAULT_MIB: u64 = 256;
const CMDLINE: &str = "console=ttyS0 reboot=t pci=off quiet panic=-1";

/// `--isolation`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Isolation {
    #[default]
    Process,
    Vm,
}

impl std::str::FromStr for Isolation {
    type Err = Error;
    fn from_str(s: &str) -> Result<Isolation> {
        match s {
            "process" | "default" => Ok(Isolation::Process),
            "vm" => Ok(Isolation::Vm),
            _ => Err(Error::BadFlag {
                flag: "--isolation",
                value: s.into(),
                reason: "expected process or vm".into(),
            }),
        }
    }
}

/// What a VM container boots: the kernel (ELF vmlinux), the agent initramfs, and the VMM.
#[derive(Clone, Debug)]
pub struct VmSettings {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
    pub vmm: PathBuf,
    /// From starting the VMM to the agent's Version answer.
    pub boot_timeout: Duration,
}

impl VmSettings {
    /// `BERTH_VM_KERNEL`, `BERTH_VM_INITRD` (defaults under /usr/lib/berth), berth-vmm
    /// beside this executable, `BERTH_VM_BOOT_TIMEOUT` seconds (default 120).
    pub fn from_env() -> VmSettings {
        let var = |k: &str, d: &str| std::env::var_os(k).map_or_else(|| d.into(), PathBuf::from);
        let vmm = std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(|d| d.join("berth-vmm")))
            .unwrap_or_else(|| "berth-vmm".into());
        let boot = std::env::var("BERTH_VM_BOOT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120);
        VmSettings {
            kernel: var("BERTH_VM_KERNEL", "/usr/lib/berth/vmlinux"),
            initrd: var("BERTH_VM_INITRD", "/usr/lib/berth/agent.cpio"),
            vmm,
            boot_timeout: Duration::from_secs(boot),
        }
    }
}

fn refuse(why: impl Into<String>) -> Error {
    Error::Vm(why.into())
}

/// Refuse, before anything is made, what VM containers cannot do yet.
pub(crate) fn check(opts: &RunOptions, vm: &VmSettings) -> Result<()> {
    if opts.network != Network::None {
        return Err(refuse(format!(
            "--network {}: VM containers have no network yet (use --network none)",
            opts.network
        )));
    }
    if !opts.binds.is_empty() {
        return Err(refuse(
            "-v: host bind mounts cannot reach a VM (no virtio-fs daemon in Debian 12)",
        ));
    }
    if opts.tty || opts.detach || opts.interactive {
        return Err(refuse(
            "-t, -i and -d are not supported for VM containers yet",
        ));
    }
    for (what, path) in [
        ("kernel (BERTH_VM_KERNEL)", &vm.kernel),
        ("initramfs (BERTH_VM_INITRD)", &vm.initrd),
        ("VMM", &vm.vmm),
    ] {
        if !path.is_file() {
            return Err(refuse(format!("{what} {}: not found", path.display())));
        }
    }
    Ok(())
}

/// Guest RAM in MiB and vCPUs for the container's limits.
pub(crate) fn machine(opts: &RunOptions) -> (u64, u32) {
    let mib = opts.memory.map_or(DEFAULT_MIB, |b| {
        (b.max(0) as u64).div_ceil(1 << 20) + OVERHEAD_MIB
    });
    let cpus = opts.cpus.map_or(1, |c| c.ceil().max(1.0) as u32);
    (mib, cpus)
}

/// The spec the agent gets: the bundle's, less what refers to the host (bind mounts of
/// host files, namespace paths, hooks); the rootfs is the guest's disk.
pub(crate) fn guest_spec(mut spec: Value) -> Value {
    if let Some(mounts) = spec["mounts"].as_array_mut() {
        mounts.retain(|m| {
            let opts = m["options"].as_array().cloned().unwrap_or_default();
            m["type"] != "bind" && !opts.iter().any(|o| o == "bind" || o == "rbind")
        });
    }
    if let Some(ns) = spec["linux"]["namespaces"].as_array_mut() {
        for n in ns.iter_mut() {
            if let Some(o) = n.as_object_mut() {
                o.remove("path");
            }
        }
    }
    if let Some(o) = spec.as_object_mut() {
        o.remove("hooks");
    }
    spec
}

/// Copy `rootfs` into a new ext4 image `img` with room to write.
fn make_disk(rootfs: &Path, img: &Path) -> Result<()> {
    let used: u64 = walk_size(rootfs);
    let mib = (used + used / 4).div_ceil(1 << 20) + 64;
    let out = std::process::Command::new("mkfs.ext4")
        .args([
            "-q",
            "-F",
            "-O",
            "^has_journal",
            "-E",
            "root_owner=0:0",
            "-d",
        ])
        .arg(rootfs)
        .arg(img)
        .arg(format!("{mib}M"))
        .stdin(Stdio::null())
        .output()
        .map_err(|e| refuse(format!("mkfs.ext4: {e} (install e2fsprogs)")))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr);
        return Err(refuse(format!(
            "mkfs.ext4 {}: {}",
            img.display(),
            why.lines().last().unwrap_or("failed")
        )));
    }
    Ok(())
}

fn walk_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => walk_size(&e.path()) + 4096,
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()) + 4096,
            _ => 4096,
        })
        .sum()
}

/// Run the container of `bundle` in a VM whose files live in `dir`; returns its exit
/// code. The VMM is gone and `dir` removed when this returns, whatever happened.
pub(crate) fn run(vm: &VmSettings, opts: &RunOptions, bundle: &Path, dir: &Path) -> Result<i32> {
    std::fs::create_dir_all(dir).at(dir)?;
    let result = run_in(vm, opts, bundle, dir);
    let _ = std::fs::remove_dir_all(dir);
    result
}

fn run_in(vm: &VmSettings, opts: &RunOptions, bundle: &Path, dir: &Path) -> Result<i32> {
    let cfg = bundle.join("config.json");
    let spec: Value = serde_json::from_slice(&std::fs::read(&cfg).at(&cfg)?)
        .map_err(|e| refuse(format!("{}: {e}", cfg.display())))?;
    let img = dir.join("rootfs.ext4");
    make_disk(&bundle.join("rootfs"), &img)?;
    let (mib, cpus) = machine(opts);
    let uds = dir.join("vsock.sock");
    let console = dir.join("console.log");
    let mut cmd = tokio::process::Command::new(&vm.vmm);
    cmd.arg("--kernel")
        .arg(&vm.kernel)
        .arg("--initrd")
        .arg(&vm.initrd)
        .args(["--cmdline", CMDLINE, "--cpus", &cpus.to_string()])
        .args(["--memory", &mib.to_string(), "--disk"])
        .arg(&img)
        .arg("--vsock")
        .arg(format!("3,{}", uds.display()))
        .arg("--console")
        .arg(&console)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .at("tokio runtime")?;
    let spec = guest_spec(spec);
    rt.block_on(async {
        let mut vmm = cmd.spawn().at(&vm.vmm)?;
        let mut vmm_err = vmm.stderr.take();
        let code = tokio::select! {
            r = converse(vm, &uds, spec) => r,
            st = vmm.wait() => {
                // The VMM's own one-line error if it gave one, else the guest's last word.
                let mut why = String::new();
                if let Some(e) = vmm_err.as_mut() {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        tokio::io::AsyncReadExt::read_to_string(e, &mut why),
                    )
                    .await;
                }
                let why = why
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .map_or_else(|| last_line(&console), str::to_string);
                let st = st.map(|s| s.to_string()).unwrap_or_default();
                Err(refuse(format!("the VM stopped before the container exited ({st}): {why}")))
            }
        };
        // The agent powers the VM off after Shutdown; a VMM still there is killed.
        if tokio::time::timeout(Duration::from_secs(20), vmm.wait())
            .await
            .is_err()
        {
            let _ = vmm.start_kill();
            let _ = vmm.wait().await;
        }
        code
    })
}

fn last_line(console: &Path) -> String {
    std::fs::read_to_string(console)
        .ok()
        .and_then(|t| {
            t.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(str::to_string)
        })
        .unwrap_or_else(|| "no console output".into())
}

const ID: &str = "ctr";

/// Talk to the agent: create, stream the output here, start, wait, shut down.
async fn converse(vm: &VmSettings, uds: &Path, spec: Value) -> Result<i32> {
    // A nested guest under emulation is slow everywhere: creating a container there gets
    // the boot's allowance too.
    let timeouts = Timeouts {
        connect: vm.boot_timeout,
        create: vm.boot_timeout,
        ..Timeouts::default()
    };
    let agent = AgentClient::connect_vsock(uds, berth_agent::VSOCK_PORT, timeouts).await?;
    let req = proto::CreateContainerRequest {
        id: ID.into(),
        spec_json: serde_json::to_vec(&spec).map_err(|e| refuse(e.to_string()))?,
        rootfs: Some(proto::Rootfs {
            source: Some(Source::Block(proto::BlockRootfs {
                device: "/dev/vda".into(),
                fstype: "ext4".into(),
                writable: true,
            })),
        }),
        stdin: false,
    };
    agent.create(req).await?;
    let mut output = agent.output(process(ID, None)).await?;
    agent.start(ID).await?;
    let copy = async {
        // Our own stdio, written as chunks arrive (a CLI: blocking writes are fine).
        let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
        while let Ok(Some(chunk)) = output.message().await {
            let _ = match Stream::try_from(chunk.stream) {
                Ok(Stream::Stderr) => err.write_all(&chunk.data),
                _ => out.write_all(&chunk.data).and_then(|()| out.flush()),
            };
        }
    };
    let (code, ()) = tokio::join!(agent.wait(process(ID, None)), copy);
    let code = code?;
    let _ = agent.shutdown().await;
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_guest_spec_keeps_nothing_of_the_host() {
        let spec = serde_json::json!({
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/etc/hosts", "type": "bind", "source": "/var/lib/x/hosts"},
                {"destination": "/data", "source": "/srv", "options": ["rbind", "ro"]}
            ],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/run/netns/x"}]},
            "hooks": {"prestart": [{"path": "/usr/bin/host-thing"}]}
        });
        let g = guest_spec(spec);
        assert_eq!(g["mounts"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            g["linux"]["namespaces"][1],
            serde_json::json!({"type": "network"})
        );
        assert!(g.get("hooks").is_none());
    }

    #[test]
    fn guest_ram_is_the_limit_plus_the_agent() {
        let mut o = RunOptions::default();
        assert_eq!(machine(&o), (DEFAULT_MIB, 1));
        o.memory = Some(64 << 20);
        o.cpus = Some(1.5);
        assert_eq!(machine(&o), (64 + OVERHEAD_MIB, 2));
    }
}
