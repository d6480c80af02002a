//! What every entry point shares: the panic guard, handles (a magic number,
//! a one-thread-at-a-time flag, the state), the registry of open handles
//! that makes a double close an error, and argument checks.

use std::cell::UnsafeCell;
use std::collections::BTreeSet;
use std::ffi::{CStr, OsStr, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::error::{
    Failure, MAPSTATE_E_BAD_HANDLE, MAPSTATE_E_BUSY, MAPSTATE_E_INVALID, MAPSTATE_OK,
};

/// Runs one entry point: its failure is recorded for `mapstate_last_error()`
/// and turned into its code; a panic is caught (it must never unwind into C)
/// and becomes `MAPSTATE_E_PANIC`.
pub(crate) fn entry(f: impl FnOnce() -> Result<(), Failure>) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => MAPSTATE_OK,
        Ok(Err(failure)) => failure.record(),
        Err(payload) => Failure::panic(&*payload).record(),
    }
}

/// The magic number of a writer handle.
pub(crate) const WRITER_MAGIC: u64 = u64::from_le_bytes(*b"msWriter");
/// The magic number of a reader handle.
pub(crate) const READER_MAGIC: u64 = u64::from_le_bytes(*b"msReader");
/// The magic number of a shared writer handle (`src/shared.rs`).
pub(crate) const SHARED_MAGIC: u64 = u64::from_le_bytes(*b"msShared");
/// The magic number of a transaction view (`src/shared.rs`): a `Handle`
/// on the stack of `mapstate_shared_transaction`, never registered.
pub(crate) const VIEW_MAGIC: u64 = u64::from_le_bytes(*b"msTxView");

/// A handle given to C: a heap allocation that C holds by pointer.
///
/// `repr(C)` puts `magic` at offset 0 whatever `S` is, so any handle's
/// magic can be read through a pointer to any other kind of handle.
#[repr(C)]
pub(crate) struct Handle<S> {
    magic: u64,
    /// Set while a call uses `state`: the only way to reach it.
    busy: AtomicBool,
    state: UnsafeCell<S>,
}

impl<S> Handle<S> {
    /// Allocates a handle and registers it as open; returns the pointer C
    /// will hold (freed by [`close`]).
    pub(crate) fn open(magic: u64, state: S) -> *mut Self {
        let p = Box::into_raw(Box::new(Self {
            magic,
            busy: AtomicBool::new(false),
            state: UnsafeCell::new(state),
        }));
        registry().insert((p as usize, magic));
        p
    }

    /// A handle that is not registered and not boxed: a transaction view,
    /// which lives on the stack for the length of one callback. Call
    /// [`Handle::retire`] before it goes.
    pub(crate) fn unregistered(magic: u64, state: S) -> Self {
        Self {
            magic,
            busy: AtomicBool::new(false),
            state: UnsafeCell::new(state),
        }
    }

    /// Clears the magic of an unregistered handle about to go, so that a
    /// pointer kept past its end (undefined, as documented) is, at best,
    /// `MAPSTATE_E_BAD_HANDLE`.
    pub(crate) fn retire(&mut self) {
        // Volatile: the handle is dead after this, and a plain store to it
        // could be left out.
        // SAFETY: `&mut self.magic` is valid and aligned for a write.
        unsafe { std::ptr::write_volatile(&raw mut self.magic, 0) };
    }

    /// Runs `f` with exclusive access to the state, or fails with
    /// `MAPSTATE_E_BUSY` if another call (another thread) is using it.
    pub(crate) fn with<R>(
        &self,
        f: impl FnOnce(&mut S) -> Result<R, Failure>,
    ) -> Result<R, Failure> {
        if self.busy.swap(true, Ordering::Acquire) {
            return Err(busy());
        }
        let _release = Release(&self.busy);
        // SAFETY: `busy` was false and is now ours until `_release` drops
        // (also on unwind), and every access to `state` goes through this
        // function, so no other reference to the state exists meanwhile.
        let state = unsafe { &mut *self.state.get() };
        f(state)
    }
}

fn busy() -> Failure {
    Failure::new(
        MAPSTATE_E_BUSY,
        "the handle is in use by another thread: use each handle from one thread at a time",
    )
}

/// Clears the busy flag when a call ends, also when it panics.
struct Release<'a>(&'a AtomicBool);

