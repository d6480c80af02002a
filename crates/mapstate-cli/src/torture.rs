//! `mapstate torture`: kill a committing writer with SIGKILL, again and
//! again, at random moments and at every numbered step of the commit and
//! checkpoint paths, while a reader process checks every read it makes.
//!
//! **The state.** Its length is always a whole number of pages, between
//! 1 MiB and its maximum size of 8 MiB (it is created at 4 MiB). Page 0
//! holds the counter `c` of the last committed transaction (also stored
//! across the page 0/1 boundary at offset 4092; page 1 is otherwise zeros);
//! every other page either reads as zeros or starts with the counter of the
//! transaction that wrote it and its own page number, and is filled with a
//! byte derived from both.
//!
//! **The transactions.** Transaction `c` is a pure function of `c` and of
//! the length before it (`plan`), so the length after commit `c`, `L(c)`,
//! is a pure function of `c` (`L(0)` = 4 MiB, then the recurrence, which
//! `Model` caches). Every transaction stores the counter, then (weights out
//! of 16):
//!
//! | kind | weight | what |
//! |---|---|---|
//! | tiny | 3 | nothing else |
//! | multi | 5 | 1 to 16 pages, `write_at` |
//! | large | 1 | 1 to 2 MiB of contiguous pages |
//! | free | 2 | 1 to 8 pages, plain stores into `as_mut_slice` |
//! | grow | 1 | `set_len` up by up to 1 MiB (to at most 8 MiB), up to 4 pages anywhere |
//! | shrink | 1 | `set_len` down by up to 2 MiB (to at least 1 MiB), up to 4 pages |
//! | punch | 1 | `set_len` down by up to 2 MiB, then up by up to 2 MiB: the bytes between must read as zeros |
//! | extend | 2 | plain stores through `extend_on_write` up to 64 pages past the length (the commit sets the length to the end of the last page written, the top page always is), and up to 3 pages below it |
//!
//! Every commit reaches every step of the commit path, whatever its kind;
//! the kinds decide what a kill there interrupts (a growth from the fault
//! handler, the zeroing of a shrink, a free store found at commit).
//!
//! **The checks.** A read of commit `c` (its counter) is consistent iff:
//! the read says commit `c`; the state is exactly `L(c)` long (a
//! `Reader::snapshot`), or at most that (a `read_at` of a length read
//! before it); the counter's halves agree and page 1 holds nothing else;
//! every page is internally consistent; none is newer than `c`; every page
//! of transaction `c` carries `c`; and every page holds exactly what the
//! model says: the last transaction that wrote it since it was last cut off
//! (by a shrink, or lying past the length), else zeros. So bytes past a
//! shrink must read as zeros after a later growth. A commit is lost if the
//! reopened counter is below the last one the child reported as returned.
//!
//! **The child** recovers, then commits forever, printing `committed c`
//! after each commit (and failing if the writer's length is not `L(c)`);
//! after every 31st commit it checkpoints, and in every other such
//! interval it checkpoints again at once, with an empty log (printing
//! `checkpoint empty` first). A child that ends by itself, but for the
//! crash hook, is a failure.
//!
//! **The kills.** Every other kill is at a numbered step, in turn through
//! `Step::ALL` but `ReplayHalf` (`Visible`, the commit visible before its
//! log position is published, included); the hook kills the child there:
//! at a commit step at the 1st to 40th commit, at a checkpoint step at the
//! 1st to 3rd checkpoint, or, every other turn for steps 13, 14 and 15, in
//! its first empty-log checkpoint (step 12 is not reached there: a
//! checkpoint of no page writes no journal). The other kills are at random moments.
//! A step that a child armed for it does not reach within 2,000 commits is
//! a failure, and so, in a run long enough to arm each of them (48 kills),
//! is a step never killed at, or no kill in an empty-log checkpoint.
//!
//! **No writer.** After each kill the parent leaves the state without a
//! writer for 2 to 10 ms before it recovers (reopens as a writer) and
//! checks it; in a run of 48 kills or more, at the first kill at each of
//! steps 4, 5, 6 (a commit half-applied, the sequence lock odd) and 8
//! (without the crash hooks: every 100th kill), for 2.5 s. The reader reads
//! all along, alternately a snapshot and a `read_at` of the whole state,
//! and times each read: the library promises that a read with no live
//! writer returns within milliseconds, so a read over 2 s is a violation,
//! counted (with a message) as a torn read. So is a read that fails, and a
//! run with long gaps where the reader never read while no writer was
//! alive.
//!
//! The last line is `N kills, X torn, Y lost`; before it, on stderr, the
//! reader's tally and where the kills landed (per step, in empty-log
//! checkpoints, per kind of the transaction killed).
//!
//! The kills at numbered steps need the library's crash hooks, which only a
//! build with the `testing` feature has (`cargo run --release --features
//! testing -- torture`); without them every kill is at a random moment.

#![allow(
    clippy::similar_names,
    clippy::many_single_char_names,
    clippy::range_plus_one,
    clippy::single_match_else
)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mapstate::{Reader, Writer, WriterOptions};

