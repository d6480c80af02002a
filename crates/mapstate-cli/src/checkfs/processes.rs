//! The checks between processes: the writer lock, a change notification
//! and a short kill torture.

use std::path::Path;
use std::time::Duration;

use indicatif::ProgressBar;
use mapstate::{Error, Writer};

use super::Check;
use crate::util::human_duration;

/// Creates the state `state` and opens a second writer on it, which must
/// get `Locked`.
pub(super) fn check_writer_lock(state: &Path) -> Check {
    let opts = Writer::options().create(true).len(1 << 16);
    let lock = opts.open(state).map(|w| {
        let second = opts.open(state);
        drop(w);
        second
    });
    let locked = matches!(lock, Ok(Err(Error::Locked { .. })));
    let result = match lock {
        Ok(Err(Error::Locked { pid, .. })) => format!(
            "a second writer gets Locked (pid {}): OFD locks work",
            pid.map_or_else(|| "?".into(), |p| p.to_string())
        ),
        Ok(Ok(_)) => "a second writer was NOT refused: two writers could corrupt a state".into(),
        Ok(Err(e)) | Err(e) => format!("could not be tried: {e}"),
    };
    Check::new("writer lock", locked, result)
}

/// Wakes a watcher in another process with a commit to `state`, then
/// removes the state: (the check, how long the wake-up took).
pub(super) fn check_notification(state: &Path) -> (Check, Result<Duration, String>) {
    let notify = crate::demo::notify_latency(state);
    let result = match &notify {
        Ok(d) => format!(
            "a watcher in another process woke {} after a commit was called",
            human_duration(*d)
        ),
        Err(e) => format!("failed: {e}"),
    };
    if let Ok(w) = Writer::open(state) {
        let _ = w.remove();
    }
    (Check::new("notification", notify.is_ok(), result), notify)
}

/// `kills` SIGKILLs of a committing writer, in `s/torture`; the bar shows
/// how many have been done.
pub(super) fn check_kill_torture(s: &Path, kills: u64, pb: &ProgressBar) -> Check {
    let tdir = s.join("torture");
    let r = std::fs::create_dir(&tdir)
        .map_err(|e| Error::Io {
            op: "mkdir",
            path: tdir.clone(),
            source: e,
        })
        .and_then(|()| {
            let mut tick = |k: u64| {
                pb.set_message(format!("check-fs: kill torture ({k}/{kills})"));
            };
            crate::torture::run_observed(kills, Some(tdir), 1, &mut tick, false)
        });
    match r {
        Ok((torn, lost)) => Check::new(
            "kill torture",
            torn == 0 && lost == 0,
            format!(
                "{kills} SIGKILLs of a committing writer{}: {torn} torn, {lost} lost",
                if crate::torture::has_step_kills() {
                    ""
                } else {
                    " at random moments"
                }
            ),
        ),
        Err(e) => Check::new("kill torture", false, format!("could not run: {e}")),
    }
}
