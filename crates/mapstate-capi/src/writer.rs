//! The writer side: open, transactions (begin, the writable bytes, `set_len`,
//! write, commit, abort), checkpoint, close.
//!
//! A `Txn<'w>` borrows its `Writer`. C holds both in one handle, so the
//! writer lives in a heap allocation of its own that never moves, and the
//! open transaction is stored with its lifetime erased; [`WriterState`]
//! keeps the borrow rules by hand (see the SAFETY comments).

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;

use mapstate_rs::{LiveImage, Txn, Writer};

use crate::error::{Failure, MAPSTATE_E_NO_TXN, MAPSTATE_E_TXN_OPEN};
use crate::handle::{self, Handle, WRITER_MAGIC, entry};
use crate::options::{self, MapstateOptions};

/// An open writer of one state (opaque). Made by `mapstate_writer_open()`,
/// freed by `mapstate_writer_close()`.
pub struct MapstateWriter {
    _opaque: [u8; 0],
}

/// What a writer handle holds.
pub(crate) struct WriterState {
    /// The open transaction. Its `'static` is a lie told to the type
    /// system: it borrows `*writer`, and is always dropped before it.
    txn: Option<Txn<'static>>,
    /// The writer: a leaked `Box` (see `new`), freed in `Drop` or by `into_writer`.
    writer: NonNull<Writer>,
    /// The last committed sequence number and length (the transaction
    /// borrows the writer, so they are kept here).
    seq: u64,
    len: u64,
    /// Where the writer's live image came from (fixed at open).
    live_image: LiveImage,
}

impl WriterState {
    fn new(w: Writer) -> Self {
        Self {
            seq: w.seq(),
            len: w.len(),
            live_image: w.live_image(),
            txn: None,
            writer: NonNull::from(Box::leak(Box::new(w))),
        }
    }

    /// The writer, when no transaction borrows it.
    fn writer(&mut self) -> Result<&mut Writer, Failure> {
        if self.txn.is_some() {
            return Err(Failure::new(
                MAPSTATE_E_TXN_OPEN,
                "a transaction is open: commit or abort it first",
            ));
        }
        // SAFETY: `writer` is a leaked `Box` (`new`), freed only with
        // this state; no transaction exists, so nothing else refers to it,
        // and the `&mut self` borrow bounds the one returned.
        Ok(unsafe { self.writer.as_mut() })
    }

    fn txn(&mut self) -> Result<&mut Txn<'static>, Failure> {
        self.txn.as_mut().ok_or_else(no_txn)
    }

    fn begin(&mut self) -> Result<(), Failure> {
        let txn = self.writer()?.begin();
        // SAFETY: erasing the lifetime of the borrow of `*self.writer`.
        // That writer is a heap allocation of its own that never moves
        // (only the raw pointer to it is moved with the handle) and is
        // freed only after `self.txn` is dropped (`Drop`, `into_writer`).
        // While `self.txn` is `Some`, `writer()` refuses to make another
        // reference to it, so the transaction's `&mut Writer` stays the only
        // one, as it would be under the real lifetime.
        let txn = unsafe { std::mem::transmute::<Txn<'_>, Txn<'static>>(txn) };
        self.txn = Some(txn);
        Ok(())
    }

    /// Aborts any open transaction and gives the writer back.
    fn into_writer(mut self) -> Box<Writer> {
        drop(self.txn.take());
        let p = self.writer;
        std::mem::forget(self); // no `Drop`: the writer is returned, not freed
        // SAFETY: a leaked `Box` (`new`); the transaction that
        // borrowed it is gone and `self` is forgotten, so this is the owner.
        unsafe { Box::from_raw(p.as_ptr()) }
    }
}

impl Drop for WriterState {
    fn drop(&mut self) {
        drop(self.txn.take()); // the borrow ends before the writer goes
        // SAFETY: a leaked `Box` (`new`), freed nowhere else
        // (`into_writer` forgets `self`); no transaction borrows it now.
        drop(unsafe { Box::from_raw(self.writer.as_ptr()) });
    }
}

fn no_txn() -> Failure {
    Failure::new(
        MAPSTATE_E_NO_TXN,
        "no transaction is open: call mapstate_writer_begin() first",
    )
}

