//! The redo log (`NAME-wal`): each commit appends one record holding its
//! changed ranges, with a sequence number and a checksum chained to the
//! previous record, so that a torn or stale tail is detected and cut off.
//! The log is mapped shared: appending is a memory copy, no system call.
//! Checkpoints reset it to its start with a fresh salt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::format::{
    self, DurableHeader, Epoch, LogHeader, NO_EPOCH, PAGE, RANGE_ENTRY, RECORD_HEADER, RangeEntry,
    RecordHeader,
};
use crate::fs::{self, Open, Owner};
use crate::sys::{self, FileMap, Protection, Reservation};
use crate::testing::{self, Step};

/// Address space reserved for the log.
pub(crate) const LOG_RESERVATION: u64 = 4 << 30;
/// How far ahead of the head the writer initializes the log's blocks.
const INIT_AHEAD: u64 = 1 << 20;

/// Bytes the record of a commit zeroing `zero` and changing `ranges` takes
/// in the log.
pub(crate) fn record_len(zero: Option<(u64, u64)>, ranges: &[(u64, u64)]) -> u64 {
    let data: u64 = ranges.iter().map(|r| r.1).sum();
    format::record_len(ranges.len() + usize::from(zero.is_some()), data)
}

/// An open log.
#[derive(Debug)]
pub(crate) struct Log {
    res: Reservation,
    file: File,
    path: PathBuf,
    /// Bytes of the file, all mapped.
    cap: u64,
    /// Where the next record goes.
    pos: LogPosition,
    /// Whether commits are synced one by one (`Sync`), and so worth
    /// [`Log::initialize_ahead`].
    synced_commits: bool,
    /// The file's blocks below this offset are written (initialized) on
    /// disk, not merely allocated: see [`Log::initialize_ahead`].
    initialized: u64,
    /// How far [`Log::grow_to_rate`] may grow the log (0: a fixed size).
    grow_limit: u64,
    /// When the log was opened or last restarted (at a checkpoint).
    started: Instant,
}

/// A log that fills up in less than this since it was started grows to
/// hold this long of commits at that rate ([`Log::grow_to_rate`]).
const BUSY: Duration = Duration::from_secs(1);

/// A valid record found by [`Log::scan`].
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) new_len: u64,
    /// A range set to zeros, first (the bytes a shrink cut off).
    pub(crate) zero: Option<(u64, u64)>,
    /// Changed ranges (state offset, length), after the zeroed one.
    pub(crate) ranges: Vec<(u64, u64)>,
    /// The ranges' bytes, concatenated.
    pub(crate) data: Vec<u8>,
}

impl Record {
    /// Every range the record changes, the zeroed one first.
    pub(crate) fn all_ranges(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.zero.iter().chain(self.ranges.iter()).copied()
    }
}

/// A position in the log: where the record after commit `seq` starts, the
/// chain value it is seeded with, and the epoch of the durable header whose
/// salt began the chain. The writer's next append, where a scan stopped,
/// and what the live image publishes for readers and the next writer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LogPosition {
    /// The sequence number of the last record before `head`.
    pub(crate) seq: u64,
    /// Offset in the log file of the next record.
    pub(crate) head: u64,
    /// The chain value the next record is seeded with.
    pub(crate) chain: u64,
    /// The epoch of the durable header this log follows.
    pub(crate) epoch: Epoch,
}

impl LogPosition {
    /// The start of the log that follows the checkpoint `h`.
    pub(crate) fn start(h: &DurableHeader) -> Self {
        Self {
            seq: h.checkpoint_seq.get(),
            head: PAGE,
            chain: h.log_salt.get(),
            epoch: h.epoch,
        }
    }
}

impl Log {
    /// Opens the log of the state `file_id` for reading (readers, and
    /// the build of a live image).
    pub(crate) fn open_for_reading(path: &Path, file_id: &[u8; 16], owner: Owner) -> Result<Self> {
        let file = fs::open_owned(path, Open::Read, owner)?;
        Self::open_file(file, path, file_id, Protection::ReadOnly)
    }

