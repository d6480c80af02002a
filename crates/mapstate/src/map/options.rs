//! [`MapOptions`]: how to open a [`Mapping`], and [`MapSync`].

use std::path::Path;

use crate::error::Result;
use crate::fs::Open;
use crate::map::Mapping;

/// Whether to map with `MAP_SYNC` (persistent memory, DAX filesystems).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MapSync {
    /// An ordinary shared mapping.
    #[default]
    Off,
    /// `MAP_SHARED_VALIDATE | MAP_SYNC` or fail with [`Error::Unsupported`](crate::Error::Unsupported).
    Require,
    /// `MAP_SYNC` where the filesystem offers it, an ordinary mapping elsewhere;
    /// [`Mapping::is_map_sync`] tells which.
    IfSupported,
}

/// How to open a [`Mapping`]: a builder.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let mut m = mapstate::MapOptions::new()
///     .create(true)
///     .len(4096)
///     .max_size(1 << 20)
///     .open(dir.path().join("state"))?;
/// m.write_at(0, b"hello")?;
/// m.flush_range(0..5, mapstate::Flush::Sync)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[allow(clippy::struct_excessive_bools)] // a builder of independent on/off knobs
pub struct MapOptions {
    pub(super) max_size: Option<u64>,
    pub(super) len: Option<u64>,
    pub(super) write: bool,
    pub(super) create: bool,
    pub(super) private: bool,
    pub(super) populate: bool,
    pub(super) locked: bool,
    pub(super) map_sync: MapSync,
    pub(super) mode: u32,
    pub(super) extend_on_write: bool,
}

impl Default for MapOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl MapOptions {
    /// Read-write, shared, no create, the file's own length, mode 0600 for new files.
    pub fn new() -> Self {
        Self {
            max_size: None,
            len: None,
            write: true,
            create: false,
            private: false,
            populate: false,
            locked: false,
            map_sync: MapSync::Off,
            mode: 0o600,
            extend_on_write: false,
        }
    }

    /// Extend-on-write (the AIX `shmat(SHM_MAP)` model): a load or store
    /// anywhere below the maximum size succeeds; one past the mapped part
    /// grows the file (by `fallocate`, in chunks that adapt to the rate of
    /// growth) and the mapping, at the same address, from a SIGSEGV handler,
    /// with no call by the program. [`Mapping::high_water`] tells how far
    /// was written, [`Mapping::trim`] and [`Mapping::detach`] cut the file
    /// there. A full disk is never a SIGBUS: the store lands in a scratch
    /// page and the next `trim`, `detach`, `flush` or [`Mapping::check_growth`]
    /// returns the error. Needs a writable shared mapping without `MAP_SYNC`.
    ///
    /// While the mapping is open the file covers every mapped page: a length
    /// that is not a whole number of pages is grown with zeros to the end of
    /// its page at open (and after [`Mapping::shrink_to`]), because the rest
    /// of that page is mapped too, and a store there, past the file's end,
    /// would not be the file's (writeback zeroes it). `trim` and `detach` set
    /// the final length (after a `trim` to a mark inside a page, the rest of
    /// that page is past the file's end again until the file grows); a
    /// mapping dropped without them leaves the file at whole pages (or
    /// chunks, if it grew).
    #[must_use]
    pub fn extend_on_write(mut self, yes: bool) -> Self {
        self.extend_on_write = yes;
        self
    }

    /// The largest size the mapping may grow to; the address range reserved
    /// up front. Default: the larger of the file's length and 1 GiB.
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// The mapped length at open. A writable shared mapping grows the file to
    /// at least this (with `fallocate`); otherwise the file must be that long.
    /// Default: the file's length.
    #[must_use]
    pub fn len(mut self, bytes: u64) -> Self {
        self.len = Some(bytes);
        self
    }

    /// Open read-only (`O_RDONLY`, `PROT_READ`).
    #[must_use]
    pub fn read_only(mut self) -> Self {
        self.write = false;
        self
    }

    /// Create the file if it is missing (with [`Self::mode`]).
    #[must_use]
    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    /// `MAP_PRIVATE`: stores land in private copy-on-write pages and never
    /// reach the file. The file may be opened read-only.
    #[must_use]
    pub fn private(mut self) -> Self {
        self.private = true;
        self
    }

    /// `MAP_POPULATE`: prefault every page at open and at each growth.
    #[must_use]
    pub fn populate(mut self, yes: bool) -> Self {
        self.populate = yes;
        self
    }

    /// `MAP_LOCKED`: lock the pages in memory at open and at each growth
    /// (limited by `RLIMIT_MEMLOCK` unless the process has `CAP_IPC_LOCK`).
    #[must_use]
    pub fn locked(mut self, yes: bool) -> Self {
        self.locked = yes;
        self
    }

    /// Whether to use `MAP_SYNC` (see [`MapSync`]).
    #[must_use]
    pub fn map_sync(mut self, how: MapSync) -> Self {
        self.map_sync = how;
        self
    }

    /// Permission bits for a file this call creates. Default 0600.
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }

    /// Opens (or creates) the file and maps it.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Mapping> {
        Mapping::open_with(path.as_ref(), self)
    }

    /// How the file is opened.
    pub(super) fn access(&self) -> Open {
        match (self.write, self.create) {
            (false, _) => Open::Read,
            (true, false) => Open::ReadWrite,
            (true, true) => Open::Create(self.mode),
        }
    }
}
