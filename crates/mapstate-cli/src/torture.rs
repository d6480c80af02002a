//! `mapstate torture`: kill a committing writer with SIGKILL, again and
//! again, at random moments and at every numbered step of the commit and
//! checkpoint paths, while a reader process checks every snapshot it takes.
//!
//! The state is 8 MiB: page 0 holds the counter `c` of the last committed
//! transaction (also stored across the page 0/1 boundary at offset 4092);
//! every other page starts with the counter of the last transaction that
//! wrote it, its own page number, and is filled with a byte derived from
//! both. Transaction `c` writes a set of pages that is a pure function of
//! `c` (tiny, multi-page, 1 to 4 MiB contiguous, or free stores through the
//! raw view). A snapshot is consistent iff every page is internally
//! consistent, no page is newer than `c`, and every page of transaction `c`
//! carries `c`. A commit is lost if the reopened counter is below the last
//! one the child reported as returned.
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

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mapstate::{Reader, Writer, WriterOptions};

const PAGE: u64 = 4096;
const PAGES: u64 = 2048;
/// The child checkpoints after every this many commits.
const CHECKPOINT_EVERY: u64 = 31;

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

fn options() -> WriterOptions {
    Writer::options()
        .create(true)
        .len(PAGES * PAGE)
        .max_size(PAGES * PAGE)
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
}

/// How transaction `c` changes the state.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Tiny,
    Multi,
    Large,
    Free,
}

