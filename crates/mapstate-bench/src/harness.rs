//! What every adapter shares: the workload names, the run parameters, the
//! context of a run (its directory), and the timing loops.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::report::{Measurement, key, p50_p99};

/// Errors of any adapter: each peer has its own error type.
pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result of any adapter.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// The workloads, in the order `--help` and the table list them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Workload {
    /// Overwrite one random slot and commit, no sync.
    W1,
    /// The same, each commit durable, one thread.
    W2,
    /// The same, eight threads committing concurrently.
    W2x8,
    /// One transaction changes 1,000 random slots, no sync.
    W3,
    /// Consistent read of one random slot, same process.
    W4,
    /// A reader process reads while a writer process commits.
    W5,
    /// Append records to a file that grows as needed.
    W6,
    /// Commit-to-wake latency of a waiter in another process.
    Notify,
    /// First touch of pages past the end of a growing file.
    Grow,
    /// Reopen a state after its writer was killed with SIGKILL.
    Reopen,
    /// One commit of a one-byte free store at a random page, in a small
    /// and a large state (mapstate only).
    Freestore,
    /// Creating a large state, then closing it (mapstate only).
    Create,
    /// One checkpoint after a commit that changed every page, and one
    /// after a commit that changed every other page (mapstate only).
    Checkpoint,
}

impl Workload {
    /// Every workload, in table order.
    pub(crate) const ALL: [Self; 13] = [
        Self::W1,
        Self::W2,
        Self::W2x8,
        Self::W3,
        Self::W4,
        Self::W5,
        Self::W6,
        Self::Notify,
        Self::Grow,
        Self::Reopen,
        Self::Freestore,
        Self::Create,
        Self::Checkpoint,
    ];

    /// The order the suite runs them in: the `fdatasync` workloads first,
    /// before any large file has been written or deleted (the root
    /// filesystem discards deleted blocks, which slows syncs for seconds).
    pub(crate) const RUN_ORDER: [Self; 13] = [
        Self::W2,
        Self::W2x8,
        Self::W1,
        Self::W3,
        Self::W4,
        Self::W5,
        Self::Notify,
        Self::W6,
        Self::Grow,
        Self::Reopen,
        Self::Freestore,
        Self::Create,
        Self::Checkpoint,
    ];

    /// The name on the command line and in the output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::W1 => "w1",
            Self::W2 => "w2",
            Self::W2x8 => "w2x8",
            Self::W3 => "w3",
            Self::W4 => "w4",
            Self::W5 => "w5",
            Self::W6 => "w6",
            Self::Notify => "notify",
            Self::Grow => "grow",
            Self::Reopen => "reopen",
            Self::Freestore => "freestore",
            Self::Create => "create",
            Self::Checkpoint => "checkpoint",
        }
    }

    /// The workload called `name`.
    pub(crate) fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }
}

/// Sizes and durations of one invocation: full or `--quick`.
#[derive(Clone, Debug)]
pub(crate) struct Params {
    /// `--quick`: small sizes and short loops, for CI.
    pub(crate) quick: bool,
    /// Runs per system and workload; each figure is their median.
    pub(crate) runs: usize,
    /// Warm-up before a timed loop.
    pub(crate) warmup: Duration,
    /// Length of a throughput loop; the latency loop that follows takes half.
    pub(crate) measure: Duration,
    /// w5: how long the reader and the writer run side by side.
    pub(crate) w5: Duration,
    /// notify: events per run.
    pub(crate) notify_events: usize,
    /// w6: bytes appended per run.
    pub(crate) w6_bytes: u64,
    /// grow: bytes filled per run.
    pub(crate) grow_bytes: u64,
    /// reopen: size of the state.
    pub(crate) reopen_bytes: u64,
    /// freestore: the smaller state.
    pub(crate) freestore_small: u64,
    /// freestore: the larger state.
    pub(crate) freestore_large: u64,
    /// create: size of the state created.
    pub(crate) create_bytes: u64,
    /// checkpoint: size of the state.
    pub(crate) checkpoint_bytes: u64,
}

