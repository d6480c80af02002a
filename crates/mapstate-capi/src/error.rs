//! Error codes, and the message and errno of the last failure on each thread.
//!
//! Every function of the C API returns `int`: `MAPSTATE_OK` (0) or one of
//! the negative `MAPSTATE_E_*` codes below. Codes 1 to 24 name the variants
//! of the Rust `mapstate::Error`; codes from 40 on name misuse of the C API
//! itself. A code's value never changes and is never reused; new codes may
//! be added, so treat an unknown negative code as an error of its own.

use std::cell::RefCell;
use std::ffi::{CString, c_char, c_int};

use mapstate_rs::Error;

/// Success.
pub const MAPSTATE_OK: c_int = 0;
/// A system call on a file failed (`mapstate_errno()` has the errno).
pub const MAPSTATE_E_IO: c_int = -1;
/// The file does not exist (and `create` was not set).
pub const MAPSTATE_E_NOT_FOUND: c_int = -2;
/// The process may not open the file as asked (EACCES, EPERM or EROFS).
pub const MAPSTATE_E_PERMISSION: c_int = -3;
/// The path names a directory, device, FIFO or socket, not a regular file.
pub const MAPSTATE_E_NOT_A_FILE: c_int = -4;
/// A length or maximum size cannot be used (too large, or past the maximum).
pub const MAPSTATE_E_INVALID_SIZE: c_int = -5;
/// A byte range reaches past the end of the state.
pub const MAPSTATE_E_OUT_OF_BOUNDS: c_int = -6;
/// A typed access at an offset not aligned for its type.
pub const MAPSTATE_E_MISALIGNED: c_int = -7;
/// A write to something read-only.
pub const MAPSTATE_E_READ_ONLY: c_int = -8;
/// The filesystem cannot preallocate blocks, so mapstate will not grow files there.
pub const MAPSTATE_E_FALLOCATE_UNSUPPORTED: c_int = -9;
/// The filesystem or a quota is full (ENOSPC or EDQUOT).
pub const MAPSTATE_E_NO_SPACE: c_int = -10;
/// Locking pages in memory would pass `RLIMIT_MEMLOCK`.
pub const MAPSTATE_E_MEMLOCK: c_int = -11;
/// A feature the filesystem or kernel does not offer.
pub const MAPSTATE_E_UNSUPPORTED: c_int = -12;
/// The file is not a mapstate file; mapstate never overwrites it.
pub const MAPSTATE_E_FOREIGN: c_int = -13;
/// The file was written by a newer mapstate.
pub const MAPSTATE_E_TOO_NEW: c_int = -14;
/// The file is shorter than its header says.
pub const MAPSTATE_E_TRUNCATED: c_int = -15;
/// The file's checksums or fields are inconsistent.
pub const MAPSTATE_E_CORRUPT: c_int = -16;
/// Another writer holds the state; the message names its pid.
pub const MAPSTATE_E_LOCKED: c_int = -17;
/// An earlier I/O error (a failed sync) makes every later call fail: close
/// the handle and open the state again.
pub const MAPSTATE_E_POISONED: c_int = -18;
/// The writer died while applying a commit and this reader may not repair
/// it: open the state as a writer (or run `mapstate recover`).
pub const MAPSTATE_E_WRITER_DIED: c_int = -19;
/// An extend-on-write store landed past the maximum size (the transaction
/// was discarded).
pub const MAPSTATE_E_PAST_MAXIMUM: c_int = -20;
/// The filesystem is mounted read-only (EROFS): a writer cannot open there.
pub const MAPSTATE_E_READ_ONLY_FILESYSTEM: c_int = -21;
/// The filesystem cannot keep mapstate's promises (a network filesystem
/// such as NFS, CIFS or 9p); `allow_unsuitable_filesystem` opens anyway.
pub const MAPSTATE_E_UNSUITABLE_FILESYSTEM: c_int = -22;
/// A lock mapstate uses on the durable file is blocked by a shared record
/// lock (`fcntl` `F_RDLCK`), which no mapstate process takes and any
/// process that may read the file can: mapstate does not wait on it. The
/// message says which lock; `lslocks` shows the holder; stop it.
pub const MAPSTATE_E_FOREIGN_LOCK: c_int = -23;
/// A writer started after this reader was opened and the reader cannot see
/// its commits (its live image is private, or in another mount namespace):
/// close the reader and open it again.
pub const MAPSTATE_E_WRITER_NOT_VISIBLE: c_int = -24;
/// A library error this version of the C API has no code for (the message
/// says what it is).
pub const MAPSTATE_E_OTHER: c_int = -39;
/// An argument is invalid: a NULL pointer where one is required, an empty
/// path, an unknown durability mode, a length that does not fit in memory.
pub const MAPSTATE_E_INVALID: c_int = -40;
/// The handle is not an open handle of the expected kind: already closed,
/// never opened, or a reader passed where a writer is expected.
pub const MAPSTATE_E_BAD_HANDLE: c_int = -41;
/// `mapstate_writer_begin()` while a transaction is open, or an operation
/// that needs no transaction open (`mapstate_writer_checkpoint()`).
pub const MAPSTATE_E_TXN_OPEN: c_int = -42;
/// A transaction operation (commit, abort, data, write, `set_len`) without an
/// open transaction.
pub const MAPSTATE_E_NO_TXN: c_int = -43;
/// The handle is in use by another thread right now: use each handle from
/// one thread at a time.
pub const MAPSTATE_E_BUSY: c_int = -44;
/// `mapstate_reader_wait_for_change()` timed out before a newer commit was
/// published.
pub const MAPSTATE_E_TIMEOUT: c_int = -45;
/// A bug in mapstate: a Rust panic was caught at the API boundary. The
/// handle may be unusable; close it.
pub const MAPSTATE_E_PANIC: c_int = -46;
/// A call on a shared writer from inside one of its own transaction
/// callbacks (`mapstate_shared_transaction()`, `_seq`, `_len`,
/// `_checkpoint` or `_close` on the handle whose callback is running on
/// this thread): it would wait for the transaction it is part of. Use the
/// `mapstate_txn_view_*` functions on the view instead.
pub const MAPSTATE_E_IN_CALLBACK: c_int = -47;

