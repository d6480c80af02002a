//! Group commit for C: a shared writer handle that many threads use at
//! once (`SharedWriter`), its transactions run as C callbacks, and the
//! view of the transaction a callback gets.
//!
//! Unlike the other handles, a shared handle has no busy flag: its calls
//! run concurrently, and `SharedWriter` orders them (a mutex around the
//! writer, one `fdatasync` for the `Sync` commits that wait together). A
//! count of the calls in progress lets `mapstate_shared_close` refuse to
//! free a handle another thread is inside (`MAPSTATE_E_BUSY`). A
//! per-thread list of the shared handles whose callback is running turns a
//! call back into the same handle, which would wait on the writer mutex
//! its own thread holds, into `MAPSTATE_E_IN_CALLBACK`.
//!
//! The view a callback gets is a `Handle` on the stack of
//! `mapstate_shared_transaction` (magic, busy flag, a pointer to the
//! transaction), never registered: it exists for the length of the
//! callback, and its magic is cleared when the callback returns.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};

use mapstate_rs::{SharedWriter, Txn};

use crate::error::{
    Failure, MAPSTATE_E_BAD_HANDLE, MAPSTATE_E_BUSY, MAPSTATE_E_IN_CALLBACK, MAPSTATE_OK,
};
use crate::handle::{self, Handle, SHARED_MAGIC, VIEW_MAGIC, entry};
use crate::options::{self, MapstateOptions};
use crate::writer::{self, MapstateWriter};

/// A writer shared by threads, with group commit (opaque). Made by
/// `mapstate_shared_open()` or `mapstate_writer_share()`, freed by
/// `mapstate_shared_close()`. Unlike the other handles, many threads may
/// use it at once.
pub struct MapstateShared {
    _opaque: [u8; 0],
}

/// The open transaction of one `mapstate_shared_transaction()` call, as its
/// callback sees it (opaque). Valid only during the callback; changed
/// through the `mapstate_txn_view_*` functions.
pub struct MapstateTxnView {
    _opaque: [u8; 0],
}

/// A transaction callback: changes the state through `t` (valid only until
/// it returns) and returns 0 to commit, anything else to discard the
/// transaction (`mapstate_shared_transaction()` then returns that value).
/// `ctx` is the pointer given to `mapstate_shared_transaction()`.
pub type MapstateTxnFn =
    Option<unsafe extern "C" fn(t: *mut MapstateTxnView, ctx: *mut c_void) -> c_int>;

/// Set in [`SharedHandle::calls`] once a close has begun.
const CLOSING: u64 = 1 << 63;

/// What C holds as a `mapstate_shared *`: `repr(C)` with the magic first,
/// as every handle (`handle::get_as` reads it).
#[repr(C)]
struct SharedHandle {
    magic: u64,
    /// Calls in progress on this handle, plus [`CLOSING`].
    calls: AtomicU64,
    shared: SharedWriter,
}

/// Counts one call in [`SharedHandle::calls`] for its length.
struct Call<'a>(&'a AtomicU64);

impl Drop for Call<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Release);
    }
}

thread_local! {
    /// The shared handles whose transaction callback runs on this thread
    /// (innermost last): a callback may run another handle's transaction.
    static ACTIVE: RefCell<Vec<usize>> = const { RefCell::new(Vec::new()) };
}

/// Marks a handle's callback as running on this thread while it lives.
struct Active(usize);

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.with(|a| {
            let mut a = a.borrow_mut();
            if let Some(i) = a.iter().rposition(|&p| p == self.0) {
                a.remove(i);
            }
        });
    }
}

/// Fails with `MAPSTATE_E_IN_CALLBACK` if a callback of the handle at `p`
/// runs on this thread.
fn not_in_callback(p: usize, call: &str) -> Result<(), Failure> {
    if ACTIVE.with(|a| a.borrow().contains(&p)) {
        return Err(Failure::new(
            MAPSTATE_E_IN_CALLBACK,
            format!(
                "{call}() on the shared writer whose transaction callback is running on this \
                 thread: it would wait for that transaction; change the state through the \
                 callback's mapstate_txn_view_* functions instead"
            ),
        ));
    }
    Ok(())
}

