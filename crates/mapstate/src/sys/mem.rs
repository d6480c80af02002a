//! [`Reservation`]: a range of address space owned for its whole life, with
//! files mapped over parts of it.
//!
//! # Safety
//!
//! The invariants every method relies on:
//! 1. `base..base + cap` was returned by one `mmap` call of this reservation
//!    and stays mapped (as `PROT_NONE` anonymous memory or as file mappings
//!    this type placed with `MAP_FIXED`) until `Drop` unmaps it. Nothing else
//!    in the process maps over it, because nothing else knows the range.
//! 2. Methods that replace, protect or discard memory take `&mut self`, so no
//!    borrow handed out by `&self` methods (atomics) can be alive meanwhile.
//! 3. Bytes are read and written only by `ptr::copy_nonoverlapping` into or
//!    out of caller-owned buffers, or through atomics. No `&[u8]` into the
//!    mapping is created here, so another process changing the bytes can only
//!    change the values copied, never invalidate a Rust reference.
//! 4. Every range is checked against `cap` before use; an offset outside the
//!    reservation is a bug in the caller and panics, it never reaches the kernel.

use std::io;
use std::os::fd::BorrowedFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU32, AtomicU64};

use rustix::mm::{self, MapFlags, MprotectFlags, MsyncFlags, ProtFlags};

/// Access allowed to mapped pages (`mprotect`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protection {
    /// `PROT_READ`: a store is a SIGSEGV; mapstate's own writes return an error.
    ReadOnly,
    /// `PROT_READ | PROT_WRITE`.
    ReadWrite,
}

/// How a file is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MapKind {
    /// `MAP_SHARED`: stores reach the file and every other mapping of it.
    Shared,
    /// `MAP_PRIVATE`: stores land in private copy-on-write pages.
    Private,
    /// `MAP_SHARED_VALIDATE | MAP_SYNC`: DAX only; EOPNOTSUPP elsewhere.
    SharedSync,
}

/// How [`Reservation::map_file`] maps a file range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileMap {
    /// `PROT_READ` or `PROT_READ | PROT_WRITE`.
    pub(crate) prot: Protection,
    /// Shared, private or `MAP_SYNC`.
    pub(crate) kind: MapKind,
    /// `MAP_POPULATE`: prefault every page now.
    pub(crate) populate: bool,
    /// `MAP_LOCKED`: lock the pages in memory now.
    pub(crate) locked: bool,
}

impl FileMap {
    /// `MAP_SHARED` with `prot`, nothing prefaulted or locked.
    pub(crate) const fn shared(prot: Protection) -> Self {
        Self {
            prot,
            kind: MapKind::Shared,
            populate: false,
            locked: false,
        }
    }
}

/// The flavours of `msync`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// `MS_SYNC`: returns once the dirty pages of the range are written and
    /// the device cache flushed. This is what makes mapped stores durable.
    Sync,
    /// `MS_ASYNC`: **writes nothing on Linux** (since 2.6.19 the kernel tracks
    /// dirty pages anyway and the call returns at once); the pages are
    /// written back whenever the kernel decides. Kept for portability only.
    Async,
    /// `MS_SYNC | MS_INVALIDATE`: as `Sync`; on Linux the invalidate part only
    /// fails with EBUSY if the range is locked.
    Invalidate,
}

/// `madvise` advice that never changes what the mapped bytes read as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Advice {
    /// `MADV_NORMAL`: default readahead.
    Normal,
    /// `MADV_SEQUENTIAL`: aggressive readahead, pages dropped soon after use.
    Sequential,
    /// `MADV_RANDOM`: no readahead. On ext4 this also keeps page-cache folios
    /// at 4 KiB, so a one-page msync writes 4 KiB instead of up to 2 MiB.
    Random,
    /// `MADV_WILLNEED`: start reading the range in now.
    WillNeed,
    /// `MADV_HUGEPAGE`: allow transparent huge pages (anonymous and private
    /// memory; file mappings need filesystem support).
    HugePage,
    /// `MADV_NOHUGEPAGE`: forbid transparent huge pages.
    NoHugePage,
    /// `MADV_COLD`: the pages are good candidates for reclaim.
    Cold,
    /// `MADV_PAGEOUT`: reclaim the pages now (dirty file pages are written first).
    PageOut,
    /// `MADV_DONTFORK`: a child made by `fork` does not get this range.
    DontFork,
    /// `MADV_DOFORK`: undo `DontFork`.
    DoFork,
    /// `MADV_DONTDUMP`: leave the range out of core dumps.
    DontDump,
    /// `MADV_DODUMP`: undo `DontDump`.
    DoDump,
    /// `MADV_POPULATE_READ`: prefault the pages readable.
    PopulateRead,
    /// `MADV_POPULATE_WRITE`: prefault the pages writable (on a shared file
    /// mapping this marks them dirty).
    PopulateWrite,
}

