//! The loss bound: from what the workload printed before the power cut, the
//! smallest counter the recovered state may hold.
//!
//! Lines the workload prints (see `workload.rs`):
//! - `start MODE` when it starts;
//! - `recovered C` once `WriterOptions::open` (recovery) returned, `C` the counter found;
//! - `committed N` (sync, pagecache) or `committed N T` (periodic, `T` in ms
//!   since the workload started) after commit `N` returned;
//! - `checkpointed N` after `Writer::checkpoint` returned (pagecache: every
//!   64 commits; every mode: when the log holds 4 MiB);
//! - `error ...` if a mapstate call failed.

/// The durability mode under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `Durability::Sync`: every returned commit is durable.
    Sync,
    /// `Durability::Periodic(interval)`: at most the last interval is lost.
    Periodic {
        /// The sync interval in ms.
        interval_ms: u64,
    },
    /// `Durability::PageCache`: everything up to the last checkpoint is durable.
    PageCache,
}

impl Mode {
    /// Parses `sync`, `pagecache` or `periodic` (which needs an interval).
    pub(crate) fn parse(name: &str, interval_ms: Option<u64>) -> Result<Self, String> {
        match (name, interval_ms) {
            ("sync", _) => Ok(Mode::Sync),
            ("pagecache", _) => Ok(Mode::PageCache),
            ("periodic", Some(i)) => Ok(Mode::Periodic { interval_ms: i }),
            ("periodic", None) => Err("periodic needs INTERVAL_MS".into()),
            _ => Err(format!(
                "unknown mode {name:?} (sync, periodic or pagecache)"
            )),
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Periodic { .. } => "periodic",
            Mode::PageCache => "pagecache",
        }
    }
}

/// What one workload run (one power-on) printed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Cycle {
    /// A `start` line was seen.
    pub(crate) started: bool,
    /// The counter recovery returned.
    pub(crate) recovered: Option<u64>,
    /// `(N, T)` of every `committed` line.
    pub(crate) committed: Vec<(u64, Option<u64>)>,
    /// The last `checkpointed N`.
    pub(crate) checkpointed: Option<u64>,
    /// Every `error` line.
    pub(crate) errors: Vec<String>,
}

/// Parses the lines of one cycle. Unknown lines are ignored.
pub(crate) fn parse_cycle(text: &str) -> Cycle {
    let mut c = Cycle::default();
    for line in text.lines() {
        let mut w = line.split_whitespace();
        match w.next() {
            Some("start") => c.started = true,
            Some("recovered") => c.recovered = w.next().and_then(|n| n.parse().ok()),
            Some("committed") => {
                if let Some(n) = w.next().and_then(|n| n.parse().ok()) {
                    let t = w.next().and_then(|t| t.parse().ok());
                    c.committed.push((n, t));
                }
            }
            Some("checkpointed") => {
                if let Some(n) = w.next().and_then(|n| n.parse().ok()) {
                    c.checkpointed = Some(n);
                }
            }
            Some("error") => c.errors.push(line.to_string()),
            _ => {}
        }
    }
    c
}

/// Splits the harness's `ALL_LOG` (cycles separated by `=== cycle N`) into cycles.
pub(crate) fn parse_all(text: &str) -> Vec<Cycle> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    for line in text.lines() {
        if line.starts_with("=== cycle") {
            if any {
                out.push(parse_cycle(&cur));
            }
            cur.clear();
            any = true;
        } else {
            cur.push_str(line);
            cur.push('\n');
        }
    }
    if any || !cur.is_empty() {
        out.push(parse_cycle(&cur));
    }
    out
}

/// The smallest counter the state may hold after the power cut that ended
/// `cycle`, and why. `slack_ms` (periodic only) covers the time one
/// background `fdatasync` and the scheduling around it may take.
pub(crate) fn required(mode: Mode, cycle: &Cycle, slack_ms: u64) -> (u64, String) {
    let mut need = 0;
    let mut why = "nothing acknowledged".to_string();
    if let Some(r) = cycle.recovered {
        // What recovery found was on disk; nothing may take it away again.
        need = r;
        why = format!("recovered {r} at start");
    }
    let acked = match mode {
        Mode::Sync => cycle
            .committed
            .iter()
            .map(|&(n, _)| n)
            .max()
            .map(|n| (n, format!("last committed {n}"))),
        Mode::PageCache => cycle
            .checkpointed
            .map(|n| (n, format!("last checkpointed {n}"))),
        Mode::Periodic { interval_ms } => {
            let p = periodic_bound(&cycle.committed, interval_ms, slack_ms);
            // A returned checkpoint made everything up to it durable too.
            let k = cycle
                .checkpointed
                .map(|n| (n, format!("last checkpointed {n}")));
            match (p, k) {
                (Some(p), Some(k)) => Some(if k.0 > p.0 { k } else { p }),
                (p, k) => p.or(k),
            }
        }
    };
    if let Some((n, w)) = acked {
        if n >= need {
            need = n;
            why = w;
        }
    }
    (need, why)
}

