//! A backup: a consistent copy of the state, as of one commit, written
//! while the writer goes on committing, as a new state of its own.

use std::path::Path;
use std::sync::atomic::Ordering;

use super::{CommitsSince, Reader};
use crate::error::{Error, Result};
use crate::format::PAGE;
use crate::fs::{self, NewFile};
use crate::store::durable;

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
    /// bytes go from the live image into the copy in 1 MiB writes while the
    /// writer goes on; the commits that landed meanwhile are then applied
    /// from the log, so a busy writer never starves it (a checkpoint that
    /// restarts the log during the copy makes it start again).
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
            if let Some(done) = self.copy_once(file, dest)? {
                break done;
            }
        };
        let h = durable::new_header(seq, len, self.max_size, self.durability()?);
        durable::finish_new(file, dest, &h)?;
        if !new.name_new(dest)? {
            return Err(fs::name_taken(dest));
        }
        fs::sync_parent(dest)?;
        Ok((seq, len))
    }

    /// One attempt at the copy: the live image's bytes into `file` in
    /// large writes while commits may land, then the log's records of every
    /// commit that may have touched the copy, applied in order (each byte
    /// they changed ends with its value at the last one, as a reader's
    /// catch-up does). `None`: the log restarted meanwhile; try again.
    fn copy_once(&self, file: &std::fs::File, dest: &Path) -> Result<Option<(u64, u64)>> {
        const CHUNK: u64 = 1 << 20;
        let s0 = self.stable_seqlock()?;
        let len0 = self.live.len_word().load(Ordering::Acquire);
        file.set_len(PAGE)
            .map_err(|e| Error::io("ftruncate", dest, e))?;
        fs::allocate(dest, file, 0, PAGE + len0)?;
        self.live.follow(len0)?;
        let mut buf = vec![0u8; CHUNK.min(len0) as usize];
        let mut off = 0;
        while off < len0 {
            let n = CHUNK.min(len0 - off) as usize;
            self.live.read(off, &mut buf[..n]);
            fs::pwrite(file, dest, &buf[..n], PAGE + off)?;
            off += n as u64;
        }
        if self.live.seqlock().unchanged(s0) {
            return Ok(Some((s0 / 2, len0)));
        }
        // The copy may hold bytes of every commit up to the one being
        // applied when it ended: wait until that one is published, then
        // apply the records of all of them.
        let need = self.live.seqlock().load().div_ceil(2);
        let mut spins = 0;
        while self.seq() < need {
            if spins == 10_000 {
                return Ok(None);
            }
            spins += 1;
            std::thread::yield_now();
        }
        let CommitsSince::Commits(commits) = self.commits_since(s0 / 2)? else {
            return Ok(None);
        };
        let Some(last) = commits.last().filter(|c| c.seq >= need) else {
            return Ok(None);
        };
        let (seq, len) = (last.seq, last.len);
        for c in &commits {
            // A shrink cuts the copy (a growth later reads zeros there).
            file.set_len(PAGE + c.len)
                .map_err(|e| Error::io("ftruncate", dest, e))?;
            if let Some(z) = &c.zeroed {
                let end = z.end.min(c.len);
                if z.start < end {
                    fs::pwrite(
                        file,
                        dest,
                        &vec![0; (end - z.start) as usize],
                        PAGE + z.start,
                    )?;
                }
            }
            for (r, bytes) in c.writes() {
                fs::pwrite(file, dest, bytes, PAGE + r.start)?;
            }
        }
        // A durable image is allocated to its length (a shrink and a growth
        // may have left a hole).
        fs::allocate(dest, file, 0, PAGE + len)?;
        Ok(Some((seq, len)))
    }
}
