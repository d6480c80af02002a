//! The publisher: every commit of a state, in order, into the replication
//! log, read from the state's redo log by a process beside its writer (a
//! companion: the writer needs no change).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use mapstate::{CommitsSince, Reader};

use crate::error::{AppendError, Error};
use crate::log::{Append, Log, LogConfig};
use crate::record::Record;
use crate::retry::retrying;
use crate::snapshot::Snapshots;
use crate::temp;

/// Where a replicated state goes: the stream (the log) and the snapshot
/// bucket, named after one name.
#[derive(Debug, Clone)]
pub struct Target {
    /// The stream's name; the snapshot bucket is `<name>-snapshots`.
    pub name: String,
    /// Copies of every entry (3 in a three-server cluster).
    pub replicas: usize,
}

impl Target {
    /// The stream `name` with `replicas` copies.
    pub fn new(name: impl Into<String>, replicas: usize) -> Self {
        Target {
            name: name.into(),
            replicas,
        }
    }

    /// The stream and the bucket, made if missing. A cluster that has
    /// just started (or lost a server) refuses a moment: retried.
    pub(crate) async fn open(&self, js: &jetstream::Context) -> Result<(Log, Snapshots), Error> {
        let config = LogConfig::new(self.name.clone(), self.replicas);
        let log = retrying(|| Log::create(js, config.clone()), |_| true).await?;
        let bucket = format!("{}-snapshots", self.name);
        let snaps = retrying(|| Snapshots::create(js, &bucket, self.replicas), |_| true).await?;
        Ok((log, snaps))
    }
}

/// Why publishing stopped.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The state could not be read.
    #[error("reading the state: {0}")]
    State(#[from] mapstate::Error),
    /// The engine refused or failed.
    #[error(transparent)]
    Engine(#[from] Error),
    /// An append failed: fenced (another publisher appended), or the
    /// cluster is unavailable.
    #[error(transparent)]
    Append(#[from] AppendError),
    /// The log holds commits this state does not have: it is not the
    /// state the log replicates (or an older copy of it).
    #[error(
        "the log {stream} holds commit {log} but this state's last is {state}: publish from the \
         state the log was made from (or from a follower promoted to writer)"
    )]
    Behind {
        /// The stream.
        stream: String,
        /// The log's last commit.
        log: u64,
        /// This state's last commit.
        state: u64,
    },
    /// `publish_through` was asked for a commit the state does not have.
    #[error("commit {asked} is not in the state (its last is {state})")]
    NotCommitted {
        /// The commit asked for.
        asked: u64,
        /// The state's last commit.
        state: u64,
    },
    /// The log's last entry is not a record of this format.
    #[error("the log's last entry is not a mapstate record: {0}")]
    Foreign(String),
}

/// What one [`Publisher::step`] published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Published {
    /// Commits appended.
    pub commits: u64,
    /// Snapshots published (the log had moved on, or a commit was too
    /// large for one entry).
    pub snapshots: u64,
    /// The last commit now in the log.
    pub last: u64,
}

/// Publishes the commits of one state to a replication log.
#[derive(Debug)]
pub struct Publisher {
    state: Arc<Reader>,
    path: PathBuf,
    log: Log,
    snaps: Snapshots,
    stream: String,
    /// The last commit in the log, and the log's last sequence (the fence).
    last: u64,
    fence: u64,
    /// The largest entry the server takes.
    max_payload: usize,
}

impl Publisher {
    /// Starts publishing the state at `path` to `target`: finds where the
    /// log ends (its last record's commit) and goes on from there; an
    /// empty log starts with a snapshot.
    pub async fn start(
        client: &async_nats::Client,
        path: &Path,
        target: &Target,
    ) -> Result<Publisher, PublishError> {
        let js = jetstream::new(client.clone());
        let (log, snaps) = target.open(&js).await?;
        let state = Arc::new(Reader::open(path)?);
        let fence = retrying(|| log.last_sequence(), |_| true).await?;
        let last = if fence == 0 {
            None
        } else {
            let m = retrying(
                || log.stream().get_last_raw_message_by_subject(log.subject()),
                |_| true,
            )
            .await
            .map_err(|e| Error::new("reading the log's last entry", e))?;
            Some(
                Record::decode(&m.payload)
                    .map_err(PublishError::Foreign)?
                    .seq(),
            )
        };
        let mut p = Publisher {
            state,
            path: path.into(),
            log,
            snaps,
            stream: target.name.clone(),
            last: last.unwrap_or(0),
            fence,
            max_payload: client.server_info().max_payload.saturating_sub(1024),
        };
        if let Some(l) = last {
            let s = p.state.seq();
            if l > s {
                return Err(PublishError::Behind {
                    stream: p.stream.clone(),
                    log: l,
                    state: s,
                });
            }
        } else {
            p.snapshot().await?;
        }
        Ok(p)
    }