impl Drop for Release<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Addresses and kinds of the open handles. Consulted on open and close
/// only, so that a double close is an error instead of a double free,
/// without a global lock on every call.
static OPEN: Mutex<BTreeSet<(usize, u64)>> = Mutex::new(BTreeSet::new());

pub(crate) fn registry() -> std::sync::MutexGuard<'static, BTreeSet<(usize, u64)>> {
    OPEN.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) fn kind(magic: u64) -> &'static str {
    match magic {
        WRITER_MAGIC => "writer",
        SHARED_MAGIC => "shared writer",
        VIEW_MAGIC => "transaction view",
        _ => "reader",
    }
}

/// The handle behind `p`, if it is non-NULL and carries `magic`.
///
/// # Safety
///
/// `p` is NULL or a pointer returned by an open function and not closed.
pub(crate) unsafe fn get<'a, S, C>(p: *mut C, magic: u64) -> Result<&'a Handle<S>, Failure> {
    // SAFETY: as promised by the caller; a `Handle<S>` is `repr(C)` with
    // the magic first.
    unsafe { get_as(p, magic) }
}

/// The object behind `p`, if it is non-NULL and carries `magic`: a
/// [`Handle`], or another `repr(C)` type whose first field is the `u64`
/// magic (the shared writer's handle).
///
/// # Safety
///
/// `p` is NULL or a pointer returned by an open function and not closed;
/// `magic` belongs to `T` alone.
pub(crate) unsafe fn get_as<'a, T, C>(p: *mut C, magic: u64) -> Result<&'a T, Failure> {
    if p.is_null() {
        return Err(Failure::new(
            MAPSTATE_E_BAD_HANDLE,
            format!("the {} handle is NULL", kind(magic)),
        ));
    }
    // SAFETY: the caller promises `p` points to a live handle of some kind;
    // every kind is a `repr(C)` type (a `Handle<_>`, or the shared writer's
    // handle) whose first field is the `u64` magic, aligned as `Box` (or
    // the stack, for a view) aligned it.
    let found = unsafe { p.cast::<u64>().read() };
    if found != magic {
        return Err(Failure::new(
            MAPSTATE_E_BAD_HANDLE,
            format!(
                "not an open {} handle (closed already, or another kind of handle)",
                kind(magic)
            ),
        ));
    }
    // SAFETY: the magic says it is a `T` (each magic belongs to one type,
    // as the caller promises); it lives until closed, which the caller
    // promises it is not.
    Ok(unsafe { &*p.cast::<T>() })
}

/// Unregisters and frees the handle `p` and returns its state, or fails
/// with `MAPSTATE_E_BAD_HANDLE` if `p` is not an open handle of this kind
/// (NULL, closed already: a double close is an error, not a crash) or
/// `MAPSTATE_E_BUSY` if another thread is using it.
///
/// # Safety
///
/// If `p` was returned by an open function and closed since, no new handle
/// may have been given the same address (then this closes that one).
pub(crate) unsafe fn close<S, C>(p: *mut C, magic: u64) -> Result<S, Failure> {
    // SAFETY: as promised by the caller.
    unsafe { close_if(p, magic, |_| Ok(())) }
}

/// [`close`], if `check` passes on the state first (else its failure is
/// returned and the handle stays open).
///
/// # Safety
///
/// As for [`close`].
pub(crate) unsafe fn close_if<S, C>(
    p: *mut C,
    magic: u64,
    check: impl FnOnce(&mut S) -> Result<(), Failure>,
) -> Result<S, Failure> {
    let mut open = registry();
    if p.is_null() || !open.contains(&(p as usize, magic)) {
        return Err(Failure::new(
            MAPSTATE_E_BAD_HANDLE,
            format!(
                "not an open {} handle: NULL, closed already, or another kind of handle",
                kind(magic)
            ),
        ));
    }
    let h = p.cast::<Handle<S>>();
    // SAFETY: registered, so `h` is a live `Handle<S>` made by `open` with
    // this magic; the registry lock keeps any other close from freeing it.
    let flag = unsafe { &(*h).busy };
    if flag.swap(true, Ordering::Acquire) {
        return Err(busy());
    }
    let release = Release(flag);
    // SAFETY: registered, so live (as above).
    let cell = unsafe { &(*h).state };
    // SAFETY: the busy flag is ours (above), so no other reference to the
    // state exists; the registry lock keeps the handle alive.
    check(unsafe { &mut *cell.get() })?;
    std::mem::forget(release); // the handle is freed busy
    open.remove(&(p as usize, magic));
    drop(open);
    // SAFETY: made by `Box::into_raw` in `open`, unregistered above under
    // the lock (no other close can reach it) and marked busy (no other call
    // can use its state), so this is the one owner.
    let mut b = unsafe { Box::from_raw(h) };
    b.magic = 0;
    let b = std::hint::black_box(b); // keep the cleared magic past the free
    Ok(b.state.into_inner())
}