const PAGE: u64 = 4096;
/// The maximum size, in pages (8 MiB).
const MAX_PAGES: u64 = 2048;
/// The shortest length, in pages (1 MiB).
const MIN_PAGES: u64 = 256;
/// The length the state is created with, in pages (4 MiB).
const INITIAL_PAGES: u64 = 1024;
/// The child checkpoints after every this many commits.
const CHECKPOINT_EVERY: u64 = 31;
/// A read that takes longer than this is a violation.
const READ_BOUND: Duration = Duration::from_secs(2);
/// The long gaps with no writer: longer than the read bound.
const LONG_GAP: Duration = Duration::from_millis(2500);
/// Commits a child armed at a step may make before the step counts as
/// never reached.
const PATIENCE: u64 = 2000;
/// Counters past this cannot be commits of a run (the checker's model
/// would take too long to reach them).
const MAX_COMMIT: u64 = 2_000_000;
/// The `nth` that arms a checkpoint step in the child's first empty-log
/// checkpoint.
const AT_EMPTY_CHECKPOINT: u64 = 0;

/// The numbers of the steps of the commit and checkpoint paths the child
/// can be killed at (every step the child reaches for sure), if this build
/// has the crash hooks.
fn steps() -> Vec<u32> {
    #[cfg(feature = "testing")]
    {
        use mapstate::testing::Step;
        Step::ALL
            .into_iter()
            .filter(|s| *s != Step::ReplayHalf)
            .map(Step::number)
            .collect()
    }
    #[cfg(not(feature = "testing"))]
    Vec::new()
}

/// Whether this build can kill the child at numbered steps.
pub(crate) fn has_step_kills() -> bool {
    !steps().is_empty()
}

/// Whether `step` is one of the checkpoint's.
fn is_checkpoint_step(step: u32) -> bool {
    (12..=15).contains(&step)
}

/// Whether a checkpoint step is reached in a checkpoint of an empty log
/// (step 12, the journal synced, is not: a checkpoint of no page writes no
/// journal).
fn reached_when_empty(step: u32) -> bool {
    matches!(step, 13..=15)
}

fn options() -> WriterOptions {
    Writer::options()
        .create(true)
        .len(INITIAL_PAGES * PAGE)
        .max_size(MAX_PAGES * PAGE)
        .wait_for_lock(true)
}

/// A small, fast, deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// A data page below `end` (pages 0 and 1 hold the counter).
    fn page_below(&mut self, end: u64) -> u64 {
        2 + self.below(end - 2)
    }
}

/// How transaction `c` changes the state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tiny,
    Multi,
    Large,
    Free,
    Grow,
    Shrink,
    Punch,
    Extend,
}

impl Kind {
    const ALL: [Kind; 8] = [
        Kind::Tiny,
        Kind::Multi,
        Kind::Large,
        Kind::Free,
        Kind::Grow,
        Kind::Shrink,
        Kind::Punch,
        Kind::Extend,
    ];

    /// Weights out of 16 (the table of the module comment).
    fn of(draw: u64) -> Kind {
        match draw {
            0..=2 => Kind::Tiny,
            3..=7 => Kind::Multi,
            8 => Kind::Large,
            9..=10 => Kind::Free,
            11 => Kind::Grow,
            12 => Kind::Shrink,
            13 => Kind::Punch,
            _ => Kind::Extend,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Tiny => "tiny",
            Kind::Multi => "multi",
            Kind::Large => "large",
            Kind::Free => "free",
            Kind::Grow => "grow",
            Kind::Shrink => "shrink",
            Kind::Punch => "punch",
            Kind::Extend => "extend",
        }
    }
}

/// What one transaction does, in this order: `set_len(cut)` if any
/// (`Shrink`, `Punch`), then `set_len(len)` if it is `Grow` or `Punch`,
/// the counter, then the pages (for `Free` through `as_mut_slice`, for
/// `Extend` through `extend_on_write`, which makes the length `len`).
#[derive(Debug)]
struct Plan {
    kind: Kind,
    /// The length (in pages) a shrink cuts the state to first.
    cut: Option<u64>,
    /// The length after the commit, in pages.
    len: u64,
    /// The data pages written.
    pages: Vec<u64>,
}

