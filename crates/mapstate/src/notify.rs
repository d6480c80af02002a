//! Change notification: which commits were published and which bytes they
//! changed, for readers in any process.
//!
//! Every commit writes an entry into a ring in the live image's header (its
//! sequence number and up to three changed ranges; more ranges are widened to
//! the one range covering them) before it is published, then wakes waiters
//! through a futex in the same header (no system call when nobody waits).
//! A reader that falls more than the ring's length behind is told which
//! commits it missed, so it can re-read the whole state instead of missing
//! changes silently.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use crate::error::Result;
use crate::format::live;
use crate::region::{Options, Reader};

pub(crate) mod mtime;
pub(crate) mod protocol;
pub(crate) use protocol::advance;
use protocol::announce;

#[cfg(feature = "tokio")]
mod stream;
#[cfg(feature = "tokio")]
pub use stream::ChangeStream;

/// One published commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its sequence number.
    pub seq: u64,
    /// The byte ranges it changed (a length change counts as a change of the
    /// bytes between the old and the new length).
    pub ranges: Vec<Range<u64>>,
    /// Whether `ranges` were widened to one covering range (a commit with
    /// more ranges than the ring entry holds): never narrower than the truth.
    pub widened: bool,
}

/// What a reader learns about the commits after the one it saw last.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A commit and its ranges.
    Change(Change),
    /// Commits `first..=last` were published but left the ring before this
    /// reader looked: re-read whatever you derive from the state.
    Missed {
        /// The first missed commit.
        first: u64,
        /// The last missed commit.
        last: u64,
    },
}

impl Event {
    /// The newest sequence number this event covers.
    pub fn seq(&self) -> u64 {
        match self {
            Event::Change(c) => c.seq,
            Event::Missed { last, .. } => *last,
        }
    }

    /// Whether this event may concern bytes in `range` (a miss always may).
    pub fn touches(&self, range: &Range<u64>) -> bool {
        match self {
            Event::Change(c) => c
                .ranges
                .iter()
                .any(|r| r.start < range.end && range.start < r.end),
            Event::Missed { .. } => true,
        }
    }
}

impl Reader {
    /// The commits published after `after`, oldest first. Commits that
    /// already left the ring come as one [`Event::Missed`].
    pub fn changes_since(&self, after: u64) -> Vec<Event> {
        let now = self.seq();
        let mut out: Vec<Event> = Vec::new();
        let miss = |s: u64, out: &mut Vec<Event>| match out.last_mut() {
            Some(Event::Missed { last, .. }) if *last + 1 == s => *last = s,
            _ => out.push(Event::Missed { first: s, last: s }),
        };
        let oldest = now.saturating_sub(live::RING_ENTRIES - 1).max(1);
        if after + 1 < oldest {
            out.push(Event::Missed {
                first: after + 1,
                last: oldest - 1,
            });
        }
        for s in (after + 1).max(oldest)..=now {
            match self.live().read_change(s) {
                Some((ranges, widened)) => out.push(Event::Change(Change {
                    seq: s,
                    ranges: ranges.into_iter().map(|(o, l)| o..o + l).collect(),
                    widened,
                })),
                None => miss(s, &mut out),
            }
        }
        out
    }

    /// Sleeps until a commit newer than `after` is published (or `timeout`
    /// passes), then returns what [`Reader::changes_since`] does.
    pub fn wait_changes(&self, after: u64, timeout: Option<Duration>) -> Vec<Event> {
        self.wait_for_change(after, timeout);
        self.changes_since(after)
    }

    /// A blocking iterator over the commits published from now on.
    pub fn changes(&self) -> Changes<'_> {
        Changes {
            reader: self,
            seen: self.seq(),
            pending: Vec::new().into_iter(),
        }
    }
}

/// The blocking iterator of [`Reader::changes`]: never ends.
#[derive(Debug)]
pub struct Changes<'r> {
    reader: &'r Reader,
    seen: u64,
    pending: std::vec::IntoIter<Event>,
}