    /// The last commit in the log.
    pub fn last(&self) -> u64 {
        self.last
    }

    /// Publishes the commits since the last one published, waiting up to
    /// `wait` for one if there are none.
    pub async fn step(&mut self, wait: Duration) -> Result<Published, PublishError> {
        if self.state.seq() <= self.last {
            let (r, after) = (Arc::clone(&self.state), self.last);
            tokio::task::spawn_blocking(move || r.wait_for_change(after, Some(wait)))
                .await
                .map_err(|e| Error::new("waiting for a commit", e))??;
        }
        let mut done = Published::default();
        match self.state.commits_since(self.last)? {
            CommitsSince::Commits(cs) => {
                for c in cs {
                    let rec = Record::Commit(c);
                    let bytes = rec.encode();
                    if bytes.len() > self.max_payload {
                        // Too large for one entry: the state as of it (or
                        // later) instead.
                        self.snapshot().await?;
                        done.snapshots += 1;
                        break;
                    }
                    self.append(rec.seq(), "c", bytes).await?;
                    done.commits += 1;
                }
            }
            CommitsSince::Gone { .. } => {
                self.snapshot().await?;
                done.snapshots += 1;
            }
        }
        done.last = self.last;
        Ok(done)
    }

    /// Returns once the log holds commit `seq` (acknowledged by a quorum of
    /// the cluster's servers), publishing what comes before it: a commit
    /// that must survive the loss of this machine waits here after
    /// `commit` returns. Commits committed together are published and
    /// acknowledged together.
    pub async fn publish_through(&mut self, seq: u64) -> Result<Published, PublishError> {
        let mut done = Published::default();
        while self.last < seq {
            let d = self.step(Duration::from_millis(100)).await?;
            done.commits += d.commits;
            done.snapshots += d.snapshots;
            if self.last < seq && self.state.seq() < seq {
                return Err(PublishError::NotCommitted {
                    asked: seq,
                    state: self.state.seq(),
                });
            }
        }
        done.last = self.last;
        Ok(done)
    }

    /// Publishes until an error.
    pub async fn run(&mut self) -> Result<(), PublishError> {
        loop {
            self.step(Duration::from_millis(500)).await?;
        }
    }

    /// Appends one record, fenced on the log's last sequence, with an id
    /// that makes a retry a duplicate.
    async fn append(&mut self, seq: u64, kind: &str, bytes: Vec<u8>) -> Result<(), PublishError> {
        let id = format!("{}:{kind}{seq}", self.stream);
        let entry = Append::new(bytes).id(id).after(self.fence);
        // An append whose ack was lost, or that met a leader election, is
        // sent again with the same id: if the first one was stored, the
        // retry is acknowledged as its duplicate (the id is checked before
        // the fence), so nothing is appended twice.
        let log = &self.log;
        let a = retrying(
            || log.append(entry.clone()),
            |e| matches!(e, AppendError::TimedOut | AppendError::Unavailable { .. }),
        )
        .await?;
        self.fence = a.sequence;
        self.last = seq;
        Ok(())
    }

    /// Publishes the whole state as of its last commit: a backup into the
    /// snapshot bucket, then a snapshot record; the log before it is then
    /// trimmed away.
    async fn snapshot(&mut self) -> Result<(), PublishError> {
        let tmp = temp::snapshot_path(&self.path);
        let (seq, len) = self.state.backup(&tmp)?;
        let object = format!("snap-{seq}");
        let snaps = &self.snaps;
        let put = retrying(
            || async {
                let mut f = tokio::fs::File::open(&tmp)
                    .await
                    .map_err(|e| Error::new("opening the snapshot", e))?;
                snaps.put(&object, &mut f).await
            },
            |_| true,
        )
        .await;
        let _ = std::fs::remove_file(&tmp);
        put?;
        let rec = Record::Snapshot { seq, len, object };
        self.append(seq, "s", rec.encode()).await?;
        let (log, fence) = (&self.log, self.fence);
        retrying(|| log.trim_before(fence), |_| true).await?;
        Ok(())
    }
}
