//! The change ring in the live header: for each of the last
//! `RING_ENTRIES` commits, its sequence number and the byte ranges it
//! changed (up to `RING_RANGES`, or the one range covering them all,
//! flagged as widened). A commit writes its entry before it is published,
//! so a woken waiter finds it; readers check the entry's sequence number
//! before and after copying it, as with a sequence lock.

use std::sync::atomic::{AtomicU64, Ordering, fence};

use crate::format::live::{RING, RING_ENTRIES, RING_ENTRY, RING_RANGES};
use crate::sys::Reservation;

/// The ring in a mapped live header.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChangeRing<'a> {
    header: &'a Reservation,
}

/// Bit 63 of an entry's range count: the ranges were widened to one.
const WIDENED: u64 = 1 << 63;

impl<'a> ChangeRing<'a> {
    /// The ring of the live header mapped at the start of `header`.
    pub(crate) fn new(header: &'a Reservation) -> Self {
        Self { header }
    }

    /// Word `i` of commit `seq`'s entry.
    fn word(self, seq: u64, i: usize) -> &'a AtomicU64 {
        let base = (RING + (seq % RING_ENTRIES) * RING_ENTRY) as usize;
        self.header.atomic_u64(base + 8 * i)
    }

    /// Writes commit `seq`'s entry: its ranges, and the bytes between the
    /// old and the new length if they differ (a length change is a change of
    /// those bytes), sorted, with overlapping and adjacent ranges joined (a
    /// write into the bytes a growth added is one range, not two).
    pub(crate) fn write(self, seq: u64, ranges: &[(u64, u64)], old_len: u64, new_len: u64) {
        let word = |i| self.word(seq, i);
        word(0).store(u64::MAX, Ordering::Relaxed);
        fence(Ordering::Release);
        let put = |i: usize, (off, len): (u64, u64)| {
            word(2 + 2 * i).store(off, Ordering::Relaxed);
            word(3 + 2 * i).store(len, Ordering::Relaxed);
        };
        let resized =
            (old_len != new_len).then(|| (old_len.min(new_len), old_len.abs_diff(new_len)));
        let all = ranges.iter().chain(resized.iter()).copied();
        let mut joined = [(0, 0); RING_RANGES + 1];
        let n = ranges.len() + usize::from(resized.is_some());
        let n = if n <= joined.len() {
            for (slot, r) in joined.iter_mut().zip(all.clone()) {
                *slot = r;
            }
            join(&mut joined[..n])
        } else {
            n
        };
        if n <= RING_RANGES {
            for (i, &r) in joined[..n].iter().enumerate() {
                put(i, r);
            }
            word(1).store(n as u64, Ordering::Relaxed);
        } else {
            let (lo, hi) = all.fold((u64::MAX, 0), |(lo, hi), (o, l)| {
                (lo.min(o), hi.max(o.saturating_add(l)))
            });
            put(0, (lo, hi - lo));
            word(1).store(1 | WIDENED, Ordering::Relaxed);
        }
        word(0).store(seq, Ordering::Release);
    }

    /// Commit `seq`'s entry: `(ranges, widened)`, or `None` if the ring no
    /// longer (or not yet) holds it.
    pub(crate) fn read(self, seq: u64) -> Option<(Vec<(u64, u64)>, bool)> {
        let word = |i| self.word(seq, i);
        if word(0).load(Ordering::Acquire) != seq {
            return None;
        }
        let n = word(1).load(Ordering::Relaxed);
        let widened = n & WIDENED != 0;
        let n = ((n & !WIDENED) as usize).min(RING_RANGES);
        let ranges = (0..n)
            .map(|i| {
                (
                    word(2 + 2 * i).load(Ordering::Relaxed),
                    word(3 + 2 * i).load(Ordering::Relaxed),
                )
            })
            .collect();
        fence(Ordering::Acquire);
        (word(0).load(Ordering::Relaxed) == seq).then_some((ranges, widened))
    }
}

/// Sorts `ranges` (offset, length) and joins those that overlap or touch,
/// in place; returns how many are left at the front.
fn join(ranges: &mut [(u64, u64)]) -> usize {
    ranges.sort_unstable();
    let mut n = 0;
    for i in 0..ranges.len() {
        let (off, len) = ranges[i];
        if n > 0 {
            let last = &mut ranges[n - 1];
            let end = last.0.saturating_add(last.1);
            if off <= end {
                last.1 = end.max(off.saturating_add(len)) - last.0;
                continue;
            }
        }
        ranges[n] = (off, len);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::join;

    #[test]
    fn join_sorts_and_joins_overlapping_and_adjacent_ranges() {
        let mut r = [(4096, 4), (4096, 4), (0, 2)];
        assert_eq!(join(&mut r), 2);
        assert_eq!(r[..2], [(0, 2), (4096, 4)]);
        let mut r = [(8192, 4), (4100, 4096), (10, 1), (11, 1)];
        assert_eq!(join(&mut r), 2);
        assert_eq!(r[..2], [(10, 2), (4100, 4096)]);
        let mut r = [(5, 1), (0, 1)];
        assert_eq!(join(&mut r), 2);
        assert_eq!(r, [(0, 1), (5, 1)]);
    }
}
