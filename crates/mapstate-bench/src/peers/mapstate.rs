//! mapstate itself: the state is one region of 16,384 slots; a slot is
//! changed with `Txn::write_at` and read with `Reader::read_at`. w6 and
//! grow are in `mapstate_grow`, freestore and create in `mapstate_size`;
//! w6 and freestore have extra rows (`mapstate:VARIANT`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use mapstate::{Durability, Reader, SharedWriter, Writer, WriterOptions};

use crate::child::{
    COMMITS_TIMED, ChildArgs, Pace, Parent, UNTIMED, notify_parent, notify_waiter, reopen_parent,
    timed_commit_loop, timed_loop, w5_parent, w5_parent_paced, write_until_killed,
};
use crate::harness::{Ctx, DiskWrites, Result, Workload, measure, measure_threads};
use crate::peers::mapstate_size::{self, Change};
use crate::peers::{CHECKED, System};
use crate::report::{Measurement, Outcome, key};
use crate::slot::{Rng, SLOT_BYTES, STATE_SLOTS, Slot, fill_slots};

/// mapstate (this repository).
pub(crate) struct Mapstate;

const STATE: u64 = (STATE_SLOTS * SLOT_BYTES) as u64;

/// w5's second run: the writer's commits per second (the goal's condition:
/// reads while the writer commits at least 1 M/s).
const W5_PACED_RATE: u64 = 1_000_000;
const PAGE_CACHE: &str = "Durability::PageCache: every returned commit survives a process crash (SIGKILL at any instruction); an OS crash keeps a consistent state as of the last checkpoint";

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.db")
}

fn options(len: u64, durability: Durability) -> WriterOptions {
    Writer::options()
        .create(true)
        .len(len)
        .max_size(len)
        .durability(durability)
}

/// A new state of `len` bytes of slots in `dir`, returned open for writing.
fn create_state(dir: &Path, len: u64, durability: Durability) -> Result<Writer> {
    let mut w = options(len, durability).open(state_path(dir))?;
    let chunk = 16 << 20;
    let mut buf = vec![0_u8; chunk as usize];
    let mut off = 0;
    while off < len {
        let n = (len - off).min(chunk);
        fill_slots(&mut buf[..n as usize], off / SLOT_BYTES as u64);
        let mut t = w.begin();
        t.write_at(off, &buf[..n as usize])?;
        t.commit()?;
        off += n;
    }
    w.checkpoint()?;
    Ok(w)
}

/// w5: a writer process and a reader process, first with the writer as
/// fast as it goes, then held to [`W5_PACED_RATE`].
fn w5(cx: &Ctx, name: &str) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    drop(create_state(dir.path(), STATE, Durability::PageCache)?);
    // A commit takes a few hundred ns, so a clock read per commit (20 to
    // 40 ns here) would slow the writer measurably: the throughput run
    // does not time commits; a second run, the same otherwise, times every
    // one.
    let mut m = w5_parent_paced(cx, name, dir.path(), UNTIMED)?;
    let timed = w5_parent(cx, name, dir.path())?;
    for (k, v) in &timed.more {
        m.set(k, *v);
    }
    if let Some(w) = timed.writer_ops_per_sec {
        m.set(key::TIMED_WRITER_OPS_PER_SEC, w);
    }
    // The goal's condition (reads while the writer commits at least
    // 1 M/s), measured as stated: the writer held to it.
    let paced = w5_parent_paced(cx, name, dir.path(), W5_PACED_RATE)?;
    m.paced_reads_per_sec = paced.ops_per_sec;
    m.paced_writer_ops_per_sec = paced.writer_ops_per_sec;
    m.torn = Some(
        [&m, &timed, &paced]
            .iter()
            .map(|r| r.torn.unwrap_or(0))
            .sum(),
    );
    m.notes = format!(
        "writer process: {PAGE_CACHE}; reader process: Reader::read_at (sequence lock, never blocks the writer); {CHECKED}; three runs side by side: the writer flat out (ops/s, writer commits/s), flat out again with every commit timed (commit_p99_us, commit_p999_us, commit_max_us; that run's writer rate: timed_writer_ops_per_sec), and held to {W5_PACED_RATE} commits/s (torn counts all three); {COMMITS_TIMED}"
    );
    remove(&state_path(dir.path()))?;
    Ok(m)
}

/// Deletes the state at `path` (all its files, the live image on tmpfs
/// included), taking its writer lock to do so.
fn remove(path: &Path) -> Result<()> {
    Writer::open(path)?.remove()?;
    Ok(())
}

