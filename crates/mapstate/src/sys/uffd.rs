//! userfaultfd write tracking (`WP_ASYNC` + `PAGEMAP_SCAN`).
//!
//! [`WriteTracker`] finds the pages that this process stored to through one
//! mapping since the last time it asked. It needs no signal handler, and no
//! thread has to handle faults. The range is registered with a userfaultfd
//! in write-protect mode with `UFFD_FEATURE_WP_ASYNC`. The kernel then sets a
//! uffd-wp bit in every page-table entry of the range. The first store to a
//! marked page takes a minor fault, which the kernel resolves itself by
//! clearing the bit: no message is sent and no thread waits (about 1.6 µs
//! per page on the measured machine). `ioctl(/proc/self/pagemap,
//! PAGEMAP_SCAN)` then lists the pages whose bit is clear
//! (`PAGE_IS_WRITTEN`). With `PM_SCAN_WP_MATCHING`, the same walk sets the
//! bit again, under the same page-table lock, before flushing the TLB and
//! returning. So a store that races with a scan is either done before the
//! ioctl returns, and its page is in this report, or it faults and shows up
//! in the next report. `UFFD_FEATURE_WP_UNPOPULATED` also protects pages
//! that are not populated yet (PTE markers), so a page faulted in by a read
//! does not look written.
//!
//! Limits:
//! - It only sees stores by **this process through this mapping**, in user
//!   or kernel mode (a `read(2)` into the mapping counts). It cannot see
//!   stores by another process through its own mapping, or `write(2)` and
//!   `pwrite(2)` to the file: those change the file without touching one of
//!   our page-table entries.
//! - It is **conservative**: when unsure, it reports a page as written. Some
//!   pages are reported even if they were not written since the last scan:
//!   - a page written, then dropped from the page table (`MADV_DONTNEED`,
//!     reclaim of a shared file page): an empty entry without the marker
//!     that write-protection leaves reads as written;
//!   - every page of a mapping that was replaced and then registered again
//!     by [`WriteTracker::extend`], for the same reason.
//!
//!   A store is missed only if it happens before the range is
//!   write-protected. That means before `new` or `extend` returns, or
//!   between the caller replacing a mapping and calling `extend`.
//! - It works **per process**. After `fork` the child's copy of the mappings
//!   is not registered. The tracker's `/proc/self/pagemap` descriptor still
//!   names the parent's address space, so a tracker refuses to work in a
//!   child.
//! - It needs **Linux 6.7** or later (`WP_ASYNC`, `PAGEMAP_SCAN`). Without
//!   `CAP_SYS_PTRACE`, and with `vm.unprivileged_userfaultfd = 0`, a process
//!   may only create a userfaultfd with `UFFD_USER_MODE_ONLY` (Linux 5.11 or
//!   later). That flag only changes how faults that need the descriptor are
//!   handled. Asynchronous write-protect faults never reach the descriptor,
//!   so the tracker works the same with it (checked by the tests, including
//!   stores made in kernel mode).
//!
//! The kernel's structures and constants are defined here by hand, because
//! the distribution's headers are older than the kernel. They come from
//! `include/uapi/linux/fs.h` and `include/uapi/linux/userfaultfd.h`, and
//! compile-time assertions check their sizes and, on x86-64, the request
//! numbers.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use rustix::io::Errno;
use rustix::ioctl::{Opcode, opcode};
use rustix::mm::{UserfaultfdFlags, userfaultfd};

use super::{Reservation, page_size};

// ---- include/uapi/linux/userfaultfd.h ----

/// `UFFD_API`: the only API version.
const UFFD_API: u64 = 0xAA;
/// `UFFDIO`: the ioctl type of userfaultfd requests.
const UFFDIO: u8 = 0xAA;
/// `UFFD_USER_MODE_ONLY`: a `userfaultfd(2)` flag; only user-mode faults are handled.
const UFFD_USER_MODE_ONLY: u32 = 1;
/// `UFFD_FEATURE_WP_UNPOPULATED`: write-protect also installs markers on empty entries.
const UFFD_FEATURE_WP_UNPOPULATED: u64 = 1 << 13;
/// `UFFD_FEATURE_WP_ASYNC`: the kernel resolves write-protect faults itself.
const UFFD_FEATURE_WP_ASYNC: u64 = 1 << 15;
/// `UFFDIO_REGISTER_MODE_WP`.
const UFFDIO_REGISTER_MODE_WP: u64 = 1 << 1;
/// `UFFDIO_WRITEPROTECT_MODE_WP`: set (rather than clear) write protection.
const UFFDIO_WRITEPROTECT_MODE_WP: u64 = 1 << 0;

/// `struct uffdio_api`.
#[repr(C)]
struct UffdioApi {
    api: u64,
    features: u64,
    ioctls: u64,
}

/// `struct uffdio_range`.
#[repr(C)]
struct UffdioRange {
    start: u64,
    len: u64,
}

/// `struct uffdio_register`.
#[repr(C)]
struct UffdioRegister {
    range: UffdioRange,
    mode: u64,
    ioctls: u64,
}

/// `struct uffdio_writeprotect`.
#[repr(C)]
struct UffdioWriteprotect {
    range: UffdioRange,
    mode: u64,
}

