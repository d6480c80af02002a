//! The writer's view: the live image's data mapped `MAP_PRIVATE`, which
//! transactions change with plain stores. Stores land in private
//! copy-on-write pages, so a killed writer leaves the shared state
//! untouched and readers never see uncommitted bytes. After a commit the
//! private pages equal the live image, so they stay mapped (no refault on
//! the next commit).
//!
//! The view reserves the whole maximum size (plus a guard) and grows when
//! touched past its mapped part (`sys::grow`, extend-on-write). Free stores
//! (through `Txn::as_mut_slice`) are found at commit by the write tracker
//! (userfaultfd, `sys::uffd`), or, where the kernel refuses it, by
//! comparing every page with the live image.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::PAGE;
use crate::fs;
use crate::store::live::Live;
use crate::sys::grow::{Failure, Growth, Spec as GrowSpec};
use crate::sys::uffd::WriteTracker;
use crate::sys::{self, MapKind, Reservation};

/// The writer's private view of the live image.
#[derive(Debug)]
pub(crate) struct View {
    /// Extend-on-write of the view (dropped first: it must go before the
    /// reservation and the live image it maps).
    grow: Growth,
    /// The live image's data mapped `MAP_PRIVATE` up to `grow.mapped()`;
    /// the rest of the maximum size is reserved and grows when touched,
    /// then a guard of `sys::grow::GUARD` bytes.
    res: Reservation,
    /// Finds the pages written by free stores; `None` until the first
    /// transaction that hands out the view, or where the kernel refuses it.
    tracker: Option<WriteTracker>,
    /// The tracker could not be made (or failed): compare whole pages.
    tracker_failed: bool,
    /// Ranges that transactions without free stores wrote since the last
    /// scan: the tracker reports them as written, so the next transaction
    /// that hands out the view forgets them first (else an extend-on-write
    /// commit would count them as its own stores).
    stale: Vec<(u64, u64)>,
}

impl View {
    /// A view of `live`'s data for a state of at most `max_size` bytes,
    /// nothing mapped yet.
    pub(crate) fn new(live: &Live, max_size: u64) -> Result<Self> {
        let limit = max_size.next_multiple_of(PAGE) as usize;
        let res = Reservation::new(limit + sys::grow::GUARD)
            .map_err(|e| Error::io("mmap (reserve)", &live.path, e))?;
        let grow = Growth::register(
            &res,
            sys::fd_of(&live.file),
            GrowSpec {
                file_off: PAGE,
                kind: MapKind::Private,
                writable: true,
                limit,
                mapped: 0,
                prefault: false,
                max_chunk: crate::sys::grow::CHUNK_MIN,
            },
        )
        .map_err(|e| Error::io("register the view for extend-on-write", &live.path, e))?;
        Ok(Self {
            grow,
            res,
            tracker: None,
            tracker_failed: false,
            stale: Vec::new(),
        })
    }

    /// Maps the view up to `len` bytes (growing the live image at `path`
    /// first).
    pub(crate) fn map_to(&self, len: u64, path: &Path) -> Result<()> {
        self.grow
            .grow_to(len as usize)
            .map_err(|e| fs::growth_error(path, None, e, len))
    }

    /// Bytes mapped (the rest grows when touched).
    pub(crate) fn mapped(&self) -> u64 {
        self.grow.mapped() as u64
    }

    /// The bytes `off..off + len`. Only the writer, holding the writer
    /// lock, maps and changes the view, so one slice over it is sound.
    pub(crate) fn bytes(&self, off: u64, len: u64) -> &[u8] {
        self.res.exclusive_bytes(off as usize, len as usize)
    }

    /// The bytes `off..off + len`, writable (see [`View::bytes`]).
    pub(crate) fn bytes_mut(&mut self, off: u64, len: u64) -> &mut [u8] {
        self.res.exclusive_bytes_mut(off as usize, len as usize)
    }

