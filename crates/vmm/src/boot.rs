//! Linux x86 boot: load the kernel (bzImage or ELF), initrd, command line, zero page
//! with the e820 map, identity page tables and GDT for a 64-bit entry; for an ELF kernel
//! with a PVH note, the hvm_start_info for its 32-bit PVH entry instead.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::memory::GuestMem;
use linux_loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Address, Bytes, GuestAddress};

use crate::error::{Error, Result};
use crate::layout::*;
use crate::memory::Region;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// xloadflags bit: the kernel has a 64-bit entry point at load address + 0x200.
const XLF_KERNEL_64: u16 = 1;
const LOADFLAG_CAN_USE_HEAP: u8 = 0x80;

/// Kernel image formats the loader understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelFormat {
    BzImage,
    Elf,
}

/// How the boot vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// Linux 64-bit boot protocol: long mode, identity page tables, `rsi` = zero page.
    Linux64(u64),
    /// PVH (an ELF note of the kernel): 32-bit protected mode without paging, `ebx` =
    /// hvm_start_info, which carries the command line, the initrd and the memory map; what
    /// Firecracker and QEMU use when the note is there.
    Pvh(u64),
}

/// Where the kernel ended up and where to enter it.
#[derive(Debug, Clone, Copy)]
pub struct LoadedKernel {
    pub format: KernelFormat,
    pub entry: u64,
    pub end: u64,
    /// The PVH entry point of an ELF kernel that has the note.
    pub pvh_entry: Option<u64>,
    setup_header: Option<linux_loader::bootparam::setup_header>,
}

impl LoadedKernel {
    /// The PVH entry where the kernel has one, else the 64-bit entry.
    pub fn boot_entry(&self) -> Entry {
        match self.pvh_entry {
            Some(a) => Entry::Pvh(a),
            None => Entry::Linux64(self.entry),
        }
    }
}

fn kernel_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Kernel {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Open a kernel or initrd for reading, refusing anything but a regular file: opening a
/// FIFO blocks until a writer appears (O_NONBLOCK returns at once instead), and a device
/// such as /dev/zero would be read until guest memory is full.
pub fn open_regular(path: &Path) -> std::result::Result<File, String> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("open: {e}"))?;
    let t = f.metadata().map_err(|e| format!("stat: {e}"))?.file_type();
    if t.is_file() {
        return Ok(f);
    }
    let kind = if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_dir() {
        "a directory"
    } else {
        "a socket"
    };
    Err(format!("is {kind}, not a regular file"))
}

