//! Regions: a named state with one writer and any number of readers.
//!
//! - [`Writer`] holds the writer lock (an OFD lock the kernel drops when the
//!   holder dies), a private copy-on-write view of the live image that
//!   transactions change, the log and the durable image.
//! - [`Txn`] is one transaction: explicit changes ([`Txn::write_at`],
//!   [`Txn::get_mut`]) and free stores into [`Txn::as_mut_slice`]; `commit`
//!   makes all of it visible at once, dropping it discards it.
//! - [`Reader`] copies consistent snapshots out of the live image.
//!
//! `docs/DESIGN.md` lists every step of the commit and recovery paths and
//! what a crash at each step leaves.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{Ordering, fence};
use std::time::Duration;

use zerocopy::little_endian::U64;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::durable::{self, Durable};
use crate::error::{Error, Result};
use crate::format::{self, PAGE};
use crate::live::{self, Live};
use crate::log::Log;
use crate::offset::Offset;
use crate::sys::grow::{Growth, Spec as GrowSpec};
use crate::sys::uffd::WriteTracker;
use crate::sys::{self, MapKind, Reservation};

/// How many recent commits a power cut may take away; never whether the
/// state is consistent (see the guarantee table in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// When `commit` returns, the commit is visible to every process and
    /// survives any process crash. It reaches the disk at the next
    /// checkpoint (when the log fills up, on [`Writer::checkpoint`] or on
    /// close). No system call on the commit path.
    #[default]
    PageCache,
    /// As `PageCache`; in addition a background thread (`mapstate-syncer`)
    /// `fdatasync`s the log every interval, so a power cut loses at most the
    /// commits of the last interval (plus one sync's duration). No system
    /// call on the commit path.
    Periodic(Duration),
    /// When `commit` returns, the commit is on stable storage: the log is
    /// `fdatasync`ed before the commit is published. One `fdatasync` per commit.
    Sync,
}

impl Durability {
    /// The code stored in the durable header.
    pub(crate) fn to_code(self) -> (u64, u64) {
        match self {
            Durability::PageCache => (0, 0),
            Durability::Periodic(d) => (1, d.as_millis() as u64),
            Durability::Sync => (2, 0),
        }
    }

    /// Decodes a stored code.
    pub(crate) fn from_code(code: u64, arg: u64) -> Option<Self> {
        match code {
            0 => Some(Durability::PageCache),
            1 => Some(Durability::Periodic(Duration::from_millis(arg))),
            2 => Some(Durability::Sync),
            _ => None,
        }
    }

    /// One word for the live header: `code + 1` in the top byte, the
    /// argument (clamped) below it.
    fn to_word(self) -> u64 {
        let (code, arg) = self.to_code();
        ((code + 1) << 56) | arg.min((1 << 56) - 1)
    }

    /// Decodes [`Durability::to_word`]; `None` for 0 or an unknown code.
    fn from_word(w: u64) -> Option<Self> {
        let code = (w >> 56).checked_sub(1)?;
        Self::from_code(code, w & ((1 << 56) - 1))
    }
}

/// How to open a region.
#[derive(Clone, Debug)]
pub struct Options {
    create: bool,
    len: u64,
    max_size: u64,
    durability: Durability,
    wait: bool,
    live_dir: Option<PathBuf>,
    mode: u32,
    log_size: u64,
    mtime: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// No create; a new state would be 4 KiB, growable to 1 GiB; `PageCache`; mode 0600.
    pub fn new() -> Self {
        Self {
            create: false,
            len: PAGE,
            max_size: crate::DEFAULT_RESERVATION,
            durability: Durability::PageCache,
            wait: false,
            live_dir: None,
            mode: 0o600,
            log_size: crate::log::DEFAULT_LOG_SIZE,
            mtime: Some(crate::notify::mtime::DEFAULT_INTERVAL),
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

    /// The largest length a new state may grow to.
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = bytes;
        self
    }

    /// The durability of commits.
    #[must_use]
    pub fn durability(mut self, d: Durability) -> Self {
        self.durability = d;
        self
    }

    /// Wait for the writer lock instead of failing with [`Error::Locked`].
    #[must_use]
    pub fn wait_for_lock(mut self, yes: bool) -> Self {
        self.wait = yes;
        self
    }

    /// Directory of the live image (default: `/dev/shm` if it is tmpfs).
    #[must_use]
    pub fn live_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.live_dir = Some(dir.into());
        self
    }

    /// Size of a new log file (default 64 MiB, at least 64 KiB). A full log
    /// triggers a checkpoint, so a smaller log means more frequent, smaller
    /// checkpoints; a single commit larger than the log grows it.
    #[must_use]
    pub fn log_size(mut self, bytes: u64) -> Self {
        self.log_size = bytes.max(64 << 10).next_multiple_of(PAGE);
        self
    }

    /// How often the writer may set the modification time of the durable
    /// file and the live image after a commit (stores through a mapping
    /// leave it stale): at most once per `every` (default one second; the
    /// first commit after a quiet `every` always sets it; zero: after every
    /// commit), or never with `None`.
    #[must_use]
    pub fn mtime_interval(mut self, every: Option<Duration>) -> Self {
        self.mtime = every;
        self
    }

    /// Permission bits of the files of a new state (default 0600).
    #[must_use]
    pub fn mode(mut self, mode: u32) -> Self {
        self.mode = mode;
        self
    }
}

/// The writer lock: byte 0 of the durable file (an OFD lock).
const WRITER_LOCK: (u64, u64) = (0, 1);

/// Holds `flock(LOCK_EX)` on the durable file while the live image is
/// opened or built, so that two processes never build it twice.
struct BuildLock<'a>(&'a File);

impl<'a> BuildLock<'a> {
    fn take(file: &'a File, path: &Path) -> Result<Self> {
        sys::flock(sys::fd_of(file), true).map_err(|e| Error::io("flock", path, e))?;
        Ok(Self(file))
    }
}

impl Drop for BuildLock<'_> {
    fn drop(&mut self) {
        let _ = sys::flock_unlock(sys::fd_of(self.0));
    }
}

