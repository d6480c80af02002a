//! Applying a commit made to another copy of the state (replication): the
//! follower's side of `Reader::commits_since`.

use super::Writer;
use crate::change::Commit;
use crate::error::{Error, Result};

impl Writer {
    /// Applies `commit`, read from another copy of this state with
    /// [`Reader::commits_since`], as one commit here with the same sequence
    /// number and the same bytes and length after it: all of it or, after
    /// a crash, none. Fails with [`Error::OutOfOrder`] unless it is the
    /// commit right after this state's last one (so a copy that applies
    /// every commit in order keeps the sequence numbers of the original,
    /// and its readers and watchers see the same commits).
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use mapstate::{CommitsSince, Reader, Writer};
    /// let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    /// let mut w = Writer::options().create(true).len(4096).open(&a)?;
    /// let r = Reader::open(&a)?;
    /// r.backup(&b)?; // the copy, as of commit 0
    /// let mut t = w.begin();
    /// t.write_at(0, b"hello")?;
    /// t.set_len(8192)?;
    /// t.commit()?;
    ///
    /// let mut copy = Writer::open(&b)?;
    /// let CommitsSince::Commits(commits) = r.commits_since(copy.seq())? else { unreachable!() };
    /// for c in &commits {
    ///     copy.apply(c)?;
    /// }
    /// assert_eq!(Reader::open(&b)?.snapshot()?, r.snapshot()?);
    /// # w.remove()?; copy.remove()?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Reader::commits_since`]: crate::Reader::commits_since
    pub fn apply(&mut self, commit: &Commit) -> Result<u64> {
        if commit.seq != self.seq + 1 {
            return Err(Error::OutOfOrder {
                path: self.path().into(),
                last: self.seq,
                got: commit.seq,
            });
        }
        let mut t = self.begin();
        t.set_len(commit.len)?;
        if let Some(z) = &commit.zeroed {
            // The bytes a shrink cut off, when the commit grew the state
            // again past them (else `set_len` zeroed them already).
            let end = z.end.min(commit.len);
            if z.start < end {
                t.write_at(z.start, &vec![0; (end - z.start) as usize])?;
            }
        }
        for (r, bytes) in commit.writes() {
            t.write_at(r.start, bytes)?;
        }
        t.commit()
    }
}