    /// Opens the log of the state `file_id` for the writer, who holds the
    /// writer lock; `None` if it is missing or empty (a state whose log was
    /// lost, or never made: [`Log::create`] makes it).
    pub(crate) fn open_for_writing(
        path: &Path,
        file_id: &[u8; 16],
        owner: Owner,
    ) -> Result<Option<Self>> {
        let file = match fs::open_owned(path, Open::ReadWrite, owner) {
            Ok(f) => f,
            Err(Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        if fs::file_len(&file, path)? == 0 {
            return Ok(None);
        }
        Self::open_file(file, path, file_id, Protection::ReadWrite).map(Some)
    }

    /// Makes a new, empty log of `size` bytes for the state `file_id`, whole
    /// before it takes its name (replacing a missing or empty one), with the
    /// owner and permission bits of the state; the caller syncs the
    /// directory.
    pub(crate) fn create(path: &Path, file_id: &[u8; 16], size: u64, owner: Owner) -> Result<Self> {
        let mut new = fs::NewFile::create(path, owner.mode)?;
        owner.give(new.file(), path, owner.mode)?;
        let h = LogHeader::new(*file_id);
        fs::allocate(path, new.file(), 0, size)?;
        fs::pwrite(new.file(), path, h.as_bytes(), 0)?;
        fs::fdatasync(new.file(), path)?;
        new.name_replacing(path)?;
        let file = new.reopen(path)?;
        Self::open_file(file, path, file_id, Protection::ReadWrite)
    }

    fn open_file(file: File, path: &Path, file_id: &[u8; 16], prot: Protection) -> Result<Self> {
        let len = fs::file_len(&file, path)?;
        if len < PAGE {
            return Err(Error::Truncated {
                path: path.into(),
                len,
                expected: PAGE,
            });
        }
        let mut h = LogHeader::new_zeroed();
        std::os::unix::fs::FileExt::read_exact_at(&file, h.as_mut_bytes(), 0)
            .map_err(|e| Error::io("pread", path, e))?;
        if h.magic != format::LOG_MAGIC {
            return Err(Error::Foreign {
                path: path.into(),
                what: "not a mapstate log".into(),
            });
        }
        if h.version.get() > format::VERSION {
            return Err(Error::TooNew {
                path: path.into(),
                version: h.version.get(),
                supported: format::VERSION,
            });
        }
        if !h.valid_for(file_id) {
            return Err(Error::Corrupt {
                path: path.into(),
                what: "the log's header is damaged or belongs to another state".into(),
            });
        }
        let cap = (len - len % PAGE).min(LOG_RESERVATION);
        let mut res = Reservation::new(LOG_RESERVATION as usize)
            .map_err(|e| Error::io("mmap (reserve)", path, e))?;
        res.map_file(0, cap as usize, sys::fd_of(&file), 0, FileMap::shared(prot))
            .map_err(|e| Error::io("mmap", path, e))?;
        // Keep page-cache folios small so that syncing a few records writes a
        // few pages, not megabytes (see docs/DESIGN.md, "large folios").
        let _ = res.advise(0, cap as usize, sys::Advice::Random);
        Ok(Self {
            res,
            file,
            path: path.into(),
            cap,
            pos: LogPosition {
                seq: 0,
                head: PAGE,
                chain: 0,
                epoch: NO_EPOCH,
            },
            synced_commits: false,
            initialized: 0,
            grow_limit: 0,
            started: Instant::now(),
        })
    }

    /// Walks the records from `from` (the record of commit `from.seq + 1`,
    /// chained from `from.chain`), calling `f` for each valid one, and stops
    /// at the first record that is torn, stale or out of sequence. Ranges
    /// must lie within `max_size`. Returns the position after the last
    /// valid record.
    pub(crate) fn scan(
        &self,
        from: LogPosition,
        max_size: u64,
        f: impl FnMut(&Record) -> Result<()>,
    ) -> Result<LogPosition> {
        self.scan_to(from, u64::MAX, max_size, f)
    }

    /// As [`Log::scan`], stopping after record `last_seq`.
    pub(crate) fn scan_to(
        &self,
        from: LogPosition,
        last_seq: u64,
        max_size: u64,
        mut f: impl FnMut(&Record) -> Result<()>,
    ) -> Result<LogPosition> {
        let mut at = from;
        let mut buf = Vec::new();
        while at.seq < last_seq
            && let Some((rec, total, chain)) =
                self.record_at(at.head, at.chain, at.seq + 1, max_size, &mut buf)
        {
            f(&rec)?;
            at = LogPosition {
                seq: rec.seq,
                head: at.head + total,
                chain,
                epoch: at.epoch,
            };
        }
        Ok(at)
    }

    /// Walks the record headers and range lists from `start` to `end`
    /// without reading or hashing the data, calling `f(off, len)` for each
    /// range; the records must be numbered `first_seq..=last_seq` and end
    /// exactly at `end`. Returns false (having called `f` for some ranges
    /// perhaps) when they do not: the caller then scans normally.
    pub(crate) fn walk_ranges(
        &self,
        start: u64,
        end: u64,
        first_seq: u64,
        last_seq: u64,
        mut f: impl FnMut(u64, u64),
    ) -> bool {
        let (mut at, mut seq) = (start, first_seq);
        if end > self.cap || start > end {
            return false;
        }
        while at < end {
            let Some((_, total, n)) = self.header_at(at, end - at, seq) else {
                return false;
            };
            for i in 0..n {
                let mut e = RangeEntry::new_zeroed();
                self.res.read(
                    (at + RECORD_HEADER as u64 + i * RANGE_ENTRY as u64) as usize,
                    e.as_mut_bytes(),
                );
                f(e.off.get(), e.len.get() & !format::ZERO_RANGE);
            }
            at += total;
            seq += 1;
        }
        at == end && seq == last_seq + 1
    }

    /// Reads and checks the header of the record at `off`, which must be
    /// commit `seq`'s and fit in the `room` bytes there: `(header,
    /// total_len, n_ranges)`. The checks every reader of records makes.
    fn header_at(&self, off: u64, room: u64, seq: u64) -> Option<(RecordHeader, u64, u64)> {
        if room < RECORD_HEADER as u64 {
            return None;
        }
        let mut h = RecordHeader::new_zeroed();
        self.res.read(off as usize, h.as_mut_bytes());
        let total = h.total_len.get();
        let n = u64::from(h.n_ranges.get());
        let ok = h.magic.get() == format::RECORD_MAGIC
            && h.seq.get() == seq
            && total <= room
            && total % 8 == 0
            && n.checked_mul(RANGE_ENTRY as u64)?
                .checked_add(RECORD_HEADER as u64)?
                <= total;
        ok.then_some((h, total, n))
    }

    /// Decodes and validates the record at `off`: `(record, total_len, chain)`.
    #[allow(clippy::many_single_char_names)]
    fn record_at(
        &self,
        off: u64,
        prev: u64,
        seq: u64,
        max_size: u64,
        buf: &mut Vec<u8>,
    ) -> Option<(Record, u64, u64)> {
        let room = self.cap.checked_sub(off)?;
        let (h, total, n) = self.header_at(off, room, seq)?;
        if h.new_len.get() > max_size {
            return None;
        }
        buf.resize(total as usize, 0);
        self.res.read(off as usize, buf);
        let chain = format::hash(prev, &buf[8..]);
        if chain != h.chain.get() {
            return None;
        }
        let mut ranges = Vec::with_capacity(n as usize);
        let mut zero = None;
        let mut data_len: u64 = 0;
        for i in 0..n as usize {
            let at = RECORD_HEADER + i * RANGE_ENTRY;
            let e = RangeEntry::read_from_bytes(&buf[at..at + RANGE_ENTRY]).ok()?;
            let (o, l) = (e.off.get(), e.len.get());
            if l & format::ZERO_RANGE != 0 {
                let l = l & !format::ZERO_RANGE;
                // Only the first entry may zero, within the maximum size.
                if i != 0 || o.checked_add(l)? > max_size {
                    return None;
                }
                zero = Some((o, l));
                continue;
            }
            // Within the maximum size, not the new length: a shrinking
            // commit logs the zeroed bytes past its new end.
            if o.checked_add(l)? > max_size {
                return None;
            }
            data_len = data_len.checked_add(l)?;
            ranges.push((o, l));
        }
        if data_len > total || format::record_len(n as usize, data_len) != total {
            return None;
        }
        let data_at = RECORD_HEADER + n as usize * RANGE_ENTRY;
        let data = buf[data_at..data_at + data_len as usize].to_vec();
        Some((
            Record {
                seq,
                new_len: h.new_len.get(),
                zero,
                ranges,
                data,
            },
            total,
            chain,
        ))
    }

    /// Maps the whole file again if another process grew it (readers).
    pub(crate) fn refresh(&mut self) -> Result<()> {
        let len = fs::file_len(&self.file, &self.path)?;
        let cap = (len - len % PAGE).min(LOG_RESERVATION);
        if cap > self.cap {
            self.map_to(cap, Protection::ReadOnly)?;
        }
        Ok(())
    }

    /// Maps the file from the current capacity up to `cap`.
    fn map_to(&mut self, cap: u64, prot: Protection) -> Result<()> {
        self.res
            .map_file(
                self.cap as usize,
                (cap - self.cap) as usize,
                sys::fd_of(&self.file),
                self.cap,
                FileMap::shared(prot),
            )
            .map_err(|e| Error::io("mmap", &self.path, e))?;
        self.cap = cap;
        Ok(())
    }

    /// Whether a record of `total` bytes fits after `head`.
    pub(crate) fn fits(&self, total: u64) -> bool {
        self.pos
            .head
            .checked_add(total)
            .is_some_and(|end| end <= self.cap)
    }

    /// Whether a record of `total` bytes fits in an empty log.
    pub(crate) fn fits_empty(&self, total: u64) -> bool {
        PAGE + total <= self.cap
    }

    /// Grows the log file so that a record of `total` bytes fits in it when empty.
    pub(crate) fn grow_for(&mut self, total: u64) -> Result<()> {
        let want = (PAGE + total)
            .next_multiple_of(PAGE)
            .max(self.cap.saturating_mul(2));
        if want > LOG_RESERVATION {
            return Err(Error::InvalidSize {
                what: "commit",
                size: total,
                reason: format!("larger than the log can hold ({LOG_RESERVATION} bytes)"),
            });
        }
        self.grow_to(want)
    }

    /// Grows the log file to `cap` bytes (a page multiple, at most
    /// [`LOG_RESERVATION`]). The part past the old end reads as zeros,
    /// which no scan takes for a record.
    fn grow_to(&mut self, cap: u64) -> Result<()> {
        fs::allocate(&self.path, &self.file, self.cap, cap)?;
        self.map_to(cap, Protection::ReadWrite)
    }

    /// Lets [`Log::grow_to_rate`] grow the log up to `limit` bytes.
    pub(crate) fn set_grow_limit(&mut self, limit: u64) {
        self.grow_limit = limit.min(LOG_RESERVATION);
    }

    /// How long since the log was opened or last restarted: when it is
    /// full, how long it took to fill.
    pub(crate) fn age(&self) -> Duration {
        self.started.elapsed()
    }

    /// After the checkpoint a full log forced, the log having filled up in
    /// `filled_in`: if that is less than [`BUSY`], grows the log (up to its
    /// growth limit) to what `BUSY` of commits at that rate needs, rounded
    /// up to a power of two, so that a state that commits fast is not
    /// checkpointed every few milliseconds, while one that commits slowly
    /// keeps a small log. Best effort: a growth that fails (a full disk)
    /// keeps the log as it is. Called with the log empty (just restarted).
    pub(crate) fn grow_to_rate(&mut self, filled_in: Duration) {
        if filled_in >= BUSY || self.cap >= self.grow_limit {
            return;
        }
        let per_busy = u128::from(self.cap) * BUSY.as_micros() / filled_in.as_micros().max(1);
        let want = u64::try_from(per_busy)
            .unwrap_or(u64::MAX)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX)
            .clamp(self.cap, self.grow_limit);
        if want > self.cap {
            let _ = self.grow_to(want.next_multiple_of(PAGE));
        }
    }

    /// Notes that commits will be synced one by one from now on: appends
    /// then [initialize the log ahead](Log::initialize_ahead).
    pub(crate) fn expect_synced_commits(&mut self) {
        self.synced_commits = true;
    }

    /// Writes zeros over the log's blocks from the head to [`INIT_AHEAD`]
    /// past it, where they are not written yet. `fallocate` leaves blocks
    /// *unwritten*: the first store to each one changes the file's extent
    /// map, which the next `fdatasync` must write as well as the record (on
    /// ext4 here, about 15 % more per sync when a group of commits fills a
    /// page per sync). Writing them ahead, one MiB at a time, turns that
    /// into one extent change per MiB. The zeros go in 4 KiB `pwrite`s,
    /// which keep the page cache's folios small (a large folio would make
    /// every sync write all of it). Best effort: a failed write changes
    /// nothing but speed (the blocks stay allocated, and an I/O error
    /// shows up in the next sync). Only for synced commits: unsynced ones
    /// are written back by the kernel in bulk, where the extent changes
    /// cost little, and at millions of commits a second the `pwrite`s would
    /// cost more than they save.
    fn initialize_ahead(&mut self) {
        if self.initialized == 0 {
            // Blocks already written (an earlier pass over the log) read as
            // data; unwritten ones as a hole. Where holes are not reported,
            // the whole file counts as written and nothing is done.
            self.initialized = sys::next_hole(sys::fd_of(&self.file), self.pos.head)
                .unwrap_or(self.cap)
                .max(self.pos.head);
        }
        let want = (self.pos.head + INIT_AHEAD).min(self.cap);
        if self.initialized >= want {
            return;
        }
        let zeros = [0_u8; PAGE as usize];
        let end = (self.initialized + INIT_AHEAD).min(self.cap);
        let mut at = self.initialized.next_multiple_of(PAGE);
        while at < end {
            if std::os::unix::fs::FileExt::write_all_at(&self.file, &zeros, at).is_err() {
                break;
            }
            at += PAGE;
        }
        self.initialized = at.max(self.initialized);
    }

    /// Where the next record goes.
    pub(crate) fn position(&self) -> LogPosition {
        self.pos
    }

    /// Moves the head: the next record goes at `pos` (after recovery found
    /// the log's end, or empty after a checkpoint with
    /// [`LogPosition::start`]).
    pub(crate) fn set_position(&mut self, pos: LogPosition) {
        self.pos = pos;
    }

    /// Empties the log after a checkpoint that wrote durable header `h`:
    /// the next record goes at the start, chained from `h`'s salt, and the
    /// first record's header is cleared, so that the records written
    /// before stop being a chain from any older header's salt (a backup
    /// of the durable file restored later must not replay the commits
    /// that came after it).
    pub(crate) fn restart(&mut self, h: &DurableHeader) {
        self.pos = LogPosition::start(h);
        self.started = Instant::now();
        // A log too short for one record holds none to clear.
        if self.fits(RECORD_HEADER as u64) {
            self.res
                .exclusive_bytes_mut(PAGE as usize, RECORD_HEADER)
                .fill(0);
        }
    }

    /// Appends the record of the next commit: the range `zero` set to zeros
    /// (a shrink), then `ranges` of `view` (the writer's view, whose offsets
    /// are state offsets), and the new state length. The caller checked
    /// [`Log::fits`] with [`record_len`]. A crash part-way leaves a record
    /// whose chain does not match, which recovery cuts off.
    pub(crate) fn append(
        &mut self,
        new_len: u64,
        zero: Option<(u64, u64)>,
        ranges: &[(u64, u64)],
        view: &[u8],
    ) {
        let seq = self.pos.seq + 1;
        let total = record_len(zero, ranges);
        if self.synced_commits {
            self.initialize_ahead();
        }
        let at = self.pos.head as usize;
        let h = RecordHeader {
            chain: U64::new(0),
            magic: U32::new(format::RECORD_MAGIC),
            n_ranges: U32::new((ranges.len() + usize::from(zero.is_some())) as u32),
            seq: U64::new(seq),
            total_len: U64::new(total),
            new_len: U64::new(new_len),
        };
        // The log is written only by the writer holding the writer lock, so
        // one mutable slice over the record is sound (see SOUNDNESS.md).
        let rec = self.res.exclusive_bytes_mut(at, total as usize);
        rec[..RECORD_HEADER].copy_from_slice(h.as_bytes());
        let mut p = RECORD_HEADER;
        let entries = zero
            .map(|(off, len)| (off, len | format::ZERO_RANGE))
            .into_iter()
            .chain(ranges.iter().copied());
        for (off, len) in entries {
            let e = RangeEntry {
                off: U64::new(off),
                len: U64::new(len),
            };
            rec[p..p + RANGE_ENTRY].copy_from_slice(e.as_bytes());
            p += RANGE_ENTRY;
        }
        testing::point(Step::RecordRanges);
        for &(off, len) in ranges {
            let (off, len) = (off as usize, len as usize);
            rec[p..p + len].copy_from_slice(&view[off..off + len]);
            p += len;
        }
        rec[p..].fill(0);
        testing::point(Step::RecordBytes);
        let chain = format::hash(self.pos.chain, &rec[8..]);
        rec[..8].copy_from_slice(&chain.to_le_bytes());
        self.pos = LogPosition {
            seq,
            head: self.pos.head + total,
            chain,
            epoch: self.pos.epoch,
        };
    }

    /// Another descriptor of the log file (for the background syncer).
    pub(crate) fn try_clone_file(&self) -> Result<File> {
        self.file
            .try_clone()
            .map_err(|e| Error::io("dup", &self.path, e))
    }

    /// `fdatasync` of the log: every appended record is durable.
    pub(crate) fn sync(&self) -> Result<()> {
        fs::fdatasync(&self.file, &self.path)
    }

    /// Bytes of log in use.
    pub(crate) fn used(&self) -> u64 {
        self.pos.head - PAGE
    }
}
