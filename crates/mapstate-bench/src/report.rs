//! What one system measured on one workload: the per-run [`Measurement`],
//! the [`Row`] that combines the runs (medians), and its JSON line and
//! Markdown table.

use std::fmt::Write as _;

use serde::Serialize;

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
    /// What the system guarantees as configured, and how it was measured.
    pub(crate) notes: String,
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
            notes,
        };
        if let Some(s) = row.checkpoint_summary() {
            row.notes.push_str("; ");
            row.notes.push_str(&s);
        }
        row
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
        parts.join(", ")
    }
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
