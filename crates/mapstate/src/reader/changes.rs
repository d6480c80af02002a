//! Waiting for commits and listing what they changed, for a [`Reader`]:
//! the waiter's side of the notification protocol (`store::notify_word`)
//! and the change ring.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{NO_WRITER_NAP, Reader};
use crate::change::{Change, Event, push_missed};
use crate::error::Result;
use crate::format::live;
use crate::store::notify_word::announce;

impl Reader {
    /// Sleeps until a commit newer than `after` is published, or `timeout`
    /// passes: `Some` of the newest sequence number, or `None` if the
    /// timeout passed first. Fails with `Error::WriterNotVisible` if a
    /// writer this reader cannot see opens the state meanwhile (while no
    /// writer has this live image, the sleep wakes once a second to ask).
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use std::time::Duration;
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let r = mapstate::Reader::open(&path)?;
    /// // Nothing after commit 0 yet: the wait times out.
    /// assert_eq!(r.wait_for_change(0, Some(Duration::from_millis(10)))?, None);
    /// let mut t = w.begin();
    /// t.write_at(0, b"x")?;
    /// t.commit()?;
    /// assert_eq!(r.wait_for_change(0, None)?, Some(1)); // at once: commit 1 is there
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn wait_for_change(&self, after: u64, timeout: Option<Duration>) -> Result<Option<u64>> {
        // A timeout too far out to represent is no timeout.
        let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
        loop {
            let now = self.seq();
            if now > after {
                return Ok(Some(now));
            }
            self.check_visible()?;
            let remaining = match (deadline, timeout) {
                (Some(d), _) => match d.checked_duration_since(Instant::now()) {
                    Some(r) if !r.is_zero() => Some(r),
                    _ => return Ok(None),
                },
                (None, Some(t)) => Some(t),
                (None, None) => None,
            };
            let nap = if self.live.writer_pid().load(Ordering::Relaxed) == 0 {
                Some(remaining.map_or(NO_WRITER_NAP, |r| r.min(NO_WRITER_NAP)))
            } else {
                remaining
            };
            self.wait_once(after, nap, None);
        }
    }

    /// Sleeps once on the notification futex unless a commit newer than
    /// `after` is published or `stop` (if given) is set; returns on a
    /// wake-up, real or spurious, a signal, or `timeout`.
    ///
    /// Both conditions are re-checked after announcing the sleeper: the
    /// writer advances the word (clearing the bit) after publishing, so
    /// either we see its commit or it sees our bit and wakes us (the
    /// protocol `tests/loom_notify.rs` model-checks), and a
    /// [`Reader::stop_waiting`] that lands at any moment is never slept
    /// through.
    pub(crate) fn wait_once(
        &self,
        after: u64,
        timeout: Option<Duration>,
        stop: Option<&AtomicBool>,
    ) {
        let word = self.live.notify_word();
        let done = || self.seq() > after || stop.is_some_and(|s| s.load(Ordering::SeqCst));
        if self.live.can_register() {
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

    /// Tells a thread in [`Reader::wait_once`] with `stop` to stop, and
    /// wakes it (other waiters of the state see a spurious wake-up and
    /// sleep again).
    pub(crate) fn stop_waiting(&self, stop: &AtomicBool) {
        stop.store(true, Ordering::SeqCst);
        self.live.wake_all();
    }

    /// The commits published after `after`, oldest first. Commits that
    /// already left the ring come as one [`Event::Missed`].
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// use mapstate::{Change, Event};
    /// let mut w = mapstate::Writer::options().create(true).len(4096).open(&path)?;
    /// let r = mapstate::Reader::open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(10, b"ab")?;
    /// t.commit()?;
    /// let ranges = vec![10..12];
    /// assert_eq!(r.changes_since(0), [Event::Change(Change { seq: 1, ranges, widened: false })]);
    /// # w.remove()?;
    /// # Ok(()) }
    /// ```
    pub fn changes_since(&self, after: u64) -> Vec<Event> {
        let now = self.seq();
        let mut out: Vec<Event> = Vec::new();
        let oldest = now.saturating_sub(live::RING_ENTRIES - 1).max(1);
        if after + 1 < oldest {
            out.push(Event::Missed {
                first: after + 1,
                last: oldest - 1,
            });
        }
        for s in (after + 1).max(oldest)..=now {
            match self.live.ring().read(s) {
                Some((ranges, widened)) => out.push(Event::Change(Change {
                    seq: s,
                    ranges: ranges
                        .into_iter()
                        .map(|(o, l)| o..o.saturating_add(l))
                        .collect(),
                    widened,
                })),
                None => push_missed(&mut out, s),
            }
        }
        out
    }

    /// Sleeps until a commit newer than `after` is published (or `timeout`
    /// passes), then returns what [`Reader::changes_since`] does (nothing
    /// if the timeout passed first).
    pub fn wait_changes(&self, after: u64, timeout: Option<Duration>) -> Result<Vec<Event>> {
        self.wait_for_change(after, timeout)?;
        Ok(self.changes_since(after))
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

/// The blocking iterator of [`Reader::changes`]: never ends, but yields an
/// error if a writer this reader cannot see opens the state (and then
/// goes on trying).
#[derive(Debug)]
pub struct Changes<'r> {
    reader: &'r Reader,
    seen: u64,
    pending: std::vec::IntoIter<Event>,
}

impl Iterator for Changes<'_> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Result<Event>> {
        loop {
            if let Some(e) = self.pending.next() {
                self.seen = e.seq();
                return Some(Ok(e));
            }
            match self.reader.wait_changes(self.seen, None) {
                Ok(events) => self.pending = events.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
