//! mapstate's growth workloads (`w6`, `grow`). w6's own row appends
//! through a `Writer` with one `PageCache` commit per 4 KiB record, stored
//! into `Txn::extend_on_write_from(end)` (its variant `set_len+write_at` grows the
//! state explicitly instead); its variant `mapping-no-commits` stores into
//! an extend-on-write `Mapping` with no commit at all. `grow` uses the
//! `Mapping`.
#![allow(unsafe_code)] // stores through the mapping's pointer, as a C program would

use std::path::Path;
use std::time::Instant;

use mapstate::{DEFAULT_RESERVATION, Durability, MapOptions, Mapping, StateFiles, Writer};

use crate::harness::{Ctx, DiskWrites, Result, disk_bytes, filesystem, nanos};
use crate::peers::{APPEND_RECORD, Fill, append_records, footprint, grow_figures};
use crate::report::{Measurement, key, p50_p99};
use crate::slot::fill_slots;

const PAGE: usize = 4096;

/// The name suffix of w6's row through `set_len` and `write_at`.
pub(super) const SET_LEN: &str = "set_len+write_at";
/// The name suffix of w6's row through a plain `Mapping`.
pub(super) const MAPPING: &str = "mapping-no-commits";

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

/// w6's `mapping-no-commits` row: the appends through a `Mapping`.
pub(super) fn w6_mapping(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let path = dir.path().join("w6");
    let io = DiskWrites::start()?;
    let secs = append_mapping(&path, total, &recs)?;
    let mut m = Measurement {
        ops_per_sec: Some((total as usize / APPEND_RECORD) as f64 / secs),
        mb_per_sec: Some(total as f64 / secs / 1e6),
        notes: format!(
            "NO COMMITS, NO CRASH SAFETY (like memmap2's row): a Mapping with extend_on_write, plain stores through the pointer, no growth code (the SIGSEGV handler fallocates and maps chunks of 1 to 64 MiB), trim to the high-water mark and close at the end (timed); no sync; {}; disk writes from the open to after the close",
            cx.params.size_note(|p| p.w6_bytes)
        ),
        ..Measurement::default()
    };
    io.finish(total, &mut m)?;
    footprint(&mut m, disk_bytes(&path)?, total);
    Ok(m)
}

/// Bytes a file occupies (`st_blocks * 512`); 0 if it does not exist.
fn blocks(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// The mean of `ns` samples, in µs.
fn mean_us(ns: &[u64]) -> Option<f64> {
    (!ns.is_empty()).then(|| ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1e3)
}

/// w6 through a `Writer`: one `PageCache` commit per 4 KiB record, stored
/// into the extend-on-write view from the end, or (`set_len`) made by `Txn::set_len`
/// and `Txn::write_at`. Timed: the commits (not the open, nor the close,
/// which is `close_ms`), each also on its own (one clock read per record).
pub(super) fn w6_writer(cx: &Ctx, set_len: bool) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let path = dir.path().join("w6-state");
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let max = DEFAULT_RESERVATION.max(4 * total);
    let opts = Writer::options()
        .create(true)
        .len(0)
        .max_size(max)
        .durability(Durability::PageCache);
    let io = DiskWrites::start()?;
    let mut w = opts.open(&path)?;
    let files: StateFiles = w.files().clone();
    let n = total as usize / APPEND_RECORD;
    let mut per_record = Vec::with_capacity(n);
    let start = Instant::now();
    let mut prev = start;
    for (k, rec) in recs.iter().cycle().take(n).enumerate() {
        let off = k * APPEND_RECORD;
        let mut txn = w.begin();
        if set_len {
            txn.set_len((off + APPEND_RECORD) as u64)?;
            txn.write_at(off as u64, rec)?;
        } else {
            txn.extend_on_write_from(off as u64)?[..APPEND_RECORD].copy_from_slice(rec);
        }
        txn.commit()?;
        let now = Instant::now();
        per_record.push(nanos(now - prev));
        prev = now;
    }
    let secs = start.elapsed().as_secs_f64();
    if w.len() != total {
        return Err(format!("the state is {} bytes, {total} written", w.len()).into());
    }
    let live_open = blocks(files.live());
    let t = Instant::now();
    w.close()?;
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let live_closed = blocks(files.live());
    let eighth = (n / 8).max(1);
    let (early, late) = (
        mean_us(&per_record[..eighth]),
        mean_us(&per_record[n - eighth..]),
    );
    let (p50_ns, p99_ns) = p50_p99(&mut per_record);
    let mut m = Measurement {
        ops_per_sec: Some(n as f64 / secs),
        p50_ns,
        p99_ns,
        mb_per_sec: Some(total as f64 / secs / 1e6),
        ..Measurement::default()
    };
    m.set(key::CLOSE_MS, close_ms);
    io.finish(total, &mut m)?;
    let (durable, log, journal) = (
        blocks(files.durable()),
        blocks(files.log()),
        blocks(files.journal()),
    );
    let live_dir = files.live().parent().unwrap_or(Path::new("/"));
    let live_on_tmpfs = filesystem(live_dir) == "tmpfs";
    let mut disk = durable + log + journal;
    if !live_on_tmpfs {
        disk += live_closed;
    }
    footprint(&mut m, disk, total);
    m.set(key::LIVE_BYTES_OPEN, live_open as f64);
    m.set(key::LIVE_BYTES_CLOSED, live_closed as f64);
    if let (Some(a), Some(b)) = (early, late) {
        m.set(key::EARLY_RECORD_US, a);
        m.set(key::LATE_RECORD_US, b);
    }
    let mib = |b: u64| b as f64 / 1_048_576.0;
    m.notes = format!(
        "Durability::PageCache: every returned commit survives a process crash; an OS crash keeps a consistent state as of the last checkpoint; one transaction and commit per 4 KiB record, {}; max_size {}; live image in {}{}; timed: the commits (not the open, nor the close: close_ms, a checkpoint); p50/p99 per record (one clock read per record); disk_bytes after close: durable {:.1} + log {:.1} + journal {:.1} MiB{}; disk writes from the open to after the close; {}",
        if set_len {
            "grown by Txn::set_len (one page more), the record stored by Txn::write_at"
        } else {
            "stored into Txn::extend_on_write_from(end) (free stores found at commit, in the pages from the old end on; the stores past the end grow the state)"
        },
        crate::harness::Params::size_label(max),
        live_dir.display(),
        if live_on_tmpfs {
            " (tmpfs: not in disk_bytes; live_bytes_open/closed)"
        } else {
            " (not tmpfs: counted in disk_bytes)"
        },
        mib(durable),
        mib(log),
        mib(journal),
        if live_on_tmpfs {
            String::new()
        } else {
            format!(" + live image {:.1} MiB", mib(live_closed))
        },
        cx.params.size_note(|p| p.w6_bytes)
    );
    // Not timed: deletes the state's files (its live image included),
    // opening the existing state again to hold its writer lock.
    Writer::open(&path)?.remove()?;
    Ok(m)
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