/// Opens the live image of `d`, building it if missing or stale.
fn open_live(d: &Durable, live_dir: Option<&Path>, writable: bool) -> Result<Live> {
    let path = live::live_path(live_dir, d)?;
    let _lock = BuildLock::take(&d.file, &d.path)?;
    let journal = durable::read_journal(&durable::companion(&d.path, "-ckpt"), &d.header)?;
    let base = journal.as_ref().map_or(d.header, |j| j.target);
    let max = base.max_size.get();
    if let Some(l) = Live::open_existing(&path, &base.file_id, max, writable)? {
        if l.applied().0 >= base.checkpoint_seq.get() {
            return Ok(l);
        }
    }
    let log = Log::open(
        &durable::companion(&d.path, "-wal"),
        &base.file_id,
        false,
        false,
        0,
    )?;
    let built = Live::build(&path, d, journal.as_ref(), &log)?;
    if writable {
        return Ok(built);
    }
    drop(built);
    Live::open_existing(&path, &base.file_id, max, false)?.ok_or_else(|| Error::Corrupt {
        path,
        what: "the live image just built does not validate".into(),
    })
}

/// The single writer of a region.
#[derive(Debug)]
#[allow(clippy::struct_excessive_bools)] // independent per-transaction flags
pub struct Writer {
    /// Extend-on-write of the view (dropped first: it must go before the
    /// view and the live image it maps).
    grow: Growth,
    durable: Durable,
    log: Log,
    live: Live,
    /// The writer's view: the live image's data mapped `MAP_PRIVATE`, up
    /// to `grow.mapped()`; the rest of the maximum size is reserved and
    /// grows when touched, then a guard of `sys::grow::GUARD` bytes.
    view: Reservation,
    /// Last committed sequence number.
    seq: u64,
    /// Committed length.
    len: u64,
    /// Length the open transaction will commit.
    txn_len: u64,
    /// Pages changed since the last checkpoint (one bit each).
    dirty: Vec<u64>,
    /// Explicit changes of the open transaction.
    ranges: Vec<(u64, u64)>,
    /// Whether the open transaction handed out the whole view for free stores.
    free: bool,
    /// Whether the open transaction's length follows its free stores
    /// (it handed out the extend-on-write view)...
    auto_len: bool,
    /// ...unless it called `set_len`, which fixes it.
    len_fixed: bool,
    durability: Durability,
    poisoned: Option<String>,
    /// Finds the view's pages written by free stores (userfaultfd); `None`
    /// where the kernel refuses it, and then commits compare the whole view.
    tracker: Option<WriteTracker>,
    tracker_failed: bool,
    /// The background syncer of `Durability::Periodic`.
    syncer: Option<Syncer>,
}

/// Syncs the log every interval on a thread of its own, so that
/// `Periodic` commits cost what `PageCache` ones do and a power cut loses at
/// most the commits of the last interval (plus one `fdatasync`).
#[derive(Debug)]
struct Syncer {
    stop: Option<std::sync::mpsc::Sender<()>>,
    failed: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    /// Set once `failed` holds a message: a load per commit, no lock.
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Syncer {
    fn start(log: File, path: PathBuf, every: Duration) -> Result<Self> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let failed = std::sync::Arc::new(std::sync::Mutex::new(None));
        let report = failed.clone();
        let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let raise = flag.clone();
        let thread = std::thread::Builder::new()
            .name("mapstate-syncer".into())
            .spawn(move || {
                // The channel's timeout is the timer; a message or a closed
                // channel is the stop signal.
                while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    stopped.recv_timeout(every)
                {
                    if let Err(e) = sys::fdatasync(sys::fd_of(&log)) {
                        let msg = Error::io("fdatasync", &path, e).to_string();
                        *report
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(msg);
                        raise.store(true, Ordering::Release);
                        return;
                    }
                }
            })
            .map_err(|e| Error::io("spawn the syncer thread", PathBuf::new(), e))?;
        Ok(Self {
            stop: Some(stop),
            failed,
            flag,
            thread: Some(thread),
        })
    }

    /// The failure of a background sync, if one failed.
    fn failure(&self) -> Option<String> {
        if !self.flag.load(Ordering::Acquire) {
            return None;
        }
        self.failed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Writer {
    /// Opens (or, with `create`, creates) the state at `path` for writing.
    /// Recovers from any crash of a previous writer: finishes an interrupted
    /// checkpoint and replays the log records not yet in the live image.
    #[allow(clippy::too_many_lines)] // one linear recovery procedure, documented step by step
    pub fn open(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        let path = path.as_ref();
        let file = crate::map::open_file(path, true, opts.create, opts.mode)?;
        take_writer_lock(&file, path, opts)?;
        let flen = file
            .metadata()
            .map_err(|e| Error::io("fstat", path, e))?
            .len();
        let mut durable = if flen == 0 && opts.create {
            let max = crate::map::check_size("maximum size", opts.max_size)?;
            if opts.len > max {
                return Err(Error::InvalidSize {
                    what: "length",
                    size: opts.len,
                    reason: format!("larger than the maximum size of {max} bytes"),
                });
            }
            for suffix in ["-wal", "-ckpt"] {
                let p = durable::companion(path, suffix);
                if let Err(e) = std::fs::remove_file(&p) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        return Err(Error::io("unlink", p, e));
                    }
                }
            }
            let d = Durable::initialize(file, path, opts.len, max, opts.durability.to_code())?;
            sync_parent(path)?;
            d
        } else {
            Durable::open(file, path)?
        };
        if let Some(j) = durable::read_journal(&durable::companion(path, "-ckpt"), &durable.header)?
        {
            finish_checkpoint(&mut durable, &j)?;
        }
        let h = durable.header;
        let wal = durable::companion(path, "-wal");
        let created_log = !wal.exists();
        let mut log = Log::open(&wal, &h.file_id, true, true, opts.log_size)?;
        if created_log {
            sync_parent(path)?;
        }
        let mut live = open_live(&durable, opts.live_dir.as_deref(), true)?;
        let max_size = h.max_size.get();
        // Recovery: replay what the live image lacks; note every page the log
        // touched since the checkpoint, which the next checkpoint must write.
        let (applied, _) = live.applied();
        let mut dirty = Vec::new();
        // Records the live image already has were validated when they were
        // written and are only needed for their ranges (the pages the next
        // checkpoint writes): walk them cheaply up to the position the live
        // image published, then validate and replay from there.
        let first = h.checkpoint_seq.get() + 1;
        let (pseq, phead, pchain) = live.log_position().unwrap_or((u64::MAX, 0, 0));
        let (start, seed, from_seq) = if pseq >= first.saturating_sub(1)
            && pseq <= applied
            && log.walk_ranges(PAGE, phead, first, pseq, |off, len| {
                mark(&mut dirty, off, len, max_size);
            }) {
            (phead, pchain, pseq + 1)
        } else {
            dirty.fill(0);
            (PAGE, h.log_salt.get(), first)
        };
        let end = log.scan(start, seed, from_seq, max_size, |r| {
            for &(off, len) in &r.ranges {
                mark(&mut dirty, off, len, max_size);
            }
            if r.seq > applied {
                live.apply_record(r)
            } else {
                Ok(())
            }
        })?;
        let (now, odd) = live.applied();
        if odd || now < end.last_seq {
            return Err(Error::Corrupt {
                path: live.path.clone(),
                what: format!(
                    "the live image is at commit {now} but the log ends at {}",
                    end.last_seq
                ),
            });
        }
        log.head = end.head;
        log.chain = end.chain;
        let len = live.len_word().load(Ordering::Acquire);
        let limit = max_size.next_multiple_of(PAGE) as usize;
        let view = Reservation::new(limit + sys::grow::GUARD)
            .map_err(|e| Error::io("mmap (reserve)", path, e))?;
        let grow = Growth::register(
            &view,
            sys::fd_of(&live.file),
            GrowSpec {
                file_off: PAGE,
                kind: MapKind::Private,
                writable: true,
                limit,
                mapped: 0,
                prefault: false,
            },
        )
        .map_err(|e| Error::io("register the view for extend-on-write", path, e))?;
        let mut w = Self {
            grow,
            durable,
            log,
            live,
            view,
            seq: now,
            len,
            txn_len: len,
            dirty,
            ranges: Vec::new(),
            free: false,
            auto_len: false,
            len_fixed: false,
            durability: opts.durability,
            poisoned: None,
            tracker: None,
            tracker_failed: false,
            syncer: None,
        };
        if let Durability::Periodic(every) = opts.durability {
            let log = w.log.try_clone_file()?;
            w.syncer = Some(Syncer::start(log, durable::companion(path, "-wal"), every)?);
        }
        if now > end.last_seq {
            // The live image holds commits the log no longer has (the log was
            // lost): make them durable now with a full checkpoint.
            mark(&mut w.dirty, 0, len, max_size);
            w.checkpoint()?;
        }
        w.map_view(len)?;
        w.live.publish_log(w.seq, w.log.head, w.log.chain);
        w.live
            .writer_durability()
            .store(opts.durability.to_word(), Ordering::Relaxed);
        w.live.writer_pid().store(sys::getpid(), Ordering::Release);
        w.live.mtime = crate::notify::mtime::MtimeClock::new(opts.mtime);
        // A writer killed between publishing a commit and waking its waiters
        // left them asleep: wake everyone once (they re-check and sleep again).
        w.live.wake_all();
        Ok(w)
    }

