//! On-disk and in-memory formats: the durable header, the live image header,
//! log records and checkpoint journals. All integers are little-endian
//! (zerocopy's `little_endian` types), so the files are portable by
//! construction; every structure carries a checksum (xxh3-64).

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Size of the header page that starts every mapstate file; data follows it.
pub(crate) const PAGE: u64 = 4096;

/// The format version this build writes and the newest it reads. Version 2
/// added the epochs of the durable header (version 1 headers read as
/// having none, and a writer's first checkpoint upgrades them).
pub(crate) const VERSION: u32 = 2;

/// An epoch: the random identity of one durable header (one checkpoint, or
/// one rebuild after a power cut). Everything recovery or a reader trusts
/// names the epoch it derives from; what names another is not trusted.
pub(crate) type Epoch = [u8; 16];

/// The epoch of a version 1 header (there was none).
pub(crate) const NO_EPOCH: Epoch = [0; 16];

/// Magic of the durable image.
pub(crate) const DURABLE_MAGIC: [u8; 8] = *b"MAPSTATE";
/// Magic of the log file.
pub(crate) const LOG_MAGIC: [u8; 8] = *b"MAPSTLOG";
/// Magic of the live image.
pub(crate) const LIVE_MAGIC: [u8; 8] = *b"MAPSTLIV";
/// Magic of the checkpoint journal.
pub(crate) const JOURNAL_MAGIC: [u8; 8] = *b"MAPSTJNL";
/// Magic of a log record.
pub(crate) const RECORD_MAGIC: u32 = u32::from_le_bytes(*b"RCD1");

/// Offsets of the two header slots in the durable image's first page. A
/// header update writes the slot not holding the newest valid header, so a
/// torn header write leaves the other slot intact.
pub(crate) const HEADER_SLOTS: [u64; 2] = [0, 2048];

/// Offset in the durable image's first page, between the two header slots,
/// of the handover counter (`AtomicU64`; see `store::handover`): advisory,
/// never synced, not part of either header.
pub(crate) const HANDOVERS: u64 = 1024;
const _: () = assert!(
    HANDOVERS >= HEADER_SLOTS[0] + std::mem::size_of::<DurableHeader>() as u64
        && HANDOVERS + 8 <= HEADER_SLOTS[1]
);

/// `DurableHeader::durability` of `Durability::PageCache`.
pub(crate) const DURABILITY_PAGE_CACHE: u64 = 0;
/// `DurableHeader::durability` of `Durability::Periodic` (the interval in
/// milliseconds in `durability_arg`).
pub(crate) const DURABILITY_PERIODIC: u64 = 1;
/// `DurableHeader::durability` of `Durability::Sync`.
pub(crate) const DURABILITY_SYNC: u64 = 2;

/// xxh3-64 of `bytes`, seeded.
pub(crate) fn hash(seed: u64, bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(bytes, seed)
}

/// The durable image's header (one of two slots in page 0).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct DurableHeader {
    pub magic: [u8; 8],
    pub version: U32,
    pub page_size: U32,
    /// Random identity of this state, shared by its log and live image.
    pub file_id: [u8; 16],
    /// Incremented at every header write; the valid slot with the highest wins.
    pub generation: U64,
    /// Every commit up to this sequence number is in the data area.
    pub checkpoint_seq: U64,
    /// The state's length in bytes as of `checkpoint_seq`.
    pub len: U64,
    /// The largest length the state may grow to.
    pub max_size: U64,
    /// Seed of the log records written after `checkpoint_seq`.
    pub log_salt: U64,
    /// The durability mode chosen at creation (`DURABILITY_*`).
    pub durability: U64,
    /// Its parameter (the interval of `Periodic`, in milliseconds).
    pub durability_arg: U64,
    /// This header's epoch: random, new at every header write.
    pub epoch: Epoch,
    /// The epoch of the header this one replaced (zeros for the first).
    pub prev_epoch: Epoch,
    /// xxh3 of everything above.
    pub checksum: U64,
}

impl DurableHeader {
    pub(crate) fn seal(&mut self) {
        let n = std::mem::size_of::<Self>() - 8;
        self.checksum = U64::new(hash(0, &self.as_bytes()[..n]));
    }

    pub(crate) fn checksum_ok(&self) -> bool {
        let n = std::mem::size_of::<Self>() - 8;
        self.checksum.get() == hash(0, &self.as_bytes()[..n])
    }
}

/// The log file's header (page 0 of `NAME-wal`); records follow at [`PAGE`].
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct LogHeader {
    pub magic: [u8; 8],
    pub version: U32,
    pub reserved0: U32,
    pub file_id: [u8; 16],
    pub checksum: U64,
}