/// `UFFDIO_API = _IOWR(UFFDIO, 0x3F, struct uffdio_api)`.
const UFFDIO_API: Opcode = opcode::read_write::<UffdioApi>(UFFDIO, 0x3F);
/// `UFFDIO_REGISTER = _IOWR(UFFDIO, 0x00, struct uffdio_register)`.
const UFFDIO_REGISTER: Opcode = opcode::read_write::<UffdioRegister>(UFFDIO, 0x00);
/// `UFFDIO_UNREGISTER = _IOR(UFFDIO, 0x01, struct uffdio_range)`.
const UFFDIO_UNREGISTER: Opcode = opcode::read::<UffdioRange>(UFFDIO, 0x01);
/// `UFFDIO_WRITEPROTECT = _IOWR(UFFDIO, 0x06, struct uffdio_writeprotect)`.
const UFFDIO_WRITEPROTECT: Opcode = opcode::read_write::<UffdioWriteprotect>(UFFDIO, 0x06);

// ---- include/uapi/linux/fs.h ----

/// `PAGE_IS_WRITTEN`: written since it was last write-protected.
const PAGE_IS_WRITTEN: u64 = 1 << 1;
/// `PM_SCAN_WP_MATCHING`: write-protect the pages that match.
const PM_SCAN_WP_MATCHING: u64 = 1 << 0;
/// `PM_SCAN_CHECK_WPASYNC`: fail with EPERM on a VMA without async write-protection.
const PM_SCAN_CHECK_WPASYNC: u64 = 1 << 1;

/// `struct page_region`: `[start, end)` addresses of pages with the same categories.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// `struct pm_scan_arg`.
#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `PAGEMAP_SCAN = _IOWR('f', 16, struct pm_scan_arg)`.
const PAGEMAP_SCAN: Opcode = opcode::read_write::<PmScanArg>(b'f', 16);

// The kernel rejects a `pm_scan_arg` whose `size` differs, and the ioctl
// numbers encode the sizes: check both against the kernel's values.
const _: () = {
    assert!(size_of::<UffdioApi>() == 24);
    assert!(size_of::<UffdioRange>() == 16);
    assert!(size_of::<UffdioRegister>() == 32);
    assert!(size_of::<UffdioWriteprotect>() == 24);
    assert!(size_of::<PageRegion>() == 24);
    assert!(size_of::<PmScanArg>() == 96);
};
#[cfg(target_arch = "x86_64")]
const _: () = {
    assert!(UFFDIO_API as u64 == 0xC018_AA3F);
    assert!(UFFDIO_REGISTER as u64 == 0xC020_AA00);
    assert!(UFFDIO_UNREGISTER as u64 == 0x8010_AA01);
    assert!(UFFDIO_WRITEPROTECT as u64 == 0xC018_AA06);
    assert!(PAGEMAP_SCAN as u64 == 0xC060_6610);
};

/// How many regions one `PAGEMAP_SCAN` call may return (24 KiB of buffer).
/// When more regions are written, [`WriteTracker::take_written`] calls again.
const REGIONS: usize = 1024;

/// Which `userfaultfd(2)` flag sets [`WriteTracker::new`] tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum UffdMode {
    /// Full descriptor first, then `UFFD_USER_MODE_ONLY` on EPERM.
    Any,
    /// Only `UFFD_USER_MODE_ONLY` (what an unprivileged process gets).
    #[cfg(test)]
    UserModeOnly,
}

/// A userfaultfd on which `UFFDIO_API` accepted `UFFD_FEATURE_WP_ASYNC`.
///
/// Only [`AsyncUffd::open`] builds one, so every write-protect fault in a
/// range registered through it is resolved by the kernel. No fault ever
/// waits for a message to be read, and none changes memory contents.
struct AsyncUffd(OwnedFd);

