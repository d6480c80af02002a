//! A backup: a consistent copy of the state, as of one commit, written
//! while the writer goes on committing, as a new state of its own.

use std::path::Path;

use zerocopy::FromZeros;
use zerocopy::little_endian::{U32, U64};

use super::Reader;
use crate::error::{Error, Result};
use crate::format::{self, DurableHeader, PAGE};
use crate::fs::{self, NewFile};
use crate::store::durable;
use crate::sys::{self, FileMap, Protection, Reservation};

impl Reader {
    /// Writes a copy of the state as of one commit to a new file `dest`,
    /// while the writer goes on committing; returns that commit's sequence
    /// number and the state's length then.
    ///
    /// The copy is a state of its own, with a new identity (file id and
    /// epoch): open it with [`Reader::open`] or [`Writer::open`], or put it
    /// back in place of a state with [`WriterOptions::restore`]. It has
    /// the state's length, maximum size, durability and sequence number,
    /// and the durable file's permission bits. It is written and synced
    /// before it gets its name (`fdatasync`, then the directory's `fsync`),
    /// so `dest` never names a partial copy, even after a power cut. The
    /// bytes go from the live image straight into the copy's page cache
    /// (no copy in the heap), and commits that land meanwhile are caught up
    /// from the log, so a busy writer never starves it.
    ///
    /// Fails with an `Io` error `link` (`EEXIST`) if `dest` exists: a backup
    /// never overwrites a file.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use mapstate::{Reader, Writer};
    /// let path = dir.path().join("state");
    /// let mut w = Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"before")?;
    /// let seq = t.commit()?;
    ///
    /// let copy = dir.path().join("state.backup");
    /// assert_eq!(Reader::open(&path)?.backup(&copy)?, (seq, 4096));
    ///
    /// let mut t = w.begin();
    /// t.write_at(0, b"after!")?;
    /// t.commit()?;
    /// // The backup holds the state as of `seq`.
    /// let mut buf = [0u8; 6];
    /// Reader::open(&copy)?.read_at(0, &mut buf)?;
    /// assert_eq!(&buf, b"before");
    /// # w.remove()?;
    /// # Writer::open(&copy)?.remove()?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Writer::open`]: crate::Writer::open
    /// [`WriterOptions::restore`]: crate::WriterOptions::restore
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<(u64, u64)> {
        let dest = dest.as_ref();
        self.check_visible()?;
        let mut new = NewFile::create(dest, self.owner.mode)?;
        let file = new.file();
        let (seq, len) = loop {
            let len = self.len();
            // A copy that found the length changed left a file of another
            // length: cut it back, so that no byte of it stays beyond.
            file.set_len(PAGE)
                .map_err(|e| Error::io("ftruncate", dest, e))?;
            fs::allocate(dest, file, 0, PAGE + len)?;
            if len == 0 {
                break (self.seq(), 0);
            }
            // Whole pages (the last one partly past the file's end, which
            // no byte of the slice below reaches).
            let pages = len.next_multiple_of(PAGE) as usize;
            let mut res =
                Reservation::new(pages).map_err(|e| Error::io("mmap (reserve)", dest, e))?;
            res.map_file(
                0,
                pages,
                sys::fd_of(file),
                PAGE,
                FileMap::shared(Protection::ReadWrite),
            )
            .map_err(|e| Error::io("mmap", dest, e))?;
            // The file is this process's own, unnamed (or under a random
            // temporary name), so only this slice changes its bytes.
            let buf = res.exclusive_bytes_mut(0, len as usize);
            match self.read_consistent(&mut [(0, buf)]) {
                Ok((seq, l)) if l == len => break (seq, len),
                // The length changed meanwhile: again with the new one.
                Ok(_) | Err(Error::OutOfBounds { .. }) => {}
                Err(e) => return Err(e),
            }
        };
        let mut h = DurableHeader::new_zeroed();
        h.magic = format::DURABLE_MAGIC;
        h.page_size = U32::new(PAGE as u32);
        h.checkpoint_seq = U64::new(seq);
        h.len = U64::new(len);
        h.max_size = U64::new(self.max_size);
        let (code, arg) = self.durability()?.to_code();
        h.durability = U64::new(code);
        h.durability_arg = U64::new(arg);
        durable::renew_identity(&mut h);
        durable::finish_new(file, dest, &h)?;
        if !new.name_new(dest)? {
            return Err(fs::name_taken(dest));
        }
        fs::sync_parent(dest)?;
        Ok((seq, len))
    }
}
