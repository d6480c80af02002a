//! The one place where mapstate talks to the kernel.
//!
//! # Safety
//!
//! Every `unsafe` block of the crate lives below this module; the rest of the
//! crate is safe code (`unsafe_code` is denied at the crate root and allowed
//! again only here). Each block carries a `// SAFETY:` argument.
//!
//! Two kinds of calls live here:
//! - thin wrappers over rustix (and libc where rustix has no wrapper, such as
//!   OFD locks), which are safe because they only touch file descriptors;
//! - [`Reservation`], the owner of a range of address space, which is the only
//!   type that creates, replaces or reads mappings. Its soundness argument is
//!   in `docs/SOUNDNESS.md`: the reservation owns its range for its whole
//!   life, replaces parts of it only through `&mut self` (so no borrow of the
//!   bytes can be alive), and reads and writes mapped bytes only by copying
//!   through raw pointers or through atomics, never by handing out references
//!   to memory that another process may change.
#![allow(unsafe_code)]

pub(crate) mod grow;
mod mem;
pub(crate) mod signals;
pub(crate) mod uffd;

pub use mem::{Advice, Discard, Flush, Protection};
pub(crate) use mem::{FileMap, MapKind, Reservation};

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// The system page size (4 KiB on x86-64).
pub(crate) fn page_size() -> usize {
    rustix::param::page_size()
}

/// Rounds `n` up to a multiple of the page size, or `None` on overflow.
pub(crate) fn page_round_up(n: usize) -> Option<usize> {
    let p = page_size();
    n.checked_add(p - 1).map(|v| v & !(p - 1))
}

/// Rounds `n` down to a multiple of the page size.
pub(crate) fn page_round_down(n: usize) -> usize {
    n & !(page_size() - 1)
}

/// `fallocate(fd, 0, offset, len)`: allocates blocks so that later stores
/// through a mapping can never hit ENOSPC (which would be a SIGBUS).
pub(crate) fn fallocate(fd: BorrowedFd<'_>, offset: u64, len: u64) -> io::Result<()> {
    rustix::fs::fallocate(fd, rustix::fs::FallocateFlags::empty(), offset, len).map_err(Into::into)
}