/// 2^20 bytes.
pub(crate) const MIB: u64 = 1 << 20;

impl Params {
    /// The parameters of a full run, or of `--quick`.
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                runs: 3,
                warmup: Duration::from_millis(5),
                measure: Duration::from_millis(60),
                w5: Duration::from_millis(150),
                notify_events: 100,
                w6_bytes: 32 * MIB,
                grow_bytes: 128 * MIB,
                reopen_bytes: 64 * MIB,
                freestore_small: 16 * MIB,
                freestore_large: 1024 * MIB,
                create_bytes: 256 * MIB,
                checkpoint_bytes: 64 * MIB,
            }
        } else {
            Self {
                quick,
                runs: 3,
                warmup: Duration::from_millis(30),
                measure: Duration::from_millis(600),
                w5: Duration::from_secs(1),
                notify_events: 1000,
                w6_bytes: 256 * MIB,
                grow_bytes: 1024 * MIB,
                reopen_bytes: 1024 * MIB,
                freestore_small: 16 * MIB,
                freestore_large: 4096 * MIB,
                create_bytes: 2048 * MIB,
                checkpoint_bytes: 1024 * MIB,
            }
        }
    }

    /// A short label of a size for notes: `64 MiB`, `1 GiB`.
    pub(crate) fn size_label(bytes: u64) -> String {
        if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
            format!("{} GiB", bytes >> 30)
        } else {
            format!("{} MiB", bytes >> 20)
        }
    }

    /// The size `field` picks, for notes: `256 MiB`, or with `--quick`
    /// `32 MiB (--quick; full runs: 256 MiB)`.
    pub(crate) fn size_note(&self, field: fn(&Self) -> u64) -> String {
        let size = Self::size_label(field(self));
        if self.quick {
            format!(
                "{size} (--quick; full runs: {})",
                Self::size_label(field(&Self::new(false)))
            )
        } else {
            size
        }
    }
}

/// The context of a run: parameters and where to put files.
#[derive(Debug)]
pub(crate) struct Ctx {
    /// Sizes and durations.
    pub(crate) params: Params,
    /// The directory (on the filesystem under test) that holds every run's
    /// files, removed at the end.
    pub(crate) base: PathBuf,
}

