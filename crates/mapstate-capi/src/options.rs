//! `mapstate_options`: how to open a state, as a plain C struct.

use std::ffi::c_char;
use std::ptr;
use std::time::Duration;

use mapstate_rs::{DEFAULT_RESERVATION, Durability, WriterOptions};

use crate::error::Failure;
use crate::handle;

/// Durability mode: a returned commit survives any process crash and is
/// visible everywhere; it reaches the disk at the next checkpoint (when the
/// log fills up, on `mapstate_writer_checkpoint()` or on close). No system
/// call on the commit path.
pub const MAPSTATE_PAGE_CACHE: u32 = 0;
/// Durability mode: as `MAPSTATE_PAGE_CACHE`, and a background thread syncs
/// the log every `periodic_ms` milliseconds, so a power cut loses at most
/// the commits of the last interval.
pub const MAPSTATE_PERIODIC: u32 = 1;
/// Durability mode: a returned commit is on stable storage (one
/// `fdatasync` of the log per commit).
pub const MAPSTATE_SYNC: u32 = 2;

/// How to open a state. Get the defaults from `mapstate_options_default()`,
/// then change the fields you need; new fields are only ever added at the
/// end, with defaults that keep today's behaviour.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MapstateOptions {
    /// Create the state if the file does not exist or is empty (writers
    /// only). Default false.
    pub create: bool,
    /// Wait for the writer lock instead of failing with
    /// `MAPSTATE_E_LOCKED` (writers only). Default false.
    pub wait_for_lock: bool,
    /// Length in bytes of a newly created state (zeros). Default 4096.
    pub len: u64,
    /// The largest length a newly created state may grow to (address space
    /// is reserved for it, not disk). Default 1 GiB.
    pub max_size: u64,
    /// `MAPSTATE_PAGE_CACHE` (0, the default), `MAPSTATE_PERIODIC` (1) or
    /// `MAPSTATE_SYNC` (2): how many recent commits a power cut may take
    /// away, never whether the state is consistent.
    pub durability: u32,
    /// The sync interval of `MAPSTATE_PERIODIC`, in milliseconds (at least 1).
    /// Default 1000.
    pub periodic_ms: u32,
    /// Directory of the live image (the committed state that every process
    /// maps), or NULL for the default: a directory of the state's owner on
    /// tmpfs (`/dev/shm/mapstate-UID`), else beside the file. Writers and
    /// readers of one state must agree on it; a directory named here is
    /// trusted as it is (let no other user write in it).
    /// Only read during the open call. Default NULL.
    pub live_dir: *const c_char,
    /// Size in bytes of a new log file, fixed; or 0 for the default: twice
    /// the state's length (at least 1 MiB), grown (up to 64 MiB) to hold a
    /// second of commits whenever it fills up in less. A full log triggers
    /// a checkpoint. Writers only.
    pub log_size: u64,
    /// Permission bits of the files of a new state. Default 0600.
    pub mode: u32,
    /// Open on a filesystem where mapstate cannot keep its promises (NFS,
    /// CIFS, 9p, FUSE) instead of failing with
    /// `MAPSTATE_E_UNSUITABLE_FILESYSTEM`. Default false.
    pub allow_unsuitable_filesystem: bool,
}

/// The default options: open an existing state (no create); a new state
/// would be 4096 bytes, growable to 1 GiB, with `MAPSTATE_PAGE_CACHE`
/// durability, the default live directory, mode 0600, and no opening on
/// unsuitable filesystems. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn mapstate_options_default() -> MapstateOptions {
    MapstateOptions {
        create: false,
        wait_for_lock: false,
        len: 4096,
        max_size: DEFAULT_RESERVATION,
        durability: MAPSTATE_PAGE_CACHE,
        periodic_ms: 1000,
        live_dir: ptr::null(),
        log_size: 0,
        mode: 0o600,
        allow_unsuitable_filesystem: false,
    }
}

/// The library's writer options from `opts` (NULL: the defaults); a
/// reader takes `.reader()` of them (its live directory).
///
/// # Safety
///
/// `opts` is NULL or points to a `MapstateOptions` whose `live_dir` is NULL
/// or a NUL-terminated string.
pub(crate) unsafe fn from_c(opts: *const MapstateOptions) -> Result<WriterOptions, Failure> {
    let o = if opts.is_null() {
        mapstate_options_default()
    } else {
        // SAFETY: non-NULL, and the caller promises it points to options.
        unsafe { opts.read() }
    };
    let durability = match o.durability {
        MAPSTATE_PAGE_CACHE => Durability::PageCache,
        MAPSTATE_PERIODIC if o.periodic_ms > 0 => {
            Durability::Periodic(Duration::from_millis(u64::from(o.periodic_ms)))
        }
        MAPSTATE_PERIODIC => {
            return Err(Failure::invalid(
                "durability MAPSTATE_PERIODIC needs periodic_ms of at least 1",
            ));
        }
        MAPSTATE_SYNC => Durability::Sync,
        d => {
            return Err(Failure::invalid(format!(
                "unknown durability {d}: use MAPSTATE_PAGE_CACHE (0), MAPSTATE_PERIODIC (1) or MAPSTATE_SYNC (2)"
            )));
        }
    };
    let mut out = WriterOptions::new()
        .create(o.create)
        .wait_for_lock(o.wait_for_lock)
        .len(o.len)
        .max_size(o.max_size)
        .durability(durability)
        .mode(o.mode)
        .allow_unsuitable_filesystem(o.allow_unsuitable_filesystem);
    if o.log_size != 0 {
        out = out.log_size(o.log_size);
    }
    if !o.live_dir.is_null() {
        // SAFETY: the caller promises a NUL-terminated string.
        out = out.live_dir(unsafe { handle::path(o.live_dir, "options.live_dir") }?);
    }
    Ok(out)
}
