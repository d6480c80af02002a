//! One adapter per system. Each answers every workload: with figures, or
//! with the reason it cannot run it. Adding mapstate's adapter for a
//! workload is a change to `mapstate.rs` only.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::child::ChildArgs;
use crate::harness::{Ctx, Result, Workload};
use crate::report::{Measurement, Outcome, p50_p99};

mod lmdb;
mod mapstate;
mod mapstate_grow;
mod mapstate_size;
mod memmap2;
mod mmap_sync;
mod raw;
mod redb;
mod sqlite;

/// A system under test.
pub(crate) trait System: Sync {
    /// The name in the output (`lmdb`, `raw-futex`, ...).
    fn name(&self) -> &'static str;

    /// One run of `workload`: its figures and the guarantees as configured
    /// (in `notes`), or why the system cannot run it. Cross-process
    /// workloads start children, which land in [`System::child`].
    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome>;

    /// The extra rows this system gives for `workload` besides its own
    /// (mapstate's other ways of doing it): each row's name suffix, shown
    /// as `NAME:SUFFIX`. Their runs go to [`System::run_variant`].
    fn variants(&self, _workload: Workload) -> &'static [&'static str] {
        &[]
    }

    /// One run of the variant `variant` (from [`System::variants`]).
    fn run_variant(&self, variant: &str, workload: Workload, _cx: &Ctx) -> Result<Outcome> {
        Err(format!(
            "{}: no variant {variant} of {}",
            self.name(),
            workload.name()
        )
        .into())
    }

    /// Removes what the system kept across runs outside `cx.base`, which
    /// is deleted after it (called once, after the last workload).
    fn cleanup(&self, _cx: &Ctx) {}

    /// The child side of a cross-process workload, in a child process.
    fn child(&self, args: &ChildArgs) -> Result<()> {
        Err(format!("{}: no child for {}", self.name(), args.workload.name()).into())
    }
}

/// Every system, in table order.
pub(crate) fn all() -> Vec<&'static dyn System> {
    vec![
        &mapstate::Mapstate,
        &lmdb::Lmdb,
        &redb::Redb,
        &sqlite::Sqlite,
        &memmap2::Memmap2,
        &mmap_sync::MmapSync,
        &raw::RawFdatasync,
        &raw::RawFutex,
        &raw::RawPipe,
    ]
}

/// The system called `name`.
pub(crate) fn find(name: &str) -> Option<&'static dyn System> {
    all().into_iter().find(|s| s.name() == name)
}

/// A not-applicable outcome with the reason.
pub(crate) fn na(why: &str) -> Outcome {
    Outcome::NotApplicable(why.to_owned())
}

/// Key of slot or record `i`: 8 bytes big-endian, so keys sort by number.
pub(crate) fn key(i: u64) -> [u8; 8] {
    i.to_be_bytes()
}

/// The reopen state is records of this many slots (4,032 B: one LMDB
/// overflow page each), keyed by number, for the systems that store values.
pub(crate) const RECORD_SLOTS: usize = 63;
/// Bytes in a reopen record.
pub(crate) const RECORD_BYTES: usize = RECORD_SLOTS * crate::slot::SLOT_BYTES;

/// Records needed to hold `bytes` of slots.
pub(crate) fn records_for(bytes: u64) -> u64 {
    bytes.div_ceil(RECORD_BYTES as u64)
}

/// Bytes in a w6 record.
pub(crate) const APPEND_RECORD: usize = 4096;

/// Sixteen 4 KiB records of slots to append in turn (w6): made once, so
/// that appending costs copies, not slot hashing.
pub(crate) fn append_records() -> Vec<Vec<u8>> {
    (0..16)
        .map(|r| {
            let mut rec = vec![0_u8; APPEND_RECORD];
            crate::slot::fill_slots(&mut rec, r * 64);
            rec
        })
        .collect()
}

/// Sets w6's footprint figures: `disk_bytes` (the files' blocks after
/// close) and `disk_over_data` (that over the `data` bytes appended).
pub(crate) fn footprint(m: &mut Measurement, disk: u64, data: u64) {
    m.disk_bytes = Some(disk);
    m.set(
        crate::report::key::DISK_OVER_DATA,
        disk as f64 / data as f64,
    );
}

/// The reason of the peers' row for the mapstate-only workloads.
pub(crate) fn mapstate_only(workload: Workload) -> Outcome {
    match workload {
        Workload::Freestore => na(
            "no free stores: the peers change their state only through calls (put, INSERT, a store with no commit); mapstate only",
        ),
        Workload::Checkpoint => na(
            "mapstate's own checkpoint cost (the copy of its log into its durable image); no peer measured",
        ),
        _ => na("mapstate's own creation cost; no peer measured"),
    }
}

/// Note for the w5, notify and reopen figures: how consistency was checked.
pub(crate) const CHECKED: &str = "every read checks the slot checksum";

/// A `grow` fill: each page's first-touch latency (ns) and the seconds the
/// whole fill took.
pub(crate) type Fill = (Vec<u64>, f64);

/// The `grow` figures: runs the growing fill and the pre-sized one in a
/// fresh directory (which goes first alternates from one call to the next;
/// the page cache is synced between them, untimed) and reports the growing
/// one with the pre-sized one beside it.
pub(crate) fn grow_figures(
    cx: &Ctx,
    growing: impl FnOnce(&Path) -> Result<Fill>,
    presized: impl FnOnce(&Path) -> Result<Fill>,
    notes: String,
) -> Result<Measurement> {
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let total = cx.params.grow_bytes;
    let dir = cx.tempdir()?;
    let (mut growing, mut presized) = (Some(growing), Some(presized));
    let (mut g, mut p): (Fill, Fill) = Default::default();
    let growing_first = RUNS.fetch_add(1, Ordering::Relaxed).is_multiple_of(2);
    for first in [true, false] {
        if first == growing_first {
            g = growing.take().expect("runs once")(&dir.path().join("growing"))?;
        } else {
            p = presized.take().expect("runs once")(&dir.path().join("presized"))?;
        }
        rustix::fs::sync();
    }
    let ((mut g, g_secs), (mut p, p_secs)) = (g, p);
    let (p50_ns, p99_ns) = p50_p99(&mut g);
    let (presized_p50_ns, presized_p99_ns) = p50_p99(&mut p);
    Ok(Measurement {
        ops_per_sec: Some(g.len() as f64 / g_secs),
        p50_ns,
        p99_ns,
        gb_per_sec: Some(total as f64 / g_secs / 1e9),
        presized_gb_per_sec: Some(total as f64 / p_secs / 1e9),
        presized_p50_ns,
        presized_p99_ns,
        notes,
        ..Measurement::default()
    })
}
