//! Extend-on-write: mappings that grow from the SIGSEGV/SIGBUS handler.
//!
//! A growable region is a [`Reservation`] whose first `mapped` bytes map a
//! file; the rest up to `limit` (the maximum size) is `PROT_NONE`, followed
//! by a guard up to the reservation's end. A load or store in
//! `mapped..limit` faults; the handler finds the region in a lock-free
//! table, `fallocate`s the file (only what lies past its end), maps the next
//! chunk `MAP_FIXED`, and returns: the access is made again and proceeds.
//! Faults anywhere else are passed to the disposition that was there before
//! (the default action, with its core dump, or the previous handler).
//!
//! When growth fails (a full disk, a quota, a file size limit) or an access
//! lands in the guard past `limit`, the handler maps anonymous *scratch*
//! pages over the faulting page instead, so the store completes and the
//! program does not crash, and records the failure. The owner reads it
//! ([`Growth::failure`]), reports it as an error, and drops the scratch
//! pages ([`Growth::clear_failure`]). Nothing stored in scratch reaches the
//! file.
//!
//! # The table
//!
//! `SLOTS` holds a pointer to each registered region's [`GrowState`] and a
//! count of handlers using it. A handler increments the count, then loads
//! the pointer; [`Growth`]'s drop nulls the pointer, then waits for the count
//! to reach 0 before freeing the state (all `SeqCst`: a handler that saw the
//! pointer incremented the count before the drop looked at it).
//!
//! # Growth
//!
//! One growth at a time per region, under a spin lock (`lock`) that the
//! owner's own growth and shrink calls take too. The lock is only held
//! around system calls, never while touching the region's bytes, so a
//! thread holding it cannot fault into the region. A handler that finds the
//! page mapped already (another thread grew it) just returns; if the same
//! thread faults again at the same address, the fault was not a growth (a
//! store into a read-only mapping, say) and is passed on.
//!
//! With a write tracker (the writer's view), a grown range is mapped
//! `PROT_NONE`, registered and write-protected with the tracker's
//! userfaultfd, and only then opened: a store by another thread in between
//! would otherwise land in a page the write-protection then hides from the
//! next scan. A `Mapping` prefaults each grown chunk writable
//! (`MADV_POPULATE_WRITE`): one system call per chunk, not a fault per page.
//!
//! Chunks adapt to the rate of growth: a growth less than 50 ms after the
//! previous one doubles the chunk (up to `CHUNK_MAX`, and at most an eighth
//! of what is mapped), a slower one halves it (down to `CHUNK_MIN`). If the
//! chunk cannot be allocated, the handler retries with just the faulting
//! page before giving up.
//!
//! # Async-signal safety
//!
//! The handler uses atomics, a const-initialised thread-local `Cell` (no
//! lazy initialisation, no destructor), and the system calls `fstat`,
//! `fallocate`, `mmap`, `mprotect`, `madvise`, `ioctl` (userfaultfd),
//! `sched_yield`, `clock_gettime` and `sigaction`. It saves and restores `errno`, never
//! allocates, never takes a lock that a non-handler path holds while it could
//! be interrupted by a fault in the region, and never panics.

use std::cell::Cell;
use std::ffi::{c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr;
use std::sync::Once;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicI32, AtomicPtr, AtomicU32, AtomicU64, AtomicUsize};

use rustix::mm::{MapFlags, ProtFlags};

use super::mem::{MapKind, Reservation};
use super::signals::{call_previous, get_action, set_action};

/// Growth chunks: 1 MiB first, doubled while growths come quickly, up to
/// 64 MiB (and at most an eighth of what is mapped, and the region's
/// `Spec::max_chunk`).
pub(crate) const CHUNK_MIN: usize = 1 << 20;
pub(crate) const CHUNK_MAX: usize = 64 << 20;

/// Address space a growable region reserves past its maximum size: an
/// access there is a growth failure (`Failure::errno` 0, the caller's
/// `PastMaximum`), not a crash: writable regions reserve `limit + GUARD`.
pub(crate) const GUARD: usize = 1 << 20;

/// Registered growable regions, at most this many at once in a process.
const SLOTS_N: usize = 1024;

