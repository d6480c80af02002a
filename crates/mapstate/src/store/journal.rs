//! The checkpoint journal (`NAME-ckpt`): the pages a checkpoint is about to
//! write into the durable image and the header they lead to, with a hash.
//! A checkpoint writes and syncs it first; a crash (or power cut) while
//! the durable image is being written is then finished from it at the next
//! open. A journal whose hash fails, that belongs to another state, or that
//! does not lead exactly one generation past the durable header, is
//! ignored.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use zerocopy::little_endian::U64;
use zerocopy::{FromZeros, IntoBytes};

use crate::error::{Error, Result};
use crate::format::{self, DurableHeader, JournalHeader, PAGE, VERSION};
use crate::fs::{self, Open, Owner, pread, pwrite};
use crate::store::durable::{check_counters, check_fields};
use crate::store::pages::{run_bytes, runs};

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
    /// Makes the journal and its name durable: a journal its writer was
    /// killed before syncing may still be only in the page cache, and
    /// recovery must not write into the durable image from bytes a power
    /// cut can take back.
    pub(crate) fn sync(&self) -> Result<()> {
        fs::fdatasync(&self.file, &self.path)?;
        fs::sync_parent(&self.path)
    }

    /// Calls `f(offset, bytes)` for the journal's pages `pages[range]`, in
    /// order, a run of adjacent pages at a time (read up to [`BATCH`] pages
    /// at once): the run's offset in the state and its bytes, cut at the
    /// target length.
    pub(crate) fn for_each_run(
        &self,
        range: Range<usize>,
        mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        let len = self.target.len.get();
        let mut buf = vec![0u8; BATCH.min(range.len()) * PAGE as usize];
        for (b, batch) in self.pages[range.clone()].chunks(BATCH).enumerate() {
            let first = range.start + b * BATCH;
            let bytes = &mut buf[..batch.len() * PAGE as usize];
            pread(
                &self.file,
                &self.path,
                bytes,
                self.data_at + first as u64 * PAGE,
            )?;
            for (i, n) in runs(batch) {
                let (at, count) = run_bytes(batch[i], n, len);
                f(at, &bytes[i * PAGE as usize..][..count as usize])?;
            }
        }
        Ok(())
    }
}

/// Empties the journal at `path` once its checkpoint is complete (its
/// target is the durable header now, so it is ignored anyway): the space
/// goes back to the filesystem. Best effort.
pub(crate) fn truncate(path: &Path, owner: Owner) {
    if let Ok(f) = fs::open_owned(path, Open::ReadWrite, owner) {
        let _ = f.set_len(0);
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
pub(crate) fn write(
    path: &Path,
    owner: Owner,
    target: &DurableHeader,
    pages: &[u64],
    mut contents: impl FnMut(u64, &mut [u8]),
) -> Result<()> {
    let file = match fs::open_owned(path, Open::ReadWrite, owner) {
        Ok(f) => f,
        Err(Error::NotFound { .. }) => {
            // A new journal's name must survive a power cut before the
            // durable image is touched: it is what finishes the checkpoint.
            let f = fs::create_new(path, owner.mode)?;
            owner.give(&f, path, owner.mode)?;
            fs::sync_parent(path)?;
            f
        }
        Err(e) => return Err(e),
    };
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
    fs::fdatasync(&file, path)
}

/// Whether a journal's `pages` hold every page from the one holding the
/// durable image's end (`from_len`) to the target's end (`to_len`), as every
/// checkpoint writes them (`checkpoint::run`): the durable file may hold
/// stale bytes there (from before a shrink), which finishing a journal
/// without them would expose, while a rebuild that ignores them reads
/// zeros. A journal without them was not written by mapstate.
fn covers_growth(pages: &[u64], from_len: u64, to_len: u64) -> bool {
    if to_len <= from_len {
        return true;
    }
    let grown = from_len / PAGE..to_len.div_ceil(PAGE);
    let mut inside: Vec<u64> = pages
        .iter()
        .copied()
        .filter(|p| grown.contains(p))
        .collect();
    inside.sort_unstable();
    inside.dedup();
    inside.len() as u64 == grown.end - grown.start
}

/// Reads the checkpoint journal if it is valid, belongs to `current`'s
/// state and leads from exactly `current` (the target's `prev_epoch` is
/// `current`'s epoch): a checkpoint interrupted after its journal was
/// synced. `None` otherwise (a journal of another lineage, say of a state
/// restored from a backup, is never applied).
pub(crate) fn read(path: &Path, current: &DurableHeader, owner: Owner) -> Result<Option<Journal>> {
    let file = match fs::open_owned(path, Open::Read, owner) {
        Ok(f) => f,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let file_len = fs::file_len(&file, path)?;
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
        || t.prev_epoch != current.epoch
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
    if !covers_growth(&pages, current.len.get(), t.len.get()) {
        return Ok(None);
    }
    Ok(Some(Journal {
        target: t,
        pages,
        file,
        path: path.into(),
        data_at,
    }))
}
