//! The follower: keeps a local copy of a replicated state, applying each
//! record of the replication log as one local commit with the same
//! sequence number, so local readers, watchers and waits work as on the
//! writer's machine.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_nats::jetstream;
use mapstate::{Writer, WriterOptions};

use crate::error::Error;
use crate::publish::Target;
use crate::reader::Reader;
use crate::record::Record;
use crate::retry::retrying;
use crate::snapshot::Snapshots;
use crate::temp;

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The local state failed.
    #[error("the local state: {0}")]
    State(#[from] mapstate::Error),
    /// The engine failed.
    #[error(transparent)]
    Engine(#[from] Error),
    /// An entry is not a record of this format (or damaged).
    #[error("entry {entry} of the log is not a mapstate record: {why}")]
    Foreign {
        /// The entry's sequence in the log.
        entry: u64,
        /// What is wrong with it.
        why: String,
    },
    /// The log skips commits this copy needs (it is older than the log's
    /// first snapshot, and the log holds none it could start from).
    #[error(
        "the log's next commit is {next}, but the local copy is at {local}: delete it to start again from a snapshot"
    )]
    Gap {
        /// The local copy's last commit.
        local: u64,
        /// The commit the log offered.
        next: u64,
    },
    /// A snapshot file could not be written.
    #[error("writing the snapshot to {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// What one [`Follower::step`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Followed {
    /// Commits applied.
    pub applied: u64,
    /// Snapshots restored.
    pub restored: u64,
    /// Entries skipped (already applied).
    pub skipped: u64,
    /// The local copy's last commit.
    pub seq: u64,
}

/// Keeps the local state at one path a copy of a replicated state.
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    opts: WriterOptions,
    writer: Option<Writer>,
    reader: Reader,
    snaps: Snapshots,
}

impl Follower {
    /// Follows `target` into the local state at `path` (made from the
    /// log's first snapshot if it does not exist), reading through the
    /// durable reader `name` (kept by the cluster: a follower started again
    /// under the same name goes on where it stopped).
    pub async fn start(
        client: &async_nats::Client,
        path: &Path,
        target: &Target,
        name: &str,
        opts: WriterOptions,
    ) -> Result<Follower, FollowError> {
        let js = jetstream::new(client.clone());
        let (log, snaps) = target.open(&js).await?;
        let reader = log.reader(name).await?;
        let writer = match opts.clone().create(false).open(path) {
            Ok(w) => Some(w),
            Err(mapstate::Error::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        Ok(Follower {
            path: path.into(),
            opts,
            writer,
            reader,
            snaps,
        })
    }

    /// The local copy's last commit (0 before the first snapshot).
    pub fn seq(&self) -> u64 {
        self.writer.as_ref().map_or(0, Writer::seq)
    }

    /// Applies the next entries of the log (up to 256), waiting up to
    /// `wait` for one.
    pub async fn step(&mut self, wait: Duration) -> Result<Followed, FollowError> {
        let mut done = Followed::default();
        let reader = &self.reader;
        let entries = retrying(|| reader.next(256, wait), |_| true).await?;
        for e in entries {
            let rec = Record::decode(e.payload()).map_err(|why| FollowError::Foreign {
                entry: e.sequence,
                why,
            })?;
            let local = self.seq();
            match (rec, self.writer.as_mut()) {
                (Record::Snapshot { seq, object, .. }, w)
                    if w.as_ref().is_none_or(|w| seq > w.seq()) =>
                {
                    self.restore(&object).await?;
                    done.restored += 1;
                }
                (Record::Commit(c), Some(w)) if c.seq == w.seq() + 1 => {
                    w.apply(&c)?;
                    done.applied += 1;
                }
                (r, Some(w)) if r.seq() <= w.seq() => done.skipped += 1,
                (r, _) => {
                    return Err(FollowError::Gap {
                        local,
                        next: r.seq(),
                    });
                }
            }
            // Applied: a failed ack only means the entry comes again (after
            // the ack wait), and is then skipped as applied.
            let _ = retrying(|| e.ack(), |_| true).await;
        }
        done.seq = self.seq();
        Ok(done)
    }

    /// Replaces the local copy with the snapshot `object`.
    async fn restore(&mut self, object: &str) -> Result<(), FollowError> {
        let snaps = &self.snaps;
        let bytes = retrying(|| snaps.get(object), |_| true).await?;
        let tmp = temp::snapshot_path(&self.path);
        temp::create_new(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &bytes))
            .map_err(|source| FollowError::Io {
                path: tmp.clone(),
                source,
            })?;
        drop(self.writer.take());
        let r = self.opts.restore(&tmp, &self.path);
        let _ = std::fs::remove_file(&tmp);
        self.writer = Some(r?);
        Ok(())
    }

    /// Follows until an error.
    pub async fn run(&mut self) -> Result<(), FollowError> {
        loop {
            self.step(Duration::from_millis(500)).await?;
        }
    }

    /// How far behind the copy is: the entries of the log it has not been
    /// given yet (commits, or snapshots), as the cluster counts them.
    pub async fn behind(&self) -> Result<u64, FollowError> {
        let reader = &self.reader;
        Ok(retrying(|| reader.pending(), |_| true).await?)
    }

    /// The local copy's writer, closed (checkpointed).
    pub fn close(mut self) -> Result<(), mapstate::Error> {
        self.writer.take().map_or(Ok(()), Writer::close)
    }
}
