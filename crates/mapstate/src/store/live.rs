//! The live image: the committed state now, which every process maps. It
//! lives on tmpfs, so it survives any process crash but not the OS; a
//! missing image, or one from another boot, is rebuilt from the durable
//! image plus the log (`store::recovery`).
//!
//! Page 0 holds the shared header (`format::live`): the sequence lock that
//! readers validate their copies with, the length, the writer's pid, the
//! published log position, the notification futex and the change ring.
//! The state's bytes follow at [`PAGE`].

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::error::{Error, Result};
use crate::format::{self, DurableHeader, PAGE, live};
use crate::fs::{self, Open, Owner};
use crate::live_image::Rebuilt;
use crate::store::log::{LogPosition, Record};
use crate::store::notify_word;
use crate::store::ring::ChangeRing;
use crate::store::seqlock::SeqLock;
use crate::sys::grow::{Growth, Spec as GrowSpec};
use crate::sys::{self, FileMap, MapKind, Protection, Reservation};
use crate::testing::{self, Step};

/// Who opens a live image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// The writer, holding the writer lock.
    Writer,
    /// A reader.
    Reader,
}

/// How a live image is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum LiveAccess {
    /// The writer (or a rebuild): everything read-write; it grows the file.
    Writer,
    /// A reader that may write the file: the header page read-write (to
    /// register as a waiter), the data read-only.
    ReaderWaiter,
    /// A reader that may only read the file: it polls instead of
    /// registering as a waiter.
    Reader,
}

/// A mapped live image.
#[derive(Debug)]
pub(crate) struct Live {
    /// A reader's data mapping follows the file from the fault handler
    /// (dropped first, before the reservation and the file).
    grow: Option<Growth>,
    res: Reservation,
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// Data bytes mapped (a multiple of the page size). A reader's mapping
    /// may be ahead of it (its fault handler maps what a raw pointer
    /// touches): [`Live::follow`] catches up.
    mapped: AtomicU64,
    access: LiveAccess,
}

impl Live {
    /// Maps `file` (the live image at `path` of a state of at most
    /// `max_size` bytes): the header page now, the data as it is needed.
    pub(crate) fn map(file: File, path: &Path, max_size: u64, access: LiveAccess) -> Result<Self> {
        let mut res = Reservation::new((PAGE + max_size) as usize)
            .map_err(|e| Error::io("mmap (reserve)", path, e))?;
        let prot = if access == LiveAccess::Reader {
            Protection::ReadOnly
        } else {
            Protection::ReadWrite
        };
        res.map_file(
            0,
            PAGE as usize,
            sys::fd_of(&file),
            0,
            FileMap::shared(prot),
        )
        .map_err(|e| Error::io("mmap", path, e))?;
        // A reader's raw pointer (`Reader::as_ptr`) may reach bytes a later
        // commit added: a fault there maps what the file has by then.
        let grow = if access == LiveAccess::Writer {
            None
        } else {
            Some(
                Growth::register(
                    &res,
                    sys::fd_of(&file),
                    GrowSpec {
                        file_off: 0,
                        kind: MapKind::Shared,
                        writable: false,
                        limit: (PAGE + max_size) as usize,
                        mapped: PAGE as usize,
                        prefault: false,
                        max_chunk: crate::sys::grow::CHUNK_MAX,
                    },
                )
                .map_err(|e| Error::io("register the live image for growth", path, e))?,
            )
        };
        Ok(Self {
            grow,
            res,
            file,
            path: path.into(),
            mapped: AtomicU64::new(0),
            access,
        })
    }

