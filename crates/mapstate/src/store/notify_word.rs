//! The wait/wake protocol on the notification word in the live header.
//!
//! Self-contained (std only) on purpose: `tests/loom_notify.rs` compiles
//! this very file against loom's atomics and checks it for lost wake-ups.
//!
//! A waiter: (1) [`announce`]s itself by setting [`WAITING`], (2) re-checks
//! the sequence number, (3) `FUTEX_WAIT`s on the value `announce` returned.
//! The writer, after publishing a commit (the sequence lock's release
//! store): [`advance`]s the word and `FUTEX_WAKE`s only if the bit was set.
//! Both steps on the word are read-modify-writes, so they are ordered: if
//! the waiter's came first, the writer sees the bit and wakes it (and the
//! kernel's compare in step 3 fails, or the wake finds it queued); if the
//! writer's came first, the waiter's step 2 sees the commit.
//!
//! A wake-all (`Live::wake_all`: a new writer when it opens, and any reader
//! that may write the header when it stops its own waiting thread, as
//! dropping a `Watcher` or `ChangeStream` does) [`advance`]s the word too,
//! then `FUTEX_WAKE`s everyone. A reader's runs at any moment, concurrently
//! with the writer's commits, so `advance` is a compare-and-swap loop:
//! every step moves the count exactly one on, whoever makes it.

use std::sync::atomic::{AtomicU32, Ordering};

/// Bit 31 of the notification word: somebody may be sleeping on it.
pub(crate) const WAITING: u32 = 1 << 31;

/// The operations the protocol makes on the notification word, so that
/// the same code runs on the shared futex word and in the loom model.
pub(crate) trait Word {
    /// `fetch_or(bits)`, sequentially consistent; returns the old value.
    fn fetch_or(&self, bits: u32) -> u32;
    /// A relaxed load.
    fn load(&self) -> u32;
    /// `compare_exchange_weak(current, new)`: stores `new` if the word holds
    /// `current` (sequentially consistent) and returns `Ok(current)`, else
    /// (or spuriously) returns `Err` with the value it found (relaxed).
    fn compare_exchange_weak(&self, current: u32, new: u32) -> Result<u32, u32>;
}

impl Word for AtomicU32 {
    fn fetch_or(&self, bits: u32) -> u32 {
        AtomicU32::fetch_or(self, bits, Ordering::SeqCst)
    }
    fn load(&self) -> u32 {
        AtomicU32::load(self, Ordering::Relaxed)
    }
    fn compare_exchange_weak(&self, current: u32, new: u32) -> Result<u32, u32> {
        AtomicU32::compare_exchange_weak(self, current, new, Ordering::SeqCst, Ordering::Relaxed)
    }
}

/// The waiter's step 1: sets [`WAITING`] and returns the value to sleep on
/// in step 3 (a commit that lands between steps 2 and 3 has moved the word
/// on, so the kernel's compare fails and the wait returns at once).
pub(crate) fn announce(word: &impl Word) -> u32 {
    word.fetch_or(WAITING) | WAITING
}

/// The writer's step, after a commit is published, and every wake-all's:
/// moves the word on and clears [`WAITING`] in one atomic step; `true` if a
/// waiter had set the bit, so that `FUTEX_WAKE` is needed.
///
/// The low 31 bits count these steps (modulo 2^31) rather than hold the
/// sequence number: with a word holding the sequence number, a wake-all
/// that added one to it made it equal to what the next commit stores, and
/// a waiter that announced itself between the two and reached `FUTEX_WAIT`
/// only after another waiter set the bit again found its old value in the
/// word (ABA) and slept through the commit.
///
/// Readers' wake-alls race the writer's steps, so the next value is stored
/// only if the word still holds the value it was computed from (a
/// compare-and-swap, retried with the value found). Uncontended it is one
/// load and one read-modify-write, as cheap as the `swap` it replaced; that
/// `swap` of a value computed from a plain load was right only with a
/// single advancer: a reader that loaded, stalled while the writer advanced
/// twice, then stored, moved the count back to a value a waiter could be
/// about to sleep on, and it slept through the commit (ABA again).
pub(crate) fn advance(word: &impl Word) -> bool {
    let mut old = word.load();
    loop {
        let next = (old & !WAITING).wrapping_add(1) & !WAITING;
        match word.compare_exchange_weak(old, next) {
            Ok(_) => return old & WAITING != 0,
            Err(now) => old = now,
        }
    }
}