/// The data segments of a file within `from..to`, in order, by
/// `lseek(SEEK_DATA)`/`lseek(SEEK_HOLE)`. A filesystem that does not
/// report holes gives one segment for everything.
pub(crate) fn data_segments(fd: BorrowedFd<'_>, from: u64, to: u64) -> io::Result<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut off = from;
    while off < to {
        let start = match seek(fd, SeekFrom::Data(off)) {
            Ok(s) => s,
            Err(rustix::io::Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if start >= to {
            break;
        }
        let end = seek(fd, SeekFrom::Hole(start))?.min(to);
        out.push((start, end));
        off = end;
    }
    Ok(out)
}

/// `lseek(fd, from, SEEK_HOLE)`: the start of the first hole at or after
/// `from` (the file's end if none). On ext4, allocated but unwritten
/// blocks count as a hole unless the page cache holds data for them.
pub(crate) fn next_hole(fd: BorrowedFd<'_>, from: u64) -> io::Result<u64> {
    rustix::fs::seek(fd, rustix::fs::SeekFrom::Hole(from)).map_err(Into::into)
}

/// `linkat(AT_FDCWD, "/proc/self/fd/FD", AT_FDCWD, path, AT_SYMLINK_FOLLOW)`:
/// gives the open file `fd` (an `O_TMPFILE` file, say) the name `path`;
/// EEXIST if something has that name. Through `/proc` because linking by
/// descriptor (`AT_EMPTY_PATH`) needs `CAP_DAC_READ_SEARCH`.
pub(crate) fn link_fd(fd: BorrowedFd<'_>, path: &std::path::Path) -> io::Result<()> {
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rustix::fs::linkat(
        rustix::fs::CWD,
        proc_path.as_str(),
        rustix::fs::CWD,
        path,
        rustix::fs::AtFlags::SYMLINK_FOLLOW,
    )
    .map_err(Into::into)
}

/// `ftruncate(fd, len)`.
pub(crate) fn ftruncate(fd: BorrowedFd<'_>, len: u64) -> io::Result<()> {
    rustix::fs::ftruncate(fd, len).map_err(Into::into)
}

/// Copies `len` bytes from `from` at `from_off` to `to` at `to_off` inside
/// the kernel (`copy_file_range`, looping over short copies); an early end
/// of `from` is `UnexpectedEof`.
pub(crate) fn copy_range(
    from: BorrowedFd<'_>,
    mut from_off: u64,
    to: BorrowedFd<'_>,
    mut to_off: u64,
    len: u64,
) -> io::Result<()> {
    let end = from_off + len;
    while from_off < end {
        let chunk = (end - from_off).min(1 << 30) as usize;
        let n =
            rustix::fs::copy_file_range(from, Some(&mut from_off), to, Some(&mut to_off), chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
    Ok(())
}

/// `fdatasync(fd)`.
pub(crate) fn fdatasync(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync_hooks::around(fd, || rustix::fs::fdatasync(fd).map_err(Into::into))
}

/// `fsync(fd)`: also used on directories after creating or renaming files.
pub(crate) fn fsync(fd: BorrowedFd<'_>) -> io::Result<()> {
    sync_hooks::around(fd, || rustix::fs::fsync(fd).map_err(Into::into))
}

/// Test hooks around every sync (the `testing` feature): a failure injector (the n-th sync fails
/// with EIO, as a dying disk would) and an observer called before and after
/// each sync (the power-cut model test keeps the synced and the written
/// bytes of each file apart with it). Unarmed, a hook costs one relaxed load.
#[cfg(feature = "testing")]
pub(crate) mod sync_hooks {
    use std::io;
    use std::os::fd::{AsRawFd, BorrowedFd};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

    /// Called with the descriptor and `true` before, `false` after a sync.
    pub(crate) type Observer = Box<dyn FnMut(i32, bool) + Send>;

    static ARMED: AtomicBool = AtomicBool::new(false);
    static FAIL_AFTER: AtomicU64 = AtomicU64::new(u64::MAX);
    static OBSERVER: Mutex<Option<Observer>> = Mutex::new(None);

    /// Makes every sync after the next `n` successful ones fail with EIO.
    pub(crate) fn fail_after(n: u64) {
        FAIL_AFTER.store(n, Ordering::SeqCst);
        ARMED.store(true, Ordering::SeqCst);
    }

    /// Installs (or with `None` removes) the observer.
    pub(crate) fn observe(f: Option<Observer>) {
        let on = f.is_some();
        *OBSERVER
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = f;
        ARMED.store(
            on || FAIL_AFTER.load(Ordering::SeqCst) != u64::MAX,
            Ordering::SeqCst,
        );
    }

    /// Removes every hook.
    pub(crate) fn disarm() {
        FAIL_AFTER.store(u64::MAX, Ordering::SeqCst);
        observe(None);
    }

    pub(super) fn around(
        fd: BorrowedFd<'_>,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        if !ARMED.load(Ordering::Relaxed) {
            return sync();
        }
        let call = |before: bool| {
            if let Some(f) = OBSERVER
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .as_mut()
            {
                f(fd.as_raw_fd(), before);
            }
        };
        call(true);
        let left = FAIL_AFTER.load(Ordering::SeqCst);
        if left != u64::MAX {
            if left == 0 {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            }
            FAIL_AFTER.store(left - 1, Ordering::SeqCst);
        }
        let r = sync();
        call(false);
        r
    }
}

/// Without the `testing` feature a sync is just the sync.
#[cfg(not(feature = "testing"))]
mod sync_hooks {
    use std::io;
    use std::os::fd::BorrowedFd;

    #[inline]
    pub(super) fn around(
        _fd: BorrowedFd<'_>,
        sync: impl FnOnce() -> io::Result<()>,
    ) -> io::Result<()> {
        sync()
    }
}

/// `fstatfs(fd)`: the filesystem's magic number (`f_type`).
pub(crate) fn statfs_magic(fd: BorrowedFd<'_>) -> io::Result<i64> {
    let st = rustix::fs::fstatfs(fd)?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets
    Ok(st.f_type as i64)
}

/// The soft and hard `RLIMIT_MEMLOCK` of this process, in bytes (`None`: unlimited).
pub(crate) fn memlock_limit() -> (Option<u64>, Option<u64>) {
    let l = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    (l.current, l.maximum)
}

/// The outcome of trying to take an OFD lock without waiting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LockResult {
    Acquired,
    WouldBlock,
}

/// An OFD lock's kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LockKind {
    /// `F_RDLCK`: any process that may read the file can take one.
    Shared,
    /// `F_WRLCK`: only a process that opened the file for writing can.
    Exclusive,
}

/// `fcntl(fd, F_OFD_SETLK, {F_WRLCK, SEEK_SET, start, len})`: tries to take
/// an exclusive open-file-description lock on a byte range. The kernel
/// drops it when the last descriptor of the open file description is
/// closed, including when the holder dies, so it never outlives its owner.
/// Two opens of the same file in one process conflict (unlike classic POSIX
/// locks), which is what a single-writer rule needs. There is no waiting
/// variant: a wait on a lock must look at who holds it (see
/// `store::lock`), since a shared lock can be taken by anyone who may read.
pub(crate) fn ofd_try_lock_exclusive(
    fd: BorrowedFd<'_>,
    start: u64,
    len: u64,
) -> io::Result<LockResult> {
    let fl = flock_struct(libc::F_WRLCK, start, len)?;
    loop {
        // SAFETY: F_OFD_SETLK reads one `struct flock`; `fl` is a valid
        // `flock` that outlives the call.
        let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
        if r != -1 {
            return Ok(LockResult::Acquired);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EAGAIN | libc::EACCES) => return Ok(LockResult::WouldBlock),
            _ => return Err(e),
        }
    }
}

