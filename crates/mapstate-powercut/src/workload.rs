//! `workload MODE [INTERVAL_MS] [--shrink | --append] [--control]`: runs in the guest, with its cwd
//! on the ext4 disk, until the power goes. Opens (recovering) `state.db`,
//! then commits transactions of the model (`model.rs`) forever, printing
//! what it may promise after each one (see `bounds.rs` for the lines).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use mapstate::{Durability, SharedWriter, Txn, Writer, WriterOptions};

use crate::Flags;
use crate::bounds::Mode;
use crate::model::{self, INITIAL_PAGES, Kind, MAX_SIZE, PAGE};

/// The state's file name, in the cwd.
pub(crate) const STATE: &str = "state.db";
/// `PageCache`: checkpoint after every this many commits.
pub(crate) const CHECKPOINT_EVERY: u64 = 64;
/// Every mode: checkpoint when the log holds this much. Under software
/// emulation recovery replays about 8 MiB of log per second and a
/// checkpoint of 8 MiB of log took 1 to 2 s; with mapstate's own limit (a
/// full 64 MiB log) recovery took 7 s, longer than the harness's cut window
/// (0.3 to 4 s), and cycles stopped making progress. 4 MiB keeps recovery
/// plus the first checkpoint well inside the window, and leaves about 160
/// commits between two checkpoints (periodic mode depends on the syncer
/// alone between them).
pub(crate) const CHECKPOINT_LOG_BYTES: u64 = 4 << 20;

/// The options the workload opens the state with; the checker opens it
/// with the same ones (plus its own live directory), as the next boot would.
pub(crate) fn options(mode: Mode) -> WriterOptions {
    let d = match mode {
        Mode::Sync => Durability::Sync,
        Mode::Periodic { interval_ms } => Durability::Periodic(Duration::from_millis(interval_ms)),
        Mode::PageCache => Durability::PageCache,
    };
    Writer::options()
        .create(true)
        .len(INITIAL_PAGES * PAGE)
        .max_size(MAX_SIZE)
        .durability(d)
}

/// Makes sure `/dev/shm` is a tmpfs, where mapstate keeps the live image
/// (a real machine always has one; the guest's bare initramfs does not).
/// Without it mapstate falls back to a live image beside the durable file,
/// and since every cycle restores the same VM snapshot, that image would
/// carry the same boot id in every cycle.
fn ensure_shm() -> Result<(), String> {
    let shm = Path::new("/dev/shm");
    let mounted = std::fs::read_to_string("/proc/self/mounts")
        .map_err(|e| format!("read /proc/self/mounts: {e}"))?
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, at, kind) = (f.next()?, f.next()?, f.next()?);
            (at == "/dev/shm").then(|| kind.to_string())
        })
        .next_back();
    match mounted.as_deref() {
        Some("tmpfs") => return Ok(()),
        Some(other) => return Err(format!("/dev/shm is {other}, not tmpfs")),
        None => {}
    }
    std::fs::create_dir_all(shm).map_err(|e| format!("mkdir /dev/shm: {e}"))?;
    rustix::mount::mount(
        "tmpfs",
        shm,
        "tmpfs",
        rustix::mount::MountFlags::empty(),
        None,
    )
    .map_err(|e| format!("mount tmpfs on /dev/shm: {e}"))
}

/// Writes one line to stdout and flushes it; `false` if stdout is gone.
fn say(out: &mut impl Write, line: std::fmt::Arguments<'_>) -> bool {
    writeln!(out, "{line}").and_then(|()| out.flush()).is_ok()
}

/// Runs transaction `c`: the length, the counter (at 0 and across the page
/// 0/1 boundary) and the pages of the plan.
pub(crate) fn transaction(w: &mut Writer, c: u64, shrink: bool) -> mapstate::Result<u64> {
    let mut t = w.begin();
    fill(&mut t, c, shrink)?;
    t.commit()
}

/// Runs transaction `c` of the append workload (`model::append`): even
/// ones store the pages into `Txn::extend_on_write_from` (free stores past
/// the end), odd ones and cuts back use `set_len` and `write_at`.
pub(crate) fn append(w: &mut Writer, c: u64) -> mapstate::Result<u64> {
    let mut t = w.begin();
    let end = model::append::len_pages(c) * PAGE;
    let from = end - model::append::APPEND_PAGES * PAGE;
    let pages = from / PAGE..end / PAGE;
    if c % 2 == 0 && !model::append::cuts_back(c) {
        let s = t.extend_on_write_from(from)?;
        for (i, p) in pages.enumerate() {
            s[i * PAGE as usize..][..PAGE as usize].copy_from_slice(&model::page_bytes(c, p));
        }
    } else {
        if model::append::cuts_back(c) {
            t.set_len(model::INITIAL_PAGES * PAGE)?;
        }
        t.set_len(end)?;
        for p in pages {
            t.write_at(p * PAGE, &model::page_bytes(c, p))?;
        }
    }
    t.commit()
}

/// The changes of transaction `c` (see [`transaction`]), not committed.
fn fill(t: &mut Txn<'_>, c: u64, shrink: bool) -> mapstate::Result<()> {
    let (kind, pages) = model::plan(c, shrink);
    let len = model::len_pages(c, shrink) * PAGE;
    if t.len() != len {
        t.set_len(len)?;
    }
    t.write_at(0, &c.to_le_bytes())?;
    t.write_at(4092, &c.to_le_bytes())?;
    if kind == Kind::Free {
        let s = t.as_mut_slice();
        for &p in &pages {
            s[(p * PAGE) as usize..((p + 1) * PAGE) as usize]
                .copy_from_slice(&model::page_bytes(c, p));
        }
    } else {
        for &p in &pages {
            t.write_at(p * PAGE, &model::page_bytes(c, p))?;
        }
    }
    Ok(())
}

