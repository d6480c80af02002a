//! Errors, one enum per operation that callers must tell apart, and an
//! umbrella [`Error`] for the `JetStream` calls that need no such care.

/// Connecting failed ([`connect`](crate::connect)).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// No URL was given and `MAPSTATE_NATS_URL` is not set.
    #[error(
        "no NATS server named: pass a URL or set MAPSTATE_NATS_URL (e.g. the last line of `scripts/jetstream.sh up DIR`)"
    )]
    NoUrl,
    /// None of the servers could be reached.
    #[error("cannot connect to NATS at {urls}")]
    Connect {
        /// The URLs tried.
        urls: String,
        /// The client's error.
        #[source]
        source: async_nats::ConnectError,
    },
}

/// An append to the [`Log`](crate::Log) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppendError {
    /// The fence: the log's last sequence was not the one the append expected
    /// (`Nats-Expected-Last-Sequence`), so another writer appended since this
    /// one last looked. Nothing was appended. The server reports this as
    /// `JetStream` error code 10071; `actual` is the log's last sequence when
    /// the server said so in its description (`wrong last sequence: N`).
    #[error("fenced: the log's last sequence is {} and not the expected {expected}: another writer appended", actual.map_or_else(|| "another".to_owned(), |a| a.to_string()))]
    Fenced {
        /// The last sequence the append expected.
        expected: u64,
        /// The log's last sequence, if the server named it.
        actual: Option<u64>,
    },
    /// No acknowledgement came in time. The append may or may not have
    /// happened: retry it with the same message id, which the log
    /// de-duplicates within its duplicate window.
    #[error(
        "no acknowledgement from JetStream in time: the append may have happened; retry with the same id"
    )]
    TimedOut,
    /// No stream answered the publish (the server's "no responders" status,
    /// 503): either no stream listens on the subject (deleted, or never
    /// created), or—transiently—the stream's replicas are electing a new
    /// leader, which took about 5 s after its leader was killed (see
    /// `docs/REPLICATION-notes.md`). Nothing was appended: retry.
    #[error(
        "no JetStream stream answered on subject {subject} (none exists, or its replicas are electing a leader): retry"
    )]
    Unavailable {
        /// The subject published to.
        subject: String,
    },
    /// Any other failure of the publish.
    #[error("append to {subject} failed")]
    Publish {
        /// The subject published to.
        subject: String,
        /// The client's error.
        #[source]
        source: async_nats::jetstream::context::PublishError,
    },
}

/// A `JetStream` request failed: the operation and the client's error.
#[derive(Debug, thiserror::Error)]
#[error("{what} failed")]
pub struct Error {
    what: String,
    #[source]
    source: async_nats::Error,
}

impl Error {
    pub(crate) fn new(what: impl Into<String>, source: impl Into<async_nats::Error>) -> Self {
        Error {
            what: what.into(),
            source: source.into(),
        }
    }
}
