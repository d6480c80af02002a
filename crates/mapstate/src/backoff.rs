//! [`Backoff`]: the pauses between two looks at something another process
//! changes (a lock it holds, a live image it is building).

use std::time::Duration;

/// Sleeps between looks: 200 µs first, doubling up to 20 ms, and counts
/// the time slept (for the callers that give up after a bound).
#[derive(Debug)]
pub(crate) struct Backoff {
    pause: Duration,
    slept: Duration,
}

impl Backoff {
    pub(crate) fn new() -> Self {
        Self {
            pause: Duration::from_micros(200),
            slept: Duration::ZERO,
        }
    }

    /// Sleeps before the next look.
    pub(crate) fn sleep(&mut self) {
        std::thread::sleep(self.pause);
        self.slept += self.pause;
        self.pause = (self.pause * 2).min(Duration::from_millis(20));
    }

    /// The time slept so far (at least; a loaded machine sleeps longer).
    pub(crate) fn slept(&self) -> Duration {
        self.slept
    }
}