    /// Opens the existing live image of the state whose durable header is
    /// (or, once an interrupted checkpoint is finished, will be) `base` and
    /// whose durable file `owner` owns; `Err(why)` if it is missing or must
    /// be rebuilt. It is trusted only if the owner made it (no more
    /// permissions than the durable file) during this boot for this state,
    /// it is complete, holds at least the checkpoint's commits, and follows
    /// the log of `base`'s epoch or of the one before (a writer killed in a
    /// checkpoint, before it published the new epoch). A reader opens it
    /// read-write if it may, to register as a waiter.
    pub(crate) fn open_existing(
        path: &Path,
        base: &DurableHeader,
        owner: Owner,
        role: Role,
    ) -> Result<std::result::Result<Self, Rebuilt>> {
        let writer = role == Role::Writer;
        let (file, access) = match fs::open_file(path, Open::ReadWrite) {
            Ok(f) if writer => (f, LiveAccess::Writer),
            Ok(f) => (f, LiveAccess::ReaderWaiter),
            Err(Error::NotFound { .. }) => return Ok(Err(Rebuilt::Missing)),
            Err(e) if writer => return Err(e),
            Err(_) => match fs::open_file(path, Open::Read) {
                Ok(f) => (f, LiveAccess::Reader),
                Err(Error::NotFound { .. }) => return Ok(Err(Rebuilt::Missing)),
                Err(e) => return Err(e),
            },
        };
        if owner.check(&file, path).is_err() {
            use std::os::unix::fs::MetadataExt as _;
            let uid = file.metadata().map_or(u32::MAX, |m| m.uid());
            return Ok(Err(Rebuilt::NotTheOwners { uid }));
        }
        let flen = fs::file_len(&file, path)?;
        if flen < PAGE {
            return Ok(Err(Rebuilt::Incomplete));
        }
        let mut l = Self::map(file, path, base.max_size.get(), access)?;
        if let Err(why) = l.trusted(base, flen, role) {
            // The writer replaces it: whoever still maps it must learn so.
            if writer {
                l.retire();
            }
            return Ok(Err(why));
        }
        l.map_data(l.len_word().load(Ordering::Acquire))?;
        Ok(Ok(l))
    }

    /// The identity checks of [`Live::open_existing`] on a mapped image of
    /// `flen` bytes.
    fn trusted(
        &self,
        base: &DurableHeader,
        flen: u64,
        role: Role,
    ) -> std::result::Result<(), Rebuilt> {
        let mut hdr = [0u8; 48];
        self.res.read(0, &mut hdr);
        if hdr[..8] != format::LIVE_MAGIC {
            return Err(Rebuilt::Incomplete);
        }
        if u32::from_le_bytes(hdr[8..12].try_into().expect("4 bytes")) != format::VERSION {
            return Err(Rebuilt::OtherVersion);
        }
        if hdr[16..32] != base.file_id {
            return Err(Rebuilt::OtherState);
        }
        if hdr[32..48] != format::boot_id() {
            return Err(Rebuilt::OtherBoot);
        }
        if self.word(live::READY).load(Ordering::Acquire) != 1 {
            return Err(Rebuilt::Incomplete);
        }
        let epoch = self.log_epoch();
        if epoch != base.epoch && epoch != base.prev_epoch {
            return Err(Rebuilt::OtherEpoch);
        }
        let (applied, _) = self.applied();
        if applied < base.checkpoint_seq.get() {
            return Err(Rebuilt::Behind);
        }
        // Sequence numbers are doubled in the lock (and one more is
        // appended): a damaged image must leave room, as the header must
        // (up to `durable::COUNTER_LIMIT`, which readers read). A writer
        // refuses to go on from half the limit: an image there over files
        // that are not (a damaged image) is rebuilt from the files.
        let limit = crate::store::durable::COUNTER_LIMIT;
        let half = limit / 2;
        let damaged = role == Role::Writer && base.checkpoint_seq.get() < half && applied >= half;
        if applied > limit || damaged {
            return Err(Rebuilt::Incomplete);
        }
        let len = self.len_word().load(Ordering::Acquire);
        if len > base.max_size.get() || PAGE + len > flen {
            return Err(Rebuilt::Incomplete);
        }
        Ok(())
    }