    /// The growth failure recorded since the last transaction (a full disk,
    /// a store past the maximum size), if any.
    pub(crate) fn growth_failure(&self) -> Option<Failure> {
        self.grow.failure()
    }

    /// Starts tracking free stores, the first time a transaction hands out
    /// the view (registering costs time proportional to the view's size,
    /// so writers that never use free stores never pay it). The tracker is
    /// created under the growth lock and its descriptor published there, so
    /// every range grown later is registered with it before it is written.
    pub(crate) fn track_free_stores(&mut self, path: &Path) {
        if let Some(t) = &mut self.tracker {
            // The part grown since the tracker last looked (registered with
            // it by the growth) is taken on first: a stale range there (the
            // zeros of a shrink after a growth) would otherwise stay counted
            // as written, and extend-on-write would set the length past it.
            t.adopt(&self.res, self.grow.mapped());
            for (off, len) in self.stale.drain(..) {
                if t.forget(&self.res, off as usize, len as usize).is_err() {
                    self.tracker_failed = true;
                }
            }
            if self.tracker_failed {
                self.drop_tracker();
            }
            return;
        }
        if self.tracker_failed {
            return;
        }
        if self.mapped() == 0 && self.map_to(PAGE, path).is_err() {
            self.tracker_failed = true;
            return;
        }
        let res = &self.res;
        let made = self
            .grow
            .set_tracker(|mapped| match WriteTracker::new(res, 0, mapped) {
                Ok(t) => (Some(t.raw_fd()), Some(t)),
                Err(_) => (None, None),
            });
        self.tracker_failed = made.is_none();
        self.tracker = made;
    }

    /// Stops tracking (the tracker failed): commits compare the whole view.
    fn drop_tracker(&mut self) {
        let t = self.tracker.take();
        self.grow.set_tracker(|_| (None, drop(t)));
        self.tracker_failed = true;
        self.stale.clear();
    }

    /// The pages of `handed_out` (ranges of the view, page rounded) below
    /// `n` written by free stores whose bytes differ from the live image,
    /// added to `out`: those the tracker reports as written, or without it
    /// every page. Returns the end of the last page written (without the
    /// tracker: the last page that differs), or 0. The cost follows the
    /// ranges, not the view. The caller has mapped `live` up to `n`.
    pub(crate) fn find_free_stores(
        &mut self,
        live: &Live,
        n: u64,
        handed_out: &[(u64, u64)],
        out: &mut Vec<(u64, u64)>,
    ) -> u64 {
        if self.grow.take_tracker_lost() {
            self.drop_tracker();
        }
        let mapped = self.mapped();
        // Stores outside the tracked part (past `mapped`) cannot be: they
        // would have grown it.
        let scope = pages_of(handed_out, mapped);
        let mut written = Vec::new();
        let res = &self.res;
        let scanned = self.tracker.as_mut().is_some_and(|t| {
            t.adopt(res, mapped as usize);
            scope
                .iter()
                .all(|r| t.take_written_in(res, r.clone(), &mut written).is_ok())
        });
        if !scanned {
            // What the tracker took before it failed is lost: compare every
            // page handed out, now and from now on.
            if self.tracker.is_some() {
                self.drop_tracker();
            }
            written = pages_of(handed_out, n);
        }
        let mut extent = 0;
        for r in written {
            let mut off = r.start as u64;
            let end = (r.end as u64).min(n);
            if scanned && end > off {
                extent = extent.max(end);
            }
            while off < end {
                let len = (end - off).min(PAGE);
                if self.bytes(off, len) != live.data(off, len) {
                    push_range(out, off, len);
                    extent = extent.max(off + len);
                }
                off += len;
            }
        }
        extent
    }

