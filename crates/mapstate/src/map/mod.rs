//! [`Mapping`]: a file mapped into a reserved address range, with the mmap
//! knobs behind safe, checked methods.
//!
//! The reservation is made once at its maximum size (`PROT_NONE`,
//! `MAP_NORESERVE`: address space only) and the file is mapped over its
//! start. Growing maps the next pages in place with `MAP_FIXED`, so addresses
//! never move; the file is grown with `fallocate` first, so a full disk is an
//! error from [`Mapping::grow_to`], never a SIGBUS at a later store.
//!
//! `mremap` is deliberately not used: growing with `MREMAP_MAYMOVE` would move
//! the mapping and invalidate every pointer into it.

use std::fs::File;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64};

use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::error::{Error, Result};
use crate::fs::{self, allocate, check_size, growth_error};
use crate::offset::Offset;
use crate::options::DEFAULT_RESERVATION;
use crate::sys::grow::Growth;
use crate::sys::{self, Advice, Discard, FileMap, Flush, MapKind, Protection, Reservation};

mod extend;
mod options;

pub use options::{MapOptions, MapSync};

/// A file mapped at a stable address inside a reserved range.
///
/// Access to the bytes is by copy ([`Mapping::read_at`], [`Mapping::read`]),
/// which is sound even while another process stores into the same file, or
/// through atomics ([`Mapping::atomic_u64`]); raw pointers are available for
/// experts. See [`docs::soundness`](crate::docs::soundness). It has no
/// commits and no crash atomicity: for that, use a [`Writer`](crate::Writer).
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use mapstate::{Flush, Mapping, Offset};
/// let mut m = Mapping::options()
///     .create(true)
///     .len(4096)
///     .max_size(1 << 20)
///     .open(dir.path().join("plain.map"))?;
/// m.write(Offset::<u64>::new(8), &42)?;
/// m.flush_range(0..4096, Flush::Sync)?; // msync(MS_SYNC)
/// assert_eq!(m.read(Offset::<u64>::new(8))?, 42);
/// m.grow_to(8192)?; // the file and the mapping, at the same address
/// assert_eq!(m.len(), 8192);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Mapping {
    // Field order matters for Drop: unregister growth, then unmap, then
    // close the file.
    /// Extend-on-write: the growth registration (`None` without it).
    grow: Option<Growth>,
    /// The high-water mark found so far (at least the initial length).
    high_water: u64,
    res: Reservation,
    file: File,
    path: PathBuf,
    /// Bytes of the file that are mapped (the last page may be partial).
    len: u64,
    writable: bool,
    kind: MapKind,
    populate: bool,
    locked: bool,
    /// Page ranges the user made read-only with [`Mapping::protect`].
    read_only: Vec<Range<u64>>,
    /// The maximum length asked for (the reservation is this, page-rounded).
    max: u64,
}

impl Mapping {
    /// Starts a [`MapOptions`] builder.
    pub fn options() -> MapOptions {
        MapOptions::new()
    }