/// A failure of one C API call: its code, its message and the errno.
#[derive(Debug)]
pub(crate) struct Failure {
    code: c_int,
    message: String,
    errno: c_int,
}

impl Failure {
    /// A failure of the C API itself (not of the library).
    pub(crate) fn new(code: c_int, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            errno: 0,
        }
    }

    /// [`MAPSTATE_E_INVALID`] with `message`.
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(MAPSTATE_E_INVALID, message)
    }

    /// The failure of a caught panic.
    pub(crate) fn panic(payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic with no message".to_owned());
        Self::new(
            MAPSTATE_E_PANIC,
            format!("internal error in mapstate (please report it): {what}"),
        )
    }

    /// Stores the message and errno for this thread and returns the code.
    pub(crate) fn record(self) -> c_int {
        let message = CString::new(self.message.replace('\0', "\\0"))
            .unwrap_or_else(|_| CString::from(c"(unprintable error message)"));
        // `try_with`: during thread teardown the slot may be gone; the code
        // is still returned.
        let _ = LAST.try_with(|last| *last.borrow_mut() = (message, self.errno));
        self.code
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Self {
            code: code_of(&e),
            errno: e.errno().unwrap_or(0),
            message: e.to_string(),
        }
    }
}

/// The code of a library error.
pub(crate) fn code_of(e: &Error) -> c_int {
    match e {
        Error::Io { .. } => MAPSTATE_E_IO,
        Error::NotFound { .. } => MAPSTATE_E_NOT_FOUND,
        Error::PermissionDenied { .. } => MAPSTATE_E_PERMISSION,
        Error::NotAFile { .. } => MAPSTATE_E_NOT_A_FILE,
        Error::InvalidSize { .. } => MAPSTATE_E_INVALID_SIZE,
        Error::OutOfBounds { .. } => MAPSTATE_E_OUT_OF_BOUNDS,
        Error::Misaligned { .. } => MAPSTATE_E_MISALIGNED,
        Error::ReadOnly { .. } => MAPSTATE_E_READ_ONLY,
        Error::FallocateUnsupported { .. } => MAPSTATE_E_FALLOCATE_UNSUPPORTED,
        Error::NoSpace { .. } => MAPSTATE_E_NO_SPACE,
        Error::MemlockLimit { .. } => MAPSTATE_E_MEMLOCK,
        Error::Unsupported { .. } => MAPSTATE_E_UNSUPPORTED,
        Error::Foreign { .. } => MAPSTATE_E_FOREIGN,
        Error::TooNew { .. } => MAPSTATE_E_TOO_NEW,
        Error::Truncated { .. } => MAPSTATE_E_TRUNCATED,
        Error::Corrupt { .. } => MAPSTATE_E_CORRUPT,
        Error::Locked { .. } => MAPSTATE_E_LOCKED,
        Error::Poisoned { .. } => MAPSTATE_E_POISONED,
        Error::WriterDied { .. } => MAPSTATE_E_WRITER_DIED,
        Error::PastMaximum { .. } => MAPSTATE_E_PAST_MAXIMUM,
        Error::ReadOnlyFilesystem { .. } => MAPSTATE_E_READ_ONLY_FILESYSTEM,
        Error::UnsuitableFilesystem { .. } => MAPSTATE_E_UNSUITABLE_FILESYSTEM,
        Error::ForeignLock { .. } => MAPSTATE_E_FOREIGN_LOCK,
        Error::WriterNotVisible { .. } => MAPSTATE_E_WRITER_NOT_VISIBLE,
        _ => MAPSTATE_E_OTHER,
    }
}

thread_local! {
    /// The message and errno of the last failed call on this thread.
    static LAST: RefCell<(CString, c_int)> = RefCell::new((CString::default(), 0));
}