struct Slot {
    state: AtomicPtr<GrowState>,
    users: AtomicUsize,
}

static SLOTS: [Slot; SLOTS_N] = [const {
    Slot {
        state: AtomicPtr::new(ptr::null_mut()),
        users: AtomicUsize::new(0),
    }
}; SLOTS_N];

static INSTALL: Once = Once::new();
/// The dispositions of SIGSEGV and SIGBUS found at installation (or at
/// `reinstall`): leaked boxes, never freed.
static PREV: [AtomicPtr<libc::sigaction>; 2] = [
    AtomicPtr::new(ptr::null_mut()),
    AtomicPtr::new(ptr::null_mut()),
];

thread_local! {
    /// The last address this thread's handler let retry.
    static LAST_RETRY: Cell<usize> = const { Cell::new(0) };
}

/// Why growth failed (stores since then landed in scratch pages).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The errno of `fallocate`/`mmap`, or 0 for an access past the maximum size.
    pub(crate) errno: i32,
    /// The byte offset (from the region's start) of the access that needed the growth.
    pub(crate) offset: usize,
    /// The length the region needed for it (page rounded).
    pub(crate) wanted: usize,
}

/// How a region grows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spec {
    /// Offset in the file of the reservation's first byte.
    pub(crate) file_off: u64,
    /// `MapKind::Shared` or `MapKind::Private`.
    pub(crate) kind: MapKind,
    /// Writable (grows the file) or read-only (follows the file's size).
    pub(crate) writable: bool,
    /// The maximum size: growth never maps past it (page multiple).
    pub(crate) limit: usize,
    /// Bytes already mapped by the owner (page multiple).
    pub(crate) mapped: usize,
    /// Prefault each grown chunk writable (`MADV_POPULATE_WRITE`) before
    /// the access retries: one system call per chunk instead of a page
    /// fault per page (first-touch p99 0.9 µs instead of 14 µs in the
    /// `grow` bench). Shared file mappings only: in a private one every page
    /// would become a private copy and look written.
    pub(crate) prefault: bool,
    /// The largest chunk one growth maps (at least `CHUNK_MIN`). The
    /// writer's view keeps it at `CHUNK_MIN`: a commit of free stores
    /// looks at every page from where the transaction handed the view out
    /// to its mapped end, so a chunk mapped far ahead of an append is
    /// looked at by every commit until the state reaches it.
    pub(crate) max_chunk: usize,
}

struct GrowState {
    base: usize,
    /// Reservation end, relative to `base` (`limit` plus the guard).
    end: usize,
    fd: RawFd,
    spec: Spec,
    mapped: AtomicUsize,
    lock: AtomicU32,
    chunk: AtomicUsize,
    last_ns: AtomicU64,
    /// The write tracker's userfaultfd, or -1.
    uffd: AtomicI32,
    /// Set when registering a grown range with the tracker failed.
    uffd_lost: AtomicU32,
    /// `Failure` fields; `failed` is set last (release) and read first.
    failed: AtomicU32,
    errno: AtomicI32,
    fail_off: AtomicUsize,
    fail_want: AtomicUsize,
}

/// A registered growable region; dropping it unregisters it (waiting for
/// any handler still using it). It must be dropped before the reservation
/// and the file descriptor it was registered with.
pub(crate) struct Growth {
    st: *mut GrowState,
    slot: usize,
}

// SAFETY: `GrowState` is only atomics and plain values written before it
// is published; it is freed only by `Drop`, after every user is gone.
unsafe impl Send for Growth {}
// SAFETY: as for `Send`: every shared access goes through atomics.
unsafe impl Sync for Growth {}

impl std::fmt::Debug for Growth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.state();
        f.debug_struct("Growth")
            .field("base", &(s.base as *const u8))
            .field("mapped", &s.mapped.load(Relaxed))
            .field("limit", &s.spec.limit)
            .finish_non_exhaustive()
    }
}

