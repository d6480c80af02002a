//! What one system measured on one workload: the per-run [`Measurement`],
//! the [`Row`] that combines the runs (medians), and its JSON line and
//! Markdown table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The names of the figures only some workloads have, kept in
/// [`Measurement::more`] and printed as top-level JSON keys (added in the
/// order of issue 14; no older key was renamed).
pub(crate) mod key {
    /// Payload bytes committed in the span `disk_write_bytes` covers (w1:
    /// 64 B per commit; w3: 64,000 B per transaction; w6: 4 KiB per record).
    pub(crate) const PAYLOAD_BYTES: &str = "payload_bytes";
    /// Bytes of the page cache this process dirtied in that span
    /// (`write_bytes` minus `cancelled_write_bytes` of `/proc/self/io`).
    pub(crate) const DISK_WRITE_BYTES: &str = "disk_write_bytes";
    /// `disk_write_bytes / payload_bytes`.
    pub(crate) const DISK_BYTES_PER_BYTE: &str = "disk_bytes_per_byte";
    /// w6: the files' disk blocks after close over the data appended.
    pub(crate) const DISK_OVER_DATA: &str = "disk_over_data";
    /// w6 (mapstate): the live image's blocks (tmpfs) after the last commit.
    pub(crate) const LIVE_BYTES_OPEN: &str = "live_bytes_open";
    /// w6 (mapstate): the live image's blocks after the writer closed.
    pub(crate) const LIVE_BYTES_CLOSED: &str = "live_bytes_closed";
    /// w6: closing after the last commit (not in the throughput), in ms.
    pub(crate) const CLOSE_MS: &str = "close_ms";
    /// w6 (mapstate's Writer rows): mean µs per record over the first
    /// eighth of the records.
    pub(crate) const EARLY_RECORD_US: &str = "early_record_us";
    /// ... and over the last eighth (the state 8 times larger).
    pub(crate) const LATE_RECORD_US: &str = "late_record_us";
    /// w5: the writer's longest commit, in µs (median of the runs).
    pub(crate) const COMMIT_MAX_US: &str = "commit_max_us";
    /// w5: the longest commit of all runs, in µs.
    pub(crate) const COMMIT_MAX_US_WORST: &str = "commit_max_us_worst";
    /// w5: the writer's 99th-percentile commit, in µs.
    pub(crate) const COMMIT_P99_US: &str = "commit_p99_us";
    /// w5: the writer's 99.9th-percentile commit, in µs.
    pub(crate) const COMMIT_P999_US: &str = "commit_p999_us";
    /// w5: commits timed (the writer's operations in its loop).
    pub(crate) const COMMITS_TIMED: &str = "commits_timed";
    /// w5 (mapstate): the writer's commits per second in the run that
    /// timed every commit (its throughput run does not).
    pub(crate) const TIMED_WRITER_OPS_PER_SEC: &str = "timed_writer_ops_per_sec";
    /// w5: what one clock read costs in the writer, in ns.
    pub(crate) const CLOCK_READ_NS: &str = "clock_read_ns";
    /// freestore: the smaller state's size.
    pub(crate) const SMALL_STATE_BYTES: &str = "small_state_bytes";
    /// freestore: the larger state's size.
    pub(crate) const LARGE_STATE_BYTES: &str = "large_state_bytes";
    /// freestore: per-commit median in the smaller state, µs.
    pub(crate) const SMALL_P50_US: &str = "small_p50_us";
    /// freestore: per-commit p99 in the smaller state, µs.
    pub(crate) const SMALL_P99_US: &str = "small_p99_us";
    /// freestore: per-commit mean in the smaller state, µs.
    pub(crate) const SMALL_MEAN_US: &str = "small_mean_us";
    /// freestore: per-commit median in the larger state, µs.
    pub(crate) const LARGE_P50_US: &str = "large_p50_us";
    /// freestore: per-commit p99 in the larger state, µs.
    pub(crate) const LARGE_P99_US: &str = "large_p99_us";
    /// freestore: per-commit mean in the larger state, µs.
    pub(crate) const LARGE_MEAN_US: &str = "large_mean_us";
    /// freestore: `large_p50_us / small_p50_us`.
    pub(crate) const LARGE_OVER_SMALL_P50: &str = "large_over_small_p50";
    /// freestore: `large_mean_us / small_mean_us`.
    pub(crate) const LARGE_OVER_SMALL_MEAN: &str = "large_over_small_mean";
    /// create: `Writer::options().create(true).len(..)` open plus close, in
    /// ms; freestore: the creation of the larger state (once per invocation).
    pub(crate) const CREATE_MS: &str = "create_ms";
    /// create: the open alone, in ms.
    pub(crate) const CREATE_OPEN_MS: &str = "create_open_ms";
    /// create: the state's files' disk blocks after close (durable, log,
    /// journal; the live image apart).
    pub(crate) const CREATED_DISK_BYTES: &str = "created_disk_bytes";
    /// checkpoint: `Writer::checkpoint` after every page changed, in ms.
    pub(crate) const CHECKPOINT_DENSE_MS: &str = "checkpoint_dense_ms";
    /// checkpoint: `Writer::checkpoint` after every other page changed, in ms.
    pub(crate) const CHECKPOINT_SPARSE_MS: &str = "checkpoint_sparse_ms";
}

