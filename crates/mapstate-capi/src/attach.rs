//! `mapstate_attach` / `mapstate_detach`: the AIX `shmat(SHM_MAP)` pair, on
//! the library's extend-on-write [`Mapping`].

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Mutex, PoisonError};

use mapstate_rs::{Error, MapOptions, Mapping};

use crate::error::{Failure, MAPSTATE_E_BAD_HANDLE, MAPSTATE_E_PAST_MAXIMUM};
use crate::handle;

/// Flag of `mapstate_attach()`: create the file if it does not exist.
pub const MAPSTATE_ATTACH_CREATE: c_int = 1;

/// The attached mappings, by the address handed to C. `mapstate_detach`
/// looks the address up without dereferencing it, so a second detach or a
/// stray pointer is an error code, never a crash.
static ATTACHED: Mutex<BTreeMap<usize, Mapping>> = Mutex::new(BTreeMap::new());

fn attached() -> std::sync::MutexGuard<'static, BTreeMap<usize, Mapping>> {
    ATTACHED.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Maps the plain file at `path` (not a mapstate state: no header, no log)
/// at the start of a reserved range of `max_size` bytes and returns its
/// address (page-aligned), AIX `shmat(SHM_MAP)` style: loads and stores
/// anywhere below `max_size` work; one past the end of the file extends it
/// (`fallocate`, in chunks, at the same address, from a SIGSEGV handler:
/// no growth code in the program). A full disk is an error at
/// `mapstate_detach()`, never a SIGBUS: stores that could not get space
/// land in scratch pages and are lost. Returns NULL on failure, with
/// `mapstate_last_error()` saying why (a missing file without
/// `MAPSTATE_ATTACH_CREATE`, no permission, a `max_size` of 0 or past
/// 32 TiB, a filesystem without `fallocate`).
///
/// `flags`: 0 or `MAPSTATE_ATTACH_CREATE` (the file is created with mode
/// 0600). The mapping belongs to the caller until `mapstate_detach()`; any
/// thread may load and store through it. Thread-safe.
///
/// # Safety
///
/// `path` is NULL or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_attach(
    path: *const c_char,
    max_size: u64,
    flags: c_int,
) -> *mut c_void {
    let r = catch_unwind(AssertUnwindSafe(|| -> Result<*mut c_void, Failure> {
        // SAFETY: as promised by the caller.
        let path = unsafe { handle::path(path, "path") }?;
        if flags & !MAPSTATE_ATTACH_CREATE != 0 {
            return Err(Failure::invalid(format!(
                "unknown flags {flags:#x}: only MAPSTATE_ATTACH_CREATE (1) is defined"
            )));
        }
        let mut m = MapOptions::new()
            .create(flags & MAPSTATE_ATTACH_CREATE != 0)
            .max_size(max_size)
            .extend_on_write(true)
            .open(&path)?;
        let p = m.as_mut_ptr();
        attached().insert(p as usize, m);
        Ok(p.cast())
    }));
    match r {
        Ok(Ok(p)) => p,
        Ok(Err(f)) => {
            f.record();
            std::ptr::null_mut()
        }
        Err(payload) => {
            Failure::panic(&*payload).record();
            std::ptr::null_mut()
        }
    }
}

/// Ends an attachment, as AIX `shmdt`: writes the modified pages to stable
/// storage (`msync(MS_SYNC)`), sets the file's length to the written extent
/// (the end of the last page past the original length holding a non-zero
/// byte; never shorter than the file was), unmaps and frees the range. The
/// address must not be used afterwards.
///
/// Returns 0; `MAPSTATE_E_BAD_HANDLE` if `addr` is not an attached address
/// (NULL, detached already, or any other pointer: it is never
/// dereferenced); `MAPSTATE_E_NO_SPACE` if the disk filled during the
/// attachment (the message says how large the file needed to be; stores past
/// what fitted are lost, and the file keeps what fitted); `MAPSTATE_E_PAST_MAXIMUM`
/// for a store just past `max_size` (lost; attach with a larger maximum);
/// `MAPSTATE_E_IO`. After `MAPSTATE_E_NO_SPACE` and
/// `MAPSTATE_E_PAST_MAXIMUM` the stores that were kept are written and the
/// length set as above; after any error but `MAPSTATE_E_BAD_HANDLE` the
/// range is unmapped all the same.
/// Thread-safe; no other thread may use the range during or after the call.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_detach(addr: *mut c_void) -> c_int {
    handle::entry(|| {
        let mut m = attached()
            .remove(&(addr as usize))
            .ok_or_else(|| not_attached(addr))?;
        // A failed growth is reported after the rest is written: the
        // library's `detach` would return it before syncing and cutting.
        let grew = m.check_growth().map_err(in_attach_terms);
        m.detach()?;
        grew
    })
}