/// The shared handle `s`, counted as in use until the returned guard drops;
/// `call` names the function for `MAPSTATE_E_IN_CALLBACK`.
///
/// # Safety
///
/// `s` is NULL or a handle from `mapstate_shared_open()` or
/// `mapstate_writer_share()` not closed yet.
unsafe fn enter<'a>(
    s: *mut MapstateShared,
    call: &str,
) -> Result<(&'a SharedHandle, Call<'a>), Failure> {
    // SAFETY: as promised by the caller; `SharedHandle` is `repr(C)` with
    // the magic first, and `SHARED_MAGIC` is its alone.
    let h: &SharedHandle = unsafe { handle::get_as(s, SHARED_MAGIC) }?;
    not_in_callback(s as usize, call)?;
    if h.calls.fetch_add(1, Ordering::Acquire) & CLOSING != 0 {
        h.calls.fetch_sub(1, Ordering::Release);
        return Err(Failure::new(
            MAPSTATE_E_BAD_HANDLE,
            "the shared writer handle is being closed",
        ));
    }
    Ok((h, Call(&h.calls)))
}

/// Makes a shared handle of `w` and stores it in `*out`.
///
/// # Safety
///
/// `out` is non-NULL and writable.
unsafe fn share(w: mapstate_rs::Writer, out: *mut *mut MapstateShared) -> Result<(), Failure> {
    let shared = SharedWriter::new(w)?;
    let p = Box::into_raw(Box::new(SharedHandle {
        magic: SHARED_MAGIC,
        calls: AtomicU64::new(0),
        shared,
    }));
    handle::registry().insert((p as usize, SHARED_MAGIC));
    // SAFETY: as promised by the caller.
    unsafe { out.write(p.cast()) };
    Ok(())
}

/// Opens the state at `path` for writing, as `mapstate_writer_open()`, and
/// shares it between threads: many threads may call
/// `mapstate_shared_transaction()` on the handle at once, and their
/// `MAPSTATE_SYNC` commits share `fdatasync` calls (group commit).
///
/// - `path`, `opts`: as for `mapstate_writer_open()`; `opts->durability`
///   is the durability of every commit (`MAPSTATE_SYNC` for group commit).
/// - `*out`: receives the new handle on success, NULL on failure.
///
/// Returns 0, or what `mapstate_writer_open()` returns.
///
/// Ownership: the caller owns the handle and must pass it to
/// `mapstate_shared_close()` once, after every other thread is done with
/// it. Thread-safety: any number of threads may use the handle at once.
/// After `fork()`, the child must not use the parent's handles.
///
/// # Safety
///
/// `path` is NULL or NUL-terminated; `opts` is NULL or points to options;
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_open(
    path: *const c_char,
    opts: *const MapstateOptions,
    out: *mut *mut MapstateShared,
) -> c_int {
    entry(|| {
        handle::required(out, "out")?;
        // SAFETY: `out` is non-NULL and the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises a NUL-terminated string or NULL.
        let path = unsafe { handle::path(path, "path") }?;
        // SAFETY: the caller promises options or NULL.
        let opts = unsafe { options::from_c(opts) }?;
        let w = opts.open(&path)?;
        // SAFETY: `out` is non-NULL and writable (above).
        unsafe { share(w, out) }
    })
}

