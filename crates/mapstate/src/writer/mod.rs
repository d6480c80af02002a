//! [`Writer`]: the single writer of a state. It holds the writer lock (an
//! OFD lock the kernel drops when the holder dies), the store (durable
//! image, log, live image) and its private view, which transactions change
//! (`txn.rs`: `Txn`, and `Writer::begin`). A commit is appended to the log,
//! then copied into the live image under the sequence lock and published;
//! checkpoints move commits into the durable image.
//!
//! `docs/DESIGN.md` lists every step of the commit path and what a crash
//! at each step leaves.

mod apply;
mod restore;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::format::PAGE;
use crate::fs;
use crate::live_image::LiveImage;
use crate::mtime::MtimeClock;
use crate::options::{AtClose, DEFAULT_LOG_SIZE, Durability, WriterOptions};
use crate::store::durable::{self, COUNTER_LIMIT, Durable};
use crate::store::handover::Handovers;
use crate::store::live::Live;
use crate::store::lock::{self, BuildLock};
use crate::store::log::{self, Log};
use crate::store::pages::PageSet;
use crate::store::recovery::{self, Recovered};
use crate::store::syncer::Syncer;
use crate::store::view::View;
use crate::store::{StateFiles, checkpoint};
use crate::sys;
use crate::testing::{self, Step};

/// The single writer of a state.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::Writer;
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// let mut w = Writer::options().create(true).len(4096).open(&path)?;
/// let mut t = w.begin();
/// t.write_at(0, b"hello")?;
/// assert_eq!(t.commit()?, 1);
/// w.close()?;
/// let w = Writer::open(&path)?; // recovers after any crash
/// assert_eq!(w.seq(), 1);
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Writer {
    /// Dropped first: its growth registration must go before the live
    /// image it maps.
    pub(crate) view: View,
    durable: Durable,
    log: Log,
    pub(crate) live: Live,
    files: StateFiles,
    /// Where the live image came from when the writer opened.
    origin: LiveImage,
    /// Last committed sequence number.
    seq: u64,
    /// Committed length.
    len: u64,
    /// The open transaction.
    pub(crate) pending: Pending,
    /// Pages changed since the last checkpoint.
    changed: PageSet,
    durability: Durability,
    poisoned: Option<String>,
    /// The background syncer of `Durability::Periodic`.
    syncer: Option<Syncer>,
    /// The rate limit for setting the files' mtimes after commits.
    mtime: MtimeClock,
    /// Closed or removed: nothing left to do on drop.
    closed: bool,
    /// The previous writer was killed: what it left in the page cache is
    /// synced before this writer's first sync of its own.
    leftovers: bool,
    /// What a clean close does with the live image.
    live_image_at_close: AtClose,
}

impl WriterOptions {
    /// Opens (or, with `create`, creates) the state at `path` for writing.
    /// Recovers from any crash of a previous writer: finishes an interrupted
    /// checkpoint and replays the log records not yet in the live image.
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Writer> {
        Writer::open_with(path.as_ref(), self)
    }
}

