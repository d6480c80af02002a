//! mapstate's workloads whose cost should not follow the state's size
//! (issue 14), which no peer can run:
//!
//! - `freestore`: one commit of a one-byte free store
//!   (`as_mut_slice()[page * 4096] ^= 1`) at a random page, in a small and
//!   a large state; its variant `write_at` makes the same change with
//!   `Txn::write_at`. Both states are created once per invocation (kept
//!   across runs; their creation time is a figure) and removed at the end.
//! - `create`: creating a large state, then closing it.
//! - `checkpoint`: one `Writer::checkpoint` after a commit that changed
//!   every page of the state, and one after a commit that changed every
//!   other page.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mapstate::{Durability, StateFiles, Writer};

use crate::harness::{Ctx, DiskWrites, Params, Result, Workload, nanos};
use crate::report::{Measurement, key, p50_p99};
use crate::slot::Rng;

const PAGE: u64 = 4096;

/// The name suffix of freestore's row through `Txn::write_at`.
pub(super) const WRITE_AT: &str = "write_at";
/// The name suffix of freestore's row through `Txn::slice_mut`.
pub(super) const SLICE_MUT: &str = "slice_mut";

/// How a freestore row makes its one-byte change.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    /// `txn.as_mut_slice()[off] ^= 1`: a free store anywhere in the state.
    FreeStore,
    /// `txn.slice_mut(page)?[0] ^= 1`: a free store in a range handed out.
    SliceMut,
    /// `txn.write_at(off, byte)`.
    WriteAt,
}

/// The path of the kept freestore state of `bytes` bytes.
fn kept_path(cx: &Ctx, bytes: u64) -> Result<PathBuf> {
    let dir = cx
        .kept_dir("mapstate", Workload::Freestore)?
        .join(format!("{}-mib", bytes >> 20));
    std::fs::create_dir_all(&dir)?;
    Ok(dir.join("state.db"))
}

/// The kept freestore state of `bytes` bytes, created (open with
/// `create(true).len(bytes).max_size(bytes)`, then close) if this
/// invocation has not yet: its path and how long creating it took, in s.
fn kept_state(cx: &Ctx, bytes: u64) -> Result<(PathBuf, f64)> {
    let path = kept_path(cx, bytes)?;
    let marker = path.with_file_name("created-secs");
    if let Ok(secs) = std::fs::read_to_string(&marker) {
        return Ok((path, secs.trim().parse()?));
    }
    if path.exists() {
        Writer::open(&path)?.remove()?;
    }
    let t = Instant::now();
    let w = Writer::options()
        .create(true)
        .len(bytes)
        .max_size(bytes)
        .durability(Durability::PageCache)
        .open(&path)?;
    w.close()?;
    let secs = t.elapsed().as_secs_f64();
    std::fs::write(&marker, secs.to_string())?;
    Ok((path, secs))
}

/// Removes the kept freestore states (their live images are on tmpfs).
pub(super) fn cleanup(cx: &Ctx) {
    for bytes in [cx.params.freestore_small, cx.params.freestore_large] {
        if let Ok(path) = kept_path(cx, bytes)
            && path.exists()
        {
            let _ = Writer::open(&path).and_then(Writer::remove);
        }
    }
}

/// One-page commits in the state at `path`: `params.warmup` (and at
/// least 3 commits) of warm-up, then `params.measure` (at least 30, at
/// most 2^20 commits), each timed on its own: `begin`, the one-byte change
/// at a random page (a free store, or `write_at`), `commit`. Returns the
/// per-commit times in ns.
fn one_page_commits(path: &Path, p: &Params, change: Change, rng: &mut Rng) -> Result<Vec<u64>> {
    let mut w = Writer::options()
        .durability(Durability::PageCache)
        .open(path)?;
    let pages = (w.len() / PAGE) as usize;
    let mut op = |w: &mut Writer| -> Result<()> {
        let off = rng.below(pages) as u64 * PAGE;
        let mut t = w.begin();
        match change {
            Change::FreeStore => t.as_mut_slice()[off as usize] ^= 1,
            Change::SliceMut => t.slice_mut(off..off + PAGE)?[0] ^= 1,
            Change::WriteAt => t.write_at(off, &[rng.next_u64() as u8])?,
        }
        t.commit()?;
        Ok(())
    };
    let run = |w: &mut Writer,
               op: &mut dyn FnMut(&mut Writer) -> Result<()>,
               time: Duration,
               min: usize,
               samples: &mut Vec<u64>|
     -> Result<()> {
        let start = Instant::now();
        let mut n = 0;
        while (n < min || start.elapsed() < time) && n < 1 << 20 {
            let t = Instant::now();
            op(w)?;
            samples.push(nanos(t.elapsed()));
            n += 1;
        }
        Ok(())
    };
    let mut warm = Vec::new();
    run(&mut w, &mut op, p.warmup, 3, &mut warm)?;
    let mut samples = Vec::new();
    run(&mut w, &mut op, p.measure, 30, &mut samples)?;
    w.close()?;
    Ok(samples)
}