/// Turns the writer handle `w` into a shared handle (`*out`), with the
/// durability `w` was opened with. `w` is closed by this call (its writer
/// goes on in the shared handle): do not use it again.
///
/// Returns 0; `MAPSTATE_E_TXN_OPEN` (a transaction is open: commit or
/// abort it first), `MAPSTATE_E_INVALID` (`out` NULL),
/// `MAPSTATE_E_BAD_HANDLE` or `MAPSTATE_E_BUSY`, and then `w` is left
/// open; or `MAPSTATE_E_IO` (syncing what an earlier writer left in the
/// log failed), and then `w` is closed all the same, its writer dropped
/// (every commit returned so far is in the log and recovered at the next
/// open). `*out` is NULL on any failure.
///
/// Ownership and thread-safety: as for `mapstate_shared_open()`.
///
/// # Safety
///
/// `w` is as for `mapstate_writer_close()`; `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_share(
    w: *mut MapstateWriter,
    out: *mut *mut MapstateShared,
) -> c_int {
    entry(|| {
        handle::required(out, "out")?;
        // SAFETY: `out` is non-NULL and the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: as promised by the caller.
        let w = unsafe { writer::take_writer(w) }?;
        // SAFETY: `out` is non-NULL and writable (above).
        unsafe { share(*w, out) }
    })
}

/// Runs `fn(t, ctx)` as one transaction of the shared writer and commits
/// it, as Rust's `SharedWriter::try_transaction`. Transactions of all the
/// threads run one at a time, each callback under the writer's lock; a
/// `MAPSTATE_SYNC` commit then waits, without the lock, until a
/// `fdatasync` covers it, one sync serving every commit waiting at the
/// time (group commit).
///
/// - `fn`: changes the state through `t` with the `mapstate_txn_view_*`
///   functions; `t` and every pointer they hand out are valid only until
///   `fn` returns. `fn` returning 0 commits; any other value discards the
///   transaction (nothing of it is ever visible) and this function returns
///   that value as it is, leaving `mapstate_last_error()` as `fn` left it
///   (return a failed view call's code to pass its message on; use
///   positive values of your own to tell them from mapstate's codes).
/// - `ctx`: passed to `fn` untouched.
/// - `*seq` (if `seq` is not NULL): on a commit, its sequence number,
///   distinct for every commit that changed something (a transaction that
///   changed nothing gets the previous number); untouched otherwise.
///
/// When it returns 0, the commit is visible to every process and is as
/// durable as the handle's durability says: with `MAPSTATE_SYNC`, on
/// stable storage.
///
/// Inside `fn`, do not call this function, `mapstate_shared_seq()`,
/// `_len()`, `_checkpoint()` or `_close()` on the same handle: they would
/// wait for the transaction they are part of, so they fail at once with
/// `MAPSTATE_E_IN_CALLBACK` instead. A transaction of another shared
/// handle from inside `fn` works, but two threads doing that in opposite
/// orders deadlock, as with any two locks. `fn` must return: leaving it by
/// `longjmp`, a C++ exception or thread cancellation is undefined
/// behaviour. Keep it short: every other thread's transaction waits for
/// it.
///
/// Returns 0, `fn`'s non-zero value, or `MAPSTATE_E_POISONED` (an earlier
/// sync failed: close and reopen), `MAPSTATE_E_NO_SPACE`,
/// `MAPSTATE_E_PAST_MAXIMUM`, `MAPSTATE_E_IO` (the commit failed and was
/// discarded), `MAPSTATE_E_IN_CALLBACK`, `MAPSTATE_E_INVALID` (`fn`
/// NULL), or `MAPSTATE_E_BAD_HANDLE`.
///
/// Thread-safety: any number of threads may call it at once on one handle.
///
/// # Safety
///
/// `s` is NULL or an open shared handle; `fn` is NULL or a function
/// pointer of this type; `seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_transaction(
    s: *mut MapstateShared,
    r#fn: MapstateTxnFn,
    ctx: *mut c_void,
    seq: *mut u64,
) -> c_int {
    let mut discarded = MAPSTATE_OK;
    let rc = entry(|| {
        let callback = r#fn.ok_or_else(|| Failure::invalid("fn is NULL"))?;
        // SAFETY: as promised by the caller.
        let (open, _call) = unsafe { enter(s, "mapstate_shared_transaction") }?;
        ACTIVE.with(|a| a.borrow_mut().push(s as usize));
        let _active = Active(s as usize);
        let outcome = open.shared.try_transaction(|txn: &mut Txn<'_>| {
            // The lifetime is erased here; the pointer lives only in the
            // view, which is retired before `txn`'s borrow ends (below).
            let mut view =
                Handle::unregistered(VIEW_MAGIC, NonNull::from(txn).cast::<Txn<'static>>());
            let view_ptr: *mut MapstateTxnView = (&raw const view).cast_mut().cast();
            // SAFETY: `callback` is a C function pointer of this type (the
            // caller's promise); `view_ptr` is a live view for the whole
            // call and `ctx` is the caller's, untouched.
            let code = unsafe { callback(view_ptr, ctx) };
            view.retire();
            if code == MAPSTATE_OK {
                Ok(())
            } else {
                Err(Abort::Callback(code))
            }
        });
        match outcome {
            Ok((n, ())) => {
                // SAFETY: the caller promises `seq` is NULL or writable.
                unsafe { handle::put(seq, n) };
                Ok(())
            }
            Err(Abort::Callback(code)) => {
                discarded = code;
                Ok(())
            }
            Err(Abort::Failed(e)) => Err(e.into()),
        }
    });
    if rc == MAPSTATE_OK { discarded } else { rc }
}