    /// Maps the view up to `len` bytes (growing the live image first).
    fn map_view(&mut self, len: u64) -> Result<()> {
        self.grow
            .grow_to(len as usize)
            .map_err(|e| crate::map::growth_error(&self.live.path, None, e, len))
    }

    /// Bytes of the view mapped (the rest grows when touched).
    fn view_mapped(&self) -> u64 {
        self.grow.mapped() as u64
    }

    /// The durable file's path.
    pub fn path(&self) -> &Path {
        &self.durable.path
    }

    /// The sequence number of the last commit (0 for a new state).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The committed length of the state in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the state is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The largest length the state may grow to.
    pub fn max_size(&self) -> u64 {
        self.durable.header.max_size.get()
    }

    /// The default durability of this handle's commits.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Another descriptor of the log file (for group commit).
    pub(crate) fn log_file(&self) -> Result<File> {
        self.log.try_clone_file()
    }

    /// Notes that commits are synced one by one from now on (group commit).
    pub(crate) fn expect_synced_commits(&mut self) {
        self.log.expect_synced_commits();
    }

    /// Marks the writer failed (a sync made elsewhere failed).
    pub(crate) fn set_poisoned(&mut self, cause: &str) {
        self.poisoned.get_or_insert_with(|| cause.to_owned());
    }

    /// Bytes of log written since the last checkpoint.
    pub fn log_bytes(&self) -> u64 {
        self.log.used()
    }

