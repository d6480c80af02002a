//! How to open a state: [`WriterOptions`], [`ReaderOptions`] and the
//! [`Durability`] of commits. Builders in the manner of
//! `std::fs::OpenOptions`: `Writer::options().create(true).len(n).open(path)`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::format::{self, PAGE};

/// The address space reserved when no maximum size is given: 1 GiB (no memory).
pub const DEFAULT_RESERVATION: u64 = 1 << 30;

/// The largest size a log of the default size grows to on its own (see
/// [`WriterOptions::log_size`]); a single commit larger than the log
/// grows it further.
pub(crate) const DEFAULT_LOG_SIZE: u64 = 64 << 20;

/// The smallest size a log of the default size starts at.
const MIN_DEFAULT_LOG_SIZE: u64 = 1 << 20;

/// The size a new log of the default size starts at for a state of `len`
/// bytes: twice the state (a commit that rewrites all of it fits), at
/// least 1 MiB and at most [`DEFAULT_LOG_SIZE`].
pub(crate) fn initial_log_size(len: u64) -> u64 {
    len.saturating_mul(2)
        .checked_next_power_of_two()
        .unwrap_or(u64::MAX)
        .clamp(MIN_DEFAULT_LOG_SIZE, DEFAULT_LOG_SIZE)
}

/// The default interval between two updates of the files' mtimes.
pub(crate) const DEFAULT_MTIME_INTERVAL: Duration = Duration::from_secs(1);

/// How many recent commits a power cut may take away; never whether the
/// state is consistent (the guarantee table: [`docs::readme`]). Every mode
/// survives any process crash with every returned commit.
///
/// Chosen when the state is created (and stored in it), or per writer;
/// one commit can ask for more with [`Txn::commit_with`]:
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use mapstate::{Durability, Writer};
/// let mut w = Writer::options()
///     .create(true)
///     .len(4096)
///     // A power cut loses at most the last 100 ms of commits.
///     .durability(Durability::Periodic(Duration::from_millis(100)))
///     .open(dir.path().join("state"))?;
/// let mut t = w.begin();
/// t.write_at(0, b"routine")?;
/// t.commit()?; // no system call
/// let mut t = w.begin();
/// t.write_at(0, b"payment")?;
/// t.commit_with(Durability::Sync)?; // on disk when it returns
/// # w.remove()?;
/// # Ok(()) }
/// ```
///
/// [`docs::readme`]: crate::docs::readme
/// [`Txn::commit_with`]: crate::Txn::commit_with
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// When `commit` returns, the commit is visible to every process and
    /// survives any process crash. It reaches the disk at the next
    /// checkpoint (when the log fills up, on `Writer::checkpoint` or on
    /// close). No system call on the commit path.
    #[default]
    PageCache,
    /// As `PageCache`; in addition a background thread (`mapstate-syncer`)
    /// `fdatasync`s the log every interval, so a power cut loses at most the
    /// commits of the last interval (plus one sync's duration). No system
    /// call on the commit path.
    Periodic(Duration),
    /// When `commit` returns, the commit is on stable storage: the log is
    /// `fdatasync`ed before the commit is published. One `fdatasync` per
    /// commit, shared by concurrent commits of a `SharedWriter`.
    Sync,
}

impl Durability {
    /// The code stored in the durable header: `(mode, argument)`.
    pub(crate) fn to_code(self) -> (u64, u64) {
        match self {
            Durability::PageCache => (format::DURABILITY_PAGE_CACHE, 0),
            Durability::Periodic(d) => (format::DURABILITY_PERIODIC, d.as_millis() as u64),
            Durability::Sync => (format::DURABILITY_SYNC, 0),
        }
    }

    /// Decodes a stored code.
    pub(crate) fn from_code(code: u64, arg: u64) -> Option<Self> {
        match code {
            format::DURABILITY_PAGE_CACHE => Some(Durability::PageCache),
            format::DURABILITY_PERIODIC => Some(Durability::Periodic(Duration::from_millis(arg))),
            format::DURABILITY_SYNC => Some(Durability::Sync),
            _ => None,
        }
    }

    /// One word for the live header: `code + 1` in the top byte, the
    /// argument (clamped) below it.
    pub(crate) fn to_word(self) -> u64 {
        let (code, arg) = self.to_code();
        ((code + 1) << 56) | arg.min((1 << 56) - 1)
    }

    /// Decodes [`Durability::to_word`]; `None` for 0 or an unknown code.
    pub(crate) fn from_word(w: u64) -> Option<Self> {
        let code = (w >> 56).checked_sub(1)?;
        Self::from_code(code, w & ((1 << 56) - 1))
    }
}