/// Why a shared transaction ended without a commit.
enum Abort {
    /// The callback returned this non-zero value.
    Callback(c_int),
    /// The library failed.
    Failed(mapstate_rs::Error),
}

impl From<mapstate_rs::Error> for Abort {
    fn from(e: mapstate_rs::Error) -> Self {
        Self::Failed(e)
    }
}

/// `*syncs` receives how many `fdatasync` calls of the log the handle's
/// group commit has made so far: compared with the number of
/// `MAPSTATE_SYNC` commits, how many commits shared each sync. Never waits
/// (also callable from inside a transaction callback).
///
/// Returns 0, `MAPSTATE_E_INVALID` (`syncs` NULL), or
/// `MAPSTATE_E_BAD_HANDLE`. Thread-safety: any thread, at any time.
///
/// # Safety
///
/// `s` is NULL or an open shared handle; `syncs` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_syncs(s: *mut MapstateShared, syncs: *mut u64) -> c_int {
    entry(|| {
        handle::required(syncs, "syncs")?;
        // SAFETY: as promised by the caller; `SharedHandle` is `repr(C)`
        // with the magic first. No `enter`: this takes no lock, so it is
        // fine inside a callback.
        let h: &SharedHandle = unsafe { handle::get_as(s, SHARED_MAGIC) }?;
        let n = h.shared.syncs();
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { syncs.write(n) };
        Ok(())
    })
}

/// Runs `f` on the shared handle's writer, under its lock (waiting for the
/// transaction in progress, if any).
///
/// # Safety
///
/// `s` is NULL or an open shared handle.
unsafe fn with_writer<R>(
    s: *mut MapstateShared,
    call: &str,
    f: impl FnOnce(&mut mapstate_rs::Writer) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: as promised by the caller.
    let (h, _call) = unsafe { enter(s, call) }?;
    f(&mut h.shared.lock())
}

/// Stores what `f` returns of the shared handle's writer in `*out`.
///
/// # Safety
///
/// `s` is NULL or an open shared handle; `out` is NULL or writable.
unsafe fn get_u64(
    s: *mut MapstateShared,
    call: &str,
    what: &str,
    out: *mut u64,
    f: impl FnOnce(&mapstate_rs::Writer) -> u64,
) -> c_int {
    entry(|| {
        handle::required(out, what)?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with_writer(s, call, |w| Ok(f(w))) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { out.write(n) };
        Ok(())
    })
}