/// Transaction `c`, of a state `prev` pages long.
fn plan(c: u64, prev: u64) -> Plan {
    let mut r = Rng::new(c);
    let kind = Kind::of(r.below(16));
    // Down by up to 2 MiB, up by up to 1 MiB (2 MiB in a punch), up to
    // 256 KiB by extend-on-write: the length wanders over the whole range.
    let shorter = |r: &mut Rng| {
        if prev > MIN_PAGES {
            prev - 1 - r.below((prev - MIN_PAGES).min(512))
        } else {
            MIN_PAGES
        }
    };
    let (cut, len) = match kind {
        Kind::Grow if prev < MAX_PAGES => (None, prev + 1 + r.below((MAX_PAGES - prev).min(256))),
        Kind::Shrink => {
            let to = shorter(&mut r);
            (Some(to), to)
        }
        Kind::Punch => {
            let to = shorter(&mut r);
            (Some(to), to + r.below((MAX_PAGES - to).min(512) + 1))
        }
        Kind::Extend if prev < MAX_PAGES => (None, prev + 1 + r.below((MAX_PAGES - prev).min(64))),
        _ => (None, prev),
    };
    let pages = match kind {
        Kind::Tiny => vec![],
        Kind::Multi => (0..1 + r.below(16)).map(|_| r.page_below(prev)).collect(),
        Kind::Large => {
            let n = (256 + r.below(257)).min(prev - 2);
            let start = 2 + r.below(prev - 2 - n + 1);
            (start..start + n).collect()
        }
        Kind::Free => (0..1 + r.below(8)).map(|_| r.page_below(prev)).collect(),
        Kind::Grow | Kind::Shrink | Kind::Punch => {
            (0..r.below(5)).map(|_| r.page_below(len)).collect()
        }
        Kind::Extend => {
            let mut pages: Vec<u64> = (0..r.below(4)).map(|_| r.page_below(prev)).collect();
            if len > prev {
                // The top page makes the length; some below it in the new part.
                pages.extend((0..r.below(4)).map(|_| prev + r.below(len - prev)));
                pages.push(len - 1);
            } else {
                pages.push(r.page_below(prev));
            }
            pages
        }
    };
    Plan {
        kind,
        cut,
        len,
        pages,
    }
}

/// The lengths `L(c)` (in pages) of commits 0, 1, …, as far as asked for.
struct Model {
    lens: Vec<u64>,
}

impl Model {
    fn new() -> Self {
        Self {
            lens: vec![INITIAL_PAGES],
        }
    }

    /// `L(c)`, in pages.
    fn len(&mut self, c: u64) -> Result<u64, String> {
        if c > MAX_COMMIT {
            return Err(format!("counter {c} is no commit of this run"));
        }
        while self.lens.len() as u64 <= c {
            let next = self.lens.len() as u64;
            let prev = *self.lens.last().expect("L(0)");
            self.lens.push(plan(next, prev).len);
        }
        Ok(self.lens[c as usize])
    }

    /// Transaction `c` (`c` ≥ 1).
    fn plan(&mut self, c: u64) -> Result<Plan, String> {
        let prev = self.len(c - 1)?;
        Ok(plan(c, prev))
    }

    /// What each of the first `n` pages must hold at commit `c`: what the
    /// commit that last wrote it wrote, or zeros since a commit cut it off
    /// or grew over it, or since the start.
    fn pages_at(&mut self, c: u64, n: u64) -> Result<Vec<Want>, String> {
        let mut want = vec![Want::Unknown; n as usize];
        let mut left = n.saturating_sub(2);
        let mut s = c;
        while left > 0 && s > 0 {
            let prev = self.len(s - 1)?;
            let p = plan(s, prev);
            for &page in &p.pages {
                if page < n && want[page as usize] == Want::Unknown {
                    want[page as usize] = Want::Written(s);
                    left -= 1;
                }
            }
            // Pages from here on that `s` did not write read as zeros after
            // it: cut off by its shrink, or past the length before it.
            let zero_from = p.cut.unwrap_or(prev).min(prev).max(2);
            for (page, w) in want.iter_mut().enumerate().skip(zero_from as usize) {
                if *w == Want::Unknown {
                    *w = if (page as u64) < prev {
                        Want::Cut(s)
                    } else {
                        Want::GrownOver(s)
                    };
                    left -= 1;
                }
            }
            s -= 1;
        }
        for w in want.iter_mut().skip(2) {
            if *w == Want::Unknown {
                *w = Want::Never;
            }
        }
        Ok(want)
    }
}

/// What a page must hold (see [`Model::pages_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    Unknown,
    /// What this commit wrote there.
    Written(u64),
    /// Zeros: this commit cut the page off.
    Cut(u64),
    /// Zeros: the page lay past the length before this commit.
    GrownOver(u64),
    /// Zeros: no commit wrote it.
    Never,
}

fn fill(c: u64, page: u64) -> u8 {
    (c.wrapping_mul(31).wrapping_add(page.wrapping_mul(7)) % 251) as u8
}

fn page_bytes(c: u64, page: u64) -> Vec<u8> {
    let mut p = vec![fill(c, page); PAGE as usize];
    p[..8].copy_from_slice(&c.to_le_bytes());
    p[8..16].copy_from_slice(&page.to_le_bytes());
    p
}

