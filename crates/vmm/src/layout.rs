//! Fixed guest-physical addresses of the x86_64 machine this VMM builds.

/// GDT with null, code64, data and TSS descriptors.
pub const GDT_ADDR: u64 = 0x500;
/// An empty IDT (the guest installs its own before enabling interrupts).
pub const IDT_ADDR: u64 = 0x540;
/// hvm_start_info for the PVH entry, its module list and memory map after it.
pub const PVH_INFO_ADDR: u64 = 0x6000;
/// The Linux zero page (`struct boot_params`); `rsi` points here at entry.
pub const ZERO_PAGE: u64 = 0x7000;
/// Initial stack pointer (grows down below the zero page's neighbours).
pub const BOOT_STACK: u64 = 0x8ff0;
/// PML4 of the identity page tables; PDPT follows, then four page directories
/// mapping the first 4 GiB with 2 MiB pages.
pub const PML4_ADDR: u64 = 0x9000;
pub const PDPT_ADDR: u64 = 0xa000;
pub const PD_ADDR: u64 = 0xb000;
/// Kernel command line.
pub const CMDLINE_ADDR: u64 = 0x20000;
pub const CMDLINE_MAX: usize = 4096;
/// Start of the EBDA: RAM below it is usable, [EBDA, 1 MiB) is reserved.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables live in the BIOS area the kernel scans for the RSDP.
pub const ACPI_ADDR: u64 = 0xe0000;
pub const ACPI_MAX: u64 = 0x10000;
/// Where kernels are loaded (bzImage protected-mode code, freestanding ELF guests).
pub const HIMEM_START: u64 = 0x10_0000;
/// 32-bit MMIO hole: no RAM between here and 4 GiB.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// Each virtio-mmio device gets one 4 KiB window from here.
pub const VIRTIO_MMIO_BASE: u64 = MMIO_GAP_START;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// Interrupt controller addresses (in-kernel irqchip).
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
pub const LAPIC_ADDR: u64 = 0xfee0_0000;
/// KVM's TSS and identity-map pages (needed on Intel), just below the IOAPIC.
pub const KVM_TSS_ADDR: u64 = 0xfffb_d000;
/// Legacy devices.
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const I8042_PORT: u16 = 0x60;
pub const RTC_PORT: u16 = 0x70;
/// ACPI hardware-reduced sleep control and status registers (FADT points here; S5 in
/// the control register powers off).
pub const SLEEP_CONTROL_PORT: u16 = 0x600;
pub const SLEEP_STATUS_PORT: u16 = 0x601;
/// QEMU-compatible isa-debug-exit port: a guest writes a status byte to stop the VM.
pub const DEBUG_EXIT_PORT: u16 = 0x501;
/// First GSI handed to virtio devices (one each, in order, up to the last IOAPIC pin).
/// COM1's IRQ 4 is below it; no other device here declares an interrupt.
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// IOAPIC pins: GSIs must stay below this.
pub const IOAPIC_PINS: u32 = 24;
