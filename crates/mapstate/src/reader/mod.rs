//! [`Reader`]: reads a state from any process. Every read returns a
//! consistent committed state: never a torn or uncommitted one. Reads are
//! copies validated by the live image's sequence lock; the writer never
//! waits for readers, and a long read is never starved by a busy writer (it
//! catches up from the log instead). Waiting for a commit sleeps on the
//! live header's futex word.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use zerocopy::{FromBytes, IntoBytes};

mod backup;
mod changes;
mod commits;
mod read_with;

pub use changes::Changes;
pub use commits::CommitsSince;

use crate::backoff::Backoff;
use crate::error::{Error, Result};
use crate::format::PAGE;
use crate::fs::{self, Open, Owner};
use crate::live_image::LiveImage;
use crate::offset::Offset;
use crate::options::{Durability, ReaderOptions};
use crate::store::StateFiles;
use crate::store::durable::{self, Durable};
use crate::store::handover::Handovers;
use crate::store::live::{Live, Role};
use crate::store::lock;
use crate::store::log::Log;
use crate::store::recovery;
use crate::sys::Protection;
use crate::writer::Writer;

/// How long the sequence lock may stay odd before a reader asks whether the
/// writer is still alive.
const STUCK: Duration = Duration::from_millis(1);

/// How long a reader that finds the writer lock taken, but neither the
/// build lock nor its live image's writer lock, waits for the writer to
/// take one of them (it is opening) before it concludes that the writer's
/// live image is another.
const OPENING: Duration = Duration::from_millis(100);