/// `fcntl(fd, F_OFD_SETLK, {F_UNLCK, ...})`: lets go of a lock this open
/// file description holds on the range.
pub(crate) fn ofd_unlock(fd: BorrowedFd<'_>, start: u64, len: u64) -> io::Result<()> {
    let fl = flock_struct(libc::F_UNLCK, start, len)?;
    // SAFETY: as in `ofd_try_lock_exclusive`.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fcntl(fd, F_OFD_GETLK)` for an exclusive lock on the range: the kind
/// of a lock another open file description holds there that would conflict
/// with one, if any (its pid is not reported for OFD locks: mapstate
/// records the holder's pid itself).
pub(crate) fn ofd_lock_holder(
    fd: BorrowedFd<'_>,
    start: u64,
    len: u64,
) -> io::Result<Option<LockKind>> {
    let mut fl = flock_struct(libc::F_WRLCK, start, len)?;
    // SAFETY: F_OFD_GETLK reads and writes one `struct flock`, and `fl` is a
    // valid, exclusively borrowed `flock` that outlives the call.
    let r = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_OFD_GETLK, &raw mut fl) };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(match i32::from(fl.l_type) {
        libc::F_UNLCK => None,
        libc::F_RDLCK => Some(LockKind::Shared),
        _ => Some(LockKind::Exclusive),
    })
}

fn flock_struct(l_type: i32, start: u64, len: u64) -> io::Result<libc::flock> {
    let too_big = || io::Error::from_raw_os_error(libc::EOVERFLOW);
    Ok(libc::flock {
        l_type: i16::try_from(l_type).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        l_whence: libc::SEEK_SET as i16,
        l_start: i64::try_from(start).map_err(|_| too_big())?,
        l_len: i64::try_from(len).map_err(|_| too_big())?,
        // Must be 0 for OFD locks.
        l_pid: 0,
    })
}

