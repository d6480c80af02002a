//! The durable image (the file the user names): a header page with two
//! checksummed header slots, then the state's bytes as of the last
//! checkpoint. Only checkpoints change it, through the checkpoint journal
//! (`store::journal`), so it is consistent on disk at every moment.

use std::fs::File;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::format::{self, DurableHeader, HEADER_SLOTS, PAGE, VERSION};
use crate::fs::{self, Owner, pread, pwrite};
use crate::options::Durability;
use crate::sys;

/// The durable image, opened.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// The newest valid header.
    pub(crate) header: DurableHeader,
    /// Who owns the state (every other file of it must match).
    pub(crate) owner: Owner,
    /// Which slot holds it.
    slot: usize,
}

/// Reads and validates the header of a durable image.
#[allow(clippy::too_many_lines)] // one check after another, each with its own error
pub(crate) fn read_header(file: &File, path: &Path) -> Result<(DurableHeader, usize)> {
    let file_len = fs::file_len(file, path)?;
    let hsize = std::mem::size_of::<DurableHeader>() as u64;
    if file_len < HEADER_SLOTS[1] + hsize {
        if file_len >= 8 {
            let mut magic = [0u8; 8];
            pread(file, path, &mut magic, 0)?;
            if magic != format::DURABLE_MAGIC {
                return Err(Error::Foreign {
                    path: path.into(),
                    what: "no mapstate header".into(),
                });
            }
        } else if file_len > 0 {
            return Err(Error::Foreign {
                path: path.into(),
                what: format!("only {file_len} bytes"),
            });
        }
        return Err(Error::Truncated {
            path: path.into(),
            len: file_len,
            expected: PAGE,
        });
    }
    let mut best: Option<(DurableHeader, usize)> = None;
    let mut saw_magic = false;
    let mut newest_version = 0;
    for (i, &off) in HEADER_SLOTS.iter().enumerate() {
        let mut h = DurableHeader::new_zeroed();
        pread(file, path, h.as_mut_bytes(), off)?;
        if h.magic != format::DURABLE_MAGIC {
            continue;
        }
        saw_magic = true;
        if !h.checksum_ok() {
            continue;
        }
        newest_version = newest_version.max(h.version.get());
        if h.version.get() > VERSION {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|(b, _)| h.generation.get() > b.generation.get())
        {
            best = Some((h, i));
        }
    }
    if newest_version > VERSION {
        return Err(Error::TooNew {
            path: path.into(),
            version: newest_version,
            supported: VERSION,
        });
    }
    let Some((h, slot)) = best else {
        return Err(if saw_magic {
            Error::Corrupt {
                path: path.into(),
                what: "both header copies fail their checksum".into(),
            }
        } else {
            Error::Foreign {
                path: path.into(),
                what: "no mapstate header".into(),
            }
        });
    };
    check_fields(&h).map_err(|what| Error::Corrupt {
        path: path.into(),
        what,
    })?;
    let expected = PAGE + h.len.get();
    if file_len < expected {
        return Err(Error::Truncated {
            path: path.into(),
            len: file_len,
            expected,
        });
    }
    check_counters(&h).map_err(|what| Error::Corrupt {
        path: path.into(),
        what,
    })?;
    Ok((h, slot))
}

/// The field checks every header must pass (a checksum only says the bytes
/// are the ones written, not that they make sense).
pub(crate) fn check_fields(h: &DurableHeader) -> std::result::Result<(), String> {
    if u64::from(h.page_size.get()) != PAGE {
        return Err(format!("page size {} (expected {PAGE})", h.page_size.get()));
    }
    let max = h.max_size.get();
    if max > fs::MAX_RESERVATION || max % PAGE != 0 || max == 0 {
        return Err(format!("maximum size {max} is invalid"));
    }
    if h.len.get() > max {
        return Err(format!(
            "length {} exceeds the maximum size {max}",
            h.len.get()
        ));
    }
    if Durability::from_code(h.durability.get(), h.durability_arg.get()).is_none() {
        return Err(format!("unknown durability mode {}", h.durability.get()));
    }
    Ok(())
}