impl Writer {
    /// Opens the existing state at `path` with the default options (see
    /// [`Writer::options`] to create one or to choose the durability).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), &WriterOptions::new())
    }

    /// Starts a [`WriterOptions`] builder.
    pub fn options() -> WriterOptions {
        WriterOptions::new()
    }

    fn open_with(path: &Path, opts: &WriterOptions) -> Result<Self> {
        let Recovered {
            files,
            durable,
            mut log,
            live,
            origin,
            changed,
            ahead_of_log,
            new_epoch,
            leftovers,
        } = recovery::open_writer(path, opts)?;
        let (seq, _) = live.applied();
        // A file near the limit was altered (see `COUNTER_LIMIT`): refuse
        // it here rather than fail commits and checkpoints later.
        if seq >= COUNTER_LIMIT / 2 || durable.header.generation.get() >= COUNTER_LIMIT / 2 {
            return Err(durable::at_counter_limit(
                &durable.path,
                "sequence number or checkpoint generation",
            ));
        }
        let len = live.len_word().load(Ordering::Acquire);
        if opts.log_size.is_none() {
            log.set_grow_limit(DEFAULT_LOG_SIZE);
        }
        let view = View::new(&live, durable.header.max_size.get())?;
        let syncer = match opts.durability {
            Durability::Periodic(every) => Some(Syncer::start(
                log.try_clone_file()?,
                files.log().into(),
                every,
            )?),
            _ => None,
        };
        let mut w = Self {
            view,
            durable,
            log,
            live,
            files,
            origin,
            seq,
            len,
            pending: Pending::new(len),
            changed,
            durability: opts.durability,
            poisoned: None,
            syncer,
            mtime: MtimeClock::new(opts.mtime_interval),
            closed: false,
            leftovers,
            live_image_at_close: opts.live_image_at_close,
        };
        // The syncer thread syncs the log on its own from now on.
        if w.syncer.is_some() {
            w.sync_leftovers()?;
        }
        if ahead_of_log {
            // The live image holds commits the log no longer has (the log was
            // lost): make them durable now with a full checkpoint.
            let max = w.max_size();
            w.changed.mark(0, len, max);
        }
        if ahead_of_log || new_epoch {
            // A new epoch before the first append (see `store::recovery`).
            w.checkpoint()?;
            w.live.set_rebuilt(false);
        }
        if let Some(max) = opts.max_size {
            w.raise_max_size(max)?;
        }
        w.view.map_to(len, &w.live.path)?;
        w.live.publish_log(w.log.position());
        w.live
            .writer_durability()
            .store(opts.durability.to_word(), Ordering::Relaxed);
        w.live
            .writer_pidns()
            .store(sys::pid_namespace(), Ordering::Relaxed);
        w.live.writer_pid().store(sys::getpid(), Ordering::Release);
        // A writer killed between publishing a commit and waking its waiters
        // left them asleep: wake everyone once (they re-check and sleep again).
        w.live.wake_all();
        // Last: readers that see it find this writer whole, its live image
        // locked (`store::handover`).
        Handovers::bump(&w.durable.file, &w.durable.path)?;
        Ok(w)
    }

    /// The durable file's path.
    pub fn path(&self) -> &Path {
        self.files.durable()
    }

    /// The files of this state.
    pub fn files(&self) -> &StateFiles {
        &self.files
    }

    /// Where the live image came from when this writer opened the state:
    /// kept, or rebuilt from the files on disk, and why.
    pub fn live_image(&self) -> LiveImage {
        self.origin
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

    /// Bytes of log written since the last checkpoint.
    pub fn log_bytes(&self) -> u64 {
        self.log.used()
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

    pub(crate) fn check_poison(&mut self) -> Result<()> {
        if self.poisoned.is_none()
            && let Some(cause) = self.syncer.as_ref().and_then(Syncer::failure)
        {
            self.poisoned = Some(cause);
        }
        match &self.poisoned {
            Some(cause) => Err(Error::Poisoned {
                path: self.path().into(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Makes a failure sticky if it must be: every later operation reports
    /// it. A failed sync must (the kernel may have dropped the dirty pages,
    /// so a retry could falsely succeed), and so must an I/O error; a full
    /// disk, a size limit or a bad argument leaves the writer usable (the
    /// failed call changed nothing that was durable).
    fn poison<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r
            && is_sticky(e)
        {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// Syncs what the previous writer, killed, left in the page cache
    /// (`recovery::sync_leftovers`), once, before this writer's first sync
    /// of its own: a `Sync` commit, a checkpoint, a clean close, the
    /// `Periodic` syncer or a [`SharedWriter`](crate::SharedWriter)'s group
    /// syncs (these two at their start).
    pub(crate) fn sync_leftovers(&mut self) -> Result<()> {
        if self.leftovers {
            recovery::sync_leftovers(&mut self.durable, &self.log)?;
            self.leftovers = false;
        }
        Ok(())
    }

    /// Writes every page changed since the last checkpoint into the durable
    /// image and empties the log (`store::checkpoint` gives the order of
    /// writes and syncs). A crash part-way is finished at the next open.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(dir.path().join("s"))?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"x")?;
    /// t.commit()?;
    /// w.checkpoint()?; // commit 1 is in the durable file now; the log is empty
    /// assert_eq!(w.log_bytes(), 0);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn checkpoint(&mut self) -> Result<()> {
        self.check_poison()?;
        let r = self.checkpoint_inner();
        self.poison(r)
    }

    fn checkpoint_inner(&mut self) -> Result<()> {
        self.sync_leftovers()?;
        let header = checkpoint::run(
            &mut self.durable,
            self.files.journal(),
            &self.live,
            &mut self.changed,
            self.seq,
            self.len,
        )?;
        self.log.restart(&header);
        self.live.publish_log(self.log.position());
        self.changed.clear();
        Ok(())
    }

    /// Raises the state's maximum size to `max` if it is below
    /// (`WriterOptions::max_size` on an existing state): a checkpoint whose
    /// header carries it, synced before any commit can reach past the old
    /// maximum (a crash before that header leaves the old one, and the log
    /// as it was); then the live image and the view are reserved anew.
    fn raise_max_size(&mut self, max: u64) -> Result<()> {
        let max = fs::check_size("maximum size", max)?;
        if max <= self.max_size() {
            return Ok(());
        }
        self.durable.header.max_size = max.into();
        self.checkpoint()?;
        self.live = self.live.remap(max)?;
        self.view = View::new(&self.live, max)?;
        Ok(())
    }

    /// Checkpoints and closes, reporting any error (dropping does the same
    /// but can only ignore errors).
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"kept")?;
    /// t.commit()?;
    /// w.close()?; // checkpointed: an error here is reported, not ignored as on drop
    /// let mut b = [0u8; 4];
    /// mapstate::Reader::open(&path)?.read_at(0, &mut b)?;
    /// assert_eq!(&b, b"kept");
    /// # mapstate::Writer::open(&path)?.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn close(mut self) -> Result<()> {
        let r = self.final_checkpoint();
        self.release();
        r
    }

    /// A checkpoint if the log holds records; on success, the files hold
    /// everything synced, which the next writer need not sync again (and,
    /// with `release_live_image`, the live image is deleted).
    fn final_checkpoint(&mut self) -> Result<()> {
        let r = if self.log.used() > 0 {
            self.checkpoint()
        } else {
            self.check_poison().and_then(|()| {
                let r = self.sync_leftovers();
                self.poison(r)
            })
        };
        if r.is_ok() {
            self.live.set_files_synced(true);
        }
        if r.is_ok() && self.live_image_at_close == AtClose::Release {
            return self.delete_live_image();
        }
        r
    }

    /// Retires the live image (readers that map it are told at their next
    /// read) and deletes it, under the build lock (no reader is checking or
    /// building one meanwhile). The files hold every commit: the next open
    /// rebuilds it from them.
    fn delete_live_image(&mut self) -> Result<()> {
        let _build = BuildLock::take(&self.durable.file, self.files.durable())?;
        self.live.retire();
        fs::remove_if_present(self.files.live())
    }

    /// Deletes the state: its durable file, log, checkpoint journal and live
    /// image, while this writer holds the writer lock (so no other writer
    /// can be using it). Readers that have it open keep reading the state
    /// as it was.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("s");
    /// let w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let files = w.files().clone();
    /// w.remove()?;
    /// assert!(files.all().iter().all(|f| !f.exists()));
    /// # Ok(()) }
    /// ```
    pub fn remove(mut self) -> Result<()> {
        self.release();
        // No reader may be building a live image meanwhile.
        let _build = BuildLock::take(&self.durable.file, self.files.durable())?;
        let temps = self.files.temporaries();
        for p in temps.iter().map(PathBuf::as_path).chain(self.files.all()) {
            fs::remove_if_present(p)?;
        }
        Ok(())
    }

    /// The writer's last step: unpublishes its pid; nothing is left to do
    /// on drop.
    fn release(&mut self) {
        self.live.writer_pid().store(0, Ordering::Release);
        self.closed = true;
    }

    /// Commits the open transaction: appends it to the log, copies it into
    /// the live image under the sequence lock, publishes it. On an error
    /// the transaction is left as it was, for [`Writer::abort_pending`].
    pub(crate) fn commit_pending(&mut self, durability: Durability) -> Result<u64> {
        self.check_poison()?;
        let _section = crate::signals::defer_termination();
        if let Some(f) = self.view.growth_failure() {
            return Err(fs::growth_failure(&self.live.path, f, self.max_size()));
        }
        let mut ranges = std::mem::take(&mut self.pending.ranges);
        // The ranges the transaction stored explicitly; the free stores
        // found at commit are added after them.
        let explicit = ranges.len();
        let r = self.commit_ranges(&mut ranges, durability);
        self.pending.ranges = ranges;
        if r.is_ok() {
            self.note_view_writes(explicit);
            self.pending.reset(self.len);
        }
        r
    }

    /// After a transaction ends: what it wrote into the view itself (its
    /// first `explicit` ranges, and the zeros of a shrink) is not a free
    /// store of the next one. The free stores a commit found need no note:
    /// the scan that found them protected their pages again.
    fn note_view_writes(&mut self, explicit: usize) {
        let zeroed = self.pending.zero_from.map(|z| (z, u64::MAX - z));
        let ranges = self.pending.ranges.iter().take(explicit).copied();
        self.view.note_written(ranges.chain(zeroed));
    }

    fn commit_ranges(
        &mut self,
        ranges: &mut Vec<(u64, u64)>,
        durability: Durability,
    ) -> Result<u64> {
        let mut new_len = self.pending.len;
        if !self.pending.free.is_empty() {
            let extent = self.find_free_stores(ranges)?;
            if self.pending.len_rule == LenRule::FollowsStores && extent > new_len {
                // Extend-on-write: the state grows to the last page written
                // (clamped to the maximum size, which need not be a page multiple).
                new_len = extent.min(self.max_size());
                ranges.retain_mut(|r| {
                    r.1 = r.1.min(new_len.saturating_sub(r.0));
                    r.1 > 0
                });
            }
        }
        // A shrink in the transaction zeroes what it cut off (so that a later
        // growth reads zeros); the record says so without carrying the zeros.
        let zero = self
            .pending
            .zero_from
            .filter(|&z| z < self.len)
            .map(|z| (z, self.len - z));
        if ranges.is_empty() && zero.is_none() && new_len == self.len {
            return Ok(self.seq);
        }
        if self.seq >= COUNTER_LIMIT {
            return Err(durable::at_counter_limit(
                &self.durable.path,
                "sequence number",
            ));
        }
        self.live.map_data(new_len.max(self.len))?;
        let total = log::record_len(zero, ranges);
        if !self.log.fits(total) {
            let filled_in = self.log.age();
            self.checkpoint()?;
            self.log.grow_to_rate(filled_in);
            if !self.log.fits_empty(total) {
                let r = self.log.grow_for(total);
                self.poison(r)?;
            }
        }
        let seq = self.seq + 1;
        if durability == Durability::Sync {
            self.log.expect_synced_commits();
        }
        // Only this writer stores into the view and the live image (readers
        // copy out of it under the sequence lock), so slices over both are
        // sound.
        let n = new_len.max(self.len).next_multiple_of(PAGE);
        self.log
            .append(new_len, zero, ranges, self.view.bytes(0, n));
        debug_assert_eq!(self.log.position().seq, seq);
        testing::point(Step::Appended);
        if durability == Durability::Sync {
            let r = self.sync_leftovers().and_then(|()| self.log.sync());
            self.poison(r)?;
        }
        self.live.begin_apply(seq);
        testing::point(Step::ApplyBegun);
        let half = ranges.len() / 2;
        let max = self.max_size();
        let src = self.view.bytes(0, n);
        let dst = self.live.data_mut(n);
        if let Some((off, len)) = zero {
            dst[off as usize..(off + len) as usize].fill(0);
            self.changed.mark(off, len, max);
        }
        for (i, &(off, len)) in ranges.iter().enumerate() {
            if i == half {
                testing::point(Step::ApplyHalf);
            }
            let r = off as usize..(off + len) as usize;
            dst[r.clone()].copy_from_slice(&src[r]);
            self.changed.mark(off, len, max);
        }
        testing::point(Step::Applied);
        self.live.ring().write(seq, ranges, self.len, new_len);
        self.live.end_apply(seq, new_len);
        testing::point(Step::Visible);
        self.live.publish_log(self.log.position());
        if self.mtime.due() {
            crate::mtime::touch(&[&self.durable.file, &self.live.file]);
        }
        testing::point(Step::Published);
        self.seq = seq;
        self.len = new_len;
        Ok(seq)
    }

    /// Adds the pages written by free stores whose bytes differ from the
    /// live image. Looks in the ranges handed out, up to the mapped end of
    /// the view if the transaction's length follows its stores, else up to
    /// its length (stores past it are dropped). Returns the end of the last
    /// page written (without the write tracker: the last page that
    /// differs), or 0.
    fn find_free_stores(&mut self, out: &mut Vec<(u64, u64)>) -> Result<u64> {
        let mapped = self.view.mapped();
        let n = if self.pending.len_rule == LenRule::FollowsStores {
            mapped
        } else {
            self.pending.len.min(mapped)
        };
        self.live.map_data(n)?;
        Ok(self
            .view
            .find_free_stores(&self.live, n, &self.pending.free, out))
    }

    /// Discards the open transaction: the view reads as the committed
    /// state again.
    pub(crate) fn abort_pending(&mut self) {
        // The ranges handed out: their private pages dropped, they read the
        // live image again.
        self.view.discard(&self.pending.free);
        if self.live.map_data(self.pending.extent()).is_ok() {
            self.view.restore(&self.live, &self.pending.ranges);
            if let Some(z) = self.pending.zero_from {
                // The zeros of a shrink, back to the committed bytes.
                let end = self.pending.len.max(self.len).min(self.view.mapped());
                if z < end {
                    self.view.restore(&self.live, &[(z, end - z)]);
                }
            }
            self.note_view_writes(self.pending.ranges.len());
        } else {
            self.view.discard_all();
        }
        // Stores that landed in scratch pages after a failed growth are
        // dropped with the transaction.
        self.view.clear_growth_failure();
        self.pending.reset(self.len);
    }
}

/// Whether a failure must poison the writer (see [`Writer::poison`]).
fn is_sticky(e: &Error) -> bool {
    match e {
        Error::NoSpace { .. } | Error::InvalidSize { .. } | Error::PastMaximum { .. } => false,
        // A sync that failed for any reason; any other I/O failure but a
        // full disk.
        Error::Io { op, source, .. } => {
            matches!(*op, "fdatasync" | "fsync")
                || !matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
        }
        _ => true,
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.final_checkpoint();
            self.release();
        }
        // Let go of the writer lock explicitly: a child forked meanwhile
        // shares the lock's open file description until it execs, and would
        // hold the lock on after this writer is gone. Then of the live
        // image's lock, in that order: a reader sees both or no writer.
        lock::release_writer_lock(&self.durable.file);
        self.live.unlock_as_writer();
    }
}

/// How the open transaction's length is decided at commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LenRule {
    /// The length the transaction started with (or was given).
    Kept,
    /// [`Txn::set_len`] fixed it.
    Set,
    /// Extend-on-write: the end of the last page written.
    FollowsStores,
}

/// What the open transaction changed so far (kept in the [`Writer`], so
/// that `Txn` is only a borrow of it).
#[derive(Debug)]
pub(crate) struct Pending {
    /// The length the transaction will commit.
    pub(crate) len: u64,
    /// How that length is decided at commit.
    pub(crate) len_rule: LenRule,
    /// Explicit changes.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// The shortest length a shrink (`set_len`) cut the state to: the
    /// committed bytes past it are zeroed at commit.
    pub(crate) zero_from: Option<u64>,
    /// The ranges of the view handed out for free stores, which the commit
    /// looks for (empty: none).
    pub(crate) free: Vec<(u64, u64)>,
}

impl Pending {
    /// An empty transaction of a state of `len` bytes.
    pub(crate) fn new(len: u64) -> Self {
        Self {
            len,
            len_rule: LenRule::Kept,
            ranges: Vec::new(),
            zero_from: None,
            free: Vec::new(),
        }
    }

    /// The end of what the transaction wrote, or of its length.
    pub(crate) fn extent(&self) -> u64 {
        self.ranges
            .iter()
            .map(|&(o, l)| o + l)
            .fold(self.len, u64::max)
    }

    /// Empties it for the next transaction (keeping the ranges' memory).
    pub(crate) fn reset(&mut self, len: u64) {
        self.len = len;
        self.len_rule = LenRule::Kept;
        self.ranges.clear();
        self.zero_from = None;
        self.free.clear();
    }
}
