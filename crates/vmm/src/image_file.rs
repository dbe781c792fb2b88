//! Kernel and initrd files as the loaders read them, with one difference: a large read
//! whose destination is guest RAM and whose file offset and destination are both page
//! aligned maps the file's pages there copy-on-write (`MAP_PRIVATE | MAP_FIXED`) instead
//! of copying them. The guest then faults in only the pages it touches, from the page
//! cache, and copies only the pages it writes; a kernel of tens of MiB costs nothing at
//! build time (nested under TCG, copying Debian's 60 MB vmlinux took ~0.7 s of a 6 s boot).
//!
//! Invariants:
//! - A mapping is only ever placed over whole pages of guest RAM (a region of the
//!   [`GuestMemoryMmap`] given at construction) and only over file bytes that exist
//!   (checked against the file size), so it never reaches VMM memory nor maps past EOF.
//! - Smaller or unaligned reads are plain `pread`s into the destination.
//!
//! The guest sees the file's contents as they are when it first touches a page: the
//! files must not be changed while the VM runs (truncating them faults the vCPU: KVM_RUN
//! fails with EFAULT and the VM stops with an error).

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::fd::AsRawFd;

use vm_memory::bitmap::BitmapSlice;
use vm_memory::{
    GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion, ReadVolatile, VolatileMemoryError,
    VolatileSlice,
};

const PAGE: u64 = 4096;
/// Reads below this size are copied: faulting pages in one by one costs more than a copy.
const MIN_MAPPED: u64 = 1 << 20;

/// A file read through `pread` at its own position, mapping large aligned reads.
pub struct ImageFile<'a> {
    file: File,
    size: u64,
    pos: u64,
    /// Host ranges `[start, end)` of guest RAM: the only places mappings may go.
    guest: Vec<(usize, usize)>,
    _mem: std::marker::PhantomData<&'a GuestMemoryMmap>,
}

impl<'a> ImageFile<'a> {
    /// `file` as read into `mem`.
    pub fn new(file: File, mem: &'a GuestMemoryMmap) -> io::Result<Self> {
        let size = file.metadata()?.len();
        let guest = mem
            .iter()
            .map(|r| {
                let start = r.as_ptr() as usize;
                (start, start + r.len() as usize)
            })
            .collect();
        Ok(ImageFile {
            file,
            size,
            pos: 0,
            guest,
            _mem: std::marker::PhantomData,
        })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    fn in_guest_ram(&self, start: usize, len: usize) -> bool {
        self.guest
            .iter()
            .any(|&(s, e)| start >= s && start.checked_add(len).is_some_and(|end| end <= e))
    }

    /// Maps `len` bytes of the file at `pos` over `dst` if all conditions hold; returns
    /// how many bytes were mapped (0: nothing, copy instead).
    fn try_map(&self, dst: usize, len: u64) -> io::Result<u64> {
        let whole = len & !(PAGE - 1);
        if whole < MIN_MAPPED
            || dst as u64 % PAGE != 0
            || self.pos % PAGE != 0
            || self.pos + whole > self.size
            || !self.in_guest_ram(dst, whole as usize)
        {
            return Ok(0);
        }
        let offset = libc::off_t::try_from(self.pos).map_err(|_| io::ErrorKind::InvalidInput)?;
        // SAFETY: [dst, dst + whole) lies inside a guest RAM region, a read/write private
        // mapping that the GuestMemoryMmap borrowed for 'a owns for the VM's lifetime; no
        // Rust reference points into guest RAM (it is only accessed through volatile
        // slices), so replacing those pages with a private file mapping of the same
        // protection keeps every access valid. The file range exists (checked above).
        let p = unsafe {
            libc::mmap(
                dst as *mut libc::c_void,
                whole as usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                self.file.as_raw_fd(),
                offset,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(whole)
    }

    /// `pread` until `len` bytes are at `dst` or the file ends; returns the bytes read.
    ///
    /// # Safety
    /// `dst` must be valid for writes of `len` bytes.
    unsafe fn pread_into(&self, dst: *mut u8, len: usize, mut pos: u64) -> io::Result<usize> {
        let mut done = 0;
        while done < len {
            let offset = libc::off_t::try_from(pos).map_err(|_| io::ErrorKind::InvalidInput)?;
            // SAFETY: the caller guarantees dst..dst+len is writable; done < len.
            let n = unsafe {
                libc::pread(
                    self.file.as_raw_fd(),
                    dst.add(done).cast(),
                    len - done,
                    offset,
                )
            };
            match n {
                0 => break,
                n if n < 0 => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
                n => {
                    done += n as usize;
                    pos += n as u64;
                }
            }
        }
        Ok(done)
    }
}

impl Read for ImageFile<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // SAFETY: buf is a valid, exclusively borrowed byte slice.
        let n = unsafe { self.pread_into(buf.as_mut_ptr(), buf.len(), self.pos)? };
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for ImageFile<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let pos = match to {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = pos.ok_or(io::ErrorKind::InvalidInput)?;
        Ok(self.pos)
    }
}

impl ReadVolatile for ImageFile<'_> {
    /// Fills `buf` as one `read` of a regular file would (the loaders expect a single call
    /// to fill a whole guest region): the page-aligned bulk mapped when possible, the rest
    /// read.
    fn read_volatile<B: BitmapSlice>(
        &mut self,
        buf: &mut VolatileSlice<B>,
    ) -> Result<usize, VolatileMemoryError> {
        let guard = buf.ptr_guard_mut();
        let dst = guard.as_ptr();
        let len = buf.len();
        let mapped = self
            .try_map(dst as usize, len as u64)
            .map_err(VolatileMemoryError::IOError)? as usize;
        // SAFETY: a VolatileSlice is valid for writes of its length; mapped <= len.
        let read =
            unsafe { self.pread_into(dst.add(mapped), len - mapped, self.pos + mapped as u64) }
                .map_err(VolatileMemoryError::IOError)?;
        buf.bitmap().mark_dirty(0, mapped + read);
        self.pos += (mapped + read) as u64;
        Ok(mapped + read)
    }
}