impl Iterator for Changes<'_> {
    type Item = Event;

    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.next() {
                self.seen = e.seq();
                return Some(e);
            }
            self.pending = self.reader.wait_changes(self.seen, None).into_iter();
        }
    }
}

type Callback = Box<dyn FnMut(&Event) + Send>;

/// The subscribers of a [`Watcher`]: a byte range and what to call.
type Subscribers = Arc<Mutex<Vec<(Range<u64>, Callback)>>>;

/// In-process subscriptions to byte ranges of a state: a thread waits for
/// commits and tells each subscriber whose range a commit touched, through
/// a channel or a callback (the "memory object with write callbacks").
pub struct Watcher {
    reader: Arc<Reader>,
    subscribers: Subscribers,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watcher")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

impl Watcher {
    /// Starts watching the state at `path` (only `live_dir` of `opts` matters).
    pub fn spawn(path: impl AsRef<std::path::Path>, opts: &Options) -> Result<Self> {
        let reader = Arc::new(Reader::open_with(path, opts)?);
        let subscribers: Subscribers = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (r, subs, halt) = (reader.clone(), subscribers.clone(), stop.clone());
        // Events count from the moment of `spawn`, not from whenever the
        // thread gets to run.
        let mut seen = reader.seq();
        let thread = std::thread::Builder::new()
            .name("mapstate-watcher".into())
            .spawn(move || {
                while !halt.load(Ordering::SeqCst) {
                    wait_unless_stopped(&r, seen, &halt);
                    for e in r.changes_since(seen) {
                        seen = e.seq();
                        let mut subs = subs
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner);
                        for (range, f) in subs.iter_mut() {
                            if e.touches(range) {
                                f(&e);
                            }
                        }
                    }
                }
            })
            .map_err(|e| {
                crate::Error::io("spawn the watcher thread", std::path::PathBuf::new(), e)
            })?;
        Ok(Self {
            reader,
            subscribers,
            stop,
            thread: Some(thread),
        })
    }

    /// Calls `f` (on the watcher's thread) for every commit touching `range`.
    pub fn on_change(&self, range: Range<u64>, f: impl FnMut(&Event) + Send + 'static) {
        self.subscribers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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

impl Drop for Watcher {
    fn drop(&mut self) {
        stop_waiting(&self.reader, &self.stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Sleeps once on the notification futex unless a commit newer than
/// `after` is published or `stop` (if given) is set; returns on a wake-up,
/// real or spurious, a signal, or `timeout`.
///
/// Both conditions are re-checked after announcing the sleeper: the writer
/// advances the word (clearing the bit) after publishing, so either we see
/// its commit or it sees our bit and wakes us (the protocol
/// `tests/loom_notify.rs` model-checks), and a [`stop_waiting`] that lands
/// at any moment is never slept through.
pub(crate) fn wait_once(
    r: &Reader,
    after: u64,
    timeout: Option<Duration>,
    stop: Option<&AtomicBool>,
) {
    let live = r.live();
    let word = live.notify_word();
    let done = || r.seq() > after || stop.is_some_and(|s| s.load(Ordering::SeqCst));
    if live.can_register() {
        let expected = announce(word);
        if !done() {
            crate::sys::futex_wait(word, expected, timeout);
        }
    } else {
        // May not write the live image, so cannot ask to be woken: sleep on
        // the word with a short timeout instead (polling).
        let expected = word.load(Ordering::SeqCst);
        let nap = Duration::from_millis(1);
        if !done() {
            crate::sys::futex_wait(word, expected, Some(timeout.map_or(nap, |t| t.min(nap))));
        }
    }
}

/// [`wait_once`] without a timeout, until `stop` (a watcher's thread).
pub(crate) fn wait_unless_stopped(r: &Reader, after: u64, stop: &AtomicBool) {
    wait_once(r, after, None, Some(stop));
}

/// Tells a thread in [`wait_unless_stopped`] on `r` to stop, and wakes it
/// (other waiters of the state see a spurious wake-up and sleep again).
pub(crate) fn stop_waiting(r: &Reader, stop: &AtomicBool) {
    stop.store(true, Ordering::SeqCst);
    r.live().wake_all();
}
