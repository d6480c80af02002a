//! `mapstate_options`: how to open a state, as a plain C struct.

use std::ffi::{c_char, c_int};
use std::ptr;
use std::time::Duration;

use mapstate_rs::{Durability, WriterOptions};

use crate::error::Failure;
use crate::handle::{self, entry};

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

/// How to open a state. Initialize it with `mapstate_options_default()`
/// (or `mapstate_options_init(&opts, sizeof opts)`), then change the
/// fields you need.
///
/// The struct carries its own size, so that a program and the library may
/// come from different versions: fields are only ever added at the end
/// (each version's fields start at the previous version's size), the
/// library reads only the fields that lie within `size` and takes the
/// defaults for the rest (a program built against an older, smaller
/// header keeps working), and fields past what the library knows (a
/// program built against a newer header) must be zero, as
/// `mapstate_options_init()` of an older library leaves them: an open that
/// finds one set fails with `MAPSTATE_E_INVALID`, naming the byte.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct MapstateOptions {
    /// The size of this struct as the program sees it (`sizeof
    /// (mapstate_options)` of its header), set by `mapstate_options_init()`
    /// and `mapstate_options_default()`. An open with a size smaller than
    /// the first version's (64 bytes: an uninitialized struct, usually) or
    /// larger than 4096 fails with `MAPSTATE_E_INVALID`.
    pub size: usize,
    /// Create the state if the file does not exist or is empty (writers
    /// only). Default false.
    pub create: bool,
    /// Wait for the writer lock instead of failing with
    /// `MAPSTATE_E_LOCKED` (writers only). Default false.
    pub wait_for_lock: bool,
    /// Length in bytes of a newly created state (zeros). Default 4096.
    pub len: u64,
    /// The largest length the state may grow to (address space is reserved
    /// for it, not disk). 0 (the default): 1 GiB for a new state, and an
    /// existing state keeps its maximum. Another value raises the maximum of
    /// an existing state whose maximum is smaller (never lowers it), as
    /// Rust's `WriterOptions::max_size`.
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
    /// (The last field of the first version, 64 bytes.)
    pub allow_unsuitable_filesystem: bool,
    /// How often, at most, the writer sets the modification time of the
    /// state's file and live image after a commit (stores through a mapping
    /// leave it stale), in milliseconds: 0 after every commit, a negative
    /// value never. Default 1000. Writers only.
    pub mtime_interval_ms: i64,
    /// Whether a clean close (`mapstate_writer_close()` whose last
    /// checkpoint succeeds) deletes the live image, so that its memory
    /// (tmpfs: RAM, the state's size) goes back once the last reader has
    /// closed; the next open then rebuilds it from the file (reading the
    /// whole state). Default false: the next open finds it and costs no
    /// rebuild. Writers only.
    pub release_live_image: bool,
}

/// The size of the first version of `mapstate_options` (the fields up to
/// `allow_unsuitable_filesystem`): the smallest size an open accepts.
const FIRST_VERSION_SIZE: usize = 64;
/// The largest size an open accepts: larger is an uninitialized `size`
/// (the kernel draws the same line for the structs it extends this way).
const MAX_SIZE: usize = 4096;
/// The size of this version: fields at or past it are unknown here.
const SIZE: usize = std::mem::size_of::<MapstateOptions>();

// Each version's fields start at the previous version's size, never in its
// tail padding (where an older program's bytes are not zero).
const _: () =
    assert!(std::mem::offset_of!(MapstateOptions, mtime_interval_ms) == FIRST_VERSION_SIZE);
const _: () = assert!(
    std::mem::offset_of!(MapstateOptions, allow_unsuitable_filesystem) < FIRST_VERSION_SIZE
);