/// How long a wait for a change sleeps at most while no writer has this
/// reader's live image, before it asks that question again.
const NO_WRITER_NAP: Duration = Duration::from_secs(1);

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
/// assert_eq!(r.wait_for_change(0, None)?, Some(seq));
/// assert_eq!(r.read::<u64>(Offset::new(8))?, 42);
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Reader {
    file: File,
    files: StateFiles,
    live: Live,
    /// Where the live image came from.
    origin: LiveImage,
    /// Who owns the state.
    owner: Owner,
    opts: ReaderOptions,
    file_id: [u8; 16],
    max_size: u64,
    /// The log, opened read-only the first time a long read needs it.
    log: Mutex<Option<Log>>,
    /// The durable file's handover counter ([`Reader::check_visible`]).
    handovers: Handovers,
    /// Its value when this reader last found its live image to be the
    /// writer's (or no writer).
    seen_handovers: AtomicU64,
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
        fs::check_filesystem(&file, path, opts.allow_unsuitable_filesystem)?;
        let files = StateFiles::of_open(path, &file, opts.live_dir_path())?;
        let d = Durable::open(file, path)?;
        // Read before the live image is chosen: a writer that opens
        // meanwhile moves it on, and the first read checks.
        let handovers = Handovers::map(&d.file, path, Protection::ReadOnly)?;
        let seen = handovers.load();
        let (live, origin) = recovery::open_live(&d, &files, Role::Reader)?;
        let r = Self {
            file_id: d.header.file_id,
            max_size: d.header.max_size.get(),
            owner: d.owner,
            file: d.file,
            files,
            live,
            origin,
            opts: opts.clone(),
            log: Mutex::new(None),
            handovers,
            seen_handovers: AtomicU64::new(seen),
        };
        // A writer that was already there may have another live image.
        r.check_visible_now()?;
        Ok(r)
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
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"abc")?;
    /// t.commit()?;
    /// let r = mapstate::Reader::open(&path)?;
    /// let mut buf = [0u8; 3];
    /// assert_eq!(r.read_at(0, &mut buf)?, 1); // the commit the bytes are from
    /// assert_eq!(&buf, b"abc");
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<u64> {
        self.check_visible()?;
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
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use mapstate::Offset;
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let at = Offset::<[u32; 2]>::new(16);
    /// let mut t = w.begin();
    /// *t.get_mut(at)? = [3, 4];
    /// t.commit()?;
    /// assert_eq!(mapstate::Reader::open(&path)?.read(at)?, [3, 4]); // a copy, never torn
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn read<T: FromBytes + IntoBytes>(&self, at: Offset<T>) -> Result<T> {
        let offset = at.aligned()?;
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
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(8192).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"head")?;
    /// t.write_at(8000, b"tail")?;
    /// t.commit()?;
    /// let r = mapstate::Reader::open(&path)?;
    /// let (mut a, mut b) = ([0u8; 4], [0u8; 4]);
    /// let seq = r.read_many(&mut [(0, &mut a[..]), (8000, &mut b[..])])?; // both from one commit
    /// assert_eq!((seq, &a, &b), (1, b"head", b"tail"));
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn read_many(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<u64> {
        self.check_visible()?;
        self.read_consistent(reqs).map(|(seq, _)| seq)
    }

    /// Fails if a writer has the state open whose live image is not the one
    /// this reader maps (it is in another mount namespace, or it started
    /// after this reader built a private live image, or it replaced the
    /// image): reading on would silently give an old state. Such a writer
    /// moved the durable file's handover counter when it opened
    /// (`store::handover`), so one load tells whether anything needs
    /// checking; only when the counter moved is the kernel asked.
    #[inline]
    fn check_visible(&self) -> Result<()> {
        let now = self.handovers.load();
        if now == self.seen_handovers.load(Ordering::Relaxed) {
            return Ok(());
        }
        self.check_handover(now)
    }

    /// The counter moved to `now`: checks, and remembers `now` once this
    /// reader's live image is known to be the writer's (or there is no
    /// writer). While a writer is still opening (it holds the build lock)
    /// nothing is remembered, so that the next read checks again.
    #[cold]
    fn check_handover(&self, now: u64) -> Result<()> {
        if self.check_visible_now()? {
            self.seen_handovers.store(now, Ordering::Relaxed);
        }
        Ok(())
    }

    /// [`Reader::check_visible`] without the counter: `Ok(true)` if this
    /// reader's live image is the writer's or there is no writer,
    /// `Ok(false)` if a writer is opening (building or checking its live
    /// image).
    #[cold]
    fn check_visible_now(&self) -> Result<bool> {
        // A writer that is opening holds the writer lock a moment before it
        // takes the build lock: asked again (`Backoff`) for up to `OPENING`;
        // a loaded machine can stretch that moment past a few milliseconds
        // (a waiter was told the writer's image was not its own, where it
        // had been replaced).
        let mut backoff = Backoff::new();
        loop {
            if self.live.retired() {
                return Err(self.replaced());
            }
            if !self.has_writer()? {
                return self.check_not_behind().map(|()| true);
            }
            if self.live.writer_holds()? {
                return Ok(true);
            }
            if lock::build_lock_held(&self.file, self.path())? {
                return Ok(false);
            }
            if backoff.slept() >= OPENING {
                break;
            }
            backoff.sleep();
        }
        Err(Error::WriterNotVisible {
            path: self.path().into(),
            why: match self.origin {
                LiveImage::Private(_) => "a writer opened the state after this reader built \
                                          its own live image"
                    .into(),
                _ => {
                    "a writer has the state open with a live image this process does not map".into()
                }
            },
        })
    }

    /// With no writer alive: fails if the durable file holds commits this
    /// reader's live image lacks (a writer with another live image opened,
    /// committed and closed since this reader last looked).
    fn check_not_behind(&self) -> Result<()> {
        let (h, _) = durable::read_header(&self.file, self.path())?;
        let (applied, _) = self.live.applied();
        let on_disk = h.checkpoint_seq.get();
        if on_disk > applied {
            return Err(Error::WriterNotVisible {
                path: self.path().into(),
                why: format!(
                    "a writer with a live image this process does not map committed meanwhile \
                     (the file holds commit {on_disk}, this reader's live image {applied})"
                ),
            });
        }
        Ok(())
    }

    /// The error of a reader whose live image a new one replaced (see
    /// `format::live::RETIRED`).
    #[cold]
    fn replaced(&self) -> Error {
        Error::WriterNotVisible {
            path: self.path().into(),
            why: "the live image this reader maps was replaced (a writer found it damaged or \
                  out of date after a kill and rebuilt it, or the state was restored from a \
                  backup)"
                .into(),
        }
    }

    /// The bytes of every request from one committed state, and that
    /// state's sequence number and length.
    ///
    /// Never waits on a dead writer: plain sequence-lock reads are tried; if
    /// commits keep landing during the copies, the reader catches up from
    /// the log; if the log cannot say where the writer is (it restarted at a
    /// checkpoint meanwhile, or the writer died before it published its
    /// position), plain reads are tried again, and with no writer left they
    /// succeed, as nothing changes any more. A writer that died in the
    /// middle of a commit is detected within a few milliseconds
    /// ([`Reader::stable_seqlock`]).
    fn read_consistent(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<(u64, u64)> {
        loop {
            for _ in 0..4 {
                let s0 = self.stable_seqlock()?;
                let len = self.live.len_word().load(Ordering::Relaxed);
                let bounds = check_requests(reqs, len);
                if bounds.is_ok() {
                    self.copy_requests(reqs, len)?;
                }
                if self.live.seqlock().unchanged(s0) {
                    return bounds.map(|()| (s0 / 2, len));
                }
            }
            if let Some(done) = self.read_catching_up(reqs)? {
                return Ok(done);
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

    /// One copy, then the log records of the commits that landed during it:
    /// the sequence number and length of the state the buffers then hold.
    /// `None`: try again (the log was reset by a checkpoint meanwhile, or the
    /// writer has not published where its last record ends, or died first).
    fn read_catching_up(&self, reqs: &mut [(u64, &mut [u8])]) -> Result<Option<(u64, u64)>> {
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
            return bounds.map(|()| Some((s0 / 2, len)));
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
        let mut last_len = len;
        let end = self.with_log(|log| {
            log.scan_to(from, seq1, self.max_size, |r| {
                if let Some((off, l)) = r.zero {
                    overlay(reqs, off, l, |_, dst| dst.fill(0));
                }
                let mut at = 0usize;
                for &(off, l) in &r.ranges {
                    let data = &r.data[at..at + l as usize];
                    at += l as usize;
                    overlay(reqs, off, l, |from, dst| {
                        dst.copy_from_slice(&data[from..from + dst.len()]);
                    });
                }
                last_len = r.new_len;
                Ok(())
            })
        })?;
        if end.seq != seq1 {
            return Ok(None); // the records were overwritten: the log restarted
        }
        check_requests(reqs, last_len)?;
        Ok(Some((seq1, last_len)))
    }

    /// Runs `f` on the state's log, opened read-only the first time (and
    /// refreshed: it may have grown since).
    fn with_log<R>(&self, f: impl FnOnce(&Log) -> Result<R>) -> Result<R> {
        let mut guard = self.log.lock().unwrap_or_else(PoisonError::into_inner);
        let log = match &mut *guard {
            Some(log) => log,
            empty => empty.insert(Log::open_for_reading(
                self.files.log(),
                &self.file_id,
                self.owner,
            )?),
        };
        log.refresh()?;
        f(log)
    }

    /// Waits while the writer applies a commit (the sequence lock is odd);
    /// if the lock stays odd for a millisecond, asks the kernel whether a
    /// writer still holds the writer lock (again every millisecond), and
    /// repairs the state if the writer died there.
    fn wait_out_apply(&self, stuck: u64) -> Result<()> {
        let (mut spins, mut since) = (0, None);
        loop {
            if self.live.seqlock().load() != stuck {
                return Ok(());
            }
            if spins < 64 {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            std::thread::yield_now();
            let t = *since.get_or_insert_with(Instant::now);
            if t.elapsed() >= STUCK {
                return self.check_writer_alive(stuck);
            }
        }
    }

    /// A sequence lock word stuck odd for a while: if the writer is dead,
    /// finish its commit (when this process may write the files), else
    /// fail with `Error::WriterDied`.
    fn check_writer_alive(&self, stuck: u64) -> Result<()> {
        // A writer replaced the image: nothing will finish this commit.
        if self.live.retired() {
            return Err(self.replaced());
        }
        if self.has_writer()? || self.live.seqlock().load() != stuck {
            return Ok(());
        }
        let mut opts =
            Writer::options().allow_unsuitable_filesystem(self.opts.allow_unsuitable_filesystem);
        if let Some(d) = self.opts.live_dir_path() {
            opts = opts.live_dir(d);
        }
        match opts.open(self.path()) {
            Ok(w) => {
                drop(w);
                // It found the image damaged and replaced it.
                if self.live.retired() {
                    return Err(self.replaced());
                }
                Ok(())
            }
            Err(Error::Locked { .. }) => Ok(()),
            Err(_) => Err(Error::WriterDied {
                path: self.path().into(),
            }),
        }
    }

    /// A copy of the whole state at one commit: `(sequence number, bytes)`,
    /// the bytes as long as the state was at that commit.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let mut w = mapstate::Writer::options().create(true).len(16).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"0123456789abcdef")?;
    /// t.commit()?;
    /// let (seq, bytes) = mapstate::Reader::open(&path)?.snapshot()?;
    /// assert_eq!((seq, &bytes[..]), (1, &b"0123456789abcdef"[..]));
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn snapshot(&self) -> Result<(u64, Vec<u8>)> {
        self.check_visible()?;
        loop {
            let mut buf = vec![0u8; self.len() as usize];
            match self.read_consistent(&mut [(0, &mut buf[..])]) {
                Ok((seq, len)) if len == buf.len() as u64 => return Ok((seq, buf)),
                // The length changed meanwhile: again with the new one.
                Ok(_) | Err(Error::OutOfBounds { .. }) => {}
                Err(e) => return Err(e),
            }
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

    /// Where the live image this reader maps came from: kept, rebuilt from
    /// the files on disk, or built for this reader alone, and why.
    pub fn live_image(&self) -> LiveImage {
        self.origin
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
    /// the live image; `None` when no writer holds the lock, while one is
    /// still opening the state and has not recorded its pid yet (see
    /// [`Reader::has_writer`]), or when the writer runs in another pid
    /// namespace (where its pid means nothing here).
    pub fn writer_pid(&self) -> Result<Option<u32>> {
        if !self.has_writer()? {
            return Ok(None);
        }
        let pid = self.live.writer_pid().load(Ordering::Acquire);
        let ns = self.live.writer_pidns().load(Ordering::Relaxed);
        Ok((pid != 0 && ns == crate::sys::pid_namespace()).then_some(pid))
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
    /// length less its header page; 0 when there is no log (it was removed,
    /// or the durable file was restored alone: the next writer makes one).
    pub fn log_size(&self) -> Result<u64> {
        let wal = self.files.log();
        match std::fs::symlink_metadata(wal) {
            Ok(md) => Ok(md.len().saturating_sub(PAGE)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(Error::io("stat", wal, e)),
        }
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

/// Calls `f(offset in the range, part of a buffer)` for the part of each
/// request's buffer that the range `off..off + len` of the state covers.
fn overlay(reqs: &mut [(u64, &mut [u8])], off: u64, len: u64, mut f: impl FnMut(usize, &mut [u8])) {
    for (o, b) in reqs.iter_mut() {
        let start = off.max(*o);
        let stop = (off + len).min(*o + b.len() as u64);
        if start < stop {
            f(
                (start - off) as usize,
                &mut b[(start - *o) as usize..(stop - *o) as usize],
            );
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
