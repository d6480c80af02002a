//! Robustness against damaged files: opening a corrupted, truncated or random
//! state gives a typed error or a valid state, never a panic, a hang or a
//! crash (SIGBUS, abort). The models follow format version 2 (src/format.rs,
//! docs/DESIGN.md): durable headers with epochs (version 1 headers read as
//! having none), journals valid only if made from the current header (their
//! target's previous epoch is its epoch) and emptied once their checkpoint
//! is complete, log records whose first range may be a zeroed one (bit 63
//! of its length: a shrink), and live images trusted only if their published
//! log position is of the base header's epoch or the one before and they
//! hold at least its checkpoint (else rebuilt from the files). A journal
//! that grows the state must also hold every page of the growth (from the
//! one holding the durable header's end), as every checkpoint writes them.
//! Readers take sequence numbers and generations up to 2^62; a writer
//! refuses (`Corrupt`, naming the limit) a state whose sequence number or
//! generation, once recovered, is 2^61 or more (`recovered_counters` says
//! which states those are).
//!
//! Five proptest strategies, each its own test:
//! 1. `mutated_states`: a few real small "golden" states (built once: commits
//!    with shrinks, a checkpoint, a checkpoint cut short after its journal,
//!    an empty state, a closed state) are copied and damaged: bits flipped,
//!    bytes overwritten or zeroed, files truncated, extended with garbage or
//!    sparsely, deleted, header slots swapped or copied, log records
//!    duplicated or their fields overwritten, live image fields overwritten
//!    (its epoch among them), a file taken from another state. With the
//!    state's own live image installed or not; a live image the trust rule
//!    rejects must be rebuilt from the files, and show their state.
//! 2. `random_files`: random bytes (0 to 64 KiB, with or without the magic)
//!    as the durable file: refused with exactly the error the header calls for.
//! 3. `hostile_headers`: durable headers with fields set to extreme values and
//!    a valid checksum (`TooNew` for a version past 2, `Corrupt` for a bad
//!    page size, maximum size, length or counter, ...), refused exactly as the
//!    header model says (`header_refusals` checks the cases the issue names
//!    one by one); headers turned into version 1 ones (no epochs), or with
//!    other epochs, open with the golden state
//!    (`version_1_headers_are_read_and_upgraded` checks the upgrade).
//! 4. `hostile_log_records`: log records with valid chains but hostile
//!    contents (zeroed ranges among them: inside the maximum size, past it,
//!    wrapping past 2^64, flagged on a later entry); the state must be the
//!    durable image plus the records a correct scan accepts.
//! 5. `hostile_journals`: checkpoint journals that lead one generation on,
//!    with hostile fields (page lists without the pages of a growth among
//!    them), made from the current header or from another (the previous
//!    one, a version 1 one, another lineage's); the state must be the
//!    journal's, or, if the journal is invalid, the state without it.
//!
//! Every open runs under `catch_unwind`: a panic fails the case. After a
//! successful writer's open, the durable header has an epoch and the live
//! image publishes it (and is not marked rebuilt); the state is read through
//! a `Reader`, one commit is made, the writer closes (its checkpoint leaves
//! an empty journal), and the state must reopen unchanged, also once the
//! live image is deleted and rebuilt from the files (where the files are
//! known to agree with it). Where the damage leaves the state recoverable,
//! every open must succeed and show exactly the golden state (or the one
//! the models give); a writer's open of a state at the counters' limit must
//! instead be refused with exactly that error, leaving the state as it was
//! for readers. A case that takes over 5 s fails; a watchdog exits the
//! process if one takes over 60 s (a hang).
//!
//! Known bugs (reported; each reproduced by an `#[ignore]`d test at the end,
//! `-- --ignored` runs them): a case that exercises one is counted under the
//! bug's id instead of failing, for its panics (`KNOWN_BUGS`, or an
//! arithmetic overflow in a case the models flag, `Expect::known`) and its
//! broken oracles. None is open at present. `MAPSTATE_FUZZ_STRICT=1` fails
//! on known-bug panics and oracles too.
//!
//! The number of cases, spread over the strategies by weight (mutated 45%,
//! random 20%, headers 15%, log 12%, journals 8%), comes from
//! `MAPSTATE_FUZZ_CASES` (default 8,000: about 10 s in release on an idle
//! 2-core machine, 45 s on a busy one; 100,000: 2.5 min idle, 9 min busy).
//! The 100,000-case run, printing which outcome each open had:
//!
//! ```text
//! MAPSTATE_FUZZ_CASES=100000 cargo test --release -p mapstate --test corrupt_files -- --nocapture
//! ```

// Files, offsets and fields are many and short-lived: one letter each reads best.
#![allow(clippy::many_single_char_names)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::time::{Duration, Instant};

use mapstate::{Durability, Error, MAX_RESERVATION, Reader, Writer, WriterOptions};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError};
use xxhash_rust::xxh3::xxh3_64_with_seed;

// ---------------------------------------------------------------------------
// The formats, as far as these tests need them (src/format.rs, docs/DESIGN.md).

const PAGE: u64 = 4096;
/// The format version the library writes, and the newest it reads.
const VERSION: u64 = 2;
/// Offsets of the durable image's two header slots, and the size of one.
const SLOTS: [usize; 2] = [0, 2048];
const HEADER: usize = 128;
const DURABLE_MAGIC: &[u8; 8] = b"MAPSTATE";
const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"RCD1");
/// Record header and range entry sizes.
const REC: u64 = 40;
const RANGE: u64 = 16;
/// Bit 63 of a range entry's length: a zeroed range (only the first entry
/// of a record may be one), with no bytes in the record.
const ZERO_RANGE: u64 = 1 << 63;
/// Sequence numbers and generations past this are refused (their double
/// must fit the sequence lock).
const MAX_COUNTER: u64 = 1 << 62;
/// A writer refuses to open a state whose sequence number or generation,
/// once recovered, is this or more (writer.rs `open_with`: no state gets
/// there by committing, so its files were altered); readers take them up
/// to `MAX_COUNTER`.
const WRITER_LIMIT: u64 = MAX_COUNTER / 2;
/// Journal header: magic, file id, target header, page count, body hash, checksum.
const J_FILE_ID: usize = 8;
const J_TARGET: usize = 24;
const J_N_PAGES: usize = 152;
const J_BODY_HASH: usize = 160;
const J_CHECKSUM: usize = 168;
const JOURNAL_MAGIC: &[u8; 8] = b"MAPSTJNL";
/// Address space the library reserves for the log: it maps no more of a
/// longer log file.
const LOG_RESERVATION: u64 = 4 << 30;
/// The live image's header (format.rs `live`): magic, version (u32 at 8),
/// file id (16..32), boot id (32..48), then these words.
const LIVE_MAGIC: &[u8; 8] = b"MAPSTLIV";
const L_READY: usize = 48;
const L_REBUILT: usize = 56;
const L_SEQLOCK: usize = 64;
const L_LEN: usize = 72;
const L_LOG_GEN: usize = 192;
const L_LOG_EPOCH: usize = 224;

fn xxh3(seed: u64, bytes: &[u8]) -> u64 {
    xxh3_64_with_seed(bytes, seed)
}

fn rd(b: &[u8], at: usize, width: usize) -> u64 {
    let mut v = [0u8; 8];
    v[..width].copy_from_slice(&b[at..at + width]);
    u64::from_le_bytes(v)
}

fn wr(b: &mut [u8], at: usize, width: usize, v: u64) {
    b[at..at + width].copy_from_slice(&v.to_le_bytes()[..width]);
}

/// Fields of a durable header: (offset in the header, width).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HField {
    Magic,
    Version,
    PageSize,
    FileId,
    Generation,
    CheckpointSeq,
    Len,
    MaxSize,
    LogSalt,
    Durability,
    DurabilityArg,
    /// Half `i % 2` of the header's epoch (16 bytes at 88).
    Epoch(u8),
    /// Half `i % 2` of the epoch of the header it replaced (16 bytes at 104).
    PrevEpoch(u8),
}

impl HField {
    fn at(self) -> (usize, usize) {
        match self {
            HField::Magic => (0, 8),
            HField::Version => (8, 4),
            HField::PageSize => (12, 4),
            HField::FileId => (16, 8),
            HField::Generation => (32, 8),
            HField::CheckpointSeq => (40, 8),
            HField::Len => (48, 8),
            HField::MaxSize => (56, 8),
            HField::LogSalt => (64, 8),
            HField::Durability => (72, 8),
            HField::DurabilityArg => (80, 8),
            HField::Epoch(i) => (88 + 8 * usize::from(i % 2), 8),
            HField::PrevEpoch(i) => (104 + 8 * usize::from(i % 2), 8),
        }
    }

    fn get(self, header: &[u8]) -> u64 {
        let (at, w) = self.at();
        rd(header, at, w)
    }

    fn set(self, header: &mut [u8], v: u64) {
        let (at, w) = self.at();
        wr(header, at, w, v);
    }
}

/// A header's epoch: random, new at every header write (zeros in a
/// version 1 header).
fn epoch(h: &[u8]) -> &[u8] {
    &h[88..104]
}

/// The epoch of the header a header replaced (zeros in the first).
fn prev_epoch(h: &[u8]) -> &[u8] {
    &h[104..120]
}

fn seal(header: &mut [u8]) {
    let sum = xxh3(0, &header[..HEADER - 8]);
    wr(header, HEADER - 8, 8, sum);
}

fn sealed(header: &[u8]) -> bool {
    rd(header, HEADER - 8, 8) == xxh3(0, &header[..HEADER - 8])
}

/// How an open must refuse a durable image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Foreign,
    TooNew,
    Truncated,
    Corrupt,
}

impl Refusal {
    fn matches(self, label: &str) -> bool {
        label.starts_with(match self {
            Refusal::Foreign => "Foreign",
            Refusal::TooNew => "TooNew",
            Refusal::Truncated => "Truncated",
            Refusal::Corrupt => "Corrupt",
        })
    }
}

/// Whether a header's own fields are usable: page size, maximum size,
/// length, durability mode (recovery step 2 of docs/DESIGN.md).
fn fields_valid(h: &[u8]) -> bool {
    let max = HField::MaxSize.get(h);
    HField::PageSize.get(h) == PAGE
        && max != 0
        && max % PAGE == 0
        && max <= MAX_RESERVATION
        && HField::Len.get(h) <= max
        && HField::Durability.get(h) <= 2
}

/// Whether a header's sequence number and generation leave room to count
/// (durable.rs `check_counters`).
fn counters_valid(h: &[u8]) -> bool {
    HField::CheckpointSeq.get(h) <= MAX_COUNTER && HField::Generation.get(h) <= MAX_COUNTER
}

/// Whether an error's label (`label`) is a writer's refusal of a state at
/// `WRITER_LIMIT` (durable.rs `at_counter_limit`).
fn is_limit(label: &str) -> bool {
    label.starts_with("Corrupt") && label.contains("near its limit of #^#")
}

/// The header an open must use (its slot), or how it must refuse the file:
/// of the slots with the magic and a valid checksum (which covers the
/// epochs), the one with the highest generation; any such slot with a
/// version past 2 makes the file too new (versions 1 and 2 are read alike:
/// a version 1 header's epochs are zeros). Then its fields, the file's
/// length, and its counters.
fn model_header(head: &[u8], file_len: u64) -> Result<usize, Refusal> {
    let need = SLOTS[1] + HEADER;
    if file_len < need as u64 {
        let foreign = (1..8).contains(&file_len) || (file_len >= 8 && &head[..8] != DURABLE_MAGIC);
        return Err(if foreign {
            Refusal::Foreign
        } else {
            Refusal::Truncated
        });
    }
    let mut best: Option<(usize, u64)> = None;
    let (mut saw_magic, mut too_new) = (false, false);
    for (i, &s) in SLOTS.iter().enumerate() {
        let h = &head[s..s + HEADER];
        if &h[..8] != DURABLE_MAGIC {
            continue;
        }
        saw_magic = true;
        if !sealed(h) {
            continue;
        }
        if HField::Version.get(h) > VERSION {
            too_new = true;
            continue;
        }
        let generation = HField::Generation.get(h);
        if best.is_none_or(|(_, g)| generation > g) {
            best = Some((i, generation));
        }
    }
    if too_new {
        return Err(Refusal::TooNew);
    }
    let Some((slot, _)) = best else {
        return Err(if saw_magic {
            Refusal::Corrupt
        } else {
            Refusal::Foreign
        });
    };
    let h = &head[SLOTS[slot]..SLOTS[slot] + HEADER];
    if !fields_valid(h) {
        return Err(Refusal::Corrupt);
    }
    if file_len < PAGE + HField::Len.get(h) {
        return Err(Refusal::Truncated);
    }
    if !counters_valid(h) {
        return Err(Refusal::Corrupt);
    }
    Ok(slot)
}

/// One log record a correct scan accepts.
#[derive(Debug, Clone)]
struct Rec {
    total: u64,
    chain: u64,
    new_len: u64,
    /// The zeroed range (the first entry, with bit 63 of its length).
    zero: Option<(u64, u64)>,
    ranges: Vec<(u64, u64)>,
    data: Vec<u8>,
}

/// Where a scan of the log stops.
struct Walk {
    records: Vec<Rec>,
    end: u64,
}

/// The records a correct scan accepts (docs/DESIGN.md, "Files"): each one
/// with the next sequence number, chained from the previous one, whole,
/// within the mapped log, with its ranges within the maximum size (not the
/// new length), and a zeroed range only as its first entry (log.rs
/// `Log::scan`).
fn walk_log(wal: &Image, salt: u64, first_seq: u64, max_size: u64) -> Walk {
    let mut w = Walk {
        records: Vec::new(),
        end: PAGE,
    };
    if wal.len < PAGE {
        return w;
    }
    let cap = (wal.len - wal.len % PAGE).min(LOG_RESERVATION);
    let (mut off, mut prev, mut seq) = (PAGE, salt, first_seq);
    while let Some(r) = decode_record(wal, cap, off, prev, seq, max_size) {
        off += r.total;
        prev = r.chain;
        seq += 1;
        w.end = off;
        w.records.push(r);
    }
    w
}

fn decode_record(
    wal: &Image,
    cap: u64,
    off: u64,
    prev: u64,
    seq: u64,
    max_size: u64,
) -> Option<Rec> {
    let room = cap.saturating_sub(off);
    if room < REC {
        return None;
    }
    let h = wal.read(off, REC as usize);
    let total = rd(&h, 24, 8);
    let n = rd(&h, 12, 4);
    let new_len = rd(&h, 32, 8);
    if rd(&h, 8, 4) != u64::from(RECORD_MAGIC)
        || rd(&h, 16, 8) != seq
        || total > room
        || total % 8 != 0
        || REC + n * RANGE > total
        || new_len > max_size
    {
        return None;
    }
    let body = wal.read(off, total as usize);
    let chain = xxh3(prev, &body[8..]);
    if chain != rd(&h, 0, 8) {
        return None;
    }
    let within = |o: u64, l: u64| o.checked_add(l).is_some_and(|e| e <= max_size);
    let mut zero = None;
    let mut ranges = Vec::new();
    let mut data_len: u128 = 0;
    for i in 0..n as usize {
        let at = REC as usize + i * RANGE as usize;
        let (o, l) = (rd(&body, at, 8), rd(&body, at + 8, 8));
        if l & ZERO_RANGE != 0 {
            let l = l & !ZERO_RANGE;
            if i != 0 || !within(o, l) {
                return None;
            }
            zero = Some((o, l));
            continue;
        }
        if !within(o, l) {
            return None;
        }
        data_len += u128::from(l);
        ranges.push((o, l));
    }
    let raw = u128::from(REC + n * RANGE) + data_len;
    if raw.div_ceil(8) * 8 != u128::from(total) {
        return None;
    }
    let at = (REC + n * RANGE) as usize;
    Some(Rec {
        total,
        chain,
        new_len,
        zero,
        ranges,
        data: body[at..at + data_len as usize].to_vec(),
    })
}

/// A state's bytes being rebuilt: the bytes past the length are kept (a
/// record that grows the state without ranges shows them again, as the live
/// image does).
struct Model {
    mem: Vec<u8>,
    len: u64,
}

impl Model {
    fn new(data: &[u8]) -> Self {
        Self {
            mem: data.to_vec(),
            len: data.len() as u64,
        }
    }

    fn write(&mut self, off: u64, bytes: &[u8]) {
        let end = off as usize + bytes.len();
        if self.mem.len() < end {
            self.mem.resize(end, 0);
        }
        self.mem[off as usize..end].copy_from_slice(bytes);
    }

    fn apply(&mut self, r: &Rec) {
        if let Some((off, len)) = r.zero {
            // Past `mem` the bytes read as zeros already.
            let end = off.saturating_add(len).min(self.mem.len() as u64);
            if off < end {
                self.mem[off as usize..end as usize].fill(0);
            }
        }
        let mut at = 0;
        for &(off, len) in &r.ranges {
            self.write(off, &r.data[at..at + len as usize]);
            at += len as usize;
        }
        self.len = r.new_len;
    }

    fn bytes(&self) -> Vec<u8> {
        let mut v = self.mem.clone();
        v.resize(self.len as usize, 0);
        v
    }
}

// ---------------------------------------------------------------------------
// File images: a file's bytes as a prefix, a length (zeros past the prefix,
// written sparsely) and writes far past the prefix.

#[derive(Clone, Debug, Default)]
struct Image {
    data: Vec<u8>,
    len: u64,
    far: Vec<(u64, Vec<u8>)>,
}

impl Image {
    fn full(data: Vec<u8>) -> Self {
        let len = data.len() as u64;
        Self {
            data,
            len,
            far: Vec::new(),
        }
    }

    /// The part of the file worth damaging: the prefix, or its first page.
    fn hot(&self) -> u64 {
        let d = (self.data.len() as u64).min(self.len);
        if d == 0 { self.len.min(PAGE) } else { d }
    }

