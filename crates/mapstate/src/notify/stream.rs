//! An async stream of change events (the `tokio` feature).
//!
//! A thread of its own sleeps on the notification futex, exactly as
//! [`Reader::wait_for_change`] does (no polling, no CPU while idle), and
//! hands each event to the stream through a bounded tokio channel. A
//! consumer that falls behind makes the thread wait for room in the
//! channel; the commits it meanwhile misses come as one
//! [`Event::Missed`] once they leave the change ring, never silently.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::task::{Context, Poll};

use tokio::sync::mpsc;

use super::{Event, stop_waiting, wait_unless_stopped};
use crate::error::{Error, Result};
use crate::region::{Options, Reader};

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
/// use mapstate::{ChangeStream, Event, Options, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let opts = Options::new().create(true).len(4096).live_dir(dir.path());
/// let path = dir.path().join("state");
/// let mut w = Writer::open(&path, &opts)?;
/// let mut changes = ChangeStream::open(&path, &opts)?;
/// let mut t = w.begin();
/// t.write_at(16, b"hello")?;
/// t.commit()?;
/// let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let first = rt.block_on(changes.next());
/// let Some(Event::Change(c)) = first else { panic!("{first:?}") };
/// assert_eq!((c.seq, c.ranges), (1, vec![16..21]));
/// # Ok(()) }
/// # #[cfg(not(feature = "tokio"))]
/// # fn main() {}
/// ```
#[derive(Debug)]
pub struct ChangeStream {
    events: mpsc::Receiver<Event>,
    reader: Arc<Reader>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ChangeStream {
    /// Opens the state at `path` for reading (only `live_dir` of `opts`
    /// matters) and streams its commits from now on.
    pub fn open(path: impl AsRef<std::path::Path>, opts: &Options) -> Result<Self> {
        Reader::open_with(path, opts)?.into_stream()
    }

    /// The next event; `None` only if the waiting thread ended (it does
    /// not while the stream lives). The same as `StreamExt::next`.
    pub async fn next(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The reader the stream waits on (for reading the state an event
    /// announces: `snapshot`, `read_at`).
    pub fn reader(&self) -> &Reader {
        &self.reader
    }
}

impl Reader {
    /// Turns this reader into an async stream of the commits published
    /// from now on (the `tokio` feature): see [`ChangeStream`].
    pub fn into_stream(self) -> Result<ChangeStream> {
        let reader = Arc::new(self);
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, events) = mpsc::channel(BUFFERED);
        let (r, halt) = (reader.clone(), stop.clone());
        // Events count from the moment the stream is made.
        let mut seen = reader.seq();
        let thread = std::thread::Builder::new()
            .name("mapstate-stream".into())
            .spawn(move || {
                while !halt.load(std::sync::atomic::Ordering::SeqCst) {
                    wait_unless_stopped(&r, seen, &halt);
                    for e in r.changes_since(seen) {
                        seen = e.seq();
                        // Waits for room; fails once the stream is dropped.
                        if tx.blocking_send(e).is_err() {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawn the stream thread", std::path::PathBuf::new(), e))?;
        Ok(ChangeStream {
            events,
            reader,
            stop,
            thread: Some(thread),
        })
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
        // asleep on the futex is woken and sees the stop flag.
        self.events.close();
        stop_waiting(&self.reader, &self.stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
