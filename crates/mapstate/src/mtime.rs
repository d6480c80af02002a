//! Modification times that tell the truth.
//!
//! The kernel sets a file's mtime for stores through a shared mapping only
//! at the first write to a clean page, and mapstate writes the durable file
//! only at checkpoints, so after commits `stat` (backup tools, `make`) would
//! see old times. After a commit is published, the writer sets the mtime of
//! the durable file and of the live image to now (`futimens`, access time
//! left alone), at most once per interval (`WriterOptions::mtime_interval`,
//! default one second; zero: every commit; `None`: never). The first commit
//! after a quiet interval always sets it, so the mtime is never older than
//! the last commit by more than the interval.
//!
//! The rate limit reads `CLOCK_MONOTONIC_COARSE` (a few nanoseconds through
//! the vDSO, a few milliseconds of granularity) so that commits that do not
//! set the time stay at memory speed.

use std::fs::File;
use std::time::{Duration, SystemTime};

/// When the writer last set the mtimes, and how often it may.
#[derive(Debug)]
pub(crate) struct MtimeClock {
    /// `None`: never set them.
    every: Option<Duration>,
    /// Coarse monotonic time of the last update; `None` before the first.
    last: Option<Duration>,
}

impl MtimeClock {
    /// A clock that allows one update per `every` (`None`: none).
    pub(crate) fn new(every: Option<Duration>) -> Self {
        Self { every, last: None }
    }

    /// Whether a commit published now should set the mtimes (and if so,
    /// counts this as the last update).
    pub(crate) fn due(&mut self) -> bool {
        self.due_at(coarse_now)
    }

    /// [`MtimeClock::due`] with the clock `now` (read only if needed).
    fn due_at(&mut self, now: impl FnOnce() -> Duration) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        if every.is_zero() {
            return true;
        }
        let now = now();
        if self.last.is_some_and(|l| now.saturating_sub(l) < every) {
            return false;
        }
        self.last = Some(now);
        true
    }
}

/// Sets the modification time of `files` to now. Failures are ignored: the
/// commit is published already, and the mtime is advice for other tools.
pub(crate) fn touch(files: &[&File]) {
    let now = SystemTime::now();
    for f in files {
        let _ = f.set_modified(now);
    }
}

/// `CLOCK_MONOTONIC_COARSE` as a duration since boot.
fn coarse_now() -> Duration {
    crate::sys::coarse_now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_limit_lets_the_first_update_through_then_one_per_interval() {
        let mut never = MtimeClock::new(None);
        assert!(!never.due());
        let mut always = MtimeClock::new(Some(Duration::ZERO));
        assert!(always.due() && always.due());
        let mut hourly = MtimeClock::new(Some(Duration::from_secs(3600)));
        let at = |s: u64| move || Duration::from_secs(s);
        assert!(hourly.due_at(at(5000)), "the first commit sets the time");
        assert!(
            !hourly.due_at(at(5001)),
            "the next within the hour does not"
        );
        assert!(!hourly.due_at(at(8599)));
        assert!(hourly.due_at(at(8600)), "the first after a quiet hour does");
        assert!(!hourly.due_at(at(8601)));
        // The real clock moves forward.
        let (a, b) = (coarse_now(), coarse_now());
        assert!(a <= b && a > Duration::ZERO);
    }
}