/// Checks one read of the state from its start: `s`, which the read said
/// is commit `seq`; `whole`: a snapshot (exactly as long as the state),
/// else a read of a length read before it (at most as long). Returns the
/// counter; `Err` says what is wrong.
fn check(model: &mut Model, s: &[u8], seq: u64, whole: bool) -> Result<u64, String> {
    let len = s.len() as u64;
    if len < 2 * PAGE || len % PAGE != 0 {
        return Err(format!("{len} bytes: not a length any commit has"));
    }
    let word = |o: usize| u64::from_le_bytes(s[o..o + 8].try_into().expect("8 bytes"));
    let c = word(0);
    if word(4092) != c {
        return Err(format!(
            "counter {c} but {} across the page boundary",
            word(4092)
        ));
    }
    if seq != c {
        return Err(format!("the read says commit {seq} but holds counter {c}"));
    }
    let want_len = model.len(c)? * PAGE;
    if whole && len != want_len {
        return Err(format!(
            "commit {c} is {want_len} bytes long, the snapshot {len}"
        ));
    }
    if len > want_len {
        return Err(format!(
            "commit {c} is {want_len} bytes long, but {len} bytes were read"
        ));
    }
    if s[4100..8192].iter().any(|&b| b != 0) {
        return Err("page 1 holds stray bytes".into());
    }
    let n = len / PAGE;
    let zeros = [0u8; PAGE as usize];
    let mut same = [0u8; PAGE as usize];
    let mut carried = vec![0u64; n as usize];
    for page in 2..n {
        let at = (page * PAGE) as usize;
        let p = &s[at..at + PAGE as usize];
        if *p == zeros {
            continue;
        }
        let pc = word(at);
        if pc > c {
            return Err(format!(
                "page {page} carries commit {pc}, newer than the counter {c}"
            ));
        }
        same.fill(fill(pc, page));
        if pc == 0 || word(at + 8) != page || p[16..] != same[16..] {
            return Err(format!("page {page} (commit {pc}) is torn inside"));
        }
        carried[page as usize] = pc;
    }
    if c > 0 {
        for page in model.plan(c)?.pages {
            if page < n && carried[page as usize] != c {
                return Err(format!("commit {c} is only partly visible (page {page})"));
            }
        }
    }
    for (page, want) in model.pages_at(c, n)?.into_iter().enumerate().skip(2) {
        let pc = carried[page];
        match want {
            Want::Written(w) if pc != w => {
                return Err(if pc == 0 {
                    format!("page {page} reads as zeros, but commit {w} wrote it last")
                } else {
                    format!("page {page} carries commit {pc}, but commit {w} wrote it last")
                });
            }
            Want::Never if pc != 0 => {
                return Err(format!(
                    "page {page} carries commit {pc}, but no commit wrote it"
                ));
            }
            Want::Cut(z) | Want::GrownOver(z) if pc != 0 => {
                let how = if matches!(want, Want::Cut(_)) {
                    "cut it off"
                } else {
                    "grew the state over it"
                };
                return Err(format!(
                    "page {page} carries commit {pc}, but must read as zeros: \
                     commit {z} {how}, none wrote it since"
                ));
            }
            _ => {}
        }
    }
    Ok(c)
}

/// The child: recover, then commit forever, reporting each returned
/// commit. `nth` = `AT_EMPTY_CHECKPOINT`: die at `step` in the first
/// checkpoint of an empty log.
pub(crate) fn child(path: &Path, step: u32, nth: u64) -> mapstate::Result<()> {
    #[cfg(feature = "testing")]
    if nth != AT_EMPTY_CHECKPOINT
        && let Some(s) = mapstate::testing::Step::from_number(step)
    {
        mapstate::testing::crash_at(s, nth);
    }
    #[cfg(not(feature = "testing"))]
    let _ = (step, nth);
    let mut w = options().open(path)?;
    let mut c = u64::from_le_bytes(w.begin().as_slice()[..8].try_into().expect("8 bytes"));
    let mut model = Model::new();
    let mut out = std::io::stdout().lock();
    loop {
        c += 1;
        let p = model.plan(c).map_err(|what| mapstate::Error::Corrupt {
            path: path.into(),
            what,
        })?;
        let mut t = w.begin();
        if let Some(cut) = p.cut {
            t.set_len(cut * PAGE)?;
        }
        if matches!(p.kind, Kind::Grow | Kind::Punch) {
            t.set_len(p.len * PAGE)?;
        }
        t.write_at(0, &c.to_le_bytes())?;
        t.write_at(4092, &c.to_le_bytes())?;
        let store = |s: &mut [u8]| {
            for &page in &p.pages {
                s[(page * PAGE) as usize..((page + 1) * PAGE) as usize]
                    .copy_from_slice(&page_bytes(c, page));
            }
        };
        match p.kind {
            Kind::Free => store(t.as_mut_slice()),
            Kind::Extend => store(t.extend_on_write()),
            _ => {
                for &page in &p.pages {
                    t.write_at(page * PAGE, &page_bytes(c, page))?;
                }
            }
        }
        t.commit()?;
        if w.len() != p.len * PAGE {
            say(&format!(
                "torture child: commit {c} ({}) left the length at {} bytes, not {}",
                p.kind.name(),
                w.len(),
                p.len * PAGE
            ));
            std::process::exit(1);
        }
        if writeln!(out, "committed {c}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(());
        }
        if c % CHECKPOINT_EVERY == 0 {
            w.checkpoint()?;
            if (c / CHECKPOINT_EVERY) % 2 == 1 {
                if writeln!(out, "checkpoint empty")
                    .and_then(|()| out.flush())
                    .is_err()
                {
                    return Ok(());
                }
                #[cfg(feature = "testing")]
                if nth == AT_EMPTY_CHECKPOINT
                    && let Some(s) = mapstate::testing::Step::from_number(step)
                {
                    mapstate::testing::crash_at(s, 1);
                }
                w.checkpoint()?;
            }
        }
    }
}

