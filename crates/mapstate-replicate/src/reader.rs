//! The reader: a durable pull consumer on the log.

use std::time::{Duration, Instant};

use async_nats::jetstream::{
    self,
    consumer::{self, AckPolicy, DeliverPolicy, pull},
    stream,
};
use bytes::Bytes;
use futures_util::StreamExt;

use crate::error::Error;

/// The pause between requests that found no responder.
const NO_RESPONDERS_PAUSE: Duration = Duration::from_millis(50);

/// Why a pull request got nothing.
enum Next {
    /// Status 503: nobody answered the request.
    NoResponders,
    Failed(Error),
}

/// A durable pull consumer on a [`Log`](crate::Log): it reads entries in the
/// log's order and resumes after the last one it acknowledged. Its position is
/// kept by the cluster (replicated like the stream), so a reader opened again
/// under the same name—by this client after a reconnect, or by another
/// process—goes on where the last one left off. An entry delivered and not
/// acknowledged within 30 s is delivered again.
#[derive(Debug)]
pub struct Reader {
    consumer: consumer::Consumer<pull::Config>,
}

impl Reader {
    pub(crate) async fn open(stream: &stream::Stream, name: &str) -> Result<Reader, Error> {
        let consumer = stream
            .get_or_create_consumer(
                name,
                pull::Config {
                    durable_name: Some(name.to_owned()),
                    ack_policy: AckPolicy::Explicit,
                    deliver_policy: DeliverPolicy::All,
                    ack_wait: Duration::from_secs(30),
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| Error::new(format!("opening the durable consumer {name}"), e))?;
        Ok(Reader { consumer })
    }

    /// `next(max, wait)`—up to `max` entries, in order, waiting at most `wait`
    /// for `max` of them (`$JS.API.CONSUMER.MSG.NEXT.<stream>.<name>` with
    /// `{"batch": max, "expires": wait}`); fewer, or none, when `wait` ran out.
    ///
    /// A request that finds no responder (status 503: the consumer's replicas
    /// are electing a leader, or its interest has not reached the server this
    /// client is connected to yet, as happens just after it was created) is
    /// sent again every 50 ms until `wait` runs out.
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn next(&self, max: usize, wait: Duration) -> Result<Vec<Entry>, Error> {
        let deadline = Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.request(max, left).await {
                Err(Next::NoResponders) if left > NO_RESPONDERS_PAUSE => {
                    tokio::time::sleep(NO_RESPONDERS_PAUSE).await;
                }
                Err(Next::NoResponders) => {
                    return Err(Error::new(
                        "requesting entries",
                        "no responders (503): the consumer has no leader yet, or the cluster \
                         has not yet propagated its interest to this server",
                    ));
                }
                Err(Next::Failed(e)) => return Err(e),
                Ok(entries) => return Ok(entries),
            }
        }
    }

    async fn request(&self, max: usize, wait: Duration) -> Result<Vec<Entry>, Next> {
        let mut batch = self
            .consumer
            .batch()
            .max_messages(max)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| Next::Failed(Error::new("requesting entries", e)))?;
        let mut entries = Vec::new();
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(message) => message,
                // async-nats 0.51 reports a status in a batch only as text.
                Err(e) if entries.is_empty() && e.to_string().contains(": 503,") => {
                    return Err(Next::NoResponders);
                }
                Err(e) => return Err(Next::Failed(Error::new("receiving entries", e))),
            };
            let sequence = message
                .info()
                .map_err(|e| Next::Failed(Error::new("reading an entry's sequence", e)))?
                .stream_sequence;
            entries.push(Entry { sequence, message });
        }
        Ok(entries)
    }

    /// `acked_up_to()`—the ack floor: the log sequence up to which every
    /// entry is acknowledged (`$JS.API.CONSUMER.INFO.<stream>.<name>`).
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn acked_up_to(&self) -> Result<u64, Error> {
        Ok(self.info().await?.ack_floor.stream_sequence)
    }

    /// `pending()`—the entries of the log this reader has not been given
    /// yet (`num_pending` of `$JS.API.CONSUMER.INFO.<stream>.<name>`).
    ///
    /// # Errors
    ///
    /// The request failed.
    pub async fn pending(&self) -> Result<u64, Error> {
        Ok(self.info().await?.num_pending)
    }

    async fn info(&self) -> Result<async_nats::jetstream::consumer::Info, Error> {
        self.consumer
            .get_info()
            .await
            .map_err(|e| Error::new("reading the consumer's info", e))
    }
}

/// One entry read from the log.
#[derive(Debug)]
pub struct Entry {
    /// Its sequence in the log.
    pub sequence: u64,
    message: jetstream::Message,
}

impl Entry {
    /// The entry's bytes.
    pub fn payload(&self) -> &Bytes {
        &self.message.payload
    }

    /// `ack()`—acknowledges the entry and waits until the server confirms
    /// it (a double ack: `+ACK` with a reply subject), so that a reader
    /// opened after this returns will not see the entry again.
    ///
    /// # Errors
    ///
    /// The request failed or was not confirmed.
    pub async fn ack(&self) -> Result<(), Error> {
        self.message
            .double_ack()
            .await
            .map_err(|e| Error::new(format!("acknowledging entry {}", self.sequence), e))
    }
}
