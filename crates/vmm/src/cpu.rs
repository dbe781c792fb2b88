//! Per-vCPU architectural state at entry: CPUID, MSRs, registers, FPU, LAPIC LINTs.

use kvm_bindings::{kvm_fpu, kvm_msr_entry, kvm_regs, CpuId, Msrs};
use kvm_ioctls::VcpuFd;

use crate::boot::{gdt, segment, Entry};
use crate::error::{kvm, Error, Result};
use crate::layout::*;

/// Rewrites the host-supported CPUID for vCPU `id` of `count`: APIC ids in leaves 1,
/// 0xb, 0x1f and 0x8000001e, a flat topology (one package, `count` cores, one thread
/// each), and the hypervisor bit.
pub fn normalize_cpuid(cpuid: &mut CpuId, id: u8, count: u8) {
    let (id, count) = (u32::from(id), u32::from(count));
    // Bits of the x2APIC id that number cores: ceil(log2(count)).
    let core_bits = u32::BITS - (count.max(1) - 1).leading_zeros();
    for e in cpuid.as_mut_slice() {
        match e.function {
            0x1 => {
                e.ebx = (e.ebx & 0xffff) | (id << 24) | (count << 16);
                e.ecx |= 1 << 31;
                if count > 1 {
                    e.edx |= 1 << 28;
                }
            }
            0x4 => {
                e.eax = (e.eax & 0x03ff_ffff) | ((count - 1) << 26);
            }
            0xb | 0x1f => {
                e.edx = id;
                match e.index {
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = 1 << 8;
                    }
                    1 => {
                        e.eax = core_bits;
                        e.ebx = count;
                        e.ecx = (2 << 8) | 1;
                    }
                    i => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = i;
                    }
                }
            }
            0x8000_0008 => e.ecx = (e.ecx & !0xff) | (count - 1),
            0x8000_001e => {
                e.eax = id;
                e.ebx = (e.ebx & !0xff) | id;
                e.ecx = 0;
            }
            _ => {}
        }
    }
}

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;

/// Boot MSRs: syscall/sysenter cleared, TSC zero, fast strings on.
pub fn set_msrs(vcpu: &VcpuFd, id: u8) -> Result<()> {
    let list = [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    ];
    let entries: Vec<kvm_msr_entry> = list
        .iter()
        .map(|&(index, data)| kvm_msr_entry {
            index,
            data,
            ..Default::default()
        })
        .collect();
    let msrs = Msrs::from_entries(&entries).map_err(|e| Error::Vcpu {
        id,
        reason: format!("MSR list: {e:?}"),
    })?;
    let n = vcpu.set_msrs(&msrs).map_err(kvm("KVM_SET_MSRS"))?;
    if n != list.len() {
        return Err(Error::Vcpu {
            id,
            reason: format!("KVM_SET_MSRS rejected MSR {:#x}", list[n].0),
        });
    }
    Ok(())
}

/// Flat segments from the boot GDT and, for the Linux 64-bit entry, long mode with the
/// identity page tables and rsi at the zero page; for the PVH entry, 32-bit protected mode
/// without paging and ebx at the hvm_start_info.
pub fn set_boot_registers(vcpu: &VcpuFd, entry: Entry) -> Result<()> {
    let g = gdt();
    let mut s = vcpu.get_sregs().map_err(kvm("KVM_GET_SREGS"))?;
    let pvh = matches!(entry, Entry::Pvh(_));
    let code = if pvh {
        segment(g[4], 4)
    } else {
        segment(g[1], 1)
    };
    let data = segment(g[2], 2);
    s.cs = code;
    s.ds = data;
    s.es = data;
    s.fs = data;
    s.gs = data;
    s.ss = data;
    s.tr = segment(g[3], 3);
    s.gdt.base = GDT_ADDR;
    s.gdt.limit = (std::mem::size_of_val(&g) - 1) as u16;
    s.idt.base = IDT_ADDR;
    s.idt.limit = 7;
    const CR0_PE: u64 = 1;
    const CR0_ET: u64 = 1 << 4;
    const CR0_PG: u64 = 1 << 31;
    const CR4_PAE: u64 = 1 << 5;
    const EFER_LME: u64 = 1 << 8;
    const EFER_LMA: u64 = 1 << 10;
    let regs = match entry {
        Entry::Linux64(rip) => {
            s.cr0 = CR0_PE | CR0_ET | CR0_PG;
            s.cr3 = PML4_ADDR;
            s.cr4 = CR4_PAE;
            s.efer = EFER_LME | EFER_LMA;
            kvm_regs {
                rip,
                rsp: BOOT_STACK,
                rbp: BOOT_STACK,
                rsi: ZERO_PAGE,
                rflags: 2,
                ..Default::default()
            }
        }
        Entry::Pvh(rip) => {
            s.cr0 = CR0_PE | CR0_ET;
            s.cr3 = 0;
            s.cr4 = 0;
            s.efer = 0;
            kvm_regs {
                rip,
                rbx: PVH_INFO_ADDR,
                rflags: 2,
                ..Default::default()
            }
        }
    };
    vcpu.set_sregs(&s).map_err(kvm("KVM_SET_SREGS"))?;

    vcpu.set_regs(&regs).map_err(kvm("KVM_SET_REGS"))?;

    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm("KVM_SET_FPU"))
}

/// LINT0 as ExtINT (the PIC's output) and LINT1 as NMI, as a PC BIOS leaves them.
pub fn set_lint(vcpu: &VcpuFd) -> Result<()> {
    const APIC_LVT0: usize = 0x350;
    const APIC_LVT1: usize = 0x360;
    const MODE_EXTINT: u32 = 7;
    const MODE_NMI: u32 = 4;
    let mut lapic = vcpu.get_lapic().map_err(kvm("KVM_GET_LAPIC"))?;
    for (reg, mode) in [(APIC_LVT0, MODE_EXTINT), (APIC_LVT1, MODE_NMI)] {
        let b = &mut lapic.regs[reg..reg + 4];
        let v = u32::from_le_bytes([b[0] as u8, b[1] as u8, b[2] as u8, b[3] as u8]);
        let v = (v & !0x700) | (mode << 8);
        for (dst, src) in b.iter_mut().zip(v.to_le_bytes()) {
            *dst = src as std::os::raw::c_char;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm("KVM_SET_LAPIC"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn cpuid_carries_apic_id_topology_and_hypervisor_bit() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0xdead_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 2,
                ..Default::default()
            },
        ];
        let mut c = CpuId::from_entries(&entries).unwrap();
        normalize_cpuid(&mut c, 3, 4);
        let e = c.as_slice();
        assert_eq!(e[0].ebx, (3 << 24) | (4 << 16) | 0x0800);
        assert_ne!(e[0].ecx & (1 << 31), 0);
        assert_ne!(e[0].edx & (1 << 28), 0);
        assert_eq!((e[1].eax, e[1].ebx, e[1].ecx, e[1].edx), (2, 4, 0x201, 3));
        assert_eq!((e[2].ebx, e[2].ecx), (0, 2));
    }
}