/// `*seq` receives the sequence number of the last commit (0 for a new
/// state). Waits for a transaction in progress on another thread.
///
/// Returns 0, `MAPSTATE_E_INVALID` (`seq` NULL), `MAPSTATE_E_IN_CALLBACK`,
/// or `MAPSTATE_E_BAD_HANDLE`. Thread-safety: any thread, at any time.
///
/// # Safety
///
/// `s` is NULL or an open shared handle; `seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_seq(s: *mut MapstateShared, seq: *mut u64) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        get_u64(
            s,
            "mapstate_shared_seq",
            "seq",
            seq,
            mapstate_rs::Writer::seq,
        )
    }
}

/// `*len` receives the committed length of the state in bytes. Waits for a
/// transaction in progress on another thread.
///
/// Returns 0, `MAPSTATE_E_INVALID` (`len` NULL), `MAPSTATE_E_IN_CALLBACK`,
/// or `MAPSTATE_E_BAD_HANDLE`. Thread-safety: any thread, at any time.
///
/// # Safety
///
/// `s` is NULL or an open shared handle; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_len(s: *mut MapstateShared, len: *mut u64) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        get_u64(
            s,
            "mapstate_shared_len",
            "len",
            len,
            mapstate_rs::Writer::len,
        )
    }
}

/// As `mapstate_writer_checkpoint()`, on the shared writer: transactions
/// of other threads wait for it.
///
/// Returns 0, `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_IO`, `MAPSTATE_E_POISONED`,
/// `MAPSTATE_E_IN_CALLBACK`, or `MAPSTATE_E_BAD_HANDLE`. Thread-safety: any
/// thread, at any time.
///
/// # Safety
///
/// `s` is NULL or an open shared handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_checkpoint(s: *mut MapstateShared) -> c_int {
    // SAFETY: as promised by the caller.
    entry(|| unsafe { with_writer(s, "mapstate_shared_checkpoint", |w| Ok(w.checkpoint()?)) })
}

/// Closes a shared writer: checkpoints, releases the writer lock, and
/// frees the handle (the handle is freed even when the checkpoint fails,
/// as for `mapstate_writer_close()`).
///
/// Call it once every other thread is done with the handle: a call in
/// progress on another thread (a transaction waiting for its sync, say)
/// makes it fail with `MAPSTATE_E_BUSY`, the handle still open, but a
/// call that starts while or after the handle is freed is undefined
/// behaviour.
///
/// Returns 0, `MAPSTATE_E_IO`, `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_POISONED`
/// (the handle is freed in these cases), `MAPSTATE_E_BAD_HANDLE` (NULL, or
/// closed already: a double close is reported, not a crash, as long as no
/// new handle got the same address meanwhile), `MAPSTATE_E_IN_CALLBACK`
/// (from inside the handle's own transaction callback: not closed), or
/// `MAPSTATE_E_BUSY` (not closed).
///
/// # Safety
///
/// `s` is NULL or a handle from `mapstate_shared_open()` or
/// `mapstate_writer_share()`; if it was closed already, no handle opened
/// since may have the same address.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_shared_close(s: *mut MapstateShared) -> c_int {
    entry(|| {
        let mut open = handle::registry();
        if s.is_null() || !open.contains(&(s as usize, SHARED_MAGIC)) {
            return Err(Failure::new(
                MAPSTATE_E_BAD_HANDLE,
                "not an open shared writer handle: NULL, closed already, or another kind of handle",
            ));
        }
        not_in_callback(s as usize, "mapstate_shared_close")?;
        let h = s.cast::<SharedHandle>();
        // SAFETY: registered, so `h` is a live `SharedHandle` made by
        // `share`; the registry lock keeps any other close from freeing it.
        let calls = unsafe { &(*h).calls };
        if calls
            .compare_exchange(0, CLOSING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(Failure::new(
                MAPSTATE_E_BUSY,
                "another thread is in a call on this shared handle (a transaction, say): \
                 close it once every thread is done with it",
            ));
        }
        open.remove(&(s as usize, SHARED_MAGIC));
        drop(open);
        // SAFETY: made by `Box::into_raw` in `share`, unregistered above
        // under the lock (no other close can reach it), and no call is in
        // progress (`calls` was 0; `CLOSING` turns new ones away), so this
        // is the one owner.
        let mut b = unsafe { Box::from_raw(h) };
        b.magic = 0;
        let b = std::hint::black_box(b); // keep the cleared magic past the free
        Ok(b.shared.into_inner().close()?)
    })
}

