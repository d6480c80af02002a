//! The commits themselves, as the redo log holds them: what a process that
//! copies a state elsewhere (replication) sends, commit by commit.

use super::Reader;
use crate::change::Commit;
use crate::error::Result;
use crate::store::durable;
use crate::store::log::LogPosition;

/// What [`Reader::commits_since`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitsSince {
    /// The published commits after the one asked for, oldest first (none
    /// if there are none yet).
    Commits(Vec<Commit>),
    /// The log no longer holds the commit after the one asked for: a
    /// checkpoint moved the commits up to `checkpoint` into the durable
    /// file and restarted the log. Start again from a copy of the whole
    /// state ([`Reader::backup`], [`Reader::snapshot`]).
    Gone {
        /// The sequence number of the last checkpoint.
        checkpoint: u64,
    },
}

impl Reader {
    /// The commits published after commit `after`, read from the redo log,
    /// each with its ranges and bytes exactly as committed: applying them
    /// in order to the state as of `after` gives the state as of the last
    /// one. This is how a state is copied elsewhere commit by commit
    /// (replication): a copy as of some commit (`Reader::backup`), then
    /// the commits since.
    ///
    /// The log holds the commits since the last checkpoint only: a caller
    /// that falls further behind gets [`CommitsSince::Gone`] and starts
    /// again from a copy. Each record is copied out of the log and checked
    /// (its chain of checksums from the checkpoint's header) before it is
    /// returned, so a checkpoint that restarts the log during the call
    /// cuts the list short, never hands out another epoch's bytes. Only
    /// published commits are returned (not a record a writer appended and
    /// was killed before publishing).
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("state");
    /// use mapstate::{CommitsSince, Reader, Writer};
    /// let mut w = Writer::options().create(true).len(4096).open(&path)?;
    /// let r = Reader::open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(8, b"abc")?;
    /// t.commit()?;
    /// let CommitsSince::Commits(c) = r.commits_since(0)? else { unreachable!() };
    /// assert_eq!((c[0].seq, c[0].len), (1, 4096));
    /// assert_eq!(c[0].writes().collect::<Vec<_>>(), [(8..11, &b"abc"[..])]);
    /// w.checkpoint()?; // the log restarts: commit 1 is in the durable file
    /// assert_eq!(r.commits_since(0)?, CommitsSince::Gone { checkpoint: 1 });
    /// assert_eq!(r.commits_since(1)?, CommitsSince::Commits(vec![]));
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn commits_since(&self, after: u64) -> Result<CommitsSince> {
        self.check_visible()?;
        let published = self.seq();
        let (h, _) = durable::read_header(&self.file, self.path())?;
        let checkpoint = h.checkpoint_seq.get();
        if after < checkpoint {
            return Ok(CommitsSince::Gone { checkpoint });
        }
        let mut out = Vec::new();
        if after >= published {
            return Ok(CommitsSince::Commits(out));
        }
        let end = self.with_log(|log| {
            log.scan_to(LogPosition::start(&h), published, self.max_size, |r| {
                if r.seq > after {
                    out.push(Commit {
                        seq: r.seq,
                        len: r.new_len,
                        zeroed: r.zero.map(|(o, l)| o..o + l),
                        ranges: r.ranges.iter().map(|&(o, l)| o..o + l).collect(),
                        data: r.data.clone(),
                    });
                }
                Ok(())
            })
        })?;
        // The log restarted meanwhile (its records no longer chain from
        // the header read above): what was read is a valid prefix; if it
        // stopped short of `after`, the commit after it is gone.
        if end.seq <= after {
            let (h, _) = durable::read_header(&self.file, self.path())?;
            let checkpoint = h.checkpoint_seq.get();
            if checkpoint > after {
                return Ok(CommitsSince::Gone { checkpoint });
            }
        }
        Ok(CommitsSince::Commits(out))
    }
}
