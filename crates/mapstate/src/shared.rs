//! [`SharedWriter`]: one writer used from many threads, with group commit.
//!
//! Transactions run one at a time (a mutex around the [`Writer`]); a `Sync`
//! commit appends and publishes its record under that mutex, releases it,
//! and then waits until the log is synced past its record. One waiting
//! thread at a time is the *leader*: it notes the newest record appended so
//! far, calls `fdatasync` on the log, publishes how far the log is durable
//! and wakes everyone (one futex word, bumped after every sync). Threads
//! that commit while a sync runs are covered by the next one, so concurrent
//! `Sync` commits share `fdatasync` calls.
//!
//! Before it syncs, the leader waits until as many commits are appended
//! and not yet durable as there were threads inside `Sync` transactions at
//! once (the *group*), for at most half the duration of the previous sync.
//! The threads a sync wakes commit again at once, and without that short
//! wait the next sync would start before they had appended, covering half
//! of them. A wait that times out lowers the group to the commits it
//! gathered, so threads that stopped committing cost one such wait.
//!
//! A `Sync` commit is visible to readers once published (just before its
//! sync), and durable when `transaction` returns. A failed sync poisons the
//! writer: that commit and every later one return an error.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::options::Durability;
use crate::sys;
use crate::txn::Txn;
use crate::writer::Writer;