impl LogHeader {
    pub(crate) fn new(file_id: [u8; 16]) -> Self {
        let mut h = Self {
            magic: LOG_MAGIC,
            version: U32::new(VERSION),
            reserved0: U32::new(0),
            file_id,
            checksum: U64::new(0),
        };
        h.checksum = U64::new(hash(0, &h.as_bytes()[..32]));
        h
    }

    pub(crate) fn valid_for(&self, file_id: &[u8; 16]) -> bool {
        self.magic == LOG_MAGIC
            && self.checksum.get() == hash(0, &self.as_bytes()[..32])
            && &self.file_id == file_id
    }
}

/// The header of one log record: one commit. Followed by `n_ranges`
/// [`RangeEntry`]s, then the bytes of each range in order, then padding to 8.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct RecordHeader {
    /// xxh3 of the rest of the record (bytes 8 to `total_len`) seeded with
    /// the previous record's `chain` (the log salt for the first record after
    /// a checkpoint): a torn, stale or foreign record breaks the chain and
    /// ends the log.
    pub chain: U64,
    pub magic: U32,
    pub n_ranges: U32,
    /// The commit's sequence number: one more than the previous record's.
    pub seq: U64,
    /// Bytes of the whole record including this header and padding.
    pub total_len: U64,
    /// The state's length after this commit.
    pub new_len: U64,
}

/// Bit 63 of the first [`RangeEntry`]'s `len`: the range is zeroed (a
/// shrink), and has no bytes in the record.
pub(crate) const ZERO_RANGE: u64 = 1 << 63;

/// One changed byte range of a commit. The first may be a zeroed range
/// (`len` with [`ZERO_RANGE`] set), applied before the others.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct RangeEntry {
    pub off: U64,
    pub len: U64,
}

pub(crate) const RECORD_HEADER: usize = std::mem::size_of::<RecordHeader>();
pub(crate) const RANGE_ENTRY: usize = std::mem::size_of::<RangeEntry>();

/// Bytes a record with these ranges occupies in the log.
pub(crate) fn record_len(n_ranges: usize, data: u64) -> u64 {
    let raw = (RECORD_HEADER + n_ranges * RANGE_ENTRY) as u64 + data;
    raw.div_ceil(8) * 8
}

/// Byte offsets of the live image header's fields. The header is page 0 of
/// the live image; atomics are shared by every process that maps it.
pub(crate) mod live {
    // Bytes 0..8: magic; 8..12: format version; 16..32: the durable
    // image's file_id; 32..48: the boot id of the boot that built it.
    /// `u64` set to 1 once the image is fully built (before that, rebuild).
    pub(crate) const READY: u64 = 48;
    /// `u64` set to 1 when the image was built from the files on disk (after
    /// a reboot or a power cut) rather than kept by a writer: the next writer
    /// starts a new epoch (a checkpoint) before it appends to the log, so
    /// that no record a power cut left past the log's valid end can ever
    /// chain onto a new one.
    pub(crate) const REBUILT: u64 = 56;
    /// `AtomicU64` sequence lock: twice the last applied commit's sequence
    /// number; odd while the writer applies the next one.
    pub(crate) const SEQLOCK: u64 = 64;
    /// `AtomicU64` the state's length, changed only inside the sequence lock.
    pub(crate) const LEN: u64 = 72;
    /// `AtomicU32` pid of the writer holding the lock (0: none).
    pub(crate) const WRITER_PID: u64 = 80;
    /// `AtomicU64` the durability the writer commits with, set before
    /// `WRITER_PID` (0: none or unknown; else the durable header's code
    /// plus one in bits 56..64, its argument in bits 0..56).
    pub(crate) const WRITER_DURABILITY: u64 = 88;
    /// `AtomicU64` the inode of the writer's pid namespace
    /// (`/proc/self/ns/pid`), set before `WRITER_PID`: a reader in another
    /// namespace knows the pid means nothing there.
    pub(crate) const WRITER_PIDNS: u64 = 96;
    /// `AtomicU64` set to 1 by a writer that closed with everything it
    /// wrote to the state's files synced; 0 while a writer runs and in an
    /// image just built. A writer that opens on 0 syncs what the previous
    /// one may have left in the page cache (it was killed, or its sync
    /// failed) before building on it.
    pub(crate) const FILES_SYNCED: u64 = 104;
    /// `AtomicU64` set to 1 when a new image replaced this one (a writer,
    /// or a reader that builds for everyone, found it damaged or out of
    /// date); `WRITER_PID` is cleared at the same time and waiters are
    /// woken. Processes that still map it fail with
    /// `Error::WriterNotVisible` rather than read a state no writer updates.
    pub(crate) const RETIRED: u64 = 112;
    /// `AtomicU32` futex word: bits 0..31 count the commits published and
    /// the wake-alls (modulo 2^31), bit 31 set by waiters before they sleep
    /// (the writer clears it when it wakes them, so a dead waiter costs one
    /// wake-up). See `notify::announce` and `notify::advance`.
    pub(crate) const NOTIFY: u64 = 128;
    /// `AtomicU64` sequence lock of the log position below (odd while it changes).
    pub(crate) const LOG_GEN: u64 = 192;
    /// `AtomicU64` sequence number of the last record before `LOG_HEAD`.
    pub(crate) const LOG_SEQ: u64 = 200;
    /// `AtomicU64` offset in the log where the record after `LOG_SEQ` starts.
    pub(crate) const LOG_HEAD: u64 = 208;
    /// `AtomicU64` the chain value that record is seeded with.
    pub(crate) const LOG_CHAIN: u64 = 216;
    /// Two `AtomicU64`s (16 bytes): the epoch of the durable header whose
    /// log the position above belongs to. Changed only under `LOG_GEN`, at
    /// a checkpoint or when a writer opens.
    pub(crate) const LOG_EPOCH: u64 = 224;
    /// The change ring: `RING_ENTRIES` entries of `RING_ENTRY` bytes, the
    /// entry of commit `s` at index `s % RING_ENTRIES`. An entry is eight
    /// `AtomicU64`s: its sequence number (`u64::MAX` while being written),
    /// the number of ranges with bit 63 set if they were widened, then up to
    /// three `(offset, length)` pairs.
    pub(crate) const RING: u64 = 256;
    /// Entries in the change ring.
    pub(crate) const RING_ENTRIES: u64 = 56;
    /// Bytes per ring entry.
    pub(crate) const RING_ENTRY: u64 = 64;
    /// Ranges an entry holds exactly.
    pub(crate) const RING_RANGES: usize = 3;

