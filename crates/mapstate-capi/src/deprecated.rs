//! The old names of renamed functions, kept so that programs written
//! against them still compile and link: each is an exported function that
//! calls its new name (same arguments, return codes and behaviour).
//!
//! `#[deprecated]` makes cbindgen mark each declaration in the header with
//! `MAPSTATE_DEPRECATED("...")` (`[fn] deprecated_with_note` in
//! `cbindgen.toml`), which gcc and clang turn into a
//! `-Wdeprecated-declarations` warning naming the new function.
//!
//! The names follow `mapstate_<object>_<verb>`, as the Rust API does:
//! `Writer::begin`, `Writer::checkpoint`, `Txn::set_len`, `Txn::write_at`,
//! `Txn::commit`, `Txn::abort`, `Reader::read_at`, `Reader::wait_for_change`.

use std::ffi::{c_int, c_void};

use crate::reader::{MapstateReader, mapstate_reader_read_at, mapstate_reader_wait_for_change};
use crate::writer::{
    MapstateWriter, mapstate_txn_abort, mapstate_txn_commit, mapstate_txn_set_len,
    mapstate_txn_write_at, mapstate_writer_begin, mapstate_writer_checkpoint,
};

/// Deprecated: the old name of `mapstate_writer_begin()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_writer_begin()`.
#[deprecated(note = "renamed: use mapstate_writer_begin() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_begin(w: *mut MapstateWriter) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_writer_begin(w) }
}

/// Deprecated: the old name of `mapstate_writer_checkpoint()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_writer_checkpoint()`.
#[deprecated(note = "renamed: use mapstate_writer_checkpoint() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_checkpoint(w: *mut MapstateWriter) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_writer_checkpoint(w) }
}

/// Deprecated: the old name of `mapstate_txn_set_len()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_txn_set_len()`.
#[deprecated(note = "renamed: use mapstate_txn_set_len() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_set_len(w: *mut MapstateWriter, len: u64) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_txn_set_len(w, len) }
}

/// Deprecated: the old name of `mapstate_txn_write_at()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_txn_write_at()`.
#[deprecated(note = "renamed: use mapstate_txn_write_at() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_write(
    w: *mut MapstateWriter,
    offset: u64,
    src: *const c_void,
    len: u64,
) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_txn_write_at(w, offset, src, len) }
}

/// Deprecated: the old name of `mapstate_txn_commit()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_txn_commit()`.
#[deprecated(note = "renamed: use mapstate_txn_commit() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_commit(w: *mut MapstateWriter, seq: *mut u64) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_txn_commit(w, seq) }
}

/// Deprecated: the old name of `mapstate_txn_abort()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_txn_abort()`.
#[deprecated(note = "renamed: use mapstate_txn_abort() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_abort(w: *mut MapstateWriter) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_txn_abort(w) }
}

/// Deprecated: the old name of `mapstate_reader_read_at()`, which it calls.
///
/// # Safety
///
/// As for `mapstate_reader_read_at()`.
#[deprecated(note = "renamed: use mapstate_reader_read_at() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_read(
    r: *mut MapstateReader,
    offset: u64,
    buf: *mut c_void,
    len: u64,
    seq: *mut u64,
) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_reader_read_at(r, offset, buf, len, seq) }
}

/// Deprecated: the old name of `mapstate_reader_wait_for_change()`, which
/// it calls.
///
/// # Safety
///
/// As for `mapstate_reader_wait_for_change()`.
#[deprecated(note = "renamed: use mapstate_reader_wait_for_change() instead")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_wait_for_change(
    r: *mut MapstateReader,
    after_seq: u64,
    timeout_ms: i64,
    out_seq: *mut u64,
) -> c_int {
    // SAFETY: the same contract, passed on unchanged.
    unsafe { mapstate_reader_wait_for_change(r, after_seq, timeout_ms, out_seq) }
}