impl Growth {
    /// Registers `res` as growable: faults in `spec.mapped..spec.limit` map
    /// more of `fd`; faults in `spec.limit..res.capacity()` are failures.
    ///
    /// The caller keeps `fd` open and `res` alive until this value is
    /// dropped, and maps nothing in `spec.mapped..res.capacity()` itself
    /// except through [`Growth::grow_to`] and [`Growth::shrink_to`].
    pub(crate) fn register(res: &Reservation, fd: BorrowedFd<'_>, spec: Spec) -> io::Result<Self> {
        let p = super::page_size();
        assert!(
            spec.limit % p == 0
                && spec.mapped % p == 0
                && spec.mapped <= spec.limit
                && spec.limit <= res.capacity(),
            "bad growth spec {spec:?}"
        );
        install();
        let st = Box::into_raw(Box::new(GrowState {
            base: res.base().addr(),
            end: res.capacity(),
            fd: fd.as_raw_fd(),
            spec,
            mapped: AtomicUsize::new(spec.mapped),
            lock: AtomicU32::new(0),
            chunk: AtomicUsize::new(CHUNK_MIN),
            last_ns: AtomicU64::new(0),
            uffd: AtomicI32::new(-1),
            uffd_lost: AtomicU32::new(0),
            failed: AtomicU32::new(0),
            errno: AtomicI32::new(0),
            fail_off: AtomicUsize::new(0),
            fail_want: AtomicUsize::new(0),
        }));
        for (i, s) in SLOTS.iter().enumerate() {
            if s.state
                .compare_exchange(ptr::null_mut(), st, SeqCst, Relaxed)
                .is_ok()
            {
                return Ok(Self { st, slot: i });
            }
        }
        // SAFETY: `st` came from `Box::into_raw` just above and was never
        // published.
        drop(unsafe { Box::from_raw(st) });
        Err(io::Error::other(format!(
            "too many growable regions in this process (at most {SLOTS_N})"
        )))
    }

    fn state(&self) -> &GrowState {
        // SAFETY: `st` stays valid until `Drop` frees it, which needs `self`.
        unsafe { &*self.st }
    }

    /// Bytes mapped from the region's start.
    pub(crate) fn mapped(&self) -> usize {
        self.state().mapped.load(Acquire)
    }

    /// Maps the region up to at least `want` bytes (page rounded, at most
    /// the limit), allocating the file first. Errors leave the region as it
    /// was.
    pub(crate) fn grow_to(&self, want: usize) -> io::Result<()> {
        let s = self.state();
        let want = super::page_round_up(want)
            .filter(|&w| w <= s.spec.limit)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EFBIG))?;
        let _g = s.locked();
        let mapped = s.mapped.load(Relaxed);
        if want <= mapped {
            return Ok(());
        }
        s.extend(mapped, want)
    }

    /// Returns the region past `len` (page rounded up) to `PROT_NONE`.
    /// The caller holds no borrow into that part (it has `&mut` on the
    /// reservation's owner).
    pub(crate) fn shrink_to(&self, len: usize) -> io::Result<()> {
        let s = self.state();
        let len = super::page_round_up(len).unwrap_or(usize::MAX);
        let _g = s.locked();
        let mapped = s.mapped.load(Relaxed);
        if len >= mapped {
            return Ok(());
        }
        s.reserve(len, mapped - len)?;
        s.mapped.store(len, Release);
        Ok(())
    }

    /// The failure recorded since the last [`Growth::clear_failure`], if any.
    pub(crate) fn failure(&self) -> Option<Failure> {
        let s = self.state();
        (s.failed.load(Acquire) != 0).then(|| Failure {
            errno: s.errno.load(Relaxed),
            offset: s.fail_off.load(Relaxed),
            wanted: s.fail_want.load(Relaxed),
        })
    }

    /// Drops every scratch page (they read as the file again, or fault and
    /// grow) and forgets the failure. The caller holds no borrow into the
    /// region past `mapped`.
    pub(crate) fn clear_failure(&self) -> io::Result<()> {
        let s = self.state();
        let _g = s.locked();
        if s.failed.load(Acquire) == 0 {
            return Ok(());
        }
        let mapped = s.mapped.load(Relaxed);
        s.reserve(mapped, s.end - mapped)?;
        s.failed.store(0, Release);
        Ok(())
    }

    /// Runs `f(mapped)` with the growth lock held and publishes the
    /// userfaultfd it returns (or withdraws it with `None`): from then on
    /// every grown range is registered and write-protected with it before
    /// the faulting access retries. A tracker must be created, and dropped,
    /// inside `f`, so no growth falls between it and its publication.
    pub(crate) fn set_tracker<T>(&self, f: impl FnOnce(usize) -> (Option<RawFd>, T)) -> T {
        let s = self.state();
        let _g = s.locked();
        let (fd, r) = f(s.mapped.load(Relaxed));
        s.uffd.store(fd.unwrap_or(-1), Relaxed);
        s.uffd_lost.store(0, Relaxed);
        r
    }

    /// Whether registering a grown range with the tracker failed since the
    /// last call (clears the flag).
    pub(crate) fn take_tracker_lost(&self) -> bool {
        self.state().uffd_lost.swap(0, Relaxed) != 0
    }
}