impl Ctx {
    /// A fresh directory for one run, removed when dropped.
    pub(crate) fn tempdir(&self) -> Result<tempfile::TempDir> {
        Ok(tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&self.base)?)
    }

    /// A directory kept across the runs of one system and workload (the
    /// 1 GiB state of `reopen` is built once, then reopened each run).
    pub(crate) fn kept_dir(&self, system: &str, workload: Workload) -> Result<PathBuf> {
        let dir = self.base.join(format!("kept-{system}-{}", workload.name()));
        std::fs::create_dir_all(&dir)?;
        Ok(dir)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across processes, unlike
/// [`Instant`].
pub(crate) fn monotonic_ns() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

/// Nanoseconds in a duration, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Runs `op` for `params.warmup`, then for `params.measure` counting
/// operations (the clock read once per batch, so that it costs nothing per
/// operation), then for half as long timing every operation on its own for
/// p50 and p99 (those include the ~20 ns that reading the clock twice costs).
pub(crate) fn measure(params: &Params, mut op: impl FnMut() -> Result<()>) -> Result<Measurement> {
    let mut calls = 0_u64;
    let end = Instant::now() + params.warmup;
    while Instant::now() < end {
        op()?;
        calls += 1;
    }

    let start = Instant::now();
    let mut batch = 1_u64;
    let mut ops = 0_u64;
    let elapsed = loop {
        let t = Instant::now();
        for _ in 0..batch {
            op()?;
        }
        ops += batch;
        let now = Instant::now();
        if now - start >= params.measure {
            break now - start;
        }
        if now - t < Duration::from_micros(200) && batch < 1 << 16 {
            batch *= 2;
        }
    };

    let mut samples = Vec::with_capacity(1 << 20);
    let start = Instant::now();
    while start.elapsed() < params.measure / 2 && samples.len() < samples.capacity() {
        let t = Instant::now();
        op()?;
        samples.push(nanos(t.elapsed()));
    }
    calls += ops + samples.len() as u64;
    let (p50_ns, p99_ns) = p50_p99(&mut samples);
    Ok(Measurement {
        ops_per_sec: Some(ops as f64 / elapsed.as_secs_f64()),
        p50_ns,
        p99_ns,
        calls: Some(calls),
        ..Measurement::default()
    })
}

/// Runs `threads` threads side by side, each with its own operation from
/// `make_op(thread_index)`, for `params.measure` after a warm-up, timing
/// every operation (meant for operations of microseconds: durable commits).
/// Throughput is all threads' operations over the wall time.
pub(crate) fn measure_threads<Op>(
    params: &Params,
    threads: usize,
    make_op: impl Fn(usize) -> Result<Op> + Sync,
) -> Result<Measurement>
where
    Op: FnMut() -> Result<()>,
{
    let barrier = Barrier::new(threads);
    let results: Vec<Result<(Vec<u64>, Duration)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, make_op) = (&barrier, &make_op);
                s.spawn(move || -> Result<(Vec<u64>, Duration)> {
                    let op = make_op(i);
                    // Every thread reaches the barrier, even one that failed,
                    // so that no other thread waits forever.
                    barrier.wait();
                    let mut op = op?;
                    // All threads left the barrier together and warm up for
                    // the same time, so they start measuring together too.
                    let end = Instant::now() + params.warmup;
                    while Instant::now() < end {
                        op()?;
                    }
                    let start = Instant::now();
                    let mut samples = Vec::with_capacity(1 << 16);
                    while start.elapsed() < params.measure {
                        let t = Instant::now();
                        op()?;
                        samples.push(nanos(t.elapsed()));
                    }
                    Ok((samples, start.elapsed()))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("a thread panicked".into())))
            .collect()
    });
    let mut all = Vec::new();
    let mut wall = Duration::ZERO;
    for r in results {
        let (samples, elapsed) = r?;
        all.extend(samples);
        wall = wall.max(elapsed);
    }
    let ops = all.len() as f64;
    let (p50_ns, p99_ns) = p50_p99(&mut all);
    Ok(Measurement {
        ops_per_sec: Some(ops / wall.as_secs_f64()),
        p50_ns,
        p99_ns,
        ..Measurement::default()
    })
}

/// The write counters of `/proc/PID/io` (task I/O accounting): bytes of the
/// page cache the process dirtied (`write_bytes`, charged when a page goes
/// from clean to dirty, through `write` or a store into a shared mapping,
/// 4 KiB per page however little of it changed; tmpfs pages are never
/// counted) and the dirty bytes it dropped before they were written
/// (`cancelled_write_bytes`: truncating or deleting a file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct IoCounters {
    /// `write_bytes`.
    pub(crate) write_bytes: u64,
    /// `cancelled_write_bytes`.
    pub(crate) cancelled_write_bytes: u64,
}

impl IoCounters {
    /// The counters of process `pid` (`None`: this process, all threads).
    pub(crate) fn of(pid: Option<u32>) -> Result<Self> {
        let path = pid.map_or_else(|| "/proc/self/io".to_owned(), |p| format!("/proc/{p}/io"));
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        Self::parse(&text).ok_or_else(|| format!("{path}: no write_bytes").into())
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        Some(Self {
            write_bytes: field("write_bytes")?,
            cancelled_write_bytes: field("cancelled_write_bytes")?,
        })
    }

