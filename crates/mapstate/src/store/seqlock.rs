//! [`SeqLock`]: a sequence lock on a word in shared memory. The writer
//! makes the word odd, changes what it protects, and makes it even again;
//! a reader copies, then checks the word did not move, and retries if it
//! did. The writer never waits for readers.
//!
//! The live header holds two: the commit lock (twice the sequence number of
//! the last commit applied, odd while the next one is applied) and the lock
//! of the published log position (a count that only grows).

use std::sync::atomic::{AtomicU64, Ordering, fence};

/// A sequence lock on `word`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SeqLock<'a> {
    word: &'a AtomicU64,
}

impl<'a> SeqLock<'a> {
    /// The lock on `word`.
    #[inline]
    pub(crate) fn new(word: &'a AtomicU64) -> Self {
        Self { word }
    }

    /// The word now (acquire: what the writer published before making it
    /// even is visible).
    #[inline]
    pub(crate) fn load(self) -> u64 {
        self.word.load(Ordering::Acquire)
    }

    /// The writer's first step: the word becomes `odd`; every store the
    /// writer makes after this is ordered after it.
    #[inline]
    pub(crate) fn begin_write(self, odd: u64) {
        debug_assert!(odd % 2 == 1);
        self.word.store(odd, Ordering::Relaxed);
        fence(Ordering::Release);
    }

    /// The writer's last step: the word becomes `even`, publishing every
    /// store made since [`SeqLock::begin_write`].
    #[inline]
    pub(crate) fn end_write(self, even: u64) {
        debug_assert!(even % 2 == 0);
        self.word.store(even, Ordering::Release);
    }

    /// The reader's check after a copy that started when the word was
    /// `s0` (even): whether no write overlapped the copy.
    #[inline]
    pub(crate) fn unchanged(self, s0: u64) -> bool {
        fence(Ordering::Acquire);
        self.word.load(Ordering::Relaxed) == s0
    }

    /// One optimistic read: `copy` runs only while the word is even, and its
    /// result is returned with the word's value if no write overlapped it.
    #[inline]
    pub(crate) fn read<T>(self, copy: impl FnOnce() -> T) -> Option<(u64, T)> {
        let s0 = self.load();
        if s0 % 2 == 1 {
            return None;
        }
        let v = copy();
        self.unchanged(s0).then_some((s0, v))
    }
}

#[cfg(test)]
mod tests {
    use super::SeqLock;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn a_read_fails_while_odd_and_when_a_write_overlaps() {
        let w = AtomicU64::new(4);
        let l = SeqLock::new(&w);
        assert_eq!(l.read(|| 7), Some((4, 7)));
        l.begin_write(5);
        assert_eq!(l.read(|| 7), None, "odd: a write is in progress");
        l.end_write(6);
        assert_eq!(
            l.read(|| l.begin_write(7)),
            None,
            "a write overlapped the copy"
        );
        l.end_write(8);
        assert!(l.unchanged(8) && !l.unchanged(6));
    }
}