impl AsyncUffd {
    fn open(mode: UffdMode) -> io::Result<Self> {
        let flags = UserfaultfdFlags::CLOEXEC | UserfaultfdFlags::NONBLOCK;
        let user_only = flags | UserfaultfdFlags::from_bits_retain(UFFD_USER_MODE_ONLY);
        let fd = match mode {
            UffdMode::Any => match create_uffd(flags) {
                // No CAP_SYS_PTRACE and vm.unprivileged_userfaultfd = 0:
                // such a process may still handle its own user-mode faults.
                Err(e) if e.raw_os_error() == Some(libc::EPERM) => match create_uffd(user_only) {
                    Ok(fd) => fd,
                    // EINVAL: a kernel before 5.11 does not know the flag;
                    // the permission error is the one that explains.
                    Err(e2) if e2.raw_os_error() == Some(libc::EINVAL) => return Err(e),
                    Err(e2) => return Err(e2),
                },
                r => r?,
            },
            #[cfg(test)]
            UffdMode::UserModeOnly => create_uffd(user_only)?,
        };
        let mut api = UffdioApi {
            api: UFFD_API,
            features: UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_API reads and writes back one `struct uffdio_api`,
        // and `api` is a valid, exclusively borrowed one of the right size
        // (asserted above). The call only sets the descriptor's features.
        let r = unsafe { libc::ioctl(fd.as_raw_fd(), req(UFFDIO_API), &raw mut api) };
        // Before 6.7 the kernel does not know WP_ASYNC and fails with EINVAL.
        cvt(r)?;
        if api.features & UFFD_FEATURE_WP_ASYNC == 0 {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        Ok(Self(fd))
    }

    /// `UFFDIO_REGISTER` in write-protect mode over `[start, start + len)`.
    fn register(&self, start: usize, len: usize) -> io::Result<()> {
        let mut reg = UffdioRegister {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode: UFFDIO_REGISTER_MODE_WP,
            ioctls: 0,
        };
        // SAFETY: UFFDIO_REGISTER reads and writes back one
        // `struct uffdio_register`, a valid local here. Registering for WP
        // on a descriptor with WP_ASYNC (guaranteed by the type) never
        // changes memory contents or blocks a thread: write faults are
        // resolved in the kernel. Missing-page faults are not intercepted,
        // because MODE_MISSING is not requested. This holds for any address
        // range; callers pass only ranges checked against a `Reservation`.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), req(UFFDIO_REGISTER), &raw mut reg) };
        cvt(r).map(drop)
    }

    /// `UFFDIO_UNREGISTER` over `[start, start + len)`.
    #[cfg(test)]
    fn unregister(&self, start: usize, len: usize) -> io::Result<()> {
        let range = UffdioRange {
            start: start as u64,
            len: len as u64,
        };
        // SAFETY: UFFDIO_UNREGISTER only reads one `struct uffdio_range`, a
        // valid local here. Dropping the registration also clears the
        // write-protect bits, which never changes memory contents.
        let r =
            unsafe { libc::ioctl(self.0.as_raw_fd(), req(UFFDIO_UNREGISTER), &raw const range) };
        cvt(r).map(drop)
    }

    /// `UFFDIO_WRITEPROTECT` (set) over `[start, start + len)`.
    fn write_protect(&self, start: usize, len: usize) -> io::Result<()> {
        let mut wp = UffdioWriteprotect {
            range: UffdioRange {
                start: start as u64,
                len: len as u64,
            },
            mode: UFFDIO_WRITEPROTECT_MODE_WP,
        };
        // SAFETY: UFFDIO_WRITEPROTECT reads one `struct uffdio_writeprotect`,
        // a valid local here. Setting write protection on WP_ASYNC ranges
        // only changes page-table bits: the next store takes a fault that
        // the kernel resolves. It never changes memory contents.
        let r = unsafe { libc::ioctl(self.0.as_raw_fd(), req(UFFDIO_WRITEPROTECT), &raw mut wp) };
        cvt(r).map(drop)
    }
}

/// Set by `mapstate::testing::disable_write_tracking` (the `testing`
/// feature): trackers fail to start with ENOSYS, as on a kernel without
/// userfaultfd.
#[cfg(feature = "testing")]
pub(crate) static DISABLED: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// Registers `[start, start + len)` with the userfaultfd `fd` (a
/// [`WriteTracker`]'s, see [`WriteTracker::raw_fd`]) and write-protects it.
/// The extend-on-write handler calls it for a range it has just mapped,
/// before the faulting store retries, so the tracker misses no store there.
/// Two ioctls: async-signal-safe.
pub(crate) fn track_grown(fd: RawFd, start: usize, len: usize) -> io::Result<()> {
    // SAFETY: `fd` is a tracker's open userfaultfd (the caller holds the
    // growth lock, under which the tracker is neither replaced nor
    // dropped); `AsyncUffd` is only a wrapper that is forgotten below, so
    // the descriptor is not closed.
    let u = std::mem::ManuallyDrop::new(AsyncUffd(unsafe { OwnedFd::from_raw_fd(fd) }));
    u.register(start, len)?;
    u.write_protect(start, len)
}

/// An ioctl request number as libc's `ioctl` takes it (`c_ulong` on glibc,
/// `c_int` on musl; rustix's `Opcode` is `c_uint` or `c_ulong`).
#[allow(clippy::cast_lossless, clippy::unnecessary_cast)] // the widths differ between targets
fn req(op: Opcode) -> libc::Ioctl {
    op as libc::Ioctl
}

/// `userfaultfd(flags)`, retried on EINTR.
fn create_uffd(flags: UserfaultfdFlags) -> io::Result<OwnedFd> {
    loop {
        // SAFETY: creating a userfaultfd affects no memory. What it can do
        // later is limited to the ranges registered through it: this module
        // registers only ranges of a `Reservation`, only in write-protect
        // mode, and only on descriptors that have `WP_ASYNC` (see `AsyncUffd`).
        match unsafe { userfaultfd(flags) } {
            Err(Errno::INTR) => {}
            r => return r.map_err(Into::into),
        }
    }
}

/// Turns a libc return value into a result (`-1` means errno).
fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Finds the pages this process wrote through one mapping since the last scan.
///
/// See the module docs for how it works and for its limits. Dropping the
/// tracker closes the userfaultfd. The kernel then unregisters the range and
/// clears its write-protect bits.
pub(crate) struct WriteTracker {
    uffd: AsyncUffd,
    /// `/proc/self/pagemap` of the process that created the tracker.
    pagemap: File,
    /// `res.base()` and `res.capacity()` of the reservation at creation:
    /// every call must pass the same reservation.
    base: usize,
    cap: usize,
    /// The tracked range, `off..off + len` relative to `base`.
    off: usize,
    len: usize,
    /// [`super::fork_generation`] where the tracker was created (see the
    /// module docs on `fork`): no system call per scan tells a child.
    forks: u64,
    /// Output buffer for `PAGEMAP_SCAN`, reused between scans.
    regions: Vec<PageRegion>,
}

impl std::fmt::Debug for WriteTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteTracker")
            .field("uffd", &self.uffd.0)
            .field("base", &(self.base as *const u8))
            .field("off", &self.off)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

impl WriteTracker {
    /// Starts tracking `res.base() + off .. + len`.
    ///
    /// The range must be page aligned and inside the reservation, and must
    /// be currently mapped (in mapstate it is a `MAP_PRIVATE` mapping of a
    /// tmpfs file, the writer's private copy-on-write view; any file or
    /// anonymous mapping works). The range is registered with a userfaultfd
    /// in `WP_ASYNC` mode (plus `WP_UNPOPULATED`), then write-protected as a
    /// whole, so the first scan reports only the stores made after `new`
    /// returns.
    ///
    /// `userfaultfd(O_CLOEXEC | O_NONBLOCK)` is tried first. If that fails
    /// with EPERM, the call is made again with `UFFD_USER_MODE_ONLY`, which
    /// an unprivileged process is allowed. When the kernel cannot track
    /// writes, the `io::Error` is returned so the caller can fall back. The
    /// errors are: EPERM (userfaultfd denied), ENOSYS (kernel without
    /// userfaultfd), EINVAL (no `WP_ASYNC`, so before Linux 6.7, or a mapping
    /// that cannot be registered), EBUSY (part of the range is already
    /// registered with another userfaultfd, for example a second tracker),
    /// ENOENT (`/proc` not mounted), EMFILE.
    ///
    /// # Panics
    ///
    /// If the range is not page aligned, is empty, or is not inside the
    /// reservation: all of these are bugs in the caller.
    pub(crate) fn new(res: &Reservation, off: usize, len: usize) -> io::Result<Self> {
        Self::with_mode(res, off, len, UffdMode::Any)
    }

    fn with_mode(res: &Reservation, off: usize, len: usize, mode: UffdMode) -> io::Result<Self> {
        check_range(res, off, len);
        assert!(len > 0, "empty write-tracking range");
        #[cfg(feature = "testing")]
        if DISABLED.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(io::Error::from_raw_os_error(libc::ENOSYS));
        }
        let uffd = AsyncUffd::open(mode)?;
        // std opens with O_CLOEXEC.
        let pagemap = File::open("/proc/self/pagemap")?;
        let t = Self {
            uffd,
            pagemap,
            base: res.base().addr(),
            cap: res.capacity(),
            off,
            len,
            forks: super::fork_generation(),
            regions: vec![PageRegion::default(); REGIONS],
        };
        t.uffd.register(t.base + off, len)?;
        t.uffd.write_protect(t.base + off, len)?;
        Ok(t)
    }

    /// Changes the tracked range to `off .. off + new_len`, where `off` is
    /// the one given to [`Self::new`] and `new_len` is the new total length,
    /// not the length of the added part.
    ///
    /// Call it when the caller has mapped more pages at
    /// `res.base() + off + old_len .. res.base() + off + new_len`. A
    /// `MAP_FIXED` mapping replaces the VMA, so its registration is lost.
    /// `extend` registers the whole range again. This does nothing for parts
    /// that are still registered. A part that was silently replaced is
    /// registered again too, and all its pages are then reported once as
    /// written (conservative). Only the new part is write-protected, so writes to
    /// the old part that were not reported yet stay pending. The caller must
    /// call `extend` before anything stores to the new pages. With
    /// `new_len` equal to the current length, `extend` only registers again
    /// a part of the range that was replaced in place (after `take_written`
    /// failed with EPERM).
    ///
    /// A smaller `new_len` shrinks the range. The dropped tail is
    /// unregistered on a best-effort basis (a stale registration of a
    /// mapping we no longer scan is harmless).
    ///
    /// # Panics
    ///
    /// As [`Self::new`], or if `res` is not the reservation given to `new`.
    #[cfg(test)] // growth now registers through `track_grown` + `adopt`
    pub(crate) fn extend(&mut self, res: &Reservation, new_len: usize) -> io::Result<()> {
        self.check_res(res);
        check_range(res, self.off, new_len);
        assert!(new_len > 0, "empty write-tracking range");
        let start = self.base + self.off;
        if new_len >= self.len {
            self.uffd.register(start, new_len)?;
            if new_len > self.len {
                self.uffd
                    .write_protect(start + self.len, new_len - self.len)?;
            }
        } else {
            // Fails with EINVAL if the tail was replaced by a file mapping
            // that was never registered; there is nothing to undo then.
            let _ = self.uffd.unregister(start + new_len, self.len - new_len);
        }
        self.len = new_len;
        Ok(())
    }

    /// [`Self::take_written_in`] over the whole tracked range.
    #[cfg(test)]
    pub(crate) fn take_written(
        &mut self,
        res: &Reservation,
        out: &mut Vec<Range<usize>>,
    ) -> io::Result<()> {
        self.take_written_in(res, self.off..self.off + self.len, out)
    }

    /// Appends to `out` the page-aligned byte ranges of `range` (relative
    /// to `res.base()`, page aligned, clipped to the tracked range) written
    /// since the previous call that covered them (or since [`Self::new`]),
    /// and write-protects them again in the same ioctl. The cost follows
    /// `range`; writes elsewhere stay pending.
    ///
    /// The ranges are offsets relative to `res.base()`, in increasing order.
    /// Adjacent ranges found by this call are merged (they are not merged
    /// with ranges that were already in `out`). The call uses `PAGEMAP_SCAN`
    /// with `PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC`, and calls again
    /// while the kernel stops early because the output buffer is full.
    ///
    /// Errors:
    /// - EPERM if part of the range is no longer registered (a mapping was
    ///   replaced and [`Self::extend`] was not called);
    /// - `ErrorKind::Unsupported` in a child process after `fork`.
    ///
    /// After an error, what was written is unknown: regions that the kernel
    /// reported and write-protected before failing are lost. The caller must
    /// treat the whole range as written, fix the cause (`extend`), and then
    /// call [`Self::reset`] once it has handled the pages itself.
    ///
    /// # Panics
    ///
    /// If `res` is not the reservation given to `new`, or `range` is not
    /// page aligned.
    pub(crate) fn take_written_in(
        &mut self,
        res: &Reservation,
        range: Range<usize>,
        out: &mut Vec<Range<usize>>,
    ) -> io::Result<()> {
        self.check_res(res);
        self.check_pid()?;
        let p = page_size();
        assert!(
            range.start % p == 0 && range.end % p == 0,
            "unaligned scan range {range:?}"
        );
        let first_new = out.len();
        let end = (self.base + range.end.min(self.off + self.len)) as u64;
        let mut start = (self.base + range.start.max(self.off)) as u64;
        while start < end {
            let mut arg = PmScanArg {
                size: size_of::<PmScanArg>() as u64,
                flags: PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
                start,
                end,
                walk_end: 0,
                vec: 0,
                vec_len: 0,
                max_pages: 0,
                category_inverted: 0,
                category_mask: PAGE_IS_WRITTEN,
                category_anyof_mask: 0,
                return_mask: PAGE_IS_WRITTEN,
            };
            let n = scan(self.pagemap.as_fd(), &mut arg, &mut self.regions)?;
            for r in &self.regions[..n] {
                debug_assert!(r.categories & PAGE_IS_WRITTEN != 0);
                assert!(
                    start <= r.start && r.start < r.end && r.end <= end,
                    "PAGEMAP_SCAN returned {:#x}..{:#x} outside {start:#x}..{end:#x}",
                    r.start,
                    r.end
                );
                let s = r.start as usize - self.base;
                let e = r.end as usize - self.base;
                let mergeable = out.len() > first_new;
                match out.last_mut() {
                    Some(last) if mergeable && last.end == s => last.end = e,
                    _ => out.push(s..e),
                }
            }
            // `walk_end` is where the walk stopped: `end` once done, or just
            // past the last reported page when the buffer filled up.
            if arg.walk_end <= start || arg.walk_end > end {
                return Err(io::Error::other(format!(
                    "PAGEMAP_SCAN made no progress (walk_end {:#x}, start {start:#x}, end {end:#x})",
                    arg.walk_end
                )));
            }
            start = arg.walk_end;
        }
        Ok(())
    }

    /// The userfaultfd, for [`track_grown`].
    pub(crate) fn raw_fd(&self) -> RawFd {
        self.uffd.0.as_raw_fd()
    }

    /// Changes the tracked length to `new_len` after the extend-on-write
    /// handler registered and write-protected the added part itself
    /// ([`track_grown`]): nothing is registered or protected here, so stores
    /// made there since are reported by the next scan.
    pub(crate) fn adopt(&mut self, res: &Reservation, new_len: usize) {
        self.check_res(res);
        check_range(res, self.off, new_len);
        self.len = new_len;
    }

    /// Write-protects the whole range again without reporting anything. For
    /// example, after the caller has reverted the pages itself: pending
    /// writes are forgotten.
    ///
    /// # Panics
    ///
    /// If `res` is not the reservation given to `new`.
    pub(crate) fn reset(&mut self, res: &Reservation) -> io::Result<()> {
        self.check_res(res);
        self.check_pid()?;
        self.uffd.write_protect(self.base + self.off, self.len)
    }

    /// Write-protects the pages of `off..off + len` (relative to
    /// `res.base()`, clipped to the tracked range) again without reporting
    /// them: stores there so far are forgotten.
    ///
    /// # Panics
    ///
    /// If `res` is not the reservation given to `new`.
    pub(crate) fn forget(&mut self, res: &Reservation, off: usize, len: usize) -> io::Result<()> {
        self.check_res(res);
        self.check_pid()?;
        let p = page_size();
        let start = (off / p * p).max(self.off);
        let end = off
            .saturating_add(len)
            .div_ceil(p)
            .saturating_mul(p)
            .min(self.off + self.len);
        if start >= end {
            return Ok(());
        }
        self.uffd.write_protect(self.base + start, end - start)
    }

    fn check_res(&self, res: &Reservation) {
        assert!(
            res.base().addr() == self.base && res.capacity() == self.cap,
            "WriteTracker used with another reservation"
        );
    }

    fn check_pid(&self) -> io::Result<()> {
        if super::fork_generation() == self.forks {
            Ok(())
        } else {
            Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "WriteTracker used in a child process after fork",
            ))
        }
    }
}

