//! [`LiveImage`]: where the live image a handle maps came from, and why
//! one was rebuilt ([`Rebuilt`]): what `mapstate info` and `verify` report.

use std::fmt;

/// Where the live image a [`Writer`](crate::Writer) or
/// [`Reader`](crate::Reader) maps came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LiveImage {
    /// The one in place passed every identity check: made by the state's
    /// owner for this state during this boot, complete, holding the last
    /// checkpoint's commits and following the durable image's epoch.
    Kept,
    /// Built from the files on disk (and put in place for everyone),
    /// because of what the one in place was.
    Rebuilt(Rebuilt),
    /// Built from the files on disk for this reader alone, because of what
    /// the one in place was and because this process may not put one in
    /// place (it is not the state's owner): it holds the state as of the
    /// reader's open. A writer that starts later makes reads fail with
    /// `Error::WriterNotVisible` (reopen the reader then).
    Private(Rebuilt),
}

/// Why a live image was built instead of used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Rebuilt {
    /// There was none (a new state, or the first open since a reboot).
    Missing,
    /// The file there belongs to another user, or grants more than the
    /// durable file (someone other than the owner made it).
    NotTheOwners {
        /// The uid that owns it.
        uid: u32,
    },
    /// It belongs to another state (a state made anew at the same name).
    OtherState,
    /// It was made before the last reboot (kept on a disk filesystem).
    OtherBoot,
    /// It was never finished (its builder died) or is damaged.
    Incomplete,
    /// It follows another epoch than the durable image: the durable file
    /// was restored from a backup or replaced by another copy of the state.
    OtherEpoch,
    /// It holds fewer commits than the durable image's last checkpoint.
    Behind,
    /// It was made by another format version.
    OtherVersion,
}

impl LiveImage {
    /// A short name for scripts: `kept`, `rebuilt` or `private` (the
    /// command line's JSON and the C API use it).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            LiveImage::Kept => "kept",
            LiveImage::Rebuilt(_) => "rebuilt",
            LiveImage::Private(_) => "private",
        }
    }

    /// Why it was built, if it was.
    #[must_use]
    pub fn rebuilt(&self) -> Option<Rebuilt> {
        match self {
            LiveImage::Kept => None,
            LiveImage::Rebuilt(why) | LiveImage::Private(why) => Some(*why),
        }
    }
}

impl Rebuilt {
    /// A short name for scripts: `missing`, `not_the_owners`,
    /// `other_state`, `other_boot`, `incomplete`, `other_epoch`, `behind`
    /// or `other_version`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Rebuilt::Missing => "missing",
            Rebuilt::NotTheOwners { .. } => "not_the_owners",
            Rebuilt::OtherState => "other_state",
            Rebuilt::OtherBoot => "other_boot",
            Rebuilt::Incomplete => "incomplete",
            Rebuilt::OtherEpoch => "other_epoch",
            Rebuilt::Behind => "behind",
            Rebuilt::OtherVersion => "other_version",
        }
    }
}

impl fmt::Display for LiveImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LiveImage::Kept => f.write_str("kept: every identity check passed"),
            LiveImage::Rebuilt(why) => write!(f, "rebuilt from the files on disk: {why}"),
            LiveImage::Private(why) => write!(
                f,
                "built for this reader alone (only the owner may put one in place): {why}"
            ),
        }
    }
}

impl fmt::Display for Rebuilt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rebuilt::Missing => f.write_str("there was none (a new state, or a reboot)"),
            Rebuilt::NotTheOwners { uid } => write!(
                f,
                "the one there was made by uid {uid}, not the state's owner, or grants more"
            ),
            Rebuilt::OtherState => f.write_str("the one there belongs to another state"),
            Rebuilt::OtherBoot => f.write_str("the one there is from before a reboot"),
            Rebuilt::Incomplete => f.write_str("the one there was never finished, or is damaged"),
            Rebuilt::OtherEpoch => f.write_str(
                "the one there follows another epoch: the durable file was restored from a \
                 backup or replaced",
            ),
            Rebuilt::Behind => f.write_str("the one there is older than the last checkpoint"),
            Rebuilt::OtherVersion => f.write_str("the one there has another format version"),
        }
    }
}
