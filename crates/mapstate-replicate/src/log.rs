//! The log: a `JetStream` stream with N replicas, appended to with a message
//! id and a fence, trimmed behind snapshots.

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    context::{PublishAckFuture, PublishErrorKind},
    message::PublishMessage,
    stream,
};
use bytes::Bytes;

use crate::error::{AppendError, Error};
use crate::reader::Reader;

/// How long [`Log::append`] sends again a publish that found no responder.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(2);
/// The pause between those sends.
const UNAVAILABLE_PAUSE: Duration = Duration::from_millis(50);

/// How a [`Log`] is created: its stream's name, subject and replication.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct LogConfig {
    /// The stream's name (letters, digits, `-` and `_`).
    pub stream: String,
    /// The one subject the log's entries are published on.
    pub subject: String,
    /// Copies of every entry, 1 to 5; 3 in a three-server cluster keeps the
    /// log writable and readable while any one server is down (a quorum of 2).
    pub replicas: usize,
    /// How long the stream remembers message ids: a retry with the same id
    /// within this window is acknowledged as a duplicate and not stored again.
    pub duplicate_window: Duration,
}

impl LogConfig {
    /// The log named `stream`, on subject `<stream>.log`, with `replicas`
    /// copies and a duplicate window of 2 minutes (the server's default).
    pub fn new(stream: impl Into<String>, replicas: usize) -> Self {
        let stream = stream.into();
        LogConfig {
            subject: format!("{stream}.log"),
            stream,
            replicas,
            duplicate_window: Duration::from_secs(120),
        }
    }
}

/// One entry to append: its bytes, and optionally its id and its fence.
#[derive(Debug, Clone)]
pub struct Append {
    payload: Bytes,
    id: Option<String>,
    after: Option<u64>,
}

impl Append {
    /// An entry holding `payload`, with no id and no fence.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Append {
            payload: payload.into(),
            id: None,
            after: None,
        }
    }

    /// Sets the entry's id (header `Nats-Msg-Id`): a second append with the
    /// same id within the duplicate window stores nothing and is acknowledged
    /// with the first one's sequence and [`Appended::duplicate`] set. The
    /// server checks the id before the fence, so the retry of an append whose
    /// ack was lost is a duplicate, not [`AppendError::Fenced`].
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Sets the fence (header `Nats-Expected-Last-Sequence`): the append
    /// happens only if the log's last sequence is `last`, else it fails with
    /// [`AppendError::Fenced`] and stores nothing.
    #[must_use]
    pub fn after(mut self, last: u64) -> Self {
        self.after = Some(last);
        self
    }
}

/// An acknowledged append.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// The entry's sequence in the log (the first entry is 1).
    pub sequence: u64,
    /// The append was a retry of an id already stored: `sequence` is the
    /// stored entry's, and nothing new was stored.
    pub duplicate: bool,
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trimmed {
    /// Entries removed.
    pub purged: u64,
    /// The log's first sequence after the purge; the log's last sequence + 1
    /// when the log is now empty.
    pub first: u64,
}

/// A stream used as a replicated, append-only log.
#[derive(Debug, Clone)]
pub struct Log {
    js: jetstream::Context,
    stream: stream::Stream,
    subject: String,
}

