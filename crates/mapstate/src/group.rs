//! [`SharedWriter`]: one writer used from many threads, with group commit.
//!
//! Transactions run one at a time (a mutex around the [`Writer`]); a `Sync`
//! commit appends and publishes its record under that mutex, releases it,
//! and then waits until the log is synced past its record. One waiting
//! thread at a time is the *leader*: it notes the newest record appended so
//! far, calls `fdatasync` on the log, and wakes everyone whose record that
//! covered. Threads that commit while a sync runs are covered by the next
//! one, so concurrent `Sync` commits share `fdatasync` calls.
//!
//! Before it syncs, the leader waits for the `Sync` transactions already
//! under way (counted in `pending`: entered, not yet appended) to append
//! their records, for at most half the duration of the previous sync. The
//! threads a sync wakes commit again at once, and without that short wait
//! the next sync would start before they had appended, covering one or two
//! commits instead of all of them.
//!
//! A `Sync` commit is visible to readers once published (just before its
//! sync), and durable when `transaction` returns. A failed sync poisons the
//! writer: that commit and every later one return an error.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use crate::error::{Error, Result};
use crate::region::{Durability, Txn, Writer};
use crate::sys;

/// Where the log is durable up to, and who is syncing it.
#[derive(Debug, Default)]
struct SyncState {
    /// Every commit up to this sequence number is on stable storage.
    durable: u64,
    /// A thread is in `fdatasync` for the group.
    leader: bool,
    /// The error of a failed group sync (sticky).
    failed: Option<String>,
}

/// A [`Writer`] shared by threads (`Send + Sync`), with group commit.
#[derive(Debug)]
pub struct SharedWriter {
    writer: Mutex<Writer>,
    /// Sequence number of the newest record appended.
    appended: AtomicU64,
    /// `Sync` transactions entered whose record is not appended yet.
    pending: AtomicU64,
    /// Duration of the last group sync, in nanoseconds.
    last_sync_ns: AtomicU64,
    sync: Mutex<SyncState>,
    synced: Condvar,
    log: File,
    log_path: PathBuf,
    durability: Durability,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedWriter {
    /// Shares `writer` between threads; commits use its durability.
    pub fn new(writer: Writer) -> Result<Self> {
        let log = writer.log_file()?;
        let log_path = crate::durable::companion(writer.path(), "-wal");
        let seq = writer.seq();
        let durability = writer.durability();
        Ok(Self {
            writer: Mutex::new(writer),
            appended: AtomicU64::new(seq),
            pending: AtomicU64::new(0),
            last_sync_ns: AtomicU64::new(0),
            sync: Mutex::new(SyncState {
                durable: seq,
                ..SyncState::default()
            }),
            synced: Condvar::new(),
            log,
            log_path,
            durability,
        })
    }

    /// Runs `f` as one transaction and commits it with the writer's
    /// durability; returns the commit's sequence number and `f`'s result.
    /// If `f` fails, the transaction is discarded and its error returned.
    pub fn transaction<R>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R>) -> Result<(u64, R)> {
        self.transaction_with(self.durability, f)
    }

    /// As [`SharedWriter::transaction`] with another durability for this commit.
    pub fn transaction_with<R>(
        &self,
        durability: Durability,
        f: impl FnOnce(&mut Txn<'_>) -> Result<R>,
    ) -> Result<(u64, R)> {
        if let Some(cause) = &lock(&self.sync).failed {
            return Err(Error::Poisoned {
                path: self.log_path.clone(),
                cause: cause.clone(),
            });
        }
        let sync = durability == Durability::Sync;
        let pending = Pending::enter(sync.then_some(&self.pending));
        let (seq, r) = {
            let mut w = lock(&self.writer);
            let mut t = w.begin();
            let r = f(&mut t)?;
            // Appended and published here; a Sync commit is made durable
            // below, outside the writer lock, together with its neighbours'.
            let seq = t.commit_with(Durability::PageCache)?;
            self.appended.fetch_max(seq, Ordering::AcqRel);
            (seq, r)
        };
        drop(pending);
        if durability == Durability::Sync {
            self.wait_durable(seq)?;
        }
        Ok((seq, r))
    }

    /// Blocks until commit `seq` is on stable storage, leading a group
    /// `fdatasync` when nobody else is.
    fn wait_durable(&self, seq: u64) -> Result<()> {
        let mut st = lock(&self.sync);
        loop {
            if let Some(cause) = &st.failed {
                return Err(Error::Poisoned {
                    path: self.log_path.clone(),
                    cause: cause.clone(),
                });
            }
            if st.durable >= seq {
                return Ok(());
            }
            if st.leader {
                st = self.synced.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            st.leader = true;
            drop(st);
            self.gather();
            // Every record up to `target` was appended before this sync starts.
            let target = self.appended.load(Ordering::Acquire);
            let t0 = std::time::Instant::now();
            let r = sys::fdatasync(sys::fd_of(&self.log));
            self.last_sync_ns
                .store(t0.elapsed().as_nanos() as u64, Ordering::Relaxed);
            st = lock(&self.sync);
            st.leader = false;
            match r {
                Ok(()) => st.durable = st.durable.max(target),
                Err(e) => {
                    let msg = Error::io("fdatasync", &self.log_path, e).to_string();
                    lock(&self.writer).set_poisoned(&msg);
                    st.failed = Some(msg);
                }
            }
            self.synced.notify_all();
        }
    }

    /// Lets the `Sync` transactions under way append their records before
    /// the leader syncs, for at most half the last sync's duration.
    fn gather(&self) {
        let limit = std::time::Duration::from_nanos(self.last_sync_ns.load(Ordering::Relaxed) / 2);
        let t0 = std::time::Instant::now();
        while self.pending.load(Ordering::Acquire) > 0 && t0.elapsed() < limit {
            std::thread::yield_now();
        }
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

/// Counts a `Sync` transaction in `SharedWriter::pending` until its record
/// is appended (or it fails).
struct Pending<'a>(Option<&'a AtomicU64>);

impl<'a> Pending<'a> {
    fn enter(counter: Option<&'a AtomicU64>) -> Self {
        if let Some(c) = counter {
            c.fetch_add(1, Ordering::AcqRel);
        }
        Self(counter)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.0 {
            c.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
