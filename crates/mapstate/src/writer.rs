//! [`Writer`]: the single writer of a state, and [`Txn`], one of its
//! transactions. The writer holds the writer lock (an OFD lock the kernel
//! drops when the holder dies), the store (durable image, log, live image)
//! and its private view, which transactions change: explicit changes
//! ([`Txn::write_at`], [`Txn::get_mut`]) are recorded as they are made, free
//! stores into [`Txn::as_mut_slice`] or [`Txn::extend_on_write`] are found
//! at commit. A commit is appended to the log, then copied into the live
//! image under the sequence lock and published; checkpoints move commits
//! into the durable image. Dropping a transaction discards it.
//!
//! `docs/DESIGN.md` lists every step of the commit path and what a crash
//! at each step leaves.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use crate::error::{Error, Result};
use crate::format::{self, PAGE};
use crate::fs::{self, Open};
use crate::mtime::MtimeClock;
use crate::offset::Offset;
use crate::options::{Durability, WriterOptions};
use crate::store::durable::Durable;
use crate::store::live::Live;
use crate::store::lock;
use crate::store::log::{Log, LogPosition};
use crate::store::pages::PageSet;
use crate::store::recovery::{self, Recovered};
use crate::store::syncer::Syncer;
use crate::store::view::{View, push_range};
use crate::store::{StateFiles, checkpoint};
use crate::sys::{self, LockWait};
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
        let how = if opts.create {
            Open::Create(opts.mode)
        } else {
            Open::ReadWrite
        };
        let file = fs::open_file(path, how)?;
        let files = StateFiles::of_open(path, &file, opts.live_dir.as_deref())?;
        let wait = if opts.wait_for_lock {
            LockWait::Block
        } else {
            LockWait::Try
        };
        lock::take_writer_lock(&file, &files, wait)?;
        let Recovered {
            durable,
            log,
            live,
            changed,
            ahead_of_log,
        } = recovery::recover(file, &files, opts)?;
        let (seq, _) = live.applied();
        let len = live.len_word().load(Ordering::Acquire);
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
            seq,
            len,
            pending: Pending::new(len),
            changed,
            durability: opts.durability,
            poisoned: None,
            syncer,
            mtime: MtimeClock::new(opts.mtime_interval),
            closed: false,
        };
        if ahead_of_log {
            // The live image holds commits the log no longer has (the log was
            // lost): make them durable now with a full checkpoint.
            let max = w.max_size();
            w.changed.mark(0, len, max);
            w.checkpoint()?;
        }
        w.view.map_to(len, &w.live.path)?;
        w.live.publish_log(w.log.position());
        w.live
            .writer_durability()
            .store(opts.durability.to_word(), Ordering::Relaxed);
        w.live.writer_pid().store(sys::getpid(), Ordering::Release);
        // A writer killed between publishing a commit and waking its waiters
        // left them asleep: wake everyone once (they re-check and sleep again).
        w.live.wake_all();
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

    /// Starts a transaction. Nothing it changes is visible to anyone else
    /// until [`Txn::commit`]; dropping it discards it.
    pub fn begin(&mut self) -> Txn<'_> {
        self.pending.reset(self.len);
        Txn::new(self)
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

    /// Makes a failure sticky: every later operation reports it.
    fn poison<T>(&mut self, r: Result<T>) -> Result<T> {
        if let Err(e) = &r {
            self.poisoned.get_or_insert_with(|| e.to_string());
        }
        r
    }

    /// Writes every page changed since the last checkpoint into the durable
    /// image and empties the log (`store::checkpoint` gives the order of
    /// writes and syncs). A crash part-way is finished at the next open.
    pub fn checkpoint(&mut self) -> Result<()> {
        self.check_poison()?;
        let r = self.checkpoint_inner();
        self.poison(r)
    }

    fn checkpoint_inner(&mut self) -> Result<()> {
        let header = checkpoint::run(
            &mut self.durable,
            self.files.journal(),
            &self.live,
            &mut self.changed,
            self.seq,
            self.len,
        )?;
        self.log
            .set_position(LogPosition::start(self.seq, header.log_salt.get()));
        self.live.publish_log(self.log.position());
        self.changed.clear();
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
        self.release();
        r
    }

    /// Deletes the state: its durable file, log, checkpoint journal and live
    /// image, while this writer holds the writer lock (so no other writer
    /// can be using it). Readers that have it open keep reading the state
    /// as it was.
    pub fn remove(mut self) -> Result<()> {
        self.release();
        for p in self.files.all() {
            if let Err(e) = std::fs::remove_file(p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(Error::io("unlink", p, e));
                }
            }
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
        let r = self.commit_ranges(&mut ranges, durability);
        self.pending.ranges = ranges;
        if r.is_ok() {
            self.pending.reset(self.len);
        }
        r
    }

    fn commit_ranges(
        &mut self,
        ranges: &mut Vec<(u64, u64)>,
        durability: Durability,
    ) -> Result<u64> {
        let mut new_len = self.pending.len;
        if self.pending.free {
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
        if ranges.is_empty() && new_len == self.len {
            return Ok(self.seq);
        }
        self.live.map_data(new_len.max(self.len))?;
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
        // Only this writer stores into the view and the live image (readers
        // copy out of it under the sequence lock), so slices over both are
        // sound.
        let n = new_len.max(self.len).next_multiple_of(PAGE);
        self.log.append(new_len, ranges, self.view.bytes(0, n));
        debug_assert_eq!(self.log.position().seq, seq);
        testing::point(Step::Appended);
        if durability == Durability::Sync {
            let r = self.log.sync();
            self.poison(r)?;
        }
        self.live.begin_apply(seq);
        testing::point(Step::ApplyBegun);
        let half = ranges.len() / 2;
        let max = self.max_size();
        let src = self.view.bytes(0, n);
        let dst = self.live.data_mut(n);
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
    /// live image. Looks up to the mapped end of the view if the
    /// transaction's length follows its stores, else up to its length
    /// (stores past it are dropped). Returns the end of the last page
    /// written (without the write tracker: the last page that differs), or 0.
    fn find_free_stores(&mut self, out: &mut Vec<(u64, u64)>) -> Result<u64> {
        let mapped = self.view.mapped();
        let n = if self.pending.len_rule == LenRule::FollowsStores {
            mapped
        } else {
            self.pending.len.min(mapped)
        };
        self.live.map_data(n)?;
        Ok(self.view.find_free_stores(&self.live, n, out))
    }

    /// Discards the open transaction: the view reads as the committed
    /// state again.
    pub(crate) fn abort_pending(&mut self) {
        if self.pending.free {
            // Drop every private page: the view reads the live image again.
            self.view.discard_all();
        } else if self.live.map_data(self.pending.len).is_ok() {
            self.view.restore(&self.live, &self.pending.ranges);
        } else {
            self.view.discard_all();
        }
        // Stores that landed in scratch pages after a failed growth are
        // dropped with the transaction.
        self.view.clear_growth_failure();
        self.pending.reset(self.len);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        if self.poisoned.is_none() && self.log.used() > 0 {
            let _ = self.checkpoint();
        }
        self.release();
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
    /// Whether the view was handed out for free stores.
    pub(crate) free: bool,
}

impl Pending {
    /// An empty transaction of a state of `len` bytes.
    pub(crate) fn new(len: u64) -> Self {
        Self {
            len,
            len_rule: LenRule::Kept,
            ranges: Vec::new(),
            free: false,
        }
    }

    /// Empties it for the next transaction (keeping the ranges' memory).
    pub(crate) fn reset(&mut self, len: u64) {
        self.len = len;
        self.len_rule = LenRule::Kept;
        self.ranges.clear();
        self.free = false;
    }
}

/// One transaction of a [`Writer`].
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{Offset, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let mut w = Writer::options().create(true).len(4096).open(dir.path().join("s"))?;
/// let mut t = w.begin();
/// t.write_at(0, b"hello")?;                    // an explicit change
/// *t.get_mut::<u64>(Offset::new(64))? += 1;    // a typed one
/// t.as_mut_slice()[4095] = 7;                  // a free store, found at commit
/// t.commit()?;                                 // all or nothing
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Txn<'w> {
    w: &'w mut Writer,
    done: bool,
}

impl<'w> Txn<'w> {
    pub(crate) fn new(w: &'w mut Writer) -> Self {
        Self { w, done: false }
    }
}

impl Txn<'_> {
    /// The length the state will have when this transaction commits.
    #[allow(clippy::misnamed_getters)] // the transaction's length, not the committed one
    pub fn len(&self) -> u64 {
        self.w.pending.len
    }

    /// Whether that length is 0.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(end) if end <= self.len() => Ok(()),
            _ => Err(Error::OutOfBounds {
                offset,
                len,
                size: self.len(),
            }),
        }
    }

    /// Changes the state's length (growing reads as zeros; at most the maximum size).
    pub fn set_len(&mut self, len: u64) -> Result<()> {
        let max = self.w.max_size();
        if len > max {
            return Err(Error::InvalidSize {
                what: "length",
                size: len,
                reason: format!("larger than the maximum size of {max} bytes"),
            });
        }
        self.w.view.map_to(len, &self.w.live.path)?;
        let p = &mut self.w.pending;
        p.len_rule = LenRule::Set;
        if len < p.len {
            // Bytes past the new end must read as zeros if the state grows again.
            let cut = p.len - len;
            self.w.view.bytes_mut(len, cut).fill(0);
            push_range(&mut p.ranges, len, cut);
        }
        p.len = len;
        Ok(())
    }

    /// Writes `data` at `offset`.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        self.check(offset, data.len() as u64)?;
        self.w
            .view
            .bytes_mut(offset, data.len() as u64)
            .copy_from_slice(data);
        if !data.is_empty() {
            push_range(&mut self.w.pending.ranges, offset, data.len() as u64);
        }
        Ok(())
    }

    /// Reads bytes at `offset`, including this transaction's own changes.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<()> {
        self.check(offset, buf.len() as u64)?;
        buf.copy_from_slice(self.w.view.bytes(offset, buf.len() as u64));
        Ok(())
    }

    fn typed<T: KnownLayout>(&self, at: Offset<T>) -> Result<(u64, u64)> {
        let offset = at.get();
        let size = std::mem::size_of::<T>() as u64;
        if offset % std::mem::align_of::<T>() as u64 != 0 {
            return Err(misaligned::<T>(offset));
        }
        self.check(offset, size)?;
        Ok((offset, size))
    }

    /// A reference to the `T` at `at` in this transaction's view.
    pub fn get<T: FromBytes + KnownLayout + Immutable>(&self, at: Offset<T>) -> Result<&T> {
        let (off, size) = self.typed(at)?;
        T::ref_from_bytes(self.w.view.bytes(off, size)).map_err(|_| misaligned::<T>(off))
    }

    /// A mutable reference to the `T` at `at`; the whole `T` is part of the commit.
    pub fn get_mut<T: FromBytes + IntoBytes + KnownLayout>(
        &mut self,
        at: Offset<T>,
    ) -> Result<&mut T> {
        let (off, size) = self.typed(at)?;
        push_range(&mut self.w.pending.ranges, off, size);
        T::mut_from_bytes(self.w.view.bytes_mut(off, size)).map_err(|_| misaligned::<T>(off))
    }

    /// The whole state, writable with plain stores (a C library filling a
    /// buffer, say). The pages changed are found at commit by comparing the
    /// view with the live image.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.hand_out_view();
        let n = self.len();
        self.w.view.bytes_mut(0, n)
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
        self.hand_out_view();
        let p = &mut self.w.pending;
        if p.len_rule != LenRule::Set {
            p.len_rule = LenRule::FollowsStores;
        }
        let n = self.w.max_size();
        self.w.view.bytes_mut(0, n)
    }

    /// Marks the view handed out for free stores (which the commit then
    /// looks for).
    fn hand_out_view(&mut self) {
        let path = self.w.live.path.clone();
        self.w.view.track_free_stores(&path);
        self.w.pending.free = true;
    }

    /// The whole state as this transaction sees it.
    pub fn as_slice(&self) -> &[u8] {
        self.w.view.bytes(0, self.len())
    }

    /// Makes every change of this transaction visible at once, with the
    /// writer's durability. Returns the commit's sequence number (the
    /// previous one if the transaction changed nothing).
    pub fn commit(self) -> Result<u64> {
        let d = self.w.durability();
        self.commit_with(d)
    }

    /// As [`Txn::commit`] with another durability for this commit.
    pub fn commit_with(mut self, durability: Durability) -> Result<u64> {
        self.done = true;
        let r = self.w.commit_pending(durability);
        if r.is_err() {
            self.w.abort_pending();
        }
        r
    }

    /// Discards every change of this transaction.
    pub fn abort(mut self) {
        self.done = true;
        self.w.abort_pending();
    }
}

impl Drop for Txn<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.w.abort_pending();
        }
    }
}

fn misaligned<T>(offset: u64) -> Error {
    Error::Misaligned {
        offset,
        align: std::mem::align_of::<T>(),
        type_name: std::any::type_name::<T>(),
    }
}