    fn open_with(path: &Path, o: &MapOptions) -> Result<Self> {
        if let Some(m) = o.max_size {
            check_size("maximum size", m)?;
        }
        if o.map_sync != MapSync::Off && o.private {
            return Err(Error::InvalidSize {
                what: "MAP_SYNC private mapping",
                size: 0,
                reason: "MAP_SYNC applies to shared mappings only".into(),
            });
        }
        let file = fs::open_file(path, o.access())?;
        let file_len = fs::file_len(&file, path)?;
        let len = o.len.unwrap_or(file_len);
        let max = match o.max_size {
            Some(m) => m,
            None => check_size("file length", len.max(1))?.max(DEFAULT_RESERVATION),
        };
        let cap = check_size("maximum size", max)?;
        if len > max {
            return Err(Error::InvalidSize {
                what: "length",
                size: len,
                reason: format!("larger than the maximum size of {max} bytes"),
            });
        }
        let writable = o.write && !o.private;
        if o.extend_on_write && (!writable || o.map_sync != MapSync::Off) {
            return Err(Error::InvalidSize {
                what: "extend-on-write mapping",
                size: max,
                reason: "extend-on-write needs a writable shared mapping without MAP_SYNC".into(),
            });
        }
        if len > file_len && !writable {
            return Err(Error::OutOfBounds {
                offset: 0,
                len,
                size: file_len,
            });
        }
        let guard = if o.extend_on_write {
            sys::grow::GUARD
        } else {
            0
        };
        let res = Reservation::new(cap as usize + guard)
            .map_err(|e| Error::io("mmap (reserve)", path, e))?;
        let kind = if o.private {
            MapKind::Private
        } else {
            MapKind::Shared
        };
        let mut m = Mapping {
            grow: None,
            high_water: len,
            res,
            file,
            path: path.into(),
            len: 0,
            writable: o.write,
            kind,
            populate: o.populate,
            locked: o.locked,
            read_only: Vec::new(),
            max,
        };
        if o.map_sync != MapSync::Off {
            m.kind = MapKind::SharedSync;
            // Probe with one page: the kernel answers EOPNOTSUPP at once where
            // MAP_SYNC is not possible.
            let probe = m.map_pages(0, sys::page_size() as u64);
            match probe {
                Ok(()) => {}
                Err(Error::Io { source, .. })
                    if matches!(source.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EINVAL)) =>
                {
                    if o.map_sync == MapSync::Require {
                        return Err(Error::Unsupported {
                            what: "MAP_SYNC",
                            path: path.into(),
                            hint: "it needs a DAX filesystem on persistent memory; use MapSync::IfSupported \
                                   or flush with Flush::Sync instead",
                            source,
                        });
                    }
                    m.kind = MapKind::Shared;
                }
                Err(e) => return Err(e),
            }
            m.res
                .unmap(0, sys::page_size())
                .map_err(|e| Error::io("mmap (reserve)", path, e))?;
        }
        m.grow_to(len)?;
        if o.extend_on_write {
            m.start_growth()?;
        }
        Ok(m)
    }

    /// Maps file pages `[from, to)` (page-aligned offsets) over the reservation.
    fn map_pages(&mut self, from: u64, to: u64) -> Result<()> {
        if to <= from {
            return Ok(());
        }
        let prot = if self.writable || self.kind == MapKind::Private {
            Protection::ReadWrite
        } else {
            Protection::ReadOnly
        };
        let fd = sys::fd_of(&self.file);
        self.res
            .map_file(
                from as usize,
                (to - from) as usize,
                fd,
                from,
                FileMap {
                    prot,
                    kind: self.kind,
                    populate: self.populate,
                    locked: self.locked,
                },
            )
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EAGAIN | libc::ENOMEM | libc::EPERM) if self.locked => {
                    memlock_error(to - from, e)
                }
                _ => Error::io("mmap", &self.path, e),
            })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file, for operations mapstate does not wrap.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Bytes currently mapped (with extend-on-write: also what growth has
    /// mapped since, whole chunks, which is the file's length too; a length
    /// inside a page is the file's rounded up to the page, see
    /// [`MapOptions::extend_on_write`]).
    pub fn len(&self) -> u64 {
        match &self.grow {
            // Growth maps and allocates whole pages past the last one.
            Some(g) if g.mapped() as u64 > page_up(self.len) => g.mapped() as u64,
            _ => self.len,
        }
    }

    /// Whether nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The largest `len` the mapping can grow to (as given at open; the
    /// address range reserved is this rounded up to whole pages).
    pub fn max_size(&self) -> u64 {
        self.max
    }

    /// Whether the mapping uses `MAP_SYNC` (stores are durable once flushed
    /// from the CPU cache, without msync).
    pub fn is_map_sync(&self) -> bool {
        self.kind == MapKind::SharedSync
    }

    /// The address of byte 0. It never changes for the life of the mapping,
    /// whatever growth happens.
    pub fn as_ptr(&self) -> *const u8 {
        self.res.base()
    }

    /// The address of byte 0, for stores through raw pointers (the caller
    /// must stay within `len` and the pages' protection).
    pub fn as_mut_ptr(&mut self) -> *mut u8 {
        self.res.base()
    }

    /// Grows (or shrinks) the mapped part to `new_len` bytes, at the same
    /// address. A writable shared file is grown with `fallocate` first, so a
    /// full disk is reported here as [`Error::NoSpace`], never as a SIGBUS at
    /// a later store. Shrinking also truncates a writable shared file.
    pub fn grow_to(&mut self, new_len: u64) -> Result<()> {
        if new_len > self.max_size() {
            return Err(Error::InvalidSize {
                what: "length",
                size: new_len,
                reason: format!(
                    "larger than the reserved maximum of {} bytes",
                    self.max_size()
                ),
            });
        }
        self.len = self.len();
        if new_len < self.len {
            return self.shrink_to(new_len);
        }
        if self.grow.is_some() {
            // After a `trim` to a mark inside a page the file may end there:
            // cover that page before stores below `new_len` land in it.
            self.cover_last_page()?;
        }
        if let Some(g) = &self.grow {
            g.grow_to(new_len as usize)
                .map_err(|e| growth_error(&self.path, Some(sys::fd_of(&self.file)), e, new_len))?;
            self.len = new_len.max(self.len());
            self.high_water = self.high_water.max(new_len);
            return Ok(());
        }
        let shared_rw = self.writable && self.kind != MapKind::Private;
        if shared_rw {
            if new_len > 0 {
                allocate(&self.path, &self.file, self.len, new_len)?;
            }
        } else {
            let file_len = fs::file_len(&self.file, &self.path)?;
            if new_len > file_len {
                return Err(Error::OutOfBounds {
                    offset: 0,
                    len: new_len,
                    size: file_len,
                });
            }
        }
        let from = page_up(self.len);
        let to = page_up(new_len);
        self.map_pages(from, to)?;
        self.len = new_len;
        Ok(())
    }

    /// Shrinks the mapped part to `new_len` bytes; the pages past it return to
    /// reserved, inaccessible address space and a writable shared file is
    /// truncated to `new_len`. With extend-on-write the file is then grown
    /// back with zeros to the end of the page that holds `new_len`, which
    /// stays mapped (stores there are the file's; [`Mapping::trim`] and
    /// [`Mapping::detach`] cut the file at the high-water mark, which is now
    /// `new_len` or less).
    pub fn shrink_to(&mut self, new_len: u64) -> Result<()> {
        self.cut(new_len)?;
        if self.grow.is_some() {
            self.cover_last_page()?;
        }
        Ok(())
    }

    /// [`Mapping::shrink_to`] without covering the last page: the file ends
    /// at `new_len` exactly.
    fn cut(&mut self, new_len: u64) -> Result<()> {
        self.len = self.len();
        if new_len > self.len {
            return Err(Error::OutOfBounds {
                offset: 0,
                len: new_len,
                size: self.len,
            });
        }
        let from = page_up(new_len);
        let to = page_up(self.len);
        if let Some(g) = &self.grow {
            g.shrink_to(from as usize)
                .map_err(|e| Error::io("mmap (reserve)", &self.path, e))?;
            self.high_water = self.high_water.min(new_len);
        } else if to > from {
            self.res
                .unmap(from as usize, (to - from) as usize)
                .map_err(|e| Error::io("mmap (reserve)", &self.path, e))?;
        }
        if self.writable && self.kind != MapKind::Private {
            sys::ftruncate(sys::fd_of(&self.file), new_len)
                .map_err(|e| Error::io("ftruncate", &self.path, e))?;
        }
        self.len = new_len;
        self.read_only.retain_mut(|r| {
            r.end = r.end.min(from);
            r.start < r.end
        });
        Ok(())
    }

    /// Checks `range` against the mapped length and widens it to whole pages
    /// (clamped to the mapped pages); an empty range is no pages at all.
    fn pages(&self, range: &Range<u64>) -> Result<(usize, usize)> {
        self.check(range.start, range.end.saturating_sub(range.start))?;
        if range.end < range.start {
            return Err(Error::OutOfBounds {
                offset: range.start,
                len: 0,
                size: self.len,
            });
        }
        if range.is_empty() {
            return Ok((0, 0));
        }
        let start = sys::page_round_down(range.start as usize);
        let end = page_up(range.end) as usize;
        Ok((start, end - start))
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: self.len(),
            }),
        }
    }

    /// `msync` of the pages covering `range` (rounded out to whole pages).
    /// [`Flush::Sync`] returns once they are on stable storage;
    /// [`Flush::Async`] does nothing on Linux (see its docs).
    pub fn flush_range(&self, range: Range<u64>, how: Flush) -> Result<()> {
        let (off, len) = self.pages(&range)?;
        if len == 0 {
            return Ok(());
        }
        self.res
            .sync(off, len, how)
            .map_err(|e| Error::io("msync", &self.path, e))
    }

    /// `msync(MS_SYNC)` of the whole mapping.
    pub fn flush(&self) -> Result<()> {
        self.flush_range(0..self.len(), Flush::Sync)
    }

    /// `madvise` of the pages covering `range` with advice that never changes contents.
    pub fn advise(&self, range: Range<u64>, advice: Advice) -> Result<()> {
        let (off, len) = self.pages(&range)?;
        if len == 0 {
            return Ok(());
        }
        self.res
            .advise(off, len, advice)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EINVAL) => Error::Unsupported {
                    what: "this madvise advice",
                    path: self.path.clone(),
                    hint: "the kernel or this kind of mapping does not accept it",
                    source: e,
                },
                _ => Error::io("madvise", &self.path, e),
            })
    }

    /// `madvise` with advice that may change what the bytes read as (see
    /// [`Discard`]): `MADV_REMOVE` **destroys the data** in the range. Only
    /// the whole pages inside `range` are discarded (rounded inward), so no
    /// byte outside it is ever touched.
    pub fn discard(&mut self, range: Range<u64>, how: Discard) -> Result<()> {
        self.pages(&range)?;
        let start = page_up(range.start) as usize;
        let end = sys::page_round_down(range.end as usize);
        if end <= start {
            return Ok(());
        }
        let (off, len) = (start, end - start);
        self.res
            .discard(off, len, how)
            .map_err(|e| Error::io("madvise", &self.path, e))
    }

    /// Prefaults the pages covering `range` (`MADV_POPULATE_WRITE` for a
    /// writable mapping, `MADV_POPULATE_READ` otherwise), so that later
    /// accesses take no page fault.
    pub fn populate(&self, range: Range<u64>) -> Result<()> {
        let writable =
            (self.writable || self.kind == MapKind::Private) && !self.overlaps_read_only(&range);
        self.advise(
            range,
            if writable {
                Advice::PopulateWrite
            } else {
                Advice::PopulateRead
            },
        )
    }

    /// `mlock` of the pages covering `range` (`mlock2(MLOCK_ONFAULT)` when
    /// `on_fault`: lock pages as they are touched). Beyond `RLIMIT_MEMLOCK`
    /// this is [`Error::MemlockLimit`], which says the limit and how to raise it.
    pub fn lock(&self, range: Range<u64>, on_fault: bool) -> Result<()> {
        let (off, len) = self.pages(&range)?;
        if len == 0 {
            return Ok(());
        }
        self.res
            .lock(off, len, on_fault)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ENOMEM | libc::EPERM | libc::EAGAIN) => memlock_error(len as u64, e),
                _ => Error::io("mlock", &self.path, e),
            })
    }

    /// `munlock` of the pages covering `range`.
    pub fn unlock(&self, range: Range<u64>) -> Result<()> {
        let (off, len) = self.pages(&range)?;
        if len == 0 {
            return Ok(());
        }
        self.res
            .unlock(off, len)
            .map_err(|e| Error::io("munlock", &self.path, e))
    }

    /// `mprotect` of the pages covering `range`. While a range is read-only,
    /// [`Mapping::write_at`] there returns [`Error::ReadOnly`] and a raw store is a SIGSEGV.
    pub fn protect(&mut self, range: Range<u64>, prot: Protection) -> Result<()> {
        let (off, len) = self.pages(&range)?;
        if len == 0 {
            return Ok(());
        }
        if prot == Protection::ReadWrite && !self.writable && self.kind != MapKind::Private {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
                offset: range.start,
                len: len as u64,
            });
        }
        self.res
            .protect(off, len, prot)
            .map_err(|e| Error::io("mprotect", &self.path, e))?;
        let pages = off as u64..(off + len) as u64;
        subtract(&mut self.read_only, &pages);
        if prot == Protection::ReadOnly {
            self.read_only.push(pages);
        }
        Ok(())
    }

    fn overlaps_read_only(&self, r: &Range<u64>) -> bool {
        self.read_only
            .iter()
            .any(|p| p.start < r.end && r.start < p.end)
    }

    /// Copies `buf.len()` bytes at `offset` out of the mapping.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.res.read(offset as usize, buf);
        Ok(())
    }

    /// Copies `data` into the mapping at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let len = data.len() as u64;
        if self.grow.is_some()
            && let Some(end) = offset.checked_add(len)
            && end > self.len()
            && end <= self.max
        {
            // Extend-on-write: what a store through a pointer would do.
            self.grow_to(end)?;
        }
        self.check(offset, len)?;
        if (!self.writable && self.kind != MapKind::Private)
            || self.overlaps_read_only(&(offset..offset + len))
        {
            return Err(Error::ReadOnly {
                path: self.path.clone(),
                offset,
                len,
            });
        }
        self.res.write(offset as usize, data);
        Ok(())
    }

    fn check_typed<T>(&self, at: Offset<T>) -> Result<u64> {
        let offset = at.aligned()?;
        self.check(offset, std::mem::size_of::<T>() as u64)?;
        Ok(offset)
    }

    /// Reads a `T` at `at`, checking bounds and alignment. Any bit pattern is
    /// a valid `T` (`FromBytes`), so a corrupt file yields a wrong value, never
    /// undefined behaviour.
    pub fn read<T: FromBytes + IntoBytes>(&self, at: Offset<T>) -> Result<T> {
        let offset = self.check_typed(at)?;
        let mut v = T::new_zeroed();
        self.res.read(offset as usize, v.as_mut_bytes());
        Ok(v)
    }

    /// Writes `value` at `at`, checking bounds and alignment.
    pub fn write<T: IntoBytes + Immutable>(&mut self, at: Offset<T>, value: &T) -> Result<()> {
        let offset = self.check_typed(at)?;
        self.write_at(offset, value.as_bytes())
    }

    /// The 8-byte-aligned word at `at` as an atomic, shared with every other
    /// mapping of the file (in this process or another).
    pub fn atomic_u64(&self, at: Offset<u64>) -> Result<&AtomicU64> {
        let offset = self.check_typed(at)?;
        Ok(self.res.atomic_u64(offset as usize))
    }

    /// The 4-byte-aligned word at `at` as an atomic (usable as a futex word).
    pub fn atomic_u32(&self, at: Offset<u32>) -> Result<&AtomicU32> {
        let offset = self.check_typed(at)?;
        Ok(self.res.atomic_u32(offset as usize))
    }
}