/// The figures of one run. Fields a workload does not measure stay `None`.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Measurement {
    /// Operations (transactions, reads, records, pages) per second.
    pub(crate) ops_per_sec: Option<f64>,
    /// Median latency of one operation, in nanoseconds.
    pub(crate) p50_ns: Option<f64>,
    /// 99th-percentile latency of one operation, in nanoseconds.
    pub(crate) p99_ns: Option<f64>,
    /// w5: commits per second of the writer process.
    pub(crate) writer_ops_per_sec: Option<f64>,
    /// w5 again with the writer held to a set rate: reads per second.
    pub(crate) paced_reads_per_sec: Option<f64>,
    /// ... and the writer's commits per second in that run.
    pub(crate) paced_writer_ops_per_sec: Option<f64>,
    /// Reads whose slot failed its checksum.
    pub(crate) torn: Option<u64>,
    /// w6: megabytes (10^6 B) of records per second.
    pub(crate) mb_per_sec: Option<f64>,
    /// w6: bytes the files occupy on disk at the end (`st_blocks * 512`).
    pub(crate) disk_bytes: Option<u64>,
    /// grow: fill rate of the growing file, in 10^9 B/s.
    pub(crate) gb_per_sec: Option<f64>,
    /// grow: fill rate of the same fill into a pre-sized file.
    pub(crate) presized_gb_per_sec: Option<f64>,
    /// grow: median first-touch latency per page, pre-sized file.
    pub(crate) presized_p50_ns: Option<f64>,
    /// grow: 99th-percentile first-touch latency per page, pre-sized file.
    pub(crate) presized_p99_ns: Option<f64>,
    /// reopen: open plus first consistent read, in milliseconds.
    pub(crate) reopen_ms: Option<f64>,
    /// Checkpoints (mapstate, w1): how many the timed loops made.
    pub(crate) checkpoints: Option<u64>,
    /// Checkpoints: commits from one to the next (the log filling up).
    pub(crate) commits_per_checkpoint: Option<f64>,
    /// Checkpoints: median duration, in milliseconds, of the commits that
    /// checkpointed (the commit itself is a fraction of a microsecond).
    pub(crate) checkpoint_ms_p50: Option<f64>,
    /// Checkpoints: the longest, in milliseconds.
    pub(crate) checkpoint_ms_max: Option<f64>,
    /// Checkpoints: all the timed ones together, in milliseconds.
    pub(crate) checkpoint_ms_total: Option<f64>,
    /// Checkpoints: how many were timed (those of the timed loops, plus
    /// enough more of the same load to time at least a few).
    pub(crate) checkpoints_timed: Option<u64>,
    /// The size of the log file (records fill it; the commit that finds it
    /// full checkpoints, which empties it).
    pub(crate) log_bytes: Option<u64>,
    /// Calls of the operation in all the loops (warm-up included): the
    /// commits a `disk_write_bytes` span covers. Not printed.
    pub(crate) calls: Option<u64>,
    /// The figures named in [`key`], where the workload has them.
    pub(crate) more: BTreeMap<&'static str, f64>,
    /// What the system guarantees as configured, and how it was measured.
    pub(crate) notes: String,
}