/// Runs `f` on the writer handle `w`.
///
/// # Safety
///
/// `w` is NULL or a handle from `mapstate_writer_open()` not closed yet.
unsafe fn with<R>(
    w: *mut MapstateWriter,
    f: impl FnOnce(&mut WriterState) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: as promised by the caller.
    let h: &Handle<WriterState> = unsafe { handle::get(w, WRITER_MAGIC) }?;
    h.with(f)
}

/// The body of the functions that hand out the open transaction's bytes:
/// `take` returns them (as an address) and the number `*out` receives;
/// `*data` receives the address.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `data` and `out` are NULL or
/// writable.
unsafe fn hand_out(
    w: *mut MapstateWriter,
    data: *mut *mut u8,
    out: *mut u64,
    take: impl FnOnce(&mut Txn<'static>) -> Result<(*mut u8, u64), Failure>,
) -> c_int {
    entry(|| {
        handle::required(data, "data")?;
        // SAFETY: as promised by the caller.
        let (p, n) = unsafe { with(w, |s| take(s.txn()?)) }?;
        // SAFETY: `data` is non-NULL (above) and the caller promises it is writable.
        unsafe { data.write(p) };
        // SAFETY: the caller promises `out` is NULL or writable.
        unsafe { handle::put(out, n) };
        Ok(())
    })
}

/// Opens the state at `path` for writing (creating it if `opts->create` is
/// set), recovering from any crash of a previous writer: an interrupted
/// checkpoint is finished and committed log records not yet applied are
/// replayed. Only one writer per state at a time, in any process.
///
/// - `path`: NUL-terminated; any bytes (Linux paths need not be UTF-8).
///   The state also uses `PATH-wal`, `PATH-ckpt` and a live image.
/// - `opts`: NULL for `mapstate_options_default()`; only read during the call.
/// - `*out`: receives the new handle on success, NULL on failure.
///
/// Returns 0, or `MAPSTATE_E_NOT_FOUND` (no such file and no `create`),
/// `MAPSTATE_E_LOCKED` (another writer holds it; the message names its pid),
/// `MAPSTATE_E_FOREIGN` (not a mapstate file: never overwritten),
/// `MAPSTATE_E_TOO_NEW`, `MAPSTATE_E_TRUNCATED`, `MAPSTATE_E_CORRUPT`,
/// `MAPSTATE_E_PERMISSION`, `MAPSTATE_E_NOT_A_FILE`, `MAPSTATE_E_INVALID_SIZE`,
/// `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_IO`, `MAPSTATE_E_INVALID` (NULL `path`
/// or `out`, unknown durability).
///
/// Ownership: the caller owns the handle and must pass it to
/// `mapstate_writer_close()` once. Thread-safety: a handle may move between
/// threads but is used by one thread at a time (a concurrent call fails with
/// `MAPSTATE_E_BUSY`). After `fork()`, the child must not use the parent's
/// handles.
///
/// # Safety
///
/// `path` is NULL or NUL-terminated; `opts` is NULL or points to options;
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_open(
    path: *const c_char,
    opts: *const MapstateOptions,
    out: *mut *mut MapstateWriter,
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
        let h = Handle::open(WRITER_MAGIC, WriterState::new(w));
        // SAFETY: `out` is non-NULL and writable (above).
        unsafe { out.write(h.cast()) };
        Ok(())
    })
}

/// Starts a transaction. Nothing it changes is visible to anyone (other
/// processes, readers, even a reader in this process) until
/// `mapstate_txn_commit()`; a crash or `mapstate_txn_abort()` discards it.
///
/// Returns 0, `MAPSTATE_E_TXN_OPEN` if a transaction is already open,
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_begin(w: *mut MapstateWriter) -> c_int {
    // SAFETY: as promised by the caller.
    entry(|| unsafe { with(w, WriterState::begin) })
}

