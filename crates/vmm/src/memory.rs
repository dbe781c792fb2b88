//! Guest RAM: regions, the guest-physical -> host-virtual map, and its checks.
//!
//! The map plays the role of EPT in the theory, and [`GuestRam::new`] refuses to hand
//! out a map that lacks its properties:
//! - every region is non-empty, page aligned and does not wrap the address space;
//! - regions are pairwise disjoint in guest-physical space;
//! - the host ranges backing the regions are pairwise disjoint (the map is injective) and
//!   every guest address translates inside its region's own mapping;
//! - the host ranges are disjoint from those of every other live VM in this process
//!   (checked against a process-wide registry; an entry is removed on drop).
//!
//! Each region is an anonymous mapping made here at a 2 MiB aligned address, so that guest
//! and host addresses agree modulo 2 MiB and KVM can back guest memory with huge pages in
//! its nested page tables when the host gives transparent huge pages (asked for with
//! `MADV_HUGEPAGE` unless disabled). Nested under qemu TCG this took a Linux boot from
//! ~6.0 s to ~4.4 s: every 4 KiB nested page fault is an expensive exit there.

use std::sync::{Arc, Mutex};

use vm_memory::bitmap::{Bitmap, WithBitmapSlice};
use vm_memory::mmap::MmapRegionBuilder;
use vm_memory::{
    Address, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, GuestRegionMmap,
};

use crate::error::{Error, Result};
use crate::layout::{MMIO_GAP_END, MMIO_GAP_START};

const PAGE: u64 = 4096;
const HUGE_PAGE: usize = 2 << 20;

/// Guest RAM as the devices and loaders see it: vm-memory regions over mappings owned
/// through [`OwnedMapping`].
pub type GuestMem = GuestMemoryMmap<OwnedMapping>;

/// An anonymous read/write mapping made by [`HostMapping::new_aligned`], unmapped on drop.
#[derive(Debug)]
struct HostMapping {
    addr: usize,
    len: usize,
}

impl HostMapping {
    /// `len` bytes of private anonymous memory at a 2 MiB aligned address, advised for
    /// (or against) transparent huge pages.
    fn new_aligned(len: usize, hugepages: bool) -> std::io::Result<Self> {
        let total = len
            .checked_add(HUGE_PAGE)
            .ok_or(std::io::ErrorKind::InvalidInput)?;
        let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
        // SAFETY: a new anonymous mapping at an address of the kernel's choosing; no
        // existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                total,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let start = p as usize;
        let addr = start.next_multiple_of(HUGE_PAGE);
        let tail = start + total - (addr + len);
        // SAFETY: head and tail are parts of the mapping made above that nothing uses;
        // what stays mapped is exactly [addr, addr + len).
        unsafe {
            if addr > start {
                libc::munmap(p, addr - start);
            }
            if tail > 0 {
                libc::munmap((addr + len) as *mut libc::c_void, tail);
            }
        }
        let advice = if hugepages {
            libc::MADV_HUGEPAGE
        } else {
            libc::MADV_NOHUGEPAGE
        };
        // SAFETY: advice on our own mapping. It fails only where the kernel has no
        // transparent huge pages, which costs speed, not correctness: ignored.
        unsafe { libc::madvise(addr as *mut libc::c_void, len, advice) };
        Ok(HostMapping { addr, len })
    }
}

impl Drop for HostMapping {
    fn drop(&mut self) {
        // SAFETY: this owner made the mapping; it is dropped with the last vm-memory
        // region that refers to it (see OwnedMapping), so nothing accesses it afterwards.
        unsafe { libc::munmap(self.addr as *mut libc::c_void, self.len) };
    }
}

/// The owner of a region's mapping, kept in the per-region slot vm-memory reserves for a
/// dirty-page bitmap (berth tracks no dirty pages; this "bitmap" records nothing).
/// vm-memory unmaps only mappings it made itself and cannot make them 2 MiB aligned, so
/// the region carries its mapping's owner: the memory lives exactly as long as the last
/// clone of the region.
#[derive(Debug, Default)]
pub struct OwnedMapping {
    _owner: Option<Arc<HostMapping>>,
}

