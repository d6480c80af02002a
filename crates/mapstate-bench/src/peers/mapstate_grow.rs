//! mapstate's extend-on-write workloads (`w6`, `grow`): a `Mapping` opened
//! with `extend_on_write(true)`, stored into through its pointer with no
//! growth code; and, for `w6`, the same appends through a `Writer`'s
//! extend-on-write view with commits.
#![allow(unsafe_code)] // stores through the mapping's pointer, as a C program would

use std::path::Path;
use std::time::Instant;

use mapstate::{Durability, MapOptions, Mapping, Writer};

use crate::harness::{Ctx, MIB, Result, disk_bytes, nanos};
use crate::peers::{APPEND_RECORD, Fill, append_records, grow_figures};
use crate::report::Measurement;
use crate::slot::fill_slots;

const PAGE: usize = 4096;

/// An extend-on-write mapping of a new file, reserving `max` bytes.
fn attach(path: &Path, max: u64) -> Result<Mapping> {
    Ok(MapOptions::new()
        .create(true)
        .max_size(max)
        .extend_on_write(true)
        .open(path)?)
}

/// Appends `total` bytes of 4 KiB records by plain stores; trims the file
/// to the high-water mark at the end (timed). Returns the seconds taken.
fn append_mapping(path: &Path, total: u64, recs: &[Vec<u8>]) -> Result<f64> {
    let t = Instant::now();
    let mut m = attach(path, 4 * total)?;
    let base = m.as_mut_ptr();
    for i in 0..(total as usize / APPEND_RECORD) {
        // SAFETY: `i * 4 KiB + 4 KiB <= total`, inside the reserved maximum
        // size of an extend-on-write mapping (the handler maps what the
        // stores touch first); nothing else uses the file.
        unsafe {
            std::ptr::copy_nonoverlapping(
                recs[i % 16].as_ptr(),
                base.wrapping_add(i * APPEND_RECORD),
                APPEND_RECORD,
            );
        }
    }
    let len = m.trim()?;
    drop(m);
    let secs = t.elapsed().as_secs_f64();
    if len != total {
        return Err(format!("trimmed to {len} bytes, {total} written").into());
    }
    Ok(secs)
}

/// The same appends through a `Writer`'s extend-on-write view, one commit
/// per MiB (`PageCache`), closed at the end (a checkpoint: timed).
fn append_writer(dir: &Path, total: u64, recs: &[Vec<u8>]) -> Result<f64> {
    let path = dir.join("w6-state");
    let live = dir.join("w6-live");
    std::fs::create_dir_all(&live)?;
    let opts = Writer::options()
        .create(true)
        .len(0)
        .max_size(4 * total)
        .durability(Durability::PageCache)
        .live_dir(&live);
    let start = Instant::now();
    let mut w = opts.open(&path)?;
    let per_commit = (MIB as usize) / APPEND_RECORD;
    let n = total as usize / APPEND_RECORD;
    let mut i = 0;
    while i < n {
        let mut txn = w.begin();
        let view = txn.extend_on_write();
        for k in i..(i + per_commit).min(n) {
            view[k * APPEND_RECORD..(k + 1) * APPEND_RECORD].copy_from_slice(&recs[k % 16]);
        }
        txn.commit()?;
        i += per_commit;
    }
    if w.len() != total {
        return Err(format!("the state is {} bytes, {total} written", w.len()).into());
    }
    w.close()?;
    let secs = start.elapsed().as_secs_f64();
    // Not timed: deletes the state's files (its live image included),
    // opening the existing state again to hold its writer lock.
    opts.create(false).open(&path)?.remove()?;
    Ok(secs)
}

pub(super) fn w6(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let path = dir.path().join("w6");
    let secs = append_mapping(&path, total, &recs)?;
    let disk = disk_bytes(&path)?;
    let writer_secs = append_writer(dir.path(), total, &recs)?;
    Ok(Measurement {
        ops_per_sec: Some((total as usize / APPEND_RECORD) as f64 / secs),
        mb_per_sec: Some(total as f64 / secs / 1e6),
        disk_bytes: Some(disk),
        notes: format!(
            "Mapping with extend_on_write: plain stores through the pointer, no growth code (the SIGSEGV handler fallocates and maps chunks of 1 to 64 MiB), trim to the high-water mark at the end (timed); no commit, no sync, like memmap2's row. \
             The same appends through a Writer's extend-on-write view with a PageCache commit per MiB and close (checkpoint) timed: {:.0} MB/s; {}",
            total as f64 / writer_secs / 1e6,
            cx.params.size_note(|p| p.w6_bytes)
        ),
        ..Measurement::default()
    })
}

/// Fills `total` bytes page by page through an extend-on-write mapping (or
/// a pre-sized one), timing each page's first touch (a 4 KiB copy).
fn fill(path: &Path, total: u64, presized: bool) -> Result<Fill> {
    let mut m = if presized {
        MapOptions::new()
            .create(true)
            .len(total)
            .max_size(total)
            .open(path)?
    } else {
        attach(path, total)?
    };
    let base = m.as_mut_ptr();
    let mut page = [0_u8; PAGE];
    fill_slots(&mut page, 0);
    let pages = total as usize / PAGE;
    let mut samples = Vec::with_capacity(pages);
    let start = Instant::now();
    for p in 0..pages {
        let t = Instant::now();
        // SAFETY: inside the mapping's maximum size (extend-on-write maps
        // the page before the store completes; pre-sized: mapped whole).
        unsafe { std::ptr::copy_nonoverlapping(page.as_ptr(), base.wrapping_add(p * PAGE), PAGE) };
        samples.push(nanos(t.elapsed()));
    }
    let secs = start.elapsed().as_secs_f64();
    m.check_growth()?;
    Ok((samples, secs))
}

pub(super) fn grow(cx: &Ctx) -> Result<Measurement> {
    let total = cx.params.grow_bytes;
    grow_figures(
        cx,
        |p| fill(p, total, false),
        |p| fill(p, total, true),
        format!(
            "Mapping with extend_on_write: no growth code, the SIGSEGV handler fallocates and maps adaptive chunks (1 to 64 MiB); pre-sized: a Mapping opened with len = the whole size (fallocate); per 4 KiB page: first touch plus a 4 KiB copy, a growth counted in the page that needed it; ops/s is pages/s; {}",
            cx.params.size_note(|p| p.grow_bytes)
        ),
    )
}