/// The open transaction's bytes, writable with plain stores: byte `i` of
/// the state is `(*data)[i]` for `i < *len` (the transaction's length).
/// Store into them freely (memcpy, a struct pointer, a C library filling a
/// buffer): `mapstate_txn_commit()` finds the written pages and makes exactly
/// those changes visible, all at once. Reading them shows the committed
/// state plus this transaction's changes.
///
/// - `*data`: the address of byte 0 (page-aligned). It stays valid until the
///   transaction ends (`mapstate_txn_commit()`, `mapstate_txn_abort()`,
///   `mapstate_writer_close()`); do not touch it after that. Stores past
///   `*len` are undefined behaviour (they may fault).
/// - `*len`: the transaction's length; after `mapstate_txn_set_len()` call this
///   function again for the new length (and address).
///
/// Returns 0, `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_INVALID` (`data` NULL),
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`. The memory belongs to the
/// writer; other threads may store through the pointer only while no
/// mapstate call on this handle runs.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `data` and `len` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_data(
    w: *mut MapstateWriter,
    data: *mut *mut u8,
    len: *mut u64,
) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        hand_out(w, data, len, |t| {
            let bytes = t.as_mut_slice();
            Ok((bytes.as_mut_ptr(), bytes.len() as u64))
        })
    }
}

/// The open transaction's bytes `offset..offset + len`, writable with plain
/// stores, as `mapstate_txn_data()` but only there: the commit looks for the
/// pages written in that range alone, so its cost follows the range, not
/// the state (with `mapstate_txn_data()` it searches the whole state, about
/// 1 ms per GiB).
///
/// - `*data`: the address of byte `offset`, valid until the transaction
///   ends (as for `mapstate_txn_data()`). Stores outside the range are
///   undefined behaviour: they may be lost or committed.
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS` (the range is not inside the
/// transaction's length), `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_INVALID` (`data`
/// NULL), `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `data` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_slice_mut(
    w: *mut MapstateWriter,
    offset: u64,
    len: u64,
    data: *mut *mut u8,
) -> c_int {
    // An end past 2^64 - 1 is out of bounds all the same.
    let end = offset.saturating_add(len);
    // SAFETY: as promised by the caller; no count is returned.
    unsafe {
        hand_out(w, data, std::ptr::null_mut(), |t| {
            Ok((t.slice_mut(offset..end)?.as_mut_ptr(), 0))
        })
    }
}

/// Extend-on-write: the open transaction's bytes up to the state's maximum
/// size, writable with plain stores. Bytes past the state's length read as
/// zeros; stores past it grow the state with no call (a SIGSEGV handler
/// maps more as they happen, at the same address), and at
/// `mapstate_txn_commit()` the length becomes the end of the last page written
/// (a multiple of 4096, or the maximum size), unless the transaction called
/// `mapstate_txn_set_len()`, whose length is kept. If the memory holding the
/// live image runs out, the stores land in scratch pages and
/// `mapstate_txn_commit()` fails with `MAPSTATE_E_NO_SPACE`, discarding the
/// transaction; a store in the 1 MiB just past the maximum size makes it
/// fail with `MAPSTATE_E_PAST_MAXIMUM`; stores further out are ordinary
/// segfaults.
///
/// - `*data`: the address of byte 0, valid until the transaction ends (as
///   for `mapstate_txn_data()`).
/// - `*max`: the maximum size.
///
/// Returns 0, `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_INVALID` (`data` NULL),
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `data` and `max` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_extend_on_write(
    w: *mut MapstateWriter,
    data: *mut *mut u8,
    max: *mut u64,
) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        hand_out(w, data, max, |t| {
            let bytes = t.extend_on_write();
            Ok((bytes.as_mut_ptr(), bytes.len() as u64))
        })
    }
}

/// `mapstate_txn_extend_on_write()` from `offset` on: `*data` is the
/// address of byte `offset` of the state, writable up to the maximum size
/// (`*max` is still the maximum size). The commit looks for the pages
/// written from `offset` on alone, so an append that starts at the state's
/// end costs what the record costs, not what the state costs. Stores
/// before `offset` are undefined behaviour (they may be lost or
/// committed).
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS` (`offset` past the maximum size),
/// `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_INVALID` (`data` NULL),
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `data` and `max` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_extend_on_write_from(
    w: *mut MapstateWriter,
    offset: u64,
    data: *mut *mut u8,
    max: *mut u64,
) -> c_int {
    // SAFETY: as promised by the caller.
    unsafe {
        hand_out(w, data, max, |t| {
            let bytes = t.extend_on_write_from(offset)?;
            Ok((bytes.as_mut_ptr(), offset + bytes.len() as u64))
        })
    }
}

/// Changes the transaction's length to `len` bytes: growing reads as zeros,
/// at most the state's maximum size. Call `mapstate_txn_data()` again
/// afterwards for the new length.
///
/// Returns 0, `MAPSTATE_E_INVALID_SIZE` (past the maximum size),
/// `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_IO`, `MAPSTATE_E_NO_TXN`,
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`. The transaction stays open
/// after a failure.
///
/// # Safety
///
/// `w` is NULL or an open writer handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_set_len(w: *mut MapstateWriter, len: u64) -> c_int {
    // SAFETY: as promised by the caller.
    entry(|| unsafe { with(w, |s| Ok(s.txn()?.set_len(len)?)) })
}

