//! A minimal ACPI table set so an unmodified Linux finds CPUs, the IOAPIC, virtio-mmio
//! devices and S5 power-off without a BIOS: RSDP -> XSDT -> {FADT -> DSDT, MADT}.
//!
//! The platform is hardware-reduced ACPI (sleep control register, no PM1 blocks).
//! The DSDT holds one `LNRO0005` device per virtio-mmio window (the ACPI id Linux's
//! virtio_mmio driver matches) and an `_S5_` package; AML is emitted by hand below.

use crate::memory::GuestMem;
use vm_memory::{Bytes, GuestAddress};

use crate::devices::legacy::S5_SLP_TYP;
use crate::error::{Error, Result};
use crate::layout::*;

/// A virtio-mmio window and its interrupt, as the DSDT describes it.
#[derive(Debug, Clone, Copy)]
pub struct MmioDevice {
    pub base: u64,
    pub len: u64,
    pub gsi: u32,
}

const OEM_ID: &[u8; 6] = b"BERTH ";
const OEM_TABLE_ID: &[u8; 8] = b"BERTHVM ";

fn checksum(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .fold(0u8, |a, b| a.wrapping_add(*b))
        .wrapping_neg()
}

/// A table with the standard 36-byte header; length and checksum fixed in `finish`.
fn table(signature: &[u8; 4], revision: u8, body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(signature);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum
    t.extend_from_slice(OEM_ID);
    t.extend_from_slice(OEM_TABLE_ID);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(b"BRTH"); // creator id
    t.extend_from_slice(&1u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    t[9] = checksum(&t);
    t
}

/// AML PkgLength for a body of `len` bytes (the encoding counts its own bytes).
fn pkg_length(len: usize) -> Vec<u8> {
    if len + 1 < 0x40 {
        return vec![(len + 1) as u8];
    }
    for extra in 1..=3usize {
        let total = len + 1 + extra;
        if total < 1 << (4 + 8 * extra) {
            let mut v = vec![((extra as u8) << 6) | (total & 0xf) as u8];
            v.extend((0..extra).map(|i| (total >> (4 + 8 * i)) as u8));
            return v;
        }
    }
    unreachable!("AML package longer than 256 MiB")
}

fn aml_pkg(op: &[u8], body: &[u8]) -> Vec<u8> {
    let mut v = op.to_vec();
    v.extend(pkg_length(body.len()));
    v.extend_from_slice(body);
    v
}

fn aml_name(name: &[u8; 4], value: &[u8]) -> Vec<u8> {
    let mut v = vec![0x08];
    v.extend_from_slice(name);
    v.extend_from_slice(value);
    v
}

fn aml_dword(v: u32) -> Vec<u8> {
    let mut out = vec![0x0c];
    out.extend_from_slice(&v.to_le_bytes());
    out
}

/// AML for a compressed EISA id such as `PNP0501` (DWordConst, bytes in id order).
fn aml_eisa_id(id: &[u8; 7]) -> Vec<u8> {
    let letter = |c: u8| u32::from(c - 0x40) & 0x1f;
    let hex = std::str::from_utf8(&id[3..])
        .ok()
        .and_then(|h| u32::from_str_radix(h, 16).ok());
    let v =
        (letter(id[0]) << 26) | (letter(id[1]) << 21) | (letter(id[2]) << 16) | hex.unwrap_or(0);
    let mut out = vec![0x0c];
    out.extend_from_slice(&v.to_be_bytes());
    out
}

/// Extended interrupt descriptor: consumer, edge-triggered, active-high, exclusive.
fn crs_interrupt(gsi: u32) -> Vec<u8> {
    let mut d = vec![0x89, 0x06, 0x00, 0x03, 0x01];
    d.extend_from_slice(&gsi.to_le_bytes());
    d
}

/// I/O port descriptor (16-bit decode) for `len` ports at `port`.
fn crs_io(port: u16, len: u8) -> Vec<u8> {
    let p = port.to_le_bytes();
    vec![0x47, 0x01, p[0], p[1], p[0], p[1], 0x01, len]
}

/// `Device(NAME) { _HID hid, _UID uid, _CRS ResourceTemplate(crs) }`.
fn aml_device(name: &str, hid: &[u8], uid: u32, crs: &[u8]) -> Vec<u8> {
    let mut template = crs.to_vec();
    template.extend_from_slice(&[0x79, 0x00]); // end tag
    let mut buffer = vec![0x0a, template.len() as u8];
    buffer.extend(template);
    let mut body = name.as_bytes().to_vec();
    body.extend(aml_name(b"_HID", hid));
    body.extend(aml_name(b"_UID", &aml_dword(uid)));
    body.extend(aml_name(b"_CRS", &aml_pkg(&[0x11], &buffer)));
    aml_pkg(&[0x5b, 0x82], &body)
}

/// A virtio-mmio window as `LNRO0005`, the id Linux's virtio_mmio driver matches.
fn aml_virtio_device(index: usize, d: &MmioDevice) -> Result<Vec<u8>> {
    let base = u32::try_from(d.base)
        .map_err(|_| Error::Layout(format!("virtio window {:#x} above 4 GiB", d.base)))?;
    let mut crs = vec![0x86, 0x09, 0x00, 0x01]; // Memory32Fixed, read-write
    crs.extend_from_slice(&base.to_le_bytes());
    crs.extend_from_slice(&(d.len as u32).to_le_bytes());
    crs.extend(crs_interrupt(d.gsi));
    Ok(aml_device(
        &format!("V{index:03X}"),
        b"\x0dLNRO0005\0",
        index as u32,
        &crs,
    ))
}

/// COM1 and the RTC. On a hardware-reduced platform Linux maps no legacy ISA IRQs by
/// itself, so a UART without a `_CRS` interrupt would never get its IRQ 4 (userspace
/// console output stalls waiting for THRE interrupts).
fn aml_legacy_devices() -> Vec<u8> {
    let mut com1 = crs_io(COM1_PORT, 8);
    com1.extend(crs_interrupt(COM1_IRQ));
    let mut aml = aml_device("COM1", &aml_eisa_id(b"PNP0501"), 0, &com1);
    // The RTC raises no interrupts here, so it declares none: IRQ 8 stays free for virtio.
    aml.extend(aml_device(
        "RTC_",
        &aml_eisa_id(b"PNP0B00"),
        0,
        &crs_io(RTC_PORT, 2),
    ));
    aml
}

fn dsdt(devices: &[MmioDevice]) -> Result<Vec<u8>> {
    let mut sb = b"_SB_".to_vec();
    sb.extend(aml_legacy_devices());
    for (i, d) in devices.iter().enumerate() {
        sb.extend(aml_virtio_device(i, d)?);
    }
    let mut aml = aml_pkg(&[0x10], &sb);
    let slp = S5_SLP_TYP;
    aml.extend(aml_name(
        b"_S5_",
        &aml_pkg(&[0x12], &[4, 0x0a, slp, 0x0a, slp, 0x00, 0x00]),
    ));
    Ok(table(b"DSDT", 2, &aml))
}

/// Generic address structure for an 8-bit system-I/O register.
fn gas_io8(port: u16) -> [u8; 12] {
    let mut g = [0u8; 12];
    g[0] = 1; // system I/O space
    g[1] = 8; // register width in bits
    g[3] = 1; // byte access
    g[4..6].copy_from_slice(&port.to_le_bytes());
    g
}

/// FADT for a hardware-reduced ACPI platform: no SCI, PM timer, PM1 blocks or FACS,
/// just the DSDT and the sleep control/status registers (as Firecracker and
/// cloud-hypervisor do). Linux then also skips the legacy PIC and PIT timer setup.
fn fadt(dsdt_addr: u64) -> Vec<u8> {
    // Offsets below are table offsets (the body starts after the 36-byte header).
    let mut b = vec![0u8; 276 - 36];
    let mut put =
        |off: usize, bytes: &[u8]| b[off - 36..off - 36 + bytes.len()].copy_from_slice(bytes);
    put(40, &(dsdt_addr as u32).to_le_bytes());
    // IAPC_BOOT_ARCH: VGA not present, MSI not supported.
    put(109, &((1u16 << 2) | (1 << 3)).to_le_bytes());
    // Flags: WBINVD, power and sleep buttons absent, HW_REDUCED_ACPI.
    put(
        112,
        &((1u32 << 0) | (1 << 4) | (1 << 5) | (1 << 20)).to_le_bytes(),
    );
    put(131, &[5]); // FADT minor version (6.5)
    put(140, &dsdt_addr.to_le_bytes());
    put(244, &gas_io8(SLEEP_CONTROL_PORT));
    put(256, &gas_io8(SLEEP_STATUS_PORT));
    put(268, b"BERTHVMM"); // hypervisor vendor identity
    table(b"FACP", 6, &b)
}

fn madt(vcpus: u8) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&(LAPIC_ADDR as u32).to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes()); // PCAT_COMPAT: dual 8259s present
    for id in 0..vcpus {
        b.extend_from_slice(&[0, 8, id, id, 1, 0, 0, 0]); // local APIC, enabled
    }
    b.extend_from_slice(&[1, 12, 0, 0]); // IOAPIC id 0
    b.extend_from_slice(&(IOAPIC_ADDR as u32).to_le_bytes());
    b.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    table(b"APIC", 6, &b)
}