/// The message of the last failed `mapstate_*` call on the calling thread:
/// what happened, to which file, with the errno's name and what to do (for
/// example `".../state.db is locked by another writer (pid 4242): close it
/// first, or open with wait_for_lock ..."`). An empty string if no call failed on
/// this thread yet. Successful calls do not clear it.
///
/// Ownership and lifetime: the string belongs to mapstate; do not free it.
/// It stays valid until the next `mapstate_*` call on the same thread (copy
/// it to keep it). Never NULL. Thread-safe: each thread has its own message.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_last_error() -> *const c_char {
    LAST.try_with(|last| last.borrow().0.as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// The OS errno behind the last failed `mapstate_*` call on the calling
/// thread (for `MAPSTATE_E_IO`, `MAPSTATE_E_PERMISSION`, `MAPSTATE_E_NO_SPACE`,
/// `MAPSTATE_E_MEMLOCK`, `MAPSTATE_E_UNSUPPORTED`), or 0 if the kernel
/// reported none. Successful calls do not clear it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_errno() -> c_int {
    LAST.try_with(|last| last.borrow().1).unwrap_or(0)
}

/// The symbolic name of a return code, such as `"MAPSTATE_E_LOCKED"`;
/// `"MAPSTATE_OK"` for 0 and `"MAPSTATE_E_UNKNOWN"` for a code this version
/// does not know. A static string: never free it. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_error_name(code: c_int) -> *const c_char {
    let name = match code {
        MAPSTATE_OK => c"MAPSTATE_OK",
        MAPSTATE_E_IO => c"MAPSTATE_E_IO",
        MAPSTATE_E_NOT_FOUND => c"MAPSTATE_E_NOT_FOUND",
        MAPSTATE_E_PERMISSION => c"MAPSTATE_E_PERMISSION",
        MAPSTATE_E_NOT_A_FILE => c"MAPSTATE_E_NOT_A_FILE",
        MAPSTATE_E_INVALID_SIZE => c"MAPSTATE_E_INVALID_SIZE",
        MAPSTATE_E_OUT_OF_BOUNDS => c"MAPSTATE_E_OUT_OF_BOUNDS",
        MAPSTATE_E_MISALIGNED => c"MAPSTATE_E_MISALIGNED",
        MAPSTATE_E_READ_ONLY => c"MAPSTATE_E_READ_ONLY",
        MAPSTATE_E_FALLOCATE_UNSUPPORTED => c"MAPSTATE_E_FALLOCATE_UNSUPPORTED",
        MAPSTATE_E_NO_SPACE => c"MAPSTATE_E_NO_SPACE",
        MAPSTATE_E_MEMLOCK => c"MAPSTATE_E_MEMLOCK",
        MAPSTATE_E_UNSUPPORTED => c"MAPSTATE_E_UNSUPPORTED",
        MAPSTATE_E_FOREIGN => c"MAPSTATE_E_FOREIGN",
        MAPSTATE_E_TOO_NEW => c"MAPSTATE_E_TOO_NEW",
        MAPSTATE_E_TRUNCATED => c"MAPSTATE_E_TRUNCATED",
        MAPSTATE_E_CORRUPT => c"MAPSTATE_E_CORRUPT",
        MAPSTATE_E_LOCKED => c"MAPSTATE_E_LOCKED",
        MAPSTATE_E_POISONED => c"MAPSTATE_E_POISONED",
        MAPSTATE_E_WRITER_DIED => c"MAPSTATE_E_WRITER_DIED",
        MAPSTATE_E_PAST_MAXIMUM => c"MAPSTATE_E_PAST_MAXIMUM",
        MAPSTATE_E_READ_ONLY_FILESYSTEM => c"MAPSTATE_E_READ_ONLY_FILESYSTEM",
        MAPSTATE_E_UNSUITABLE_FILESYSTEM => c"MAPSTATE_E_UNSUITABLE_FILESYSTEM",
        MAPSTATE_E_FOREIGN_LOCK => c"MAPSTATE_E_FOREIGN_LOCK",
        MAPSTATE_E_WRITER_NOT_VISIBLE => c"MAPSTATE_E_WRITER_NOT_VISIBLE",
        MAPSTATE_E_OTHER => c"MAPSTATE_E_OTHER",
        MAPSTATE_E_INVALID => c"MAPSTATE_E_INVALID",
        MAPSTATE_E_BAD_HANDLE => c"MAPSTATE_E_BAD_HANDLE",
        MAPSTATE_E_TXN_OPEN => c"MAPSTATE_E_TXN_OPEN",
        MAPSTATE_E_NO_TXN => c"MAPSTATE_E_NO_TXN",
        MAPSTATE_E_BUSY => c"MAPSTATE_E_BUSY",
        MAPSTATE_E_TIMEOUT => c"MAPSTATE_E_TIMEOUT",
        MAPSTATE_E_PANIC => c"MAPSTATE_E_PANIC",
        MAPSTATE_E_IN_CALLBACK => c"MAPSTATE_E_IN_CALLBACK",
        _ => c"MAPSTATE_E_UNKNOWN",
    };
    name.as_ptr()
}
