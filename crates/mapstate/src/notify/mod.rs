//! Change notification inside a process: a [`Watcher`] calls subscribers
//! whose byte ranges a commit touched, and (the `tokio` feature) a
//! `ChangeStream` is an async stream of the same events. Both run a thread
//! that sleeps on the state's futex word as `Reader::wait_for_change` does
//! (no polling, no CPU while idle).

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::thread::JoinHandle;

use crate::change::Event;
use crate::error::{Error, Result};
use crate::reader::Reader;

#[cfg(feature = "tokio")]
mod stream;
#[cfg(feature = "tokio")]
pub use stream::ChangeStream;

/// A thread that waits for commits on a reader and hands each event to
/// `deliver`, from the moment it was made, until it is dropped (or
/// `deliver` says to stop).
#[derive(Debug)]
struct EventThread {
    reader: Arc<Reader>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl EventThread {
    fn spawn(
        name: &str,
        reader: Reader,
        mut deliver: impl FnMut(Event) -> bool + Send + 'static,
    ) -> Result<Self> {
        let reader = Arc::new(reader);
        let stop = Arc::new(AtomicBool::new(false));
        let (r, halt) = (reader.clone(), stop.clone());
        // Events count from the moment of the spawn, not from whenever the
        // thread gets to run.
        let mut seen = reader.seq();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                while !halt.load(Ordering::SeqCst) {
                    r.wait_once(seen, None, Some(&halt));
                    for e in r.changes_since(seen) {
                        seen = e.seq();
                        if !deliver(e) {
                            return;
                        }
                    }
                }
            })
            .map_err(|e| Error::io("spawn a thread for", reader.path(), e))?;
        Ok(Self {
            reader,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for EventThread {
    fn drop(&mut self) {
        self.reader.stop_waiting(&self.stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

type Callback = Box<dyn FnMut(&Event) + Send>;

/// The subscribers of a [`Watcher`]: a byte range and what to call.
type Subscribers = Arc<Mutex<Vec<(Range<u64>, Callback)>>>;

/// In-process subscriptions to byte ranges of a state: a thread waits for
/// commits and tells each subscriber whose range a commit touched, through
/// a channel or a callback (the "memory object with write callbacks").
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{Reader, Watcher, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// let mut w = Writer::options().create(true).len(4096).open(&path)?;
/// let watcher = Watcher::new(Reader::open(&path)?)?;
/// let events = watcher.subscribe(0..8);
/// let mut t = w.begin();
/// t.write_at(4, b"hi")?;
/// t.commit()?;
/// let e = events.recv().unwrap();
/// assert_eq!(e.seq(), 1);
/// # drop(watcher);
/// # w.remove()?;
/// # Ok(()) }
/// ```
pub struct Watcher {
    subscribers: Subscribers,
    thread: EventThread,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("reader", &self.thread.reader)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching the state `reader` reads.
    pub fn new(reader: Reader) -> Result<Self> {
        let subscribers: Subscribers = Arc::default();
        let subs = subscribers.clone();
        let thread = EventThread::spawn("mapstate-watcher", reader, move |e| {
            let mut subs = subs.lock().unwrap_or_else(PoisonError::into_inner);
            for (range, f) in subs.iter_mut() {
                if e.touches(range) {
                    f(&e);
                }
            }
            true
        })?;
        Ok(Self {
            subscribers,
            thread,
        })
    }

    /// The reader the watcher waits on (to read what an event announces).
    pub fn reader(&self) -> &Reader {
        &self.thread.reader
    }

    /// Calls `f` (on the watcher's thread) for every commit touching `range`.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use std::sync::mpsc;
    /// use mapstate::{Reader, Watcher, Writer};
    /// let mut w = Writer::options().create(true).len(4096).open(&path)?;
    /// let watcher = Watcher::new(Reader::open(&path)?)?;
    /// let (tx, rx) = mpsc::channel();
    /// watcher.on_change(0..8, move |e| drop(tx.send(e.seq()))); // on the watcher's thread
    /// let mut t = w.begin();
    /// t.write_at(4, b"x")?;
    /// let seq = t.commit()?;
    /// assert_eq!(rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(), seq);
    /// # drop(watcher);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn on_change(&self, range: Range<u64>, f: impl FnMut(&Event) + Send + 'static) {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((range, Box::new(f)));
    }

    /// A channel that receives every commit touching `range`.
    pub fn subscribe(&self, range: Range<u64>) -> mpsc::Receiver<Event> {
        let (tx, rx) = mpsc::channel();
        self.on_change(range, move |e| {
            let _ = tx.send(e.clone());
        });
        rx
    }
}
