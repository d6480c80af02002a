//! [`Reader`]: reads a state from any process. Every read returns a
//! consistent committed state: never a torn or uncommitted one. Reads are
//! copies validated by the live image's sequence lock; the writer never
//! waits for readers, and a long read is never starved by a busy writer (it
//! catches up from the log instead). Waiting for a commit sleeps on the
//! live header's futex word.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, IntoBytes};

use crate::change::{Change, Event, push_missed};
use crate::error::{Error, Result};
use crate::format::{PAGE, live};
use crate::fs::{self, Open};
use crate::offset::Offset;
use crate::options::{Durability, ReaderOptions};
use crate::store::StateFiles;
use crate::store::durable::{self, Durable};
use crate::store::live::{Live, Role};
use crate::store::lock;
use crate::store::log::Log;
use crate::store::notify_word::announce;
use crate::store::recovery;
use crate::writer::Writer;

/// A reader of a state, in any process. `Send + Sync`: one reader (in an
/// `Arc`) serves many threads.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{Offset, Reader, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// let mut w = Writer::options().create(true).len(4096).open(&path)?;
/// let r = Reader::open(&path)?;
/// let mut t = w.begin();
/// *t.get_mut::<u64>(Offset::new(8))? = 42;
/// let seq = t.commit()?;
/// assert_eq!(r.wait_for_change(0, None), Some(seq));
/// assert_eq!(r.read::<u64>(Offset::new(8))?, 42);
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reader {
    file: File,
    files: StateFiles,
    live: Live,
    opts: ReaderOptions,
    file_id: [u8; 16],
    max_size: u64,
    /// The log, opened read-only the first time a long read needs it.
    log: Mutex<Option<Log>>,
}

impl ReaderOptions {
    /// Opens the state at `path` for reading (building the live image if
    /// the OS restarted since it was last used).
    pub fn open(&self, path: impl AsRef<Path>) -> Result<Reader> {
        Reader::open_with(path.as_ref(), self)
    }
}