/// One transaction that overwrites `n` random slots.
fn commit_slots(w: &mut Writer, rng: &mut Rng, n: usize, slots: usize) -> Result<()> {
    let mut t = w.begin();
    for _ in 0..n {
        let k = rng.below(slots) as u64;
        t.write_at(
            k * SLOT_BYTES as u64,
            &Slot::fill(rng.next_u64()).to_bytes(),
        )?;
    }
    t.commit()?;
    Ok(())
}

/// Checkpoints under a commit loop. The commit that finds the log full
/// checkpoints (step 0 of the commit path), so a commit after which the log
/// holds fewer bytes than before it made one. Only commits in the last
/// stretch before the log fills read the clock, so that timing checkpoints
/// costs the loop nothing measurable.
struct CheckpointMeter {
    /// The log file's size.
    log_file: u64,
    /// Commits seen.
    commits: u64,
    /// The commit count at each checkpoint.
    at: Vec<u64>,
    /// Durations of the checkpointing commits that were timed.
    timed: Vec<Duration>,
}

/// Commits are timed once the log holds this much less than its size: a
/// few hundred w1 commits before each checkpoint.
const NEAR_FULL: u64 = 64 << 10;

impl CheckpointMeter {
    fn new(dir: &Path) -> Result<Self> {
        let log_file = std::fs::metadata(dir.join("state.db-wal"))?.len();
        Ok(Self {
            log_file,
            commits: 0,
            at: Vec::new(),
            timed: Vec::new(),
        })
    }

    /// Runs `commit` on `w`, noting whether it checkpointed and how long it took then.
    fn commit(
        &mut self,
        w: &mut Writer,
        commit: impl FnOnce(&mut Writer) -> Result<()>,
    ) -> Result<()> {
        let before = w.log_bytes();
        let start = (before + NEAR_FULL >= self.log_file).then(Instant::now);
        commit(w)?;
        self.commits += 1;
        if w.log_bytes() < before {
            self.at.push(self.commits);
            if let Some(t) = start {
                self.timed.push(t.elapsed());
            }
        }
        Ok(())
    }

    /// Fills in `m`'s checkpoint figures; `in_loops` checkpoints happened in
    /// the timed loops.
    fn report(&self, m: &mut Measurement, in_loops: usize) {
        let ms: Vec<f64> = self.timed.iter().map(|d| d.as_secs_f64() * 1e3).collect();
        let mut sorted = ms.clone();
        m.checkpoints = Some(in_loops as u64);
        m.checkpoints_timed = Some(ms.len() as u64);
        m.checkpoint_ms_p50 = crate::report::median(&mut sorted);
        m.checkpoint_ms_max = sorted.last().copied();
        m.checkpoint_ms_total = (!ms.is_empty()).then(|| ms.iter().sum());
        let gaps: Vec<f64> = self.at.windows(2).map(|p| (p[1] - p[0]) as f64).collect();
        m.commits_per_checkpoint = crate::report::median(&mut gaps.clone());
        m.log_bytes = Some(self.log_file);
    }
}

/// w1 (`PageCache`, one slot per commit), with its checkpoints counted and
/// timed: those in the timed loops, then more of the same commits (not
/// timed for throughput) until at least [`TIMED_CHECKPOINTS`] were timed.
fn w1(cx: &Ctx, dir: &Path, rng: &mut Rng) -> Result<Measurement> {
    let mut w = create_state(dir, STATE, Durability::PageCache)?;
    let mut meter = CheckpointMeter::new(dir)?;
    let io = DiskWrites::start()?;
    let mut m = measure(&cx.params, || {
        meter.commit(&mut w, |w| commit_slots(w, rng, 1, STATE_SLOTS))
    })?;
    let in_loops = meter.at.len();
    let deadline = Instant::now() + Duration::from_secs(30);
    while meter.timed.len() < TIMED_CHECKPOINTS && Instant::now() < deadline {
        for _ in 0..4096 {
            meter.commit(&mut w, |w| commit_slots(w, rng, 1, STATE_SLOTS))?;
        }
    }
    meter.report(&mut m, in_loops);
    w.close()?;
    io.finish(meter.commits * SLOT_BYTES as u64, &mut m)?;
    m.notes = format!("{PAGE_CACHE}; {DISK_WRITES}");
    Ok(m)
}

/// Note on the disk writes of w1 and w3.
const DISK_WRITES: &str = "disk writes: the commits (those of the checkpoint timing too), then Writer::close (a checkpoint); the live image is on tmpfs, never counted";

/// Checkpoints timed per w1 run at least.
const TIMED_CHECKPOINTS: usize = 3;

/// Reads slot `k`; whether it is whole.
fn read_slot(r: &Reader, k: u64) -> Result<bool> {
    let mut b = [0_u8; SLOT_BYTES];
    r.read_at(k * SLOT_BYTES as u64, &mut b)?;
    Ok(Slot::check_bytes(&b))
}