    /// Drops the private pages of `ranges` (page rounded; the ranges a
    /// discarded transaction handed out for free stores): they read the
    /// live image again, and the tracker forgets their stores.
    pub(crate) fn discard(&mut self, ranges: &[(u64, u64)]) {
        let mapped = self.mapped();
        if let Some(t) = &mut self.tracker {
            t.adopt(&self.res, mapped as usize);
        }
        for r in pages_of(ranges, mapped) {
            let _ = self.res.discard(r.start, r.len(), sys::Discard::DontNeed);
            if let Some(t) = &mut self.tracker {
                if t.forget(&self.res, r.start, r.len()).is_err() {
                    self.drop_tracker();
                }
            }
        }
    }

    /// Drops every private page (a transaction is discarded and the live
    /// image could not be mapped to restore it): the view reads the live
    /// image again.
    pub(crate) fn discard_all(&mut self) {
        let _ = self
            .res
            .discard(0, self.mapped() as usize, sys::Discard::DontNeed);
        if let Some(t) = &mut self.tracker {
            // Nothing is written now: the next scan starts from a clean
            // slate (over the grown part too).
            t.adopt(&self.res, self.grow.mapped());
            let _ = t.reset(&self.res);
        }
        self.stale.clear();
    }

    /// Copies `ranges` back from the live image (a transaction of explicit
    /// changes is discarded).
    pub(crate) fn restore(&mut self, live: &Live, ranges: &[(u64, u64)]) {
        for &(off, len) in ranges {
            self.bytes_mut(off, len)
                .copy_from_slice(live.data(off, len));
        }
    }

    /// Notes ranges a transaction without free stores wrote (committed or
    /// not), which the tracker must not count as the next free stores'.
    pub(crate) fn note_written(&mut self, ranges: impl IntoIterator<Item = (u64, u64)>) {
        if self.tracker.is_none() {
            return;
        }
        self.stale.extend(ranges);
        if self.stale.len() > 1024 {
            // Too many to forget one by one: forget everything at once.
            self.stale.clear();
            let mapped = self.grow.mapped();
            if let Some(t) = &mut self.tracker {
                t.adopt(&self.res, mapped);
                if t.reset(&self.res).is_err() {
                    self.drop_tracker();
                }
            }
        }
    }

    /// Drops the scratch pages that stores landed in after a failed
    /// growth, and forgets the failure.
    pub(crate) fn clear_growth_failure(&self) {
        let _ = self.grow.clear_failure();
    }
}

/// `ranges` rounded out to whole pages and cut at `end` (page rounded up).
fn pages_of(ranges: &[(u64, u64)], end: u64) -> Vec<std::ops::Range<usize>> {
    let end = end.next_multiple_of(PAGE);
    ranges
        .iter()
        .filter_map(|&(off, len)| {
            let start = off / PAGE * PAGE;
            let stop = off.saturating_add(len).min(end).next_multiple_of(PAGE);
            (start < stop).then_some(start as usize..stop as usize)
        })
        .collect()
}

/// Records a changed range, extending the previous one when this one
/// starts inside or right after it (a field written again and again, or a
/// buffer filled piece by piece, stays one range). Ranges are not sorted:
/// every range is logged with the bytes the view holds at commit, so
/// overlapping ranges carry identical bytes and their order never matters.
pub(crate) fn push_range(r: &mut Vec<(u64, u64)>, off: u64, len: u64) {
    if let Some(last) = r.last_mut() {
        let end = last.0 + last.1;
        if off >= last.0 && off <= end {
            last.1 = end.max(off + len) - last.0;
            return;
        }
    }
    r.push((off, len));
}

#[cfg(test)]
mod tests {
    use super::push_range;

    #[test]
    fn push_range_extends_the_previous_range_only() {
        let mut r = Vec::new();
        push_range(&mut r, 10, 5);
        push_range(&mut r, 12, 10); // overlaps: extended
        push_range(&mut r, 22, 2); // adjacent: extended
        push_range(&mut r, 0, 4); // before: a new range
        push_range(&mut r, 0, 4); // the same again: merged
        push_range(&mut r, 40, 1);
        assert_eq!(r, vec![(10, 14), (0, 4), (40, 1)]);
    }
}