    /// Starts a transaction. Nothing it changes is visible to anyone else
    /// until [`Txn::commit`]; dropping it discards it.
    pub fn begin(&mut self) -> Txn<'_> {
        self.txn_len = self.len;
        self.auto_len = false;
        self.len_fixed = false;
        Txn {
            w: self,
            done: false,
        }
    }

    fn check_poison(&mut self) -> Result<()> {
        if self.poisoned.is_none()
            && let Some(cause) = self.syncer.as_ref().and_then(Syncer::failure)
        {
            self.poisoned = Some(cause);
        }
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                path: self.durable.path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes a failure sticky: every later operation reports it.
    fn poison<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// Writes every page changed since the last checkpoint into the durable
    /// image and empties the log. The order of writes and syncs:
    /// 1. the journal (`NAME-ckpt`: the pages and the next header), fdatasync;
    /// 2. the pages into the durable image, fdatasync;
    /// 3. the next header into the other header slot, fdatasync;
    /// 4. the log restarts at its beginning with a fresh salt.
    ///
    /// A crash after 1 is finished from the journal at the next open; before
    /// it, the durable image is untouched.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.check_poison()?;
        let r = self.checkpoint_inner();
        self.poison(r)
    }

    fn checkpoint_inner(&mut self) -> Result<()> {
        // Pages past the durable image's length were never written there
        // (after a shrink its file may even hold stale bytes): write them.
        let durable_len = self.durable.header.len.get();
        if self.len > durable_len {
            let max = self.max_size();
            mark(&mut self.dirty, durable_len, self.len - durable_len, max);
        }
        let mut target = self.durable.header;
        target.generation = U64::new(target.generation.get() + 1);
        target.checkpoint_seq = U64::new(self.seq);
        target.len = U64::new(self.len);
        target.log_salt = U64::new(sys::random_u64());
        target.seal();
        let npages = self.len.div_ceil(PAGE);
        let mut pages = Vec::new();
        for (wi, &word) in self.dirty.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let no = wi as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if no < npages {
                    pages.push(no);
                }
            }
        }
        let (live, len) = (&self.live, self.len);
        let ckpt = durable::companion(&self.durable.path, "-ckpt");
        let mode = {
            use std::os::unix::fs::PermissionsExt as _;
            self.durable
                .file
                .metadata()
                .map_or(0o600, |m| m.permissions().mode() & 0o777)
        };
        durable::write_journal(&ckpt, mode, &target, &pages, |no, buf| {
            let n = (len - no * PAGE).min(PAGE) as usize;
            live.res.read((PAGE + no * PAGE) as usize, &mut buf[..n]);
            buf[n..].fill(0);
        })?;
        sys::crash::point(12);
        let journal =
            durable::read_journal(&ckpt, &self.durable.header)?.ok_or_else(|| Error::Corrupt {
                path: ckpt.clone(),
                what: "the checkpoint journal just written does not read back".into(),
            })?;
        finish_checkpoint(&mut self.durable, &journal)?;
        sys::crash::point(15);
        self.log.reset(target.log_salt.get());
        self.live
            .publish_log(self.seq, self.log.head, self.log.chain);
        self.dirty.fill(0);
        Ok(())
    }

    /// Checkpoints and closes, reporting any error (dropping does the same
    /// but can only ignore errors).
    pub fn close(mut self) -> Result<()> {
        let r = if self.log.used() > 0 {
            self.checkpoint()
        } else {
            self.check_poison()
        };
        self.live.writer_pid().store(0, Ordering::Release);
        r
    }

    fn commit_inner(&mut self, durability: Durability) -> Result<u64> {
        self.check_poison()?;
        let _section = crate::signals::defer_termination();
        if let Some(f) = self.grow.failure() {
            return Err(crate::map::growth_failure(
                &self.live.path,
                f,
                self.max_size(),
            ));
        }
        let mut ranges = std::mem::take(&mut self.ranges);
        let mut new_len = self.txn_len;
        if self.free {
            let extent = self.find_free_stores(&mut ranges);
            let extent = match extent {
                Ok(e) => e,
                Err(e) => {
                    self.ranges = ranges;
                    return Err(e);
                }
            };
            if self.auto_len && !self.len_fixed && extent > new_len {
                // Extend-on-write: the state grows to the last page written
                // (clamped to the maximum size, which need not be a page multiple).
                new_len = extent.min(self.max_size());
                ranges.retain_mut(|r| {
                    r.1 = r.1.min(new_len.saturating_sub(r.0));
                    r.1 > 0
                });
            }
        }
        self.auto_len = false;
        self.len_fixed = false;
        if ranges.is_empty() && new_len == self.len {
            self.ranges = ranges;
            self.free = false;
            return Ok(self.seq);
        }
        self.live.ensure_mapped(new_len.max(self.len))?;
        let data: u64 = ranges.iter().map(|r| r.1).sum();
        let total = format::record_len(ranges.len(), data);
        if !self.log.fits(total) {
            self.checkpoint()?;
            if !self.log.fits_empty(total) {
                let r = self.log.grow_for(total);
                self.poison(r)?;
            }
        }
        let seq = self.seq + 1;
        if durability == Durability::Sync {
            self.log.expect_synced_commits();
        }
        self.log.append(seq, new_len, &ranges, &self.view);
        sys::crash::point(3);
        if durability == Durability::Sync {
            let r = self.log.sync();
            self.poison(r)?;
        }
        self.live.begin_apply(seq);
        sys::crash::point(4);
        let half = ranges.len() / 2;
        let max = self.max_size();
        // Only this writer stores into the live image (readers copy out of
        // it under the sequence lock), so one slice over each side is sound.
        let n = new_len.max(self.len).next_multiple_of(PAGE) as usize;
        let src = self.view.exclusive_bytes(0, n);
        let dst = self.live.res.exclusive_bytes_mut(PAGE as usize, n);
        for (i, &(off, len)) in ranges.iter().enumerate() {
            if i == half {
                sys::crash::point(5);
            }
            let r = off as usize..(off + len) as usize;
            dst[r.clone()].copy_from_slice(&src[r]);
            mark(&mut self.dirty, off, len, max);
        }
        sys::crash::point(6);
        self.live.record_change(seq, &ranges, self.len, new_len);
        self.live.end_apply(seq, new_len);
        self.live.publish_log(seq, self.log.head, self.log.chain);
        self.live.touch_mtime(&self.durable.file);
        sys::crash::point(7);
        self.seq = seq;
        self.len = new_len;
        ranges.clear();
        self.ranges = ranges;
        self.free = false;
        Ok(seq)
    }

    /// Starts tracking free stores, the first time a transaction hands out
    /// the view (registering costs time proportional to the view's size,
    /// so writers that never use free stores never pay it). The tracker is
    /// created under the growth lock and its descriptor published there, so
    /// every range grown later is registered with it before it is written.
    fn track_free_stores(&mut self) {
        if self.tracker.is_some() || self.tracker_failed {
            return;
        }
        if self.view_mapped() == 0 && self.map_view(PAGE).is_err() {
            self.tracker_failed = true;
            return;
        }
        let view = &self.view;
        let made = self
            .grow
            .set_tracker(|mapped| match WriteTracker::new(view, 0, mapped) {
                Ok(t) => (Some(t.raw_fd()), Some(t)),
                Err(_) => (None, None),
            });
        self.tracker_failed = made.is_none();
        self.tracker = made;
    }

    /// Stops tracking (the tracker failed): commits compare the whole view.
    fn drop_tracker(&mut self) {
        let t = self.tracker.take();
        self.grow.set_tracker(|_| (None, drop(t)));
        self.tracker_failed = true;
    }

    /// Adds the pages written by free stores whose bytes differ from the
    /// live image: those userfaultfd reports as written, or, without it,
    /// every page of the view. Looks up to the mapped end of the view if the
    /// transaction's length follows its stores (`auto_len` without
    /// `len_fixed`), else up to its length (stores past it are dropped). Returns the end of the last page written (without the
    /// tracker: the last page that differs), or 0.
    fn find_free_stores(&mut self, out: &mut Vec<(u64, u64)>) -> Result<u64> {
        let mapped = self.view_mapped();
        let n = if self.auto_len && !self.len_fixed {
            mapped
        } else {
            self.txn_len.min(mapped)
        };
        self.live.ensure_mapped(n)?;
        if self.grow.take_tracker_lost() {
            self.drop_tracker();
        }
        let mut written = Vec::new();
        let view = &self.view;
        let scanned = self.tracker.as_mut().is_some_and(|t| {
            t.adopt(view, mapped as usize);
            t.take_written(view, &mut written).is_ok()
        });
        if !scanned {
            written.clear();
            written.push(0..n as usize);
        }
        let mut extent = 0;
        for r in written {
            let mut off = r.start as u64;
            let end = (r.end as u64).min(n);
            if scanned && end > off {
                extent = extent.max(end);
            }
            while off < end {
                let len = (end - off).min(PAGE);
                let v = self.view.exclusive_bytes(off as usize, len as usize);
                let l = self
                    .live
                    .res
                    .exclusive_bytes((PAGE + off) as usize, len as usize);
                if v != l {
                    push_range(out, off, len);
                    extent = extent.max(off + len);
                }
                off += len;
            }
        }
        Ok(extent)
    }

    fn abort_inner(&mut self) {
        if self.free {
            // Drop every private page: the view reads the live image again.
            let _ = self
                .view
                .discard(0, self.view_mapped() as usize, sys::Discard::DontNeed);
            if let Some(t) = &mut self.tracker {
                // Nothing is written now: the next scan starts from a clean
                // slate (over the grown part too).
                t.adopt(&self.view, self.grow.mapped());
                let _ = t.reset(&self.view);
            }
        } else {
            for &(off, len) in &self.ranges {
                sys::copy_between(
                    &self.live.res,
                    (PAGE + off) as usize,
                    &mut self.view,
                    off as usize,
                    len as usize,
                );
            }
        }
        // Stores that landed in scratch pages after a failed growth are
        // dropped with the transaction.
        let _ = self.grow.clear_failure();
        self.ranges.clear();
        self.free = false;
        self.auto_len = false;
        self.len_fixed = false;
        self.txn_len = self.len;
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.poisoned.is_none() && self.log.used() > 0 {
            let _ = self.checkpoint();
        }
        self.live.writer_pid().store(0, Ordering::Release);
    }
}