/// `madvise` advice that may change what the mapped bytes read as; kept apart
/// from [`Advice`] and only reachable through `&mut` methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Discard {
    /// `MADV_DONTNEED`: drop the pages from this mapping. A shared file
    /// mapping reads the file again (nothing is lost); a private mapping
    /// loses its unsaved copy-on-write changes.
    DontNeed,
    /// `MADV_REMOVE`: punch a hole in the file: **the data is gone** and the
    /// range reads as zeros.
    Remove,
}

/// A range of address space owned by this value; see the module docs.
#[derive(Debug)]
pub(crate) struct Reservation {
    base: NonNull<u8>,
    cap: usize,
}

// SAFETY: the reservation owns its range exclusively (invariant 1); its
// `&self` methods only copy bytes out through raw pointers or hand out
// atomics, both of which are sound to use from any thread.
unsafe impl Send for Reservation {}
// SAFETY: as for `Send`: shared use is limited to copies out and atomics.
unsafe impl Sync for Reservation {}

impl Reservation {
    /// `mmap(NULL, cap, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)`:
    /// reserves `cap` bytes of address space without committing memory.
    pub(crate) fn new(cap: usize) -> io::Result<Self> {
        if cap == 0 || cap % super::page_size() != 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        // SAFETY: a fresh anonymous mapping at an address the kernel picks
        // cannot overlap any memory Rust knows about.
        let p = unsafe {
            mm::mmap_anonymous(
                ptr::null_mut(),
                cap,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE,
            )
        }?;
        let base = NonNull::new(p.cast::<u8>())
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        Ok(Self { base, cap })
    }

    /// The first address of the reservation.
    pub(crate) fn base(&self) -> *mut u8 {
        self.base.as_ptr()
    }

    /// The size of the reservation in bytes.
    pub(crate) fn capacity(&self) -> usize {
        self.cap
    }

    fn check(&self, off: usize, len: usize) {
        assert!(
            off.checked_add(len).is_some_and(|end| end <= self.cap),
            "range {off}+{len} outside a reservation of {} bytes",
            self.cap
        );
    }

    fn at(&self, off: usize) -> *mut u8 {
        // `check` ran before every call, so `off <= cap` and the result stays
        // inside (or one past) the reservation; `wrapping_add` avoids any
        // in-bounds precondition.
        self.base.as_ptr().wrapping_add(off)
    }

    /// `mmap(base + off, len, prot, kind | MAP_FIXED [| MAP_POPULATE | MAP_LOCKED], fd, file_off)`:
    /// maps a file range over part of the reservation, replacing what was there.
    pub(crate) fn map_file(
        &mut self,
        off: usize,
        len: usize,
        fd: BorrowedFd<'_>,
        file_off: u64,
        how: FileMap,
    ) -> io::Result<()> {
        let FileMap {
            prot,
            kind,
            populate,
            locked,
        } = how;
        self.check(off, len);
        let mut flags = match kind {
            MapKind::Shared => MapFlags::SHARED,
            MapKind::Private => MapFlags::PRIVATE,
            MapKind::SharedSync => MapFlags::SHARED_VALIDATE | MapFlags::SYNC,
        } | MapFlags::FIXED;
        if populate {
            flags |= MapFlags::POPULATE;
        }
        if locked {
            flags |= MapFlags::LOCKED;
        }
        let prot = match prot {
            Protection::ReadOnly => ProtFlags::READ,
            Protection::ReadWrite => ProtFlags::READ | ProtFlags::WRITE,
        };
        // SAFETY: the target range lies inside our reservation (checked
        // above), which nothing else in the process uses (invariant 1), and
        // `&mut self` guarantees no borrow into it is alive (invariant 2).
        // MAP_FIXED replaces exactly that range atomically.
        let p = unsafe { mm::mmap(self.at(off).cast(), len, prot, flags, fd, file_off) }?;
        debug_assert_eq!(p.cast::<u8>(), self.at(off));
        Ok(())
    }