impl Reader {
    /// Opens the state at `path` for reading, with the default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with(path.as_ref(), &ReaderOptions::new())
    }

    /// Starts a [`ReaderOptions`] builder.
    pub fn options() -> ReaderOptions {
        ReaderOptions::new()
    }

    fn open_with(path: &Path, opts: &ReaderOptions) -> Result<Self> {
        let file = fs::open_file(path, Open::Read)?;
        let files = StateFiles::of_open(path, &file, opts.live_dir_path())?;
        let d = Durable::open(file, path)?;
        let live = recovery::open_live(&d, &files, Role::Reader)?;
        Ok(Self {
            file_id: d.header.file_id,
            max_size: d.header.max_size.get(),
            file: d.file,
            files,
            live,
            opts: opts.clone(),
            log: Mutex::new(None),
        })
    }

    /// The sequence number of the last published commit.
    pub fn seq(&self) -> u64 {
        self.live.applied().0
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
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<u64> {
        // The common case in a few loads: no commit in flight, the range
        // already mapped. Anything else takes the general path.
        let live = &self.live;
        let lock = live.seqlock();
        let s0 = lock.load();
        if s0 % 2 == 0
            && let Some(end) = offset.checked_add(buf.len() as u64)
            && end <= live.len_word().load(Ordering::Relaxed)
            && end <= live.mapped()
        {
            live.read(offset, buf);
            if lock.unchanged(s0) {
                return Ok(s0 / 2);
            }
        }
        self.read_many(&mut [(offset, buf)])
    }

    /// Reads a `T` at `at` from one committed state.
    pub fn read<T: FromBytes + IntoBytes>(&self, at: Offset<T>) -> Result<T> {
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
    pub fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<u64> {
        for _ in 0..4 {
            let s0 = self.stable_seqlock()?;
            let len = self.live.len_word().load(Ordering::Relaxed);
            let bounds = check_requests(reqs, len);
            if bounds.is_ok() {
                self.copy_requests(reqs, len)?;
            }
            if self.live.seqlock().unchanged(s0) {
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
            let s = self.live.seqlock().load();
            if s % 2 == 0 {
                return Ok(s);
            }
            self.wait_out_apply(s)?;
        }
    }

    fn copy_requests(&self, reqs: &mut [(u64, &mut [u8])], len: u64) -> Result<()> {
        self.live.follow(len)?;
        for (o, b) in reqs.iter_mut() {
            self.live.read(*o, b);
        }
        Ok(())
    }

    /// One copy, then the log records of the commits that landed during it.
    /// `None`: try again (the log was reset by a checkpoint meanwhile, or the
    /// writer has not yet published where its last record ends).
    fn read_catching_up(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<Option<u64>> {
        let s0 = self.stable_seqlock()?;
        let Some(from) = self.live.log_position() else {
            return Ok(None);
        };
        if from.seq != s0 / 2 {
            return Ok(None);
        }
        let len = self.live.len_word().load(Ordering::Relaxed);
        let bounds = check_requests(reqs, len);
        if bounds.is_ok() {
            self.copy_requests(reqs, len)?;
        }
        if self.live.seqlock().unchanged(s0) {
            return bounds.map(|()| Some(s0 / 2));
        }
        // The copy may hold bytes of every commit up to `need` (the one being
        // applied when it ended, if any): catch up at least that far.
        let need = self.live.seqlock().load().div_ceil(2);
        let published = || self.live.log_position().map_or(0, |p| p.seq);
        let mut seq1 = published();
        for _ in 0..10_000 {
            if seq1 >= need {
                break;
            }
            std::thread::yield_now();
            seq1 = published();
        }
        // A request past the end stays an error even while commits keep
        // landing (the length was read from a published state).
        bounds?;
        if seq1 < need {
            return Ok(None);
        }
        let mut guard = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let log = match &mut *guard {
            Some(log) => log,
            empty => empty.insert(Log::open_for_reading(self.files.log(), &self.file_id)?),
        };
        log.refresh()?;
        let mut last_len = len;
        let end = log.scan_to(from, seq1, self.max_size, |r| {
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
        if end.seq != seq1 {
            return Ok(None); // the records were overwritten: the log restarted
        }
        check_requests(reqs, last_len)?;
        Ok(Some(seq1))
    }

    /// Waits while the writer applies a commit (the sequence lock is odd);
    /// repairs the state if the writer died there.
    fn wait_out_apply(&self, stuck: u64) -> Result<()> {
        for i in 0..100_000u32 {
            if self.live.seqlock().load() != stuck {
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

    /// A sequence lock word stuck odd for thousands of spins: if the writer
    /// is dead, finish its commit (when this process may write the files).
    fn check_writer_alive(&self, stuck: u64) -> Result<()> {
        if self.has_writer()? || self.live.seqlock().load() != stuck {
            return Ok(());
        }
        let mut opts = Writer::options();
        if let Some(d) = self.opts.live_dir_path() {
            opts = opts.live_dir(d);
        }
        match opts.open(self.path()) {
            Ok(w) => {
                drop(w);
                Ok(())
            }
            Err(Error::Locked { .. }) => Ok(()),
            Err(_) => Err(Error::WriterDied {
                path: self.path().into(),
            }),
        }
    }

    /// A copy of the whole state at one commit: `(sequence number, bytes)`.
    pub fn snapshot(&self) -> Result<(u64, Vec<u8>)> {
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
    /// passes: `Some` of the newest sequence number, or `None` if the
    /// timeout passed first.
    pub fn wait_for_change(&self, after: u64, timeout: Option<Duration>) -> Option<u64> {
        // A timeout too far out to represent is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let now = self.seq();
            if now > after {
                return Some(now);
            }
            let remaining = match (deadline, timeout) {
                (Some(d), _) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return None,
                },
                (None, Some(t)) => Some(t),
                (None, None) => None,
            };
            self.wait_once(after, remaining, None);
        }
    }

    /// Sleeps once on the notification futex unless a commit newer than
    /// `after` is published or `stop` (if given) is set; returns on a
    /// wake-up, real or spurious, a signal, or `timeout`.
    ///
    /// Both conditions are re-checked after announcing the sleeper: the
    /// writer advances the word (clearing the bit) after publishing, so
    /// either we see its commit or it sees our bit and wakes us (the
    /// protocol `tests/loom_notify.rs` model-checks), and a
    /// [`Reader::stop_waiting`] that lands at any moment is never slept
    /// through.
    pub(crate) fn wait_once(
        &self,
        after: u64,
        timeout: Option<Duration>,
        stop: Option<&AtomicBool>,
    ) {
        let word = self.live.notify_word();
        let done = || self.seq() > after || stop.is_some_and(|s| s.load(Ordering::SeqCst));
        if self.live.can_register() {
            let expected = announce(word);
            if !done() {
                crate::sys::futex_wait(word, expected, timeout);
            }
        } else {
            // May not write the live image, so cannot ask to be woken: sleep on
            // the word with a short timeout instead (polling).
            let expected = word.load(Ordering::SeqCst);
            let nap = Duration::from_millis(1);
            if !done() {
                crate::sys::futex_wait(word, expected, Some(timeout.map_or(nap, |t| t.min(nap))));
            }
        }
    }

    /// Tells a thread in [`Reader::wait_once`] with `stop` to stop, and
    /// wakes it (other waiters of the state see a spurious wake-up and
    /// sleep again).
    pub(crate) fn stop_waiting(&self, stop: &AtomicBool) {
        stop.store(true, Ordering::SeqCst);
        self.live.wake_all();
    }

    /// The commits published after `after`, oldest first. Commits that
    /// already left the ring come as one [`Event::Missed`].
    pub fn changes_since(&self, after: u64) -> Vec<Event> {
        let now = self.seq();
        let mut out: Vec<Event> = Vec::new();
        let oldest = now.saturating_sub(live::RING_ENTRIES - 1).max(1);
        if after + 1 < oldest {
            out.push(Event::Missed {
                first: after + 1,
                last: oldest - 1,
            });
        }
        for s in (after + 1).max(oldest)..=now {
            match self.live.ring().read(s) {
                Some((ranges, widened)) => out.push(Event::Change(Change {
                    seq: s,
                    ranges: ranges.into_iter().map(|(o, l)| o..o + l).collect(),
                    widened,
                })),
                None => push_missed(&mut out, s),
            }
        }
        out
    }

    /// Sleeps until a commit newer than `after` is published (or `timeout`
    /// passes), then returns what [`Reader::changes_since`] does (nothing
    /// if the timeout passed first).
    pub fn wait_changes(&self, after: u64, timeout: Option<Duration>) -> Vec<Event> {
        self.wait_for_change(after, timeout);
        self.changes_since(after)
    }

    /// A blocking iterator over the commits published from now on.
    pub fn changes(&self) -> Changes<'_> {
        Changes {
            reader: self,
            seen: self.seq(),
            pending: Vec::new().into_iter(),
        }
    }

    /// The address of byte 0 of the live state, for experts: the bytes may
    /// change at any moment (another process's commit), so reading through
    /// it is only meaningful under the same sequence-lock protocol that
    /// [`Reader::read_at`] follows; creating references from it is undefined
    /// behaviour.
    pub fn as_ptr(&self) -> *const u8 {
        self.live.data_ptr()
    }

    /// The durable file's path.
    pub fn path(&self) -> &Path {
        self.files.durable()
    }

    /// The files of this state.
    pub fn files(&self) -> &StateFiles {
        &self.files
    }

    /// Where the live image (the committed state now, which every process
    /// maps) is (see [`StateFiles::live`]).
    pub fn live_path(&self) -> &Path {
        self.files.live()
    }

    /// Whether a writer has the state open (holds the writer lock, an OFD
    /// lock the kernel drops when its holder dies). Asks the kernel; takes
    /// no lock.
    pub fn has_writer(&self) -> Result<bool> {
        lock::writer_lock_held(&self.file, self.path())
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
    /// options it was opened with; a commit may still override it), or
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
    /// durability of the options it was opened with
    /// ([`Reader::writer_durability`]).
    pub fn durability(&self) -> Result<Durability> {
        let (h, _) = durable::read_header(&self.file, self.path())?;
        Durability::from_code(h.durability.get(), h.durability_arg.get()).ok_or_else(|| {
            Error::Corrupt {
                path: self.path().into(),
                what: format!("unknown durability mode {}", h.durability.get()),
            }
        })
    }

    /// The sequence number of the last checkpoint: every commit up to it is
    /// in the durable image (read from its header now).
    pub fn checkpoint_seq(&self) -> Result<u64> {
        let (h, _) = durable::read_header(&self.file, self.path())?;
        Ok(h.checkpoint_seq.get())
    }

    /// Bytes the log can hold before a checkpoint empties it: its file's
    /// length less its header page.
    pub fn log_size(&self) -> Result<u64> {
        let wal = self.files.log();
        let len = std::fs::metadata(wal)
            .map_err(|e| Error::io("stat", wal, e))?
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
            .map(|p| p.head.saturating_sub(PAGE))
    }
}

/// The blocking iterator of [`Reader::changes`]: never ends.
#[derive(Debug)]
pub struct Changes<'r> {
    reader: &'r Reader,
    seen: u64,
    pending: std::vec::IntoIter<Event>,
}

impl Iterator for Changes<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.next() {
                self.seen = e.seq();
                return Some(e);
            }
            self.pending = self.reader.wait_changes(self.seen, None).into_iter();
        }
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