/// Copies `len` bytes from `src` into the transaction at `offset` (an
/// explicit change: cheaper at commit than a free store through
/// `mapstate_txn_data()`, since no page needs to be found). `src` may be
/// NULL when `len` is 0; it may not point into the transaction's own bytes
/// (`MAPSTATE_E_INVALID`: use memmove on the pointer from
/// `mapstate_txn_data()` for that).
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS` (past the transaction's length),
/// `MAPSTATE_E_INVALID`, `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `src` is NULL or readable for
/// `len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_write_at(
    w: *mut MapstateWriter,
    offset: u64,
    src: *const c_void,
    len: u64,
) -> c_int {
    entry(|| {
        // SAFETY: the caller promises `len` readable bytes at `src`.
        let src = unsafe { handle::bytes(src, len, "src") }?;
        // SAFETY: as promised by the caller.
        unsafe { with(w, |s| write_at(s.txn()?, offset, src)) }
    })
}

/// `t.write_at(offset, src)`, refusing a `src` inside the transaction's own
/// bytes (`src` would alias the `&mut` the write takes).
pub(crate) fn write_at(t: &mut Txn<'_>, offset: u64, src: &[u8]) -> Result<(), Failure> {
    let view = t.as_slice().as_ptr_range();
    let from = src.as_ptr_range();
    if !src.is_empty() && from.start < view.end && view.start < from.end {
        return Err(Failure::invalid(
            "src points into the transaction's own bytes: \
             use memmove on the pointer from mapstate_txn_data() instead",
        ));
    }
    Ok(t.write_at(offset, src)?)
}

/// Commits the open transaction: every change becomes visible to every
/// process at once, with the durability the writer was opened with, and
/// survives any crash of this process from now on. `*seq` (if `seq` is not
/// NULL) receives the commit's sequence number (1 for the first commit of a
/// new state, then +1 per commit that changes something; a transaction that
/// changed nothing commits nothing and gets the previous number).
///
/// Whatever it returns, the transaction is over: on failure it is discarded
/// (the state is as before `mapstate_writer_begin()`), and pointers from
/// `mapstate_txn_data()` are invalid.
///
/// Returns 0, `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_POISONED` (an earlier sync
/// failed: close and reopen), `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_IO`,
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_commit(w: *mut MapstateWriter, seq: *mut u64) -> c_int {
    entry(|| {
        // SAFETY: as promised by the caller.
        let n = unsafe {
            with(w, |s| {
                let n = s.txn.take().ok_or_else(no_txn)?.commit()?;
                // The writer's, not the transaction's: an extend-on-write
                // commit sets the length from the pages written.
                s.len = s.writer()?.len();
                s.seq = n;
                Ok(n)
            })
        }?;
        // SAFETY: the caller promises `seq` is NULL or writable.
        unsafe { handle::put(seq, n) };
        Ok(())
    })
}

/// Discards the open transaction: the state stays as it was committed, and
/// pointers from `mapstate_txn_data()` are invalid.
///
/// Returns 0, `MAPSTATE_E_NO_TXN`, `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_txn_abort(w: *mut MapstateWriter) -> c_int {
    entry(|| {
        // SAFETY: as promised by the caller.
        unsafe {
            with(w, |s| {
                s.txn.take().ok_or_else(no_txn)?.abort();
                Ok(())
            })
        }
    })
}

/// `*seq` receives the sequence number of the last commit (0 for a new
/// state), whether or not a transaction is open.
///
/// Returns 0, `MAPSTATE_E_INVALID` (`seq` NULL), `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_seq(w: *mut MapstateWriter, seq: *mut u64) -> c_int {
    entry(|| {
        handle::required(seq, "seq")?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with(w, |s| Ok(s.seq)) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { seq.write(n) };
        Ok(())
    })
}