/// The largest sequence number and generation a file may hold: sequence
/// numbers are doubled in the sequence lock and generations count up, so
/// both must leave room. No state reaches it by committing (2^62 commits at
/// a billion a second take 146 years): a writer refuses to open a state
/// past half of it and to commit or checkpoint past it
/// ([`at_counter_limit`]), so a file that holds such a number was altered.
pub(crate) const COUNTER_LIMIT: u64 = 1 << 62;

pub(crate) fn check_counters(h: &DurableHeader) -> std::result::Result<(), String> {
    if h.checkpoint_seq.get() > COUNTER_LIMIT || h.generation.get() > COUNTER_LIMIT {
        return Err("sequence number or generation out of range".into());
    }
    Ok(())
}

/// The error of a commit or checkpoint that would take the sequence number
/// or the generation (`what`) of the state at `path` past [`COUNTER_LIMIT`].
pub(crate) fn at_counter_limit(path: &Path, what: &str) -> Error {
    Error::Corrupt {
        path: path.into(),
        what: format!(
            "the {what} is near its limit of 2^62, which no state reaches by \
             committing: the state's files were altered; restore a backup"
        ),
    }
}

/// The header of a new state holding commit `seq` (0 for a new, empty
/// state) with `len` bytes: a new identity ([`renew_identity`]).
pub(crate) fn new_header(
    seq: u64,
    len: u64,
    max_size: u64,
    durability: Durability,
) -> DurableHeader {
    let mut h = DurableHeader::new_zeroed();
    h.magic = format::DURABLE_MAGIC;
    h.page_size = U32::new(PAGE as u32);
    h.checkpoint_seq = U64::new(seq);
    h.len = U64::new(len);
    h.max_size = U64::new(max_size);
    let (code, arg) = durability.to_code();
    h.durability = U64::new(code);
    h.durability_arg = U64::new(arg);
    renew_identity(&mut h);
    h
}

/// Makes `h` the header of a new state with the same bytes: the current
/// version, generation 1, and a new file id, epoch and log salt, so that
/// nothing made for another state (a log, a journal, a live image, a
/// position published in one) is ever believed for it.
pub(crate) fn renew_identity(h: &mut DurableHeader) {
    h.version = U32::new(VERSION);
    sys::random_bytes(&mut h.file_id);
    h.generation = U64::new(1);
    h.log_salt = U64::new(sys::random_u64());
    sys::random_bytes(&mut h.epoch);
    h.prev_epoch = format::NO_EPOCH;
    h.seal();
}

/// Ends a new durable image that `file` (unnamed, or under a temporary
/// name) holds the data of: `h` into the first header slot, then
/// `fdatasync`. The caller names it.
pub(crate) fn finish_new(file: &File, path: &Path, h: &DurableHeader) -> Result<()> {
    pwrite(file, path, h.as_bytes(), HEADER_SLOTS[0])?;
    fs::fdatasync(file, path)
}

impl Durable {
    /// Opens an existing durable image and reads its header.
    pub(crate) fn open(file: File, path: &Path) -> Result<Self> {
        let (header, slot) = read_header(&file, path)?;
        let owner = Owner::of(&file, path)?;
        Ok(Self {
            file,
            path: path.into(),
            header,
            owner,
            slot,
        })
    }

    /// The durable image again, its header read anew (another process may
    /// have checkpointed since), through a new descriptor.
    pub(crate) fn reread(d: &Durable) -> Result<Self> {
        let file = d
            .file
            .try_clone()
            .map_err(|e| Error::io("dup", &d.path, e))?;
        Self::open(file, &d.path)
    }

    /// Writes the first header and the (zeroed, allocated) data area of a new
    /// state into an empty file, then syncs it.
    pub(crate) fn initialize(
        file: File,
        path: &Path,
        len: u64,
        max_size: u64,
        durability: Durability,
    ) -> Result<Self> {
        let h = new_header(0, len, max_size, durability);
        fs::allocate(path, &file, 0, PAGE + len)?;
        pwrite(&file, path, h.as_bytes(), HEADER_SLOTS[0])?;
        let owner = Owner::of(&file, path)?;
        let mut d = Self {
            file,
            path: path.into(),
            header: h,
            owner,
            slot: 0,
        };
        d.sync()?;
        Ok(d)
    }

