//! An async stream of change events (the `tokio` feature).
//!
//! A thread of its own sleeps on the notification futex, exactly as
//! `Reader::wait_for_change` does (no polling, no CPU while idle), and
//! hands each event to the stream through a bounded tokio channel. A
//! consumer that falls behind makes the thread wait for room in the
//! channel; the commits it meanwhile misses come as one
//! [`Event::Missed`] once they leave the change ring, never silently.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::EventThread;
use crate::change::Event;
use crate::error::Result;
use crate::reader::Reader;

/// Events the channel holds before the waiting thread waits for the consumer.
const BUFFERED: usize = 64;

/// An async [`Stream`](futures_core::Stream) of the commits published after
/// it was made, oldest first: each as an [`Event::Change`] with its ranges,
/// or an [`Event::Missed`] for commits that left the change ring before
/// the consumer got to them. Needs the `tokio` feature.
///
/// Works inside any executor (it only needs a waker); the waiting happens
/// on a thread of its own, which dropping the stream stops.
///
/// ```
/// # #[cfg(feature = "tokio")]
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{ChangeStream, Event, Reader, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// let mut w = Writer::options().create(true).len(4096).open(&path)?;
/// let mut changes = ChangeStream::new(Reader::open(&path)?)?;
/// let mut t = w.begin();
/// t.write_at(16, b"hello")?;
/// t.commit()?;
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let first = rt.block_on(changes.next());
/// let Some(Event::Change(c)) = first else { panic!("{first:?}") };
/// assert_eq!((c.seq, c.ranges), (1, vec![16..21]));
/// # drop(changes);
/// # w.remove()?;
/// # Ok(()) }
/// # #[cfg(not(feature = "tokio"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct ChangeStream {
    // Closed first on drop, so that a thread waiting for room fails its
    // send; the thread is then stopped and joined.
    events: mpsc::Receiver<Event>,
    thread: EventThread,
}

impl ChangeStream {
    /// Streams the commits of the state `reader` reads, from now on.
    pub fn new(reader: Reader) -> Result<Self> {
        let (tx, events) = mpsc::channel(BUFFERED);
        // Waits for room; fails (and ends the thread) once the stream is
        // dropped.
        let thread = EventThread::spawn("mapstate-stream", reader, move |e| {
            tx.blocking_send(e).is_ok()
        })?;
        Ok(Self { events, thread })
    }

    /// The next event; `None` only if the waiting thread ended (it does
    /// not while the stream lives). The same as `StreamExt::next`.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The reader the stream waits on (for reading the state an event
    /// announces: `snapshot`, `read_at`).
    pub fn reader(&self) -> &Reader {
        &self.thread.reader
    }
}

impl futures_core::Stream for ChangeStream {
    type Item = Event;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for ChangeStream {
    fn drop(&mut self) {
        // A thread waiting for room in the channel fails its send; one
        // asleep on the futex is woken (by the event thread's drop, which
        // follows) and sees the stop flag.
        self.events.close();
    }
}