impl WithBitmapSlice<'_> for OwnedMapping {
    type S = ();
}

impl Bitmap for OwnedMapping {
    fn mark_dirty(&self, _offset: usize, _len: usize) {}

    fn dirty_at(&self, _offset: usize) -> bool {
        false
    }

    fn slice_at(&self, _offset: usize) {}
}

/// One guest region over a fresh aligned mapping.
fn aligned_region(
    start: u64,
    size: usize,
    hugepages: bool,
) -> Result<GuestRegionMmap<OwnedMapping>> {
    let err =
        |e: String| Error::GuestMemory(format!("allocating {size:#x} bytes at {start:#x}: {e}"));
    let host = Arc::new(HostMapping::new_aligned(size, hugepages).map_err(|e| err(e.to_string()))?);
    let addr = host.addr as *mut u8;
    let builder = MmapRegionBuilder::new_with_bitmap(size, OwnedMapping { _owner: Some(host) })
        .with_mmap_prot(libc::PROT_READ | libc::PROT_WRITE)
        .with_mmap_flags(libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE);
    // SAFETY: [addr, addr + size) is the mapping owned by the Arc<HostMapping> the region
    // carries as its bitmap, so it stays mapped for as long as the region exists.
    let mapping = unsafe { builder.with_raw_mmap_pointer(addr) }
        .build()
        .map_err(|e| err(e.to_string()))?;
    GuestRegionMmap::new(mapping, GuestAddress(start)).ok_or_else(|| err("address overflow".into()))
}

/// One guest-physical RAM region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    pub size: u64,
}

impl Region {
    fn end(&self) -> u64 {
        self.start + self.size
    }
}

/// The default x86 layout for `mib` MiB: RAM from 0, split around the 32-bit MMIO hole.
pub fn x86_layout(mib: u32) -> Vec<Region> {
    let total = u64::from(mib) << 20;
    if total <= MMIO_GAP_START {
        vec![Region {
            start: 0,
            size: total,
        }]
    } else {
        vec![
            Region {
                start: 0,
                size: MMIO_GAP_START,
            },
            Region {
                start: MMIO_GAP_END,
                size: total - MMIO_GAP_START,
            },
        ]
    }
}

/// Checks a layout's guest-side properties: non-empty, aligned, no wrap, disjoint.
pub fn check_layout(regions: &[Region]) -> Result<()> {
    if regions.is_empty() {
        return Err(Error::Layout("no memory regions".into()));
    }
    for r in regions {
        if r.size == 0 || !r.start.is_multiple_of(PAGE) || !r.size.is_multiple_of(PAGE) {
            return Err(Error::Layout(format!(
                "region {:#x}+{:#x} is empty or not 4 KiB aligned",
                r.start, r.size
            )));
        }
        if r.start.checked_add(r.size).is_none() {
            return Err(Error::Layout(format!(
                "region {:#x}+{:#x} wraps",
                r.start, r.size
            )));
        }
    }
    let mut sorted = regions.to_vec();
    sorted.sort_by_key(|r| r.start);
    for w in sorted.windows(2) {
        if w[0].end() > w[1].start {
            return Err(Error::Layout(format!(
                "regions {:#x}+{:#x} and {:#x}+{:#x} overlap",
                w[0].start, w[0].size, w[1].start, w[1].size
            )));
        }
    }
    Ok(())
}