impl Measurement {
    /// Sets the figure `key` (one of [`key`]).
    pub(crate) fn set(&mut self, key: &'static str, value: f64) {
        self.more.insert(key, value);
    }

    /// The figure `key`, if set.
    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.more.get(key).copied()
    }
}

/// What a system did with one run of a workload.
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)] // a few per run: the size does not matter
pub(crate) enum Outcome {
    /// It ran; here are the figures.
    Measured(Measurement),
    /// It cannot run this workload, for the reason given (or, for mapstate,
    /// its adapter has not arrived yet).
    NotApplicable(String),
}

/// One output line: a system on a workload, each figure the median of the
/// runs.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub(crate) struct Row {
    /// System name (`lmdb`, `memmap2`, ...).
    pub(crate) system: String,
    /// Workload name (`w1`, `notify`, ...).
    pub(crate) workload: String,
    /// Median of the runs' throughput; `null` where nothing was measured.
    pub(crate) ops_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p50_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) p99_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) writer_ops_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_reads_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) paced_writer_ops_per_sec: Option<f64>,
    /// Torn reads, summed over all runs (never a median).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) torn: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) mb_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) disk_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gb_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) presized_gb_per_sec: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) presized_p50_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) presized_p99_ns: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reopen_ms: Option<f64>,
    /// Checkpoints the timed loops made (median of the runs).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoints: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) commits_per_checkpoint: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_ms_p50: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_ms_max: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_ms_total: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoints_timed: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) log_bytes: Option<u64>,
    /// Runs that produced figures.
    pub(crate) runs: usize,
    /// Each run's throughput, in run order, to show the spread.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) ops_per_sec_runs: Vec<f64>,
    /// The figures named in [`key`] (medians of the runs; `*_worst`: the
    /// largest), as top-level keys.
    #[serde(flatten)]
    pub(crate) more: BTreeMap<&'static str, serde_json::Value>,
    /// The guarantees as configured, what was not measured and why, errors.
    pub(crate) notes: String,
}

