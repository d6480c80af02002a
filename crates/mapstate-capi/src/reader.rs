//! The reader side: open, consistent copies, the current sequence number
//! and length, waiting for a change, close.

use std::ffi::{c_char, c_int, c_void};
use std::time::Duration;

use mapstate_rs::{Event, Reader};

use crate::error::{Failure, MAPSTATE_E_INVALID_SIZE, MAPSTATE_E_TIMEOUT};
use crate::handle::{self, Handle, READER_MAGIC, entry};
use crate::options::{self, MapstateOptions};

/// An open reader of one state (opaque). Made by `mapstate_reader_open()`,
/// freed by `mapstate_reader_close()`.
pub struct MapstateReader {
    _opaque: [u8; 0],
}

/// Runs `f` on the reader handle `r`.
///
/// # Safety
///
/// `r` is NULL or a handle from `mapstate_reader_open()` not closed yet.
unsafe fn with<R>(
    r: *mut MapstateReader,
    f: impl FnOnce(&mut Reader) -> Result<R, Failure>,
) -> Result<R, Failure> {
    // SAFETY: as promised by the caller.
    let h: &Handle<Reader> = unsafe { handle::get(r, READER_MAGIC) }?;
    h.with(f)
}

/// Opens the state at `path` for reading, in any process, while a writer
/// has it open or not (the live image is rebuilt from the files if the OS
/// restarted since it was last used). Any number of readers per state.
///
/// - `path`: NUL-terminated; any bytes.
/// - `opts`: NULL for the defaults; only `live_dir` is used (it must be the
///   writer's), and only during the call.
/// - `*out`: receives the new handle on success, NULL on failure.
///
/// Returns 0, or `MAPSTATE_E_NOT_FOUND`, `MAPSTATE_E_FOREIGN`,
/// `MAPSTATE_E_TOO_NEW`, `MAPSTATE_E_TRUNCATED`, `MAPSTATE_E_CORRUPT`,
/// `MAPSTATE_E_PERMISSION`, `MAPSTATE_E_NOT_A_FILE`, `MAPSTATE_E_IO`,
/// `MAPSTATE_E_INVALID` (NULL `path` or `out`).
///
/// Ownership: the caller owns the handle and must pass it to
/// `mapstate_reader_close()` once. Thread-safety: a handle may move between
/// threads but is used by one thread at a time (a concurrent call fails with
/// `MAPSTATE_E_BUSY`); open one reader per thread to read in parallel.
///
/// # Safety
///
/// `path` is NULL or NUL-terminated; `opts` is NULL or points to options;
/// `out` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_open(
    path: *const c_char,
    opts: *const MapstateOptions,
    out: *mut *mut MapstateReader,
) -> c_int {
    entry(|| {
        handle::required(out, "out")?;
        // SAFETY: `out` is non-NULL and the caller promises it is writable.
        unsafe { out.write(std::ptr::null_mut()) };
        // SAFETY: the caller promises a NUL-terminated string or NULL.
        let path = unsafe { handle::path(path, "path") }?;
        // SAFETY: the caller promises options or NULL.
        let opts = unsafe { options::from_c(opts) }?;
        let r = opts.reader().open(&path)?;
        let h = Handle::open(READER_MAGIC, r);
        // SAFETY: `out` is non-NULL and writable (above).
        unsafe { out.write(h.cast()) };
        Ok(())
    })
}

/// Copies `len` bytes at `offset` of one committed state into `buf`: never
/// a torn or uncommitted state, and never blocking the writer (the copy is
/// retried while a commit is being applied). `*seq` (if `seq` is not NULL)
/// receives the sequence number of the state copied. `buf` may be NULL when
/// `len` is 0.
///
/// Returns 0, `MAPSTATE_E_OUT_OF_BOUNDS` (the range passes the state's
/// length), `MAPSTATE_E_WRITER_DIED` (the writer died in the middle of
/// applying a commit and this process may not repair it: open the state as
/// a writer), `MAPSTATE_E_INVALID`, `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `buf` is NULL or writable for
/// `len` bytes; `seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_read_at(
    r: *mut MapstateReader,
    offset: u64,
    buf: *mut c_void,
    len: u64,
    seq: *mut u64,
) -> c_int {
    entry(|| {
        // SAFETY: the caller promises `len` writable bytes at `buf`.
        let buf = unsafe { handle::bytes_mut(buf, len, "buf") }?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with(r, |rd| Ok(rd.read_at(offset, buf)?)) }?;
        // SAFETY: the caller promises `seq` is NULL or writable.
        unsafe { handle::put(seq, n) };
        Ok(())
    })
}