    /// Bytes dirtied since `before` and not cancelled since.
    pub(crate) fn net_since(self, before: Self) -> u64 {
        let written = self.write_bytes.saturating_sub(before.write_bytes);
        let cancelled = self
            .cancelled_write_bytes
            .saturating_sub(before.cancelled_write_bytes);
        written.saturating_sub(cancelled)
    }
}

/// Bytes written to disk per byte committed: [`DiskWrites::start`] syncs
/// everything (so that every page the workload dirties is charged, none
/// already dirty from before) and reads this process's counters;
/// [`DiskWrites::finish`], called after the timed part and the system's
/// close, syncs again (so that what was counted was written, not dropped
/// with a deleted file) and records the difference over the payload.
#[derive(Debug)]
pub(crate) struct DiskWrites(IoCounters);

impl DiskWrites {
    /// Syncs, then reads the counters.
    pub(crate) fn start() -> Result<Self> {
        rustix::fs::sync();
        Ok(Self(IoCounters::of(None)?))
    }

    /// Syncs, reads the counters again, and sets `m`'s `payload_bytes`,
    /// `disk_write_bytes` and `disk_bytes_per_byte`.
    pub(crate) fn finish(self, payload: u64, m: &mut Measurement) -> Result<()> {
        rustix::fs::sync();
        let net = IoCounters::of(None)?.net_since(self.0);
        m.set(key::PAYLOAD_BYTES, payload as f64);
        m.set(key::DISK_WRITE_BYTES, net as f64);
        if payload > 0 {
            m.set(key::DISK_BYTES_PER_BYTE, net as f64 / payload as f64);
        }
        Ok(())
    }
}

/// A latency histogram cheap enough to update on every commit from one
/// thread while another reads it: values below 64 ns exactly, above in
/// buckets 1/32 of a power of two wide (about 3 %), plus the exact maximum.
/// Only the owning thread writes (relaxed load and store, no locked
/// instruction); a reader sees a slightly stale copy.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64]>,
    max: AtomicU64,
}

const HIST_BUCKETS: usize = 64 + 58 * 32;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: (0..HIST_BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            max: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn bucket(ns: u64) -> usize {
        if ns < 64 {
            return ns as usize;
        }
        let e = 63 - u64::from(ns.leading_zeros()); // 6..=63
        let sub = (ns >> (e - 5)) & 31;
        64 + (e as usize - 6) * 32 + sub as usize
    }

    /// The smallest value of bucket `b`.
    fn floor(b: usize) -> u64 {
        if b < 64 {
            return b as u64;
        }
        let e = (b - 64) / 32 + 6;
        let sub = ((b - 64) % 32) as u64;
        (32 + sub) << (e - 5)
    }

    /// Counts one value (from the owning thread only).
    pub(crate) fn record(&self, ns: u64) {
        let b = &self.buckets[Self::bucket(ns)];
        b.store(b.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
        if ns > self.max.load(Ordering::Relaxed) {
            self.max.store(ns, Ordering::Relaxed);
        }
    }

    /// Values counted, the `q`-quantiles (each the floor of its bucket, or
    /// the maximum if that is smaller) and the maximum, in ns.
    pub(crate) fn summary(&self, qs: &[f64]) -> (u64, Vec<u64>, u64) {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let max = self.max.load(Ordering::Relaxed);
        let total: u64 = counts.iter().sum();
        let quantiles = qs
            .iter()
            .map(|&q| {
                let rank = ((q * total as f64).ceil() as u64).clamp(1, total.max(1));
                let mut seen = 0;
                for (b, &c) in counts.iter().enumerate() {
                    seen += c;
                    if seen >= rank {
                        return Self::floor(b).min(max);
                    }
                }
                max
            })
            .collect();
        (total, quantiles, max)
    }
}

/// What one `Instant::now()` costs here, in ns (the median of a few
/// batches of 1,000 reads).
pub(crate) fn clock_read_ns() -> f64 {
    let mut per: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..1000 {
                std::hint::black_box(Instant::now());
            }
            t.elapsed().as_secs_f64() * 1e9 / 1000.0
        })
        .collect();
    crate::report::median(&mut per).unwrap_or(0.0)
}

