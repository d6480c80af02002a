//! What every adapter shares: the workload names, the run parameters, the
//! context of a run (its directory), and the timing loops.

use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use crate::report::{Measurement, p50_p99};

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
}

impl Workload {
    /// Every workload, in table order.
    pub(crate) const ALL: [Self; 10] = [
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
    ];

    /// The order the suite runs them in: the `fdatasync` workloads first,
    /// before any large file has been written or deleted (the root
    /// filesystem discards deleted blocks, which slows syncs for seconds).
    pub(crate) const RUN_ORDER: [Self; 10] = [
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
    let end = Instant::now() + params.warmup;
    while Instant::now() < end {
        op()?;
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
    let (p50_ns, p99_ns) = p50_p99(&mut samples);
    Ok(Measurement {
        ops_per_sec: Some(ops as f64 / elapsed.as_secs_f64()),
        p50_ns,
        p99_ns,
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