/// Runs `f` on the transaction behind the view `t`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running.
unsafe fn with_txn<R>(
    t: *mut MapstateTxnView,
    f: impl FnOnce(&mut Txn<'static>) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: as promised by the caller.
    let h: &Handle<NonNull<Txn<'static>>> = unsafe { handle::get(t, VIEW_MAGIC) }?;
    h.with(|p| {
        // SAFETY: the view was made from the callback's `&mut Txn` and is
        // retired before that borrow ends; while the callback runs, the
        // closure holding the borrow is blocked in it, and the view's busy
        // flag (held by `with`) keeps this the only reference made from it.
        f(unsafe { p.as_mut() })
    })
}

/// As `hand_out` in `writer.rs`, for a view.
///
/// # Safety
///
/// `t` is NULL or a live view; `data` and `out` are NULL or writable.
unsafe fn hand_out(
    t: *mut MapstateTxnView,
    data: *mut *mut u8,
    out: *mut u64,
    take: impl FnOnce(&mut Txn<'static>) -> Result<(*mut u8, u64), Failure>,
) -> c_int {
    entry(|| {
        handle::required(data, "data")?;
        // SAFETY: as promised by the caller.
        let (p, n) = unsafe { with_txn(t, take) }?;
        // SAFETY: `data` is non-NULL (above) and the caller promises it is writable.
        unsafe { data.write(p) };
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { handle::put(out, n) };
        Ok(())
    })
}

/// As `mapstate_txn_data()`, in a transaction callback: the transaction's
/// bytes, writable with plain stores, and its length. `*data` is valid
/// until the callback returns (or `mapstate_txn_view_set_len()`).
///
/// Returns 0, `MAPSTATE_E_INVALID` (`data` NULL), `MAPSTATE_E_BAD_HANDLE`
/// (NULL, or not a live view), or `MAPSTATE_E_BUSY`.
///
/// Thread-safety (every `mapstate_txn_view_*` function): the view belongs
/// to the callback; use it from one thread at a time (a concurrent call
/// gets `MAPSTATE_E_BUSY`) and never after the callback returned
/// (undefined behaviour: the view is gone).
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `data` and `len`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_data(
    t: *mut MapstateTxnView,
    data: *mut *mut u8,
    len: *mut u64,
) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        hand_out(t, data, len, |t| {
            let bytes = t.as_mut_slice();
            Ok((bytes.as_mut_ptr(), bytes.len() as u64))
        })
    }
}

/// As `mapstate_txn_slice_mut()`, in a transaction callback: the bytes
/// `offset..offset + len`, and the commit looks for written pages there
/// alone. `*data` is valid until the callback returns.
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS`, `MAPSTATE_E_INVALID` (`data`
/// NULL), `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `data` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_slice_mut(
    t: *mut MapstateTxnView,
    offset: u64,
    len: u64,
    data: *mut *mut u8,
) -> c_int {
    let end = offset.saturating_add(len);
    // SAFETY: as promised by the caller; no count is returned.
    unsafe {
        hand_out(t, data, std::ptr::null_mut(), |t| {
            Ok((t.slice_mut(offset..end)?.as_mut_ptr(), 0))
        })
    }
}