/// What the reader process counts.
#[derive(Default)]
struct ReaderTally {
    snapshots: u64,
    read_ats: u64,
    /// Reads that began with no writer alive.
    alone: u64,
    /// Torn reads, failed reads and reads over the bound.
    violations: u64,
    slowest: Duration,
}

impl ReaderTally {
    /// Counts a violation, saying what it was (the first 20 of them).
    fn violation(&mut self, what: &str) {
        self.violations += 1;
        if self.violations <= 20 {
            say(&format!("reader: {what}"));
        }
    }
}

/// The reader: check reads until stdin closes; print the tallies.
pub(crate) fn reader(path: &Path) -> mapstate::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lines().count();
        s2.store(true, Ordering::Relaxed);
    });
    let r = Reader::open(path)?;
    let mut model = Model::new();
    let mut t = ReaderTally::default();
    let mut buf = vec![0u8; (MAX_PAGES * PAGE) as usize];
    let mut snap = Vec::new();
    let mut whole = false;
    while !stop.load(Ordering::Relaxed) {
        whole = !whole;
        let alone = !r.has_writer()?;
        let started = Instant::now();
        let mut n = 0;
        let (what, read) = if whole {
            let read = r.snapshot().map(|(seq, v)| {
                snap = v;
                seq
            });
            ("snapshot", read)
        } else {
            n = (r.len() as usize).min(buf.len());
            ("read_at", r.read_at(0, &mut buf[..n]))
        };
        let took = started.elapsed();
        t.slowest = t.slowest.max(took);
        let alone_note = if alone {
            " (no writer alive at its start)"
        } else {
            ""
        };
        if took > READ_BOUND {
            t.violation(&format!(
                "a {what} took {:.2} s, over the bound of {} s{alone_note}",
                took.as_secs_f64(),
                READ_BOUND.as_secs()
            ));
        }
        let seq = match read {
            Ok(seq) => seq,
            // Shrunk since its length was read: not a read.
            Err(mapstate::Error::OutOfBounds { .. }) if !whole => continue,
            Err(e) => {
                t.violation(&format!("a {what} failed{alone_note}: {e}"));
                continue;
            }
        };
        let bytes = if whole { &snap[..] } else { &buf[..n] };
        if let Err(e) = check(&mut model, bytes, seq, whole) {
            t.violation(&format!("torn {what}{alone_note}: {e}"));
        }
        t.alone += u64::from(alone);
        if whole {
            t.snapshots += 1;
        } else {
            t.read_ats += 1;
        }
    }
    println!(
        "reads {} torn {} snapshots {} read_at {} alone {} slowest_ms {}",
        t.snapshots + t.read_ats,
        t.violations,
        t.snapshots,
        t.read_ats,
        t.alone,
        t.slowest.as_millis()
    );
    Ok(())
}

/// Starts this program again with `args`. Through `/proc/self/exe`, so
/// that a rebuild replacing the binary meanwhile changes nothing.
fn spawn(args: &[String], stdin: bool) -> std::io::Result<Child> {
    let me = Path::new("/proc/self/exe");
    let exe = if me.exists() {
        me.to_path_buf()
    } else {
        std::env::current_exe()?
    };
    Command::new(exe)
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .spawn()
}

/// What one kill round found.
enum Outcome {
    Ok,
    Torn,
    Lost,
}

/// Where the kills landed, for the summary and the coverage checks.
#[derive(Default)]
struct Coverage {
    /// Kills at random moments.
    random: u64,
    /// Kills by the crash hook, per step.
    at_step: BTreeMap<u32, u64>,
    /// Of those, the ones in a checkpoint of an empty log.
    in_empty: BTreeMap<u32, u64>,
    /// Kills at commit steps, per kind of the transaction killed.
    kinds: BTreeMap<&'static str, u64>,
    /// Gaps with no writer longer than the read bound.
    long_gaps: u64,
}

/// A step's number and name.
fn step_name(n: u32) -> String {
    #[cfg(feature = "testing")]
    if let Some(s) = mapstate::testing::Step::from_number(n) {
        return format!("{n} {s:?}");
    }
    n.to_string()
}

/// What round `k` of `kills` kills the child at: `(step, nth)` for the
/// crash hook (`(0, 0)`: a random moment), and whether a long gap with no
/// writer follows.
fn arm(k: u64, kills: u64, rng: &mut Rng) -> (u32, u64, bool) {
    // Every other kill is at a numbered step (the hook kills the child
    // itself there); the others at a random moment.
    let steps = steps();
    let (step, nth) = if k % 2 == 0 && !steps.is_empty() {
        let turn = k / 2;
        let n = steps.len() as u64;
        let step = steps[(turn % n) as usize];
        let nth = if !is_checkpoint_step(step) {
            1 + rng.below(40)
        } else if reached_when_empty(step) && (turn / n) % 2 == 1 {
            AT_EMPTY_CHECKPOINT
        } else {
            // Checkpoints run every CHECKPOINT_EVERY commits: reach one soon.
            1 + rng.below(3)
        };
        (step, nth)
    } else {
        (0, 0)
    };
    // Long gaps, in a long run: the first kill at each step that leaves
    // readers something to get past (without the hooks, now and then).
    let long_gap = if steps.is_empty() {
        k % 100 == 25
    } else {
        long_run(kills) && matches!(step, 4 | 5 | 6 | 8) && k / 2 < steps.len() as u64
    };
    (step, nth, long_gap)
}