/// Bytes the files under `path` occupy on disk: the sum of `st_blocks * 512`.
pub(crate) fn disk_bytes(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::symlink_metadata(path)?;
    if meta.is_dir() {
        let mut total = 0;
        for entry in std::fs::read_dir(path)? {
            total += disk_bytes(&entry?.path())?;
        }
        Ok(total)
    } else {
        Ok(meta.blocks() * 512)
    }
}

/// The name of the filesystem that holds `path` (`ext4`, `tmpfs`, ...).
pub(crate) fn filesystem(path: &Path) -> String {
    match rustix::fs::statfs(path) {
        Ok(s) => match s.f_type {
            0xEF53 => "ext4".to_owned(),
            0x0102_1994 => "tmpfs".to_owned(),
            0x5846_5342 => "xfs".to_owned(),
            0x9123_683E => "btrfs".to_owned(),
            0x794C_7630 => "overlayfs".to_owned(),
            other => format!("unknown (f_type {other:#x})"),
        },
        Err(e) => format!("unknown ({e})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workload_names_round_trip() {
        for w in Workload::ALL {
            assert_eq!(Workload::parse(w.name()), Some(w));
            assert!(Workload::RUN_ORDER.contains(&w));
        }
        assert_eq!(Workload::parse("w7"), None);
    }

    #[test]
    fn io_counters_parse_and_subtract() {
        let text = "rchar: 1\nwchar: 2\nsyscr: 3\nsyscw: 4\nread_bytes: 0\nwrite_bytes: 8192\ncancelled_write_bytes: 4096\n";
        let c = IoCounters::parse(text).unwrap();
        assert_eq!(c.write_bytes, 8192);
        assert_eq!(c.cancelled_write_bytes, 4096);
        let later = IoCounters {
            write_bytes: 3 * 8192,
            cancelled_write_bytes: 4096 + 4096,
        };
        assert_eq!(later.net_since(c), 2 * 8192 - 4096);
        assert!(IoCounters::of(None).is_ok());
    }

    #[test]
    fn histogram_buckets_are_tight() {
        for ns in [
            0,
            1,
            63,
            64,
            65,
            100,
            1000,
            4095,
            4096,
            123_456,
            10_000_000_000,
        ] {
            let b = Histogram::bucket(ns);
            let lo = Histogram::floor(b);
            assert!(lo <= ns, "{ns}: floor {lo}");
            assert!(ns - lo <= ns / 32, "{ns}: floor {lo} too far");
            assert!(b < HIST_BUCKETS);
        }
        let h = Histogram::default();
        for ns in 1..=1000 {
            h.record(ns * 1000);
        }
        let (n, q, max) = h.summary(&[0.5, 0.999]);
        assert_eq!(n, 1000);
        assert_eq!(max, 1_000_000);
        assert!((q[0] as f64 - 500_000.0).abs() <= 500_000.0 / 32.0, "{q:?}");
        assert!(q[1] <= max && q[1] >= 960_000, "{q:?}");
    }

    #[test]
    fn measure_counts_and_times() {
        let params = Params {
            warmup: Duration::from_millis(1),
            measure: Duration::from_millis(20),
            ..Params::new(true)
        };
        let mut n = 0_u64;
        let m = measure(&params, || {
            n += 1;
            Ok(())
        })
        .unwrap();
        assert!(m.ops_per_sec.unwrap() > 1000.0);
        assert!(m.p50_ns.unwrap() <= m.p99_ns.unwrap());
        let m = measure_threads(&params, 2, |_| Ok(|| Ok(()))).unwrap();
        assert!(m.ops_per_sec.unwrap() > 1000.0);
    }
}