/// Where the writer's live image came from, as
/// `mapstate_reader_live_image()` says for a reader (`"kept"` or
/// `"rebuilt"`, and why).
///
/// Returns 0, `MAPSTATE_E_INVALID` (`origin` NULL), `MAPSTATE_E_BAD_HANDLE`,
/// or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `origin` is NULL or writable;
/// `rebuilt_because` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_live_image(
    w: *mut MapstateWriter,
    origin: *mut *const c_char,
    rebuilt_because: *mut *const c_char,
) -> c_int {
    entry(|| {
        handle::required(origin, "origin")?;
        // SAFETY: as promised by the caller.
        let li = unsafe { with(w, |s| Ok(s.live_image)) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { crate::live_image::write(li, origin, rebuilt_because) };
        Ok(())
    })
}

/// `*len` receives the committed length of the state in bytes (an open
/// transaction's length is what `mapstate_txn_data()` reports).
///
/// Returns 0, `MAPSTATE_E_INVALID` (`len` NULL), `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_len(w: *mut MapstateWriter, len: *mut u64) -> c_int {
    entry(|| {
        handle::required(len, "len")?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with(w, |s| Ok(s.len)) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// Writes every page changed since the last checkpoint into the file and
/// empties the log (crash-safe at every step, through a journal). Happens
/// on its own when the log fills up and on close; call it to bound the
/// work of the next open or to make `MAPSTATE_PAGE_CACHE` commits durable.
///
/// Returns 0, `MAPSTATE_E_TXN_OPEN`, `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_IO`,
/// `MAPSTATE_E_POISONED`, `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `w` is NULL or an open writer handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_checkpoint(w: *mut MapstateWriter) -> c_int {
    // SAFETY: as promised by the caller.
    entry(|| unsafe { with(w, |s| Ok(s.writer()?.checkpoint()?)) })
}

/// Closes a writer: aborts an open transaction, checkpoints, releases the
/// writer lock, and frees the handle. The handle is freed even when the
/// checkpoint fails (the error is returned; every returned commit is still
/// in the log and is recovered at the next open).
///
/// Returns 0, `MAPSTATE_E_IO`, `MAPSTATE_E_NO_SPACE`, `MAPSTATE_E_POISONED`
/// (the handle is freed in these cases), `MAPSTATE_E_BAD_HANDLE` (NULL, or
/// closed already: a double close is reported, not a crash, as long as no
/// new handle got the same address meanwhile), or `MAPSTATE_E_BUSY` (in use
/// by another thread: not closed).
///
/// # Safety
///
/// `w` is NULL or a handle from `mapstate_writer_open()`; if it was closed
/// already, no handle opened since may have the same address.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_close(w: *mut MapstateWriter) -> c_int {
    entry(|| {
        // SAFETY: as promised by the caller.
        let state: WriterState = unsafe { handle::close(w, WRITER_MAGIC) }?;
        Ok(state.into_writer().close()?)
    })
}

/// Deletes the state: its file, its log (`PATH-wal`), its checkpoint
/// journal (`PATH-ckpt`) and its live image, while this writer still holds
/// the writer lock (so no other writer is using it), and frees the handle.
/// An open transaction is discarded first. Readers that have the state
/// open keep reading it as it was; nothing is checkpointed (it would be
/// deleted).
///
/// Returns 0, `MAPSTATE_E_IO` (a file could not be deleted: the message
/// names it; the handle is freed), `MAPSTATE_E_BAD_HANDLE` (NULL, or
/// closed already), or `MAPSTATE_E_BUSY` (in use by another thread: not
/// removed).
///
/// # Safety
///
/// As for `mapstate_writer_close()`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_writer_remove(w: *mut MapstateWriter) -> c_int {
    entry(|| {
        // SAFETY: as promised by the caller.
        let state: WriterState = unsafe { handle::close(w, WRITER_MAGIC) }?;
        Ok(state.into_writer().remove()?)
    })
}

/// Closes the writer handle `w` without closing its writer, and returns
/// the writer (for `mapstate_writer_share()`). Fails, leaving `w` open,
/// with `MAPSTATE_E_TXN_OPEN` if a transaction is open.
///
/// # Safety
///
/// As for `mapstate_writer_close()`.
pub(crate) unsafe fn take_writer(w: *mut MapstateWriter) -> Result<Box<Writer>, Failure> {
    // SAFETY: as promised by the caller.
    let state: WriterState = unsafe {
        handle::close_if(w, WRITER_MAGIC, |s: &mut WriterState| {
            s.writer().map(|_| ())
        })
    }?;
    Ok(state.into_writer())
}