    /// Returns part of the reservation to reserved, inaccessible address space
    /// (`PROT_NONE` anonymous, `MAP_FIXED`), atomically dropping any file mapping there.
    pub(crate) fn unmap(&mut self, off: usize, len: usize) -> io::Result<()> {
        self.check(off, len);
        // SAFETY: as in `map_file`: our own range, no borrows alive.
        let p = unsafe {
            mm::mmap_anonymous(
                self.at(off).cast(),
                len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED,
            )
        }?;
        debug_assert_eq!(p.cast::<u8>(), self.at(off));
        Ok(())
    }

    /// `mprotect(base + off, len, prot)`.
    pub(crate) fn protect(&mut self, off: usize, len: usize, prot: Protection) -> io::Result<()> {
        self.check(off, len);
        let flags = match prot {
            Protection::ReadOnly => MprotectFlags::READ,
            Protection::ReadWrite => MprotectFlags::READ | MprotectFlags::WRITE,
        };
        // SAFETY: our own range; `&mut self` means no borrow is alive, and
        // the only later accesses are this type's copies, which the caller
        // keeps within what the protection allows (a violation is a SIGSEGV,
        // not a memory-safety issue).
        unsafe { mm::mprotect(self.at(off).cast(), len, flags) }.map_err(Into::into)
    }

    /// `msync(base + off, len, MS_SYNC | MS_ASYNC | MS_INVALIDATE)`.
    pub(crate) fn sync(&self, off: usize, len: usize, mode: Flush) -> io::Result<()> {
        self.check(off, len);
        let flags = match mode {
            Flush::Sync => MsyncFlags::SYNC,
            Flush::Async => MsyncFlags::ASYNC,
            Flush::Invalidate => MsyncFlags::SYNC | MsyncFlags::INVALIDATE,
        };
        // SAFETY: msync does not change memory contents (MS_INVALIDATE on
        // Linux only checks for locked pages); the range is our own.
        unsafe { mm::msync(self.at(off).cast(), len, flags) }.map_err(Into::into)
    }

    /// `madvise(base + off, len, advice)` for advice that never changes contents.
    pub(crate) fn advise(&self, off: usize, len: usize, advice: Advice) -> io::Result<()> {
        self.check(off, len);
        let a = match advice {
            Advice::Normal => mm::Advice::Normal,
            Advice::Sequential => mm::Advice::Sequential,
            Advice::Random => mm::Advice::Random,
            Advice::WillNeed => mm::Advice::WillNeed,
            Advice::HugePage => mm::Advice::LinuxHugepage,
            Advice::NoHugePage => mm::Advice::LinuxNoHugepage,
            Advice::Cold => mm::Advice::LinuxCold,
            Advice::PageOut => mm::Advice::LinuxPageOut,
            Advice::DontFork => mm::Advice::LinuxDontFork,
            Advice::DoFork => mm::Advice::LinuxDoFork,
            Advice::DontDump => mm::Advice::LinuxDontDump,
            Advice::DoDump => mm::Advice::LinuxDoDump,
            Advice::PopulateRead => mm::Advice::LinuxPopulateRead,
            Advice::PopulateWrite => mm::Advice::LinuxPopulateWrite,
        };
        // SAFETY: every advice above leaves the bytes the mapping reads as
        // unchanged (they change residency, readahead, THP or fork/dump
        // behaviour only); the range is our own.
        unsafe { mm::madvise(self.at(off).cast(), len, a) }.map_err(Into::into)
    }

    /// `madvise(base + off, len, MADV_DONTNEED | MADV_REMOVE)`: advice that may
    /// change what the bytes read as; `&mut self` keeps borrows out.
    pub(crate) fn discard(&mut self, off: usize, len: usize, how: Discard) -> io::Result<()> {
        self.check(off, len);
        let a = match how {
            Discard::DontNeed => mm::Advice::LinuxDontNeed,
            Discard::Remove => mm::Advice::LinuxRemove,
        };
        // SAFETY: our own range and no borrow alive (`&mut self`); the
        // contents may change, which is the caller's intent.
        unsafe { mm::madvise(self.at(off).cast(), len, a) }.map_err(Into::into)
    }