impl Log {
    /// `Log::create(js, config)`—the log's stream, created if missing
    /// (`$JS.API.STREAM.CREATE.<stream>`), or the existing one if its
    /// configuration is the same.
    ///
    /// # Errors
    ///
    /// The request failed, or a stream of that name exists with another
    /// configuration, or the cluster has fewer servers than `replicas`.
    pub async fn create(js: &jetstream::Context, config: LogConfig) -> Result<Log, Error> {
        let stream = js
            .get_or_create_stream(stream::Config {
                name: config.stream.clone(),
                subjects: vec![config.subject.clone()],
                num_replicas: config.replicas,
                duplicate_window: config.duplicate_window,
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::new(format!("creating stream {}", config.stream), e))?;
        Ok(Log {
            js: js.clone(),
            stream,
            subject: config.subject,
        })
    }

    /// The subject entries are published on.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The underlying stream, for calls not wrapped here.
    pub fn stream(&self) -> &stream::Stream {
        &self.stream
    }

    /// `append(entry)`—publishes `entry` and waits for the stream's
    /// acknowledgement, which a replicated stream sends once a quorum of its
    /// replicas has the entry.
    ///
    /// A publish that finds no responder (status 503: nothing was stored) is
    /// sent again every 50 ms for up to 2 s: that happens just after the
    /// stream was created, before its interest has reached every server of
    /// the cluster, and while its replicas elect a new leader.
    ///
    /// # Errors
    ///
    /// [`AppendError::Fenced`] when the fence does not hold,
    /// [`AppendError::TimedOut`] when no acknowledgement came in time (the
    /// append may have happened), and the others of [`AppendError`].
    pub async fn append(&self, entry: Append) -> Result<Appended, AppendError> {
        let deadline = Instant::now() + UNAVAILABLE_RETRY;
        loop {
            match self.send(entry.clone()).await?.acked().await {
                // Nobody stored it: sending it again cannot double it.
                Err(AppendError::Unavailable { .. }) if Instant::now() < deadline => {
                    tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                }
                result => return result,
            }
        }
    }

    /// `send(entry)`—publishes `entry` without waiting for its
    /// acknowledgement, so that several appends can be in flight; the
    /// returned [`PendingAppend`] waits for it. Entries sent by one client on
    /// one subject are stored in the order sent.
    ///
    /// # Errors
    ///
    /// [`AppendError::Publish`] when the client could not send.
    pub async fn send(&self, entry: Append) -> Result<PendingAppend, AppendError> {
        let mut message = PublishMessage::build().payload(entry.payload);
        if let Some(id) = &entry.id {
            message = message.message_id(id);
        }
        if let Some(last) = entry.after {
            message = message.expected_last_sequence(last);
        }
        let ack = self
            .js
            .send_publish(self.subject.clone(), message)
            .await
            .map_err(|e| self.publish_error(entry.after, e))?;
        Ok(PendingAppend {
            ack,
            after: entry.after,
            subject: self.subject.clone(),
        })
    }

    fn publish_error(
        &self,
        after: Option<u64>,
        e: jetstream::context::PublishError,
    ) -> AppendError {
        map_publish_error(&self.subject, after, e)
    }

    /// `bounds()`—the log's first and last sequence, from the stream's info
    /// (`$JS.API.STREAM.INFO.<stream>`). An empty log that never had an entry
    /// is `(0, 0)`; one emptied by a purge is `(last + 1, last)`.
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn bounds(&self) -> Result<(u64, u64), Error> {
        let info = self
            .stream
            .get_info()
            .await
            .map_err(|e| Error::new("reading the stream's info", e))?;
        Ok((info.state.first_sequence, info.state.last_sequence))
    }

    /// `last_sequence()`—the log's last sequence (0 before the first entry).
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn last_sequence(&self) -> Result<u64, Error> {
        Ok(self.bounds().await?.1)
    }

    /// `trim_before(seq)`—removes every entry before `seq`
    /// (`$JS.API.STREAM.PURGE.<stream>` with `{"seq": seq}`): after a
    /// snapshot that holds the state up to `seq - 1`, the log needs no more.
    /// The last sequence does not change, so the fence still holds.
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn trim_before(&self, seq: u64) -> Result<Trimmed, Error> {
        let purged = self
            .stream
            .purge()
            .sequence(seq)
            .await
            .map_err(|e| Error::new(format!("purging the stream before {seq}"), e))?;
        self.trimmed(purged.purged).await
    }

    /// `keep_last(n)`—removes every entry but the last `n`
    /// (`$JS.API.STREAM.PURGE.<stream>` with `{"keep": n}`).
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn keep_last(&self, n: u64) -> Result<Trimmed, Error> {
        let purged = self
            .stream
            .purge()
            .keep(n)
            .await
            .map_err(|e| Error::new(format!("purging the stream but the last {n}"), e))?;
        self.trimmed(purged.purged).await
    }

    async fn trimmed(&self, purged: u64) -> Result<Trimmed, Error> {
        let (first, _) = self.bounds().await?;
        Ok(Trimmed { purged, first })
    }

    /// `reader(name)`—the durable reader `name`, created if missing: it
    /// resumes after the last entry it acknowledged, also when opened again
    /// by another client or process. See [`Reader`].
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn reader(&self, name: &str) -> Result<Reader, Error> {
        Reader::open(&self.stream, name).await
    }
}

/// An append sent and not yet acknowledged ([`Log::send`]).
#[derive(Debug)]
#[must_use = "an append is not known to have happened until `acked` returns"]
pub struct PendingAppend {
    ack: PublishAckFuture,
    after: Option<u64>,
    subject: String,
}

impl PendingAppend {
    /// Waits for the acknowledgement (5 s at most, the client's default).
    ///
    /// # Errors
    ///
    /// As [`Log::append`].
    pub async fn acked(self) -> Result<Appended, AppendError> {
        match self.ack.await {
            Ok(ack) => Ok(Appended {
                sequence: ack.sequence,
                duplicate: ack.duplicate,
            }),
            Err(e) => Err(map_publish_error(&self.subject, self.after, e)),
        }
    }
}

/// How the client reports each failure of a publish, mapped to what it means
/// for the log (see `docs/REPLICATION-notes.md`).
fn map_publish_error(
    subject: &str,
    after: Option<u64>,
    e: jetstream::context::PublishError,
) -> AppendError {
    match e.kind() {
        // Server error 10071, description "wrong last sequence: N".
        PublishErrorKind::WrongLastSequence => AppendError::Fenced {
            expected: after.unwrap_or_default(),
            actual: std::error::Error::source(&e)
                .and_then(|s| s.downcast_ref::<jetstream::Error>())
                .and_then(|s| {
                    let text = s.to_string();
                    let rest = text.strip_prefix("wrong last sequence: ")?;
                    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                    digits.parse().ok()
                }),
        },
        PublishErrorKind::TimedOut => AppendError::TimedOut,
        // The "no responders" status: no stream, or no stream leader yet.
        PublishErrorKind::StreamNotFound => AppendError::Unavailable {
            subject: subject.to_owned(),
        },
        _ => AppendError::Publish {
            subject: subject.to_owned(),
            source: e,
        },
    }
}