/// As `mapstate_txn_extend_on_write()`, in a transaction callback: the
/// bytes up to the maximum size (`*max`), where stores past the end grow
/// the state. `*data` is valid until the callback returns.
///
/// Returns 0, `MAPSTATE_E_INVALID` (`data` NULL), `MAPSTATE_E_BAD_HANDLE`,
/// or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `data` and `max`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_extend_on_write(
    t: *mut MapstateTxnView,
    data: *mut *mut u8,
    max: *mut u64,
) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        hand_out(t, data, max, |t| {
            let bytes = t.extend_on_write();
            Ok((bytes.as_mut_ptr(), bytes.len() as u64))
        })
    }
}

/// As `mapstate_txn_extend_on_write_from()`, in a transaction callback.
/// `*data` (the address of byte `offset`) is valid until the callback
/// returns.
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS`, `MAPSTATE_E_INVALID` (`data`
/// NULL), `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `data` and `max`
/// are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_extend_on_write_from(
    t: *mut MapstateTxnView,
    offset: u64,
    data: *mut *mut u8,
    max: *mut u64,
) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        hand_out(t, data, max, |t| {
            let bytes = t.extend_on_write_from(offset)?;
            Ok((bytes.as_mut_ptr(), offset + bytes.len() as u64))
        })
    }
}

/// As `mapstate_txn_set_len()`, in a transaction callback. Pointers handed
/// out before are invalid afterwards: call `mapstate_txn_view_data()` again.
///
/// Returns 0, `MAPSTATE_E_INVALID_SIZE`, `MAPSTATE_E_NO_SPACE`,
/// `MAPSTATE_E_IO`, `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_set_len(t: *mut MapstateTxnView, len: u64) -> c_int {
    // SAFETY: as promised by the caller.
    entry(|| unsafe { with_txn(t, |t| Ok(t.set_len(len)?)) })
}

/// `*len` receives the transaction's length (after any
/// `mapstate_txn_view_set_len()`).
///
/// Returns 0, `MAPSTATE_E_INVALID` (`len` NULL), `MAPSTATE_E_BAD_HANDLE`,
/// or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `len` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_len(t: *mut MapstateTxnView, len: *mut u64) -> c_int {
    entry(|| {
        handle::required(len, "len")?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with_txn(t, |t| Ok(t.len())) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// As `mapstate_txn_write_at()`, in a transaction callback: copies `len`
/// bytes from `src` into the transaction at `offset` (`src` may be NULL
/// when `len` is 0, and may not point into the transaction's own bytes).
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS`, `MAPSTATE_E_INVALID`,
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `src` is NULL or
/// readable for `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_write_at(
    t: *mut MapstateTxnView,
    offset: u64,
    src: *const c_void,
    len: u64,
) -> c_int {
    entry(|| {
        // SAFETY: the caller promises `len` readable bytes at `src`.
        let src = unsafe { handle::bytes(src, len, "src") }?;
        // SAFETY: as promised by the caller.
        unsafe { with_txn(t, |t| writer::write_at(t, offset, src)) }
    })
}

/// Copies `len` bytes of the transaction at `offset` (the committed state
/// plus this transaction's changes) into `dst`, as Rust's `Txn::read_at`.
/// `dst` may be NULL when `len` is 0.
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS`, `MAPSTATE_E_INVALID`,
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `t` is NULL or the view of a callback still running; `dst` is NULL or
/// writable for `len` bytes, and not inside the transaction's bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_view_read_at(
    t: *mut MapstateTxnView,
    offset: u64,
    dst: *mut c_void,
    len: u64,
) -> c_int {
    entry(|| {
        // SAFETY: the caller promises `len` writable bytes at `dst`, not
        // the transaction's own.
        let dst = unsafe { handle::bytes_mut(dst, len, "dst") }?;
        // SAFETY: as promised by the caller.
        unsafe { with_txn(t, |t| Ok(t.read_at(offset, dst)?)) }
    })
}
