//! The C API of mapstate: `libmapstate.so`, `libmapstate.a` and
//! `include/mapstate.h` (generated from this crate by cbindgen).
//!
//! Every function returns `int`: 0 or a negative `MAPSTATE_E_*` code, with
//! the message and errno of the last failure on the calling thread from
//! `mapstate_last_error()` and `mapstate_errno()`. No panic unwinds into C:
//! each entry point catches it and returns `MAPSTATE_E_PANIC`. NULL
//! pointers, closed handles (double close), handles used by two threads at
//! once and transaction calls in the wrong order are error codes, never
//! crashes. See `README.md` beside this file for a C example.
//!
//! This crate root only re-exports; the modules are:
//! - `version`: `MAPSTATE_VERSION_*` and `mapstate_version()`;
//! - `error`: the codes, `mapstate_last_error()`, `mapstate_errno()`;
//! - `handle`: the panic guard, handles and the registry of open ones;
//! - `options`: `mapstate_options`;
//! - `live_image`: the names `mapstate_*_live_image` return;
//! - `writer`: open, begin, the writable bytes, commit, abort, close;
//! - `shared`: group commit: a writer many threads use at once, its
//!   transactions run as C callbacks, and the view a callback changes;
//! - `attach`: `mapstate_attach`/`mapstate_detach`, the AIX `shmat(SHM_MAP)` pair;
//! - `reader`: open, consistent copies, waiting for a change, close;
//! - `deprecated`: the old names of renamed functions, calling the new ones.
//!
//! Names follow `mapstate_<object>_<verb>`, as the Rust API does
//! (`mapstate_writer_begin` is `Writer::begin`, `mapstate_txn_commit` is
//! `Txn::commit`, `mapstate_reader_read_at` is `Reader::read_at`).

// The workspace denies `unsafe` outside `mapstate::sys`; this crate is the
// FFI boundary, where C hands over raw pointers, so it needs `unsafe` to
// read them. Every block carries a `// SAFETY:` argument (the
// `undocumented_unsafe_blocks` lint checks that it exists).
#![allow(unsafe_code)]

mod version;

mod error;
mod handle;
mod live_image;
mod options;

// In this order in the header: the writer's functions first.
mod writer;

// Group commit: the shared writer and its transaction views.
mod shared;

mod attach;

mod reader;

// Last in the header: the old names.
mod deprecated;

pub use attach::{
    MAPSTATE_ATTACH_CREATE, mapstate_attach, mapstate_attach_high_water, mapstate_attach_trim,
    mapstate_detach,
};
pub use error::{
    MAPSTATE_E_BAD_HANDLE, MAPSTATE_E_BUSY, MAPSTATE_E_CORRUPT, MAPSTATE_E_FALLOCATE_UNSUPPORTED,
    MAPSTATE_E_FOREIGN, MAPSTATE_E_FOREIGN_LOCK, MAPSTATE_E_IN_CALLBACK, MAPSTATE_E_INVALID,
    MAPSTATE_E_INVALID_SIZE, MAPSTATE_E_IO, MAPSTATE_E_LOCKED, MAPSTATE_E_MEMLOCK,
    MAPSTATE_E_MISALIGNED, MAPSTATE_E_NO_SPACE, MAPSTATE_E_NO_TXN, MAPSTATE_E_NOT_A_FILE,
    MAPSTATE_E_NOT_FOUND, MAPSTATE_E_OTHER, MAPSTATE_E_OUT_OF_BOUNDS, MAPSTATE_E_PANIC,
    MAPSTATE_E_PAST_MAXIMUM, MAPSTATE_E_PERMISSION, MAPSTATE_E_POISONED, MAPSTATE_E_READ_ONLY,
    MAPSTATE_E_READ_ONLY_FILESYSTEM, MAPSTATE_E_TIMEOUT, MAPSTATE_E_TOO_NEW, MAPSTATE_E_TRUNCATED,
    MAPSTATE_E_TXN_OPEN, MAPSTATE_E_UNSUITABLE_FILESYSTEM, MAPSTATE_E_UNSUPPORTED,
    MAPSTATE_E_WRITER_DIED, MAPSTATE_E_WRITER_NOT_VISIBLE, MAPSTATE_OK, mapstate_errno,
    mapstate_error_name, mapstate_last_error,
};
pub use options::{
    MAPSTATE_PAGE_CACHE, MAPSTATE_PERIODIC, MAPSTATE_SYNC, MapstateOptions, mapstate_options_init,
};
pub use reader::{
    MAPSTATE_EVENT_CHANGE, MAPSTATE_EVENT_MISSED, MapstateEvent, MapstateReader,
    mapstate_reader_changes_since, mapstate_reader_close, mapstate_reader_len,
    mapstate_reader_live_image, mapstate_reader_open, mapstate_reader_read_at, mapstate_reader_seq,
    mapstate_reader_snapshot, mapstate_reader_wait_for_change,
};
pub use shared::{
    MapstateShared, MapstateTxnFn, MapstateTxnView, mapstate_shared_checkpoint,
    mapstate_shared_close, mapstate_shared_len, mapstate_shared_open, mapstate_shared_seq,
    mapstate_shared_syncs, mapstate_shared_transaction, mapstate_txn_view_data,
    mapstate_txn_view_extend_on_write, mapstate_txn_view_extend_on_write_from,
    mapstate_txn_view_len, mapstate_txn_view_read_at, mapstate_txn_view_set_len,
    mapstate_txn_view_slice_mut, mapstate_txn_view_write_at, mapstate_writer_share,
};
pub use version::{
    MAPSTATE_VERSION_MAJOR, MAPSTATE_VERSION_MINOR, MAPSTATE_VERSION_PATCH, mapstate_version,
};
pub use writer::{
    MapstateWriter, mapstate_txn_abort, mapstate_txn_commit, mapstate_txn_data,
    mapstate_txn_extend_on_write, mapstate_txn_extend_on_write_from, mapstate_txn_set_len,
    mapstate_txn_slice_mut, mapstate_txn_write_at, mapstate_writer_begin,
    mapstate_writer_checkpoint, mapstate_writer_close, mapstate_writer_len,
    mapstate_writer_live_image, mapstate_writer_open, mapstate_writer_remove, mapstate_writer_seq,
};
// Re-exported like the rest; deprecated for C callers, not for this crate.
#[allow(deprecated)]
pub use deprecated::{
    mapstate_abort, mapstate_begin, mapstate_checkpoint, mapstate_commit, mapstate_read,
    mapstate_set_len, mapstate_wait_for_change, mapstate_write,
};

/// Puts mapstate's SIGSEGV and SIGBUS handler back in front, after the
/// program installed handlers of its own for them. Extend-on-write
/// (`mapstate_txn_extend_on_write()`, `mapstate_attach()`) grows files from
/// a process-wide handler, installed when the first growable region is
/// made; it passes every other fault, and every SIGSEGV or SIGBUS another
/// process sends, to the handler that was in place before it. A program
/// that installs its own handler later takes the growth faults itself: call
/// this after installing yours, and yours becomes the one mapstate passes
/// the other faults to. Does nothing if no growable region was ever made.
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_reinstall_fault_handler() {
    mapstate_rs::signals::reinstall_fault_handler();
}

// Handles may move between threads (C code does that freely): the state
// they own must be `Send`.
const _: () = {
    const fn send<T: Send>() {}
    send::<mapstate_rs::Writer>();
    send::<mapstate_rs::Reader>();
};

// A shared handle is used by many threads at once.
const _: () = {
    const fn sync<T: Send + Sync>() {}
    sync::<mapstate_rs::SharedWriter>();
};
