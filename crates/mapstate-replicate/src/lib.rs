//! Replication of a mapstate state through NATS `JetStream` (issue 16): the
//! foundation.
//!
//! This crate holds, for now, thin wrappers over exactly the `JetStream`
//! features the replication design relies on, each proven against a real
//! three-server cluster by `tests/jetstream.rs`:
//!
//! - [`connect`]: a client from a URL given by option or by the
//!   `MAPSTATE_NATS_URL` environment variable ([`URL_ENV`]), never a built-in one.
//! - [`Log`]: a stream with N replicas used as an append-only log.
//!   [`Log::append`] publishes with a message id (de-duplication of retries)
//!   and an expected last sequence (the *fence*: a writer that is not the
//!   log's only writer any more gets [`AppendError::Fenced`]);
//!   [`Log::trim_before`] purges the entries a snapshot has made redundant.
//! - [`Reader`]: a durable pull consumer that resumes after the last entry it
//!   acknowledged, also from another process.
//! - [`Snapshots`]: an object-store bucket for multi-MiB snapshots.
//!
//! The cluster for tests and benchmarks comes from `scripts/jetstream.sh up
//! DIR`; `docs/REPLICATION-notes.md` records the server and client versions,
//! the exact calls and headers, how each error surfaces and measured timings.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use mapstate_replicate::{Append, Log, LogConfig};
//! // `MAPSTATE_NATS_URL=nats://127.0.0.1:4222,nats://127.0.0.1:4223 ...`
//! let js = mapstate_replicate::connect(None).await?;
//! let log = Log::create(&js, LogConfig::new("STATE", 3)).await?;
//! let last = log.last_sequence().await?;
//! let appended = log
//!     .append(Append::new(&b"redo record"[..]).id("writer-7:commit-42").after(last))
//!     .await?;
//! assert_eq!(appended.sequence, last + 1);
//! # Ok(())
//! # }
//! ```

mod connect;
mod error;
mod follow;
mod log;
mod publish;
mod reader;
mod record;
mod retry;
mod snapshot;
mod temp;

pub use connect::{URL_ENV, connect, connect_to};
pub use error::{AppendError, ConnectError, Error};
pub use follow::{FollowError, Followed, Follower};
pub use log::{Append, Appended, Log, LogConfig, PendingAppend, Trimmed};
pub use publish::{PublishError, Published, Publisher, Target};
pub use reader::{Entry, Reader};
pub use record::Record;
pub use snapshot::Snapshots;

/// The `async-nats` crate this one is built on, for calls not wrapped here.
pub use async_nats;