impl Drop for Growth {
    fn drop(&mut self) {
        let slot = &SLOTS[self.slot];
        slot.state.store(ptr::null_mut(), SeqCst);
        while slot.users.load(SeqCst) != 0 {
            std::thread::yield_now();
        }
        // SAFETY: unpublished above, and no handler uses it any more (module
        // docs, "The table"); `st` came from `Box::into_raw` in `register`.
        drop(unsafe { Box::from_raw(self.st) });
    }
}

struct LockGuard<'a>(&'a AtomicU32);

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.0.store(0, Release);
    }
}

impl GrowState {
    fn locked(&self) -> LockGuard<'_> {
        while self
            .lock
            .compare_exchange_weak(0, 1, Acquire, Relaxed)
            .is_err()
        {
            rustix::thread::sched_yield();
        }
        LockGuard(&self.lock)
    }

    /// Maps `from..to` (relative to `base`) of the file, allocating it
    /// first. Called with the lock held, `from == mapped`.
    fn extend(&self, from: usize, to: usize) -> io::Result<()> {
        let sp = &self.spec;
        // SAFETY: `fd` is open while the region is registered (`register`'s contract).
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        let size = rustix::fs::fstat(fd)?.st_size as u64;
        let need = sp.file_off + to as u64;
        let mut to = to;
        if need > size && !sp.writable {
            // A reader follows the file: map what exists (a partial last
            // page reads as zeros past the end).
            let have =
                (size.saturating_sub(sp.file_off) as usize).next_multiple_of(super::page_size());
            if have <= from {
                return Err(io::Error::from_raw_os_error(libc::ENXIO));
            }
            to = to.min(have);
        } else if need > size {
            let start = size.max(sp.file_off + from as u64);
            rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), start, need - start)?;
        }
        let mut flags = MapFlags::FIXED;
        flags |= if matches!(sp.kind, MapKind::Private) {
            MapFlags::PRIVATE
        } else {
            MapFlags::SHARED
        };
        let prot = if sp.writable {
            ProtFlags::READ | ProtFlags::WRITE
        } else {
            ProtFlags::READ
        };
        let addr = (self.base + from) as *mut c_void;
        let uffd = self.uffd.load(Relaxed);
        // With a write tracker, the range is mapped inaccessible first and
        // opened only once registered and write-protected: another thread
        // storing there meanwhile faults and waits for the lock, instead of
        // storing into a page the write-protection would then hide.
        let first = if uffd >= 0 { ProtFlags::empty() } else { prot };
        // SAFETY: `from..to` lies inside the reservation past `mapped`
        // (checked by the callers), a `PROT_NONE` part no Rust code has
        // read or written: any access to it faults into this handler, which
        // maps it first. MAP_FIXED replaces exactly that range. The module
        // docs and docs/SOUNDNESS.md give the whole argument.
        unsafe { rustix::mm::mmap(addr, to - from, first, flags, fd, sp.file_off + from as u64) }?;
        if uffd >= 0 {
            if super::uffd::track_grown(uffd, self.base + from, to - from).is_err() {
                self.uffd_lost.store(1, Relaxed);
            }
            // SAFETY: the range just mapped (above); opening it changes no
            // contents.
            let opened = unsafe { rustix::mm::mprotect(addr, to - from, mprotect_flags(prot)) };
            if let Err(e) = opened {
                let _ = self.reserve(from, to - from);
                return Err(e.into());
            }
        }
        if sp.prefault {
            // SAFETY: the range just mapped read-write; prefaulting it
            // changes no contents. A failure (no memory) only leaves the
            // faults to the stores.
            let _ = unsafe {
                rustix::mm::madvise(addr, to - from, rustix::mm::Advice::LinuxPopulateWrite)
            };
        }
        self.mapped.store(to, Release);
        Ok(())
    }

    /// Returns `off..off + len` to reserved `PROT_NONE` address space.
    fn reserve(&self, off: usize, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        // SAFETY: inside our reservation, past every byte the owner may
        // borrow (its callers' contracts); replacing it drops the mapping.
        unsafe {
            rustix::mm::mmap_anonymous(
                (self.base + off) as *mut c_void,
                len,
                ProtFlags::empty(),
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED,
            )
        }?;
        Ok(())
    }

    /// Maps anonymous read-write scratch pages over `off..off + len`.
    fn scratch(&self, off: usize, len: usize) -> bool {
        // SAFETY: as in `extend`: a `PROT_NONE` part of the reservation past
        // `mapped` (or its guard), which no Rust code has accessed.
        unsafe {
            rustix::mm::mmap_anonymous(
                (self.base + off) as *mut c_void,
                len,
                ProtFlags::READ | ProtFlags::WRITE,
                MapFlags::PRIVATE | MapFlags::NORESERVE | MapFlags::FIXED,
            )
        }
        .is_ok()
    }

    fn fail(&self, errno: i32, off: usize, want: usize) {
        if self.failed.load(Relaxed) == 0 {
            self.errno.store(errno, Relaxed);
            self.fail_off.store(off, Relaxed);
            self.fail_want.store(want, Relaxed);
            self.failed.store(1, Release);
        }
    }

    /// The next chunk size, adapted to the time since the last growth.
    fn next_chunk(&self, mapped: usize) -> usize {
        let now = now_ns();
        let last = self.last_ns.swap(now, Relaxed);
        let c = self.chunk.load(Relaxed);
        let c = if last != 0 && now.saturating_sub(last) < 50_000_000 {
            (c * 2)
                .min(CHUNK_MAX)
                .min(self.spec.max_chunk.max(CHUNK_MIN))
        } else {
            (c / 2).max(CHUNK_MIN)
        };
        let c = c.min((mapped / 8).max(CHUNK_MIN));
        let c = c & !(super::page_size() - 1);
        self.chunk.store(c, Relaxed);
        c.max(super::page_size())
    }

    /// The handler's work for a fault at `off` (relative to `base`, inside
    /// the reservation). Returns whether the access may retry.
    fn handle(&self, off: usize) -> bool {
        let p = super::page_size();
        let page = off & !(p - 1);
        if off < self.mapped.load(Acquire) {
            // Another thread grew it: retry once. The same address again
            // means this was no growth fault.
            return LAST_RETRY.with(|l| l.replace(off) != off);
        }
        let _g = self.locked();
        let mapped = self.mapped.load(Relaxed);
        if off < mapped {
            return LAST_RETRY.with(|l| l.replace(off) != off);
        }
        LAST_RETRY.with(|l| l.set(off));
        let sp = &self.spec;
        if self.failed.load(Relaxed) == 0 && off < sp.limit {
            let chunk = self.next_chunk(mapped);
            let full = (mapped + chunk).max(page + p).min(sp.limit);
            let full = full.next_multiple_of(p).min(sp.limit);
            match self.extend(mapped, full) {
                Ok(()) => return true,
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    if !sp.writable && errno == libc::ENXIO {
                        // A read past the end of a file this region may not
                        // grow: not ours to handle.
                        return false;
                    }
                    // Retry with just what this access needs.
                    if full > page + p && self.extend(mapped, page + p).is_ok() {
                        return true;
                    }
                    self.fail(errno, off, page + p);
                }
            }
        } else if off >= sp.limit {
            self.fail(0, off, page + p);
        }
        if !self.spec.writable {
            return false;
        }
        // Scratch: the store completes, nothing reaches the file.
        let len = (16 * p).min(self.end - page);
        self.scratch(page, len)
    }
}