    // The whole header, ring included, fits in the header page.
    const _: () = assert!(RING + RING_ENTRIES * RING_ENTRY <= super::PAGE);
}

/// The checkpoint journal's header (`NAME-ckpt`): the pages a checkpoint is
/// about to write into the durable image, so that a power cut in the middle
/// can be finished on recovery. Followed by `n_pages` little-endian `u64`
/// page numbers, then the pages.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Clone, Copy, Debug)]
#[repr(C)]
pub(crate) struct JournalHeader {
    pub magic: [u8; 8],
    pub file_id: [u8; 16],
    /// The header the durable image gets once the pages are in place.
    pub target: DurableHeader,
    pub n_pages: U64,
    /// xxh3 of the page list and the pages, seeded with the fields above.
    pub body_hash: U64,
    pub checksum: U64,
}

impl JournalHeader {
    pub(crate) fn seal(&mut self) {
        let n = std::mem::size_of::<Self>() - 8;
        self.checksum = U64::new(hash(0, &self.as_bytes()[..n]));
    }

    pub(crate) fn checksum_ok(&self) -> bool {
        let n = std::mem::size_of::<Self>() - 8;
        self.magic == JOURNAL_MAGIC && self.checksum.get() == hash(0, &self.as_bytes()[..n])
    }
}

/// The boot id of the running kernel (`/proc/sys/kernel/random/boot_id`),
/// as 16 bytes; zeros if unavailable.
pub(crate) fn boot_id() -> [u8; 16] {
    let mut out = [0u8; 16];
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") {
        let hex: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        for (i, pair) in hex.chunks(2).take(16).enumerate() {
            let s = std::str::from_utf8(pair).unwrap_or("0");
            out[i] = u8::from_str_radix(s, 16).unwrap_or(0);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::FromZeros;

    #[test]
    fn layouts_are_stable() {
        assert_eq!(std::mem::size_of::<DurableHeader>(), 128);
        assert_eq!(std::mem::size_of::<RecordHeader>(), 40);
        assert_eq!(std::mem::size_of::<RangeEntry>(), 16);
        assert!(std::mem::size_of::<JournalHeader>() < 512);
        assert_eq!(record_len(1, 64), 40 + 16 + 64);
        assert_eq!(record_len(1, 1), 64);
    }

    #[test]
    fn header_checksum_detects_a_flipped_bit() {
        let mut h = DurableHeader::new_zeroed();
        h.magic = DURABLE_MAGIC;
        h.seal();
        assert!(h.checksum_ok());
        h.as_mut_bytes()[20] ^= 1;
        assert!(!h.checksum_ok());
    }
}