/// The default options (what `mapstate_options_init()` writes).
fn defaults() -> MapstateOptions {
    MapstateOptions {
        size: SIZE,
        create: false,
        wait_for_lock: false,
        len: 4096,
        max_size: 0,
        durability: MAPSTATE_PAGE_CACHE,
        periodic_ms: 1000,
        live_dir: ptr::null(),
        log_size: 0,
        mode: 0o600,
        allow_unsuitable_filesystem: false,
        mtime_interval_ms: 1000,
        release_live_image: false,
    }
}

/// A field type as C stores it.
trait Field: Copy {
    /// Reads the field at `p`.
    ///
    /// # Safety
    ///
    /// `p` is valid for reads of `size_of::<Self>()` bytes and aligned for `Self`.
    unsafe fn read_c(p: *const u8) -> Self;
}

impl Field for bool {
    unsafe fn read_c(p: *const u8) -> Self {
        // SAFETY: readable, as the caller promises. A byte, not a `bool`:
        // C may have stored any value in it (any non-zero is true, as C's
        // conversion to bool says).
        unsafe { p.read() != 0 }
    }
}

macro_rules! plain_field {
    ($($t:ty),*) => {$(
        impl Field for $t {
            // The caller promises the alignment: `p` is a field's address
            // in a `repr(C)` struct, at that field's offset.
            #[allow(clippy::cast_ptr_alignment)]
            unsafe fn read_c(p: *const u8) -> Self {
                // SAFETY: readable and aligned, as the caller promises; any
                // bit pattern is a valid value of this type.
                unsafe { p.cast::<$t>().read() }
            }
        }
    )*};
}
plain_field!(u32, u64, i64, *const c_char);

/// Fills `*opts`, `size` bytes as the program sees them (`sizeof *opts`),
/// with the defaults of this library and sets `opts->size` to `size`:
/// the fields this library knows that lie within `size` get their
/// defaults, and every byte past the fields it knows (fields of a newer
/// header) is zeroed, which an open accepts as "not set". Call it (or
/// `mapstate_options_default()`, which does) before setting any field.
///
/// Returns 0, or `MAPSTATE_E_INVALID` (`opts` NULL, or `size` smaller than
/// the first version's 64 bytes or larger than 4096: pass `sizeof *opts`).
/// Thread-safe.
///
/// # Safety
///
/// `opts` is NULL or valid for writes of `size` bytes, aligned for
/// `mapstate_options`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn mapstate_options_init(opts: *mut MapstateOptions, size: usize) -> c_int {
    entry(|| {
        handle::required(opts, "opts")?;
        check_size(size)?;
        let d = defaults();
        let base = opts.cast::<u8>();
        // SAFETY: `opts` is non-NULL and the caller promises `size` writable bytes.
        unsafe { base.write_bytes(0, size) };
        macro_rules! put {
            ($($field:ident),*) => {$(
                let at = std::mem::offset_of!(MapstateOptions, $field);
                if fits(size, at, std::mem::size_of_val(&d.$field)) {
                    // SAFETY: the field lies within the `size` writable
                    // bytes (`fits`), at its offset in the struct, so aligned.
                    unsafe { write_c(base.wrapping_add(at), d.$field) };
                }
            )*};
        }
        put!(
            create,
            wait_for_lock,
            len,
            max_size,
            durability,
            periodic_ms,
            live_dir,
            log_size,
            mode,
            allow_unsuitable_filesystem,
            mtime_interval_ms,
            release_live_image
        );
        // SAFETY: `size` is the first field, within every accepted size.
        unsafe { opts.cast::<usize>().write(size) };
        Ok(())
    })
}

/// Writes the field `v` at `p`.
///
/// # Safety
///
/// `p` is valid for writes of `size_of::<T>()` bytes and aligned for `T`.
unsafe fn write_c<T>(p: *mut u8, v: T) {
    // SAFETY: as the caller promises.
    unsafe { p.cast::<T>().write(v) };
}

/// Whether a field of `len` bytes at `at` lies within `size` bytes.
fn fits(size: usize, at: usize, len: usize) -> bool {
    at + len <= size
}

