//! What a reader learns about commits: [`Change`] (a commit and the byte
//! ranges it changed) and [`Event`] (a change, or commits it can no longer
//! see), which `Reader::changes_since` and the waiting calls produce (every
//! commit writes its ranges into a ring in the live header before it is
//! published); and [`Commit`], a commit with its bytes as the log holds it
//! (`Reader::commits_since`), to apply to another copy of the state.

use std::ops::Range;

/// One published commit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// Its sequence number.
    pub seq: u64,
    /// The byte ranges it changed (a length change counts as a change of the
    /// bytes between the old and the new length).
    pub ranges: Vec<Range<u64>>,
    /// Whether `ranges` were widened to one covering range (a commit with
    /// more ranges than the ring entry holds): never narrower than the truth.
    pub widened: bool,
}

/// One commit, exactly as it was made: what to apply to the state before it
/// to get the state after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    /// Its sequence number.
    pub seq: u64,
    /// The state's length after it.
    pub len: u64,
    /// Bytes it set to zeros (the part a shrink cut off), if any; applied
    /// before `ranges`.
    pub zeroed: Option<Range<u64>>,
    /// The byte ranges it wrote, in order; `data` holds their bytes.
    pub ranges: Vec<Range<u64>>,
    /// The bytes of `ranges`, one after the other.
    pub data: Vec<u8>,
}

impl Commit {
    /// Each written range with its bytes.
    pub fn writes(&self) -> impl Iterator<Item = (Range<u64>, &[u8])> + '_ {
        let mut at = 0usize;
        self.ranges.iter().map(move |r| {
            let n = (r.end - r.start) as usize;
            let b = &self.data[at..at + n];
            at += n;
            (r.clone(), b)
        })
    }
}

/// What a reader learns about the commits after the one it saw last.
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("state");
/// use mapstate::{Event, Reader, Writer};
/// let mut w = Writer::options().create(true).len(4096).open(&path)?;
/// let r = Reader::open(&path)?;
/// let mut t = w.begin();
/// t.write_at(100, b"abc")?;
/// t.commit()?;
/// for e in r.wait_changes(0, None)? {
///     match e {
///         Event::Change(c) => assert_eq!((c.seq, c.ranges), (1, vec![100..103])),
///         // Too many commits to list: re-read what you derive from the state.
///         Event::Missed { .. } => unreachable!("one commit fits in the ring"),
///     }
/// }
/// # w.remove()?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A commit and its ranges.
    Change(Change),
    /// Commits `first..=last` were published but left the ring before this
    /// reader looked: re-read whatever you derive from the state.
    Missed {
        /// The first missed commit.
        first: u64,
        /// The last missed commit.
        last: u64,
    },
}

impl Event {
    /// The newest sequence number this event covers.
    pub fn seq(&self) -> u64 {
        match self {
            Event::Change(c) => c.seq,
            Event::Missed { last, .. } => *last,
        }
    }

    /// Whether this event may concern bytes in `range` (a miss always may).
    pub fn touches(&self, range: &Range<u64>) -> bool {
        match self {
            Event::Change(c) => c
                .ranges
                .iter()
                .any(|r| r.start < range.end && range.start < r.end),
            Event::Missed { .. } => true,
        }
    }
}

/// Adds commit `seq` to `out` as missed, joining it to a miss just before.
pub(crate) fn push_missed(out: &mut Vec<Event>, seq: u64) {
    match out.last_mut() {
        Some(Event::Missed { last, .. }) if *last + 1 == seq => *last = seq,
        _ => out.push(Event::Missed {
            first: seq,
            last: seq,
        }),
    }
}