impl Row {
    /// Combines the outcomes of the runs of `system` on `workload`; `errors`
    /// are the runs that failed, which the notes report.
    pub(crate) fn combine(
        system: &str,
        workload: &str,
        outcomes: &[Outcome],
        errors: &[String],
    ) -> Self {
        let runs: Vec<&Measurement> = outcomes
            .iter()
            .filter_map(|o| match o {
                Outcome::Measured(m) => Some(m),
                Outcome::NotApplicable(_) => None,
            })
            .collect();
        let med = |f: fn(&Measurement) -> Option<f64>| -> Option<f64> {
            let mut v: Vec<f64> = runs.iter().filter_map(|m| f(m)).collect();
            median(&mut v)
        };
        let mut notes = runs.first().map_or_else(
            || {
                outcomes
                    .iter()
                    .find_map(|o| match o {
                        Outcome::NotApplicable(why) => Some(why.clone()),
                        Outcome::Measured(_) => None,
                    })
                    .unwrap_or_default()
            },
            |m| m.notes.clone(),
        );
        for e in errors {
            if !notes.is_empty() {
                notes.push_str("; ");
            }
            let _ = write!(notes, "error: {e}");
        }
        let torn = runs
            .iter()
            .filter_map(|m| m.torn)
            .reduce(u64::saturating_add);
        let med_u64 = |f: fn(&Measurement) -> Option<u64>| -> Option<u64> {
            let mut v: Vec<f64> = runs.iter().filter_map(|m| f(m).map(|x| x as f64)).collect();
            median(&mut v).map(|x| x.round() as u64)
        };
        let mut row = Self {
            system: system.to_owned(),
            workload: workload.to_owned(),
            ops_per_sec: med(|m| m.ops_per_sec),
            p50_ns: med(|m| m.p50_ns),
            p99_ns: med(|m| m.p99_ns),
            writer_ops_per_sec: med(|m| m.writer_ops_per_sec),
            paced_reads_per_sec: med(|m| m.paced_reads_per_sec),
            paced_writer_ops_per_sec: med(|m| m.paced_writer_ops_per_sec),
            torn,
            mb_per_sec: med(|m| m.mb_per_sec),
            disk_bytes: med_u64(|m| m.disk_bytes),
            gb_per_sec: med(|m| m.gb_per_sec),
            presized_gb_per_sec: med(|m| m.presized_gb_per_sec),
            presized_p50_ns: med(|m| m.presized_p50_ns),
            presized_p99_ns: med(|m| m.presized_p99_ns),
            reopen_ms: med(|m| m.reopen_ms),
            checkpoints: med_u64(|m| m.checkpoints),
            commits_per_checkpoint: med(|m| m.commits_per_checkpoint),
            checkpoint_ms_p50: med(|m| m.checkpoint_ms_p50),
            checkpoint_ms_max: med(|m| m.checkpoint_ms_max),
            checkpoint_ms_total: med(|m| m.checkpoint_ms_total),
            checkpoints_timed: med_u64(|m| m.checkpoints_timed),
            log_bytes: med_u64(|m| m.log_bytes),
            runs: runs.len(),
            ops_per_sec_runs: runs.iter().filter_map(|m| m.ops_per_sec).collect(),
            more: combine_more(&runs),
            notes,
        };
        if let Some(s) = row.checkpoint_summary() {
            row.notes.push_str("; ");
            row.notes.push_str(&s);
        }
        row
    }

    /// The figure `key` (one of [`key`]), if the row has it.
    pub(crate) fn get(&self, key: &str) -> Option<f64> {
        self.more.get(key).and_then(serde_json::Value::as_f64)
    }

    /// The checkpoint figures in words (medians of the runs), for the notes:
    /// how often the log fills, what a checkpoint costs, and that cost spread
    /// over the commits between two checkpoints.
    fn checkpoint_summary(&self) -> Option<String> {
        let log = self.log_bytes?;
        let mut s = format!("checkpoints under this load: log {}", mib(log));
        if let Some(n) = self.commits_per_checkpoint {
            let _ = write!(s, ", full every {} commits", si(n));
        }
        if let Some(c) = self.checkpoints {
            let _ = write!(s, "; {c} in the timed loops");
        }
        if let (Some(p50), Some(max), Some(total), Some(timed)) = (
            self.checkpoint_ms_p50,
            self.checkpoint_ms_max,
            self.checkpoint_ms_total,
            self.checkpoints_timed,
        ) {
            let _ = write!(
                s,
                "; {timed} timed: p50 {}, max {}, total {}",
                duration_ns(p50 * 1e6),
                duration_ns(max * 1e6),
                duration_ns(total * 1e6)
            );
            if let Some(n) = self.commits_per_checkpoint.filter(|n| *n > 0.0) {
                let _ = write!(
                    s,
                    " ({} per commit, spread over the commits between two)",
                    duration_ns(p50 * 1e6 / n)
                );
            }
        }
        Some(s)
    }