fn reopen(cx: &Ctx) -> Result<Measurement> {
    let p = &cx.params;
    let mut rng = Rng::from_entropy();
    let dir = cx.kept_dir("mapstate", Workload::Reopen)?;
    let done = dir.join("populated");
    if !done.exists() {
        let _ = remove(&state_path(&dir));
        drop(create_state(&dir, p.reopen_bytes, Durability::PageCache)?);
        std::fs::write(&done, b"")?;
    }
    let slots = (p.reopen_bytes / SLOT_BYTES as u64) as usize;
    let mut opened = None;
    let mut m = reopen_parent(cx, "mapstate", &dir, || {
        // The writer's recovery: finish a checkpoint if one was
        // cut, replay the log records the live image lacks.
        let mut w = options(p.reopen_bytes, Durability::PageCache).open(state_path(&dir))?;
        let k = rng.below(slots) as u64;
        let mut b = [0_u8; SLOT_BYTES];
        w.begin().read_at(k * SLOT_BYTES as u64, &mut b)?;
        opened = Some(w); // closed (with its checkpoint) after the timing
        Ok(Slot::check_bytes(&b))
    })?;
    drop(opened);
    m.notes = format!(
        "{} state; writer child ({PAGE_CACHE}) killed with SIGKILL while committing; timed: Writer::open (recovery: journal check, live image check, log replay) and one slot read",
        cx.params.size_note(|p| p.reopen_bytes)
    );
    Ok(m)
}