/// How to open a state for writing: a builder, finished by
/// `WriterOptions::open` (or start one with `Writer::options`).
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{Durability, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let w = Writer::options()
///     .create(true)
///     .len(4096)
///     .max_size(1 << 20)
///     .durability(Durability::Sync)
///     .open(dir.path().join("state"))?;
/// assert_eq!(w.len(), 4096);
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct WriterOptions {
    pub(crate) create: bool,
    pub(crate) len: u64,
    /// `None`: [`DEFAULT_RESERVATION`] for a new state, an existing one's
    /// unchanged.
    pub(crate) max_size: Option<u64>,
    pub(crate) durability: Durability,
    pub(crate) wait_for_lock: bool,
    pub(crate) live_dir: Option<PathBuf>,
    pub(crate) mode: u32,
    /// `None`: sized to the state and grown when busy (the default).
    pub(crate) log_size: Option<u64>,
    pub(crate) mtime_interval: Option<Duration>,
    pub(crate) allow_unsuitable_filesystem: bool,
    pub(crate) live_image_at_close: AtClose,
}

/// What a writer's clean close does with the live image
/// ([`WriterOptions::release_live_image`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AtClose {
    /// Keep it: the next open costs no rebuild.
    Keep,
    /// Delete it: its memory goes back.
    Release,
}

impl Default for WriterOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl WriterOptions {
    /// No create; a new state would be 4 KiB, growable to 1 GiB;
    /// `PageCache`; mode 0600.
    pub fn new() -> Self {
        Self {
            create: false,
            len: PAGE,
            max_size: None,
            durability: Durability::PageCache,
            wait_for_lock: false,
            live_dir: None,
            mode: 0o600,
            log_size: None,
            mtime_interval: Some(DEFAULT_MTIME_INTERVAL),
            allow_unsuitable_filesystem: false,
            live_image_at_close: AtClose::Keep,
        }
    }

    /// Create the state if it does not exist.
    #[must_use]
    pub fn create(mut self, yes: bool) -> Self {
        self.create = yes;
        self
    }

    /// Length of a new state in bytes (zeros).
    #[must_use]
    pub fn len(mut self, bytes: u64) -> Self {
        self.len = bytes;
        self
    }

    /// The largest length the state may grow to: for a new state, its
    /// maximum (default [`DEFAULT_RESERVATION`]); for an existing state
    /// whose maximum is smaller, its new maximum (as LMDB's map size is
    /// raised; a smaller value leaves the maximum as it is, so options
    /// shared by the code that creates a state and the code that opens it
    /// never shrink it). A raise is a checkpoint at open whose header
    /// carries the new maximum, on disk before any commit can use it. Readers opened before a raise read on; a read of bytes
    /// past the maximum they reserved is
    /// [`Error::WriterNotVisible`](crate::Error::WriterNotVisible): open
    /// them again.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("state");
    /// use mapstate::Writer;
    /// let w = Writer::options().create(true).len(4096).max_size(1 << 20).open(&path)?;
    /// assert_eq!(w.max_size(), 1 << 20);
    /// drop(w);
    /// let w = Writer::options().max_size(1 << 30).open(&path)?;
    /// assert_eq!(w.max_size(), 1 << 30);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// The durability of commits.
    #[must_use]
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Wait for the writer lock instead of failing with `Error::Locked`.
    #[must_use]
    pub fn wait_for_lock(mut self, yes: bool) -> Self {
        self.wait_for_lock = yes;
        self
    }