    /// The row as one line of JSON.
    pub(crate) fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The figures that only some workloads have, as one Markdown cell.
    fn extra_cell(&self) -> String {
        let mut parts = Vec::new();
        if let Some(w) = self.writer_ops_per_sec {
            parts.push(format!("writer {}/s", si(w)));
        }
        if let (Some(r), Some(w)) = (self.paced_reads_per_sec, self.paced_writer_ops_per_sec) {
            parts.push(format!("writer held to {}/s: {} reads/s", si(w), si(r)));
        }
        if let Some(t) = self.torn {
            parts.push(format!("torn {t}"));
        }
        if let Some(mb) = self.mb_per_sec {
            parts.push(format!("{mb:.0} MB/s"));
        }
        if let Some(b) = self.disk_bytes {
            parts.push(format!("disk {:.1} MiB", b as f64 / 1_048_576.0));
        }
        if let Some(g) = self.gb_per_sec {
            parts.push(format!("fill {g:.2} GB/s"));
        }
        if let Some(g) = self.presized_gb_per_sec {
            parts.push(format!("pre-sized {g:.2} GB/s"));
        }
        if let (Some(p50), Some(p99)) = (self.presized_p50_ns, self.presized_p99_ns) {
            parts.push(format!(
                "pre-sized p50 {} p99 {}",
                duration_ns(p50),
                duration_ns(p99)
            ));
        }
        if let Some(ms) = self.reopen_ms {
            parts.push(format!("reopen {}", duration_ns(ms * 1e6)));
        }
        self.more_cells(&mut parts);
        parts.join(", ")
    }

    /// The figures of [`key`] in words, for [`Row::extra_cell`].
    fn more_cells(&self, parts: &mut Vec<String>) {
        let us = |x: f64| duration_ns(x * 1e3);
        if let Some(r) = self.get(key::DISK_OVER_DATA) {
            parts.push(format!("disk/data {r:.2}×"));
        }
        if let (Some(open), Some(closed)) = (
            self.get(key::LIVE_BYTES_OPEN),
            self.get(key::LIVE_BYTES_CLOSED),
        ) {
            parts.push(format!(
                "live image (tmpfs) {} open, {} after close",
                mib(open as u64),
                mib(closed as u64)
            ));
        }
        if let Some(ms) = self.get(key::CLOSE_MS) {
            parts.push(format!("close {}", duration_ns(ms * 1e6)));
        }
        if let (Some(a), Some(b)) = (
            self.get(key::EARLY_RECORD_US),
            self.get(key::LATE_RECORD_US),
        ) {
            parts.push(format!(
                "per record: first eighth {}, last eighth {}",
                us(a),
                us(b)
            ));
        }
        if let Some(r) = self.get(key::DISK_BYTES_PER_BYTE) {
            parts.push(format!("disk writes {r:.2} B per B committed"));
        }
        if let (Some(max), Some(p999)) =
            (self.get(key::COMMIT_MAX_US), self.get(key::COMMIT_P999_US))
        {
            let mut s = format!("commit p99.9 {}, max {}", us(p999), us(max));
            if let Some(w) = self.get(key::COMMIT_MAX_US_WORST) {
                let _ = write!(s, " (worst run {})", us(w));
            }
            parts.push(s);
        }
        if let (Some(small), Some(large)) = (
            self.get(key::SMALL_STATE_BYTES),
            self.get(key::LARGE_STATE_BYTES),
        ) {
            let size = |b: f64| crate::harness::Params::size_label(b as u64);
            let figs = |p50: &str, p99: &str, mean: &str| {
                format!(
                    "p50 {} p99 {} mean {}",
                    self.get(p50).map_or_else(|| "—".to_owned(), us),
                    self.get(p99).map_or_else(|| "—".to_owned(), us),
                    self.get(mean).map_or_else(|| "—".to_owned(), us),
                )
            };
            parts.push(format!(
                "{}: {}",
                size(small),
                figs(key::SMALL_P50_US, key::SMALL_P99_US, key::SMALL_MEAN_US)
            ));
            parts.push(format!(
                "{}: {}",
                size(large),
                figs(key::LARGE_P50_US, key::LARGE_P99_US, key::LARGE_MEAN_US)
            ));
            if let (Some(a), Some(b)) = (
                self.get(key::LARGE_OVER_SMALL_P50),
                self.get(key::LARGE_OVER_SMALL_MEAN),
            ) {
                parts.push(format!(
                    "{} / {}: {a:.2}× (p50), {b:.2}× (mean)",
                    size(large),
                    size(small)
                ));
            }
        }
        if let Some(ms) = self.get(key::CREATE_MS) {
            let mut s = format!("create {}", duration_ns(ms * 1e6));
            if let Some(open) = self.get(key::CREATE_OPEN_MS) {
                let _ = write!(s, " (open {})", duration_ns(open * 1e6));
            }
            parts.push(s);
        }
        if let Some(b) = self.get(key::CREATED_DISK_BYTES) {
            parts.push(format!("disk after create {}", mib(b as u64)));
        }
        if let (Some(d), Some(s)) = (
            self.get(key::CHECKPOINT_DENSE_MS),
            self.get(key::CHECKPOINT_SPARSE_MS),
        ) {
            parts.push(format!(
                "checkpoint of every page {}, of every other page {}",
                duration_ns(d * 1e6),
                duration_ns(s * 1e6)
            ));
        }
    }
}