/// Writes a journal's pages and header into the durable image, with syncs:
/// pages, fdatasync, header, fdatasync.
fn finish_checkpoint(d: &mut Durable, j: &durable::Journal) -> Result<()> {
    let len = j.target.len.get();
    d.reserve(len)?;
    let half = j.pages.len() / 2;
    let mut page = vec![0u8; PAGE as usize];
    for (i, &no) in j.pages.iter().enumerate() {
        if i == half {
            sys::crash::point(13);
        }
        j.read_page(i, &mut page)?;
        let at = no * PAGE;
        let n = (len - at).min(PAGE) as usize;
        d.write_data(at, &page[..n])?;
    }
    d.sync()?;
    sys::crash::point(14);
    d.write_header(j.target)?;
    d.sync()
}

fn sync_parent(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let f = File::open(dir).map_err(|e| Error::io("open", dir, e))?;
    sys::fsync(sys::fd_of(&f)).map_err(|e| Error::io("fsync", dir, e))
}

/// The pid the current writer recorded in the live image, if any.
/// Takes the writer lock on `file` (waiting for it if `opts.wait`).
///
/// The lock is an OFD lock, so it belongs to the open file description, and
/// a process forked by any thread of the holder (`std::process::Command`
/// included) holds a copy of it until it execs. A writer closed just before
/// such a fork therefore still looks like a holder for a moment. A busy lock
/// whose holder published no pid (a live writer publishes its pid as soon as
/// it has opened) is retried for up to about 100 ms before `Locked` is
/// returned.
fn take_writer_lock(file: &File, path: &Path, opts: &Options) -> Result<()> {
    let (s, l) = WRITER_LOCK;
    let mut pause = std::time::Duration::from_micros(200);
    let mut waited = std::time::Duration::ZERO;
    loop {
        let r = sys::ofd_lock(sys::fd_of(file), s, l, true, opts.wait)
            .map_err(|e| Error::io("fcntl(F_OFD_SETLK)", path, e))?;
        if r == sys::LockResult::Acquired {
            return Ok(());
        }
        let pid = holder_pid(file, opts.live_dir.as_deref());
        if pid.is_some() || waited >= std::time::Duration::from_millis(100) {
            return Err(Error::Locked {
                path: path.into(),
                pid,
            });
        }
        std::thread::sleep(pause);
        waited += pause;
        pause = (pause * 2).min(std::time::Duration::from_millis(20));
    }
}

fn holder_pid(file: &File, live_dir: Option<&Path>) -> Option<u32> {
    let d = Durable::open(file.try_clone().ok()?, Path::new("")).ok()?;
    let p = live::live_path(live_dir, &d).ok()?;
    let f = File::open(p).ok()?;
    let mut b = [0u8; 4];
    f.read_exact_at(&mut b, format::live::WRITER_PID).ok()?;
    Some(u32::from_le_bytes(b)).filter(|&p| p != 0)
}

/// Marks the pages of `off..off + len` in a page bitmap, which grows as
/// needed (its size follows the state's length, not its maximum); pages at
/// or past `max` (only a damaged record could name them) are ignored.
fn mark(bits: &mut Vec<u64>, off: u64, len: u64, max: u64) {
    let Some(end) = off.checked_add(len) else {
        return;
    };
    let end = end.min(max);
    if end <= off {
        return;
    }
    let last = (end - 1) / PAGE;
    let words = (last / 64 + 1) as usize;
    if bits.len() < words {
        bits.resize(words, 0);
    }
    for p in off / PAGE..=last {
        bits[(p / 64) as usize] |= 1 << (p % 64);
    }
}

/// Checks every `(offset, buffer)` request against the state's length.
fn check_requests(reqs: &[(u64, &mut [u8])], len: u64) -> Result<()> {
    for (o, b) in reqs {
        let l = b.len() as u64;
        if o.checked_add(l).is_none_or(|e| e > len) {
            return Err(Error::OutOfBounds {
                offset: *o,
                len: l,
                size: len,
            });
        }
    }
    Ok(())
}

fn misaligned<T>(offset: u64) -> Error {
    Error::Misaligned {
        offset,
        align: std::mem::align_of::<T>(),
        type_name: std::any::type_name::<T>(),
    }
}

/// Records a changed range, extending the previous one when this one
/// starts inside or right after it (a field written again and again, or a
/// buffer filled piece by piece, stays one range). Ranges are not sorted:
/// every range is logged with the bytes the view holds at commit, so
/// overlapping ranges carry identical bytes and their order never matters.
fn push_range(r: &mut Vec<(u64, u64)>, off: u64, len: u64) {
    if let Some(last) = r.last_mut() {
        let end = last.0 + last.1;
        if off >= last.0 && off <= end {
            last.1 = end.max(off + len) - last.0;
            return;
        }
    }
    r.push((off, len));
}

/// One transaction of a [`Writer`].
#[derive(Debug)]
pub struct Txn<'w> {
    w: &'w mut Writer,
    done: bool,
}