/// `*seq` receives the sequence number of the last published commit.
///
/// Returns 0, `MAPSTATE_E_INVALID` (`seq` NULL), `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_seq(r: *mut MapstateReader, seq: *mut u64) -> c_int {
    entry(|| {
        handle::required(seq, "seq")?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with(r, |rd| Ok(rd.seq())) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { seq.write(n) };
        Ok(())
    })
}

/// `*len` receives the state's length as of the last published commit (a
/// commit may change it right after: `mapstate_reader_read_at()` reports
/// `MAPSTATE_E_OUT_OF_BOUNDS` if the state shrank meanwhile).
///
/// Returns 0, `MAPSTATE_E_INVALID` (`len` NULL), `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `len` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_len(r: *mut MapstateReader, len: *mut u64) -> c_int {
    entry(|| {
        handle::required(len, "len")?;
        // SAFETY: as promised by the caller.
        let n = unsafe { with(r, |rd| Ok(rd.len())) }?;
        // SAFETY: non-NULL (above) and writable, as promised.
        unsafe { len.write(n) };
        Ok(())
    })
}

/// Where the reader's live image came from: `*origin` receives `"kept"`
/// (the one in place passed every identity check), `"rebuilt"` (built from
/// the files on disk and put in place) or `"private"` (built for this
/// reader alone: it is not the state's owner); `*rebuilt_because` (if not
/// NULL) receives why it was built (`"missing"`, `"not_the_owners"`,
/// `"other_state"`, `"other_boot"`, `"incomplete"`, `"other_epoch"`: the
/// durable file was restored from a backup, `"behind"`, `"other_version"`)
/// or NULL when it was kept. Static strings: never free them.
///
/// Returns 0, `MAPSTATE_E_INVALID` (`origin` NULL), `MAPSTATE_E_BAD_HANDLE`,
/// or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `origin` is NULL or writable;
/// `rebuilt_because` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_live_image(
    r: *mut MapstateReader,
    origin: *mut *const c_char,
    rebuilt_because: *mut *const c_char,
) -> c_int {
    entry(|| {
        handle::required(origin, "origin")?;
        // SAFETY: as promised by the caller.
        let li = unsafe { with(r, |rd| Ok(rd.live_image())) }?;
        // SAFETY: non-NULL (above) and writable, as promised; the strings
        // are static.
        unsafe { crate::live_image::write(li, origin, rebuilt_because) };
        Ok(())
    })
}

/// Sleeps until a commit newer than `after_seq` is published (by a writer
/// in any process), or `timeout_ms` milliseconds pass (a negative
/// `timeout_ms`, or one of 2^40 or more, waits without limit; 0 only
/// checks). Waiters sleep on a futex in the shared live image and use no
/// CPU; a commit with nobody waiting costs the writer no system call.
/// `*out_seq` (if `out_seq` is not NULL) receives the newest sequence
/// number, also on timeout.
///
/// Typical loop: `seq = 0; for (;;) { mapstate_reader_wait_for_change(r,
/// seq, -1, &seq); mapstate_reader_read_at(r, ...); }`.
///
/// Returns 0 (a newer commit exists: `*out_seq > after_seq`),
/// `MAPSTATE_E_TIMEOUT` (none within the timeout: `*out_seq <= after_seq`),
/// `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`. The handle is busy while
/// the call sleeps.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `out_seq` is NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_wait_for_change(
    r: *mut MapstateReader,
    after_seq: u64,
    timeout_ms: i64,
    out_seq: *mut u64,
) -> c_int {
    entry(|| {
        // Negative, or longer than anyone waits (2^40 ms, 34 years, which
        // also keeps deadline arithmetic from overflowing): no limit.
        let timeout = u64::try_from(timeout_ms)
            .ok()
            .filter(|&ms| ms < 1 << 40)
            .map(Duration::from_millis);
        // SAFETY: as promised by the caller.
        let newest = unsafe {
            with(r, |rd| {
                // `None`: the timeout passed first; `*out_seq` still
                // receives the newest sequence number.
                Ok(rd
                    .wait_for_change(after_seq, timeout)?
                    .unwrap_or_else(|| rd.seq()))
            })
        }?;
        // SAFETY: the caller promises `out_seq` is NULL or writable.
        unsafe { handle::put(out_seq, newest) };
        // `Some(n)` has `n > after_seq`: success. After `None`, a commit
        // may have landed since the deadline: that is a success too, so
        // that a timeout never hands out a newer sequence number (a caller
        // looping on `*out_seq` would skip that commit).
        if newest > after_seq {
            Ok(())
        } else {
            Err(Failure::new(
                MAPSTATE_E_TIMEOUT,
                format!(
                    "no commit after {after_seq} within {timeout_ms} ms (the last is {newest})"
                ),
            ))
        }
    })
}