    fn read(&self, pos: u64, n: usize) -> Vec<u8> {
        let mut out = vec![0u8; n];
        let end = pos.saturating_add(n as u64).min(self.len);
        if pos >= end {
            return out;
        }
        let d_end = end.min(self.data.len() as u64);
        if pos < d_end {
            out[..(d_end - pos) as usize].copy_from_slice(&self.data[pos as usize..d_end as usize]);
        }
        for (o, b) in &self.far {
            let (s, e) = (pos.max(*o), end.min(*o + b.len() as u64));
            if s < e {
                out[(s - pos) as usize..(e - pos) as usize]
                    .copy_from_slice(&b[(s - o) as usize..(e - o) as usize]);
            }
        }
        out
    }

    fn byte(&self, pos: u64) -> u8 {
        self.read(pos, 1)[0]
    }

    /// Writes inside the file (clipped to its length).
    fn write(&mut self, pos: u64, bytes: &[u8]) {
        if pos >= self.len {
            return;
        }
        let n = (bytes.len() as u64).min(self.len - pos) as usize;
        let bytes = &bytes[..n];
        let end = pos + n as u64;
        for (o, b) in &mut self.far {
            let (s, e) = (pos.max(*o), end.min(*o + b.len() as u64));
            if s < e {
                b[(s - *o) as usize..(e - *o) as usize]
                    .copy_from_slice(&bytes[(s - pos) as usize..(e - pos) as usize]);
            }
        }
        if pos <= self.data.len() as u64 + (64 << 10) {
            if self.data.len() < end as usize {
                self.data.resize(end as usize, 0);
            }
            self.data[pos as usize..end as usize].copy_from_slice(bytes);
        } else {
            self.far.push((pos, bytes.to_vec()));
        }
    }

    fn truncate(&mut self, len: u64) {
        self.len = len;
        if self.data.len() as u64 > len {
            self.data.truncate(len as usize);
        }
        self.far.retain_mut(|(o, b)| {
            b.truncate(len.saturating_sub(*o) as usize);
            !b.is_empty()
        });
    }

    fn append(&mut self, bytes: &[u8]) {
        let at = self.len;
        self.len += bytes.len() as u64;
        self.write(at, bytes);
    }

    fn materialize(&self, path: &Path) {
        let mut f = File::create(path).expect("create a case file");
        let n = (self.data.len() as u64).min(self.len) as usize;
        f.write_all(&self.data[..n]).expect("write a case file");
        f.set_len(self.len).expect("size a case file");
        for (o, b) in &self.far {
            f.write_all_at(b, *o).expect("write a case file");
        }
    }
}

// ---------------------------------------------------------------------------
// Golden states: real states built once, copied into every case.

struct Golden {
    name: &'static str,
    durable: Vec<u8>,
    wal: Image,
    ckpt: Option<Vec<u8>>,
    live: Vec<u8>,
    /// The state: the last commit's sequence number, and the bytes.
    seq: u64,
    content: Vec<u8>,
    /// The slot of the current durable header.
    slot: usize,
    /// The journal leads one generation on (a checkpoint cut short at step 12).
    pending: bool,
    /// Bytes of the durable image recovery reads: `PAGE + max(length, the
    /// pending journal's length)`.
    durable_used: u64,
    /// End of the valid log records.
    wal_end: u64,
    /// Record-shaped byte ranges of the log (valid or stale): (offset, length).
    records: Vec<(u64, u64)>,
}

impl Golden {
    fn header(&self) -> &[u8] {
        &self.durable[SLOTS[self.slot]..SLOTS[self.slot] + HEADER]
    }
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// The live image's name in `live_dir` (docs/DESIGN.md, "Files").
fn live_name(durable: &Path) -> String {
    let md = fs::metadata(durable).expect("stat the durable file");
    format!("mapstate-{:x}-{}.live", md.dev(), md.ino())
}

fn opts(live_dir: &Path) -> WriterOptions {
    Writer::options().live_dir(live_dir)
}

fn goldens() -> &'static [Golden] {
    static G: OnceLock<Vec<Golden>> = OnceLock::new();
    G.get_or_init(|| {
        let dir = tempdir();
        vec![
            golden_log_only(dir.path()),
            golden_checkpointed(dir.path()),
            golden_pending_journal(dir.path()),
            golden_empty(dir.path()),
            golden_closed(dir.path()),
        ]
    })
}

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("mapstate-corrupt-")
        .tempdir_in("/var/tmp")
        .expect("a temporary directory under /var/tmp")
}

fn new_state(
    dir: &Path,
    name: &str,
    len: u64,
    max: u64,
    d: Durability,
) -> (PathBuf, PathBuf, Writer) {
    let live = dir.join(format!("{name}-live"));
    fs::create_dir(&live).unwrap();
    let path = dir.join(name);
    let o = opts(&live)
        .create(true)
        .len(len)
        .max_size(max)
        .durability(d);
    let w = o.open(&path).unwrap();
    (path, live, w)
}

fn commit(w: &mut Writer, f: impl FnOnce(&mut mapstate::Txn<'_>)) {
    let mut t = w.begin();
    f(&mut t);
    t.commit().unwrap();
}

/// Copies the files of the state at `path` (its writer may be open).
fn capture(name: &'static str, path: &Path, live_dir: &Path) -> Golden {
    let durable = fs::read(path).unwrap();
    let wal = fs::read(companion(path, "-wal")).unwrap();
    let ckpt = fs::read(companion(path, "-ckpt")).ok();
    let live = fs::read(live_dir.join(live_name(path)))
        .expect("the live image is where the tests expect it");
    let (seq, content) = opts(live_dir)
        .reader()
        .open(path)
        .unwrap()
        .snapshot()
        .unwrap();
    let used = wal.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let used = (used.next_multiple_of(8) as u64).max(PAGE) as usize;
    let wal = Image {
        len: wal.len() as u64,
        data: wal[..used].to_vec(),
        far: Vec::new(),
    };
    let slot = model_header(&durable, durable.len() as u64).expect("a golden header is valid");
    let h = &durable[SLOTS[slot]..SLOTS[slot] + HEADER];
    let walk = walk_log(
        &wal,
        HField::LogSalt.get(h),
        HField::CheckpointSeq.get(h) + 1,
        HField::MaxSize.get(h),
    );
    let mut records = Vec::new();
    let mut off = PAGE;
    while off + REC <= wal.data.len() as u64 {
        let r = wal.read(off, REC as usize);
        let total = rd(&r, 24, 8);
        if rd(&r, 8, 4) != u64::from(RECORD_MAGIC)
            || total < REC
            || total % 8 != 0
            || off + total > wal.data.len() as u64
        {
            break;
        }
        records.push((off, total));
        off += total;
    }
    Golden {
        name,
        durable_used: PAGE + HField::Len.get(h),
        durable,
        wal,
        ckpt,
        live,
        seq,
        content,
        slot,
        pending: false,
        wal_end: walk.end,
        records,
    }
}

/// Nine commits, no checkpoint: the durable image is all zeros, the state
/// is in the log. Commit 3 only grows the state (a record without
/// ranges); commit 8 shrinks it (a record with only a zeroed range); commit
/// 9 shrinks and grows it again in one transaction (a zeroed range, then a
/// written one).
fn golden_log_only(dir: &Path) -> Golden {
    let (path, live, mut w) = new_state(dir, "log-only", 10_000, 256 << 10, Durability::PageCache);
    commit(&mut w, |t| t.write_at(0, b"golden: log only").unwrap());
    commit(&mut w, |t| t.write_at(4090, &[0x5a; 20]).unwrap());
    commit(&mut w, |t| t.set_len(20_000).unwrap());
    commit(&mut w, |t| {
        t.write_at(15_000, &(0..=255).collect::<Vec<u8>>()).unwrap();
    });
    commit(&mut w, |t| {
        let s = t.as_mut_slice();
        s[9000] = 7;
        s[12_345] = 9;
    });
    commit(&mut w, |t| t.write_at(8190, &[0x77; 5000]).unwrap());
    commit(&mut w, |t| {
        for i in 0..10u8 {
            t.write_at(u64::from(i) * 1000 + 3, &[i + 1]).unwrap();
        }
    });
    commit(&mut w, |t| t.set_len(11_000).unwrap());
    commit(&mut w, |t| {
        t.set_len(5000).unwrap();
        t.set_len(20_000).unwrap();
        t.write_at(19_000, b"grown again").unwrap();
    });
    let g = capture("log-only", &path, &live);
    drop(w);
    g
}

/// Ten commits, a checkpoint, three smaller commits: both header slots
/// valid, stale records after the log's head.
fn golden_checkpointed(dir: &Path) -> Golden {
    let (path, live, mut w) = new_state(dir, "checkpointed", 3 * PAGE, 64 << 10, Durability::Sync);
    for i in 0..10u64 {
        commit(&mut w, |t| {
            t.write_at(i * 1000, &[i as u8 + 1; 300]).unwrap();
        });
    }
    w.checkpoint().unwrap();
    for i in 0..3u64 {
        commit(&mut w, |t| {
            t.write_at(i * 5000 + 7, &i.to_le_bytes()).unwrap();
        });
    }
    let g = capture("checkpointed", &path, &live);
    drop(w);
    g
}

/// A checkpoint whose journal is written but not applied: the durable image
/// and the log as before the checkpoint, the journal as it was once synced
/// (the checkpoint then completes and empties it).
fn golden_pending_journal(dir: &Path) -> Golden {
    let (path, live, mut w) = new_state(dir, "pending", 4 * PAGE, 128 << 10, Durability::PageCache);
    for i in 0..6u64 {
        commit(&mut w, |t| {
            if i == 3 {
                t.set_len(6 * PAGE).unwrap();
            }
            t.write_at(i * 3001, &[0xc0 | i as u8; 100]).unwrap();
        });
    }
    let mut g = capture("pending", &path, &live);
    let ckpt = journal_once_synced(&companion(&path, "-ckpt"), || w.checkpoint().unwrap());
    assert_eq!(
        fs::metadata(companion(&path, "-ckpt")).unwrap().len(),
        0,
        "a completed checkpoint empties its journal"
    );
    let target = &ckpt[J_TARGET..J_TARGET + HEADER];
    g.durable_used = g.durable_used.max(PAGE + HField::Len.get(target));
    g.ckpt = Some(ckpt);
    g.pending = true;
    drop(w);
    g
}

/// Runs `checkpoint` and returns the journal at `journal` as it was right
/// after its `fdatasync` (step 12, `JournalSynced`: what a crash there
/// leaves), seen through the sync observer of the `testing` hooks.
fn journal_once_synced(journal: &Path, checkpoint: impl FnOnce()) -> Vec<u8> {
    let name = fs::canonicalize(journal.parent().unwrap())
        .unwrap()
        .join(journal.file_name().unwrap());
    let seen: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let out = Arc::clone(&seen);
    mapstate::testing::observe_syncs(Some(Box::new(move |fd, before| {
        if before || fs::read_link(format!("/proc/self/fd/{fd}")).ok() != Some(name.clone()) {
            return;
        }
        let mut j = out.lock().unwrap();
        if j.is_none() {
            *j = fs::read(&name).ok();
        }
    })));
    checkpoint();
    mapstate::testing::observe_syncs(None);
    let j = seen.lock().unwrap().take();
    j.expect("the checkpoint synced its journal")
}

fn golden_empty(dir: &Path) -> Golden {
    let (path, live, w) = new_state(dir, "empty", 0, PAGE, Durability::PageCache);
    let g = capture("empty", &path, &live);
    drop(w);
    g
}

/// Commits (the state shrinks and grows again), then `close`: the log holds
/// only stale records; the durable image holds bytes past its length.
fn golden_closed(dir: &Path) -> Golden {
    let (path, live, mut w) = new_state(
        dir,
        "closed",
        2 * PAGE,
        1 << 20,
        Durability::Periodic(Duration::from_millis(100)),
    );
    commit(&mut w, |t| t.write_at(100, b"before the shrink").unwrap());
    commit(&mut w, |t| {
        t.set_len(5 * PAGE).unwrap();
        t.write_at(4 * PAGE + 10, &[0xee; 500]).unwrap();
    });
    w.checkpoint().unwrap();
    commit(&mut w, |t| t.set_len(PAGE + 1).unwrap());
    commit(&mut w, |t| t.write_at(PAGE, &[0x11]).unwrap());
    w.close().unwrap();
    capture("closed", &path, &live)
}

// ---------------------------------------------------------------------------
// Running opens: panics caught and classified, outcomes counted.

struct PanicInfo {
    file: String,
    line: u32,
    msg: String,
}

thread_local! {
    static CATCHING: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<PanicInfo>> = const { RefCell::new(None) };
    /// The known bug the running case exercises (`Expect::known`).
    static CASE_KNOWN: Cell<Option<&'static str>> = const { Cell::new(None) };
    /// The running case, printed if a panic during unwinding aborts the process.
    static CASE: RefCell<String> = const { RefCell::new(String::new()) };
    /// A panic is being unwound (set by the hook, cleared once caught).
    static UNWINDING: Cell<bool> = const { Cell::new(false) };
    /// The running case's state has a maximum size past 1 TiB: the writer's
    /// dirty-page bitmap (`max_size / 32768` bytes) makes it slow.
    static HUGE_MAX: Cell<bool> = const { Cell::new(false) };
}

/// Notes that the case's state may grow past 1 TiB (see `HUGE_MAX`).
fn huge_max(strategy: &'static str, max_size: u64) {
    if max_size > 1 << 40 {
        HUGE_MAX.set(true);
        note(
            strategy,
            "5 s limit raised to 30 s",
            "maximum size past 1 TiB",
        );
    }
}

fn install_panic_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if UNWINDING.replace(true) {
                // A second panic before the first was caught: a destructor
                // panicked while unwinding, and the process aborts. Say where.
                eprintln!(
                    "PANIC WHILE UNWINDING (the process aborts) in case {}",
                    CASE.with_borrow(Clone::clone)
                );
                default(info);
                return;
            }
            if !CATCHING.get() {
                default(info);
                return;
            }
            let msg = info
                .payload()
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| info.payload().downcast_ref::<String>().cloned())
                .unwrap_or_default();
            let (file, line) = info
                .location()
                .map_or((String::new(), 0), |l| (l.file().to_string(), l.line()));
            LAST_PANIC.set(Some(PanicInfo { file, line, msg }));
        }));
    });
}

/// Library panics reported as bugs (see the `#[ignore]`d tests below): the
/// fuzzing counts them instead of failing, unless `MAPSTATE_FUZZ_STRICT=1`.
#[allow(dead_code)] // none at present (the last ones are fixed): kept for the next
struct KnownBug {
    id: &'static str,
    file: &'static str,
    message: &'static [&'static str],
}

/// Fixed and removed (their reproductions below are regression tests now):
/// "log-record-bounds" (log.rs `record_at` indexing past a record shorter
/// than its ranges, `format::record_len` wrapping), and the two that failed
/// oracles (`Expect::known`), "stale-durable-bytes" (a journal growing the
/// state without the pages of the growth was finished) and "counter-limit"
/// (a writer committed past 2^62, then no checkpoint could be made).
const KNOWN_BUGS: &[KnownBug] = &[];

/// The known bug a panic comes from: by its signature, or, in a case that
/// exercises a known bug with out-of-range numbers, any arithmetic overflow
/// in the library (debug builds check them).
fn known_bug(p: &PanicInfo) -> Option<&'static str> {
    KNOWN_BUGS
        .iter()
        .find(|b| p.file.ends_with(b.file) && b.message.iter().any(|m| p.msg.contains(m)))
        .map(|b| b.id)
        .or_else(|| {
            CASE_KNOWN
                .get()
                .filter(|_| p.file.contains("mapstate/src/") && p.msg.contains("with overflow"))
        })
}

fn strict() -> bool {
    std::env::var("MAPSTATE_FUZZ_STRICT").is_ok_and(|v| v == "1")
}

/// Why a case failed.
#[derive(Debug)]
enum Failure {
    /// The library panicked (not a known bug).
    Panic(String),
    /// A property of the result does not hold.
    Oracle(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Panic(m) => write!(f, "PANIC {m}"),
            Failure::Oracle(m) => write!(f, "{m}"),
        }
    }
}

fn oracle<T>(msg: impl Into<String>) -> Result<T, Failure> {
    Err(Failure::Oracle(msg.into()))
}

/// The outcome of one library call.
enum Got<T> {
    Ok(T),
    Err(String),
    Known,
}

/// Outcome counts: (strategy, step, outcome) -> count.
type Counts = BTreeMap<(&'static str, String, String), u64>;

fn stats() -> &'static Mutex<Counts> {
    static S: OnceLock<Mutex<Counts>> = OnceLock::new();
    S.get_or_init(Mutex::default)
}

fn note(strategy: &'static str, step: &str, outcome: &str) {
    *stats()
        .lock()
        .unwrap()
        .entry((strategy, step.to_string(), outcome.to_string()))
        .or_default() += 1;
}