    /// Writes the header of a new image: magic, version, the state's file
    /// id and this boot's id (the image is not ready yet).
    pub(crate) fn write_identity(&mut self, file_id: &[u8; 16]) {
        let mut hdr = [0u8; 48];
        hdr[..8].copy_from_slice(&format::LIVE_MAGIC);
        hdr[8..12].copy_from_slice(&format::VERSION.to_le_bytes());
        hdr[16..32].copy_from_slice(file_id);
        hdr[32..48].copy_from_slice(&format::boot_id());
        self.res.write(0, &hdr);
    }

    /// Marks a new image complete: from now on it is opened, not rebuilt.
    pub(crate) fn set_ready(&self) {
        self.word(live::READY).store(1, Ordering::Release);
    }

    /// The header word at byte `off`.
    fn word(&self, off: u64) -> &AtomicU64 {
        self.res.atomic_u64(off as usize)
    }

    /// Whether this process may register as a waiter.
    pub(crate) fn can_register(&self) -> bool {
        self.access != LiveAccess::Reader
    }

    /// Data bytes mapped.
    #[inline]
    pub(crate) fn mapped(&self) -> u64 {
        self.mapped.load(Ordering::Relaxed)
    }

    /// A reader's mapping: maps the data up to `len` bytes, as far as the
    /// file has them.
    pub(crate) fn follow(&self, len: u64) -> Result<()> {
        let want = len.next_multiple_of(PAGE);
        if want <= self.mapped() {
            return Ok(());
        }
        let Some(g) = &self.grow else {
            return Err(self.short(len));
        };
        g.grow_to((PAGE + want) as usize).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                self.short(len)
            } else if e.raw_os_error() == Some(libc::EFBIG) {
                Error::WriterNotVisible {
                    path: self.path.clone(),
                    why: format!(
                        "the state's maximum size was raised after this reader opened it: \
                         it is {len} bytes long now, past the {} bytes this reader reserved",
                        self.res.capacity() as u64 - PAGE
                    ),
                }
            } else {
                Error::io("mmap", &self.path, e)
            }
        })?;
        let now = g.mapped() as u64 - PAGE;
        self.mapped.fetch_max(now, Ordering::Relaxed);
        if now < want {
            return Err(self.short(len));
        }
        Ok(())
    }

    fn short(&self, len: u64) -> Error {
        Error::io(
            "mmap",
            &self.path,
            std::io::Error::other(format!(
                "the live image is shorter than the {len} bytes the state holds"
            )),
        )
    }

    /// Maps the data area up to `len` bytes; the writer first grows the file.
    /// The writer's live image mapped again for a state of at most
    /// `max_size` bytes (its maximum changed), as far as this mapping was.
    pub(crate) fn remap(&self, max_size: u64) -> Result<Self> {
        debug_assert_eq!(self.access, LiveAccess::Writer);
        let file = self
            .file
            .try_clone()
            .map_err(|e| Error::io("dup", &self.path, e))?;
        let mut l = Self::map(file, &self.path, max_size, self.access)?;
        l.map_data(self.mapped().min(max_size))?;
        Ok(l)
    }

    pub(crate) fn map_data(&mut self, len: u64) -> Result<()> {
        if self.access != LiveAccess::Writer {
            return self.follow(len);
        }
        let want = len.next_multiple_of(PAGE);
        let mapped = self.mapped();
        if want <= mapped {
            return Ok(());
        }
        // Only what lies past the file's end: an existing image is
        // allocated already, and tmpfs would walk every page again.
        let size = fs::file_len(&self.file, &self.path)?;
        fs::allocate(&self.path, &self.file, size.max(PAGE + mapped), PAGE + want)?;
        self.res
            .map_file(
                (PAGE + mapped) as usize,
                (want - mapped) as usize,
                sys::fd_of(&self.file),
                PAGE + mapped,
                FileMap::shared(Protection::ReadWrite),
            )
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        self.mapped.store(want, Ordering::Relaxed);
        Ok(())
    }

    /// The sequence lock of commits: twice the last applied commit's
    /// sequence number, odd while the next one is applied.
    pub(crate) fn seqlock(&self) -> SeqLock<'_> {
        SeqLock::new(self.word(live::SEQLOCK))
    }

    /// The length word (changed only inside the sequence lock).
    pub(crate) fn len_word(&self) -> &AtomicU64 {
        self.word(live::LEN)
    }

    /// The writer's pid word.
    pub(crate) fn writer_pid(&self) -> &AtomicU32 {
        self.res.atomic_u32(live::WRITER_PID as usize)
    }

    /// Whether the last writer closed with the files synced (see
    /// `format::live::FILES_SYNCED`).
    pub(crate) fn files_synced(&self) -> bool {
        self.word(live::FILES_SYNCED).load(Ordering::Acquire) == 1
    }

    /// Records whether the state's files hold everything synced (`true`
    /// only from a writer's clean close).
    pub(crate) fn set_files_synced(&self, yes: bool) {
        self.word(live::FILES_SYNCED)
            .store(u64::from(yes), Ordering::Release);
    }

    /// The writer's pid namespace word (see `format::live::WRITER_PIDNS`).
    pub(crate) fn writer_pidns(&self) -> &AtomicU64 {
        self.word(live::WRITER_PIDNS)
    }

    /// The writer's durability word (see `format::live::WRITER_DURABILITY`).
    pub(crate) fn writer_durability(&self) -> &AtomicU64 {
        self.word(live::WRITER_DURABILITY)
    }

    /// The notification futex word.
    pub(crate) fn notify_word(&self) -> &AtomicU32 {
        self.res.atomic_u32(live::NOTIFY as usize)
    }

    /// The change ring.
    pub(crate) fn ring(&self) -> ChangeRing<'_> {
        ChangeRing::new(&self.res)
    }

    /// The last applied sequence number, and whether a commit is being applied.
    pub(crate) fn applied(&self) -> (u64, bool) {
        let s = self.seqlock().load();
        (s / 2, s % 2 == 1)
    }

    /// Copies `buf.len()` data bytes at `off` (no check of the sequence
    /// lock: callers validate the copy with it).
    pub(crate) fn read(&self, off: u64, buf: &mut [u8]) {
        self.res.read((PAGE + off) as usize, buf);
    }

    /// Writes data bytes at `off` (the writer, or a rebuild, inside the
    /// sequence lock).
    pub(crate) fn write(&mut self, off: u64, data: &[u8]) {
        self.res.write((PAGE + off) as usize, data);
    }

    /// The data bytes `0..n` for the writer, which alone stores into the
    /// live image (readers copy out of it under the sequence lock), so one
    /// slice over it is sound.
    pub(crate) fn data_mut(&mut self, n: u64) -> &mut [u8] {
        self.res.exclusive_bytes_mut(PAGE as usize, n as usize)
    }

    /// The data bytes `off..off + len` for the writer (see [`Live::data_mut`]).
    pub(crate) fn data(&self, off: u64, len: u64) -> &[u8] {
        self.res
            .exclusive_bytes((PAGE + off) as usize, len as usize)
    }

    /// The address of byte 0 of the state.
    pub(crate) fn data_ptr(&self) -> *const u8 {
        self.res.base().wrapping_add(PAGE as usize)
    }

    /// Starts applying commit `seq` (the sequence lock goes odd).
    pub(crate) fn begin_apply(&self, seq: u64) {
        self.seqlock().begin_write(2 * seq - 1);
    }

    /// Publishes commit `seq` with state length `len`: the sequence lock goes
    /// even, then the notification word moves on (`notify_word::advance`)
    /// and sleeping waiters, if any, are woken. With nobody waiting this
    /// makes no system call.
    pub(crate) fn end_apply(&self, seq: u64, len: u64) {
        self.len_word().store(len, Ordering::Relaxed);
        self.seqlock().end_write(2 * seq);
        if notify_word::advance(self.notify_word()) {
            sys::futex_wake_all(self.notify_word());
        }
    }

    /// Wakes every waiter (a new writer, or a handle that stops its own
    /// waiting thread). The word moves on first, so a thread about to sleep
    /// on the old value does not sleep (the kernel compares the value
    /// atomically); a reader's step may race the writer's, which
    /// `notify_word::advance` (a compare-and-swap loop) allows. Other
    /// waiters see a spurious wake-up and sleep again; the writer moves the
    /// word on at its next commit and wakes them then as always. A
    /// read-only handle cannot bump the word; its waits poll every
    /// millisecond instead.
    pub(crate) fn wake_all(&self) {
        if self.can_register() {
            notify_word::advance(self.notify_word());
        }
        sys::futex_wake_all(self.notify_word());
    }

    /// The lock of the published log position (it only ever grows).
    fn log_lock(&self) -> SeqLock<'_> {
        SeqLock::new(self.word(live::LOG_GEN))
    }

    /// Publishes where the log record after commit `pos.seq` starts, with
    /// the epoch of the log, for readers that catch up on commits made while
    /// they copied, and for the next writer's recovery (which trusts it only
    /// if the epoch is the durable header's).
    pub(crate) fn publish_log(&self, pos: LogPosition) {
        let lock = self.log_lock();
        // Start from an odd value even if a writer died half-way through.
        let g = lock.load() | 1;
        lock.begin_write(g);
        self.word(live::LOG_SEQ).store(pos.seq, Ordering::Relaxed);
        self.word(live::LOG_HEAD).store(pos.head, Ordering::Relaxed);
        self.word(live::LOG_CHAIN)
            .store(pos.chain, Ordering::Relaxed);
        testing::point(Step::PositionHalf);
        let (lo, hi) = pos.epoch.split_at(8);
        for (i, half) in [lo, hi].into_iter().enumerate() {
            let v = u64::from_le_bytes(half.try_into().expect("8 bytes"));
            self.word(live::LOG_EPOCH + 8 * i as u64)
                .store(v, Ordering::Relaxed);
        }
        // A count that only grows, and may wrap (the parity is what counts).
        lock.end_write(g.wrapping_add(1));
    }

    /// Reads the published log position, or `None` if it keeps changing or
    /// was left half-written by a dead writer (callers then scan the log
    /// from its start).
    pub(crate) fn log_position(&self) -> Option<LogPosition> {
        let lock = self.log_lock();
        for _ in 0..1000 {
            let read = lock.read(|| LogPosition {
                seq: self.word(live::LOG_SEQ).load(Ordering::Relaxed),
                head: self.word(live::LOG_HEAD).load(Ordering::Relaxed),
                chain: self.word(live::LOG_CHAIN).load(Ordering::Relaxed),
                epoch: self.log_epoch_words(),
            });
            if let Some((_, pos)) = read {
                return Some(pos);
            }
            std::thread::yield_now();
        }
        None
    }

    /// The epoch of the published log position, read even while its lock
    /// is odd: a writer killed while it published leaves the lock odd for
    /// good, which makes the position unknown (recovery then scans the log
    /// from its start) but not the image untrustworthy. The epoch changes
    /// only at a checkpoint or when a writer opens, so one left half-written
    /// by a kill matches no header's, and the image is rebuilt.
    fn log_epoch(&self) -> [u8; 16] {
        self.log_position()
            .map_or_else(|| self.log_epoch_words(), |pos| pos.epoch)
    }

    /// The two words of `LOG_EPOCH`, as they are now (inside the lock's
    /// read, or without it in [`Live::log_epoch`]).
    fn log_epoch_words(&self) -> [u8; 16] {
        let mut epoch = [0u8; 16];
        for (i, half) in epoch.chunks_mut(8).enumerate() {
            let v = self
                .word(live::LOG_EPOCH + 8 * i as u64)
                .load(Ordering::Relaxed);
            half.copy_from_slice(&v.to_le_bytes());
        }
        epoch
    }

    /// Marks this image replaced (see `format::live::RETIRED`): clears the
    /// writer's pid, so that readers that map it check whether the writer
    /// is theirs, and wakes its waiters, so that none sleeps on an image no
    /// writer will ever commit to again.
    pub(crate) fn retire(&self) {
        self.word(live::RETIRED).store(1, Ordering::Release);
        self.writer_pid().store(0, Ordering::Release);
        self.wake_all();
    }

    /// Whether a new image replaced this one (see [`Live::retire`]).
    pub(crate) fn retired(&self) -> bool {
        self.word(live::RETIRED).load(Ordering::Acquire) == 1
    }

    /// The writer takes an exclusive OFD lock on byte 0 of its live image
    /// and keeps it for as long as it lives: a reader that sees the writer
    /// lock of the durable file taken but no lock here knows that the
    /// writer's live image is not the one it maps. Best effort: if the byte
    /// is locked already (a process forked by a previous writer that was
    /// killed holds a copy of its lock until it execs, or another process
    /// holds a shared lock), it stays locked, which is what readers look
    /// for. A writer that closes lets go explicitly
    /// ([`Live::unlock_as_writer`]).
    pub(crate) fn lock_as_writer(&self) {
        let _ = sys::ofd_try_lock_exclusive(sys::fd_of(&self.file), 0, 1);
    }

    /// Lets go of the lock [`Live::lock_as_writer`] took, explicitly: a
    /// child forked while the writer was open shares the lock's open file
    /// description until it execs, and would keep the byte locked after the
    /// writer is gone; the next writer could not take it, and once the child
    /// exec'd no lock would mark that writer's live image.
    pub(crate) fn unlock_as_writer(&self) {
        let _ = sys::ofd_unlock(sys::fd_of(&self.file), 0, 1);
    }

    /// Whether byte 0 of this live image is locked (see
    /// [`Live::lock_as_writer`]).
    pub(crate) fn writer_holds(&self) -> Result<bool> {
        sys::ofd_lock_holder(sys::fd_of(&self.file), 0, 1)
            .map(|h| h.is_some())
            .map_err(|e| Error::io("fcntl(F_OFD_GETLK)", &self.path, e))
    }

    /// Whether the image was built from the files on disk and no writer has
    /// started a new epoch since (see `format::live::REBUILT`).
    pub(crate) fn rebuilt(&self) -> bool {
        self.word(live::REBUILT).load(Ordering::Acquire) != 0
    }

    /// Marks the image as built from the files on disk (`true`), or as
    /// continued by a writer in an epoch of its own (`false`).
    pub(crate) fn set_rebuilt(&self, yes: bool) {
        self.word(live::REBUILT)
            .store(u64::from(yes), Ordering::Release);
    }

    /// Applies one log record under the sequence lock (recovery and rebuild).
    pub(crate) fn apply_record(&mut self, r: &Record) -> Result<()> {
        let end = r.all_ranges().map(|(o, l)| o + l).max().unwrap_or(0);
        self.map_data(r.new_len.max(end))?;
        self.begin_apply(r.seq);
        if let Some((off, len)) = r.zero {
            self.data_mut(off + len)[off as usize..].fill(0);
        }
        let mut at = 0;
        for &(off, len) in &r.ranges {
            self.write(off, &r.data[at..at + len as usize]);
            at += len as usize;
        }
        testing::point(Step::ReplayHalf);
        let old_len = self.len_word().load(Ordering::Relaxed);
        let ranges: Vec<(u64, u64)> = r.all_ranges().collect();
        self.ring().write(r.seq, &ranges, old_len, r.new_len);
        self.end_apply(r.seq, r.new_len);
        Ok(())
    }
}
