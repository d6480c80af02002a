//! `check MODE [INTERVAL_MS] [--shrink | --append] [--fresh] ROOTDIR CYCLE_LOG ALL_LOG`:
//! runs on the host after each power cut (the harness's checker contract).
//!
//! 1. Copies `ROOTDIR/state.db` and its `-wal` and `-ckpt` companions into a
//!    temporary directory (recovery writes files; the extracted tree stays
//!    as the cut left it, for a post-mortem).
//! 2. Recovers the copy with `WriterOptions::open` and a fresh, empty live
//!    directory: the guest's live image (tmpfs) died with the power, so the
//!    state is rebuilt from the durable image, the checkpoint journal and
//!    the log exactly as the next boot does. A recovery error is a violation.
//! 3. Takes a `Reader` snapshot and checks that it is exactly the state after
//!    one transaction of the model (`model::check`), and that mapstate's
//!    sequence number equals the counter (one commit per transaction).
//! 4. Checks the loss bound (`bounds::required`) for this cycle and, unless
//!    `--fresh` (a new disk every cycle), for every earlier cycle too (the
//!    state carries over, so nothing durable in cycle k may be gone in
//!    cycle k + 1), and that the guest's own recovery at the start of this
//!    cycle found the counter the host found after the previous cut.
//!
//! Exit 0 ok, 1 violation, 2 checker error. The last line of output is the
//! verdict (the harness shows it).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use mapstate::Reader;

use crate::bounds::{self, Cycle, Mode};
use crate::workload::{STATE, options};

/// Periodic mode: slack added to the interval (see `--help` and the README
/// of the powercut scripts): the background syncer's `fdatasync` must also
/// finish, and under TCG one takes up to about 100 ms when a few MiB of log
/// are dirty; twice that covers a sync that started just before the commit
/// plus the one after it. Override with `PC_SLACK_MS`.
pub(crate) const DEFAULT_SLACK_MS: u64 = 250;

/// Parsed arguments of `check`.
#[derive(Debug)]
pub(crate) struct Args {
    pub(crate) mode: Mode,
    pub(crate) shrink: bool,
    pub(crate) append: bool,
    pub(crate) fresh: bool,
    pub(crate) root: PathBuf,
    pub(crate) cycle_log: PathBuf,
    pub(crate) all_log: PathBuf,
}

/// A verdict: what the checker found.
enum Verdict {
    Ok(String),
    Violation(String),
}

fn read_log(p: &Path) -> Result<String, String> {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .map_err(|e| format!("read {}: {e}", p.display()))
}

/// Copies the state's files (those that exist) from `root` into `dir`.
fn copy_state(root: &Path, dir: &Path) -> Result<bool, String> {
    let mut any = false;
    for suffix in ["", "-wal", "-ckpt"] {
        let name = format!("{STATE}{suffix}");
        let from = root.join(&name);
        if from.exists() {
            std::fs::copy(&from, dir.join(&name))
                .map_err(|e| format!("copy {}: {e}", from.display()))?;
            any |= suffix.is_empty();
        }
    }
    Ok(any)
}

/// Recovers the copy as the next boot would and returns `(seq, snapshot)`.
fn recover(path: &Path, mode: Mode, live: &Path) -> mapstate::Result<(u64, u64, Vec<u8>)> {
    let w = options(mode).live_dir(live).open(path)?;
    let wseq = w.seq();
    let r = Reader::options().live_dir(live).open(path)?;
    let (rseq, snap) = r.snapshot()?;
    // Keep the writer open until the snapshot is taken (no checkpoint in
    // between); dropping it afterwards may checkpoint the copy: harmless.
    drop(r);
    drop(w);
    Ok((wseq, rseq, snap))
}

/// The file, beside the harness's `ROOTDIR`, where the host's counter after
/// each cut is kept for the next cycle's cross-check.
fn memo_path(root: &Path) -> Option<PathBuf> {
    let parent = root.parent()?;
    Some(parent.join("mapstate-powercut.last"))
}

/// Recovers a copy of the state and checks the invariant: `Ok(Ok(counter))`,
/// `Ok(Err(violation))`, or `Err(checker error)`.
fn recovered_counter(a: &Args) -> Result<Result<u64, String>, String> {
    let tmp = tempfile::Builder::new()
        .prefix("mapstate-powercut-check.")
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let live = tmp.path().join("live");
    std::fs::create_dir(&live).map_err(|e| format!("mkdir {}: {e}", live.display()))?;
    if !copy_state(&a.root, tmp.path())? {
        // Never created (the first cut came before): the counter is 0.
        return Ok(Ok(0));
    }
    let (wseq, rseq, snap) = match recover(&tmp.path().join(STATE), a.mode, &live) {
        Ok(x) => x,
        Err(e) => return Ok(Err(format!("recovery failed: {e}"))),
    };
    let checked = if a.append {
        crate::model::append::check(&snap)
    } else {
        crate::model::check(&snap, a.shrink)
    };
    let c = match checked {
        Ok(c) => c,
        Err(e) => return Ok(Err(format!("torn state: {e}"))),
    };
    if wseq != c || rseq != c {
        return Ok(Err(format!(
            "the state holds transaction {c} but mapstate's sequence number is {wseq} (writer) / {rseq} (reader)"
        )));
    }
    Ok(Ok(c))
}

