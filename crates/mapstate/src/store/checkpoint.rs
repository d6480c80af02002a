//! Checkpoints: every page changed since the last checkpoint goes into the
//! durable image, through the journal, so that the image is consistent on
//! disk at every moment. The order of writes and syncs:
//!
//! 1. the journal (the pages and the next header), `fdatasync`
//!    (`Step::JournalSynced`);
//! 2. the pages into the durable image, `fdatasync`
//!    (`Step::DurableHalf` half-way, `Step::DurableSynced` after);
//! 3. the next header into the other header slot, `fdatasync`
//!    (`Step::HeaderSynced`).
//!
//! The writer then restarts the log with the new header's salt. A crash
//! after 1 is finished from the journal at the next open; before it, the
//! durable image is untouched. A checkpoint whose pages all lie past the
//! durable image's end (an append) skips the journal: until the new
//! header is synced those pages are no part of the image. `docs/DESIGN.md`
//! says what each step leaves.

use std::ops::Range;
use std::path::Path;

use crate::error::Result;
use crate::format::{DurableHeader, PAGE};
use crate::store::durable::{COUNTER_LIMIT, Durable, at_counter_limit};
use crate::store::journal::{self, Journal};
use crate::store::live::Live;
use crate::store::pages::{PageSet, run_bytes, runs};
use crate::testing::{self, Step};

/// Checkpoints the state as of commit `seq` with length `len`: writes the
/// `changed` pages of `live` (and every page past the durable image's
/// length) through the journal at `journal_path` into
/// `durable`. Returns the durable image's new header (whose `log_salt`
/// the log restarts with).
pub(crate) fn run(
    durable: &mut Durable,
    journal_path: &Path,
    live: &Live,
    changed: &mut PageSet,
    seq: u64,
    len: u64,
) -> Result<DurableHeader> {
    if durable.header.generation.get() >= COUNTER_LIMIT {
        return Err(at_counter_limit(&durable.path, "checkpoint generation"));
    }
    // Pages past the durable image's length were never written there
    // (after a shrink its file may even hold stale bytes): write them.
    let durable_len = durable.header.len.get();
    if len > durable_len {
        changed.mark(
            durable_len,
            len - durable_len,
            durable.header.max_size.get(),
        );
    }
    let target = durable.next_header(seq, len);
    let pages = changed.below(len.div_ceil(PAGE));
    // Pages only past the durable image's end (an append, or none): none
    // of them is part of the image the current header describes, so a
    // crash before the new header leaves that image whole, and the header
    // (two slots) is the commit point. No journal then: each byte goes to
    // the disk once.
    if pages.first().is_some_and(|&p| p * PAGE < durable_len) {
        journal::write(journal_path, durable.owner, &target, &pages, |no, buf| {
            let n = (len - no * PAGE).min(PAGE) as usize;
            live.read(no * PAGE, &mut buf[..n]);
            buf[n..].fill(0);
        })?;
        testing::point(Step::JournalSynced);
    }
    // The pages (again, if journalled) from the live image, unchanged
    // meanwhile (only this thread commits): what a crash from here on
    // leaves is finished from the journal, which holds the same bytes.
    finish(durable, target, Pages::Live(live, &pages))?;
    testing::point(Step::HeaderSynced);
    // Emptied (a journal an earlier life left, which leads from another
    // header and is ignored, all the same).
    journal::truncate(journal_path, durable.owner);
    Ok(target)
}

/// Where the pages that [`finish`] writes come from.
#[derive(Clone, Copy)]
pub(crate) enum Pages<'a> {
    /// The live image, whose pages (these page numbers) the checkpoint
    /// just wrote into the journal, or that lie past the durable image's
    /// end.
    Live(&'a Live, &'a [u64]),
    /// A journal that a crash left behind.
    Journal(&'a Journal),
}

impl Pages<'_> {
    fn numbers(&self) -> &[u64] {
        match self {
            Pages::Live(_, pages) => pages,
            Pages::Journal(j) => &j.pages,
        }
    }

    /// Calls `f(offset, bytes)` for the runs of adjacent pages among
    /// `numbers()[range]`, cut at the state's length `len`.
    fn for_each_run(
        &self,
        range: Range<usize>,
        len: u64,
        mut f: impl FnMut(u64, &[u8]) -> Result<()>,
    ) -> Result<()> {
        match self {
            Pages::Live(live, pages) => {
                let pages = &pages[range];
                for (i, n) in runs(pages) {
                    let (at, bytes) = run_bytes(pages[i], n, len);
                    f(at, live.data(at, bytes))?;
                }
                Ok(())
            }
            Pages::Journal(j) => j.for_each_run(range, f),
        }
    }
}

/// Writes a checkpoint's pages into the durable image, a run of adjacent
/// pages per write, and then its header `target`, with syncs: pages,
/// `fdatasync`, header, `fdatasync`. Recovery calls it for a journal a
/// crash left behind.
pub(crate) fn finish(d: &mut Durable, target: DurableHeader, pages: Pages<'_>) -> Result<()> {
    let len = target.len.get();
    d.reserve(len)?;
    let n = pages.numbers().len();
    pages.for_each_run(0..n / 2, len, |at, bytes| d.write_data(at, bytes))?;
    testing::point(Step::DurableHalf);
    pages.for_each_run(n / 2..n, len, |at, bytes| d.write_data(at, bytes))?;
    d.sync()?;
    testing::point(Step::DurableSynced);
    d.write_header(target)?;
    d.sync()
}