/// The kind of transaction `c` and the data pages it writes.
fn plan(c: u64) -> (Kind, Vec<u64>) {
    let mut r = Rng::new(c);
    match r.below(10) {
        0..=2 => (Kind::Tiny, vec![]),
        3..=6 => (
            Kind::Multi,
            (0..1 + r.below(16))
                .map(|_| 2 + r.below(PAGES - 2))
                .collect(),
        ),
        7 => {
            let n = 256 + r.below(769);
            let start = 2 + r.below(PAGES - 2 - n);
            (Kind::Large, (start..start + n).collect())
        }
        _ => (
            Kind::Free,
            (0..1 + r.below(8))
                .map(|_| 2 + r.below(PAGES - 2))
                .collect(),
        ),
    }
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

/// Checks one snapshot of the whole state; `Err` says what is torn.
fn check(s: &[u8]) -> Result<u64, String> {
    let word = |o: usize| u64::from_le_bytes(s[o..o + 8].try_into().expect("8 bytes"));
    let c = word(0);
    if word(4092) != c {
        return Err(format!(
            "counter {c} but {} across the page boundary",
            word(4092)
        ));
    }
    if s[4100..8192].iter().any(|&b| b != 0) {
        return Err("page 1 holds stray bytes".into());
    }
    for page in 2..PAGES {
        let at = (page * PAGE) as usize;
        let p = &s[at..at + PAGE as usize];
        let pc = word(at);
        if pc == 0 && p.iter().all(|&b| b == 0) {
            continue;
        }
        if pc > c {
            return Err(format!(
                "page {page} carries commit {pc}, newer than the counter {c}"
            ));
        }
        if word(at + 8) != page || p[16..].iter().any(|&b| b != fill(pc, page)) {
            return Err(format!("page {page} (commit {pc}) is torn inside"));
        }
    }
    let (_, pages) = plan(c);
    if c > 0 {
        for page in pages {
            if word((page * PAGE) as usize) != c {
                return Err(format!("commit {c} is only partly visible (page {page})"));
            }
        }
    }
    Ok(c)
}

/// The child: recover, then commit forever, reporting each returned commit.
pub(crate) fn child(path: &Path, step: u32, nth: u64) -> mapstate::Result<()> {
    #[cfg(feature = "testing")]
    if let Some(s) = mapstate::testing::Step::from_number(step) {
        mapstate::testing::crash_at(s, nth);
    }
    #[cfg(not(feature = "testing"))]
    let _ = (step, nth);
    let mut w = options().open(path)?;
    let mut c = u64::from_le_bytes(w.begin().as_slice()[..8].try_into().expect("8 bytes"));
    let mut out = std::io::stdout().lock();
    loop {
        c += 1;
        let (kind, pages) = plan(c);
        let mut t = w.begin();
        t.write_at(0, &c.to_le_bytes())?;
        t.write_at(4092, &c.to_le_bytes())?;
        if kind == Kind::Free {
            let s = t.as_mut_slice();
            for &p in &pages {
                s[(p * PAGE) as usize..((p + 1) * PAGE) as usize]
                    .copy_from_slice(&page_bytes(c, p));
            }
        } else {
            for &p in &pages {
                t.write_at(p * PAGE, &page_bytes(c, p))?;
            }
        }
        t.commit()?;
        if writeln!(out, "committed {c}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(());
        }
        if c % CHECKPOINT_EVERY == 0 {
            w.checkpoint()?;
        }
    }
}

/// The reader: check snapshots until stdin closes; print the tallies.
pub(crate) fn reader(path: &Path) -> mapstate::Result<()> {
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    std::thread::spawn(move || {
        let _ = std::io::stdin().lines().count();
        s2.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let r = Reader::open(path)?;
    let (mut reads, mut torn) = (0u64, 0u64);
    let mut buf = vec![0u8; (PAGES * PAGE) as usize];
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        r.read_at(0, &mut buf)?;
        reads += 1;
        if let Err(e) = check(&buf) {
            torn += 1;
            eprintln!("reader: torn snapshot: {e}");
        }
    }
    println!("reads {reads} torn {torn}");
    Ok(())
}

fn spawn(args: &[String], stdin: bool) -> std::io::Result<Child> {
    Command::new(std::env::current_exe()?)
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

/// One round: start a child (armed to die at a numbered step, or killed
/// at a random moment), wait for its death, recover, check the state.
/// `last` is the last commit a child reported as returned.
fn kill_round(path: &Path, k: u64, rng: &mut Rng, last: &mut u64) -> mapstate::Result<Outcome> {
    // Every other kill is at a numbered step (the hook kills the child
    // itself there); the others at a random moment.
    let steps = steps();
    let (step, nth) = if k % 2 == 0 && !steps.is_empty() {
        let step = steps[(k / 2) as usize % steps.len()];
        // Checkpoints run every CHECKPOINT_EVERY commits: reach one soon.
        let nth = if step >= 12 {
            1 + rng.below(3)
        } else {
            1 + rng.below(40)
        };
        (step, nth)
    } else {
        (0, 0)
    };
    let args = vec![
        "torture-child".into(),
        path.display().to_string(),
        step.to_string(),
        nth.to_string(),
    ];
    let mut c = spawn(&args, false).map_err(|e| io_err(path, e))?;
    let lines = BufReader::new(c.stdout.take().expect("piped"));
    let kill_after = 1 + rng.below(60);
    let mut seen = 0;
    for line in lines.lines() {
        let Ok(line) = line else { break };
        if let Some(n) = line.strip_prefix("committed ") {
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
            }
        }
    }
    let _ = c.wait();
    // Reopen as a writer would (recovery), then check the state.
    if let Err(e) = options().open(path) {
        eprintln!("kill {k}: reopen failed: {e}");
        return Ok(Outcome::Torn);
    }
    let (_, s) = Reader::open(path)?.snapshot()?;
    Ok(match check(&s) {
        Ok(got) if got < *last => {
            eprintln!("kill {k}: commit {last} returned but the state is at {got}");
            Outcome::Lost
        }
        Ok(got) => {
            *last = got;
            Outcome::Ok
        }
        Err(e) => {
            eprintln!("kill {k}: torn after reopen: {e}");
            Outcome::Torn
        }
    })
}

/// The parent: `kills` rounds, calling `tick(k)` after the `k`th kill;
/// returns `(torn, lost)`. The reader's tally goes to stderr when
/// `report_reader`.
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
    let (mut torn, mut lost, mut last) = (0u64, 0u64, 0u64);
    for k in 0..kills {
        match kill_round(&path, k, &mut rng, &mut last)? {
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
    let reader_torn = out
        .split_whitespace()
        .skip_while(|w| *w != "torn")
        .nth(1)
        .and_then(|v| v.parse::<u64>().ok());
    match reader_torn {
        Some(t) => torn += t,
        None => {
            torn += 1;
            eprintln!("the reader did not report (its output: {out:?})");
        }
    }
    if report_reader {
        eprintln!("reader: {}", out.trim());
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

    #[test]
    fn the_checker_catches_torn_states() {
        let mut s = vec![0u8; (PAGES * PAGE) as usize];
        assert_eq!(check(&s), Ok(0));
        // Commit 5 fully applied.
        for c in 1..=5 {
            s[..8].copy_from_slice(&u64::to_le_bytes(c));
            s[4092..4100].copy_from_slice(&u64::to_le_bytes(c));
            for p in plan(c).1 {
                s[(p * PAGE) as usize..((p + 1) * PAGE) as usize]
                    .copy_from_slice(&page_bytes(c, p));
            }
        }
        assert_eq!(check(&s), Ok(5));
        let mut t = s.clone();
        t[4092] ^= 1;
        assert!(check(&t).is_err(), "counter halves disagree");
        let (_, pages) = plan(6);
        if let Some(&p) = pages.first() {
            let mut t = s.clone();
            t[(p * PAGE) as usize..((p + 1) * PAGE) as usize].copy_from_slice(&page_bytes(6, p));
            assert!(check(&t).is_err(), "a page newer than the counter");
        }
        let mut t = s.clone();
        t[(3 * PAGE + 100) as usize] ^= 0xff;
        assert!(check(&t).is_err(), "a page torn inside");
    }
}