/// A library error of an attachment in the terms of `mapstate_attach()`:
/// the library's `PastMaximum` speaks of a transaction and of recreating a
/// state, which an attachment has neither of.
fn in_attach_terms(e: Error) -> Failure {
    match e {
        Error::PastMaximum { path, offset, max } => Failure::new(
            MAPSTATE_E_PAST_MAXIMUM,
            format!(
                "a store at offset {offset} of {} was past the max_size of {max} bytes given to \
                 mapstate_attach(), and is lost (the stores below the maximum are in the file); \
                 keep stores below max_size, or attach with a larger max_size",
                path.display()
            ),
        ),
        e => e.into(),
    }
}

/// Runs `f` on the attachment at `addr`, looked up without dereferencing
/// it; `MAPSTATE_E_BAD_HANDLE` if it is not one.
fn with_attached<R>(
    addr: *mut c_void,
    f: impl FnOnce(&mut Mapping) -> Result<R, Failure>,
) -> Result<R, Failure> {
    let mut all = attached();
    let m = all
        .get_mut(&(addr as usize))
        .ok_or_else(|| not_attached(addr))?;
    f(m)
}

fn not_attached(addr: *mut c_void) -> Failure {
    Failure::new(
        MAPSTATE_E_BAD_HANDLE,
        format!(
            "{addr:p} is not an address mapstate_attach() returned (or it was detached already)"
        ),
    )
}

/// `*out` receives the attachment's high-water mark: how far the file was
/// written, that is the end of the last page past the file's original
/// length (or the length of the last `mapstate_attach_trim()`) that holds
/// a non-zero byte, page granularity (a page only read, or written with
/// zeros only, does not count); never less than that length. Sees stores
/// by any thread or process. It costs nothing on the store path: it looks
/// for the written pages when called.
///
/// Returns 0, `MAPSTATE_E_BAD_HANDLE` (`addr` is not an attached address;
/// it is never dereferenced), `MAPSTATE_E_INVALID` (`out` NULL), or
/// `MAPSTATE_E_IO`. Thread-safe.
///
/// # Safety
///
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_attach_high_water(addr: *mut c_void, out: *mut u64) -> c_int {
    handle::entry(|| {
        handle::required(out, "out")?;
        let hw = with_attached(addr, |m| Ok(m.high_water()?))?;
        // SAFETY: non-NULL (above) and writable, as the caller promises.
        unsafe { out.write(hw) };
        Ok(())
    })
}

/// Sets the attached file's length to its high-water mark
/// (`mapstate_attach_high_water()`) now, as `mapstate_detach()` does at the
/// end, and keeps the attachment: `*len` (if not NULL) receives the new
/// length. Stores anywhere below the maximum keep working; but if the mark
/// is inside a page, the rest of that page past the new end is not the
/// file's until the file grows over it again (a store in a later page), so
/// a store there alone is lost. Nothing is synced (detach does that).
///
/// Returns 0, `MAPSTATE_E_BAD_HANDLE` (not an attached address),
/// `MAPSTATE_E_NO_SPACE` or `MAPSTATE_E_PAST_MAXIMUM` (a growth failed
/// since the last check, as at detach: nothing was changed, and the
/// failure is reported once), or `MAPSTATE_E_IO`. Thread-safe; no other
/// thread may store into the attachment during the call.
///
/// # Safety
///
/// `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_attach_trim(addr: *mut c_void, len: *mut u64) -> c_int {
    handle::entry(|| {
        let n = with_attached(addr, |m| m.trim().map_err(in_attach_terms))?;
        // SAFETY: the caller promises NULL or writable.
        unsafe { handle::put(len, n) };
        Ok(())
    })
}