/// The loss bound of this cycle and of every earlier one: `Ok((need, why))`
/// or `Err(violation)`.
fn loss_bound(
    a: &Args,
    cycle: &Cycle,
    all: &[Cycle],
    counter: u64,
    slack: u64,
) -> Result<(u64, String), String> {
    let (need, why) = bounds::required(a.mode, cycle, slack);
    if counter < need {
        return Err(format!(
            "lost commits: the state is at {counter} but {why} (this cycle)"
        ));
    }
    for (i, cy) in all.iter().enumerate() {
        let (n, w) = bounds::required(a.mode, cy, slack);
        if counter < n {
            return Err(format!(
                "lost commits: the state is at {counter} but {w} in cycle {}",
                i + 1
            ));
        }
    }
    Ok((need, why))
}

/// The guest's recovery at the start of this cycle must have found what the
/// host found after the previous cut; records this cut's counter for the
/// next cycle. `Err(violation)`.
fn cross_check(a: &Args, cycle: &Cycle, counter: u64) -> Result<(), String> {
    let Some(k) = std::env::var("PC_CYCLE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return Ok(());
    };
    let Some(memo) = memo_path(&a.root) else {
        return Ok(());
    };
    let prev = std::fs::read_to_string(&memo).ok().and_then(|t| {
        let mut f = t.split_whitespace().map(str::parse::<u64>);
        match (f.next(), f.next()) {
            (Some(Ok(pk)), Some(Ok(pc))) => Some((pk, pc)),
            _ => None,
        }
    });
    let _ = std::fs::write(&memo, format!("{k} {counter}\n"));
    match (prev, cycle.recovered) {
        (Some((pk, pc)), Some(rec)) if !a.fresh && pk + 1 == k && pc != rec => Err(format!(
            "after cut {pk} the host recovered {pc}, but the guest's recovery at the start of cycle {k} found {rec}"
        )),
        _ => Ok(()),
    }
}