/// Periodic: the largest `N` whose `T <= T_last - interval - slack`, where
/// `T_last` is the last line's `T` (the power went after it was printed).
fn periodic_bound(
    committed: &[(u64, Option<u64>)],
    interval_ms: u64,
    slack_ms: u64,
) -> Option<(u64, String)> {
    let t_last = committed.iter().rev().find_map(|&(_, t)| t)?;
    let limit = t_last.checked_sub(interval_ms + slack_ms)?;
    committed
        .iter()
        .filter(|&&(_, t)| t.is_some_and(|t| t <= limit))
        .map(|&(n, _)| n)
        .max()
        .map(|n| {
            (
                n,
                format!(
                    "committed {n} at or before {limit} ms = last line's {t_last} ms - interval {interval_ms} - slack {slack_ms}"
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "start periodic\nrecovered 10\ncommitted 11 100\ncommitted 12 180\n\
                       committed 13 250\ncommitted 14 400\ncommitted 15 410\ncommitted 1";

    #[test]
    fn lines_are_parsed() {
        let c = parse_cycle(LOG);
        assert!(c.started);
        assert_eq!(c.recovered, Some(10));
        assert_eq!(c.committed.len(), 6);
        assert_eq!(c.committed[5], (1, None));
        let c = parse_cycle(
            "start pagecache\nrecovered 0\ncommitted 1\ncheckpointed 64\nerror commit 65: boom\n",
        );
        assert_eq!(c.checkpointed, Some(64));
        assert_eq!(c.errors.len(), 1);
    }

    #[test]
    fn the_loss_bound_follows_the_mode() {
        let log = "start sync\nrecovered 5\ncommitted 6\ncommitted 7\n";
        assert_eq!(required(Mode::Sync, &parse_cycle(log), 0).0, 7);
        // Nothing acknowledged: recovery's counter still may not go back.
        assert_eq!(
            required(Mode::Sync, &parse_cycle("start sync\nrecovered 5\n"), 0).0,
            5
        );
        assert_eq!(required(Mode::Sync, &parse_cycle(""), 0).0, 0);

        let log =
            "start pagecache\nrecovered 3\ncommitted 4\ncheckpointed 4\ncommitted 5\ncommitted 6\n";
        assert_eq!(required(Mode::PageCache, &parse_cycle(log), 0).0, 4);
        let log = "start pagecache\nrecovered 3\ncommitted 4\ncommitted 5\n";
        assert_eq!(required(Mode::PageCache, &parse_cycle(log), 0).0, 3);
    }

    #[test]
    fn the_periodic_bound_subtracts_interval_and_slack() {
        let c = parse_cycle(LOG);
        let p = |i| Mode::Periodic { interval_ms: i };
        // T_last = 410 (the torn last line has no T and is not a T).
        // 410 - 100 - 100 = 210: commits with T <= 210 are 11 (100) and 12 (180).
        assert_eq!(required(p(100), &c, 100).0, 12);
        // 410 - 100 - 60 = 250: 13 is in (T = 250, boundary included).
        assert_eq!(required(p(100), &c, 60).0, 13);
        // 410 - 400 - 0 = 10: nothing that old: the recovered counter.
        assert_eq!(required(p(400), &c, 0).0, 10);
        // Interval + slack longer than the run: only the recovered counter.
        assert_eq!(required(p(1000), &c, 1000).0, 10);
        // A returned checkpoint counts too.
        let log = format!("{LOG}\ncheckpointed 14\ncommitted 16 420\n");
        assert_eq!(required(p(100), &parse_cycle(&log), 100).0, 14);
    }

    #[test]
    fn all_log_splits_into_cycles() {
        let all = "=== cycle 1\nstart sync\nrecovered 0\ncommitted 1\n=== cycle 2\n=== cycle 3\nstart sync\nrecovered 1\n";
        let v = parse_all(all);
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].committed, vec![(1, None)]);
        assert!(!v[1].started);
        assert_eq!(v[2].recovered, Some(1));
    }
}