/// Fails unless `size` is one an open accepts.
fn check_size(size: usize) -> Result<(), Failure> {
    if size < FIRST_VERSION_SIZE {
        return Err(Failure::invalid(format!(
            "options.size is {size}, smaller than the {FIRST_VERSION_SIZE} bytes of the first \
             version of mapstate_options (uninitialized?): initialize the options with \
             mapstate_options_default() or mapstate_options_init(&opts, sizeof opts)"
        )));
    }
    if size > MAX_SIZE {
        return Err(Failure::invalid(format!(
            "options.size is {size}, larger than any mapstate_options can be ({MAX_SIZE} \
             bytes; uninitialized?): initialize the options with mapstate_options_default() \
             or mapstate_options_init(&opts, sizeof opts)"
        )));
    }
    Ok(())
}

/// The options at `opts` as this library knows them: the fields within
/// `opts->size`, the defaults for the rest; an error if a byte past the
/// fields it knows is set (an option of a newer header it cannot honour).
///
/// # Safety
///
/// `opts` is NULL or points to options whose `size` bytes are readable.
unsafe fn read_c(opts: *const MapstateOptions) -> Result<MapstateOptions, Failure> {
    if opts.is_null() {
        return Ok(defaults());
    }
    // SAFETY: non-NULL; every version of the struct starts with `size`.
    let size = unsafe { opts.cast::<usize>().read() };
    check_size(size)?;
    let base = opts.cast::<u8>();
    let mut o = defaults();
    macro_rules! take {
        ($($field:ident),*) => {$(
            let at = std::mem::offset_of!(MapstateOptions, $field);
            if fits(size, at, std::mem::size_of_val(&o.$field)) {
                // SAFETY: within the `size` readable bytes (`fits`), at the
                // field's offset in the struct, so aligned.
                o.$field = unsafe { Field::read_c(base.wrapping_add(at)) };
            }
        )*};
    }
    take!(
        create,
        wait_for_lock,
        len,
        max_size,
        durability,
        periodic_ms,
        live_dir,
        log_size,
        mode,
        allow_unsuitable_filesystem,
        mtime_interval_ms,
        release_live_image
    );
    for at in SIZE..size {
        // SAFETY: `at < size`: readable, as the caller promises.
        if unsafe { base.wrapping_add(at).read() } != 0 {
            return Err(Failure::invalid(format!(
                "byte {at} of the options ({size} bytes) is set, but this library (mapstate {}) \
                 knows the first {SIZE} bytes only: the program was built against a newer \
                 mapstate.h and set an option this library lacks; install the newer library, \
                 or leave that option at its default",
                env!("CARGO_PKG_VERSION")
            )));
        }
    }
    o.size = size;
    Ok(o)
}

/// The library's writer options from `opts` (NULL: the defaults); a
/// reader takes `.reader()` of them (its live directory).
///
/// # Safety
///
/// `opts` is NULL or points to options whose `size` bytes are readable and
/// whose `live_dir` (if within them) is NULL or a NUL-terminated string.
pub(crate) unsafe fn from_c(opts: *const MapstateOptions) -> Result<WriterOptions, Failure> {
    // SAFETY: as promised by the caller.
    let o = unsafe { read_c(opts) }?;
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
        .durability(durability)
        .mode(o.mode)
        .allow_unsuitable_filesystem(o.allow_unsuitable_filesystem);
    out = out
        .mtime_interval(
            u64::try_from(o.mtime_interval_ms)
                .ok()
                .map(Duration::from_millis),
        )
        .release_live_image(o.release_live_image);
    if o.log_size != 0 {
        out = out.log_size(o.log_size);
    }
    if o.max_size != 0 {
        out = out.max_size(o.max_size);
    }
    if !o.live_dir.is_null() {
        // SAFETY: the caller promises a NUL-terminated string.
        out = out.live_dir(unsafe { handle::path(o.live_dir, "options.live_dir") }?);
    }
    Ok(out)
}