fn xsdt(entries: &[u64]) -> Vec<u8> {
    let body: Vec<u8> = entries.iter().flat_map(|e| e.to_le_bytes()).collect();
    table(b"XSDT", 1, &body)
}

fn rsdp(xsdt_addr: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(36);
    r.extend_from_slice(b"RSD PTR ");
    r.push(0);
    r.extend_from_slice(OEM_ID);
    r.push(2); // ACPI 2.0+
    r.extend_from_slice(&0u32.to_le_bytes()); // no RSDT
    r.extend_from_slice(&36u32.to_le_bytes());
    r.extend_from_slice(&xsdt_addr.to_le_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r[8] = checksum(&r[..20]);
    r[32] = checksum(&r);
    r
}

/// Builds all tables and writes them into the BIOS area at [`ACPI_ADDR`].
pub fn write_tables(mem: &GuestMem, vcpus: u8, devices: &[MmioDevice]) -> Result<()> {
    let mut blob = vec![0u8; 64]; // RSDP first (16-byte aligned), patched below
    let mut place = |t: Vec<u8>| {
        let addr = ACPI_ADDR + blob.len() as u64;
        blob.extend(t);
        blob.resize(blob.len().next_multiple_of(16), 0);
        addr
    };
    let dsdt_addr = place(dsdt(devices)?);
    let fadt_addr = place(fadt(dsdt_addr));
    let madt_addr = place(madt(vcpus));
    let xsdt_addr = place(xsdt(&[fadt_addr, madt_addr]));
    let r = rsdp(xsdt_addr);
    blob[..r.len()].copy_from_slice(&r);
    if blob.len() as u64 > ACPI_MAX {
        return Err(Error::Layout(format!(
            "ACPI tables need {} bytes, more than {ACPI_MAX}",
            blob.len()
        )));
    }
    mem.write_slice(&blob, GuestAddress(ACPI_ADDR))
        .map_err(|e| Error::GuestMemory(format!("writing ACPI tables at {ACPI_ADDR:#x}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use vm_memory::Bytes;

    fn read(mem: &GuestMem, addr: u64, len: usize) -> Vec<u8> {
        let mut v = vec![0u8; len];
        mem.read_slice(&mut v, GuestAddress(addr)).unwrap();
        v
    }

    fn u32_at(b: &[u8], o: usize) -> u32 {
        u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], o: usize) -> u64 {
        u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
    }

    /// Reads the table at `addr`, checking its signature and checksum.
    fn table_at(mem: &GuestMem, addr: u64, sig: &[u8; 4]) -> Vec<u8> {
        let len = u32_at(&read(mem, addr, 8), 4) as usize;
        let t = read(mem, addr, len);
        assert_eq!(&t[..4], sig);
        assert_eq!(
            t.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "{sig:?} checksum"
        );
        t
    }

    #[test]
    fn tables_chain_from_rsdp_and_describe_cpus_and_devices() {
        let ram = crate::memory::GuestRam::new(
            &[crate::memory::Region {
                start: 0,
                size: 2 << 20,
            }],
            false,
        )
        .unwrap();
        let mem = ram.memory();
        let devs = [
            MmioDevice {
                base: 0xd000_0000,
                len: 0x1000,
                gsi: 5,
            },
            MmioDevice {
                base: 0xd000_1000,
                len: 0x1000,
                gsi: 6,
            },
        ];
        write_tables(mem, 3, &devs).unwrap();
        let r = read(mem, ACPI_ADDR, 36);
        assert_eq!(&r[..8], b"RSD PTR ");
        assert_eq!(r[..20].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        assert_eq!(r.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let x = table_at(mem, u64_at(&r, 24), b"XSDT");
        let fadt = table_at(mem, u64_at(&x, 36), b"FACP");
        let madt = table_at(mem, u64_at(&x, 44), b"APIC");
        let dsdt = table_at(mem, u64_at(&fadt, 140), b"DSDT");
        assert_ne!(u32_at(&fadt, 112) & (1 << 20), 0, "HW_REDUCED_ACPI");
        assert_eq!(fadt[244], 1, "sleep control in system I/O space");
        assert_eq!(
            u16::from_le_bytes([fadt[248], fadt[249]]),
            SLEEP_CONTROL_PORT
        );
        // Three enabled local APICs with ids 0..3, then the IOAPIC.
        let lapics: Vec<u8> = madt[44..].chunks(8).take(3).map(|e| e[3]).collect();
        assert_eq!(lapics, vec![0, 1, 2]);
        assert_eq!(madt[44 + 24], 1);
        let aml = &dsdt[36..];
        let count = aml.windows(8).filter(|w| w == b"LNRO0005").count();
        assert_eq!(count, 2);
        let base = aml
            .windows(4)
            .position(|w| w == 0xd000_1000u32.to_le_bytes())
            .is_some();
        assert!(base);
        assert!(aml.windows(4).any(|w| w == b"_S5_"));
    }

    #[test]
    fn eisa_ids_and_legacy_devices() {
        assert_eq!(aml_eisa_id(b"PNP0501"), vec![0x0c, 0x41, 0xd0, 0x05, 0x01]);
        assert_eq!(aml_eisa_id(b"PNP0B00"), vec![0x0c, 0x41, 0xd0, 0x0b, 0x00]);
        let aml = aml_legacy_devices();
        assert!(aml.windows(4).any(|w| w == b"COM1"));
        // COM1's I/O range and its interrupt (GSI 4) are in its resource template.
        assert!(aml
            .windows(8)
            .any(|w| w == [0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08]));
        assert!(aml
            .windows(9)
            .any(|w| w == [0x89, 0x06, 0x00, 0x03, 0x01, 4, 0, 0, 0]));
    }

    #[test]
    fn pkg_length_encodings() {
        assert_eq!(pkg_length(10), vec![11]);
        // 100 body bytes + 2 length bytes = 102 = 0x66.
        assert_eq!(pkg_length(100), vec![0x46, 0x06]);
        // 2000 + 2 = 0x7d2 fits two bytes; 5000 + 3 = 0x138b needs three.
        assert_eq!(pkg_length(2000), vec![0x42, 0x7d]);
        assert_eq!(pkg_length(5000), vec![0x8b, 0x38, 0x01]);
    }
}