/// Checkpoints after commit `c` if `now` or the log holds
/// [`CHECKPOINT_LOG_BYTES`]; returns the `checkpointed` line to print, or
/// the `error` line.
fn checkpoint_if_due(w: &mut Writer, c: u64, now: bool) -> Result<Option<String>, String> {
    let log = w.log_bytes();
    if !now && log < CHECKPOINT_LOG_BYTES {
        return Ok(None);
    }
    let t = Instant::now();
    w.checkpoint()
        .map_err(|e| format!("error checkpoint {c}: {e}"))?;
    Ok(Some(format!(
        "checkpointed {c} log {log} in {} ms",
        t.elapsed().as_millis()
    )))
}

/// `--threads N`: N threads commit the model's transactions through one
/// `SharedWriter` (each reads the counter inside its transaction, so the
/// commits stay one sequence) and print `committed C` once theirs returned.
/// Lines may come out of order; the checker takes the largest.
fn run_shared(w: Writer, threads: usize, shrink: bool) -> ExitCode {
    let shared = match SharedWriter::new(w) {
        Ok(s) => s,
        Err(e) => {
            say(
                &mut std::io::stdout().lock(),
                format_args!("error shared: {e}"),
            );
            return ExitCode::from(1);
        }
    };
    let one = |shared: &SharedWriter| -> Result<bool, String> {
        let (_, c) = shared
            .transaction(|t| {
                let mut b = [0u8; 8];
                t.read_at(0, &mut b)?;
                let c = u64::from_le_bytes(b) + 1;
                fill(t, c, shrink)?;
                Ok(c)
            })
            .map_err(|e| format!("error commit: {e}"))?;
        if !say(&mut std::io::stdout().lock(), format_args!("committed {c}")) {
            return Ok(false);
        }
        if let Some(line) = checkpoint_if_due(&mut shared.lock(), c, false)? {
            say(&mut std::io::stdout().lock(), format_args!("{line}"));
        }
        Ok(true)
    };
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    match one(&shared) {
                        Ok(true) => {}
                        Ok(false) => return,
                        Err(e) => {
                            // At once: the other threads would go on until
                            // the power goes, and the line must be seen.
                            say(&mut std::io::stdout().lock(), format_args!("{e}"));
                            std::process::exit(1);
                        }
                    }
                }
            });
        }
    });
    ExitCode::SUCCESS
}

/// The guest side: never returns while the power is on (unless an error).
pub(crate) fn run(mode: Mode, flags: Flags) -> ExitCode {
    let shrink = flags.shrink;
    let t0 = Instant::now();
    let mut out = std::io::stdout().lock();
    if let Err(e) = ensure_shm() {
        say(&mut out, format_args!("error setup: {e}"));
        return ExitCode::from(2);
    }
    let mut opts = options(mode);
    if flags.control {
        // The negative control: promise what MODE promises, deliver
        // PageCache; with a 64 MiB log, so that checkpoints are rare. With
        // the default log, sized to this small state, checkpoints come
        // every few hundred milliseconds and sync most commits by accident
        // (a periodic control passed 10 cuts out of 10).
        opts = opts.durability(Durability::PageCache).log_size(64 << 20);
    }
    say(
        &mut out,
        format_args!(
            "start {}{}",
            mode.name(),
            if flags.control {
                " (control: PageCache durability)"
            } else {
                ""
            }
        ),
    );
    let mut w = match opts.open(STATE) {
        Ok(w) => w,
        Err(e) => {
            say(&mut out, format_args!("error open (recovery): {e}"));
            return ExitCode::from(1);
        }
    };
    let mut c = {
        let t = w.begin();
        if flags.append {
            model::append::counter(t.as_slice())
        } else {
            let mut word = [0u8; 8];
            if let Err(e) = t.read_at(0, &mut word) {
                say(&mut out, format_args!("error read counter: {e}"));
                return ExitCode::from(1);
            }
            u64::from_le_bytes(word)
        }
    };
    say(
        &mut out,
        format_args!(
            "recovered {c} seq {} len {} log {} in {} ms",
            w.seq(),
            w.len(),
            w.log_bytes(),
            t0.elapsed().as_millis()
        ),
    );
    if flags.threads > 0 {
        drop(out);
        return run_shared(w, flags.threads, shrink);
    }
    loop {
        c += 1;
        let r = if flags.append {
            append(&mut w, c)
        } else {
            transaction(&mut w, c, shrink)
        };
        if let Err(e) = r {
            say(&mut out, format_args!("error commit {c}: {e}"));
            return ExitCode::from(1);
        }
        let ok = match mode {
            Mode::Periodic { .. } => say(
                &mut out,
                format_args!("committed {c} {}", t0.elapsed().as_millis()),
            ),
            Mode::Sync | Mode::PageCache => say(&mut out, format_args!("committed {c}")),
        };
        if !ok {
            return ExitCode::SUCCESS;
        }
        let every = mode == Mode::PageCache && c % CHECKPOINT_EVERY == 0;
        match checkpoint_if_due(&mut w, c, every) {
            Ok(Some(line)) => {
                say(&mut out, format_args!("{line}"));
            }
            Ok(None) => {}
            Err(e) => {
                say(&mut out, format_args!("{e}"));
                return ExitCode::from(1);
            }
        }
    }
}