fn page_up(n: u64) -> u64 {
    sys::page_round_up(n as usize).expect("lengths are bounded by the reservation") as u64
}

/// Removes `cut` from every range of `set`, splitting where needed.
fn subtract(set: &mut Vec<Range<u64>>, cut: &Range<u64>) {
    let mut out = Vec::with_capacity(set.len() + 1);
    for r in set.drain(..) {
        if r.end <= cut.start || cut.end <= r.start {
            out.push(r);
            continue;
        }
        if r.start < cut.start {
            out.push(r.start..cut.start);
        }
        if cut.end < r.end {
            out.push(cut.end..r.end);
        }
    }
    *set = out;
}

/// [`Error::MemlockLimit`] with the process's current limits.
pub(crate) fn memlock_error(requested: u64, source: io::Error) -> Error {
    let (soft, hard) = sys::memlock_limit();
    Error::MemlockLimit {
        requested,
        soft,
        hard,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::subtract;

    #[test]
    fn subtract_splits_and_trims() {
        let mut s = vec![0..100, 200..300];
        subtract(&mut s, &(50..250));
        assert_eq!(s, vec![0..50, 250..300]);
        subtract(&mut s, &(10..20));
        assert_eq!(s, vec![0..10, 20..50, 250..300]);
        subtract(&mut s, &(0..1000));
        assert!(s.is_empty());
    }
}