/// A [`Writer`] shared by threads (`Send + Sync`), with group commit.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use mapstate::{Durability, Offset, SharedWriter, Writer};
/// let w = Writer::options()
///     .create(true)
///     .len(4096)
///     .durability(Durability::Sync)
///     .open(dir.path().join("state"))?;
/// let shared = SharedWriter::new(w)?;
/// let hits = Offset::<u64>::new(0);
/// std::thread::scope(|s| {
///     for _ in 0..4 {
///         s.spawn(|| {
///             for _ in 0..10 {
///                 // Each closure is one transaction; concurrent `Sync`
///                 // commits share one fdatasync.
///                 shared.transaction(|t| Ok(*t.get_mut(hits)? += 1)).unwrap();
///             }
///         });
///     }
/// });
/// let (seq, n) = shared.transaction(|t| Ok(*t.get(hits)?))?;
/// assert_eq!((seq, n), (40, 40));
/// # shared.into_inner().remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct SharedWriter {
    writer: Mutex<Writer>,
    /// Sequence number of the newest record appended.
    appended: AtomicU64,
    /// Every commit up to this sequence number is on stable storage.
    durable: AtomicU64,
    /// A thread is gathering or in `fdatasync` for the group.
    leader: AtomicBool,
    /// Bumped after every group sync; waiters sleep on it (futex).
    epoch: AtomicU32,
    /// The error of a failed group sync (sticky).
    failed: OnceLock<String>,
    /// Threads inside a `Sync` transaction (entered, not returned).
    inside: AtomicU64,
    /// How many commits the leader gathers before it syncs: the most
    /// threads seen inside at once, lowered when a gather times out.
    group: AtomicU64,
    /// Duration of the last group sync, in nanoseconds.
    last_sync_ns: AtomicU64,
    /// Group syncs issued (`fdatasync` calls).
    syncs: AtomicU64,
    log: File,
    log_path: PathBuf,
    durability: Durability,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedWriter {
    /// Shares `writer` between threads; commits use its durability.
    pub fn new(mut writer: Writer) -> Result<Self> {
        // The group syncs use their own descriptor of the log.
        writer.sync_leftovers()?;
        let log = writer.log_file()?;
        let log_path = writer.files().log().into();
        let seq = writer.seq();
        let durability = writer.durability();
        Ok(Self {
            writer: Mutex::new(writer),
            appended: AtomicU64::new(seq),
            durable: AtomicU64::new(seq),
            leader: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
            failed: OnceLock::new(),
            inside: AtomicU64::new(0),
            group: AtomicU64::new(1),
            last_sync_ns: AtomicU64::new(0),
            syncs: AtomicU64::new(0),
            log,
            log_path,
            durability,
        })
    }

    /// Runs `f` as one transaction and commits it with the writer's
    /// durability; returns the commit's sequence number and `f`'s result.
    /// If `f` fails, the transaction is discarded and its error returned.
    /// A closure with errors of its own (an `Ok(Err(..))` here would commit
    /// what it changed before failing) uses [`SharedWriter::try_transaction`].
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use mapstate::{Offset, SharedWriter, Writer};
    /// let w = SharedWriter::new(Writer::options().create(true).len(4096).open(&path)?)?;
    /// let (seq, old) = w.transaction(|t| {
    ///     let n = t.get_mut(Offset::<u64>::new(0))?;
    ///     *n += 1;
    ///     Ok(*n - 1)
    /// })?;
    /// assert_eq!((seq, old), (1, 0));
    /// # w.into_inner().remove()?;
    /// # Ok(()) }
    /// ```
    pub fn transaction<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<(u64, R)> {
        self.transaction_with(self.durability, f)
    }

    /// As [`SharedWriter::transaction`] with another durability for this commit.
    pub fn transaction_with<R>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R>,
    ) -> Result<(u64, R)> {
        self.try_transaction_with(durability, f)
    }

    /// Runs `f` as one transaction whose errors are the application's own
    /// (any `E` that a mapstate [`Error`] converts into): if `f` returns
    /// `Err`, the transaction is discarded, so a half-made change (one
    /// side of a transfer, say) never commits; otherwise it is committed
    /// with the writer's durability.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// use mapstate::{SharedWriter, Writer};
    ///
    /// #[derive(Debug)]
    /// enum TransferError {
    ///     Insufficient,
    ///     State(mapstate::Error),
    /// }
    /// impl From<mapstate::Error> for TransferError {
    ///     fn from(e: mapstate::Error) -> Self {
    ///         TransferError::State(e)
    ///     }
    /// }
    ///
    /// let w = Writer::options().create(true).len(16).open(dir.path().join("accounts"))?;
    /// let shared = SharedWriter::new(w)?;
    /// let r = shared.try_transaction(|t| {
    ///     let mut from = [0u8; 8];
    ///     t.read_at(0, &mut from)?;
    ///     t.write_at(8, &100u64.to_le_bytes())?; // credited first...
    ///     if u64::from_le_bytes(from) < 100 {
    ///         return Err(TransferError::Insufficient); // ...and discarded
    ///     }
    ///     Ok(())
    /// });
    /// assert!(matches!(r, Err(TransferError::Insufficient)));
    /// assert_eq!(shared.lock().seq(), 0); // nothing was committed
    /// # Ok(())
    /// # }
    /// ```
    pub fn try_transaction<R, E: From<Error>>(
        &self,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<(u64, R), E> {
        self.try_transaction_with(self.durability, f)
    }

    /// As [`SharedWriter::try_transaction`] with another durability for
    /// this commit.
    pub fn try_transaction_with<R, E: From<Error>>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Txn<'_>) -> std::result::Result<R, E>,
    ) -> std::result::Result<(u64, R), E> {
        self.check_failed()?;
        let sync = durability == Durability::Sync;
        let _inside = sync.then(|| Inside::enter(self));
        let (seq, r) = {
            let mut w = lock(&self.writer);
            if sync {
                w.expect_synced_commits();
            }
            let mut t = w.begin();
            let r = f(&mut t)?;
            // Appended and published here; a Sync commit is made durable
            // below, outside the writer lock, together with its neighbours'.
            let seq = t.commit_with(Durability::PageCache)?;
            self.appended.fetch_max(seq, Ordering::AcqRel);
            (seq, r)
        };
        if sync {
            self.wait_durable(seq)?;
        }
        Ok((seq, r))
    }

    /// `Poisoned` once a group sync has failed.
    fn check_failed(&self) -> Result<()> {
        match self.failed.get() {
            Some(cause) => Err(Error::Poisoned {
                path: self.log_path.clone(),
                cause: cause.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Blocks until commit `seq` is on stable storage, leading a group
    /// `fdatasync` when nobody else is.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        loop {
            // Read before the checks: a sync that ends after them bumps the
            // epoch, so the futex wait below returns at once instead of
            // missing its wake-up.
            let epoch = self.epoch.load(Ordering::Acquire);
            self.check_failed()?;
            if self.durable.load(Ordering::Acquire) >= seq {
                return Ok(());
            }
            if self
                .leader
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                self.lead();
            } else {
                sys::futex_wait_private(&self.epoch, epoch);
            }
        }
    }

    /// The leader's part: gathers, syncs the log, publishes the result and
    /// wakes the waiters.
    fn lead(&self) {
        self.gather(self.durable.load(Ordering::Acquire));
        // Every record up to `target` was appended before this sync starts.
        let target = self.appended.load(Ordering::Acquire);
        let t0 = Instant::now();
        let r = sys::fdatasync(sys::fd_of(&self.log));
        self.last_sync_ns.store(
            u64::try_from(t0.elapsed().as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        self.syncs.fetch_add(1, Ordering::Relaxed);
        match r {
            Ok(()) => {
                self.durable.fetch_max(target, Ordering::AcqRel);
            }
            Err(e) => {
                let msg = Error::io("fdatasync", &self.log_path, e).to_string();
                lock(&self.writer).set_poisoned(&msg);
                let _ = self.failed.set(msg);
            }
        }
        self.leader.store(false, Ordering::Release);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        sys::futex_wake_all_private(&self.epoch);
    }

    /// Lets the group's other commits append before the leader syncs:
    /// returns once `group` commits past `base` are appended, or after half
    /// the last sync's duration (and then lowers the group to what came).
    fn gather(&self, base: u64) {
        let limit = Duration::from_nanos(self.last_sync_ns.load(Ordering::Relaxed) / 2);
        let group = self.group.load(Ordering::Relaxed);
        let t0 = Instant::now();
        loop {
            let batch = self.appended.load(Ordering::Acquire) - base;
            if batch >= group {
                return;
            }
            if t0.elapsed() >= limit {
                self.group.store(batch.max(1), Ordering::Relaxed);
                return;
            }
            std::thread::yield_now();
        }
    }

    /// How many group syncs (`fdatasync` calls of the log) this handle has
    /// issued: with the number of `Sync` commits, how many commits shared
    /// each sync.
    pub fn syncs(&self) -> u64 {
        self.syncs.load(Ordering::Relaxed)
    }

    /// The writer, for operations other than transactions (checkpoint,
    /// length, sequence number). Holding it blocks every transaction.
    pub fn lock(&self) -> MutexGuard<'_, Writer> {
        lock(&self.writer)
    }

    /// The writer back, once no other thread uses it.
    pub fn into_inner(self) -> Writer {
        self.writer
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// Counts a thread in `SharedWriter::inside` while it is in a `Sync`
/// transaction, and raises the group to the most threads seen inside.
struct Inside<'a>(&'a AtomicU64);

impl<'a> Inside<'a> {
    fn enter(w: &'a SharedWriter) -> Self {
        let n = w.inside.fetch_add(1, Ordering::AcqRel) + 1;
        w.group.fetch_max(n, Ordering::Relaxed);
        Self(&w.inside)
    }
}

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}
