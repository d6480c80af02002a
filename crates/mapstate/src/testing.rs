//! Crash and fault injection for tests (`mapstate torture`, the crash and
//! power-cut tests): the numbered steps of the commit, checkpoint and
//! recovery paths, and hooks that kill the process at one of them or make
//! syncs fail. Only with the `testing` feature; a build without it has no
//! hooks at all, and every crash point compiles to nothing.
//!
//! `docs/DESIGN.md` says what a crash at each step leaves and how recovery
//! repairs it.

/// A numbered step of the commit (1–8), checkpoint (12–15) or recovery
/// (21) path, where a test can kill the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum Step {
    /// The record's header and range list are in the log.
    RecordRanges = 1,
    /// The record's bytes are in the log; its chain is not written yet.
    RecordBytes = 2,
    /// The record is complete (and with `Sync`, on disk).
    Appended = 3,
    /// The sequence lock is odd: the commit is being applied.
    ApplyBegun = 4,
    /// Half of the ranges are copied into the live image.
    ApplyHalf = 5,
    /// All ranges are copied; the commit is not published yet.
    Applied = 6,
    /// The commit is published and waiters are woken.
    Published = 7,
    /// The commit is visible (the sequence lock even, waiters woken), but
    /// the log position readers catch up from is not published yet.
    Visible = 8,
    /// The log position readers catch up from is half-written (its lock
    /// odd): after a commit, when a writer opens, and at a checkpoint.
    PositionHalf = 9,
    /// The checkpoint journal is written and synced.
    JournalSynced = 12,
    /// Half of the journal's pages are written into the durable image.
    DurableHalf = 13,
    /// All pages are in the durable image, synced; the header is not.
    DurableSynced = 14,
    /// The durable image's new header is written and synced.
    HeaderSynced = 15,
    /// Recovery is in the middle of replaying a log record.
    ReplayHalf = 21,
}

impl Step {
    /// Every step, in the order a commit then a checkpoint reaches them.
    pub const ALL: [Step; 14] = [
        Step::RecordRanges,
        Step::RecordBytes,
        Step::Appended,
        Step::ApplyBegun,
        Step::ApplyHalf,
        Step::Applied,
        Step::Visible,
        Step::PositionHalf,
        Step::Published,
        Step::JournalSynced,
        Step::DurableHalf,
        Step::DurableSynced,
        Step::HeaderSynced,
        Step::ReplayHalf,
    ];

    /// The step's number, as `docs/DESIGN.md` writes it.
    pub fn number(self) -> u32 {
        self as u32
    }

    /// The step numbered `n`.
    pub fn from_number(n: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.number() == n)
    }
}

/// Marks `step` of a commit, checkpoint or recovery: with the `testing`
/// feature, the armed hook fires here.
#[inline]
pub(crate) fn point(step: Step) {
    #[cfg(feature = "testing")]
    hooks::point(step);
    #[cfg(not(feature = "testing"))]
    let _ = step;
}

#[cfg(feature = "testing")]
pub use hooks::{
    crash_at, disable_write_tracking, disarm_syncs, fail_syncs_after, observe_syncs, signal_at,
};

#[cfg(feature = "testing")]
mod hooks {
    use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    use super::Step;

    static STEP: AtomicU32 = AtomicU32::new(0);
    static COUNTDOWN: AtomicU64 = AtomicU64::new(0);
    static SIGNAL: AtomicU32 = AtomicU32::new(9);

    /// Kills this process with SIGKILL when a commit, checkpoint or recovery
    /// reaches `step` for the `nth` time (1 = first).
    pub fn crash_at(step: Step, nth: u64) {
        arm(step, nth, 9);
    }

    /// Sends `signal` to this process when a commit reaches `step` for the
    /// `nth` time (to show that termination signals wait for the commit).
    pub fn signal_at(step: Step, nth: u64, signal: u32) {
        arm(step, nth, signal);
    }

    fn arm(step: Step, nth: u64, signal: u32) {
        COUNTDOWN.store(nth, Ordering::Relaxed);
        SIGNAL.store(signal, Ordering::Relaxed);
        STEP.store(step.number(), Ordering::Relaxed);
    }

    #[inline]
    pub(super) fn point(step: Step) {
        if STEP.load(Ordering::Relaxed) == step.number() {
            hit();
        }
    }

    #[cold]
    fn hit() {
        if COUNTDOWN.fetch_sub(1, Ordering::Relaxed) != 1 {
            return;
        }
        let sig = SIGNAL.load(Ordering::Relaxed);
        let signal = i32::try_from(sig)
            .ok()
            .and_then(rustix::process::Signal::from_named_raw)
            .unwrap_or(rustix::process::Signal::KILL);
        let _ = rustix::process::kill_process(rustix::process::getpid(), signal);
        if signal == rustix::process::Signal::KILL {
            // SIGKILL cannot be caught; nothing runs after it is delivered.
            loop {
                std::hint::spin_loop();
            }
        }
    }

    /// Makes every `fdatasync`/`fsync` after the next `n` successful ones
    /// fail with EIO, as a dying disk would.
    pub fn fail_syncs_after(n: u64) {
        crate::sys::sync_hooks::fail_after(n);
    }

    /// Calls `f(fd, before)` before (`true`) and after (`false`) every
    /// `fdatasync`/`fsync` mapstate makes; `None` removes it.
    #[allow(clippy::type_complexity)]
    pub fn observe_syncs(f: Option<Box<dyn FnMut(i32, bool) + Send>>) {
        crate::sys::sync_hooks::observe(f);
    }

    /// Removes the sync hooks.
    pub fn disarm_syncs() {
        crate::sys::sync_hooks::disarm();
    }

    /// Makes the userfaultfd write tracker unavailable, as on a kernel
    /// before 6.7: free stores are then found by comparing the view with
    /// the live image.
    pub fn disable_write_tracking() {
        crate::sys::uffd::DISABLED.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::Step;

    #[test]
    fn every_step_has_its_own_number() {
        for s in Step::ALL {
            assert_eq!(Step::from_number(s.number()), Some(s));
        }
        assert_eq!(Step::from_number(10), None);
    }
}