/// What one entry of `mapstate_reader_changes_since()` is: a byte range one
/// commit changed.
pub const MAPSTATE_EVENT_CHANGE: u32 = 0;
/// What one entry of `mapstate_reader_changes_since()` is: commits this
/// reader can no longer list (they left the ring of recent commits in the
/// live image): re-read whatever you derive from the state.
pub const MAPSTATE_EVENT_MISSED: u32 = 1;

/// One entry of `mapstate_reader_changes_since()`: a byte range one commit
/// changed (`MAPSTATE_EVENT_CHANGE`; a commit that changed several ranges
/// gives one entry per range, with the same `seq`), or commits the reader
/// missed (`MAPSTATE_EVENT_MISSED`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MapstateEvent {
    /// `MAPSTATE_EVENT_CHANGE` or `MAPSTATE_EVENT_MISSED`.
    pub kind: u32,
    /// A change: whether the commit's ranges were widened to this one
    /// covering range (it had more than the ring holds): never narrower
    /// than the truth.
    pub widened: bool,
    /// A change: the commit's sequence number. Missed: the first missed one.
    pub seq: u64,
    /// A change: `seq` again. Missed: the last missed sequence number.
    pub last_seq: u64,
    /// A change: the first byte changed (a length change counts as a change
    /// of the bytes between the old and the new length). Missed: 0.
    pub offset: u64,
    /// A change: the number of bytes changed from `offset`. Missed: 0.
    pub len: u64,
}

/// The commits published after `after_seq`, oldest first, as entries of
/// `events` (at most `cap`): each byte range a commit changed, and the
/// commits that left the ring of recent commits (about the last 50) before
/// this call, as one `MAPSTATE_EVENT_MISSED` entry. Does not wait: call it
/// after `mapstate_reader_wait_for_change()`. The Rust `Reader::changes_since`.
///
/// - `*count` receives the number of entries written.
/// - `*through_seq` (if not NULL) receives the newest sequence number the
///   entries cover: `after_seq` if there are none; if `cap` was too small
///   for every commit, call again with it as `after_seq` for the rest (a
///   commit's entries are never split between calls).
///
/// Returns 0, `MAPSTATE_E_INVALID_SIZE` (`cap` cannot hold the entries of
/// the first commit: the message says how many it needs),
/// `MAPSTATE_E_INVALID` (`count` NULL, or `events` NULL with a `cap` above
/// 0), `MAPSTATE_E_BAD_HANDLE`, or `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `events` is NULL or writable for
/// `cap` entries; `count` and `through_seq` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_changes_since(
    r: *mut MapstateReader,
    after_seq: u64,
    events: *mut MapstateEvent,
    cap: u64,
    count: *mut u64,
    through_seq: *mut u64,
) -> c_int {
    entry(|| {
        handle::required(count, "count")?;
        let cap = handle::size(cap, "cap")?;
        if cap > 0 {
            handle::required(events, "events")?;
        }
        // SAFETY: as promised by the caller.
        let all = unsafe { with(r, |r| Ok(r.changes_since(after_seq))) }?;
        let mut out: Vec<MapstateEvent> = Vec::new();
        let mut through = after_seq;
        for e in &all {
            let entries = entries_of(e);
            if out.len() + entries.len() > cap {
                if out.is_empty() {
                    return Err(Failure::new(
                        MAPSTATE_E_INVALID_SIZE,
                        format!(
                            "commit {} changed {} ranges, more than cap ({cap}) entries hold: \
                             pass room for at least {} entries",
                            e.seq(),
                            entries.len(),
                            entries.len()
                        ),
                    ));
                }
                break;
            }
            out.extend(entries);
            through = e.seq();
        }
        if !out.is_empty() {
            // SAFETY: `events` is non-NULL (cap > 0, checked above) and
            // writable for `cap >= out.len()` entries, as the caller
            // promises; `out` is a separate allocation.
            unsafe { std::ptr::copy_nonoverlapping(out.as_ptr(), events, out.len()) };
        }
        // SAFETY: non-NULL (above) and writable, as the caller promises.
        unsafe { count.write(out.len() as u64) };
        // SAFETY: the caller promises NULL or writable.
        unsafe { handle::put(through_seq, through) };
        Ok(())
    })
}