/// Follows a child armed at `(step, nth)` (or to be killed at a random
/// moment, `step` 0) until it dies, noting the commits it reports in
/// `last` and where it died in `cov`. Returns what went wrong, if anything.
fn follow(
    mut c: Child,
    (step, nth): (u32, u64),
    rng: &mut Rng,
    last: &mut u64,
    model: &mut Model,
    cov: &mut Coverage,
) -> std::io::Result<Option<String>> {
    let lines = BufReader::new(c.stdout.take().expect("piped"));
    let kill_after = 1 + rng.below(60);
    let (mut seen, mut killed, mut in_empty) = (0, false, false);
    let mut failure = None;
    for line in lines.lines() {
        let Ok(line) = line else { break };
        in_empty = line == "checkpoint empty";
        let Some(n) = line.strip_prefix("committed ") else {
            continue;
        };
        *last = n.parse().unwrap_or(*last);
        seen += 1;
        if step == 0 && seen == kill_after {
            // A random moment inside the next commits.
            let spin = Duration::from_nanos(rng.below(200_000));
            let t = Instant::now();
            while t.elapsed() < spin {
                std::hint::spin_loop();
            }
            let _ = c.kill();
            killed = true;
        } else if step != 0 && seen == PATIENCE {
            let _ = c.kill();
            killed = true;
            failure = Some(format!(
                "step {} (hit {nth}) not reached in {PATIENCE} commits",
                step_name(step)
            ));
        }
    }
    let status = c.wait()?;
    if !killed && status.signal() != Some(9) {
        failure = Some(format!("the child ended ({status}) before it was killed"));
    } else if step == 0 {
        cov.random += 1;
    } else if !killed {
        *cov.at_step.entry(step).or_default() += 1;
        if is_checkpoint_step(step) {
            if in_empty {
                *cov.in_empty.entry(step).or_default() += 1;
            }
        } else if let Ok(p) = model.plan(*last + 1) {
            *cov.kinds.entry(p.kind.name()).or_default() += 1;
        }
    }
    Ok(failure)
}

/// One round: start a child (armed to die at a numbered step, or killed
/// at a random moment), wait for its death, leave the state without a
/// writer for a while, recover, check the state. `last` is the last commit
/// a child reported as returned.
fn kill_round(
    path: &Path,
    (k, kills): (u64, u64),
    rng: &mut Rng,
    last: &mut u64,
    model: &mut Model,
    cov: &mut Coverage,
) -> mapstate::Result<Outcome> {
    let (step, nth, long_gap) = arm(k, kills, rng);
    let args = vec![
        "torture-child".into(),
        path.display().to_string(),
        step.to_string(),
        nth.to_string(),
    ];
    let c = spawn(&args, false).map_err(|e| io_err(path, e))?;
    let failure = follow(c, (step, nth), rng, last, model, cov).map_err(|e| io_err(path, e))?;
    // No writer: readers must get by on their own.
    std::thread::sleep(if long_gap {
        cov.long_gaps += 1;
        LONG_GAP
    } else {
        Duration::from_millis(2 + rng.below(9))
    });
    // Reopen as a writer would (recovery), then check the state.
    if let Err(e) = options().open(path) {
        say(&format!("kill {k}: reopen failed: {e}"));
        return Ok(Outcome::Torn);
    }
    let (seq, s) = Reader::open(path)?.snapshot()?;
    let outcome = match check(model, &s, seq, true) {
        Ok(got) if got < *last => {
            say(&format!(
                "kill {k}: commit {last} returned but the state is at {got}"
            ));
            Outcome::Lost
        }
        Ok(got) => {
            *last = got;
            Outcome::Ok
        }
        Err(e) => {
            say(&format!("kill {k}: torn after reopen: {e}"));
            Outcome::Torn
        }
    };
    Ok(match failure {
        Some(f) => {
            say(&format!("kill {k}: {f}"));
            match outcome {
                Outcome::Ok => Outcome::Torn,
                o => o,
            }
        }
        None => outcome,
    })
}

/// Writes `line` to stderr in one piece (the reader and the children
/// write there too).
fn say(line: &str) {
    let _ = std::io::stderr().write_all(format!("{line}\n").as_bytes());
}

/// The value after `key` in the reader's tally line.
fn tally(out: &str, key: &str) -> Option<u64> {
    out.split_whitespace()
        .skip_while(|w| *w != key)
        .nth(1)
        .and_then(|v| v.parse().ok())
}

/// Whether a run of `kills` is long enough to arm every step twice (once
/// in an empty-log checkpoint, for steps 13, 14 and 15): it then leaves
/// long gaps, and must have killed at every step.
fn long_run(kills: u64) -> bool {
    kills >= 4 * steps().len() as u64
}