impl Txn<'_> {
    /// The length the state will have when this transaction commits.
    #[allow(clippy::misnamed_getters)] // the transaction's length, not the committed one
    pub fn len(&self) -> u64 {
        self.w.txn_len
    }

    /// Whether that length is 0.
    pub fn is_empty(&self) -> bool {
        self.w.txn_len == 0
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.w.txn_len => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: self.w.txn_len,
            }),
        }
    }

    /// Changes the state's length (growing reads as zeros; at most the maximum size).
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        if len > self.w.max_size() {
            return Err(Error::InvalidSize {
                what: "length",
                size: len,
                reason: format!(
                    "larger than the maximum size of {} bytes",
                    self.w.max_size()
                ),
            });
        }
        self.w.map_view(len)?;
        self.w.len_fixed = true;
        if len < self.w.txn_len {
            // Bytes past the new end must read as zeros if the state grows again.
            let zero = vec![0u8; (self.w.txn_len - len) as usize];
            self.w.view.write(len as usize, &zero);
            push_range(&mut self.w.ranges, len, zero.len() as u64);
        }
        self.w.txn_len = len;
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.check(offset, data.len() as u64)?;
        self.w.view.write(offset as usize, data);
        if !data.is_empty() {
            push_range(&mut self.w.ranges, offset, data.len() as u64);
        }
        Ok(())
    }

    /// Reads bytes at `offset`, including this transaction's own changes.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        self.w.view.read(offset as usize, buf);
        Ok(())
    }

    fn typed<T: KnownLayout>(&self, at: Offset<T>) -> Result<(u64, u64)> {
        let offset = at.get();
        let size = std::mem::size_of::<T>() as u64;
        let align = std::mem::align_of::<T>();
        if offset % align as u64 != 0 {
            return Err(Error::Misaligned {
                offset,
                align,
                type_name: std::any::type_name::<T>(),
            });
        }
        self.check(offset, size)?;
        Ok((offset, size))
    }

    /// A reference to the `T` at `at` in this transaction's view.
    pub fn get<T: FromBytes + KnownLayout + Immutable>(&self, at: Offset<T>) -> Result<&T> {
        let (off, size) = self.typed(at)?;
        let bytes = self.w.view.exclusive_bytes(off as usize, size as usize);
        T::ref_from_bytes(bytes).map_err(|_| misaligned::<T>(off))
    }

    /// A mutable reference to the `T` at `at`; the whole `T` is part of the commit.
    pub fn get_mut<T: FromBytes + IntoBytes + KnownLayout>(
        &mut self,
        at: Offset<T>,
    ) -> Result<&mut T> {
        let (off, size) = self.typed(at)?;
        push_range(&mut self.w.ranges, off, size);
        let bytes = self.w.view.exclusive_bytes_mut(off as usize, size as usize);
        T::mut_from_bytes(bytes).map_err(|_| misaligned::<T>(off))
    }

    /// The whole state, writable with plain stores (a C library filling a
    /// buffer, say). The pages changed are found at commit by comparing the
    /// view with the live image.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.w.track_free_stores();
        self.w.free = true;
        let n = self.w.txn_len as usize;
        self.w.view.exclusive_bytes_mut(0, n)
    }

    /// Extend-on-write: the whole address range up to the maximum size,
    /// writable with plain stores. Bytes past the state's length read as
    /// zeros; a load or store past the mapped part grows the view (and the
    /// live image) in chunks at stable addresses, from a SIGSEGV handler,
    /// with no call by the program. At commit the state's length becomes the
    /// end of the last page written (page granularity: the length is then a
    /// multiple of 4096, or the maximum size), unless the transaction calls
    /// [`Txn::set_len`], whose length is kept.
    ///
    /// If growth fails (the live image's filesystem is full, a memory limit)
    /// the stores land in scratch pages and the commit fails with
    /// [`Error::NoSpace`] (or another growth error), discarding the
    /// transaction; nothing committed before is affected. A store in the
    /// guard just past the maximum size (up to 1 MiB) fails the commit with
    /// [`Error::PastMaximum`]; further out it is an ordinary segfault.
    pub fn extend_on_write(&mut self) -> &mut [u8] {
        self.w.track_free_stores();
        self.w.free = true;
        self.w.auto_len = true;
        let n = self.w.max_size() as usize;
        self.w.view.exclusive_bytes_mut(0, n)
    }

    /// The whole state as this transaction sees it.
    pub fn as_slice(&self) -> &[u8] {
        self.w.view.exclusive_bytes(0, self.w.txn_len as usize)
    }

    /// Makes every change of this transaction visible at once, with the
    /// writer's durability. Returns the commit's sequence number.
    pub fn commit(self) -> Result<u64> {
        let d = self.w.durability;
        self.commit_with(d)
    }

    /// As [`Txn::commit`] with another durability for this commit.
    pub fn commit_with(mut self, durability: Durability) -> Result<u64> {
        self.done = true;
        let r = self.w.commit_inner(durability);
        if r.is_err() {
            self.w.abort_inner();
        }
        r
    }

    /// Discards every change of this transaction.
    pub fn abort(mut self) {
        self.done = true;
        self.w.abort_inner();
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.w.abort_inner();
        }
    }
}

/// A reader of a region, in any process. Every read returns a consistent
/// committed state: never a torn or uncommitted one.
#[derive(Debug)]
pub struct Reader {
    file: File,
    path: PathBuf,
    live: Live,
    live_dir: Option<PathBuf>,
    file_id: [u8; 16],
    max_size: u64,
    /// The log, opened read-only the first time a long read needs it.
    log: Option<Log>,
}

