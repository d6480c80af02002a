//! `check-fs DIR`: what mapstate can promise on the filesystem under DIR.
//!
//! Every check runs for real in a scratch directory made inside DIR (and
//! removed at the end): the filesystem's type, `fallocate`, `fdatasync`
//! latency, `MAP_SYNC`, the tmpfs for live images, the writer lock, a
//! change notification across processes, a short kill torture and the write
//! amplification of `msync` with large folios. Then a verdict per guarantee.
//!
//! The checks of the filesystem and its calls are in [`storage`], those
//! between processes in [`processes`]; [`verdicts`] draws the verdicts from
//! them and [`report`] prints both.

mod processes;
mod report;
mod storage;
mod verdicts;

use std::path::Path;

use indicatif::ProgressBar;
use tempfile::TempDir;

use crate::util::{self, CmdResult, EXIT_ACCESS, EXIT_FAILURE, EXIT_OK, EXIT_VIOLATION, Failure};
use processes::{check_kill_torture, check_notification, check_writer_lock};
use report::Report;
use storage::{
    check_fallocate, check_fdatasync, check_filesystem, check_live_image, check_map_sync,
    check_msync, classify,
};
use verdicts::{Findings, verdicts};

/// Runs `check-fs`: the checks in a scratch directory, then the verdicts.
pub(crate) fn run(dir: &Path, kills: u64, json: bool) -> CmdResult {
    require_dir(dir)?;
    let mount = classify(dir).map_err(|e| Failure::new(EXIT_FAILURE, e))?;
    let scratch = scratch_dir(dir)?;
    let s = scratch.path();
    let pb = util::bar(8 + u64::from(kills > 0), "check-fs", false, !json);
    // The writer lock check creates this state; the notification check uses
    // it, then removes it.
    let state = s.join("lock.state");

    let filesystem = check_filesystem(&mount);
    let fallocate = step(&pb, "fallocate", || check_fallocate(s));
    let fdatasync = step(&pb, "fdatasync latency", || check_fdatasync(s, mount.class));
    let map_sync = step(&pb, "MAP_SYNC", || check_map_sync(s));
    let (live_image, live_free) = step(&pb, "live image", check_live_image);
    let lock = step(&pb, "writer lock", || check_writer_lock(&state));
    let (notification, notify) = step(&pb, "notification", || check_notification(&state));
    let torture =
        (kills > 0).then(|| step(&pb, "kill torture", || check_kill_torture(s, kills, &pb)));
    let msync = step(&pb, "msync amplification", || check_msync(s, mount.class));
    pb.finish_and_clear();

    let verdicts = verdicts(&Findings {
        mount: &mount,
        kills,
        torture: torture.as_ref().map(Check::passed),
        synced: fdatasync.passed(),
        grows: fallocate.passed(),
        locks: lock.passed(),
        notify: &notify,
    });
    let mut checks = vec![
        filesystem,
        fallocate,
        fdatasync,
        map_sync,
        live_image,
        lock,
        notification,
    ];
    checks.extend(torture);
    checks.push(msync);
    let report = Report {
        dir,
        mount: &mount,
        live_free,
        checks,
        verdicts,
    };
    report.print(json);
    Ok(if report.violated() {
        EXIT_VIOLATION
    } else {
        EXIT_OK
    })
}

/// Fails unless `dir` is a directory: with [`EXIT_ACCESS`] when nothing is
/// there.
fn require_dir(dir: &Path) -> Result<(), Failure> {
    if dir.is_dir() {
        return Ok(());
    }
    Err(Failure::new(
        if dir.exists() {
            EXIT_FAILURE
        } else {
            EXIT_ACCESS
        },
        format!(
            "{} is not a directory: name a directory on the filesystem to check",
            dir.display()
        ),
    ))
}

/// A scratch directory inside `dir` for the checks, removed when dropped.
fn scratch_dir(dir: &Path) -> Result<TempDir, Failure> {
    tempfile::Builder::new()
        .prefix(".mapstate-check-")
        .tempdir_in(dir)
        .map_err(|e| {
            let code = if e.kind() == std::io::ErrorKind::PermissionDenied {
                EXIT_ACCESS
            } else {
                EXIT_FAILURE
            };
            Failure::new(
                code,
                format!(
                    "cannot create a scratch directory in {}: {e}",
                    dir.display()
                ),
            )
        })
}

/// Shows `msg` on the progress bar, advances it and runs the check.
fn step<T>(pb: &ProgressBar, msg: &str, check: impl FnOnce() -> T) -> T {
    pb.set_message(format!("check-fs: {msg}"));
    pb.inc(1);
    check()
}

/// One line of the report.
struct Check {
    name: &'static str,
    result: String,
    /// `Some(false)` fails a guarantee; `None` is information.
    ok: Option<bool>,
    /// Information that needs attention (shown as `warn`, not `info`).
    warn: bool,
}

impl Check {
    /// A check that passes or fails.
    fn new(name: &'static str, ok: bool, result: String) -> Self {
        Self {
            name,
            result,
            ok: Some(ok),
            warn: false,
        }
    }

    /// A check that only informs.
    fn info(name: &'static str, result: String) -> Self {
        Self {
            name,
            result,
            ok: None,
            warn: false,
        }
    }

    fn passed(&self) -> bool {
        self.ok == Some(true)
    }
}