/// After the run: in a long run, every step must have been killed at, and
/// steps 13, 14 and 15 in an empty-log checkpoint too. Returns the
/// violations.
fn coverage_failures(kills: u64, cov: &Coverage) -> u64 {
    let steps = steps();
    if steps.is_empty() || !long_run(kills) {
        return 0;
    }
    let mut failures = 0;
    for &s in &steps {
        if cov.at_step.get(&s).copied().unwrap_or(0) == 0 {
            eprintln!("no kill at step {}", step_name(s));
            failures += 1;
        }
        if reached_when_empty(s) && cov.in_empty.get(&s).copied().unwrap_or(0) == 0 {
            eprintln!(
                "no kill at step {} in a checkpoint of an empty log",
                step_name(s)
            );
            failures += 1;
        }
    }
    failures
}

/// Where the kills landed, on stderr.
fn report(cov: &Coverage, reader: &str) {
    let n = |key| tally(reader, key).unwrap_or(0);
    eprintln!(
        "reader: {} reads ({} snapshots, {} read_at), {} with no writer alive, \
         slowest {} ms, {} violations",
        n("reads"),
        n("snapshots"),
        n("read_at"),
        n("alone"),
        n("slowest_ms"),
        n("torn")
    );
    let mut at: Vec<String> = Vec::new();
    for (&s, &k) in &cov.at_step {
        let empty = cov
            .in_empty
            .get(&s)
            .map(|m| format!(" ({m} in an empty-log checkpoint)"));
        at.push(format!(
            "{} ×{k}{}",
            step_name(s),
            empty.unwrap_or_default()
        ));
    }
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", k.name(), cov.kinds.get(k.name()).unwrap_or(&0)))
        .collect();
    eprintln!(
        "kills: {} at random moments; at steps: {}",
        cov.random,
        if at.is_empty() {
            "none (no crash hooks in this build)".into()
        } else {
            at.join(", ")
        }
    );
    if !cov.kinds.is_empty() {
        eprintln!(
            "kills at commit steps, by transaction: {}",
            kinds.join(", ")
        );
    }
    eprintln!(
        "long gaps with no writer ({:.1} s each): {}",
        LONG_GAP.as_secs_f64(),
        cov.long_gaps
    );
}

/// The parent: `kills` rounds, calling `tick(k)` after the `k`th kill;
/// returns `(torn, lost)`. The reader's tally and where the kills landed
/// go to stderr when `report_reader`.
pub(crate) fn run_observed(
    kills: u64,
    dir: Option<PathBuf>,
    seed: u64,
    tick: &mut dyn FnMut(u64),
    report_reader: bool,
) -> mapstate::Result<(u64, u64)> {
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("mapstate-torture-{}", std::process::id()));
            std::fs::create_dir_all(&tmp).map_err(|e| mapstate::Error::Io {
                op: "mkdir",
                path: tmp.clone(),
                source: e,
            })?;
            tmp
        }
    };
    let path = dir.join("torture.state");
    if let Ok(w) = options().create(false).open(&path) {
        w.remove()?;
    }
    drop(options().open(&path)?);
    let mut rd = spawn(&["torture-reader".into(), path.display().to_string()], true)
        .map_err(|e| io_err(&path, e))?;
    let mut rng = Rng::new(seed);
    let mut model = Model::new();
    let mut cov = Coverage::default();
    let (mut torn, mut lost, mut last) = (0u64, 0u64, 0u64);
    for k in 0..kills {
        match kill_round(&path, (k, kills), &mut rng, &mut last, &mut model, &mut cov)? {
            Outcome::Ok => {}
            Outcome::Torn => torn += 1,
            Outcome::Lost => lost += 1,
        }
        tick(k + 1);
    }
    drop(rd.stdin.take());
    let mut out = String::new();
    std::io::Read::read_to_string(rd.stdout.as_mut().expect("piped"), &mut out)
        .map_err(|e| io_err(&path, e))?;
    let _ = rd.wait();
    match tally(&out, "torn") {
        Some(t) => torn += t,
        None => {
            torn += 1;
            eprintln!("the reader did not report (its output: {out:?})");
        }
    }
    if cov.long_gaps > 0 && tally(&out, "alone") == Some(0) {
        torn += 1;
        eprintln!("the reader never read while no writer was alive");
    }
    torn += coverage_failures(kills, &cov);
    if report_reader {
        report(&cov, &out);
    }
    options().open(&path)?.remove()?;
    Ok((torn, lost))
}