    /// `mlock(base + off, len)` or `mlock2(…, MLOCK_ONFAULT)`.
    pub(crate) fn lock(&self, off: usize, len: usize, on_fault: bool) -> io::Result<()> {
        self.check(off, len);
        let p = self.at(off).cast();
        let r = if on_fault {
            // SAFETY: mlock2 only changes residency; the range is our own.
            unsafe { mm::mlock_with(p, len, mm::MlockFlags::ONFAULT) }
        } else {
            // SAFETY: mlock only changes residency; the range is our own.
            unsafe { mm::mlock(p, len) }
        };
        r.map_err(Into::into)
    }

    /// `munlock(base + off, len)`.
    pub(crate) fn unlock(&self, off: usize, len: usize) -> io::Result<()> {
        self.check(off, len);
        // SAFETY: munlock only changes residency; the range is our own.
        unsafe { mm::munlock(self.at(off).cast(), len) }.map_err(Into::into)
    }

    /// Copies `dst.len()` bytes at `off` out of the mapping.
    ///
    /// The caller must only name mapped, readable bytes; other bytes of the
    /// reservation fault with SIGSEGV (never undefined behaviour).
    pub(crate) fn read(&self, off: usize, dst: &mut [u8]) {
        self.check(off, dst.len());
        // SAFETY: the source lies inside our reservation (checked), the
        // destination is a caller-owned buffer that cannot overlap it (Rust
        // memory is never inside our range, invariant 1). A concurrent store
        // by another process can only change the values copied.
        unsafe { ptr::copy_nonoverlapping(self.at(off), dst.as_mut_ptr(), dst.len()) }
    }

    /// Copies `src` into the mapping at `off` (same rules as [`Self::read`],
    /// and the bytes must be writable).
    pub(crate) fn write(&mut self, off: usize, src: &[u8]) {
        self.check(off, src.len());
        // SAFETY: as in `read`, with the roles swapped; `&mut self` keeps
        // every borrow of this reservation out.
        unsafe { ptr::copy_nonoverlapping(src.as_ptr(), self.at(off), src.len()) }
    }

    /// A reference to the `AtomicU64` at `off` (8-byte aligned, mapped for
    /// as long as the borrow of `self` lasts).
    pub(crate) fn atomic_u64(&self, off: usize) -> &AtomicU64 {
        self.check(off, 8);
        let p = self.at(off);
        assert!(p.addr() % 8 == 0, "misaligned atomic at offset {off}");
        // SAFETY: in range and aligned (checked); the memory stays mapped
        // while `self` is borrowed because replacing it needs `&mut self`;
        // atomics may be read and written concurrently by any thread or
        // process, so another process's stores are not a data race.
        unsafe { AtomicU64::from_ptr(p.cast()) }
    }

    /// A reference to the `AtomicU32` at `off` (4-byte aligned); see [`Self::atomic_u64`].
    pub(crate) fn atomic_u32(&self, off: usize) -> &AtomicU32 {
        self.check(off, 4);
        let p = self.at(off);
        assert!(p.addr() % 4 == 0, "misaligned atomic at offset {off}");
        // SAFETY: as for `atomic_u64`.
        unsafe { AtomicU32::from_ptr(p.cast()) }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the range is the one `new` mapped (invariant 1) and no
        // borrow can outlive `self`. An error here would mean the range was
        // not ours, which invariant 1 rules out; there is nothing to do then.
        let _ = unsafe { mm::munmap(self.base.as_ptr().cast(), self.cap) };
    }
}

impl Reservation {
    /// The mapped bytes `off..off + len` as a slice.
    ///
    /// Sound only for reservations whose mapped files are modified solely by
    /// this process through `&mut` methods of this reservation or under the
    /// writer lock that this process holds (the writer's private view and
    /// the log, see `docs/SOUNDNESS.md`): then nothing changes the bytes while
    /// the shared borrow of `self` lasts. Callers in mapstate uphold this; it
    /// is not exported.
    pub(crate) fn exclusive_bytes(&self, off: usize, len: usize) -> &[u8] {
        self.check(off, len);
        // SAFETY: in range (checked) and mapped (caller's invariant); no
        // `&mut` method of `self` can run while the borrow lasts, and by the
        // exclusivity contract above no other writer exists.
        unsafe { std::slice::from_raw_parts(self.at(off), len) }
    }

    /// The mapped bytes `off..off + len` as a mutable slice; same contract as
    /// [`Self::exclusive_bytes`].
    pub(crate) fn exclusive_bytes_mut(&mut self, off: usize, len: usize) -> &mut [u8] {
        self.check(off, len);
        // SAFETY: as in `exclusive_bytes`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.at(off), len) }
    }
}