/// The C entries of one event: one per changed range (one of length 0 if
/// it had none), or one for a miss.
fn entries_of(e: &Event) -> Vec<MapstateEvent> {
    let entry = |kind, widened, seq, last_seq, range: std::ops::Range<u64>| MapstateEvent {
        kind,
        widened,
        seq,
        last_seq,
        offset: range.start,
        len: range.end - range.start,
    };
    match e {
        Event::Change(c) if c.ranges.is_empty() => {
            vec![entry(MAPSTATE_EVENT_CHANGE, c.widened, c.seq, c.seq, 0..0)]
        }
        Event::Change(c) => c
            .ranges
            .iter()
            .map(|r| entry(MAPSTATE_EVENT_CHANGE, c.widened, c.seq, c.seq, r.clone()))
            .collect(),
        Event::Missed { first, last } => {
            vec![entry(MAPSTATE_EVENT_MISSED, false, *first, *last, 0..0)]
        }
    }
}

/// Copies the whole state as of one commit into `buf` (`cap` bytes): its
/// bytes at that commit, never torn, however its length changes meanwhile.
/// The Rust `Reader::snapshot`.
///
/// - `*len` receives the state's length at that commit (also when `cap` is
///   too small: then nothing is copied; call again with that many bytes).
/// - `*seq` (if not NULL) receives the commit's sequence number.
///
/// Returns 0, `MAPSTATE_E_INVALID_SIZE` (the state is longer than `cap`;
/// `*len` says how long), `MAPSTATE_E_WRITER_DIED`,
/// `MAPSTATE_E_WRITER_NOT_VISIBLE`, `MAPSTATE_E_INVALID` (`len` NULL, or
/// `buf` NULL with a `cap` above 0), `MAPSTATE_E_BAD_HANDLE`, or
/// `MAPSTATE_E_BUSY`.
///
/// # Safety
///
/// `r` is NULL or an open reader handle; `buf` is NULL or writable for
/// `cap` bytes; `len` and `seq` are NULL or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_snapshot(
    r: *mut MapstateReader,
    buf: *mut c_void,
    cap: u64,
    len: *mut u64,
    seq: *mut u64,
) -> c_int {
    entry(|| {
        handle::required(len, "len")?;
        // SAFETY: the caller promises `cap` writable bytes at `buf`.
        let buf = unsafe { handle::bytes_mut(buf, cap, "buf") }?;
        // SAFETY: as promised by the caller.
        let (at, bytes) = unsafe { with(r, |r| Ok(r.snapshot()?)) }?;
        // SAFETY: non-NULL (above) and writable, as the caller promises.
        unsafe { len.write(bytes.len() as u64) };
        let Some(dst) = buf.get_mut(..bytes.len()) else {
            return Err(Failure::new(
                MAPSTATE_E_INVALID_SIZE,
                format!(
                    "the state is {} bytes at commit {at}, longer than the buffer's {cap}: \
                     call again with a buffer of at least *len bytes",
                    bytes.len()
                ),
            ));
        };
        dst.copy_from_slice(&bytes);
        // SAFETY: the caller promises NULL or writable.
        unsafe { handle::put(seq, at) };
        Ok(())
    })
}

/// Closes a reader and frees the handle.
///
/// Returns 0, `MAPSTATE_E_BAD_HANDLE` (NULL, or closed already: a double
/// close is reported, not a crash, as long as no new handle got the same
/// address meanwhile), or `MAPSTATE_E_BUSY` (in use by another thread, for
/// example sleeping in `mapstate_reader_wait_for_change()`: not closed).
///
/// # Safety
///
/// `r` is NULL or a handle from `mapstate_reader_open()`; if it was closed
/// already, no handle opened since may have the same address.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_reader_close(r: *mut MapstateReader) -> c_int {
    entry(|| {
        // SAFETY: as promised by the caller.
        let reader: Reader = unsafe { handle::close(r, READER_MAGIC) }?;
        drop(reader);
        Ok(())
    })
}