/// Runs the check; `Err` is a checker error (exit 2).
fn check(a: &Args) -> Result<Verdict, String> {
    let cycle = bounds::parse_cycle(&read_log(&a.cycle_log)?);
    let all = if a.fresh {
        vec![]
    } else {
        read_log(&a.all_log).map_or_else(|_| vec![], |t| bounds::parse_all(&t))
    };
    let slack = std::env::var("PC_SLACK_MS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SLACK_MS);
    // Errors the workload reported in the guest.
    if let Some(e) = cycle.errors.first() {
        if e.starts_with("error setup") {
            return Err(format!("the workload could not set up: {e}"));
        }
        return Ok(Verdict::Violation(format!(
            "the workload failed in the guest: {e}"
        )));
    }
    let counter = match recovered_counter(a)? {
        Ok(c) => c,
        Err(v) => return Ok(Verdict::Violation(v)),
    };
    if let Err(v) = cross_check(a, &cycle, counter) {
        return Ok(Verdict::Violation(v));
    }
    let (need, why) = match loss_bound(a, &cycle, &all, counter, slack) {
        Ok(x) => x,
        Err(v) => return Ok(Verdict::Violation(v)),
    };
    let commits = cycle.committed.len();
    let rec = cycle.recovered.map_or_else(
        || "no recovery line".to_string(),
        |r| format!("recovered {r} at start"),
    );
    Ok(Verdict::Ok(format!(
        "state at {counter} >= {need} ({why}); {rec}; {commits} commits printed"
    )))
}

/// The `check` subcommand.
pub(crate) fn run(a: &Args) -> ExitCode {
    match check(a) {
        Ok(Verdict::Ok(m)) => {
            println!("{m}");
            ExitCode::SUCCESS
        }
        Ok(Verdict::Violation(m)) => {
            println!("{}: {m}", a.mode.name());
            ExitCode::from(1)
        }
        Err(e) => {
            println!("checker error: {e}");
            ExitCode::from(2)
        }
    }
}

/// The loss bound the checker applies to one cycle (exposed for the tests).
#[cfg(test)]
pub(crate) fn bound_of(mode: Mode, log: &str, slack: u64) -> u64 {
    let c = bounds::parse_cycle(log);
    bounds::required(mode, &c, slack).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model;

    /// Runs the real workload transactions on the host against a temporary
    /// state, then the checker's recovery and invariant, to tie the model,
    /// the workload and the checker together.
    /// A state in `root` of a new temporary directory (its live image in
    /// `live` beside it) after `commit(w, c)` for `c` in `1..=last`, its
    /// writer left open (no close, no checkpoint), as a power cut finds it.
    fn left_running(
        mode: Mode,
        last: u64,
        mut commit: impl FnMut(&mut mapstate::Writer, u64),
    ) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("live");
        std::fs::create_dir(&live).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let mut w = options(mode)
            .live_dir(&live)
            .open(root.join(STATE))
            .unwrap();
        for c in 1..=last {
            commit(&mut w, c);
        }
        std::mem::forget(w);
        (dir, root)
    }

    /// The "power cut": copies the files under `root` (a writer may still
    /// hold them) into `dir/cut` and recovers the copy with a fresh live
    /// directory; returns the writer's sequence number and the state.
    fn cut_and_recover(dir: &Path, root: &Path, mode: Mode) -> (u64, Vec<u8>) {
        let cut = dir.join("cut");
        std::fs::create_dir(&cut).unwrap();
        assert!(copy_state(root, &cut).unwrap());
        let fresh_live = dir.join("live2");
        std::fs::create_dir(&fresh_live).unwrap();
        let (wseq, _, snap) = recover(&cut.join(STATE), mode, &fresh_live).unwrap();
        (wseq, snap)
    }

    #[test]
    fn the_checker_accepts_a_recovered_workload_state_and_rejects_a_torn_one() {
        let mode = Mode::PageCache;
        // Records 65..=150 are left in the log.
        let (dir, root) = left_running(mode, 150, |w, c| {
            crate::workload::transaction(w, c, false).unwrap();
            if c == 64 {
                w.checkpoint().unwrap();
            }
        });
        let (wseq, snap) = cut_and_recover(dir.path(), &root, mode);
        assert_eq!(wseq, 150);
        assert_eq!(model::check(&snap, false), Ok(150));
        let mut torn = snap.clone();
        torn[4093] ^= 1;
        assert!(model::check(&torn, false).is_err());

        // The whole `check` path, with logs.
        let cyc = dir.path().join("cycle.log");
        std::fs::write(
            &cyc,
            "start pagecache\nrecovered 0\ncommitted 150\ncheckpointed 64\n",
        )
        .unwrap();
        let a = Args {
            mode,
            shrink: false,
            append: false,
            fresh: false,
            root: root.clone(),
            cycle_log: cyc.clone(),
            all_log: cyc.clone(),
        };
        let before: Vec<Vec<u8>> = ["", "-wal", "-ckpt"]
            .iter()
            .map(|s| std::fs::read(root.join(format!("{STATE}{s}"))).unwrap())
            .collect();
        assert!(matches!(check(&a).unwrap(), Verdict::Ok(_)));
        std::fs::write(&cyc, "start pagecache\nrecovered 0\ncheckpointed 151\n").unwrap();
        assert!(matches!(check(&a).unwrap(), Verdict::Violation(_)));
        // The extracted tree was not touched by recovery (it ran on a copy).
        for (s, b) in ["", "-wal", "-ckpt"].iter().zip(&before) {
            assert_eq!(&std::fs::read(root.join(format!("{STATE}{s}"))).unwrap(), b);
        }
    }

    /// The append workload through a wrap (a cut back), checkpointed on
    /// both sides of it, then recovered from a copy as after a power cut.
    #[test]
    fn the_checker_accepts_a_recovered_append_state() {
        let mode = Mode::PageCache;
        let last = model::append::APPEND_CYCLE + 40;
        let (dir, root) = left_running(mode, last, |w, c| {
            crate::workload::append(w, c).unwrap();
            if c % 500 == 0 || c == model::append::APPEND_CYCLE + 1 {
                w.checkpoint().unwrap();
            }
        });
        let (wseq, snap) = cut_and_recover(dir.path(), &root, mode);
        assert_eq!(wseq, last);
        assert_eq!(model::append::check(&snap), Ok(last));
    }

    #[test]
    fn bounds_per_mode() {
        assert_eq!(
            bound_of(Mode::Sync, "recovered 1\ncommitted 2\ncommitted 3\n", 0),
            3
        );
        assert_eq!(
            bound_of(
                Mode::PageCache,
                "recovered 1\ncommitted 2\ncheckpointed 2\ncommitted 3\n",
                0
            ),
            2
        );
        let p = Mode::Periodic { interval_ms: 100 };
        assert_eq!(
            bound_of(
                p,
                "recovered 1\ncommitted 2 10\ncommitted 3 200\ncommitted 4 500\n",
                250
            ),
            2
        );
    }
}