impl Reader {
    /// Opens the state at `path` for reading (building the live image if
    /// the OS restarted since it was last used).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path, &Options::new())
    }

    /// As [`Reader::open`], with options (only `live_dir` matters).
    pub fn open_with(path: impl AsRef<Path>, opts: &Options) -> Result<Self> {
        let path = path.as_ref();
        let file = crate::map::open_file(path, false, false, 0)?;
        let d = Durable::open(file, path)?;
        let live = open_live(&d, opts.live_dir.as_deref(), false)?;
        Ok(Self {
            file_id: d.header.file_id,
            max_size: d.header.max_size.get(),
            file: d.file,
            path: path.into(),
            live,
            live_dir: opts.live_dir.clone(),
            log: None,
        })
    }

    /// The sequence number of the last published commit.
    pub fn seq(&self) -> u64 {
        self.live.applied().0
    }

    /// The live image (for the notification module).
    pub(crate) fn live(&self) -> &Live {
        &self.live
    }

    /// The state's length as of the last published commit.
    pub fn len(&self) -> u64 {
        self.live.len_word().load(Ordering::Acquire)
    }

    /// Whether the state is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies `buf.len()` bytes at `offset` of one committed state, and
    /// returns that state's sequence number. Never blocks the writer; retries
    /// while a commit is being applied.
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<u64> {
        // The common case in a few loads: no commit in flight, the range
        // already mapped. Anything else takes the general path.
        let s0 = self.live.seqlock().load(Ordering::Acquire);
        let end = offset.checked_add(buf.len() as u64);
        if s0 % 2 == 0
            && let Some(end) = end
            && end <= self.live.len_word().load(Ordering::Relaxed)
            && end <= self.live.mapped()
        {
            self.live.res.read((PAGE + offset) as usize, buf);
            fence(Ordering::Acquire);
            if self.live.seqlock().load(Ordering::Relaxed) == s0 {
                return Ok(s0 / 2);
            }
        }
        self.read_many(&mut [(offset, buf)])
    }

    /// Reads a `T` at `at` from one committed state.
    pub fn read<T: FromBytes + IntoBytes>(&mut self, at: Offset<T>) -> Result<T> {
        let offset = at.get();
        let align = std::mem::align_of::<T>();
        if offset % align as u64 != 0 {
            return Err(Error::Misaligned {
                offset,
                align,
                type_name: std::any::type_name::<T>(),
            });
        }
        let mut v = T::new_zeroed();
        self.read_at(offset, v.as_mut_bytes())?;
        Ok(v)
    }

    /// Copies several ranges out of one committed state: `reqs` holds
    /// `(offset, buffer)` pairs; returns that state's sequence number.
    ///
    /// Never blocks the writer, and is not starved by it: a plain
    /// sequence-lock read is tried a few times; if commits keep landing
    /// during the copy, the reader copies once more and then applies, from
    /// the log, the records of the commits that landed meanwhile, which
    /// yields exactly the state of the last of them.
    pub fn read_many(&mut self, reqs: &mut [(u64, &mut [u8])]) -> Result<u64> {
        for _ in 0..4 {
            let s0 = self.stable_seqlock()?;
            let len = self.live.len_word().load(Ordering::Relaxed);
            let bounds = check_requests(reqs, len);
            if bounds.is_ok() {
                self.copy_requests(reqs, len)?;
            }
            fence(Ordering::Acquire);
            if self.live.seqlock().load(Ordering::Relaxed) == s0 {
                return bounds.map(|()| s0 / 2);
            }
        }
        loop {
            if let Some(seq) = self.read_catching_up(reqs)? {
                return Ok(seq);
            }
            std::thread::yield_now();
        }
    }

    /// The sequence lock's value once it is even (no commit being applied).
    fn stable_seqlock(&self) -> Result<u64> {
        loop {
            let s = self.live.seqlock().load(Ordering::Acquire);
            if s % 2 == 0 {
                return Ok(s);
            }
            self.wait_out_apply(s)?;
        }
    }

    fn copy_requests(&mut self, reqs: &mut [(u64, &mut [u8])], len: u64) -> Result<()> {
        self.live.ensure_mapped(len)?;
        for (o, b) in reqs.iter_mut() {
            self.live.res.read((PAGE + *o) as usize, b);
        }
        Ok(())
    }

    /// One copy, then the log records of the commits that landed during it.
    /// `None`: try again (the log was reset by a checkpoint meanwhile, or the
    /// writer has not yet published where its last record ends).
    fn read_catching_up(&mut self, reqs: &mut [(u64, &mut [u8])]) -> Result<Option<u64>> {
        let s0 = self.stable_seqlock()?;
        let Some((seq0, head0, chain0)) = self.live.log_position() else {
            return Ok(None);
        };
        if seq0 != s0 / 2 {
            return Ok(None);
        }
        let len = self.live.len_word().load(Ordering::Relaxed);
        let bounds = check_requests(reqs, len);
        if bounds.is_ok() {
            self.copy_requests(reqs, len)?;
        }
        fence(Ordering::Acquire);
        let s1 = self.live.seqlock().load(Ordering::Relaxed);
        if s1 == s0 {
            return bounds.map(|()| Some(s0 / 2));
        }
        // The copy may hold bytes of every commit up to `need` (the one being
        // applied when it ended, if any): catch up at least that far.
        let need = s1.div_ceil(2);
        let mut seq1 = self.live.log_position().map_or(0, |p| p.0);
        for _ in 0..10_000 {
            if seq1 >= need {
                break;
            }
            std::thread::yield_now();
            seq1 = self.live.log_position().map_or(0, |p| p.0);
        }
        // A request past the end stays an error even while commits keep
        // landing (the length was read from a published state).
        bounds?;
        if seq1 < need {
            return Ok(None);
        }
        if self.log.is_none() {
            let p = durable::companion(&self.path, "-wal");
            self.log = Some(Log::open(&p, &self.file_id, false, false, 0)?);
        }
        let log = self.log.as_mut().expect("opened above");
        log.refresh()?;
        let mut last_len = len;
        let end = log.scan_to(head0, chain0, seq0 + 1, seq1, self.max_size, |r| {
            let mut at = 0usize;
            for &(off, l) in &r.ranges {
                let data = &r.data[at..at + l as usize];
                at += l as usize;
                for (o, b) in reqs.iter_mut() {
                    let start = off.max(*o);
                    let stop = (off + l).min(*o + b.len() as u64);
                    if start < stop {
                        b[(start - *o) as usize..(stop - *o) as usize]
                            .copy_from_slice(&data[(start - off) as usize..(stop - off) as usize]);
                    }
                }
            }
            last_len = r.new_len;
            Ok(())
        })?;
        if end.last_seq != seq1 {
            return Ok(None); // the records were overwritten: the log restarted
        }
        check_requests(reqs, last_len)?;
        Ok(Some(seq1))
    }

    /// Waits while the writer applies a commit (the sequence lock is odd);
    /// repairs the state if the writer died there.
    fn wait_out_apply(&self, stuck: u64) -> Result<()> {
        for i in 0..100_000u32 {
            if self.live.seqlock().load(Ordering::Acquire) != stuck {
                return Ok(());
            }
            if i < 64 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
        self.check_writer_alive(stuck)
    }

    /// A copy of the whole state at one commit: `(sequence number, bytes)`.
    pub fn snapshot(&mut self) -> Result<(u64, Vec<u8>)> {
        loop {
            let len = self.len();
            let mut buf = vec![0u8; len as usize];
            match self.read_at(0, &mut buf) {
                Ok(seq) => return Ok((seq, buf)),
                Err(Error::OutOfBounds { .. }) => {} // shrank meanwhile: retry
                Err(e) => return Err(e),
            }
        }
    }

    /// Sleeps until a commit newer than `after` is published, or `timeout`
    /// passes; returns the newest sequence number.
    pub fn wait_for_change(&self, after: u64, timeout: Option<Duration>) -> u64 {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            let now = self.seq();
            if now > after {
                return now;
            }
            let remaining = match deadline {
                Some(d) => match d.checked_duration_since(std::time::Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return now,
                },
                None => None,
            };
            crate::notify::wait_once(self, after, remaining, None);
        }
    }

    /// The address of byte 0 of the live state, for experts: the bytes may
    /// change at any moment (another process's commit), so reading through
    /// it is only meaningful under the same sequence-lock protocol that
    /// [`Reader::read_at`] follows; creating references from it is undefined
    /// behaviour.
    pub fn as_ptr(&self) -> *const u8 {
        self.live.res.base().wrapping_add(PAGE as usize)
    }

    /// A sequence lock word stuck odd for thousands of spins: if the writer
    /// is dead, finish its commit (when this process may write the files).
    fn check_writer_alive(&self, stuck: u64) -> Result<()> {
        let (s, l) = WRITER_LOCK;
        if sys::ofd_is_locked(sys::fd_of(&self.file), s, l)
            .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", &self.path, e))?
        {
            return Ok(());
        }
        if self.live.seqlock().load(Ordering::Acquire) != stuck {
            return Ok(());
        }
        let mut opts = Options::new();
        if let Some(d) = &self.live_dir {
            opts = opts.live_dir(d.clone());
        }
        match Writer::open(&self.path, &opts) {
            Ok(w) => {
                drop(w);
                Ok(())
            }
            Err(Error::Locked { .. }) => Ok(()),
            Err(_) => Err(Error::WriterDied {
                path: self.path.clone(),
            }),
        }
    }

    /// The durable file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the live image (the committed state now, which every process
    /// maps) is: `/dev/shm/mapstate-DEV-INO.live` on tmpfs, else
    /// `NAME-live` beside the durable file, or under [`Options::live_dir`].
    pub fn live_path(&self) -> &Path {
        &self.live.path
    }

    /// Whether a writer has the state open (holds the writer lock, an OFD
    /// lock the kernel drops when its holder dies). Asks the kernel; takes
    /// no lock.
    pub fn has_writer(&self) -> Result<bool> {
        let (s, l) = WRITER_LOCK;
        sys::ofd_is_locked(sys::fd_of(&self.file), s, l)
            .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", &self.path, e))
    }

    /// The pid of the writer that has the state open, as it recorded it in
    /// the live image (in its own pid namespace); `None` when no writer
    /// holds the lock, or while one is still opening the state and has not
    /// recorded its pid yet (see [`Reader::has_writer`]).
    pub fn writer_pid(&self) -> Result<Option<u32>> {
        if !self.has_writer()? {
            return Ok(None);
        }
        let pid = self.live.writer_pid().load(Ordering::Acquire);
        Ok((pid != 0).then_some(pid))
    }

    /// The durability the writer holding the state commits with (from the
    /// [`Options`] it was opened with; a commit may still override it), or
    /// `None` without a writer (or one that has not published it yet).
    pub fn writer_durability(&self) -> Result<Option<Durability>> {
        if self.writer_pid()?.is_none() {
            return Ok(None);
        }
        Ok(Durability::from_word(
            self.live.writer_durability().load(Ordering::Relaxed),
        ))
    }

    /// The durability mode stored in the durable header when the state was
    /// created (read from the file now). A writer's commits use the
    /// durability of the [`Options`] it was opened with
    /// ([`Reader::writer_durability`]).
    pub fn durability(&self) -> Result<Durability> {
        let (h, _) = durable::read_header(&self.file, &self.path)?;
        Durability::from_code(h.durability.get(), h.durability_arg.get()).ok_or_else(|| {
            Error::Corrupt {
                path: self.path.clone(),
                what: format!("unknown durability mode {}", h.durability.get()),
            }
        })
    }

    /// The sequence number of the last checkpoint: every commit up to it is
    /// in the durable image (read from its header now).
    pub fn checkpoint_seq(&self) -> Result<u64> {
        let (h, _) = durable::read_header(&self.file, &self.path)?;
        Ok(h.checkpoint_seq.get())
    }

    /// Bytes the log (`NAME-wal`) can hold before a checkpoint empties it:
    /// its file's length less its header page.
    pub fn log_size(&self) -> Result<u64> {
        let wal = durable::companion(&self.path, "-wal");
        let len = std::fs::metadata(&wal)
            .map_err(|e| Error::io("stat", &wal, e))?
            .len();
        Ok(len.saturating_sub(PAGE))
    }

    /// Bytes of log records written since the last checkpoint, as the
    /// writer last published them (after each commit and checkpoint);
    /// `None` if that position keeps changing or a dead writer left it
    /// half-written.
    pub fn log_bytes(&self) -> Option<u64> {
        self.live
            .log_position()
            .map(|(_, head, _)| head.saturating_sub(PAGE))
    }
}