/// `futex(word, FUTEX_WAIT, expected, timeout)` on a word that may live in a
/// shared file mapping (so no `FUTEX_PRIVATE_FLAG`). Returns when woken, when
/// the word no longer holds `expected`, on a signal, or at the timeout; the
/// caller re-checks its condition in every case.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    use rustix::thread::futex;
    let ts = timeout.map(|d| rustix::time::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    // Every error (EAGAIN: the value changed, EINTR, ETIMEDOUT) means "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// `FUTEX_WAKE`'s count for "every waiter". The kernel reads the count as a
/// signed `int`: `u32::MAX` is -1 there, and wakes exactly one waiter (the
/// lost wake-up the cross-process stress test found).
const WAKE_ALL: u32 = i32::MAX as u32;

/// `futex(word, FUTEX_WAKE, INT_MAX)`: wakes every waiter in any process.
pub(crate) fn futex_wake_all(word: &AtomicU32) -> usize {
    rustix::thread::futex::wake(word, rustix::thread::futex::Flags::empty(), WAKE_ALL).unwrap_or(0)
}

/// `futex(word, FUTEX_WAIT_PRIVATE, expected)`: as [`futex_wait`] without a
/// timeout, for a word only this process's threads use (no cross-process
/// lookup in the kernel).
pub(crate) fn futex_wait_private(word: &AtomicU32, expected: u32) {
    use rustix::thread::futex;
    // Every error (EAGAIN: the value changed, EINTR) means "look again".
    let _ = futex::wait(word, futex::Flags::PRIVATE, expected, None);
}

/// `futex(word, FUTEX_WAKE_PRIVATE, INT_MAX)`: wakes every one of this
/// process's threads waiting on `word` with [`futex_wait_private`].
pub(crate) fn futex_wake_all_private(word: &AtomicU32) -> usize {
    rustix::thread::futex::wake(word, rustix::thread::futex::Flags::PRIVATE, WAKE_ALL).unwrap_or(0)
}

/// `CLOCK_MONOTONIC_COARSE` as a duration since boot: a few nanoseconds
/// through the vDSO, a few milliseconds of granularity.
pub(crate) fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// The inode of the caller's pid namespace (`/proc/self/ns/pid`), or 0.
pub(crate) fn pid_namespace() -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
}

/// The effective user id of the caller.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `fchown(fd, uid, gid)`.
pub(crate) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> io::Result<()> {
    rustix::fs::fchown(
        fd,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(gid)),
    )
    .map_err(Into::into)
}

/// `memfd_create(name, MFD_CLOEXEC)`: a file in memory with no name in
/// any directory (a private live image).
pub(crate) fn memfd(name: &str) -> io::Result<std::fs::File> {
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)?;
    Ok(std::fs::File::from(fd))
}

/// Forks this process has seen (see [`fork_generation`]); `u64::MAX` if
/// they cannot be counted.
static FORKS: AtomicU64 = AtomicU64::new(0);

extern "C" fn count_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// A number that differs in a child made by `fork` from the value its
/// parent read before the fork, without a system call (a `getpid` per
/// commit was one). The first call registers a `pthread_atfork` child
/// handler, so forks before it are not counted, which is what callers
/// need: they compare with a value they read earlier. A child made by the
/// raw `clone` or `fork` system calls (not the C library's `fork`, which
/// `std::process::Command` uses) bypasses the handler and is not seen. If
/// the handler cannot be registered, the number is the process id.
pub(crate) fn fork_generation() -> u64 {
    static REGISTER: std::sync::Once = std::sync::Once::new();
    REGISTER.call_once(|| {
        // SAFETY: registers a child handler that only adds to an atomic
        // (async-signal-safe, as a handler run after `fork` must be); the
        // function lives for the whole program.
        let r = unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
        if r != 0 {
            FORKS.store(u64::MAX, Ordering::Relaxed);
        }
    });
    match FORKS.load(Ordering::Relaxed) {
        u64::MAX => getpid().into(),
        n => n,
    }
}

/// The process id of the caller.
pub(crate) fn getpid() -> u32 {
    rustix::process::getpid()
        .as_raw_nonzero()
        .get()
        .unsigned_abs()
}

/// Borrows a file's descriptor (a helper so callers need not import the traits).
pub(crate) fn fd_of(f: &std::fs::File) -> BorrowedFd<'_> {
    f.as_fd()
}

/// Fills `buf` with random bytes from the kernel (`getrandom`).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::rand::getrandom(&mut buf[filled..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("getrandom failed: {e}"),
        }
    }
}

/// A random 64-bit value.
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    random_bytes(&mut b);
    u64::from_le_bytes(b)
}