/// Detects the format from the magic numbers and loads the kernel into `mem`.
pub fn load_kernel(mem: &GuestMem, path: &Path) -> Result<LoadedKernel> {
    let mut f = open_regular(path).map_err(|e| kernel_err(path, e))?;
    let mut head = [0u8; 0x206];
    let n = read_up_to(&mut f, &mut head).map_err(|e| kernel_err(path, format!("read: {e}")))?;
    let format = if n >= 4 && head[..4] == *b"\x7fELF" {
        KernelFormat::Elf
    } else if n >= 0x206
        && u32::from_le_bytes([head[0x202], head[0x203], head[0x204], head[0x205]])
            == KERNEL_HDR_MAGIC
    {
        KernelFormat::BzImage
    } else {
        return Err(kernel_err(
            path,
            "neither an ELF file nor a bzImage (no HdrS magic at 0x202)",
        ));
    };
    let himem = Some(GuestAddress(HIMEM_START));
    match format {
        KernelFormat::Elf => {
            let r = Elf::load(mem, None, &mut f, himem)
                .map_err(|e| kernel_err(path, format!("ELF load: {e}")))?;
            let pvh_entry = match r.pvh_boot_cap {
                PvhBootCapability::PvhEntryPresent(a) => Some(a.raw_value()),
                _ => None,
            };
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load.raw_value(),
                end: r.kernel_end,
                pvh_entry,
                setup_header: None,
            })
        }
        KernelFormat::BzImage => {
            let r = BzImage::load(mem, None, &mut f, himem)
                .map_err(|e| kernel_err(path, format!("bzImage load: {e}")))?;
            let hdr = r
                .setup_header
                .ok_or_else(|| kernel_err(path, "bzImage without setup header"))?;
            if hdr.version < 0x020c || hdr.xloadflags & XLF_KERNEL_64 == 0 {
                return Err(kernel_err(path, "bzImage has no 64-bit entry point (boot protocol >= 2.12 with XLF_KERNEL_64 needed)"));
            }
            Ok(LoadedKernel {
                format,
                entry: r.kernel_load.raw_value() + 0x200,
                end: r.kernel_end,
                pvh_entry: None,
                setup_header: Some(hdr),
            })
        }
    }
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Loads the initrd page-aligned at the top of low RAM, above the kernel; returns (addr, size).
pub fn load_initrd(
    mem: &GuestMem,
    path: &Path,
    kernel: &LoadedKernel,
    low_ram_end: u64,
) -> Result<(u64, u64)> {
    let err = |reason: String| Error::Initrd {
        path: path.to_path_buf(),
        reason,
    };
    let mut f = open_regular(path).map_err(err)?;
    let size = f.metadata().map_err(|e| err(format!("stat: {e}")))?.len();
    let max = kernel
        .setup_header
        .map_or(u64::from(u32::MAX), |h| u64::from(h.initrd_addr_max))
        .min(low_ram_end.saturating_sub(1));
    let addr = (max + 1)
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|&a| a >= kernel.end.next_multiple_of(0x1000));
    let Some(addr) = addr else {
        return Err(err(format!(
            "{size} bytes do not fit between the kernel end {:#x} and {max:#x}",
            kernel.end
        )));
    };
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| err(format!("copy into guest memory at {addr:#x}: {e}")))?;
    Ok((addr, size))
}