/// Deletes a state: its durable file, log, checkpoint journal and live
/// image. Takes the writer lock first, so it fails with [`Error::Locked`]
/// while a writer has the state open, and with a typed error if `path` is
/// not a mapstate state (nothing is deleted then).
pub fn remove(path: impl AsRef<Path>, opts: &Options) -> Result<()> {
    let path = path.as_ref();
    let w = Writer::open(path, &opts.clone().create(false))?;
    let live = w.live.path.clone();
    let mut w = w;
    w.poisoned = Some("removed".into()); // no checkpoint on drop
    for p in [
        live,
        durable::companion(path, "-wal"),
        durable::companion(path, "-ckpt"),
        path.to_path_buf(),
    ] {
        if let Err(e) = std::fs::remove_file(&p) {
            if e.kind() != std::io::ErrorKind::NotFound {
                return Err(Error::io("unlink", p, e));
            }
        }
    }
    drop(w);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{Durability, push_range};
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
        }
        assert_eq!(Durability::from_word(0), None);
        assert_eq!(Durability::from_word(9 << 56), None, "unknown code");
    }

    #[test]
    fn push_range_extends_the_previous_range_only() {
        let mut r = Vec::new();
        push_range(&mut r, 10, 5);
        push_range(&mut r, 12, 10); // overlaps: extended
        push_range(&mut r, 22, 2); // adjacent: extended
        push_range(&mut r, 0, 4); // before: a new range
        push_range(&mut r, 0, 4); // the same again: merged
        push_range(&mut r, 40, 1);
        assert_eq!(r, vec![(10, 14), (0, 4), (40, 1)]);
    }
}