/// The error's variant, with its detail for `Corrupt`, `Foreign` and `Io`
/// (numbers replaced by `#`).
fn label(e: &Error) -> String {
    let generic = |s: &str| {
        let mut out = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                if !out.ends_with('#') {
                    out.push('#');
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    match e {
        Error::Corrupt { what, .. } => format!("Corrupt: {}", generic(what)),
        Error::Foreign { what, .. } => format!("Foreign: {}", generic(what)),
        Error::Io { op, source, .. } => format!("Io: {op}: {source}"),
        other => {
            let d = format!("{other:?}");
            d.split([' ', '{', '('])
                .next()
                .unwrap_or_default()
                .to_string()
        }
    }
}

fn call<T>(
    strategy: &'static str,
    step: &str,
    f: impl FnOnce() -> mapstate::Result<T>,
) -> Result<Got<T>, Failure> {
    CATCHING.set(true);
    let r = panic::catch_unwind(AssertUnwindSafe(f));
    CATCHING.set(false);
    UNWINDING.set(false);
    match r {
        Ok(Ok(v)) => {
            note(strategy, step, "Ok");
            Ok(Got::Ok(v))
        }
        Ok(Err(e)) => {
            let l = label(&e);
            note(strategy, step, &l);
            Ok(Got::Err(l))
        }
        Err(_) => {
            let p = LAST_PANIC.take().unwrap_or(PanicInfo {
                file: String::new(),
                line: 0,
                msg: "(no message)".into(),
            });
            match known_bug(&p) {
                Some(id) if !strict() => {
                    note(strategy, step, &format!("PANIC, known bug {id}"));
                    Ok(Got::Known)
                }
                _ => Err(Failure::Panic(format!(
                    "in {step} at {}:{}: {}",
                    p.file, p.line, p.msg
                ))),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// One case: the opens, and what must hold.

/// A directory with a state's files and its live directory.
struct CaseDir {
    dir: tempfile::TempDir,
    path: PathBuf,
    live: PathBuf,
}

impl CaseDir {
    fn new() -> Self {
        let dir = tempdir();
        let live = dir.path().join("live");
        fs::create_dir(&live).unwrap();
        let path = dir.path().join("state");
        Self { dir, path, live }
    }

    fn remove_live_images(&self) {
        for e in fs::read_dir(&self.live).unwrap() {
            let _ = fs::remove_file(e.unwrap().path());
        }
    }
}

/// The files of a case (`None`: absent).
#[derive(Default)]
struct Files {
    durable: Option<Image>,
    wal: Option<Image>,
    ckpt: Option<Image>,
    live: Option<Image>,
}

impl Files {
    fn of(g: &Golden, live: bool) -> Self {
        Self {
            durable: Some(Image::full(g.durable.clone())),
            wal: Some(g.wal.clone()),
            ckpt: g.ckpt.clone().map(Image::full),
            live: live.then(|| Image::full(g.live.clone())),
        }
    }

    fn install(&self, c: &CaseDir) {
        let put = |img: &Option<Image>, p: &Path| {
            if let Some(i) = img {
                i.materialize(p);
            }
        };
        put(&self.durable, &c.path);
        put(&self.wal, &companion(&c.path, "-wal"));
        put(&self.ckpt, &companion(&c.path, "-ckpt"));
        if self.durable.is_some() {
            put(&self.live, &c.live.join(live_name(&c.path)));
        }
    }
}

/// What a case's opens must give.
#[derive(Default)]
#[allow(clippy::struct_excessive_bools)] // independent properties of a case
struct Expect {
    /// If an open succeeds, the state it shows: (sequence number, bytes).
    state: Option<(u64, Vec<u8>)>,
    /// Every open must succeed.
    must_open: bool,
    /// The first open must refuse the file this way.
    refusal: Option<Refusal>,
    /// After a commit and a clean close, deleting the live image and
    /// rebuilding it from the files must give the same state (false where
    /// the live image was installed while the files were damaged: the live
    /// image is trusted and the durable data carries no checksum).
    rebuild_exact: bool,
    /// A known bug makes the oracles unreliable here: only "no unknown
    /// panic" holds. (None at present.)
    known: Option<&'static str>,
    /// The state recovers to a sequence number or generation of at least
    /// `WRITER_LIMIT` (`at_writer_limit`): a writer's open must fail, and
    /// where `must_open` (the files are otherwise sound), with exactly that
    /// refusal (`is_limit`), leaving the state to readers as it was.
    at_limit: bool,
    reader_first: bool,
}

fn check_state(who: &str, ex: &Expect, seq: u64, bytes: &[u8]) -> Result<(), Failure> {
    if let Some((s, c)) = &ex.state {
        if *s != seq || c.as_slice() != bytes {
            return oracle(format!(
                "{who} shows commit {seq} ({} bytes, first difference at {:?}), expected commit {s} ({} bytes)",
                bytes.len(),
                first_difference(c, bytes),
                c.len()
            ));
        }
    }
    Ok(())
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn snapshot(strategy: &'static str, step: &str, r: &mut Reader) -> Result<(u64, Vec<u8>), Failure> {
    match call(strategy, step, || r.snapshot())? {
        Got::Ok(s) => Ok(s),
        Got::Err(l) => oracle(format!("{step} failed: {l}")),
        Got::Known => oracle(format!("{step}: known bug")),
    }
}

/// Opens the case's state as the plan says and checks what must hold.
fn exercise(strategy: &'static str, c: &CaseDir, ex: &Expect) -> Result<(), Failure> {
    CASE_KNOWN.set(ex.known);
    let r = exercise_inner(strategy, c, ex);
    CASE_KNOWN.set(None);
    match (r, ex.known) {
        (Err(Failure::Oracle(m)), Some(id)) if !strict() => {
            note(strategy, "oracle", &format!("violated, known bug {id}"));
            let _ = m;
            Ok(())
        }
        (r, _) => r,
    }
}

fn exercise_inner(strategy: &'static str, c: &CaseDir, ex: &Expect) -> Result<(), Failure> {
    let o = opts(&c.live);
    if ex.reader_first {
        first_reader(strategy, c, ex)?;
    }
    let step = if ex.reader_first {
        "writer (after reader)"
    } else {
        "writer"
    };
    match call(strategy, step, || o.open(&c.path))? {
        Got::Ok(w) => writer_session(strategy, c, ex, w),
        Got::Err(l) => {
            if is_limit(&l) && !ex.at_limit {
                return oracle(format!(
                    "Writer::open refused a state the model does not put at the counters' limit: {l}"
                ));
            }
            if ex.at_limit && ex.must_open {
                if !is_limit(&l) {
                    return oracle(format!(
                        "Writer::open gave {l}, expected the refusal at the counters' limit"
                    ));
                }
                return refused_at_limit(strategy, c, ex);
            }
            if ex.must_open {
                return oracle(format!("Writer::open refused a recoverable state: {l}"));
            }
            if let (Some(r), false) = (ex.refusal, ex.reader_first) {
                if !r.matches(&l) {
                    return oracle(format!("Writer::open gave {l}, expected {r:?}"));
                }
            }
            // Opening again after a refusal works or errors cleanly.
            call(strategy, "reader (after refused writer)", || {
                o.reader().open(&c.path).map(drop)
            })?;
            call(strategy, "writer (again)", || o.open(&c.path).map(drop))?;
            Ok(())
        }
        Got::Known => Ok(()),
    }
}

/// After a writer's open refused a state at the counters' limit (which its
/// recovery may have gone through first: a journal finished, a live image
/// built): a reader still shows the state, and the next writer's open is
/// refused the same way.
fn refused_at_limit(strategy: &'static str, c: &CaseDir, ex: &Expect) -> Result<(), Failure> {
    let o = opts(&c.live);
    let Got::Ok(mut r) = call(strategy, "reader (after refused writer)", || {
        o.reader().open(&c.path)
    })?
    else {
        return oracle(
            "Reader::open refused a state after a writer's refusal at the counters' limit",
        );
    };
    let (seq, bytes) = snapshot(strategy, "snapshot (after refused writer)", &mut r)?;
    check_state("the reader after the refused writer", ex, seq, &bytes)?;
    drop(r);
    match call(strategy, "writer (again)", || o.open(&c.path).map(drop))? {
        Got::Err(l) if is_limit(&l) => Ok(()),
        Got::Err(l) => oracle(format!(
            "the second Writer::open at the counters' limit gave {l}"
        )),
        _ => oracle("the second Writer::open at the counters' limit succeeded"),
    }
}

fn first_reader(strategy: &'static str, c: &CaseDir, ex: &Expect) -> Result<(), Failure> {
    match call(strategy, "reader", || opts(&c.live).reader().open(&c.path))? {
        Got::Ok(r) => {
            if let Some(rf) = ex.refusal {
                return oracle(format!("Reader::open succeeded, expected {rf:?}"));
            }
            match call(strategy, "reader snapshot", || r.snapshot())? {
                Got::Ok((seq, bytes)) => check_state("the first reader", ex, seq, &bytes),
                Got::Err(l) if ex.must_open => oracle(format!("reader snapshot failed: {l}")),
                _ => Ok(()),
            }
        }
        Got::Err(l) => {
            if ex.must_open {
                return oracle(format!("Reader::open refused a recoverable state: {l}"));
            }
            match ex.refusal {
                Some(r) if !r.matches(&l) => {
                    oracle(format!("Reader::open gave {l}, expected {r:?}"))
                }
                _ => Ok(()),
            }
        }
        Got::Known => Ok(()),
    }
}

/// After a successful `Writer::open`: a reader agrees with the writer; a
/// commit works; after `close` the state reopens unchanged, and the live
/// image rebuilt from the files matches too.
fn writer_session(
    strategy: &'static str,
    c: &CaseDir,
    ex: &Expect,
    mut w: Writer,
) -> Result<(), Failure> {
    let o = opts(&c.live);
    if let Some(r) = ex.refusal {
        return oracle(format!("Writer::open succeeded, expected {r:?}"));
    }
    if ex.at_limit {
        return oracle(format!(
            "Writer::open succeeded at the counters' limit: commit {}",
            w.seq()
        ));
    }
    check_epochs(c)?;
    if w.len() > w.max_size() {
        return oracle(format!(
            "length {} exceeds the maximum size {}",
            w.len(),
            w.max_size()
        ));
    }
    let mut r = match call(strategy, "reader beside the writer", || {
        o.reader().open(&c.path)
    })? {
        Got::Ok(r) => r,
        Got::Err(l) if no_address_space(&l) => return Ok(()),
        _ => return oracle("Writer::open succeeded but Reader::open failed"),
    };
    let (seq, mut want) = snapshot(strategy, "snapshot", &mut r)?;
    if seq != w.seq() || want.len() as u64 != w.len() {
        return oracle(format!(
            "the reader sees commit {seq} of {} bytes, the writer commit {} of {} bytes",
            want.len(),
            w.seq(),
            w.len()
        ));
    }
    check_state("the writer", ex, seq, &want)?;
    let grow = want.is_empty();
    let Got::Ok(next) = call(strategy, "commit", || {
        let mut t = w.begin();
        if grow {
            t.set_len(1)?;
            t.write_at(0, &[0xa5])?;
        } else {
            t.write_at(0, &[want[0] ^ 0xa5])?;
        }
        t.commit()
    })?
    else {
        return oracle("a commit failed after a successful open");
    };
    if grow {
        want.push(0xa5);
    } else {
        want[0] ^= 0xa5;
    }
    let after = snapshot(strategy, "snapshot after the commit", &mut r)?;
    if after != (next, want.clone()) {
        return oracle(format!(
            "the reader does not see commit {next}: it sees commit {} ({} bytes, first difference at {:?})",
            after.0,
            after.1.len(),
            first_difference(&want, &after.1)
        ));
    }
    drop(r);
    if !matches!(call(strategy, "close", || w.close())?, Got::Ok(())) {
        return oracle("close failed after a successful open and commit");
    }
    // `close` checkpointed (the log was not empty): the journal is emptied
    // (or was never made: a checkpoint of pages past the durable image's
    // end alone writes none).
    let journal = fs::metadata(companion(&c.path, "-ckpt")).map(|m| m.len());
    if !matches!(journal, Ok(0))
        && !matches!(&journal, Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    {
        return oracle(format!(
            "after a checkpoint the journal is not empty: {journal:?}"
        ));
    }
    reopen_unchanged(strategy, c, ex, next, &want)
}

/// Whether an open failed for the address space alone: past 1 TiB, the
/// reservation of the maximum size may not find room beside the writer's
/// (which reserves it twice) and those of the cases other test threads
/// run.
fn no_address_space(label: &str) -> bool {
    HUGE_MAX.get() && label.starts_with("Io: mmap (reserve)")
}

/// The first page of the file at `path` (zeros past its end), and its length.
fn first_page(path: &Path) -> (Vec<u8>, u64) {
    let mut page = vec![0u8; PAGE as usize];
    let Ok(f) = File::open(path) else {
        return (page, 0);
    };
    let len = f.metadata().unwrap().len();
    let n = f.read_at(&mut page, 0).unwrap();
    page[n..].fill(0);
    (page, len)
}

/// After a writer's open: the durable header has an epoch (a version 1
/// header was given one), the live image's published log position is of
/// that epoch, and the image is no longer marked as rebuilt (a rebuilt one
/// made the writer start a new epoch first).
fn check_epochs(c: &CaseDir) -> Result<(), Failure> {
    let (d, d_len) = first_page(&c.path);
    let Ok(slot) = model_header(&d, d_len) else {
        return oracle("after Writer::open the durable header is refused");
    };
    let h = &d[SLOTS[slot]..SLOTS[slot] + HEADER];
    let (mut live, live_len) = first_page(&c.live.join(live_name(&c.path)));
    live.truncate(live_len.min(PAGE) as usize);
    if epoch(h) == [0; 16] {
        return oracle("after Writer::open the durable header has no epoch");
    }
    if live.len() < PAGE as usize {
        return oracle(format!(
            "after Writer::open the live image has {} bytes",
            live.len()
        ));
    }
    if live[L_LOG_EPOCH..L_LOG_EPOCH + 16] != *epoch(h) || rd(&live, L_REBUILT, 8) != 0 {
        return oracle(format!(
            "after Writer::open the live image's log position has epoch {:02x?}, the durable header {:02x?}; REBUILT is {}",
            &live[L_LOG_EPOCH..L_LOG_EPOCH + 16],
            epoch(h),
            rd(&live, L_REBUILT, 8)
        ));
    }
    Ok(())
}

fn reopen_unchanged(
    strategy: &'static str,
    c: &CaseDir,
    ex: &Expect,
    seq: u64,
    want: &[u8],
) -> Result<(), Failure> {
    let o = opts(&c.live);
    // The commit, or the checkpoints of the open and the close, may have
    // taken the counters to the writer's limit: the reopen is refused then.
    let (d, d_len) = first_page(&c.path);
    let generation = model_header(&d, d_len).map_or(0, |slot| {
        HField::Generation.get(&d[SLOTS[slot]..SLOTS[slot] + HEADER])
    });
    let limit = seq >= WRITER_LIMIT || generation >= WRITER_LIMIT;
    let w = match call(strategy, "reopen", || o.open(&c.path))? {
        Got::Ok(w) if !limit => Some(w),
        Got::Ok(_) => {
            return oracle(format!(
                "the writer reopened a state at the counters' limit: commit {seq}, generation {generation}"
            ));
        }
        Got::Err(l) if limit && is_limit(&l) => None,
        Got::Err(l) if no_address_space(&l) => return Ok(()),
        Got::Err(l) if limit => {
            return oracle(format!(
                "the reopen of a state at the counters' limit gave {l}"
            ));
        }
        _ => return oracle("the state does not reopen after a clean close"),
    };
    let mut r = match call(strategy, "reader after reopen", || o.reader().open(&c.path))? {
        Got::Ok(r) => r,
        Got::Err(l) if no_address_space(&l) => return Ok(()),
        Got::Err(l) => return oracle(format!("no reader after reopening: {l}")),
        Got::Known => return oracle("no reader after reopening"),
    };
    let got = snapshot(strategy, "snapshot after reopen", &mut r)?;
    if got.0 != seq || got.1 != want || w.as_ref().is_some_and(|w| w.seq() != seq) {
        return oracle(format!(
            "the state changed across close and reopen: commit {} -> {}",
            seq, got.0
        ));
    }
    drop((r, w));
    c.remove_live_images();
    let mut r = match call(strategy, "rebuild", || o.reader().open(&c.path))? {
        Got::Ok(r) => r,
        Got::Err(l) if no_address_space(&l) => return Ok(()),
        _ => return oracle("the live image cannot be rebuilt after a clean close"),
    };
    let got = snapshot(strategy, "snapshot after rebuild", &mut r)?;
    if got.0 == seq && got.1 == want {
        note(strategy, "rebuild from the files", "same state");
        return Ok(());
    }
    if ex.rebuild_exact {
        return oracle(format!(
            "the state rebuilt from the files differs from the live image: commit {} vs {seq}, first difference at {:?}",
            got.0,
            first_difference(want, &got.1)
        ));
    }
    note(
        strategy,
        "rebuild from the files",
        "differs (live image trusted over damaged files)",
    );
    Ok(())
}

/// Runs one case under the 5 s limit and the watchdog.
fn timed(
    strategy: &'static str,
    desc: &dyn fmt::Debug,
    f: impl FnOnce() -> Result<(), Failure>,
) -> Result<(), TestCaseError> {
    let text = format!("{desc:?}");
    CASE.set(text.clone());
    watchdog(strategy, Some(text));
    let start = Instant::now();
    UNWINDING.set(false);
    HUGE_MAX.set(false);
    let r = f();
    let took = start.elapsed();
    watchdog(strategy, None);
    let r = r.map_err(|e| TestCaseError::fail(e.to_string()));
    let limit = Duration::from_secs(if HUGE_MAX.get() { 30 } else { 5 });
    if r.is_ok() && took > limit {
        return Err(TestCaseError::fail(format!(
            "the case took {took:?} (a hang?)"
        )));
    }
    r
}

/// Exits the process (with the case) if one case runs for over 60 s.
fn watchdog(strategy: &'static str, case: Option<String>) {
    static CASES: OnceLock<Mutex<BTreeMap<&'static str, (Instant, String)>>> = OnceLock::new();
    let cases = CASES.get_or_init(|| {
        std::thread::spawn(|| {
            loop {
                std::thread::sleep(Duration::from_secs(1));
                let m = CASES.get().unwrap().lock().unwrap();
                for (s, (t, c)) in m.iter() {
                    if t.elapsed() > Duration::from_secs(60) {
                        eprintln!("HANG: a {s} case has run for {:?}: {c}", t.elapsed());
                        std::process::exit(3);
                    }
                }
            }
        });
        Mutex::default()
    });
    let mut m = cases.lock().unwrap();
    match case {
        Some(c) => m.insert(strategy, (Instant::now(), c)),
        None => m.remove(strategy),
    };
}

/// Cases of a strategy: `weight` percent of `MAPSTATE_FUZZ_CASES`.
fn config(weight: u32) -> Config {
    let total: u32 = std::env::var("MAPSTATE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8000);
    Config {
        cases: (total * weight / 100).max(1),
        failure_persistence: None,
        max_shrink_iters: 512,
        ..Config::default()
    }
}

/// Prints a strategy's outcome counts when its test ends (also on failure).
struct Report(&'static str, Instant);

impl Drop for Report {
    fn drop(&mut self) {
        let m = stats()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = format!(
            "\n=== {}: outcome counts ({:.1?}) ===\n",
            self.0,
            self.1.elapsed()
        );
        let mut last = String::new();
        for ((s, step, outcome), n) in m.iter() {
            if *s != self.0 {
                continue;
            }
            if *step != last {
                let _ = writeln!(out, "  {step}:");
                last.clone_from(step);
            }
            let _ = writeln!(out, "    {n:>7}  {outcome}");
        }
        println!("{out}");
    }
}

fn start(strategy: &'static str) -> Report {
    install_panic_hook();
    let _ = goldens();
    Report(strategy, Instant::now())
}

// ---------------------------------------------------------------------------
// Strategy 1: damaged copies of real states.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum F {
    Durable,
    Wal,
    Ckpt,
    Live,
}

/// A position in a file: in its first page and a bit, in its "hot" prefix
/// (where the records or data are), or anywhere.
#[derive(Debug, Clone, Copy)]
enum Pos {
    Head(u16),
    Hot(u32),
    Any(u64),
}

impl Pos {
    fn resolve(self, img: &Image) -> Option<u64> {
        if img.len == 0 {
            return None;
        }
        Some(match self {
            Pos::Head(r) => u64::from(r) % img.len.min(PAGE + 1024),
            Pos::Hot(r) => u64::from(r) % img.hot(),
            Pos::Any(r) => r % img.len,
        })
    }
}

#[derive(Debug, Clone, Copy)]
enum RecField {
    Chain,
    Magic,
    NRanges,
    Seq,
    Total,
    NewLen,
    RangeOff(u8),
    RangeLen(u8),
}

#[derive(Debug, Clone, Copy)]
enum LiveField {
    Magic,
    Version,
    FileId,
    BootId,
    Ready,
    /// Whether the image was built from the files (a writer then starts a
    /// new epoch before its first commit).
    Rebuilt,
    Seqlock,
    Len,
    WriterPid,
    Notify,
    Waiters,
    /// `LOG_GEN`, `LOG_SEQ`, `LOG_HEAD`, `LOG_CHAIN`.
    LogPosition(u8),
    /// Half `i % 2` of the epoch of the published log position.
    LogEpoch(u8),
}

impl LiveField {
    fn at(self) -> (u64, usize) {
        match self {
            LiveField::Magic => (0, 8),
            LiveField::Version => (8, 4),
            LiveField::FileId => (16, 8),
            LiveField::BootId => (32, 8),
            LiveField::Ready => (L_READY as u64, 8),
            LiveField::Rebuilt => (L_REBUILT as u64, 8),
            LiveField::Seqlock => (L_SEQLOCK as u64, 8),
            LiveField::Len => (L_LEN as u64, 8),
            LiveField::WriterPid => (80, 4),
            LiveField::Notify => (128, 4),
            LiveField::Waiters => (132, 4),
            LiveField::LogPosition(i) => (L_LOG_GEN as u64 + 8 * u64::from(i % 4), 8),
            LiveField::LogEpoch(i) => (L_LOG_EPOCH as u64 + 8 * u64::from(i % 2), 8),
        }
    }

    /// Whether overwriting the field leaves a live image that is still
    /// trusted holding the same state: `REBUILT` (the writer then only
    /// checkpoints first) and the log position's epoch (if still trusted,
    /// recovery then scans the log from the checkpoint instead of walking
    /// to the published position).
    fn keeps_state(self) -> bool {
        matches!(self, LiveField::Rebuilt | LiveField::LogEpoch(_))
    }
}

/// The epoch a mutation writes into the live image's log position.
#[derive(Debug, Clone, Copy)]
enum EpochChoice {
    /// The current durable header's epoch.
    Current,
    /// The epoch of the header it replaced.
    Previous,
    /// The target's epoch, of a journal the golden has (else the current one).
    Next,
    Zero,
    Random(u64),
}

#[derive(Debug, Clone)]
enum Mutation {
    FlipBit(F, Pos, u8),
    SetByte(F, Pos, u8),
    Overwrite(F, Pos, Vec<u8>),
    Zero(F, Pos, u16),
    Truncate(F, Pos),
    Extend(F, Vec<u8>),
    /// Grow the file by this many KiB without writing (a hole).
    ExtendSparse(F, u32),
    Delete(F),
    SwapSlots,
    /// Copy header slot `n` over the other one.
    CopySlot(usize),
    /// Write record `a` (of the golden's record-shaped ranges) at record `b`'s
    /// place (or after the last one).
    DupRecord(u8, u8),
    RecordField(u8, RecField, u64),
    LiveField(LiveField, u64),
    /// Set the whole epoch of the live image's published log position.
    LiveEpoch(EpochChoice),
    /// Replace the file with another golden state's.
    FromOther(F, u8),
}

fn interesting_u64() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => Just(0u64),
        1 => Just(1u64),
        1 => Just(7u64),
        1 => Just(8u64),
        1 => Just(40u64),
        1 => Just(4095u64),
        2 => Just(4096u64),
        1 => Just(4097u64),
        1 => Just(1u64 << 32),
        1 => Just(MAX_RESERVATION),
        1 => Just(MAX_RESERVATION + PAGE),
        1 => Just(WRITER_LIMIT - 1),
        1 => Just(WRITER_LIMIT),
        // As a sequence lock (doubled): the sequence number just below the
        // writer's limit; `MAX_COUNTER` then is the limit itself.
        1 => Just(MAX_COUNTER - 2),
        1 => Just(MAX_COUNTER),
        1 => Just(2 * MAX_COUNTER),
        1 => Just(i64::MAX as u64),
        2 => Just(u64::MAX),
        1 => Just(u64::MAX - 7),
        1 => Just(u64::MAX - 4095),
        3 => 0u64..65_536,
        3 => any::<u64>(),
    ]
}

fn pos() -> impl Strategy<Value = Pos> {
    prop_oneof![
        4 => any::<u16>().prop_map(Pos::Head),
        4 => any::<u32>().prop_map(Pos::Hot),
        1 => any::<u64>().prop_map(Pos::Any),
    ]
}

fn which() -> impl Strategy<Value = F> {
    prop_oneof![3 => Just(F::Durable), 3 => Just(F::Wal), 1 => Just(F::Ckpt), 2 => Just(F::Live)]
}

fn rec_field() -> impl Strategy<Value = RecField> {
    prop_oneof![
        Just(RecField::Chain),
        Just(RecField::Magic),
        Just(RecField::NRanges),
        Just(RecField::Seq),
        Just(RecField::Total),
        Just(RecField::NewLen),
        any::<u8>().prop_map(RecField::RangeOff),
        any::<u8>().prop_map(RecField::RangeLen),
    ]
}

fn live_field() -> impl Strategy<Value = LiveField> {
    prop_oneof![
        1 => Just(LiveField::Magic),
        1 => Just(LiveField::Version),
        1 => Just(LiveField::FileId),
        1 => Just(LiveField::BootId),
        1 => Just(LiveField::Ready),
        2 => Just(LiveField::Rebuilt),
        3 => Just(LiveField::Seqlock),
        3 => Just(LiveField::Len),
        1 => Just(LiveField::WriterPid),
        1 => Just(LiveField::Notify),
        1 => Just(LiveField::Waiters),
        2 => any::<u8>().prop_map(LiveField::LogPosition),
        2 => any::<u8>().prop_map(LiveField::LogEpoch),
    ]
}

fn epoch_choice() -> impl Strategy<Value = EpochChoice> {
    prop_oneof![
        1 => Just(EpochChoice::Current),
        2 => Just(EpochChoice::Previous),
        2 => Just(EpochChoice::Next),
        1 => Just(EpochChoice::Zero),
        1 => any::<u64>().prop_map(EpochChoice::Random),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let n = goldens().len() as u8;
    prop_oneof![
        6 => (which(), pos(), 0u8..8).prop_map(|(f, p, b)| Mutation::FlipBit(f, p, b)),
        3 => (which(), pos(), any::<u8>()).prop_map(|(f, p, v)| Mutation::SetByte(f, p, v)),
        3 => (which(), pos(), vec(any::<u8>(), 1..64)).prop_map(|(f, p, v)| Mutation::Overwrite(f, p, v)),
        3 => (which(), pos(), 1u16..8192).prop_map(|(f, p, n)| Mutation::Zero(f, p, n)),
        3 => (which(), pos()).prop_map(|(f, p)| Mutation::Truncate(f, p)),
        1 => (which(), vec(any::<u8>(), 1..5000)).prop_map(|(f, v)| Mutation::Extend(f, v)),
        1 => (which(), 1u32..(1 << 20)).prop_map(|(f, k)| Mutation::ExtendSparse(f, k)),
        2 => which().prop_map(Mutation::Delete),
        1 => Just(Mutation::SwapSlots),
        1 => (0usize..2).prop_map(Mutation::CopySlot),
        2 => (any::<u8>(), any::<u8>()).prop_map(|(a, b)| Mutation::DupRecord(a, b)),
        3 => (any::<u8>(), rec_field(), interesting_u64()).prop_map(|(i, f, v)| Mutation::RecordField(i, f, v)),
        2 => (live_field(), interesting_u64()).prop_map(|(f, v)| Mutation::LiveField(f, v)),
        1 => epoch_choice().prop_map(Mutation::LiveEpoch),
        2 => (which(), 0..n).prop_map(|(f, g)| Mutation::FromOther(f, g)),
    ]
}

#[derive(Debug, Clone)]
struct MutCase {
    golden: usize,
    live: bool,
    mutations: Vec<Mutation>,
    reader_first: bool,
}

fn mut_case() -> impl Strategy<Value = MutCase> {
    (
        0..goldens().len(),
        prop::bool::weighted(0.6),
        vec(mutation(), 1..=4),
        any::<bool>(),
    )
        .prop_map(|(golden, live, mutations, reader_first)| MutCase {
            golden,
            live,
            mutations,
            reader_first,
        })
}

/// What the damage did: whether the files still hold the golden state in
/// full (`intact`), and what became of its live image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LiveState {
    /// The golden's, trusted, holding the golden state (changed at most in
    /// fields that do not change that).
    Golden,
    Absent,
    /// Another state's (the mutations; `run_mut_case` then finds it not
    /// trusted).
    Foreign,
    /// Present but not trusted (`live_trusted`): rebuilt from the files,
    /// whose state it then shows.
    Untrusted,
    /// Trusted, but damaged where the trust rule does not look.
    Damaged,
}

struct Track {
    intact: bool,
    live: LiveState,
    /// Slots holding the current header (two after copying it over the other).
    current: [bool; 2],
}

impl Track {
    /// Whether bytes `start..end` of file `f` matter to recovering the state.
    fn touches(&self, g: &Golden, f: F, start: u64, end: u64) -> bool {
        let overlaps = |a: u64, b: u64| start < b && a < end;
        match f {
            F::Durable => {
                (0..2).any(|i| {
                    self.current[i] && overlaps(SLOTS[i] as u64, (SLOTS[i] + HEADER) as u64)
                }) || overlaps(PAGE, g.durable_used)
            }
            F::Wal => overlaps(0, 40) || overlaps(PAGE, g.wal_end),
            F::Ckpt => g.pending,
            F::Live => false,
        }
    }

    fn damage(&mut self, g: &Golden, f: F, start: u64, end: u64, present: bool) {
        if f == F::Live {
            if present {
                self.live = LiveState::Damaged;
            }
        } else if self.touches(g, f, start, end) {
            self.intact = false;
        }
    }
}

fn file_mut(files: &mut Files, f: F) -> &mut Option<Image> {
    match f {
        F::Durable => &mut files.durable,
        F::Wal => &mut files.wal,
        F::Ckpt => &mut files.ckpt,
        F::Live => &mut files.live,
    }
}

#[allow(clippy::too_many_lines)] // one arm per kind of damage
fn apply(g: &Golden, files: &mut Files, t: &mut Track, m: &Mutation) {
    match m {
        Mutation::FlipBit(f, p, _)
        | Mutation::SetByte(f, p, _)
        | Mutation::Overwrite(f, p, _)
        | Mutation::Zero(f, p, _) => {
            let Some(img) = file_mut(files, *f).as_mut() else {
                return;
            };
            let Some(at) = p.resolve(img) else { return };
            let bytes = match m {
                Mutation::FlipBit(_, _, b) => vec![img.byte(at) ^ (1 << b)],
                Mutation::SetByte(_, _, v) => vec![*v],
                Mutation::Overwrite(_, _, v) => v.clone(),
                Mutation::Zero(_, _, n) => vec![0; usize::from(*n)],
                _ => unreachable!(),
            };
            img.write(at, &bytes);
            t.damage(g, *f, at, at + bytes.len() as u64, true);
        }
        Mutation::Truncate(f, p) => {
            let Some(img) = file_mut(files, *f).as_mut() else {
                return;
            };
            let Some(len) = p.resolve(img) else { return };
            img.truncate(len);
            match f {
                F::Durable => t.intact &= len >= g.durable_used,
                F::Wal => t.intact &= len >= PAGE && len - len % PAGE >= g.wal_end,
                F::Ckpt => t.intact &= !g.pending,
                F::Live => t.live = LiveState::Damaged,
            }
        }
        Mutation::Extend(f, v) => {
            if let Some(img) = file_mut(files, *f).as_mut() {
                img.append(v);
            }
        }
        Mutation::ExtendSparse(f, kib) => {
            if let Some(img) = file_mut(files, *f).as_mut() {
                img.len += u64::from(*kib) << 10;
            }
        }
        Mutation::Delete(f) => {
            if file_mut(files, *f).take().is_some() {
                match f {
                    F::Durable | F::Wal => t.intact = false,
                    F::Ckpt => t.intact &= !g.pending,
                    F::Live => t.live = LiveState::Absent,
                }
            }
        }
        Mutation::SwapSlots | Mutation::CopySlot(_) => {
            let Some(img) = files.durable.as_mut() else {
                return;
            };
            let a = img.read(SLOTS[0] as u64, HEADER);
            let b = img.read(SLOTS[1] as u64, HEADER);
            if let Mutation::CopySlot(from) = m {
                let (src, dst) = (*from, 1 - *from);
                img.write(SLOTS[dst] as u64, if src == 0 { &a } else { &b });
                if t.current[src] {
                    t.current = [true, true];
                } else if a != b {
                    t.intact = false;
                }
            } else {
                img.write(SLOTS[0] as u64, &b);
                img.write(SLOTS[1] as u64, &a);
                t.current = [t.current[1], t.current[0]];
            }
        }
        Mutation::DupRecord(a, b) => {
            let (Some(img), false) = (files.wal.as_mut(), g.records.is_empty()) else {
                return;
            };
            let (src_off, src_len) = g.records[usize::from(*a) % g.records.len()];
            let to = usize::from(*b) % (g.records.len() + 1);
            let at = g
                .records
                .get(to)
                .map_or_else(|| g.records.last().map_or(PAGE, |r| r.0 + r.1), |r| r.0);
            let bytes = g.wal.read(src_off, src_len as usize);
            img.write(at, &bytes);
            t.damage(g, F::Wal, at, at + src_len, true);
        }
        Mutation::RecordField(i, field, v) => {
            let (Some(img), false) = (files.wal.as_mut(), g.records.is_empty()) else {
                return;
            };
            let (off, _) = g.records[usize::from(*i) % g.records.len()];
            let n = rd(&g.wal.read(off, REC as usize), 12, 4);
            let (at, w) = match field {
                RecField::Chain => (0, 8),
                RecField::Magic => (8, 4),
                RecField::NRanges => (12, 4),
                RecField::Seq => (16, 8),
                RecField::Total => (24, 8),
                RecField::NewLen => (32, 8),
                RecField::RangeOff(k) | RecField::RangeLen(k) if n > 0 => {
                    let base = REC + RANGE * (u64::from(*k) % n);
                    (
                        base + if matches!(field, RecField::RangeLen(_)) {
                            8
                        } else {
                            0
                        },
                        8,
                    )
                }
                _ => return,
            };
            img.write(off + at, &v.to_le_bytes()[..w]);
            t.damage(g, F::Wal, off + at, off + at + w as u64, true);
        }
        Mutation::LiveField(field, v) => {
            let Some(img) = files.live.as_mut() else {
                return;
            };
            let (at, w) = field.at();
            img.write(at, &v.to_le_bytes()[..w]);
            if !field.keeps_state() {
                t.live = LiveState::Damaged;
            }
        }
        Mutation::LiveEpoch(choice) => {
            let Some(img) = files.live.as_mut() else {
                return;
            };
            let h = g.header();
            let next = g
                .ckpt
                .as_ref()
                .filter(|_| g.pending)
                .map_or(h, |j| &j[J_TARGET..]);
            let e = match choice {
                EpochChoice::Current => epoch(h).to_vec(),
                EpochChoice::Previous => prev_epoch(h).to_vec(),
                EpochChoice::Next => epoch(next).to_vec(),
                EpochChoice::Zero => vec![0; 16],
                EpochChoice::Random(seed) => random_bytes(16, *seed),
            };
            img.write(L_LOG_EPOCH as u64, &e);
        }
        Mutation::FromOther(f, other) => {
            let o = &goldens()[usize::from(*other) % goldens().len()];
            if o.name == g.name || *f == F::Durable {
                return;
            }
            match f {
                F::Wal => {
                    files.wal = Some(o.wal.clone());
                    t.intact = false;
                }
                F::Ckpt => {
                    files.ckpt = o.ckpt.clone().map(Image::full);
                    t.intact &= !g.pending;
                }
                _ => {
                    files.live = Some(Image::full(o.live.clone()));
                    t.live = LiveState::Foreign;
                }
            }
        }
    }
}

fn run_mut_case(case: &MutCase) -> Result<(), Failure> {
    let g = &goldens()[case.golden];
    let mut files = Files::of(g, case.live);
    let mut t = Track {
        intact: true,
        live: if case.live {
            LiveState::Golden
        } else {
            LiveState::Absent
        },
        current: [g.slot == 0, g.slot == 1],
    };
    for m in &case.mutations {
        apply(g, &mut files, &mut t, m);
    }
    // Whether the opens trust the live image that is left: where the durable
    // header is refused, nothing opens anyway.
    let base = base_header(&files);
    let live = match (&files.live, &base) {
        (None, _) => LiveState::Absent,
        (Some(img), Some(base)) if !live_trusted(img, base) => LiveState::Untrusted,
        (Some(_), _) if t.live == LiveState::Foreign => LiveState::Damaged,
        _ => t.live,
    };
    let files_agree = matches!(live, LiveState::Absent | LiveState::Untrusted);
    let ex = Expect {
        state: (live == LiveState::Golden || (files_agree && t.intact))
            .then(|| (g.seq, g.content.clone())),
        must_open: t.intact && live != LiveState::Damaged,
        rebuild_exact: files_agree || (live == LiveState::Golden && t.intact),
        // A trusted live image whose sequence number was overwritten.
        at_limit: at_writer_limit(&files),
        reader_first: case.reader_first,
        ..Expect::default()
    };
    if ex.at_limit {
        note("mutated", "counters", "at the writer's limit");
    }
    let c = CaseDir::new();
    files.install(&c);
    let label = if ex.must_open { "intact" } else { "damaged" };
    note(
        "mutated",
        "case",
        &format!("{} ({label}, live image {live:?})", g.name),
    );
    exercise("mutated", &c, &ex)
}

/// The sequence number and generation a writer's recovery of `files`
/// reaches (recovery.rs `recover` and `replay`), `None` if the durable
/// image is refused: the generation of the base header (`base_header`: the
/// target of a journal recovery finishes, else the durable header); the
/// greater of the sequence number of a trusted live image (kept, even
/// ahead of the log) and the one the log's valid records lead to from the
/// base's checkpoint (a live image behind catches up on them; a rebuilt one
/// holds them all).
fn recovered_counters(files: &Files) -> Option<(u64, u64)> {
    let base = base_header(files)?;
    let records = files.wal.as_ref().map_or(0, |wal| {
        walk_log(
            wal,
            HField::LogSalt.get(&base),
            HField::CheckpointSeq.get(&base) + 1,
            HField::MaxSize.get(&base),
        )
        .records
        .len() as u64
    });
    let live = files
        .live
        .as_ref()
        .filter(|img| live_trusted(img, &base))
        .map_or(0, |img| rd(&img.read(L_SEQLOCK as u64, 8), 0, 8) / 2);
    // The writer rebuilds an image at its limit over files below it (a
    // damaged image; live.rs `Live::trusted`).
    let checkpoint = HField::CheckpointSeq.get(&base);
    let live = if checkpoint < WRITER_LIMIT && live >= WRITER_LIMIT {
        0
    } else {
        live
    };
    let seq = (HField::CheckpointSeq.get(&base) + records).max(live);
    Some((seq, HField::Generation.get(&base)))
}

/// Whether a writer's open of `files` must be refused at the counters'
/// limit (`WRITER_LIMIT`): the sequence number or generation it recovers
/// to is there (a file refused for another reason is not).
fn at_writer_limit(files: &Files) -> bool {
    recovered_counters(files)
        .is_some_and(|(seq, generation)| seq >= WRITER_LIMIT || generation >= WRITER_LIMIT)
}

/// The header the opens judge a live image by (recovery.rs `open_live`):
/// the target of a journal recovery finishes, else the durable header;
/// `None` if the durable image is refused.
fn base_header(files: &Files) -> Option<Vec<u8>> {
    let d = files.durable.as_ref()?;
    let head = d.read(0, PAGE as usize);
    let slot = model_header(&head, d.len).ok()?;
    let h = &head[SLOTS[slot]..SLOTS[slot] + HEADER];
    let journal = files.ckpt.as_ref().map(|j| model_journal(j, h));
    Some(match journal {
        Some(Verdict::Finish(_) | Verdict::TooLarge) => {
            let j = files.ckpt.as_ref().unwrap();
            j.read(J_TARGET as u64, HEADER)
        }
        _ => h.to_vec(),
    })
}

/// Whether an open trusts the existing live image `img` of the state whose
/// base header (`base_header`) is `base` (live.rs `Live::open_existing`):
/// this version's, of this state and this boot, complete, with a published
/// log position whose epoch (read even with an odd `LOG_GEN`, as a writer
/// killed while publishing leaves it) is the base's or the one before (a
/// writer killed in a checkpoint), holding at
/// least the base's checkpoint and a sequence number of at most 2^62 (its
/// double must fit the sequence lock, as a header's), no longer than the
/// maximum size or the file. Else it is rebuilt from the files.
fn live_trusted(img: &Image, base: &[u8]) -> bool {
    if img.len < PAGE {
        return false;
    }
    let h = img.read(0, PAGE as usize);
    let log_epoch = &h[L_LOG_EPOCH..L_LOG_EPOCH + 16];
    let len = rd(&h, L_LEN, 8);
    &h[..8] == LIVE_MAGIC
        && rd(&h, 8, 4) == VERSION
        && h[16..32] == base[16..32]
        && h[32..48] == boot_id()
        && rd(&h, L_READY, 8) == 1
        && (log_epoch == epoch(base) || log_epoch == prev_epoch(base))
        && rd(&h, L_SEQLOCK, 8) / 2 >= HField::CheckpointSeq.get(base)
        && rd(&h, L_SEQLOCK, 8) / 2 <= MAX_COUNTER
        && len <= HField::MaxSize.get(base)
        && PAGE + len <= img.len
}

/// This boot's id, as the live image records it (the hex digits of
/// `/proc/sys/kernel/random/boot_id`, two to a byte).
fn boot_id() -> [u8; 16] {
    static ID: OnceLock<[u8; 16]> = OnceLock::new();
    *ID.get_or_init(|| {
        let s = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
        let hex: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        let mut out = [0u8; 16];
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            out[i] = u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap();
        }
        out
    })
}

#[test]
fn mutated_states() {
    let _report = start("mutated");
    proptest!(config(45), |(case in mut_case())| {
        timed("mutated", &case, || run_mut_case(&case))?;
    });
}

// ---------------------------------------------------------------------------
// Strategy 2: random files.

#[derive(Debug, Clone, Copy)]
enum Magic {
    Nowhere,
    Start,
    BothSlots,
}

#[derive(Debug, Clone)]
struct RandomCase {
    len: usize,
    seed: u64,
    magic: Magic,
    create: bool,
    reader_first: bool,
    /// Random companions (log, journal) too.
    companions: bool,
}

fn random_bytes(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = seed;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn random_case() -> impl Strategy<Value = RandomCase> {
    (
        prop_oneof![1 => 0usize..16, 2 => 16usize..4096, 1 => 2048usize..2300, 3 => 4096usize..65_536],
        any::<u64>(),
        prop_oneof![Just(Magic::Nowhere), Just(Magic::Start), Just(Magic::BothSlots)],
        prop::bool::weighted(0.3),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(len, seed, magic, create, reader_first, companions)| RandomCase {
            len,
            seed,
            magic,
            create,
            reader_first,
            companions,
        })
}

fn run_random_case(case: &RandomCase) -> Result<(), Failure> {
    let mut bytes = random_bytes(case.len, case.seed);
    let slots: &[usize] = match case.magic {
        Magic::Nowhere => &[],
        Magic::Start => &[0],
        Magic::BothSlots => &SLOTS,
    };
    for &s in slots {
        if bytes.len() >= s + 8 {
            bytes[s..s + 8].copy_from_slice(DURABLE_MAGIC);
        }
    }
    let c = CaseDir::new();
    fs::write(&c.path, &bytes).unwrap();
    if case.companions {
        fs::write(
            companion(&c.path, "-wal"),
            random_bytes(case.len / 2, !case.seed),
        )
        .unwrap();
        fs::write(
            companion(&c.path, "-ckpt"),
            random_bytes(case.len / 3, case.seed ^ 1),
        )
        .unwrap();
    }
    let s = "random";
    if case.create && bytes.is_empty() {
        // An empty file opened with `create` becomes a new state.
        let o = opts(&c.live).create(true);
        return match call(s, "writer (create)", || o.open(&c.path).map(drop))? {
            Got::Ok(()) => Ok(()),
            _ => oracle("Writer::open with create refused an empty file"),
        };
    }
    let Err(want) = model_header(&bytes, bytes.len() as u64) else {
        return oracle("a random file has a valid header");
    };
    let ex = Expect {
        refusal: Some(want),
        reader_first: case.reader_first,
        ..Expect::default()
    };
    if case.create {
        let o = opts(&c.live).create(true);
        match call(s, "writer (create)", || o.open(&c.path).map(drop))? {
            Got::Err(l) if want.matches(&l) => {}
            Got::Err(l) => {
                return oracle(format!("Writer::open (create) gave {l}, expected {want:?}"));
            }
            _ => return oracle("Writer::open (create) accepted a random file"),
        }
    }
    exercise(s, &c, &ex)?;
    if fs::read(&c.path).unwrap() != bytes {
        return oracle("a refused open changed the file");
    }
    Ok(())
}

#[test]
fn random_files() {
    let _report = start("random");
    proptest!(config(20), |(case in random_case())| {
        timed("random", &case, || run_random_case(&case))?;
    });
}

// ---------------------------------------------------------------------------
// Strategy 3: durable headers with hostile fields and valid checksums.

/// A new value for a field: absolute, or relative to the field's value.
#[derive(Debug, Clone, Copy)]
enum V {
    Abs(u64),
    Rel(i64),
}

impl V {
    fn on(self, old: u64) -> u64 {
        match self {
            V::Abs(v) => v,
            V::Rel(d) => old.wrapping_add(d as u64),
        }
    }
}

fn value() -> impl Strategy<Value = V> {
    prop_oneof![
        2 => interesting_u64().prop_map(V::Abs),
        1 => prop_oneof![-4097i64..=-4095, -9i64..=9, 4095i64..=4097].prop_map(V::Rel),
    ]
}

fn hfield() -> impl Strategy<Value = HField> {
    prop_oneof![
        1 => Just(HField::Magic),
        3 => Just(HField::Version),
        2 => Just(HField::PageSize),
        1 => Just(HField::FileId),
        2 => Just(HField::Generation),
        2 => Just(HField::CheckpointSeq),
        3 => Just(HField::Len),
        3 => Just(HField::MaxSize),
        1 => Just(HField::LogSalt),
        2 => Just(HField::Durability),
        1 => Just(HField::DurabilityArg),
        1 => any::<u8>().prop_map(HField::Epoch),
        1 => any::<u8>().prop_map(HField::PrevEpoch),
    ]
}

fn field_edit() -> impl Strategy<Value = (HField, V)> {
    prop_oneof![
        4 => (hfield(), value()),
        1 => prop_oneof![Just(3u64), Just(u64::from(u32::MAX)), Just(2), Just(1), Just(0)]
            .prop_map(|v| (HField::Version, V::Abs(v))),
    ]
}

/// Turns a header into what version 1 wrote: version 1, no epochs (the
/// checksum still to be made).
fn as_version_1(h: &mut [u8]) {
    HField::Version.set(h, 1);
    h[88..120].fill(0);
}

#[derive(Debug, Clone)]
struct HeaderCase {
    golden: usize,
    /// First turn both slots into version 1 headers (resealed).
    version_1: bool,
    /// Edits of the current slot, then of the other slot.
    current: Vec<(HField, V)>,
    other: Vec<(HField, V)>,
    reseal: bool,
    /// Grow the durable file (sparsely) by this many pages.
    grow_pages: u16,
    reader_first: bool,
}

fn header_case() -> impl Strategy<Value = HeaderCase> {
    (
        (0..goldens().len(), prop::bool::weighted(0.2)),
        vec(field_edit(), 0..=3),
        prop_oneof![3 => Just(Vec::new()), 1 => vec(field_edit(), 1..=2)],
        prop::bool::weighted(0.9),
        prop_oneof![3 => Just(0u16), 1 => 0u16..4096],
        any::<bool>(),
    )
        .prop_map(
            |((golden, version_1), current, other, reseal, grow_pages, reader_first)| HeaderCase {
                golden,
                version_1,
                current,
                other,
                reseal,
                grow_pages,
                reader_first,
            },
        )
}

fn run_header_case(case: &HeaderCase) -> Result<(), Failure> {
    let g = &goldens()[case.golden];
    let mut durable = g.durable.clone();
    if case.version_1 {
        for s in SLOTS {
            let h = &mut durable[s..s + HEADER];
            as_version_1(h);
            seal(h);
        }
    }
    for (slot, edits) in [(g.slot, &case.current), (1 - g.slot, &case.other)] {
        if edits.is_empty() {
            continue;
        }
        let h = &mut durable[SLOTS[slot]..SLOTS[slot] + HEADER];
        for (f, v) in edits {
            if *f == HField::Magic {
                h[..8].copy_from_slice(if v.on(0) % 2 == 0 {
                    b"MAPSTATX"
                } else {
                    DURABLE_MAGIC
                });
            } else {
                f.set(h, v.on(f.get(h)));
            }
        }
        if case.reseal {
            seal(h);
        }
    }
    let mut files = Files::of(g, false);
    let mut img = Image::full(durable);
    img.len += u64::from(case.grow_pages) * PAGE;
    let head = img.read(0, PAGE as usize);
    let chosen = model_header(&head, img.len);
    let refusal = chosen.err();
    note(
        "headers",
        "predicted",
        &refusal.map_or("Ok".into(), |r| format!("{r:?}")),
    );
    if let Ok(slot) = chosen {
        huge_max("headers", HField::MaxSize.get(&head[SLOTS[slot]..]));
    }
    // Whether the chosen header is the golden's current one but for the
    // byte ranges `except`.
    let golden_but = |except: &[std::ops::Range<usize>]| {
        chosen == Ok(g.slot) && {
            let mut a = head[SLOTS[g.slot]..SLOTS[g.slot] + HEADER].to_vec();
            let mut b = g.header().to_vec();
            for x in [&mut a, &mut b] {
                for r in except {
                    x[r.clone()].fill(0);
                }
            }
            a == b
        }
    };
    // The golden's current header with at most its version (1 or 2: read
    // alike) and epochs changed: the golden state (through the log, if a
    // pending journal no longer follows from the header).
    let same_state = golden_but(&[8..12, 88..HEADER]);
    if same_state {
        note("headers", "predicted", "Ok, the golden state");
    }
    files.durable = Some(img);
    let at_limit = at_writer_limit(&files);
    // At the limit with only the counters changed besides: the files are
    // otherwise sound, and a writer's open is refused for the counters alone.
    let only_counters = at_limit && golden_but(&[8..12, 32..48, 88..HEADER]);
    if at_limit {
        note(
            "headers",
            "predicted",
            if only_counters {
                "a writer's refusal at the counters' limit (only the counters changed)"
            } else {
                "a writer's refusal at the counters' limit"
            },
        );
    }
    let ex = Expect {
        state: same_state.then(|| (g.seq, g.content.clone())),
        must_open: same_state || only_counters,
        refusal,
        rebuild_exact: true,
        at_limit,
        reader_first: case.reader_first,
        ..Expect::default()
    };
    let c = CaseDir::new();
    files.install(&c);
    exercise("headers", &c, &ex)
}

#[test]
fn hostile_headers() {
    let _report = start("headers");
    proptest!(config(15), |(case in header_case())| {
        timed("headers", &case, || run_header_case(&case))?;
    });
}

/// The header refusals the issue names, on every golden state, in the
/// current slot with a valid checksum: a version past 2 is `TooNew` (also
/// in the other slot); a wrong page size, a maximum size of 0, unaligned or
/// past `MAX_RESERVATION`, a length past the maximum size, a sequence number
/// or generation past 2^62 are `Corrupt`; a length past the file is
/// `Truncated`. The checksum covers the epochs: one flipped bit in the
/// epoch or previous epoch of both slots is `Corrupt`; in the current slot
/// only, the other slot is used (if the golden has a second header).
#[test]
fn header_refusals() {
    install_panic_hook();
    let cases: &[(HField, u64, Refusal)] = &[
        (HField::Version, 3, Refusal::TooNew),
        (HField::Version, u64::from(u32::MAX), Refusal::TooNew),
        (HField::PageSize, 512, Refusal::Corrupt),
        (HField::PageSize, 0, Refusal::Corrupt),
        (HField::MaxSize, 0, Refusal::Corrupt),
        (HField::MaxSize, PAGE + 1, Refusal::Corrupt),
        (HField::MaxSize, MAX_RESERVATION + PAGE, Refusal::Corrupt),
        (HField::MaxSize, u64::MAX, Refusal::Corrupt),
        (HField::Len, u64::MAX, Refusal::Corrupt),
        (HField::Durability, 3, Refusal::Corrupt),
        (HField::CheckpointSeq, MAX_COUNTER + 1, Refusal::Corrupt),
        (HField::CheckpointSeq, u64::MAX, Refusal::Corrupt),
        (HField::Generation, MAX_COUNTER + 1, Refusal::Corrupt),
        (HField::Generation, u64::MAX, Refusal::Corrupt),
    ];
    for g in goldens() {
        let mut all = cases.to_vec();
        // Past the maximum size, and past the file but within the maximum size.
        all.push((
            HField::Len,
            HField::MaxSize.get(g.header()) + 1,
            Refusal::Corrupt,
        ));
        all.push((
            HField::Len,
            HField::MaxSize.get(g.header()),
            Refusal::Truncated,
        ));
        for &(f, v, want) in &all {
            let mut d = g.durable.clone();
            let h = &mut d[SLOTS[g.slot]..SLOTS[g.slot] + HEADER];
            f.set(h, v);
            seal(h);
            refused(g, d, &format!("{f:?} = {v}"), want);
        }
        // A newer version in the other slot (the current header there,
        // where the golden has a single header).
        let (cur, other) = (SLOTS[g.slot], SLOTS[1 - g.slot]);
        let mut d = g.durable.clone();
        if d[other..other + 8] != *DURABLE_MAGIC {
            d.copy_within(cur..cur + HEADER, other);
        }
        let h = &mut d[other..other + HEADER];
        HField::Version.set(h, VERSION + 1);
        seal(h);
        refused(g, d, "version 3 in the other slot", Refusal::TooNew);
        let other_valid = g.durable[other..other + 8] == *DURABLE_MAGIC
            && sealed(&g.durable[other..other + HEADER]);
        for at in [88, 95, 103, 104, 111, 119] {
            let mut d = g.durable.clone();
            d[cur + at] ^= 1;
            let what = format!("a bit of the epochs flipped at byte {at} of the current slot");
            if other_valid {
                assert_eq!(
                    model_header(&d, d.len() as u64),
                    Ok(1 - g.slot),
                    "{}: {what}",
                    g.name
                );
            } else {
                refused(g, d.clone(), &what, Refusal::Corrupt);
            }
            d[other + at] ^= 1;
            refused(
                g,
                d,
                &format!("a bit of the epochs flipped at byte {at} of both slots"),
                Refusal::Corrupt,
            );
        }
    }
}

/// Installs golden `g` with the durable image `d` and checks that the
/// model, `Writer::open` and `Reader::open` all refuse it as `want` says.
fn refused(g: &Golden, d: Vec<u8>, what: &str, want: Refusal) {
    assert_eq!(
        model_header(&d, d.len() as u64),
        Err(want),
        "{} {what}",
        g.name
    );
    let mut files = Files::of(g, false);
    files.durable = Some(Image::full(d));
    let c = CaseDir::new();
    files.install(&c);
    let o = opts(&c.live);
    for (who, r) in [
        ("Writer::open", o.open(&c.path).map(drop)),
        ("Reader::open", o.reader().open(&c.path).map(drop)),
    ] {
        let got = r.as_ref().map_err(label);
        assert!(
            got.as_ref().is_err_and(|l| want.matches(l)),
            "{}: {who} with {what}: {got:?}, expected {want:?}",
            g.name
        );
    }
}

/// Version 1 headers (no epochs) are read, on every golden state: both
/// slots as version 1 wrote them (version 1, the epochs zeros) open with the
/// golden state, through the log (a pending journal, made from a header
/// with an epoch, no longer follows from them) and with or without the live
/// image (whose log position has an epoch: not trusted); the writer's open
/// then checkpoints at once, giving the state a version 2 header with an
/// epoch whose previous epoch is zeros, one generation on, and the live
/// image publishes the new epoch. Versions 0 and 2 of the same header open
/// with the golden state too.
#[test]
fn version_1_headers_are_read_and_upgraded() {
    install_panic_hook();
    for g in goldens() {
        for (version, live) in [(1, false), (1, true), (0, false), (2, false)] {
            let what = format!("{}, version {version}, live image {live}", g.name);
            let mut d = g.durable.clone();
            for s in SLOTS {
                let h = &mut d[s..s + HEADER];
                as_version_1(h);
                HField::Version.set(h, version);
                seal(h);
            }
            let mut files = Files::of(g, live);
            files.durable = Some(Image::full(d));
            let c = CaseDir::new();
            files.install(&c);
            let o = opts(&c.live);
            let got = o.reader().open(&c.path).unwrap().snapshot().unwrap();
            assert!(
                got == (g.seq, g.content.clone()),
                "{what}: a reader shows commit {}",
                got.0
            );
            let w = o.open(&c.path).unwrap();
            assert_eq!(
                (w.seq(), w.len()),
                (g.seq, g.content.len() as u64),
                "{what}"
            );
            let d = fs::read(&c.path).unwrap();
            let slot = model_header(&d, d.len() as u64).unwrap();
            let h = &d[SLOTS[slot]..SLOTS[slot] + HEADER];
            assert_eq!(HField::Version.get(h), VERSION, "{what}");
            assert_eq!(
                HField::Generation.get(h),
                HField::Generation.get(g.header()) + 1,
                "{what}"
            );
            assert!(epoch(h) != [0; 16] && prev_epoch(h) == [0; 16], "{what}");
            let live_img = fs::read(c.live.join(live_name(&c.path))).unwrap();
            assert_eq!(&live_img[L_LOG_EPOCH..L_LOG_EPOCH + 16], epoch(h), "{what}");
            assert_eq!(rd(&live_img, L_REBUILT, 8), 0, "{what}");
            drop(w);
            let got = o.reader().open(&c.path).unwrap().snapshot().unwrap();
            assert!(
                got == (g.seq, g.content.clone()),
                "{what}: after the writer"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// Strategy 4: log records with valid chains and hostile contents.

#[derive(Debug, Clone, Copy)]
enum RangeSpec {
    /// Inside the new length: offset and length scaled into it.
    Inside(u16, u16),
    Raw(u64, u64),
}

#[derive(Debug, Clone, Copy)]
enum TotalSpec {
    Exact,
    Abs(u64),
    Rel(i16),
}

#[derive(Debug, Clone, Copy)]
enum NewLen {
    Same,
    Scaled(u16),
    Max,
    Abs(u64),
}

/// A zeroed range (bit 63 of its length set) as a record's first entry.
#[derive(Debug, Clone, Copy)]
enum ZeroSpec {
    /// Within the maximum size: offset and length scaled into it.
    Inside(u16, u16),
    /// From the new length to the old one, as a shrink logs it.
    Shrink,
    /// Ending this many bytes past the maximum size.
    PastMax(u16),
    /// Its end past 2^64 (the offset near it).
    Wraps(u64),
    Raw(u64, u64),
}

#[derive(Debug, Clone)]
struct RecSpec {
    zero: Option<ZeroSpec>,
    ranges: Vec<RangeSpec>,
    /// Set bit 63 of the length of entry `k % n` too (after the first:
    /// a zeroed range where only the first may be one; the first: a
    /// written range that becomes a zeroed one).
    flag: Option<u8>,
    new_len: NewLen,
    n_ranges: Option<u32>,
    total: TotalSpec,
    seq_delta: i8,
    chain_ok: bool,
}

fn rec_spec() -> impl Strategy<Value = RecSpec> {
    let range = prop_oneof![
        9 => (any::<u16>(), 0u16..3000).prop_map(|(o, l)| RangeSpec::Inside(o, l)),
        1 => (interesting_u64(), interesting_u64()).prop_map(|(o, l)| RangeSpec::Raw(o, l)),
    ];
    let new_len = prop_oneof![
        5 => Just(NewLen::Same),
        3 => any::<u16>().prop_map(NewLen::Scaled),
        1 => Just(NewLen::Max),
        1 => interesting_u64().prop_map(NewLen::Abs),
    ];
    let n_ranges = prop_oneof![
        6 => Just(None),
        1 => prop_oneof![Just(0u32), Just(1), Just(u32::MAX), Just(1 << 16), any::<u32>()].prop_map(Some),
    ];
    let total = prop_oneof![
        10 => Just(TotalSpec::Exact),
        1 => prop_oneof![Just(0u64), Just(8), Just(16), Just(40), Just(u64::MAX), interesting_u64()].prop_map(TotalSpec::Abs),
        1 => (-64i16..64).prop_map(TotalSpec::Rel),
    ];
    let seq_delta = prop_oneof![9 => Just(0i8), 1 => -2i8..3];
    let zero = prop_oneof![
        6 => Just(None),
        2 => (any::<u16>(), any::<u16>()).prop_map(|(o, l)| Some(ZeroSpec::Inside(o, l))),
        2 => Just(Some(ZeroSpec::Shrink)),
        1 => (1u16..9000).prop_map(|e| Some(ZeroSpec::PastMax(e))),
        1 => prop_oneof![Just(1u64), Just(4096), Just(u64::MAX)].prop_map(|o| Some(ZeroSpec::Wraps(o))),
        1 => (interesting_u64(), interesting_u64()).prop_map(|(o, l)| Some(ZeroSpec::Raw(o, l))),
    ];
    let flag = prop_oneof![9 => Just(None), 1 => any::<u8>().prop_map(Some)];
    (
        (zero, vec(range, 0..5), flag),
        new_len,
        n_ranges,
        total,
        seq_delta,
        prop::bool::weighted(0.9),
    )
        .prop_map(
            |((zero, ranges, flag), new_len, n_ranges, total, seq_delta, chain_ok)| RecSpec {
                zero,
                ranges,
                flag,
                new_len,
                n_ranges,
                total,
                seq_delta,
                chain_ok,
            },
        )
}

#[derive(Debug, Clone)]
struct LogCase {
    golden: usize,
    records: Vec<RecSpec>,
    /// The log's length: the golden's (64 MiB), or just past the records plus this many pages.
    short_log: Option<u8>,
    reader_first: bool,
}

fn log_case() -> impl Strategy<Value = LogCase> {
    // The pending-journal golden is left out: its journal moves the salt on.
    let goldens: Vec<usize> = (0..goldens().len())
        .filter(|&i| !goldens()[i].pending)
        .collect();
    (
        prop::sample::select(goldens),
        vec(rec_spec(), 1..=4),
        prop_oneof![3 => Just(None), 1 => (0u8..3).prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(|(golden, records, short_log, reader_first)| LogCase {
            golden,
            records,
            short_log,
            reader_first,
        })
}

/// `x · s / 65535`.
fn scale(x: u64, s: u16) -> u64 {
    (u128::from(x) * u128::from(s) / 65_535) as u64
}

/// Writes record `spec` at `off` of `wal`, chained from `prev`, for a state
/// of `len` bytes before it; returns where the next record goes, this
/// record's chain and its new length.
fn write_record(
    wal: &mut Image,
    off: u64,
    prev: u64,
    seq: u64,
    max: u64,
    len: u64,
    spec: &RecSpec,
) -> (u64, u64, u64) {
    let new_len = match spec.new_len {
        NewLen::Same => len,
        NewLen::Scaled(s) => scale(max, s),
        NewLen::Max => max,
        NewLen::Abs(v) => v,
    };
    let mut entries = Vec::new();
    let mut data = Vec::new();
    let mut declared: u128 = 0;
    if let Some(z) = spec.zero {
        let (o, l) = match z {
            ZeroSpec::Inside(o, l) => {
                let l = scale(max, l);
                (scale(max - l, o), l)
            }
            ZeroSpec::Shrink => (new_len.min(len), len.saturating_sub(new_len)),
            ZeroSpec::PastMax(e) => (max / 2, max - max / 2 + u64::from(e)),
            ZeroSpec::Wraps(o) => (u64::MAX - o % 8192, u64::MAX),
            ZeroSpec::Raw(o, l) => (o, l),
        };
        entries.extend_from_slice(&o.to_le_bytes());
        entries.extend_from_slice(&(l | ZERO_RANGE).to_le_bytes());
    }
    for (i, r) in spec.ranges.iter().enumerate() {
        let (o, l) = match *r {
            RangeSpec::Inside(o, l) => {
                let l = u64::from(l).min(new_len);
                let o = scale(new_len - l, o);
                (o, l)
            }
            RangeSpec::Raw(o, l) => (o, l),
        };
        entries.extend_from_slice(&o.to_le_bytes());
        entries.extend_from_slice(&l.to_le_bytes());
        declared += u128::from(l);
        data.extend(random_bytes(l.min(4096) as usize, seq ^ i as u64 ^ o));
    }
    let n = (entries.len() / RANGE as usize) as u64;
    if let Some(k) = spec.flag.filter(|_| n > 0) {
        let at = (u64::from(k) % n * RANGE + 8) as usize;
        entries[at + 7] |= 0x80;
    }
    let exact = (u128::from(REC + n * RANGE) + declared).div_ceil(8) * 8;
    let exact = u64::try_from(exact).unwrap_or(u64::MAX);
    let total = match spec.total {
        TotalSpec::Exact => exact,
        TotalSpec::Abs(v) => v,
        TotalSpec::Rel(d) => exact.wrapping_add(d as u64),
    };
    let mut rec = vec![0u8; REC as usize];
    wr(&mut rec, 8, 4, u64::from(RECORD_MAGIC));
    wr(&mut rec, 12, 4, spec.n_ranges.map_or(n, u64::from));
    wr(&mut rec, 16, 8, seq.wrapping_add(spec.seq_delta as u64));
    wr(&mut rec, 24, 8, total);
    wr(&mut rec, 32, 8, new_len);
    rec.extend(entries);
    rec.extend(data);
    rec.resize(rec.len().next_multiple_of(8), 0);
    wal.write(off, &rec);
    // The chain covers `total` bytes of the file: computed if they are in it.
    let cap = wal.len - wal.len % PAGE;
    let chain = if spec.chain_ok && total >= 8 && total <= cap.saturating_sub(off) {
        xxh3(prev, &wal.read(off + 8, (total - 8) as usize))
    } else {
        random_bytes(8, off ^ total)
            .iter()
            .fold(0, |a, b| a << 8 | u64::from(*b))
    };
    wal.write(off, &chain.to_le_bytes());
    let next = off + (rec.len() as u64).max(if total <= cap { total } else { 0 });
    (next.next_multiple_of(8), chain, new_len)
}

fn run_log_case(case: &LogCase) -> Result<(), Failure> {
    let g = &goldens()[case.golden];
    let h = g.header();
    let (salt, cp, max, len) = (
        HField::LogSalt.get(h),
        HField::CheckpointSeq.get(h),
        HField::MaxSize.get(h),
        HField::Len.get(h),
    );
    let mut wal = Image {
        data: g.wal.read(0, PAGE as usize),
        len: g.wal.len,
        far: Vec::new(),
    };
    if let Some(extra) = case.short_log {
        // Only as long as the records need (computed with the full length first).
        let mut probe = wal.clone();
        let end = lay_out(&mut probe, case, salt, cp, max, len);
        wal.len = end.next_multiple_of(PAGE).min(probe.len) + u64::from(extra) * PAGE;
    }
    lay_out(&mut wal, case, salt, cp, max, len);
    let walk = walk_log(&wal, salt, cp + 1, max);
    let mut model = Model::new(&g.durable[PAGE as usize..(PAGE + len) as usize]);
    for r in &walk.records {
        model.apply(r);
    }
    note(
        "log",
        "valid records",
        &format!("{} of {}", walk.records.len(), case.records.len()),
    );
    let zeroed = walk.records.iter().filter(|r| r.zero.is_some()).count();
    if zeroed > 0 {
        note(
            "log",
            "valid records with a zeroed range",
            &zeroed.to_string(),
        );
    }
    let mut files = Files::of(g, false);
    files.wal = Some(wal);
    let ex = Expect {
        state: Some((cp + walk.records.len() as u64, model.bytes())),
        must_open: true,
        rebuild_exact: true,
        reader_first: case.reader_first,
        ..Expect::default()
    };
    let c = CaseDir::new();
    files.install(&c);
    exercise("log", &c, &ex)
}

/// Writes the case's records from `PAGE`, the first after a state of `len`
/// bytes; returns where they end.
fn lay_out(wal: &mut Image, case: &LogCase, salt: u64, cp: u64, max: u64, len: u64) -> u64 {
    let (mut off, mut prev, mut len) = (PAGE, salt, len);
    for (i, spec) in case.records.iter().enumerate() {
        (off, prev, len) = write_record(wal, off, prev, cp + 1 + i as u64, max, len, spec);
    }
    off
}

#[test]
fn hostile_log_records() {
    let _report = start("log");
    proptest!(config(12), |(case in log_case())| {
        timed("log", &case, || run_log_case(&case))?;
    });
}

// ---------------------------------------------------------------------------
// Strategy 5: checkpoint journals that lead one generation on, with hostile fields.

/// The header a journal says it was made from (its target's `prev_epoch`).
#[derive(Debug, Clone, Copy)]
enum Lineage {
    /// The current durable header (the target's `prev_epoch` is its epoch).
    Current,
    /// The header before it (an old journal).
    Previous,
    /// A version 1 header (no epoch).
    Zero,
    /// A header of another lineage with the same numbers: a state restored
    /// from a backup, say.
    Other(u64),
}

#[derive(Debug, Clone)]
#[allow(clippy::struct_excessive_bools)] // independent choices of a generated case
struct JournalCase {
    golden: usize,
    lineage: Lineage,
    target: Vec<(HField, V)>,
    reseal_target: bool,
    n_pages: Option<V>,
    page_numbers: Vec<(u8, V)>,
    body_flips: Vec<(u32, u8)>,
    file_id: bool,
    rehash_body: bool,
    reseal: bool,
    truncate: Option<u32>,
    reader_first: bool,
}

fn journal_case() -> impl Strategy<Value = JournalCase> {
    let goldens: Vec<usize> = (0..goldens().len())
        .filter(|&i| !goldens()[i].pending)
        .collect();
    let lineage = prop_oneof![
        12 => Just(Lineage::Current),
        1 => Just(Lineage::Previous),
        1 => Just(Lineage::Zero),
        1 => any::<u64>().prop_map(Lineage::Other),
    ];
    (
        (
            prop::sample::select(goldens),
            lineage,
            vec(field_edit(), 0..=2),
            prop::bool::weighted(0.9),
        ),
        prop_oneof![4 => Just(None), 1 => value().prop_map(Some)],
        prop_oneof![3 => Just(Vec::new()), 1 => vec((any::<u8>(), value()), 1..=2)],
        prop_oneof![3 => Just(Vec::new()), 1 => vec((any::<u32>(), 0u8..8), 1..=3)],
        (
            prop::bool::weighted(0.1),
            prop::bool::weighted(0.9),
            prop::bool::weighted(0.9),
        ),
        prop_oneof![9 => Just(None), 1 => any::<u32>().prop_map(Some)],
        any::<bool>(),
    )
        .prop_map(
            |(
                (golden, lineage, target, reseal_target),
                n_pages,
                page_numbers,
                body_flips,
                (file_id, rehash_body, reseal),
                truncate,
                reader_first,
            )| {
                JournalCase {
                    golden,
                    lineage,
                    target,
                    reseal_target,
                    n_pages,
                    page_numbers,
                    body_flips,
                    file_id,
                    rehash_body,
                    reseal,
                    truncate,
                    reader_first,
                }
            },
        )
}

/// A journal as a checkpoint of the golden's whole state would write it
/// (from the header its lineage says), then damaged as the case says.
/// Returns the file and its target header.
fn build_journal(g: &Golden, case: &JournalCase) -> (Vec<u8>, Vec<u8>) {
    let h = g.header();
    let mut target = h.to_vec();
    HField::Version.set(&mut target, VERSION);
    HField::Generation.set(&mut target, HField::Generation.get(h) + 1);
    HField::CheckpointSeq.set(&mut target, g.seq);
    HField::Len.set(&mut target, g.content.len() as u64);
    HField::LogSalt.set(&mut target, HField::LogSalt.get(h) ^ 0x5a5a);
    let from = match case.lineage {
        Lineage::Current => epoch(h).to_vec(),
        Lineage::Previous => prev_epoch(h).to_vec(),
        Lineage::Zero => vec![0; 16],
        Lineage::Other(seed) => random_bytes(16, seed),
    };
    target[104..120].copy_from_slice(&from);
    let new_epoch = random_bytes(16, HField::LogSalt.get(h));
    target[88..104].copy_from_slice(&new_epoch);
    for (f, v) in &case.target {
        let old = f.get(&target);
        f.set(&mut target, v.on(old));
    }
    if case.reseal_target {
        seal(&mut target);
    }
    let n = g.content.len().div_ceil(PAGE as usize);
    let mut list: Vec<u64> = (0..n as u64).collect();
    for (i, v) in &case.page_numbers {
        if !list.is_empty() {
            let k = usize::from(*i) % list.len();
            list[k] = v.on(list[k]);
        }
    }
    let mut body: Vec<u8> = list.iter().flat_map(|p| p.to_le_bytes()).collect();
    body.resize(body.len().next_multiple_of(PAGE as usize), 0);
    for p in 0..n {
        let mut page =
            g.content[p * PAGE as usize..g.content.len().min((p + 1) * PAGE as usize)].to_vec();
        page.resize(PAGE as usize, 0);
        body.extend(page);
    }
    let hash = xxh3(rd(&target, HEADER - 8, 8), &body);
    for (at, bit) in &case.body_flips {
        if !body.is_empty() {
            let k = *at as usize % body.len();
            body[k] ^= 1 << bit;
        }
    }
    let mut j = vec![0u8; PAGE as usize];
    j[..8].copy_from_slice(JOURNAL_MAGIC);
    j[J_FILE_ID..J_FILE_ID + 16].copy_from_slice(&h[16..32]);
    if case.file_id {
        j[J_FILE_ID] ^= 1;
    }
    j[J_TARGET..J_TARGET + HEADER].copy_from_slice(&target);
    let n_pages = case.n_pages.map_or(n as u64, |v| v.on(n as u64));
    wr(&mut j, J_N_PAGES, 8, n_pages);
    let hash = if case.rehash_body {
        xxh3(rd(&target, HEADER - 8, 8), &body)
    } else {
        hash
    };
    wr(&mut j, J_BODY_HASH, 8, hash);
    if case.reseal {
        let sum = xxh3(0, &j[..J_CHECKSUM]);
        wr(&mut j, J_CHECKSUM, 8, sum);
    }
    j.extend(body);
    if let Some(t) = case.truncate {
        j.truncate(t as usize % (j.len() + 1));
    }
    (j, target)
}

/// What recovery must do with a journal.
enum Verdict {
    /// Ignore it (damaged, not for this state, not made from its current
    /// header, or not leading to a valid header one generation on).
    Ignored,
    /// Ignore it, though valid but for this: it grows the state without
    /// holding every page of the growth (not written by a checkpoint).
    GrowthMissing,
    /// Finish the checkpoint: the target header and the pages.
    Finish(Vec<(u64, Vec<u8>)>),
    /// Finish a checkpoint to a state past 16 MiB: not run (the durable
    /// file would be allocated that large).
    TooLarge,
}

/// What recovery must do with journal `j` while the durable header is
/// `current` (journal.rs `read`).
fn model_journal(j: &Image, current: &[u8]) -> Verdict {
    let head = j.read(0, PAGE as usize);
    if j.len < (J_CHECKSUM + 8) as u64
        || &head[..8] != JOURNAL_MAGIC
        || rd(&head, J_CHECKSUM, 8) != xxh3(0, &head[..J_CHECKSUM])
    {
        return Verdict::Ignored;
    }
    let t = &head[J_TARGET..J_TARGET + HEADER];
    // A valid header (its counters leave room) of this state, exactly one
    // generation on, made from the current header (its previous epoch is
    // the current epoch), not going back in sequence numbers.
    if head[J_FILE_ID..J_FILE_ID + 16] != current[16..32]
        || !sealed(t)
        || &t[..8] != DURABLE_MAGIC
        || HField::Version.get(t) > VERSION
        || t[16..32] != current[16..32]
        || !fields_valid(t)
        || !counters_valid(t)
        || HField::Generation.get(t) != HField::Generation.get(current) + 1
        || prev_epoch(t) != epoch(current)
        || HField::CheckpointSeq.get(t) < HField::CheckpointSeq.get(current)
    {
        return Verdict::Ignored;
    }
    let n = rd(&head, J_N_PAGES, 8);
    let max_pages = HField::Len.get(t).div_ceil(PAGE);
    if n > max_pages {
        return Verdict::Ignored;
    }
    // The page list, then the pages, each read whole from the file (an
    // empty body is read without looking at the file's length).
    let list_len = (n * 8).next_multiple_of(PAGE);
    let body_len = list_len + n * PAGE;
    if n > 0 && PAGE + body_len > j.len {
        return Verdict::Ignored;
    }
    let body = j.read(PAGE, body_len as usize);
    if xxh3(rd(t, HEADER - 8, 8), &body) != rd(&head, J_BODY_HASH, 8) {
        return Verdict::Ignored;
    }
    let mut pages = Vec::new();
    for i in 0..n as usize {
        let no = rd(&body, i * 8, 8);
        if no >= max_pages {
            return Verdict::Ignored;
        }
        let at = list_len as usize + i * PAGE as usize;
        pages.push((no, body[at..at + PAGE as usize].to_vec()));
    }
    // A growth past the durable header's length needs every page from the
    // one holding that length's end to the target's end (duplicates count
    // once): a checkpoint writes them all (journal.rs `covers_growth`).
    let (from, to) = (HField::Len.get(current), HField::Len.get(t));
    if to > from {
        let grown = from / PAGE..to.div_ceil(PAGE);
        let listed: std::collections::BTreeSet<u64> = pages
            .iter()
            .map(|(no, _)| *no)
            .filter(|no| grown.contains(no))
            .collect();
        if listed.len() as u64 != grown.end - grown.start {
            return Verdict::GrowthMissing;
        }
    }
    if to > 16 << 20 {
        return Verdict::TooLarge;
    }
    Verdict::Finish(pages)
}

fn run_journal_case(case: &JournalCase) -> Result<(), Failure> {
    let g = &goldens()[case.golden];
    let (journal, target) = build_journal(g, case);
    let journal = Image::full(journal);
    let verdict = model_journal(&journal, g.header());
    let h = g.header();
    let mut files = Files::of(g, false);
    let state = match &verdict {
        Verdict::TooLarge => {
            note(
                "journal",
                "verdict",
                "not run: finishing it makes a durable file past 16 MiB",
            );
            return Ok(());
        }
        Verdict::Ignored | Verdict::GrowthMissing => (g.seq, g.content.clone()),
        Verdict::Finish(pages) => {
            let len = HField::Len.get(&target);
            let d_len = HField::Len.get(h).min(len);
            let mut m = Model::new(&g.durable[PAGE as usize..(PAGE + d_len) as usize]);
            m.len = len;
            for (no, p) in pages {
                let n = (len - no * PAGE).min(PAGE) as usize;
                m.write(no * PAGE, &p[..n]);
            }
            let walk = walk_log(
                &g.wal,
                HField::LogSalt.get(&target),
                HField::CheckpointSeq.get(&target) + 1,
                HField::MaxSize.get(&target),
            );
            for r in &walk.records {
                m.apply(r);
            }
            let seq = HField::CheckpointSeq.get(&target) + walk.records.len() as u64;
            (seq, m.bytes())
        }
    };
    note(
        "journal",
        "verdict",
        match verdict {
            Verdict::Ignored => "ignored",
            Verdict::GrowthMissing => "ignored: it grows the state without the growth's pages",
            _ => "finish the checkpoint",
        },
    );
    let lineage = format!("{:?}", case.lineage);
    note(
        "journal",
        "lineage",
        lineage.split('(').next().unwrap_or_default(),
    );
    huge_max("journal", HField::MaxSize.get(&target));
    files.ckpt = Some(journal);
    let at_limit = at_writer_limit(&files);
    if at_limit {
        note("journal", "counters", "at the writer's limit");
    }
    // A maximum size past 1 TiB may not find the address space for both
    // the live image and the writer's view: `Io` (ENOMEM) is fine then.
    let ex = Expect {
        state: Some(state),
        must_open: HField::MaxSize.get(&target) <= 1 << 40,
        rebuild_exact: true,
        at_limit,
        reader_first: case.reader_first,
        ..Expect::default()
    };
    let c = CaseDir::new();
    files.install(&c);
    exercise("journal", &c, &ex)
}

#[test]
fn hostile_journals() {
    let _report = start("journal");
    proptest!(config(8), |(case in journal_case())| {
        timed("journal", &case, || run_journal_case(&case))?;
    });
}

// ---------------------------------------------------------------------------
// The golden states themselves, undamaged: they open with their state, with
// and without their live image, and the models agree with them.

#[test]
fn golden_states_open_unchanged() {
    let _report = start("golden");
    for (i, g) in goldens().iter().enumerate() {
        let h = g.header();
        assert_eq!(
            model_header(&g.durable, g.durable.len() as u64),
            Ok(g.slot),
            "{}",
            g.name
        );
        if !g.pending {
            let walk = walk_log(
                &g.wal,
                HField::LogSalt.get(h),
                HField::CheckpointSeq.get(h) + 1,
                HField::MaxSize.get(h),
            );
            let mut m = Model::new(&g.durable[PAGE as usize..(PAGE + HField::Len.get(h)) as usize]);
            for r in &walk.records {
                m.apply(r);
            }
            let got = m.bytes();
            assert!(
                got == g.content,
                "{}: the log model gives {} bytes after {} records, the state has {} (first difference at {:?})",
                g.name,
                got.len(),
                walk.records.len(),
                g.content.len(),
                first_difference(&got, &g.content)
            );
            assert_eq!(
                HField::CheckpointSeq.get(h) + walk.records.len() as u64,
                g.seq,
                "{}",
                g.name
            );
            assert!(
                g.ckpt.as_ref().is_none_or(Vec::is_empty),
                "{}: a completed checkpoint leaves an empty journal",
                g.name
            );
        }
        for (live, reader_first) in [(true, false), (false, false), (true, true), (false, true)] {
            let case = MutCase {
                golden: i,
                live,
                mutations: Vec::new(),
                reader_first,
            };
            if let Err(e) = run_mut_case(&case) {
                panic!(
                    "{} (live image {live}, reader first {reader_first}): {e}",
                    g.name
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Reproducers of the bugs found. Each passes once its bug is fixed; those
// of the known bugs still open are `#[ignore]`d (run them with
// `-- --ignored`), the others stay as regression tests.

/// Copies golden `name` into a fresh case directory, with `edit` applied.
fn golden_case(name: &str, edit: impl FnOnce(&Golden, &mut Files)) -> CaseDir {
    install_panic_hook();
    let g = goldens().iter().find(|g| g.name == name).unwrap();
    let mut files = Files::of(g, false);
    edit(g, &mut files);
    let c = CaseDir::new();
    files.install(&c);
    c
}

fn assert_no_panic(c: &CaseDir) {
    let o = opts(&c.live);
    for (who, r) in [
        (
            "Writer::open",
            panic::catch_unwind(AssertUnwindSafe(|| o.open(&c.path).map(drop))),
        ),
        (
            "Reader::open",
            panic::catch_unwind(AssertUnwindSafe(|| o.reader().open(&c.path).map(drop))),
        ),
    ] {
        assert!(r.is_ok(), "{who} panicked");
    }
}

/// log.rs `Log::record_at`: a record whose `total_len` is 0 (and `n_ranges`
/// 0, as in a commit that only grows the state) passes the first checks, and
/// `&buf[8..]` of the empty buffer panics, before any checksum is checked: a
/// zeroed `total_len` in the log panics every open.
#[test]
fn log_record_with_zero_length_panics() {
    let c = golden_case("log-only", |g, f| {
        let off = g.records[2].0; // commit 3: set_len only, no ranges
        f.wal.as_mut().unwrap().write(off + 24, &[0; 8]);
    });
    assert_no_panic(&c);
}

/// log.rs `Log::record_at`: a record with a valid chain whose `total_len`
/// covers less than its header and range list (here 16 bytes, one range)
/// panics reading the range entry past the buffer.
#[test]
fn log_record_shorter_than_its_ranges_panics() {
    let c = golden_case("log-only", |g, f| {
        let h = g.header();
        let mut rec = vec![0u8; 40];
        wr(&mut rec, 8, 4, u64::from(RECORD_MAGIC));
        wr(&mut rec, 12, 4, 1);
        wr(&mut rec, 16, 8, HField::CheckpointSeq.get(h) + 1);
        wr(&mut rec, 24, 8, 16);
        let chain = xxh3(HField::LogSalt.get(h), &rec[8..16]);
        wr(&mut rec, 0, 8, chain);
        f.wal.as_mut().unwrap().write(PAGE, &rec);
    });
    assert_no_panic(&c);
}

/// format.rs `record_len` / log.rs `Log::record_at`: range lengths that sum
/// to just under 2^64 (2^18 ranges of up to 2^46 bytes, with a maximum size
/// of 2^46) make `40 + 16 n + data_len` wrap to `total_len`; slicing the data
/// then panics (in debug builds the addition itself panics).
#[test]
fn log_record_whose_lengths_wrap_panics() {
    let c = golden_case("log-only", |g, f| {
        let mut head = g.durable.clone();
        let h = &mut head[SLOTS[g.slot]..SLOTS[g.slot] + HEADER];
        HField::MaxSize.set(h, MAX_RESERVATION);
        seal(h);
        let (salt, seq) = (HField::LogSalt.get(h), HField::CheckpointSeq.get(h) + 1);
        f.durable = Some(Image::full(head));
        let n: u64 = 1 << 18;
        let mut rec = vec![0u8; (REC + n * RANGE) as usize];
        wr(&mut rec, 8, 4, u64::from(RECORD_MAGIC));
        wr(&mut rec, 12, 4, n);
        wr(&mut rec, 16, 8, seq);
        wr(&mut rec, 24, 8, REC + n * RANGE);
        wr(&mut rec, 32, 8, MAX_RESERVATION);
        for i in 0..n as usize {
            let len = if i == 0 {
                MAX_RESERVATION - 1
            } else {
                MAX_RESERVATION
            };
            wr(&mut rec, 40 + 16 * i + 8, 8, len);
        }
        let chain = xxh3(salt, &rec[8..]);
        wr(&mut rec, 0, 8, chain);
        f.wal.as_mut().unwrap().write(PAGE, &rec);
    });
    assert_no_panic(&c);
}

/// log.rs `Log::open`: a log longer than the address space reserved for it (a
/// sparse file is enough) is mapped past its reservation: the range check
/// in sys/mem.rs panics.
#[test]
fn log_larger_than_its_reservation_panics() {
    let c = golden_case("checkpointed", |_, f| {
        f.wal.as_mut().unwrap().len = LOG_RESERVATION + 2 * PAGE;
    });
    assert_no_panic(&c);
}

/// durable.rs `read_journal`: a journal with a valid header checksum whose
/// target claims a huge length (its maximum size is not checked) may claim
/// up to `len / 4096` pages, and the page list (`n_pages` × 8 bytes) is
/// allocated before anything is read: here 128 TiB, the allocation fails and
/// the process aborts. Run in a child process.
#[test]
fn journal_with_huge_page_count_aborts() {
    let c = golden_case("closed", |g, f| {
        let case = JournalCase {
            golden: 0,
            lineage: Lineage::Current,
            target: vec![
                (HField::MaxSize, V::Abs(1 << 60)),
                (HField::Len, V::Abs(1 << 60)),
            ],
            reseal_target: true,
            n_pages: Some(V::Abs(1 << 44)),
            page_numbers: Vec::new(),
            body_flips: Vec::new(),
            file_id: false,
            rehash_body: false,
            reseal: true,
            truncate: None,
            reader_first: false,
        };
        f.ckpt = Some(Image::full(build_journal(g, &case).0));
    });
    let status = in_child(
        "journal_with_huge_page_count_aborts",
        &c,
        Duration::from_secs(60),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the open crashed or hung: {status:?}"
    );
}

/// Runs `Reader::open_with` and `Writer::open` on `c` in a child process
/// (this test binary, re-run); the child's exit status, `None` on a timeout.
fn in_child(test: &str, c: &CaseDir, limit: Duration) -> Option<std::process::ExitStatus> {
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_open", "--ignored", "--nocapture"])
        .env("MAPSTATE_CHILD_OPEN", c.dir.path())
        .env("MAPSTATE_CHILD_FOR", test)
        .spawn()
        .unwrap();
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The child side of `in_child` (does nothing when run directly).
#[test]
#[ignore = "helper: run by the crash reproducers in a child process"]
fn child_open() {
    let Ok(dir) = std::env::var("MAPSTATE_CHILD_OPEN") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let o = opts(&dir.join("live"));
    let path = dir.join("state");
    println!("reader: {:?}", o.reader().open(&path).map(drop));
    println!("writer: {:?}", o.open(&path).map(drop));
}

/// durable.rs `read_journal` checks the journal's target header only for its
/// checksum, generation, sequence number and `len <= max_size`: a journal
/// (with valid checksums) whose target has an unknown durability mode is
/// applied, the open succeeds, and every later open fails with `Corrupt`:
/// the state is bricked by its own recovery.
#[test]
fn journal_target_is_not_validated() {
    let c = golden_case("closed", |g, f| {
        let case = JournalCase {
            golden: 0,
            lineage: Lineage::Current,
            target: vec![(HField::Durability, V::Abs(7))],
            reseal_target: true,
            n_pages: None,
            page_numbers: Vec::new(),
            body_flips: Vec::new(),
            file_id: false,
            rehash_body: false,
            reseal: true,
            truncate: None,
            reader_first: false,
        };
        f.ckpt = Some(Image::full(build_journal(g, &case).0));
    });
    let o = opts(&c.live);
    let first = o.open(&c.path).map(drop);
    let second = o.open(&c.path).map(drop);
    assert!(
        first.is_err() || second.is_ok(),
        "the first open succeeded, the second fails: {second:?}"
    );
}

/// region.rs `Writer::checkpoint` / `finish_checkpoint`: a checkpoint writes
/// only the pages below the new length, so bytes cut off by a shrink stay in
/// the durable image; a later growth without writes (a record without
/// ranges, no page marked dirty) and a checkpoint make them part of the
/// state again once the live image is rebuilt (after a reboot). No damage
/// needed. (Fixed: a checkpoint writes every page past the durable image's
/// length; and a journal that does not is ignored, see
/// `journal_growth_without_its_pages_shows_stale_bytes`.)
#[test]
fn shrunk_bytes_come_back_after_a_rebuild() {
    let c = CaseDir::new();
    let o = opts(&c.live).create(true).len(3 * PAGE).max_size(1 << 20);
    let mut w = o.open(&c.path).unwrap();
    commit(&mut w, |t| t.write_at(9000, &[0xff]).unwrap());
    w.checkpoint().unwrap();
    commit(&mut w, |t| t.set_len(PAGE).unwrap());
    w.checkpoint().unwrap();
    commit(&mut w, |t| t.set_len(3 * PAGE).unwrap());
    let before = o.reader().open(&c.path).unwrap().snapshot().unwrap();
    assert_eq!(
        before.1[9000], 0,
        "the live image reads the grown range as zeros"
    );
    w.close().unwrap();
    c.remove_live_images();
    let after = o.reader().open(&c.path).unwrap().snapshot().unwrap();
    assert_eq!(
        after.1[9000], 0,
        "after the rebuild, a byte deleted by the shrink is back"
    );
}

/// log.rs `Log::record_at` ends the log at a record with a range past its
/// new length, which is what `Txn::set_len` logs for a shrink (it zeroes the
/// cut-off bytes, `[new_len, old_len)`). Once the live image is gone (a
/// reboot), every commit from the shrink on is lost, even with
/// `Durability::Sync`. (Where the live image survives, every writer open
/// after a shrink finds the log "behind" and makes a full checkpoint.)
/// (Fixed: ranges must lie within the maximum size, and a shrink is logged
/// as a zeroed range, format version 2; the "log-only" golden state has
/// shrinks.)
#[test]
fn commits_from_a_shrink_on_are_lost_after_a_reboot() {
    let c = CaseDir::new();
    // The commits, in a child process that then dies without a checkpoint
    // (a power cut but for the page cache; the commits are synced anyway);
    // the reboot empties tmpfs.
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_commits_a_shrink",
            "--ignored",
            "--nocapture",
        ])
        .env("MAPSTATE_CHILD_COMMITS", c.dir.path())
        .spawn()
        .unwrap();
    assert!(child.wait().unwrap().success(), "the child's commits");
    c.remove_live_images();
    let (seq, bytes) = opts(&c.live)
        .reader()
        .open(&c.path)
        .unwrap()
        .snapshot()
        .unwrap();
    assert!(
        seq == 3 && bytes.len() == PAGE as usize && bytes.starts_with(b"three"),
        "three durable commits, recovered: commit {seq}, {} bytes",
        bytes.len()
    );
}

/// The child side of `commits_from_a_shrink_on_are_lost_after_a_reboot`
/// (does nothing when run directly): three commits, the second a shrink,
/// then an exit without the writer's checkpoint.
#[test]
#[ignore = "helper: run by a reproducer in a child process"]
fn child_commits_a_shrink() {
    let Ok(dir) = std::env::var("MAPSTATE_CHILD_COMMITS") else {
        return;
    };
    let dir = PathBuf::from(dir);
    let o = opts(&dir.join("live"))
        .create(true)
        .len(3 * PAGE)
        .max_size(1 << 20)
        .durability(Durability::Sync);
    let mut w = o.open(dir.join("state")).unwrap();
    commit(&mut w, |t| t.write_at(0, b"one").unwrap());
    commit(&mut w, |t| t.set_len(PAGE).unwrap());
    commit(&mut w, |t| t.write_at(0, b"three").unwrap());
    std::process::exit(0);
}

/// durable.rs `read_header` accepts any `checkpoint_seq` and `generation`:
/// with `checkpoint_seq` 2^63 - 1 the next commit's sequence lock (`2·seq`,
/// live.rs `begin_apply` / `end_apply`) wraps: the commit returns 2^63 and
/// readers see commit 0 (debug builds panic on the overflow). A generation
/// of `u64::MAX` overflows `generation + 1` in `read_journal` and
/// `checkpoint_inner` the same way; in debug builds `Writer::close` then
/// panics, and `Writer::drop` checkpoints again while unwinding: the
/// process aborts.
#[test]
fn huge_checkpoint_seq_wraps_the_sequence_lock() {
    let c = golden_case("checkpointed", |g, f| {
        let mut d = g.durable.clone();
        let h = &mut d[SLOTS[g.slot]..SLOTS[g.slot] + HEADER];
        HField::CheckpointSeq.set(h, (1 << 63) - 1);
        seal(h);
        f.durable = Some(Image::full(d));
    });
    let o = opts(&c.live);
    let Ok(mut w) = o.open(&c.path) else {
        return; // refused: fixed
    };
    let seq = w.begin().commit().unwrap_or(0);
    let mut t = w.begin();
    t.write_at(0, &[1]).unwrap();
    let seq = t.commit().unwrap_or(seq);
    let seen = o.reader().open(&c.path).unwrap().seq();
    assert_eq!(seen, seq, "the commit returned {seq}, readers see {seen}");
}

/// durable.rs `read_journal` opens `NAME-ckpt` with a plain `File::open`:
/// if it is a FIFO, the open blocks until someone writes to it, and so does
/// every `Writer::open` and `Reader::open` (likewise a FIFO as `NAME-wal` or
/// as the live image, for readers). Run in a child process with a timeout.
#[test]
fn fifo_as_journal_hangs_the_open() {
    let c = golden_case("closed", |_, f| f.ckpt = None);
    let fifo = companion(&c.path, "-ckpt");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    let status = in_child(
        "fifo_as_journal_hangs_the_open",
        &c,
        Duration::from_secs(10),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the open hung (killed after 10 s): {status:?}"
    );
}

/// live.rs `Live::log_position` spins until the live image's `LOG_GEN` word
/// (offset 192) is even, and `publish_log` keeps an odd one odd (`g + 1`,
/// `g + 2`): a live image with an odd `LOG_GEN` makes every `Writer::open`
/// (region.rs, recovery) spin forever. A writer killed between the two
/// stores of `publish_log` (end of every commit) leaves exactly that; so
/// does one damaged bit. Run in a child process with a timeout.
#[test]
fn odd_log_position_generation_hangs_the_writer() {
    let c = golden_case("checkpointed", |g, f| {
        let mut live = Image::full(g.live.clone());
        live.write(192, &1u64.to_le_bytes());
        f.live = Some(live);
    });
    let status = in_child(
        "odd_log_position_generation_hangs_the_writer",
        &c,
        Duration::from_secs(10),
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the open hung (killed after 10 s): {status:?}"
    );
}

/// region.rs `Writer`: the dirty-page bitmap has one bit per page of the
/// maximum size (`pages_words`), and `checkpoint_inner` walks all of it
/// (`Writer::open`'s recovery fallback also `fill`s it): with a maximum size
/// of 32 TiB, which the library accepts, that is 1 GiB of memory, and a
/// checkpoint of one page takes about a second. Found as fuzz cases over
/// the 5 s limit.
#[test]
fn checkpoint_cost_follows_the_maximum_size() {
    let c = CaseDir::new();
    let o = opts(&c.live).create(true).len(PAGE).max_size(1 << 45);
    let mut w = o.open(&c.path).unwrap();
    commit(&mut w, |t| t.write_at(0, &[1]).unwrap());
    let start = Instant::now();
    w.checkpoint().unwrap();
    let took = start.elapsed();
    assert!(
        took < Duration::from_millis(250),
        "a one-page checkpoint took {took:?}"
    );
}

/// map.rs `check_size` accepts `MAX_RESERVATION` (64 TiB) as a maximum
/// size, but a writer reserves it twice (the live image and its private
/// view): 128 TiB, the whole user address space. Such a state cannot be
/// created or opened for writing (`Io`, ENOMEM), though its files are
/// created.
#[test]
fn the_largest_maximum_size_cannot_be_written() {
    let c = CaseDir::new();
    let o = opts(&c.live)
        .create(true)
        .len(PAGE)
        .max_size(MAX_RESERVATION);
    let r = o.open(&c.path).map(drop);
    assert!(r.is_ok(), "{:?}", r.map_err(|e| label(&e)));
}

/// durable.rs / journal.rs / recovery.rs: recovery finished a journal whose
/// target grows the state past the durable image's length without pages
/// for the growth (hashes valid: only a forged journal, as a checkpoint
/// writes every page past the durable length), and the bytes in the growth
/// then depended on who opened first: a writer finishing it read them from
/// the durable file (stale bytes past its old length, here those a shrink
/// left), a reader building the live image from the journal left them
/// zero; after a writer's open and a reboot the reader's zeros turned into
/// the stale bytes. (Fixed, bug "stale-durable-bytes": journal.rs
/// `covers_growth`, such a journal is invalid and ignored, by readers and
/// writers alike. Before the fix the first reader showed 0 at the byte and
/// the rebuilt state 0xee.)
#[test]
fn journal_growth_without_its_pages_shows_stale_bytes() {
    // The "closed" golden's durable file holds 0xee at 4·4096 + 10, past its
    // length of 4097 (from before its shrink).
    let at = 4 * PAGE as usize + 10;
    let g = goldens().iter().find(|g| g.name == "closed").unwrap();
    let case = JournalCase {
        golden: 0,
        lineage: Lineage::Current,
        target: vec![(HField::Len, V::Abs(5 * PAGE))],
        reseal_target: true,
        n_pages: None,
        page_numbers: Vec::new(),
        body_flips: Vec::new(),
        file_id: false,
        rehash_body: false,
        reseal: true,
        truncate: None,
        reader_first: true,
    };
    let journal = Image::full(build_journal(g, &case).0);
    assert_eq!(g.durable[PAGE as usize + at], 0xee);
    // Pages 0 and 1 only, for a growth from 4097 bytes to 5 pages.
    assert!(
        matches!(model_journal(&journal, g.header()), Verdict::GrowthMissing),
        "the model ignores the journal for its missing pages alone"
    );
    let c = golden_case("closed", |_, f| f.ckpt = Some(journal));
    // A reader builds the live image (the journal ignored); a writer then
    // opens (and trusts that image); after a reboot the image is built from
    // the durable file.
    let o = opts(&c.live);
    let first = o.reader().open(&c.path).unwrap().snapshot().unwrap();
    drop(o.open(&c.path).unwrap());
    c.remove_live_images();
    let rebuilt = o.reader().open(&c.path).unwrap().snapshot().unwrap();
    assert!(
        first == rebuilt,
        "the state changed across a writer's open and a reboot, with no commit: byte {at} was {:#x?}, is {:#x?}",
        first.1.get(at),
        rebuilt.1.get(at)
    );
    assert!(
        first == (g.seq, g.content.clone()),
        "the journal is ignored: the state is the golden's, not commit {} of {} bytes",
        first.0,
        first.1.len()
    );
}

/// durable.rs `check_counters` accepts a `checkpoint_seq` or a `generation`
/// of up to 2^62 (their doubles fit the sequence lock), and the writer
/// committed past that, but a checkpoint whose target is past it fails the
/// same check when `journal::read` reads its journal back ("the checkpoint
/// journal just written does not read back"): from a header at the limit,
/// or a live image whose sequence number is there, commits succeeded and
/// every checkpoint failed, `close` with it (and, once the log was full,
/// every commit). Found with the limits added to the fuzzing's values.
/// (Fixed, bug "counter-limit": writer.rs `open_with` refuses, with
/// `Corrupt` naming the limit, a state whose sequence number or generation
/// is 2^61 or more once recovered; readers still open it. Before the fix
/// the writer's open succeeded at 2^61 and 2^62 alike.) Just below, the
/// writer opens, commits and closes; the commit or the close's checkpoint
/// takes the state to 2^61, and the next writer's open is refused.
#[test]
fn commits_past_the_counter_limit_cannot_be_checkpointed() {
    let g = goldens().iter().find(|g| g.name == "checkpointed").unwrap();
    let refusal = |who: &str, r: mapstate::Result<Writer>| match r {
        Err(Error::Corrupt { what, .. }) if what.contains("near its limit of 2^62") => {}
        Err(e) => panic!("{who}: refused with {e:?}, expected Corrupt at the limit of 2^62"),
        Ok(w) => panic!("{who}: the writer opened at commit {}", w.seq()),
    };
    for field in [HField::CheckpointSeq, HField::Generation] {
        for v in [WRITER_LIMIT - 1, WRITER_LIMIT, MAX_COUNTER] {
            let what = format!("{field:?} = {v:#x}");
            let c = golden_case("checkpointed", |g, f| {
                let mut d = g.durable.clone();
                let h = &mut d[SLOTS[g.slot]..SLOTS[g.slot] + HEADER];
                field.set(h, v);
                seal(h);
                f.durable = Some(Image::full(d));
                // Trusted where only the generation changed: no checkpoint
                // at the writer's open.
                f.live = Some(Image::full(g.live.clone()));
            });
            let o = opts(&c.live);
            // Readers take counters up to 2^62: with the sequence number
            // changed, no log record follows it.
            let want = if field == HField::CheckpointSeq {
                (v, g.content.len())
            } else {
                (g.seq, g.content.len())
            };
            let (seq, bytes) = o.reader().open(&c.path).unwrap().snapshot().unwrap();
            assert_eq!((seq, bytes.len()), want, "{what}: the reader");
            if v >= WRITER_LIMIT {
                refusal(&what, o.open(&c.path));
                refusal(&format!("{what}, again"), o.open(&c.path));
                let again = o.reader().open(&c.path).unwrap().snapshot().unwrap();
                assert_eq!(again, (seq, bytes), "{what}: the reader after the refusals");
                continue;
            }
            let mut w = o.open(&c.path).unwrap();
            let mut t = w.begin();
            t.write_at(0, &[!bytes[0]]).unwrap();
            let next = t.commit().unwrap();
            assert_eq!(next, want.0 + 1, "{what}");
            w.close().unwrap();
            let after = o.reader().open(&c.path).unwrap().snapshot().unwrap();
            assert_eq!(
                (after.0, after.1[0]),
                (next, !bytes[0]),
                "{what}: after the close"
            );
            refusal(&format!("{what}, reopened"), o.open(&c.path));
        }
    }
}

/// log.rs `Log::restart` (after every checkpoint) cleared the first
/// record's header at `PAGE..PAGE + 40` of the log's mapping without
/// checking that the log maps that far: a log file shorter than two pages
/// (one damaged by truncation) maps one page, and the first checkpoint, at
/// the writer's open (the live image is rebuilt), at a commit that does not
/// fit or at `close`, wrote into the unmapped part of the reservation:
/// SIGSEGV, the whole process gone. Found by `mutated_states` (a log
/// truncated to 5046 bytes), while the code was new; fixed since (a log too
/// short for a record has none to clear). Run in a child process.
#[test]
fn one_page_log_crashes_the_checkpoint() {
    for len in [PAGE, 2 * PAGE - 8] {
        let c = golden_case("closed", |_, f| f.wal.as_mut().unwrap().truncate(len));
        let status = in_child(
            "one_page_log_crashes_the_checkpoint",
            &c,
            Duration::from_secs(60),
        );
        assert!(
            status.is_some_and(|s| s.success()),
            "a log of {len} bytes: the open crashed or hung: {status:?}"
        );
        // The writer's open checkpointed (the reader had rebuilt the live
        // image), restarting the log.
        let g = goldens().iter().find(|g| g.name == "closed").unwrap();
        let (d, d_len) = first_page(&c.path);
        let slot = model_header(&d, d_len).unwrap();
        assert_eq!(
            HField::Generation.get(&d[SLOTS[slot]..SLOTS[slot] + HEADER]),
            HField::Generation.get(g.header()) + 1,
            "a log of {len} bytes: no checkpoint at the writer's open"
        );
    }
}
