//! The durable image (the file the user names): a header page with two
//! checksummed header slots, then the state's bytes as of the last
//! checkpoint. Only checkpoints change it, through the checkpoint journal
//! (`NAME-ckpt`), so it is consistent on disk at every moment.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::{U32, U64};
use zerocopy::{FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::format::{self, DurableHeader, HEADER_SLOTS, JournalHeader, PAGE, VERSION};
use crate::sys;

/// The durable image, opened.
#[derive(Debug)]
pub(crate) struct Durable {
    pub(crate) file: File,
    pub(crate) path: PathBuf,
    /// The newest valid header.
    pub(crate) header: DurableHeader,
    /// Which slot holds it.
    slot: usize,
}

/// Path of a companion file: `NAME-wal`, `NAME-ckpt`.
pub(crate) fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

fn pread(file: &File, path: &Path, buf: &mut [u8], off: u64) -> Result<()> {
    file.read_exact_at(buf, off)
        .map_err(|e| Error::io("pread", path, e))
}

fn pwrite(file: &File, path: &Path, buf: &[u8], off: u64) -> Result<()> {
    file.write_all_at(buf, off)
        .map_err(|e| Error::io("pwrite", path, e))
}

/// Reads and validates the header of a durable image.
#[allow(clippy::too_many_lines)] // one check after another, each with its own error
pub(crate) fn read_header(file: &File, path: &Path) -> Result<(DurableHeader, usize)> {
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .len();
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
fn check_fields(h: &DurableHeader) -> std::result::Result<(), String> {
    if u64::from(h.page_size.get()) != PAGE {
        return Err(format!("page size {} (expected {PAGE})", h.page_size.get()));
    }
    let max = h.max_size.get();
    if max > crate::MAX_RESERVATION || max % PAGE != 0 || max == 0 {
        return Err(format!("maximum size {max} is invalid"));
    }
    if h.len.get() > max {
        return Err(format!(
            "length {} exceeds the maximum size {max}",
            h.len.get()
        ));
    }
    if crate::region::Durability::from_code(h.durability.get(), h.durability_arg.get()).is_none() {
        return Err(format!("unknown durability mode {}", h.durability.get()));
    }
    Ok(())
}

/// Sequence numbers are doubled in the sequence lock and generations count
/// up: both must leave room.
fn check_counters(h: &DurableHeader) -> std::result::Result<(), String> {
    if h.checkpoint_seq.get() > 1 << 62 || h.generation.get() > 1 << 62 {
        return Err("sequence number or generation out of range".into());
    }
    Ok(())
}

impl Durable {
    /// Opens an existing durable image and reads its header.
    pub(crate) fn open(file: File, path: &Path) -> Result<Self> {
        let (header, slot) = read_header(&file, path)?;
        Ok(Self {
            file,
            path: path.into(),
            header,
            slot,
        })
    }

    /// Writes the first header and the (zeroed, allocated) data area of a new
    /// state into an empty file, then syncs it.
    pub(crate) fn initialize(
        file: File,
        path: &Path,
        len: u64,
        max_size: u64,
        durability: (u64, u64),
    ) -> Result<Self> {
        let mut file_id = [0u8; 16];
        sys::random_bytes(&mut file_id);
        let mut h = DurableHeader::new_zeroed();
        h.magic = format::DURABLE_MAGIC;
        h.version = U32::new(VERSION);
        h.page_size = U32::new(PAGE as u32);
        h.file_id = file_id;
        h.generation = U64::new(1);
        h.len = U64::new(len);
        h.max_size = U64::new(max_size);
        h.log_salt = U64::new(sys::random_u64());
        h.durability = U64::new(durability.0);
        h.durability_arg = U64::new(durability.1);
        h.seal();
        crate::map::allocate(path, &file, 0, PAGE + len)?;
        pwrite(&file, path, h.as_bytes(), HEADER_SLOTS[0])?;
        let mut d = Self {
            file,
            path: path.into(),
            header: h,
            slot: 0,
        };
        d.sync()?;
        Ok(d)
    }

    /// `fdatasync` of the image.
    pub(crate) fn sync(&mut self) -> Result<()> {
        sys::fdatasync(sys::fd_of(&self.file)).map_err(|e| Error::io("fdatasync", &self.path, e))
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

    /// Writes data bytes at `off` of the state.
    pub(crate) fn write_data(&self, off: u64, buf: &[u8]) -> Result<()> {
        pwrite(&self.file, &self.path, buf, PAGE + off)
    }

    /// Makes sure the data area holds `len` bytes, with blocks allocated
    /// (the image is fully allocated up to the header's length already).
    pub(crate) fn reserve(&self, len: u64) -> Result<()> {
        crate::map::allocate(
            &self.path,
            &self.file,
            PAGE + self.header.len.get(),
            PAGE + len,
        )
    }
}

/// A checkpoint journal found valid and newer than the durable header: the
/// header it leads to and the numbers of its pages, whose contents are read
/// from the journal file on demand.
pub(crate) struct Journal {
    pub(crate) target: DurableHeader,
    pub(crate) pages: Vec<u64>,
    file: File,
    path: PathBuf,
    /// File offset of the first page.
    data_at: u64,
}

impl Journal {
    /// Reads page `i` of the journal (the page numbered `self.pages[i]`).
    pub(crate) fn read_page(&self, i: usize, buf: &mut [u8]) -> Result<()> {
        pread(&self.file, &self.path, buf, self.data_at + i as u64 * PAGE)
    }
}

/// Pages written per batch when streaming a journal.
const BATCH: usize = 256;

/// Writes the journal of a checkpoint: `target`, the page numbers, and
/// each page's contents as `contents(page_no, buf)` provides them, in batches
/// (memory stays bounded whatever the number of pages), then syncs it. A
/// power cut before the sync leaves a journal that fails its hash and is
/// ignored. A new journal gets `mode` (the durable file's permission bits,
/// so whoever may read the state may read its journal).
pub(crate) fn write_journal(
    path: &Path,
    mode: u32,
    target: &DurableHeader,
    pages: &[u64],
    mut contents: impl FnMut(u64, &mut [u8]),
) -> Result<()> {
    let file = crate::map::open_file(path, true, true, mode)?;
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(target.checksum.get());
    let mut list = Vec::with_capacity((pages.len() * 8).next_multiple_of(PAGE as usize));
    for n in pages {
        list.extend_from_slice(&n.to_le_bytes());
    }
    list.resize(list.len().next_multiple_of(PAGE as usize), 0);
    hasher.update(&list);
    pwrite(&file, path, &list, PAGE)?;
    let data_at = PAGE + list.len() as u64;
    let mut buf = vec![0u8; BATCH * PAGE as usize];
    for (b, chunk) in pages.chunks(BATCH).enumerate() {
        let bytes = &mut buf[..chunk.len() * PAGE as usize];
        for (i, &no) in chunk.iter().enumerate() {
            contents(no, &mut bytes[i * PAGE as usize..(i + 1) * PAGE as usize]);
        }
        hasher.update(bytes);
        pwrite(&file, path, bytes, data_at + (b * BATCH) as u64 * PAGE)?;
    }
    let mut h = JournalHeader::new_zeroed();
    h.magic = format::JOURNAL_MAGIC;
    h.file_id = target.file_id;
    h.target = *target;
    h.n_pages = U64::new(pages.len() as u64);
    h.body_hash = U64::new(hasher.digest());
    h.seal();
    pwrite(&file, path, h.as_bytes(), 0)?;
    sys::fdatasync(sys::fd_of(&file)).map_err(|e| Error::io("fdatasync", path, e))
}

/// Reads the checkpoint journal if it is valid, belongs to `current`'s
/// state and leads past it (a checkpoint interrupted after its journal was
/// synced); `None` otherwise.
pub(crate) fn read_journal(path: &Path, current: &DurableHeader) -> Result<Option<Journal>> {
    let file = match crate::map::open_file(path, false, false, 0) {
        Ok(f) => f,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let file_len = file
        .metadata()
        .map_err(|e| Error::io("fstat", path, e))?
        .len();
    let mut h = JournalHeader::new_zeroed();
    if file.read_exact_at(h.as_mut_bytes(), 0).is_err() || !h.checksum_ok() {
        return Ok(None);
    }
    let t = h.target;
    if h.file_id != current.file_id
        || !t.checksum_ok()
        || t.magic != format::DURABLE_MAGIC
        || t.version.get() > VERSION
        || t.file_id != current.file_id
        || check_fields(&t).is_err()
        || check_counters(&t).is_err()
        || t.generation.get() != current.generation.get() + 1
        || t.checkpoint_seq.get() < current.checkpoint_seq.get()
        || t.len.get() > t.max_size.get()
    {
        return Ok(None);
    }
    let n = h.n_pages.get();
    let max_pages = t.len.get().div_ceil(PAGE);
    // The page list and the pages must fit in the file: bounds the memory.
    if n > max_pages || n.saturating_mul(PAGE + 8) > file_len {
        return Ok(None);
    }
    let list_len = (n * 8).next_multiple_of(PAGE);
    let mut list = vec![0u8; list_len as usize];
    if file.read_exact_at(&mut list, PAGE).is_err() {
        return Ok(None);
    }
    let mut hasher = xxhash_rust::xxh3::Xxh3::with_seed(t.checksum.get());
    hasher.update(&list);
    let data_at = PAGE + list_len;
    let mut buf = vec![0u8; BATCH * PAGE as usize];
    let mut done = 0;
    while done < n {
        let k = (n - done).min(BATCH as u64);
        let bytes = &mut buf[..(k * PAGE) as usize];
        if file.read_exact_at(bytes, data_at + done * PAGE).is_err() {
            return Ok(None);
        }
        hasher.update(bytes);
        done += k;
    }
    if hasher.digest() != h.body_hash.get() {
        return Ok(None);
    }
    let mut pages = Vec::with_capacity(n as usize);
    for i in 0..n as usize {
        let no = u64::from_le_bytes(list[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        if no >= max_pages {
            return Ok(None);
        }
        pages.push(no);
    }
    Ok(Some(Journal {
        target: t,
        pages,
        file,
        path: path.into(),
        data_at,
    }))
}