impl System for Mapstate {
    fn name(&self) -> &'static str {
        "mapstate"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let p = &cx.params;
        let mut rng = Rng::from_entropy();
        let m = match workload {
            Workload::W1 => {
                let dir = cx.tempdir()?;
                let m = w1(cx, dir.path(), &mut rng)?;
                remove(&state_path(dir.path()))?;
                m
            }
            Workload::W2 | Workload::W3 => {
                let durability = if workload == Workload::W2 {
                    Durability::Sync
                } else {
                    Durability::PageCache
                };
                let dir = cx.tempdir()?;
                let mut w = create_state(dir.path(), STATE, durability)?;
                let n = if workload == Workload::W3 { 1000 } else { 1 };
                let io = (workload == Workload::W3)
                    .then(DiskWrites::start)
                    .transpose()?;
                let mut m = measure(p, || commit_slots(&mut w, &mut rng, n, STATE_SLOTS))?;
                m.notes = if durability == Durability::Sync {
                    "Durability::Sync: the log is fdatasync'ed before the commit is published; survives a process crash and an OS crash".to_owned()
                } else {
                    format!("{PAGE_CACHE}; {DISK_WRITES}")
                };
                w.close()?;
                if let Some(io) = io {
                    let payload = m.calls.unwrap_or(0) * (n * SLOT_BYTES) as u64;
                    io.finish(payload, &mut m)?;
                }
                remove(&state_path(dir.path()))?;
                m
            }
            Workload::W2x8 => {
                let dir = cx.tempdir()?;
                let w = create_state(dir.path(), STATE, Durability::Sync)?;
                let shared = SharedWriter::new(w)?;
                let mut m = measure_threads(p, 8, |i| {
                    let mut rng = Rng::new(i as u64 + 1);
                    let shared = &shared;
                    Ok(move || {
                        let k = rng.below(STATE_SLOTS) as u64;
                        let slot = Slot::fill(rng.next_u64()).to_bytes();
                        shared.transaction(|t| t.write_at(k * SLOT_BYTES as u64, &slot))?;
                        Ok(())
                    })
                })?;
                let commits = shared.lock().seq();
                m.notes = format!(
                    "8 threads on one SharedWriter, Durability::Sync with group commit (concurrent commits share an fdatasync of the log: {:.1} commits per fdatasync); survives an OS crash",
                    commits as f64 / shared.syncs().max(1) as f64
                );
                drop(shared);
                remove(&state_path(dir.path()))?;
                m
            }

            Workload::W4 => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path(), STATE, Durability::PageCache)?);
                let r = Reader::open(state_path(dir.path()))?;
                let mut torn = 0_u64;
                let mut m = measure(p, || {
                    torn += u64::from(!read_slot(&r, rng.below(STATE_SLOTS) as u64)?);
                    Ok(())
                })?;
                m.torn = Some(torn);
                m.notes = format!(
                    "Reader::read_at: a copy validated by the live image's sequence lock; {CHECKED}"
                );
                drop(r);
                remove(&state_path(dir.path()))?;
                m
            }
            Workload::W5 => w5(cx, self.name())?,
            Workload::Notify => {
                let dir = cx.tempdir()?;
                let mut w = create_state(dir.path(), STATE, Durability::PageCache)?;
                let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
                    let mut t = w.begin();
                    t.write_at(0, &Slot::fill(t0).to_bytes())?;
                    t.commit()?;
                    Ok(())
                })?;
                m.notes = String::from(
                    "push: the waiter process sleeps in Reader::wait_for_change (a futex in the live image), then reads slot 0; PageCache commits; t0 taken before the commit",
                );
                drop(w);
                remove(&state_path(dir.path()))?;
                m
            }
            Workload::W6 => super::mapstate_grow::w6_writer(cx, false)?,
            Workload::Grow => super::mapstate_grow::grow(cx)?,
            Workload::Reopen => reopen(cx)?,
            Workload::Freestore => mapstate_size::freestore(cx, Change::FreeStore)?,
            Workload::Create => mapstate_size::create(cx)?,
            Workload::Checkpoint => mapstate_size::checkpoint(cx)?,
        };
        Ok(Outcome::Measured(m))
    }

    fn variants(&self, workload: Workload) -> &'static [&'static str] {
        use super::mapstate_grow;
        match workload {
            Workload::W6 => &[mapstate_grow::SET_LEN, mapstate_grow::MAPPING],
            Workload::Freestore => &[mapstate_size::SLICE_MUT, mapstate_size::WRITE_AT],
            _ => &[],
        }
    }

    fn run_variant(&self, variant: &str, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        use super::mapstate_grow;
        let m = match (workload, variant) {
            (Workload::W6, mapstate_grow::SET_LEN) => mapstate_grow::w6_writer(cx, true)?,
            (Workload::W6, mapstate_grow::MAPPING) => mapstate_grow::w6_mapping(cx)?,
            (Workload::Freestore, mapstate_size::SLICE_MUT) => {
                mapstate_size::freestore(cx, Change::SliceMut)?
            }
            (Workload::Freestore, mapstate_size::WRITE_AT) => {
                mapstate_size::freestore(cx, Change::WriteAt)?
            }
            _ => {
                return Err(
                    format!("mapstate: no variant {variant} of {}", workload.name()).into(),
                );
            }
        };
        Ok(Outcome::Measured(m))
    }

    fn cleanup(&self, cx: &Ctx) {
        mapstate_size::cleanup(cx);
        // The reopen state kept across runs has its live image on tmpfs
        // (`/dev/shm`), which deleting the directory would leave behind.
        if let Ok(dir) = cx.kept_dir(self.name(), Workload::Reopen) {
            let _ = remove(&state_path(&dir));
        }
    }

    fn child(&self, args: &ChildArgs) -> Result<()> {
        let parent = Parent::new();
        let mut rng = Rng::from_entropy();
        let path = state_path(&args.dir);
        match (args.workload, args.role.as_str()) {
            (Workload::W5, "writer") => {
                let mut w = Writer::open(&path)?;
                // Held to `arg` commits/s when asked: each commit waits
                // (spinning: sleeps are far coarser) for its time slot.
                let op = move || commit_slots(&mut w, &mut rng, 1, STATE_SLOTS).map(|()| true);
                match args.arg {
                    UNTIMED => timed_loop(parent, op),
                    0 => timed_commit_loop(parent, Pace::FlatOut, op),
                    rate => timed_commit_loop(
                        parent,
                        Pace::Held(Duration::from_secs(1) / rate as u32),
                        op,
                    ),
                }
            }
            (Workload::W5, "reader") => {
                let r = Reader::open(&path)?;
                timed_loop(parent, || read_slot(&r, rng.below(STATE_SLOTS) as u64))
            }
            (Workload::Notify, "waiter") => {
                let r = Reader::open(&path)?;
                let mut seen = r.seq();
                notify_waiter(parent, args.arg, |_| {
                    // No timeout: it returns only with a newer commit.
                    seen = r
                        .wait_for_change(seen, None)?
                        .ok_or("wait_for_change without a timeout returned no commit")?;
                    let mut b = [0_u8; SLOT_BYTES];
                    r.read_at(0, &mut b)?;
                    Ok(Slot::from_bytes(&b).map_or(0, |s| s.value()))
                })
            }
            (Workload::Reopen, "writer") => {
                let mut w = Writer::open(&path)?;
                let slots = (args.arg / SLOT_BYTES as u64) as usize;
                write_until_killed(parent, || commit_slots(&mut w, &mut rng, 1, slots))
            }
            _ => Err(format!(
                "mapstate: no child {} for {}",
                args.role,
                args.workload.name()
            )
            .into()),
        }
    }
}