/// Host ranges of all live [`GuestRam`]s in this process: (id, start, end).
static HOST_RANGES: Mutex<Vec<(u64, usize, usize)>> = Mutex::new(Vec::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// Guest RAM whose map has been checked; see the module docs.
#[derive(Debug)]
pub struct GuestRam {
    mem: GuestMem,
    regions: Vec<Region>,
    id: u64,
}

impl GuestRam {
    /// Allocates anonymous memory for `regions` (2 MiB aligned; transparent huge pages
    /// advised when `hugepages`) and checks the resulting map.
    pub fn new(regions: &[Region], hugepages: bool) -> Result<Self> {
        check_layout(regions)?;
        let mapped = regions
            .iter()
            .map(|r| {
                let size = usize::try_from(r.size)
                    .map_err(|_| Error::Layout(format!("region size {:#x} too large", r.size)))?;
                aligned_region(r.start, size, hugepages)
            })
            .collect::<Result<Vec<_>>>()?;
        let mem = GuestMem::from_regions(mapped).map_err(|e| {
            Error::GuestMemory(format!("allocating {} regions: {e}", regions.len()))
        })?;
        let host = host_ranges(&mem)?;
        check_injective(&host)?;
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut live = HOST_RANGES.lock().unwrap_or_else(|p| p.into_inner());
        for &(other, s, e) in live.iter() {
            if let Some(&(hs, he)) = host.iter().find(|&&(hs, he)| hs < e && s < he) {
                return Err(Error::GuestMemory(format!(
                    "host range {hs:#x}..{he:#x} overlaps guest memory {other} of another VM"
                )));
            }
        }
        live.extend(host.iter().map(|&(s, e)| (id, s, e)));
        Ok(GuestRam {
            mem,
            regions: regions.to_vec(),
            id,
        })
    }

    pub fn memory(&self) -> &GuestMem {
        &self.mem
    }

    pub fn regions(&self) -> &[Region] {
        &self.regions
    }

    /// Host ranges `[start, end)` backing this RAM, one per region.
    pub fn host_ranges(&self) -> Vec<(usize, usize)> {
        // Cannot fail: checked in `new`.
        host_ranges(&self.mem).unwrap_or_default()
    }

    /// Host virtual address of guest address `gpa`, if it is RAM.
    pub fn translate(&self, gpa: u64) -> Option<usize> {
        self.mem
            .get_host_address(GuestAddress(gpa))
            .ok()
            .map(|p| p as usize)
    }
}

impl Drop for GuestRam {
    fn drop(&mut self) {
        let mut live = HOST_RANGES.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|&(id, _, _)| id != self.id);
    }
}

/// Host range of every region, checking that the first and last byte of each region
/// translate to the two ends of its own mapping.
fn host_ranges(mem: &GuestMem) -> Result<Vec<(usize, usize)>> {
    let mut out = Vec::new();
    for region in mem.iter() {
        let len = region.len();
        let first = region.start_addr();
        let last = first.unchecked_add(len - 1);
        let h_first = mem
            .get_host_address(first)
            .map_err(|e| Error::GuestMemory(format!("translate {:#x}: {e}", first.0)))?
            as usize;
        let h_last = mem
            .get_host_address(last)
            .map_err(|e| Error::GuestMemory(format!("translate {:#x}: {e}", last.0)))?
            as usize;
        if h_last.checked_sub(h_first) != Some(len as usize - 1) {
            return Err(Error::GuestMemory(format!(
                "region {:#x}+{len:#x} is not contiguous in the host",
                first.0
            )));
        }
        let backing = region.as_ptr() as usize;
        if h_first != backing || region.size() != len as usize {
            return Err(Error::GuestMemory(format!(
                "region {:#x} translates outside its mapping",
                first.0
            )));
        }
        out.push((h_first, h_first + len as usize));
    }
    Ok(out)
}

/// Host ranges must not overlap: two guest addresses never share a host byte.
fn check_injective(host: &[(usize, usize)]) -> Result<()> {
    let mut sorted = host.to_vec();
    sorted.sort();
    for w in sorted.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(Error::GuestMemory(format!(
                "host ranges {:#x}..{:#x} and {:#x}..{:#x} overlap",
                w[0].0, w[0].1, w[1].0, w[1].1
            )));
        }
    }
    Ok(())
}