/// The [`key`] figures of the runs combined: the median of the runs that
/// have each (the largest for `*_worst`), whole numbers printed as integers.
fn combine_more(runs: &[&Measurement]) -> BTreeMap<&'static str, serde_json::Value> {
    let mut keys: Vec<&'static str> = runs.iter().flat_map(|m| m.more.keys().copied()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| {
            let mut v: Vec<f64> = runs.iter().filter_map(|m| m.get(k)).collect();
            let x = if k.ends_with("_worst") {
                v.iter().copied().reduce(f64::max)
            } else {
                median(&mut v)
            }?;
            let value = if x.fract() == 0.0 && (0.0..9e15).contains(&x) {
                serde_json::Value::from(x as u64)
            } else {
                serde_json::Value::from(x)
            };
            Some((k, value))
        })
        .collect()
}

/// Bytes in MiB for notes: `64 MiB`, `1.5 MiB`.
fn mib(b: u64) -> String {
    let m = b as f64 / 1_048_576.0;
    if m.fract() == 0.0 {
        format!("{m:.0} MiB")
    } else {
        format!("{m:.1} MiB")
    }
}

/// The median of `v` (the mean of the middle two for an even count), or
/// `None` for no values. Sorts `v`.
pub(crate) fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        f64::midpoint(v[n / 2 - 1], v[n / 2])
    })
}

/// The `q`-quantile (0 to 1) of sorted samples, nearest rank; `None` if empty.
pub(crate) fn quantile(sorted: &[u64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1] as f64)
}

/// Sorts latency samples and returns their p50 and p99.
pub(crate) fn p50_p99(samples: &mut [u64]) -> (Option<f64>, Option<f64>) {
    samples.sort_unstable();
    (quantile(samples, 0.50), quantile(samples, 0.99))
}

