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
//! durable image is untouched. `docs/DESIGN.md` says what each step leaves.

use std::path::Path;

use crate::error::{Error, Result};
use crate::format::{DurableHeader, PAGE};
use crate::store::durable::{COUNTER_LIMIT, Durable, at_counter_limit};
use crate::store::journal::{self, Journal};
use crate::store::live::Live;
use crate::store::pages::PageSet;
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
    journal::write(journal_path, durable.owner, &target, &pages, |no, buf| {
        let n = (len - no * PAGE).min(PAGE) as usize;
        live.read(no * PAGE, &mut buf[..n]);
        buf[n..].fill(0);
    })?;
    testing::point(Step::JournalSynced);
    let journal =
        journal::read(journal_path, &durable.header, durable.owner)?.ok_or_else(|| {
            Error::Corrupt {
                path: journal_path.into(),
                what: "the checkpoint journal just written does not read back".into(),
            }
        })?;
    finish(durable, &journal)?;
    testing::point(Step::HeaderSynced);
    journal::truncate(journal_path, durable.owner);
    Ok(target)
}

/// Writes a journal's pages and header into the durable image, with syncs:
/// pages, `fdatasync`, header, `fdatasync`. Recovery calls it for a
/// journal a crash left behind.
pub(crate) fn finish(d: &mut Durable, j: &Journal) -> Result<()> {
    d.reserve(j.target.len.get())?;
    let half = j.pages.len() / 2;
    let mut i = 0;
    j.for_each_page(|at, bytes| {
        if i == half {
            testing::point(Step::DurableHalf);
        }
        i += 1;
        d.write_data(at, bytes)
    })?;
    d.sync()?;
    testing::point(Step::DurableSynced);
    d.write_header(j.target)?;
    d.sync()
}
