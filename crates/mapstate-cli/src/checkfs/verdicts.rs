//! The verdicts: whether each guarantee of the contract holds, drawn from
//! what the checks found.

use std::time::Duration;

use mapstate::FsClass;

use super::storage::Mount;
use crate::util::human_duration;

/// What the checks found that the verdicts are drawn from.
pub(super) struct Findings<'a> {
    pub(super) mount: &'a Mount,
    pub(super) kills: u64,
    /// Whether the kill torture lost or tore nothing; `None` when it did
    /// not run.
    pub(super) torture: Option<bool>,
    pub(super) synced: bool,
    pub(super) grows: bool,
    pub(super) locks: bool,
    pub(super) notify: &'a Result<Duration, String>,
}

/// Whether a guarantee of the contract holds here, and why.
pub(super) struct Verdict {
    pub(super) guarantee: &'static str,
    /// `None`: cannot be told from here.
    pub(super) holds: Option<bool>,
    pub(super) why: String,
}

/// The verdicts, one per guarantee of the contract.
pub(super) fn verdicts(f: &Findings) -> Vec<Verdict> {
    let refused = f.mount.class == FsClass::Unsuitable;
    vec![
        crash_verdict(f, refused),
        power_cut_verdict(f, refused),
        plain_verdict(
            "growth: a full disk is an error, never a SIGBUS",
            f.grows && !refused,
            "holds: fallocate works",
            "does not hold: states cannot grow here",
        ),
        Verdict {
            guarantee: "notification of commits to other processes",
            holds: Some(f.notify.is_ok() && !refused),
            why: match (f.notify, refused) {
                (Ok(d), false) => format!("holds: woke in {}", human_duration(*d)),
                (Ok(_), true) => "on this machine only: other machines are never woken".into(),
                (Err(e), _) => format!("does not hold: {e}"),
            },
        },
        plain_verdict(
            "one writer at a time (a second gets Locked with the holder's pid)",
            f.locks && !refused,
            "holds",
            "does not hold",
        ),
    ]
}

/// A verdict that holds or not, with a fixed reason for each.
fn plain_verdict(guarantee: &'static str, holds: bool, yes: &str, no: &str) -> Verdict {
    Verdict {
        guarantee,
        holds: Some(holds),
        why: (if holds { yes } else { no }).into(),
    }
}

/// Process crashes: what the kill torture showed, with a working lock.
fn crash_verdict(f: &Findings, refused: bool) -> Verdict {
    let (holds, why) = if refused {
        (Some(false), format!("does not hold on {}", f.mount.name))
    } else {
        let why = match f.torture {
            Some(true) => format!("holds: {} kills, none torn or lost", f.kills),
            Some(false) => "VIOLATED: see the kill torture above".into(),
            None => "not tested (--kills 0)".into(),
        };
        (f.torture.map(|t| t && f.locks), why)
    };
    Verdict {
        guarantee: "process crash (SIGKILL, abort, OOM kill): every returned commit kept, never torn",
        holds,
        why,
    }
}

/// Power cuts: they cannot be caused from here, only ruled out.
fn power_cut_verdict(f: &Findings, refused: bool) -> Verdict {
    let why = if f.mount.class == FsClass::Memory {
        "does not apply: tmpfs keeps nothing across a power cut or reboot".into()
    } else if refused {
        format!("does not hold on {}", f.mount.name)
    } else if !f.synced {
        "does not hold: fdatasync fails here".into()
    } else {
        "expected, not provable from here: the syncs it relies on work, but whether the \
         device honours them cannot be seen from a running system"
            .into()
    };
    Verdict {
        guarantee: "power cut: always consistent; Sync loses no returned commit",
        holds: if refused || !f.synced {
            Some(false)
        } else {
            None
        },
        why,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn findings<'a>(mount: &'a Mount, notify: &'a Result<Duration, String>) -> Findings<'a> {
        Findings {
            mount,
            kills: 2,
            torture: Some(true),
            synced: true,
            grows: true,
            locks: true,
            notify,
        }
    }

    #[test]
    fn a_refused_filesystem_holds_no_guarantee() {
        let mount = Mount {
            name: "nfs".into(),
            shown: "nfs on server:/export".into(),
            class: FsClass::Unsuitable,
            why: "refused".into(),
        };
        let notify = Ok(Duration::from_micros(50));
        let v = verdicts(&findings(&mount, &notify));
        assert!(v.iter().all(|v| v.holds == Some(false)));
        assert_eq!(v[0].why, "does not hold on nfs");
        assert_eq!(
            v[3].why,
            "on this machine only: other machines are never woken"
        );
    }

    #[test]
    fn a_disk_holds_all_but_the_unprovable() {
        let mount = Mount {
            name: "ext4".into(),
            shown: "ext4".into(),
            class: FsClass::Disk,
            why: String::new(),
        };
        let notify = Ok(Duration::from_micros(50));
        let holds: Vec<_> = verdicts(&findings(&mount, &notify))
            .iter()
            .map(|v| v.holds)
            .collect();
        assert_eq!(
            holds,
            [Some(true), None, Some(true), Some(true), Some(true)]
        );
    }
}