/// Checks that `off..off + len` is page aligned and inside `res`.
fn check_range(res: &Reservation, off: usize, len: usize) {
    let p = page_size();
    assert!(
        off % p == 0
            && len % p == 0
            && off
                .checked_add(len)
                .is_some_and(|end| end <= res.capacity()),
        "write-tracking range {off}+{len} not page aligned or outside a reservation of {} bytes",
        res.capacity()
    );
}

/// One `PAGEMAP_SCAN` call with `vec` set to `regions`. It returns how many
/// regions the kernel filled in. It retries on EINTR, which the kernel
/// returns before it changes anything.
fn scan(
    pagemap: BorrowedFd<'_>,
    arg: &mut PmScanArg,
    regions: &mut [PageRegion],
) -> io::Result<usize> {
    arg.vec = regions.as_mut_ptr().addr() as u64;
    arg.vec_len = regions.len() as u64;
    loop {
        // SAFETY: PAGEMAP_SCAN reads one `struct pm_scan_arg` (`size` set to
        // its size, checked by the kernel) and writes back its `walk_end`.
        // It writes at most `vec_len` `struct page_region`s to `vec`, and
        // `vec`/`vec_len` describe the exclusively borrowed `regions` slice,
        // whose element type is the kernel's struct (checked size, plain
        // integers, so any bytes are valid). With PM_SCAN_WP_MATCHING it also
        // sets uffd-wp bits on pages of WP_ASYNC ranges, which never changes
        // memory contents. PM_SCAN_CHECK_WPASYNC makes it fail rather than
        // touch any other VMA.
        let r = unsafe { libc::ioctl(pagemap.as_raw_fd(), req(PAGEMAP_SCAN), &raw mut *arg) };
        match cvt(r) {
            Ok(n) => {
                let n = n as usize;
                assert!(n <= regions.len(), "PAGEMAP_SCAN returned {n} regions");
                return Ok(n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::{FileMap, MapKind, Protection};
    use std::fs::OpenOptions;
    use std::time::Instant;

    struct Fixture {
        _dir: tempfile::TempDir,
        file: File,
        res: Reservation,
    }

    /// A reservation of `cap_pages`, with the first `pages` mapped from a
    /// file of `cap_pages` pages in a fresh directory under `dir_in`.
    fn setup(dir_in: &str, pages: usize, cap_pages: usize, kind: MapKind) -> Fixture {
        let ps = page_size();
        let dir = tempfile::tempdir_in(dir_in).unwrap();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("state"))
            .unwrap();
        file.set_len((cap_pages * ps) as u64).unwrap();
        let mut res = Reservation::new(cap_pages * ps).unwrap();
        res.map_file(
            0,
            pages * ps,
            file.as_fd(),
            0,
            FileMap {
                kind,
                ..FileMap::shared(Protection::ReadWrite)
            },
        )
        .unwrap();
        Fixture {
            _dir: dir,
            file,
            res,
        }
    }

    fn take(t: &mut WriteTracker, res: &Reservation) -> Vec<Range<usize>> {
        let mut v = Vec::new();
        t.take_written(res, &mut v).unwrap();
        v
    }

    /// Byte ranges of whole pages, from `(first page, end page)` pairs.
    fn pages(r: &[(usize, usize)]) -> Vec<Range<usize>> {
        let ps = page_size();
        r.iter().map(|&(a, b)| a * ps..b * ps).collect()
    }

    fn exact_pages(dir_in: &str, kind: MapKind, mode: UffdMode) {
        let ps = page_size();
        let mut fx = setup(dir_in, 16, 32, kind);
        let mut t = WriteTracker::with_mode(&fx.res, 0, 16 * ps, mode).unwrap();
        assert_eq!(take(&mut t, &fx.res), vec![]);

        // Reads fault pages in but are not writes.
        let mut buf = [0u8; 8];
        fx.res.read(5 * ps, &mut buf);
        fx.res.read(3 * ps, &mut buf);
        assert_eq!(take(&mut t, &fx.res), vec![]);

        fx.res.write(3 * ps + 100, b"hello");
        fx.res.write(7 * ps, b"x");
        fx.res.write(11 * ps - 2, b"span"); // pages 10 and 11
        assert_eq!(take(&mut t, &fx.res), pages(&[(3, 4), (7, 8), (10, 12)]));
        assert_eq!(take(&mut t, &fx.res), vec![]);

        fx.res.write(3 * ps + 5, b"again");
        assert_eq!(take(&mut t, &fx.res), pages(&[(3, 4)]));
        assert_eq!(take(&mut t, &fx.res), vec![]);

        // `out` is appended to, and not merged with what was there.
        fx.res.write(0, b"first page");
        #[allow(clippy::single_range_in_vec_init)] // one range already in `out` is the point
        let mut out = vec![0..0];
        t.take_written(&fx.res, &mut out).unwrap();
        assert_eq!(out, vec![0..0, 0..ps]);
    }

    #[test]
    fn private_tmpfs_reports_exactly_the_written_pages() {
        exact_pages("/dev/shm", MapKind::Private, UffdMode::Any);
    }

    #[test]
    fn shared_ext4_reports_exactly_the_written_pages() {
        exact_pages("/tmp", MapKind::Shared, UffdMode::Any);
    }

    #[test]
    fn private_ext4_reports_exactly_the_written_pages() {
        exact_pages("/tmp", MapKind::Private, UffdMode::Any);
    }

    #[test]
    fn user_mode_only_descriptor_reports_exactly_the_written_pages() {
        exact_pages("/dev/shm", MapKind::Private, UffdMode::UserModeOnly);
        exact_pages("/tmp", MapKind::Shared, UffdMode::UserModeOnly);
    }

    /// A store made by the kernel (`pread` into the mapping) is a write
    /// too, also with a `UFFD_USER_MODE_ONLY` descriptor.
    #[test]
    fn kernel_mode_stores_are_reported() {
        let ps = page_size();
        for mode in [UffdMode::Any, UffdMode::UserModeOnly] {
            let fx = setup("/dev/shm", 8, 8, MapKind::Private);
            let mut t = WriteTracker::with_mode(&fx.res, 0, 8 * ps, mode).unwrap();
            let src = tempfile::tempfile_in("/dev/shm").unwrap();
            rustix::io::pwrite(&src, b"from the kernel", 0).unwrap();
            // SAFETY: the destination lies inside page 2 of the reservation,
            // which is mapped read-write by `setup`. No Rust reference points
            // into the reservation, and `fx` outlives the call.
            let n = unsafe {
                libc::pread(
                    src.as_raw_fd(),
                    fx.res.base().wrapping_add(2 * ps).cast(),
                    15,
                    0,
                )
            };
            assert_eq!(n, 15, "{mode:?}: {}", io::Error::last_os_error());
            assert_eq!(take(&mut t, &fx.res), pages(&[(2, 3)]), "{mode:?}");
            let mut buf = [0u8; 15];
            fx.res.read(2 * ps, &mut buf);
            assert_eq!(&buf, b"from the kernel");
        }
    }

    #[test]
    fn tracks_a_range_inside_the_reservation() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 16, 16, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 4 * ps, 8 * ps).unwrap();
        fx.res.write(0, b"outside"); // untracked page
        fx.res.write(4 * ps, b"first tracked page");
        fx.res.write(12 * ps - 1, b"l"); // last tracked page
        assert_eq!(take(&mut t, &fx.res), pages(&[(4, 5), (11, 12)]));
    }

    #[test]
    fn extend_tracks_the_new_pages() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 32, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        fx.res.write(ps, b"pending before extend");

        let fd = fx.file.as_fd();
        fx.res
            .map_file(
                8 * ps,
                8 * ps,
                fd,
                (8 * ps) as u64,
                FileMap {
                    kind: MapKind::Private,
                    ..FileMap::shared(Protection::ReadWrite)
                },
            )
            .unwrap();
        t.extend(&fx.res, 16 * ps).unwrap();
        assert_eq!((t.off, t.len), (0, 16 * ps));
        let mut buf = [0u8; 1];
        fx.res.read(9 * ps, &mut buf); // a read in the new part is no write
        fx.res.write(12 * ps, b"new part");
        fx.res.write(16 * ps - 1, b"z");
        // The write made before `extend` is still reported.
        assert_eq!(take(&mut t, &fx.res), pages(&[(1, 2), (12, 13), (15, 16)]));
        assert_eq!(take(&mut t, &fx.res), vec![]);

        // Shrinking after the tail was returned to reserved space.
        fx.res.unmap(12 * ps, 4 * ps).unwrap();
        t.extend(&fx.res, 12 * ps).unwrap();
        fx.res.write(11 * ps, b"y");
        assert_eq!(take(&mut t, &fx.res), pages(&[(11, 12)]));
    }

    /// A mapping replaced without `extend` is detected rather than missed.
    #[test]
    fn remapping_without_extend_is_an_error() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 8, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        let fd = fx.file.as_fd();
        fx.res
            .map_file(
                2 * ps,
                2 * ps,
                fd,
                (2 * ps) as u64,
                FileMap {
                    kind: MapKind::Private,
                    ..FileMap::shared(Protection::ReadWrite)
                },
            )
            .unwrap();
        fx.res.write(2 * ps, b"unseen");
        let mut out = Vec::new();
        let e = t.take_written(&fx.res, &mut out).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EPERM), "{e}");
        // `extend` with the same length registers the replaced part again.
        // All of it then reads as written (conservative), including page 3,
        // which is not even populated: an empty page-table entry in a
        // registered range reads as written, because the markers set by
        // write-protection are missing.
        t.extend(&fx.res, 8 * ps).unwrap();
        assert_eq!(take(&mut t, &fx.res), pages(&[(2, 4)]));
        assert_eq!(take(&mut t, &fx.res), vec![]);
    }

    /// A written page whose entry is dropped is still reported; a page that
    /// was only read is not.
    #[test]
    fn dropped_written_pages_stay_reported() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 8, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        fx.res.write(ps, b"a");
        let mut buf = [0u8; 1];
        fx.res.read(2 * ps, &mut buf);
        fx.res
            .discard(0, 8 * ps, crate::sys::Discard::DontNeed)
            .unwrap();
        assert_eq!(take(&mut t, &fx.res), pages(&[(1, 2)]));
        assert_eq!(take(&mut t, &fx.res), vec![]);
        fx.res.read(ps, &mut buf);
        assert_eq!(buf, [0], "the private copy was dropped");
        assert_eq!(take(&mut t, &fx.res), vec![]);
    }

    /// `mprotect` round trips (which split and merge VMAs) keep the
    /// registration and the write-protect bits.
    #[test]
    fn mprotect_keeps_tracking() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 8, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        fx.res.write(ps, b"a");
        assert_eq!(take(&mut t, &fx.res), pages(&[(1, 2)]));
        fx.res.protect(0, 4 * ps, Protection::ReadOnly).unwrap();
        assert_eq!(take(&mut t, &fx.res), vec![]);
        fx.res.protect(0, 4 * ps, Protection::ReadWrite).unwrap();
        fx.res.write(2 * ps, b"b");
        assert_eq!(take(&mut t, &fx.res), pages(&[(2, 3)]));
    }

    /// In a child made by `fork`, the tracker refuses to scan (its pagemap
    /// descriptor names the parent's address space); the parent's tracking
    /// is unaffected by the fork and by the child's stores.
    #[test]
    fn fork_child_cannot_scan_and_parent_is_unaffected() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 8, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        fx.res.write(ps, b"before fork");
        // SAFETY: the child only writes into its private copy of the
        // mapping, calls `take_written` (which fails at the fork check after
        // one allocation; glibc's malloc is fork-safe) and leaves with
        // `_exit`, never returning into the test harness.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
        if pid == 0 {
            fx.res.write(5 * ps, b"child");
            let mut out = Vec::new();
            let ok = matches!(
                t.take_written(&fx.res, &mut out),
                Err(e) if e.kind() == io::ErrorKind::Unsupported
            ) && out.is_empty();
            // SAFETY: `_exit` ends the child without running the parent's
            // destructors or atexit handlers.
            unsafe { libc::_exit(i32::from(!ok)) };
        }
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid `c_int`.
        let r = unsafe { libc::waitpid(pid, &raw mut status, 0) };
        assert_eq!(r, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "child status {status:#x}"
        );
        fx.res.write(3 * ps, b"after fork");
        assert_eq!(take(&mut t, &fx.res), pages(&[(1, 2), (3, 4)]));
    }

    #[test]
    fn reset_forgets_pending_writes() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 8, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        fx.res.write(ps, b"a");
        fx.res.write(5 * ps, b"b");
        t.reset(&fx.res).unwrap();
        assert_eq!(take(&mut t, &fx.res), vec![]);
        fx.res.write(5 * ps, b"c");
        assert_eq!(take(&mut t, &fx.res), pages(&[(5, 6)]));
    }

    /// A scan of part of the range reports the writes there and leaves the
    /// others pending for a scan that covers them.
    #[test]
    fn a_scan_of_a_range_leaves_the_writes_elsewhere_pending() {
        let ps = page_size();
        let mut fx = setup("/dev/shm", 8, 8, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, 8 * ps).unwrap();
        fx.res.write(ps, b"a");
        fx.res.write(5 * ps, b"b");
        fx.res.write(6 * ps, b"c");
        let mut out = Vec::new();
        t.take_written_in(&fx.res, 4 * ps..6 * ps, &mut out)
            .unwrap();
        assert_eq!(out, pages(&[(5, 6)]));
        // Clipped to the tracked range.
        out.clear();
        t.take_written_in(&fx.res, 6 * ps..64 * ps, &mut out)
            .unwrap();
        assert_eq!(out, pages(&[(6, 7)]));
        assert_eq!(take(&mut t, &fx.res), pages(&[(1, 2)]));
    }

    /// More regions than one `PAGEMAP_SCAN` buffer holds: the loop continues
    /// at `walk_end`, and nothing is lost or reported twice.
    #[test]
    fn more_regions_than_the_buffer_holds() {
        let ps = page_size();
        let n = 3 * REGIONS; // 1.5 × REGIONS written regions
        let mut fx = setup("/dev/shm", n, n, MapKind::Private);
        let mut t = WriteTracker::new(&fx.res, 0, n * ps).unwrap();
        for p in (0..n).step_by(2) {
            fx.res.write(p * ps, b"w");
        }
        // A run of pages that straddles a buffer boundary (region 1024
        // would be page 2048) is one range.
        for p in 2000..2100 {
            fx.res.write(p * ps, b"w");
        }
        let mut want: Vec<(usize, usize)> = (0..2000).step_by(2).map(|p| (p, p + 1)).collect();
        want.push((2000, 2101));
        want.extend((2102..n).step_by(2).map(|p| (p, p + 1)));
        let got = take(&mut t, &fx.res);
        assert!(
            got == pages(&want),
            "{} ranges, expected {}",
            got.len(),
            want.len()
        );
        assert_eq!(take(&mut t, &fx.res), vec![]);
    }

    #[test]
    #[should_panic(expected = "not page aligned")]
    fn unaligned_range_panics() {
        let fx = setup("/dev/shm", 4, 4, MapKind::Private);
        let _ = WriteTracker::new(&fx.res, 1, page_size());
    }

    #[test]
    #[should_panic(expected = "outside a reservation")]
    fn range_outside_the_reservation_panics() {
        let fx = setup("/dev/shm", 4, 4, MapKind::Private);
        let _ = WriteTracker::new(&fx.res, 0, 5 * page_size());
    }

    /// Timing sanity print (not an assertion): scan cost on 64 MiB with 1 %
    /// of the pages written between scans, all pages present. Prints the
    /// median and the minimum of 50 rounds (the machine is shared).
    #[test]
    fn scan_cost_64mib() {
        let ps = page_size();
        let n = (64 << 20) / ps;
        let mut fx = setup("/dev/shm", n, n, MapKind::Private);
        for p in 0..n {
            fx.res.write(p * ps, &[1]); // populate: every page a private copy
        }
        let mut t = WriteTracker::new(&fx.res, 0, n * ps).unwrap();
        let mut out = Vec::with_capacity(n);
        let per_round = n / 100;
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let (mut busy, mut idle) = (Vec::new(), Vec::new());
        for _ in 0..50 {
            let mut written = std::collections::BTreeSet::new();
            while written.len() < per_round {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                written.insert((x % n as u64) as usize);
            }
            for &p in &written {
                fx.res.write(p * ps + 8, &[2]);
            }
            out.clear();
            let t0 = Instant::now();
            t.take_written(&fx.res, &mut out).unwrap();
            busy.push(t0.elapsed().as_nanos());
            let reported = out.iter().map(|r| (r.end - r.start) / ps).sum::<usize>();
            assert_eq!(reported, per_round);
            out.clear();
            let t0 = Instant::now();
            t.take_written(&fx.res, &mut out).unwrap();
            idle.push(t0.elapsed().as_nanos());
            assert!(out.is_empty());
        }
        busy.sort_unstable();
        idle.sort_unstable();
        let us = |ns: u128| ns as f64 / 1000.0;
        eprintln!(
            "uffd scan, 64 MiB private tmpfs mapping, all present: take_written with 1 % \
             written ({per_round} pages): median {:.1} µs, min {:.1} µs; nothing written: \
             median {:.1} µs, min {:.1} µs",
            us(busy[busy.len() / 2]),
            us(busy[0]),
            us(idle[idle.len() / 2]),
            us(idle[0]),
        );
    }
}