fn io_err(path: &Path, e: std::io::Error) -> mapstate::Error {
    mapstate::Error::Io {
        op: "spawn",
        path: path.into(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies commit `c` to `s` as the library must.
    fn apply(model: &mut Model, s: &mut Vec<u8>, c: u64) {
        let p = model.plan(c).unwrap();
        if let Some(cut) = p.cut {
            s.truncate((cut * PAGE) as usize);
        }
        s.resize((p.len * PAGE) as usize, 0);
        s[..8].copy_from_slice(&c.to_le_bytes());
        s[4092..4100].copy_from_slice(&c.to_le_bytes());
        for page in p.pages {
            s[(page * PAGE) as usize..((page + 1) * PAGE) as usize]
                .copy_from_slice(&page_bytes(c, page));
        }
    }

    #[test]
    fn the_plans_cover_every_kind_within_the_bounds() {
        let mut model = Model::new();
        let mut seen = BTreeMap::new();
        let (mut shrinks, mut growths) = (0, 0);
        for c in 1..=2000 {
            let p = model.plan(c).unwrap();
            let (prev, len) = (model.len(c - 1).unwrap(), model.len(c).unwrap());
            assert_eq!(len, p.len);
            assert!((MIN_PAGES..=MAX_PAGES).contains(&len), "{c}: {len}");
            assert!(p.pages.iter().all(|&q| (2..len).contains(&q)), "{c}: {p:?}");
            if p.kind == Kind::Extend {
                // The length is the end of the last page written.
                assert_eq!(len, prev.max(p.pages.iter().max().unwrap() + 1), "{c}");
            }
            shrinks += u64::from(len < prev);
            growths += u64::from(len > prev);
            *seen.entry(p.kind.name()).or_insert(0) += 1;
        }
        assert_eq!(seen.len(), Kind::ALL.len(), "{seen:?}");
        assert!(shrinks > 100 && growths > 200, "{shrinks} {growths}");
    }

    #[test]
    fn the_checker_accepts_the_states_the_model_makes() {
        let mut model = Model::new();
        let mut s = vec![0u8; (INITIAL_PAGES * PAGE) as usize];
        assert_eq!(check(&mut Model::new(), &s, 0, true), Ok(0));
        for c in 1..=300 {
            apply(&mut model, &mut s, c);
            if c % 7 == 0 {
                // A fresh model each time, as a reader would start with.
                assert_eq!(check(&mut Model::new(), &s, c, true), Ok(c));
                assert_eq!(check(&mut model, &s[..2 * PAGE as usize], c, false), Ok(c));
            }
        }
    }

    #[test]
    fn the_checker_catches_torn_states() {
        let mut model = Model::new();
        let mut s = vec![0u8; (INITIAL_PAGES * PAGE) as usize];
        // Up to a commit after which some page must read as zeros although
        // an earlier commit wrote it (a shrink or a punch cut it off, a
        // growth brought it back).
        let (mut c, mut stale) = (0, None);
        while stale.is_none() || c < 50 {
            c += 1;
            apply(&mut model, &mut s, c);
            let n = s.len() as u64 / PAGE;
            stale =
                model
                    .pages_at(c, n)
                    .unwrap()
                    .iter()
                    .enumerate()
                    .find_map(|(page, w)| match *w {
                        Want::Cut(z) | Want::GrownOver(z) => (1..z)
                            .rev()
                            .find(|&e| model.plan(e).unwrap().pages.contains(&(page as u64)))
                            .map(|e| (page as u64, e)),
                        _ => None,
                    });
        }
        let (stale_page, stale_commit) = stale.unwrap();
        assert_eq!(check(&mut model, &s, c, true), Ok(c));
        let last = model.plan(c).unwrap().pages;
        let page = |t: &mut Vec<u8>, p: u64, bytes: &[u8]| {
            t[(p * PAGE) as usize..((p + 1) * PAGE) as usize].copy_from_slice(bytes);
        };
        let mut err =
            |t: &[u8], seq: u64, whole: bool| check(&mut model, t, seq, whole).unwrap_err();

        let mut t = s.clone();
        t[4092] ^= 1;
        assert!(err(&t, c, true).contains("across the page boundary"));
        assert!(err(&s, c + 1, true).contains("the read says commit"));
        let mut t = s.clone();
        t.truncate(t.len() - PAGE as usize);
        assert!(err(&t, c, true).contains("bytes long, the snapshot"));
        let mut t = s.clone();
        t.resize(t.len() + PAGE as usize, 0);
        assert!(err(&t, c, false).contains("bytes were read"));
        let mut t = s.clone();
        t[(3 * PAGE + 100) as usize] ^= 0xff;
        assert!(err(&t, c, true).contains("torn inside"));
        let mut t = s.clone();
        page(&mut t, 2, &page_bytes(c + 1, 2));
        assert!(err(&t, c, true).contains("newer than the counter"));
        let mut t = s.clone();
        page(&mut t, stale_page, &page_bytes(stale_commit, stale_page));
        assert!(
            err(&t, c, true).contains("must read as zeros"),
            "{stale_page}"
        );
        if let Some(&p) = last.first() {
            let mut t = s.clone();
            page(&mut t, p, &[0; PAGE as usize]);
            assert!(err(&t, c, true).contains("only partly visible"));
        }
        let written = (2..s.len() as u64 / PAGE)
            .find(|&p| s[(p * PAGE) as usize] != 0 && !last.contains(&p))
            .unwrap();
        let mut t = s.clone();
        page(&mut t, written, &[0; PAGE as usize]);
        assert!(err(&t, c, true).contains("reads as zeros, but commit"));
    }
}