    /// Directory of the live image (default: `/dev/shm` if it is tmpfs).
    #[must_use]
    pub fn live_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.live_dir = Some(dir.into());
        self
    }

    /// A fixed size for a new log file. A full log triggers a checkpoint,
    /// so a smaller log means more frequent, smaller checkpoints; a single
    /// commit larger than the log grows it (up to 4 GiB). Sizes below
    /// 64 KiB are raised to it; over 4 GiB is refused at open
    /// (`Error::InvalidSize`).
    ///
    /// By default the log is sized to the state and to its commit rate: a
    /// new log is twice the state's length (at least 1 MiB, at most
    /// 64 MiB), and when it fills up in less than a second (since it was
    /// opened or last checkpointed), it grows after the checkpoint to hold
    /// a second of commits at that rate (a power of two, up to 64 MiB). A
    /// small state that commits slowly keeps a small log; one that commits
    /// fast checkpoints at most about once a second, or once per 64 MiB of
    /// log.
    #[must_use]
    pub fn log_size(mut self, bytes: u64) -> Self {
        self.log_size = Some(bytes);
        self
    }

    /// Whether a clean close ([`crate::Writer::close`], or a drop whose
    /// last checkpoint succeeds) deletes the live image, so that its
    /// memory (tmpfs: RAM, the state's size) goes back once the last
    /// reader has closed. Default `false`: the next open then finds the
    /// live image and costs what a reopen costs (no rebuild), which is what
    /// a program that restarts its writer while readers run wants. With
    /// `true`, the next open rebuilds the live image from the durable file
    /// (reading the whole state); readers that still map the deleted image
    /// read its last commit until a writer opens the state again, and are
    /// then told at their next read (`Error::WriterNotVisible`: open the
    /// state again).
    #[must_use]
    pub fn release_live_image(mut self, yes: bool) -> Self {
        self.live_image_at_close = if yes { AtClose::Release } else { AtClose::Keep };
        self
    }

    /// How often the writer may set the modification time of the durable
    /// file and the live image after a commit (stores through a mapping
    /// leave it stale): at most once per `every` (default one second; the
    /// first commit after a quiet `every` always sets it; zero: after every
    /// commit), or never with `None`.
    #[must_use]
    pub fn mtime_interval(mut self, every: Option<Duration>) -> Self {
        self.mtime_interval = every;
        self
    }

    /// Permission bits of the files of a new state (default 0600; only
    /// `0o777` of it: no set-user-id, set-group-id or sticky bit). The log,
    /// the journal and the live image get the durable file's bits.
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode & 0o777;
        self
    }

    /// Open a state on a filesystem where mapstate's guarantees cannot hold
    /// (NFS, CIFS, FUSE, 9p, ramfs), which is refused otherwise
    /// (`Error::UnsuitableFilesystem`). What is lost there: readers on other
    /// hosts see stale states (each host has its own live image), and locks,
    /// shared mappings and syncs are whatever the server makes of them, so
    /// two writers on two hosts, torn states after a crash, and lost commits
    /// are all possible.
    #[must_use]
    pub fn allow_unsuitable_filesystem(mut self, yes: bool) -> Self {
        self.allow_unsuitable_filesystem = yes;
        self
    }

    /// The options a reader of the same state needs (the live directory,
    /// and whether an unsuitable filesystem is allowed).
    pub fn reader(&self) -> ReaderOptions {
        ReaderOptions {
            live_dir: self.live_dir.clone(),
            allow_unsuitable_filesystem: self.allow_unsuitable_filesystem,
        }
    }
}

/// How to open a state for reading: a builder, finished by
/// `ReaderOptions::open` (or start one with `Reader::options`).
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("state");
/// # let live = dir.path().join("live");
/// # std::fs::create_dir(&live).unwrap();
/// use mapstate::{Reader, Writer};
/// // A writer and its readers that keep live images in a directory of
/// // their own (both must name the same one).
/// let w = Writer::options().create(true).len(4096).live_dir(&live).open(&path)?;
/// let r = Reader::options().live_dir(&live).open(&path)?;
/// assert_eq!(r.len(), 4096);
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, Default)]
pub struct ReaderOptions {
    pub(crate) live_dir: Option<PathBuf>,
    pub(crate) allow_unsuitable_filesystem: bool,
}

impl ReaderOptions {
    /// The defaults: the live image where the writer puts it by default.
    pub fn new() -> Self {
        Self::default()
    }

    /// Directory of the live image, as the writer was told
    /// ([`WriterOptions::live_dir`]).
    #[must_use]
    pub fn live_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.live_dir = Some(dir.into());
        self
    }

    /// Open a state on a filesystem where mapstate's guarantees cannot hold
    /// (see [`WriterOptions::allow_unsuitable_filesystem`]).
    #[must_use]
    pub fn allow_unsuitable_filesystem(mut self, yes: bool) -> Self {
        self.allow_unsuitable_filesystem = yes;
        self
    }

    /// The live directory, if one was given.
    pub(crate) fn live_dir_path(&self) -> Option<&Path> {
        self.live_dir.as_deref()
    }
}

#[cfg(test)]
mod tests {
    use super::Durability;
    use std::time::Duration;

    #[test]
    fn the_live_header_word_round_trips_every_durability() {
        for d in [
            Durability::PageCache,
            Durability::Sync,
            Durability::Periodic(Duration::from_millis(250)),
            Durability::Periodic(Duration::from_secs(3600)),
        ] {
            assert_ne!(d.to_word(), 0, "0 means no writer");
            assert_eq!(Durability::from_word(d.to_word()), Some(d));
            let (code, arg) = d.to_code();
            assert_eq!(Durability::from_code(code, arg), Some(d));
        }
        assert_eq!(Durability::from_word(0), None);
        assert_eq!(Durability::from_word(9 << 56), None, "unknown code");
    }
}
