//! [`PageSet`]: the pages changed since the last checkpoint, one bit each:
//! what the next checkpoint must write into the durable image.

use crate::format::PAGE;

/// A set of page numbers; its size follows the highest page marked, not
/// the state's maximum size.
#[derive(Debug, Default)]
pub(crate) struct PageSet {
    bits: Vec<u64>,
}

impl PageSet {
    /// Marks the pages of `off..off + len`; pages at or past `max` (only a
    /// damaged record could name them) are ignored.
    pub(crate) fn mark(&mut self, off: u64, len: u64, max: u64) {
        let Some(end) = off.checked_add(len) else {
            return;
        };
        let end = end.min(max);
        if end <= off {
            return;
        }
        let last = (end - 1) / PAGE;
        let words = (last / 64 + 1) as usize;
        if self.bits.len() < words {
            self.bits.resize(words, 0);
        }
        for p in off / PAGE..=last {
            self.bits[(p / 64) as usize] |= 1 << (p % 64);
        }
    }

    /// Empties the set.
    pub(crate) fn clear(&mut self) {
        self.bits.fill(0);
    }

    /// The pages marked below `npages`, in order.
    pub(crate) fn below(&self, npages: u64) -> Vec<u64> {
        let mut pages = Vec::new();
        for (wi, &word) in self.bits.iter().enumerate() {
            let mut bits = word;
            while bits != 0 {
                let no = wi as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if no < npages {
                    pages.push(no);
                }
            }
        }
        pages
    }
}

/// The most pages one run holds: 64 KiB. A write of many pages into a
/// file's uncached pages makes the page cache hold them in large folios
/// (up to 2 MiB), and every later small write into such a folio walks all
/// of its blocks (ext4's `block_write_begin` and `block_commit_write`): a
/// checkpoint of every other page of 64 MiB after one of all its pages
/// took 162 ms instead of 128 (`checkpoint` bench row, medians of 4).
/// Runs of 16 pages keep folios small and the writes few: 122 ms, and the
/// checkpoint of all pages 118 ms (181 ms a page at a time).
pub(crate) const RUN_PAGES: usize = 16;

/// The runs of consecutive page numbers in `pages`, in order: `(i, n)` for
/// `pages[i..i + n]` numbering `n` adjacent pages, at most [`RUN_PAGES`].
/// Each run is one write.
pub(crate) fn runs(pages: &[u64]) -> impl Iterator<Item = (usize, usize)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let start = i;
        let first = *pages.get(start)?;
        i += 1;
        while i - start < RUN_PAGES && pages.get(i) == Some(&(first + (i - start) as u64)) {
            i += 1;
        }
        Some((start, i - start))
    })
}

/// The bytes of the run of `n` pages from page `first` in a state of `len`
/// bytes: its offset and length, cut at `len`.
pub(crate) fn run_bytes(first: u64, n: usize, len: u64) -> (u64, u64) {
    let at = first * PAGE;
    (at, ((first + n as u64) * PAGE).min(len) - at)
}

#[cfg(test)]
mod tests {
    use super::{PAGE, PageSet, RUN_PAGES, runs};

    #[test]
    fn runs_are_adjacent_page_numbers_in_order() {
        let pages = [0, 1, 2, 5, 7, 8, 3, 4];
        let got: Vec<_> = runs(&pages).collect();
        assert_eq!(got, vec![(0, 3), (3, 1), (4, 2), (6, 2)]);
        assert_eq!(runs(&[]).count(), 0);
        assert_eq!(runs(&[u64::MAX]).collect::<Vec<_>>(), vec![(0, 1)]);
        let long: Vec<u64> = (100..=100 + 2 * RUN_PAGES as u64).collect();
        let got: Vec<_> = runs(&long).collect();
        assert_eq!(
            got,
            vec![(0, RUN_PAGES), (RUN_PAGES, RUN_PAGES), (2 * RUN_PAGES, 1)]
        );
    }

    #[test]
    fn marks_whole_pages_below_the_maximum() {
        let mut s = PageSet::default();
        s.mark(PAGE - 1, 2, 1 << 20); // pages 0 and 1
        s.mark(70 * PAGE, 1, 1 << 20);
        s.mark(u64::MAX - 1, 5, 1 << 20); // overflows: ignored
        s.mark(1 << 20, PAGE, 1 << 20); // past the maximum: ignored
        assert_eq!(s.below(1000), vec![0, 1, 70]);
        assert_eq!(s.below(70), vec![0, 1]);
        s.clear();
        assert!(s.below(1000).is_empty());
    }
}