    /// The header that follows the current one at a checkpoint of the state
    /// as of commit `seq` with length `len`: the next generation, a new
    /// epoch (the current one becomes its `prev_epoch`) and a new log salt.
    pub(crate) fn next_header(&self, seq: u64, len: u64) -> DurableHeader {
        let mut h = self.header;
        h.version = U32::new(VERSION);
        h.generation = U64::new(h.generation.get() + 1);
        h.checkpoint_seq = U64::new(seq);
        h.len = U64::new(len);
        h.log_salt = U64::new(sys::random_u64());
        h.prev_epoch = h.epoch;
        sys::random_bytes(&mut h.epoch);
        h.seal();
        h
    }

    /// Whether the header predates epochs (format version 1): the writer's
    /// first checkpoint gives it one.
    pub(crate) fn lacks_epoch(&self) -> bool {
        self.header.epoch == format::NO_EPOCH
    }

    /// `fdatasync` of the image.
    pub(crate) fn sync(&mut self) -> Result<()> {
        fs::fdatasync(&self.file, &self.path)
    }

    /// Writes `h` into the slot not holding the current header (the caller syncs).
    pub(crate) fn write_header(&mut self, mut h: DurableHeader) -> Result<()> {
        h.seal();
        let slot = 1 - self.slot;
        pwrite(&self.file, &self.path, h.as_bytes(), HEADER_SLOTS[slot])?;
        self.header = h;
        self.slot = slot;
        Ok(())
    }

    /// Reads data bytes at `off` of the state.
    pub(crate) fn read_data(&self, off: u64, buf: &mut [u8]) -> Result<()> {
        pread(&self.file, &self.path, buf, PAGE + off)
    }

    /// The ranges of the state's bytes `0..len` that the file holds data for
    /// (state offsets): the rest reads as zeros (holes, or blocks allocated
    /// but never written), so copying it can be skipped.
    pub(crate) fn data_ranges(&self, len: u64) -> Result<Vec<(u64, u64)>> {
        let segments = sys::data_segments(sys::fd_of(&self.file), PAGE, PAGE + len)
            .map_err(|e| Error::io("lseek(SEEK_DATA)", &self.path, e))?;
        Ok(segments
            .into_iter()
            .map(|(s, e)| (s - PAGE, e - s))
            .collect())
    }

    /// Copies this image as of its header into `file` (a new, empty file
    /// beside `path`) as a new state: the same bytes, length, maximum size,
    /// durability and checkpoint sequence number, a new identity
    /// ([`renew_identity`]); synced, not named.
    pub(crate) fn copy_as_new(&self, file: &File, path: &Path) -> Result<()> {
        let len = self.header.len.get();
        fs::allocate(path, file, 0, PAGE + len)?;
        for (off, n) in self.data_ranges(len)? {
            sys::copy_range(
                sys::fd_of(&self.file),
                PAGE + off,
                sys::fd_of(file),
                PAGE + off,
                n,
            )
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => Error::Truncated {
                    path: self.path.clone(),
                    len: fs::file_len(&self.file, &self.path).unwrap_or(0),
                    expected: PAGE + len,
                },
                _ => Error::io("copy_file_range", path, e),
            })?;
        }
        let mut h = self.header;
        renew_identity(&mut h);
        finish_new(file, path, &h)
    }

    /// Writes data bytes at `off` of the state.
    pub(crate) fn write_data(&self, off: u64, buf: &[u8]) -> Result<()> {
        pwrite(&self.file, &self.path, buf, PAGE + off)
    }

    /// Makes sure the data area holds `len` bytes, with blocks allocated
    /// (the image is fully allocated up to the header's length already).
    pub(crate) fn reserve(&self, len: u64) -> Result<()> {
        fs::allocate(
            &self.path,
            &self.file,
            PAGE + self.header.len.get(),
            PAGE + len,
        )
    }
}
