//! What a VM is built from. Plain data; [`crate::Vm::build`] validates it.

use std::path::PathBuf;

/// Everything needed to build one VM.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// bzImage or ELF (vmlinux or a freestanding guest).
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
    /// 1..=[`MAX_VCPUS`].
    pub vcpus: u8,
    /// Guest RAM; split into two regions around the 32-bit MMIO hole when large.
    pub memory_mib: u32,
    pub disks: Vec<DiskConfig>,
    pub rng: bool,
    pub vsock: Option<VsockConfig>,
    pub net: Option<NetConfig>,
    pub console: ConsoleConfig,
    /// `true` (Linux): in-kernel LAPIC/IOAPIC/PIT, HLT is handled by KVM, application
    /// processors wait for INIT/SIPI. `false` (freestanding guests): no irqchip, HLT exits
    /// to the VMM and stops that vCPU, every vCPU starts at the entry point.
    pub irqchip: bool,
    /// Confine each vCPU thread (no_new_privs, no capabilities, seccomp allow-list)
    /// before it runs guest code. See [`crate::confine`].
    pub confine: bool,
    /// Advise transparent huge pages for guest RAM (`MADV_HUGEPAGE`; `false`:
    /// `MADV_NOHUGEPAGE`). Faster boots, fewer nested page faults; but a guest that
    /// touches one byte of a 2 MiB range gets all of it. See [`crate::memory`].
    pub hugepages: bool,
}

/// Upper bound on vCPUs (IOAPIC/MADT sizing).
pub const MAX_VCPUS: u8 = 32;

impl VmConfig {
    /// A Linux VM with defaults: 1 vCPU, 128 MiB, serial console on stdout.
    pub fn new(kernel: impl Into<PathBuf>) -> Self {
        VmConfig {
            kernel: kernel.into(),
            initrd: None,
            cmdline: "console=ttyS0 reboot=t panic=-1".to_string(),
            vcpus: 1,
            memory_mib: 128,
            disks: Vec::new(),
            rng: false,
            vsock: None,
            net: None,
            console: ConsoleConfig::Stdout,
            irqchip: true,
            confine: true,
            hugepages: true,
        }
    }
}

/// A raw disk image exposed as virtio-blk.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    pub path: PathBuf,
    pub read_only: bool,
}

/// virtio-vsock with Firecracker's hybrid host side: a unix socket at `uds`.
#[derive(Debug, Clone)]
pub struct VsockConfig {
    pub guest_cid: u64,
    pub uds: PathBuf,
}

/// virtio-net backed by an existing tap device.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub tap: String,
}

/// Where the 16550 serial console's output goes.
#[derive(Debug, Clone)]
pub enum ConsoleConfig {
    Stdout,
    /// Created or truncated.
    File(PathBuf),
    /// A new pseudo-terminal ([`crate::Vm::console_pty`] names it); what is typed there
    /// reaches the guest.
    Pty,
    /// Output discarded.
    Null,
}