/// Writes the command line and the zero page (boot_params) with the e820 map.
pub fn write_boot_params(
    mem: &GuestMem,
    kernel: &LoadedKernel,
    cmdline: &str,
    initrd: Option<(u64, u64)>,
    ram: &[Region],
) -> Result<()> {
    if cmdline.len() >= CMDLINE_MAX || cmdline.as_bytes().contains(&0) {
        return Err(Error::Config {
            field: "cmdline",
            reason: format!("must be under {CMDLINE_MAX} bytes without NUL"),
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(CMDLINE_ADDR))
        .map_err(|e| Error::GuestMemory(format!("writing cmdline at {CMDLINE_ADDR:#x}: {e}")))?;

    let mut params = boot_params::default();
    if let Some(h) = kernel.setup_header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    params.hdr.cmdline_size = bytes.len() as u32;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    params.hdr.loadflags |= LOADFLAG_CAN_USE_HEAP;
    params.hdr.heap_end_ptr = 0xfe00;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    let map = e820_map(ram);
    if map.len() > params.e820_table.len() {
        return Err(Error::Layout(format!(
            "{} e820 entries exceed the zero page's table",
            map.len()
        )));
    }
    for (slot, &(addr, size, type_)) in params.e820_table.iter_mut().zip(&map) {
        *slot = boot_e820_entry {
            addr,
            size,
            r#type: type_,
        };
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE))
        .map_err(|e| Error::GuestMemory(format!("writing zero page at {ZERO_PAGE:#x}: {e}")))
}

const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;

/// The hvm_start_info (version 1) at PVH_INFO_ADDR for the PVH entry: the command line
/// written by [`write_boot_params`], the initrd as module 0, the RSDP of our ACPI tables and
/// the same memory map as the zero page's e820 table.
pub fn write_pvh_start_info(
    mem: &GuestMem,
    initrd: Option<(u64, u64)>,
    ram: &[Region],
) -> Result<()> {
    let modlist = PVH_INFO_ADDR + 0x40; // hvm_start_info is 56 bytes
    let memmap = modlist + 0x20; // one 32-byte hvm_modlist_entry
    let map = e820_map(ram);
    let mut info = Vec::with_capacity(56);
    info.extend_from_slice(&XEN_HVM_START_MAGIC.to_le_bytes());
    info.extend_from_slice(&1u32.to_le_bytes()); // version
    info.extend_from_slice(&0u32.to_le_bytes()); // flags
    info.extend_from_slice(&u32::from(initrd.is_some()).to_le_bytes()); // nr_modules
    info.extend_from_slice(&(if initrd.is_some() { modlist } else { 0 }).to_le_bytes());
    info.extend_from_slice(&CMDLINE_ADDR.to_le_bytes());
    info.extend_from_slice(&ACPI_ADDR.to_le_bytes()); // rsdp_paddr
    info.extend_from_slice(&memmap.to_le_bytes());
    info.extend_from_slice(&(map.len() as u32).to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes()); // reserved
    let mut tail = Vec::new();
    if let Some((addr, size)) = initrd {
        for v in [addr, size, 0, 0] {
            tail.extend_from_slice(&v.to_le_bytes()); // paddr, size, cmdline_paddr, reserved
        }
    } else {
        tail.resize(0x20, 0);
    }
    for (addr, size, type_) in map {
        tail.extend_from_slice(&addr.to_le_bytes());
        tail.extend_from_slice(&size.to_le_bytes());
        tail.extend_from_slice(&type_.to_le_bytes());
        tail.extend_from_slice(&0u32.to_le_bytes());
    }
    let write = |bytes: &[u8], at: u64| {
        mem.write_slice(bytes, GuestAddress(at))
            .map_err(|e| Error::GuestMemory(format!("PVH start info at {at:#x}: {e}")))
    };
    write(&info, PVH_INFO_ADDR)?;
    write(&tail, modlist)
}

/// e820 entries (addr, size, type): low RAM up to the EBDA, the BIOS area reserved
/// (ACPI tables live there), and the rest of each region as RAM.
pub fn e820_map(ram: &[Region]) -> Vec<(u64, u64, u32)> {
    let mut map = Vec::new();
    for r in ram {
        let end = r.start + r.size;
        if r.start < HIMEM_START {
            let low_end = end.min(EBDA_START);
            if low_end > r.start {
                map.push((r.start, low_end - r.start, E820_RAM));
            }
            if end > HIMEM_START {
                map.push((HIMEM_START, end - HIMEM_START, E820_RAM));
            }
        } else {
            map.push((r.start, r.size, E820_RAM));
        }
    }
    map.push((EBDA_START, HIMEM_START - EBDA_START, E820_RESERVED));
    map.sort_unstable();
    map
}

/// Identity page tables for the first 4 GiB (2 MiB pages) and the boot GDT.
pub fn write_page_tables_and_gdt(mem: &GuestMem) -> Result<()> {
    let w = |v: u64, a: u64| {
        mem.write_obj(v, GuestAddress(a))
            .map_err(|e| Error::GuestMemory(format!("boot tables at {a:#x}: {e}")))
    };
    w(PDPT_ADDR | 0x3, PML4_ADDR)?;
    for i in 0..4u64 {
        w((PD_ADDR + i * 0x1000) | 0x3, PDPT_ADDR + i * 8)?;
    }
    for i in 0..2048u64 {
        // Present, writable, 2 MiB page.
        w((i << 21) | 0x83, PD_ADDR + i * 8)?;
    }
    for (i, d) in gdt().iter().enumerate() {
        w(*d, GDT_ADDR + i as u64 * 8)?;
    }
    w(0, IDT_ADDR)
}

/// GDT entries: null, 64-bit code (0x08), data (0x10), TSS (0x18), 32-bit code (0x20,
/// for the PVH entry).
pub fn gdt() -> [u64; 5] {
    [
        0,
        gdt_entry(0xa09b, 0, 0xfffff),
        gdt_entry(0xc093, 0, 0xfffff),
        gdt_entry(0x808b, 0, 0xfffff),
        gdt_entry(0xc09b, 0, 0xfffff),
    ]
}

fn gdt_entry(flags: u16, base: u32, limit: u32) -> u64 {
    let (flags, base, limit) = (u64::from(flags), u64::from(base), u64::from(limit));
    ((base & 0xff00_0000) << 32)
        | ((flags & 0xf0ff) << 40)
        | ((limit & 0x000f_0000) << 32)
        | ((base & 0x00ff_ffff) << 16)
        | (limit & 0xffff)
}

/// The kvm_segment a GDT entry describes, for loading into sregs.
pub fn segment(entry: u64, index: u16) -> kvm_bindings::kvm_segment {
    let bits = |shift: u32, width: u32| ((entry >> shift) & ((1 << width) - 1)) as u8;
    let base = ((entry >> 16) & 0xff_ffff) | (((entry >> 56) & 0xff) << 24);
    let limit = (entry & 0xffff) | (((entry >> 48) & 0xf) << 16);
    let g = bits(55, 1);
    kvm_bindings::kvm_segment {
        base,
        limit: if g == 1 {
            ((limit as u32) << 12) | 0xfff
        } else {
            limit as u32
        },
        selector: index * 8,
        type_: bits(40, 4),
        present: bits(47, 1),
        dpl: bits(45, 2),
        db: bits(54, 1),
        s: bits(44, 1),
        l: bits(53, 1),
        g,
        avl: bits(52, 1),
        unusable: u8::from(bits(47, 1) == 0),
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_splits_low_memory_around_the_bios_area() {
        let m = e820_map(&[Region {
            start: 0,
            size: 64 << 20,
        }]);
        assert_eq!(
            m,
            vec![
                (0, EBDA_START, 1),
                (EBDA_START, HIMEM_START - EBDA_START, 2),
                (HIMEM_START, (64 << 20) - HIMEM_START, 1)
            ]
        );
    }

    #[test]
    fn pvh_start_info_describes_cmdline_initrd_acpi_and_memory() {
        let regions = [Region {
            start: 0,
            size: 4 << 20,
        }];
        let ram = crate::memory::GuestRam::new(&regions, false).unwrap();
        let mem = ram.memory();
        write_pvh_start_info(mem, Some((0x30_0000, 0x1234)), &regions).unwrap();
        let u32_at = |a: u64| mem.read_obj::<u32>(GuestAddress(a)).unwrap();
        let u64_at = |a: u64| mem.read_obj::<u64>(GuestAddress(a)).unwrap();
        let info = PVH_INFO_ADDR;
        assert_eq!(u32_at(info), XEN_HVM_START_MAGIC);
        assert_eq!(
            (u32_at(info + 4), u32_at(info + 12)),
            (1, 1),
            "version, nr_modules"
        );
        let modlist = u64_at(info + 16);
        assert_eq!((u64_at(modlist), u64_at(modlist + 8)), (0x30_0000, 0x1234));
        assert_eq!(u64_at(info + 24), CMDLINE_ADDR);
        assert_eq!(u64_at(info + 32), ACPI_ADDR, "rsdp_paddr");
        let (memmap, entries) = (u64_at(info + 40), u32_at(info + 48));
        let e820 = e820_map(&regions);
        assert_eq!(entries as usize, e820.len());
        for (i, &(addr, size, type_)) in e820.iter().enumerate() {
            let at = memmap + i as u64 * 24;
            assert_eq!(
                (u64_at(at), u64_at(at + 8), u32_at(at + 16)),
                (addr, size, type_)
            );
        }
    }

    #[test]
    fn gdt_segments_decode_to_long_mode_code_and_flat_data() {
        let g = gdt();
        let cs = segment(g[1], 1);
        assert_eq!(
            (cs.l, cs.db, cs.type_, cs.s, cs.present, cs.selector),
            (1, 0, 0xb, 1, 1, 8)
        );
        let ds = segment(g[2], 2);
        assert_eq!((ds.limit, ds.db, ds.type_, ds.g), (0xffff_ffff, 1, 3, 1));
        let tss = segment(g[3], 3);
        assert_eq!((tss.s, tss.type_), (0, 0xb));
        let cs32 = segment(g[4], 4);
        assert_eq!(
            (cs32.l, cs32.db, cs32.type_, cs32.limit, cs32.selector),
            (0, 1, 0xb, 0xffff_ffff, 0x20)
        );
    }
}