fn mprotect_flags(prot: ProtFlags) -> rustix::mm::MprotectFlags {
    rustix::mm::MprotectFlags::from_bits_truncate(prot.bits())
}

fn now_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn install() {
    INSTALL.call_once(put_in_front);
}

/// The address of `on_fault` as a `sighandler_t`.
fn handler() -> libc::sighandler_t {
    on_fault as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
}

/// Installs the handler for SIGSEGV and SIGBUS, keeping the disposition
/// each had (unless it is already this handler) as the one faults outside
/// every region, and signals sent by processes, go to.
fn put_in_front() {
    for (i, sig) in [libc::SIGSEGV, libc::SIGBUS].into_iter().enumerate() {
        let prev = get_action(sig).unwrap_or_else(|| {
            // SAFETY: all-zero bytes are a valid `sigaction` (SIG_DFL).
            unsafe { std::mem::zeroed() }
        });
        if prev.sa_sigaction == handler() {
            continue;
        }
        // Leaked: a handler may be reading the previous one right now; a
        // disposition is a few dozen bytes, replaced only by the rare
        // `reinstall`.
        PREV[i].store(Box::into_raw(Box::new(prev)), SeqCst);
        set_action(
            sig,
            handler(),
            libc::SA_SIGINFO | libc::SA_ONSTACK | libc::SA_RESTART,
        );
    }
}

