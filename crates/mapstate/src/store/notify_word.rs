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
    /// `swap(v)`, sequentially consistent; returns the old value.
    fn swap(&self, v: u32) -> u32;
}

impl Word for AtomicU32 {
    fn fetch_or(&self, bits: u32) -> u32 {
        AtomicU32::fetch_or(self, bits, Ordering::SeqCst)
    }
    fn load(&self) -> u32 {
        AtomicU32::load(self, Ordering::Relaxed)
    }
    fn swap(&self, v: u32) -> u32 {
        AtomicU32::swap(self, v, Ordering::SeqCst)
    }
}

/// The waiter's step 1: sets [`WAITING`] and returns the value to sleep on
/// in step 3 (a commit that lands between steps 2 and 3 has moved the word
/// on, so the kernel's compare fails and the wait returns at once).
pub(crate) fn announce(word: &impl Word) -> u32 {
    word.fetch_or(WAITING) | WAITING
}

/// The writer's step, after a commit is published (and a new writer's
/// wake-all): moves the word on and clears [`WAITING`] in one atomic step;
/// `true` if a waiter had set the bit, so that `FUTEX_WAKE` is needed.
///
/// The low 31 bits count these steps (modulo 2^31) rather than hold the
/// sequence number: with a word holding the sequence number, a wake-all
/// that added one to it made it equal to what the next commit stores, and
/// a waiter that announced itself between the two and reached `FUTEX_WAIT`
/// only after another waiter set the bit again found its old value in the
/// word (ABA) and slept through the commit.
///
/// Only the writer changes the count (waiters only set the bit), so the
/// next value is computed from a plain load and stored with one `swap`,
/// which returns the bit as it was at that instant.
pub(crate) fn advance(word: &impl Word) -> bool {
    let next = (word.load() & !WAITING).wrapping_add(1) & !WAITING;
    word.swap(next) & WAITING != 0
}