/// p50, p99 and mean of `ns` samples, in µs.
fn summary(mut ns: Vec<u64>) -> (f64, f64, f64) {
    let mean = ns.iter().sum::<u64>() as f64 / ns.len().max(1) as f64 / 1e3;
    let (p50, p99) = p50_p99(&mut ns);
    (p50.unwrap_or(0.0) / 1e3, p99.unwrap_or(0.0) / 1e3, mean)
}

/// One run of freestore (or of its `slice_mut` or `write_at` variant): the
/// small state's commits and the large state's (which goes first
/// alternates).
pub(super) fn freestore(cx: &Ctx, change: Change) -> Result<Measurement> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let p = &cx.params;
    let (small, large) = (p.freestore_small, p.freestore_large);
    let (small_path, _) = kept_state(cx, small)?;
    let (large_path, large_secs) = kept_state(cx, large)?;
    let mut rng = Rng::from_entropy();
    let small_first = RUNS.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
    let (s, l) = if small_first {
        let s = one_page_commits(&small_path, p, change, &mut rng)?;
        (s, one_page_commits(&large_path, p, change, &mut rng)?)
    } else {
        let l = one_page_commits(&large_path, p, change, &mut rng)?;
        (one_page_commits(&small_path, p, change, &mut rng)?, l)
    };
    let large_commits = l.len();
    let (s50, s99, smean) = summary(s);
    let (l50, l99, lmean) = summary(l);
    let mut m = Measurement {
        ops_per_sec: Some(1e6 / lmean),
        p50_ns: Some(l50 * 1e3),
        p99_ns: Some(l99 * 1e3),
        ..Measurement::default()
    };
    for (k, v) in [
        (key::SMALL_STATE_BYTES, small as f64),
        (key::LARGE_STATE_BYTES, large as f64),
        (key::SMALL_P50_US, s50),
        (key::SMALL_P99_US, s99),
        (key::SMALL_MEAN_US, smean),
        (key::LARGE_P50_US, l50),
        (key::LARGE_P99_US, l99),
        (key::LARGE_MEAN_US, lmean),
        (key::LARGE_OVER_SMALL_P50, l50 / s50),
        (key::LARGE_OVER_SMALL_MEAN, lmean / smean),
        (key::CREATE_MS, large_secs * 1e3),
    ] {
        m.set(k, v);
    }
    let (small_l, large_l) = (Params::size_label(small), Params::size_label(large));
    m.notes = format!(
        "mapstate only (the peers have no free stores); one PageCache commit changing one byte of a random page: {}; timed per commit: begin, the change, commit; ops/s, p50 and p99 are the {large_l} state's (ops/s = 1 / mean; {large_commits} commits this run), the {small_l} state's beside them; both states made once by Writer::options().create(true).len(N).max_size(N) then close (the {large_l} one took {:.1} s: create_ms) and reused by every run{}",
        match change {
            Change::FreeStore =>
                "a free store, txn.as_mut_slice()[page * 4096] ^= 1 (found at commit: the whole state is searched)",
            Change::SliceMut =>
                "a free store in one page handed out, txn.slice_mut(page * 4096..(page + 1) * 4096)?[0] ^= 1 (found at commit: that page is searched)",
            Change::WriteAt => "txn.write_at(page * 4096, one byte) (recorded as it is made)",
        },
        large_secs,
        if p.quick {
            format!(
                " (--quick: {small_l} and {large_l}; full runs: {} and {})",
                Params::size_label(Params::new(false).freestore_small),
                Params::size_label(Params::new(false).freestore_large)
            )
        } else {
            String::new()
        }
    );
    Ok(m)
}