/// A number with an SI suffix: `12.3 M`, `285 k`, `950`.
pub(crate) fn si(x: f64) -> String {
    let (v, unit) = if x >= 1e9 {
        (x / 1e9, " G")
    } else if x >= 1e6 {
        (x / 1e6, " M")
    } else if x >= 1e3 {
        (x / 1e3, " k")
    } else {
        (x, "")
    };
    if v >= 100.0 {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// A duration given in nanoseconds, in the unit that reads best.
pub(crate) fn duration_ns(ns: f64) -> String {
    if ns >= 1e9 {
        format!("{:.2} s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.0} µs", ns / 1e3)
    } else if ns >= 1e3 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

/// The rows as one Markdown table, in the given order.
pub(crate) fn markdown(rows: &[Row]) -> String {
    let mut out = String::from(
        "| workload | system | ops/s | p50 | p99 | other figures | runs | notes |\n\
         |---|---|--:|--:|--:|---|--:|---|\n",
    );
    for r in rows {
        let cell = |x: Option<f64>, f: fn(f64) -> String| x.map_or_else(|| "—".to_owned(), f);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            r.workload,
            r.system,
            cell(r.ops_per_sec, si),
            cell(r.p50_ns, duration_ns),
            cell(r.p99_ns, duration_ns),
            r.extra_cell(),
            r.runs,
            r.notes.replace('|', "\\|"),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }

    #[test]
    fn quantiles_use_nearest_rank() {
        let s: Vec<u64> = (1..=100).collect();
        assert_eq!(quantile(&s, 0.5), Some(50.0));
        assert_eq!(quantile(&s, 0.99), Some(99.0));
        assert_eq!(quantile(&s, 1.0), Some(100.0));
        assert_eq!(quantile(&[7], 0.99), Some(7.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn combine_takes_medians_and_sums_torn() {
        let run = |ops: f64, torn: u64| {
            Outcome::Measured(Measurement {
                ops_per_sec: Some(ops),
                torn: Some(torn),
                notes: "n".into(),
                ..Measurement::default()
            })
        };
        let row = Row::combine("s", "w5", &[run(3.0, 1), run(1.0, 0), run(2.0, 5)], &[]);
        assert_eq!(row.ops_per_sec, Some(2.0));
        assert_eq!(row.torn, Some(6));
        assert_eq!(row.runs, 3);
        assert_eq!(row.ops_per_sec_runs, vec![3.0, 1.0, 2.0]);
        let json = row.to_json();
        assert!(json.contains("\"system\":\"s\""));
        assert!(!json.contains("p50_ns"));

        assert!(!json.contains("checkpoint"));

        let na = Row::combine("s", "w6", &[Outcome::NotApplicable("why".into())], &[]);
        assert_eq!(na.ops_per_sec, None);
        assert_eq!(na.runs, 0);
        assert!(na.to_json().contains("\"ops_per_sec\":null"));
        assert!(markdown(&[na]).contains("| w6 | s | — |"));
    }

    #[test]
    fn combine_reports_checkpoints_in_json_and_notes() {
        let run = |ms: f64| {
            Outcome::Measured(Measurement {
                ops_per_sec: Some(1e6),
                checkpoints: Some(2),
                commits_per_checkpoint: Some(500_000.0),
                checkpoint_ms_p50: Some(ms),
                checkpoint_ms_max: Some(ms * 2.0),
                checkpoint_ms_total: Some(ms * 3.0),
                checkpoints_timed: Some(3),
                log_bytes: Some(64 << 20),
                notes: "n".into(),
                ..Measurement::default()
            })
        };
        let row = Row::combine("mapstate", "w1", &[run(1.0), run(5.0), run(2.0)], &[]);
        assert_eq!(row.checkpoint_ms_p50, Some(2.0));
        assert_eq!(row.checkpoints, Some(2));
        let json = row.to_json();
        for field in [
            "\"checkpoints\":2",
            "\"checkpoint_ms_p50\":2.0",
            "\"log_bytes\":67108864",
            "\"commits_per_checkpoint\":500000.0",
        ] {
            assert!(json.contains(field), "{field}: {json}");
        }
        assert_eq!(
            row.notes,
            "n; checkpoints under this load: log 64 MiB, full every 500 k commits; 2 in the \
             timed loops; 3 timed: p50 2.00 ms, max 4.00 ms, total 6.00 ms (4 ns per commit, \
             spread over the commits between two)"
        );
    }
}