/// Puts the growth handler back in front of SIGSEGV and SIGBUS after the
/// program installed handlers of its own: theirs become the ones that faults
/// outside mapstate's regions (and signals sent by processes) go to. Only
/// if a region was ever registered (else there is nothing to handle).
pub(crate) fn reinstall() {
    if INSTALL.is_completed() {
        put_in_front();
    }
}

extern "C" fn on_fault(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let errno = io::Error::last_os_error().raw_os_error().unwrap_or(0);
    // SAFETY: the kernel passes a valid `siginfo_t` to a SA_SIGINFO handler.
    let info_ref = unsafe { &*info };
    // SAFETY: for SIGSEGV and SIGBUS the union holds the fault fields, and
    // `si_addr` is the faulting address.
    let addr = unsafe { info_ref.si_addr() }.addr();
    // A signal another process (or `kill`, `raise`) sent, not a fault: there
    // is no access to make again, so it must not be taken for a growth.
    let sent = info_ref.si_code <= 0;
    if sent || !handled(addr) {
        let i = usize::from(sig == libc::SIGBUS);
        let prev = PREV[i].load(SeqCst);
        // SAFETY: set before the handler was installed, never freed.
        let prev = (!prev.is_null()).then(|| unsafe { &*prev });
        match prev {
            Some(prev)
                if prev.sa_sigaction != libc::SIG_DFL && prev.sa_sigaction != libc::SIG_IGN =>
            {
                call_previous(prev, sig, info, ctx);
            }
            // Ignored before mapstate came: a sent one stays ignored (a fault
            // is fatal anyway).
            Some(prev) if sent && prev.sa_sigaction == libc::SIG_IGN => {}
            // The default action: restore it. A fault is made again when
            // the handler returns, a sent signal is raised again (blocked
            // until then), and the kernel acts as if mapstate were not
            // there (core dump included).
            _ => {
                set_action(sig, libc::SIG_DFL, 0);
                if sent {
                    super::signals::raise(sig);
                }
            }
        }
    }
    super::signals::set_errno(errno);
}

/// Finds the region holding `addr` and lets it handle the fault.
fn handled(addr: usize) -> bool {
    for slot in &SLOTS {
        if slot.state.load(Relaxed).is_null() {
            continue;
        }
        slot.users.fetch_add(1, SeqCst);
        let p = slot.state.load(SeqCst);
        // SAFETY: non-null and counted in `users`, so not freed (module docs).
        let hit = (!p.is_null()).then(|| unsafe { &*p }).and_then(|s| {
            let off = addr.wrapping_sub(s.base);
            (addr >= s.base && off < s.end).then(|| s.handle(off))
        });
        slot.users.fetch_sub(1, SeqCst);
        if let Some(ok) = hit {
            return ok;
        }
    }
    false
}