/// Bytes a file occupies (`st_blocks * 512`); 0 if it does not exist.
fn blocks(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    std::fs::symlink_metadata(path).map_or(0, |m| m.blocks() * 512)
}

/// One run of create: open a new state of `params.create_bytes` with
/// `create(true).len(N).max_size(N)`, then close it (both timed); its
/// files' blocks after, and the bytes it dirtied.
pub(super) fn create(cx: &Ctx) -> Result<Measurement> {
    let bytes = cx.params.create_bytes;
    let dir = cx.tempdir()?;
    let path = dir.path().join("state.db");
    let io = DiskWrites::start()?;
    let t = Instant::now();
    let w = Writer::options()
        .create(true)
        .len(bytes)
        .max_size(bytes)
        .durability(Durability::PageCache)
        .open(&path)?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    let files: StateFiles = w.files().clone();
    w.close()?;
    let ms = t.elapsed().as_secs_f64() * 1e3;
    let mut m = Measurement::default();
    io.finish(bytes, &mut m)?;
    m.set(key::CREATE_MS, ms);
    m.set(key::CREATE_OPEN_MS, open_ms);
    let disk = blocks(files.durable()) + blocks(files.log()) + blocks(files.journal());
    m.set(key::CREATED_DISK_BYTES, disk as f64);
    m.set(key::LIVE_BYTES_CLOSED, blocks(files.live()) as f64);
    m.notes = format!(
        "mapstate only (its own creation cost; no peer measured): Writer::options().create(true).len(N).max_size(N) for a {} state, then close, both timed (create_ms; the open alone: create_open_ms); created_disk_bytes: durable + log + journal blocks after; live_bytes_closed: the live image's blocks (tmpfs) after close; disk_bytes_per_byte: bytes dirtied per byte of the state (zeros written)",
        cx.params.size_note(|p| p.create_bytes)
    );
    // Not timed: delete the state (its live image on tmpfs included).
    Writer::open(&path)?.remove()?;
    Ok(m)
}

/// `checkpoint`: a state of `checkpoint_bytes`; a commit writes 8 bytes in
/// every page (then in every other page), and the checkpoint that follows
/// is timed: the journal, the durable image and their syncs.
pub(super) fn checkpoint(cx: &Ctx) -> Result<Measurement> {
    let bytes = cx.params.checkpoint_bytes;
    let dir = cx.tempdir()?;
    let path = dir.path().join("state.db");
    let mut w = Writer::options()
        .create(true)
        .len(bytes)
        .max_size(bytes)
        .durability(Durability::PageCache)
        .open(&path)?;
    w.checkpoint()?;
    let mut timed = |every: u64, round: u64| -> Result<f64> {
        let mut t = w.begin();
        for page in (0..bytes / PAGE).step_by(every as usize) {
            t.write_at(page * PAGE, &round.to_le_bytes())?;
        }
        t.commit()?;
        let start = Instant::now();
        w.checkpoint()?;
        Ok(start.elapsed().as_secs_f64() * 1e3)
    };
    let dense = timed(1, 1)?;
    let sparse = timed(2, 2)?;
    let mut m = Measurement::default();
    m.set(key::CHECKPOINT_DENSE_MS, dense);
    m.set(key::CHECKPOINT_SPARSE_MS, sparse);
    m.notes = format!(
        "mapstate only: Writer::checkpoint (PageCache) of a {} state after one commit that wrote 8 bytes in every page (checkpoint_dense_ms), then after one that wrote every other page (checkpoint_sparse_ms); each checkpoint writes its pages into the journal, syncs it, writes them into the durable image, syncs, writes the header, syncs",
        cx.params.size_note(|p| p.checkpoint_bytes)
    );
    w.remove()?;
    Ok(m)
}