/// A path argument: any bytes but NUL (Linux paths need not be UTF-8).
///
/// # Safety
///
/// `p` is NULL or points to a NUL-terminated string.
pub(crate) unsafe fn path(p: *const c_char, what: &str) -> Result<PathBuf, Failure> {
    if p.is_null() {
        return Err(Failure::invalid(format!("{what} is NULL")));
    }
    // SAFETY: the caller promises a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(p) }.to_bytes();
    if bytes.is_empty() {
        return Err(Failure::invalid(format!("{what} is an empty string")));
    }
    Ok(PathBuf::from(OsStr::from_bytes(bytes)))
}

/// Stores `v` through an optional out-parameter.
///
/// # Safety
///
/// `p` is NULL or valid for a write of a `T`.
pub(crate) unsafe fn put<T>(p: *mut T, v: T) {
    if !p.is_null() {
        // SAFETY: non-NULL, and the caller promises it is writable.
        unsafe { p.write(v) };
    }
}

/// Fails with `MAPSTATE_E_INVALID` if a required pointer is NULL.
pub(crate) fn required<T>(p: *const T, what: &str) -> Result<(), Failure> {
    if p.is_null() {
        Err(Failure::new(MAPSTATE_E_INVALID, format!("{what} is NULL")))
    } else {
        Ok(())
    }
}

/// A byte count from C as `usize`.
pub(crate) fn size(n: u64, what: &str) -> Result<usize, Failure> {
    // No object is larger than `isize::MAX` bytes (a slice may not be).
    usize::try_from(n)
        .ok()
        .filter(|&n| isize::try_from(n).is_ok())
        .ok_or_else(|| Failure::invalid(format!("{what} of {n} bytes does not fit in memory")))
}

/// The bytes `[p, p + len)` from C (`p` may be NULL when `len` is 0).
///
/// # Safety
///
/// `p` is NULL or valid for reads of `len` bytes, not written during the call.
pub(crate) unsafe fn bytes<'a>(
    p: *const c_void,
    len: u64,
    what: &str,
) -> Result<&'a [u8], Failure> {
    let n = size(len, what)?;
    if n == 0 {
        return Ok(&[]);
    }
    required(p, what)?;
    // SAFETY: non-NULL, and the caller promises `len` readable bytes that
    // nothing writes during the call.
    Ok(unsafe { std::slice::from_raw_parts(p.cast::<u8>(), n) })
}

/// The writable bytes `[p, p + len)` from C (`p` may be NULL when `len` is 0).
///
/// # Safety
///
/// `p` is NULL or valid for writes of `len` bytes, not otherwise accessed
/// during the call.
pub(crate) unsafe fn bytes_mut<'a>(
    p: *mut c_void,
    len: u64,
    what: &str,
) -> Result<&'a mut [u8], Failure> {
    let n = size(len, what)?;
    if n == 0 {
        return Ok(&mut []);
    }
    required(p, what)?;
    // SAFETY: non-NULL, and the caller promises `len` writable bytes that
    // nothing else accesses during the call.
    Ok(unsafe { std::slice::from_raw_parts_mut(p.cast::<u8>(), n) })
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::entry;
    use crate::error::{MAPSTATE_E_PANIC, MAPSTATE_OK, mapstate_last_error};

    #[test]
    fn a_panic_becomes_a_code_and_a_message() {
        assert_eq!(entry(|| Ok(())), MAPSTATE_OK);
        assert_eq!(entry(|| panic!("boom at the boundary")), MAPSTATE_E_PANIC);
        // SAFETY: `mapstate_last_error` returns a NUL-terminated string that
        // stays valid until the next call on this thread.
        let msg = unsafe { CStr::from_ptr(mapstate_last_error()) };
        let msg = msg.to_str().expect("UTF-8");
        assert!(msg.contains("boom at the boundary"), "{msg}");
        assert!(msg.starts_with("internal error in mapstate"), "{msg}");
    }
}
