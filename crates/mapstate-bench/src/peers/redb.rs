//! redb: one table from `u64` to bytes, the slot (or record) as the value.

use std::path::Path;
use std::time::Instant;

use redb::{
    Builder, ConcurrencyMode, Database, Durability, ReadableDatabase, ReadableTable,
    TableDefinition,
};

use crate::child::{
    CLOCK_IN_RATE, COMMITS_TIMED, ChildArgs, Pace, Parent, notify_parent, notify_waiter, poller,
    reopen_parent, timed_commit_loop, timed_loop, w5_parent, write_until_killed,
};
use crate::harness::{Ctx, DiskWrites, Result, Workload, disk_bytes, measure, measure_threads};
use crate::peers::{
    APPEND_RECORD, CHECKED, RECORD_BYTES, RECORD_SLOTS, System, append_records, footprint,
    mapstate_only, na, records_for,
};
use crate::report::{Measurement, Outcome};
use crate::slot::{Rng, SLOT_BYTES, STATE_SLOTS, Slot, fill_slots};

/// redb.
pub(crate) struct Redb;

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("slots");

const NONE: &str = "Durability::None: commits are not persisted until a later Immediate commit, so a process crash loses them (the file falls back to the last Immediate commit): does NOT survive a process crash";
const IMMEDIATE: &str =
    "Durability::Immediate (fsync at every commit): survives a process crash and an OS crash";
const SHARED: &str = "ConcurrencyMode::SingleWriter (one writer process; read-only processes follow its commits), which refuses Durability::None and always commits in two phases: writer commits Immediate (fsync)";

/// The database file in `dir`.
fn path(dir: &Path) -> std::path::PathBuf {
    dir.join("state.redb")
}

/// Opens (creating if needed) the database in `dir`.
fn open(dir: &Path, mode: ConcurrencyMode) -> Result<Database> {
    Ok(Builder::new()
        .set_concurrency_mode(mode)
        .create(path(dir))?)
}

/// A fresh database in `dir` holding the 1 MiB state.
fn create_state(dir: &Path) -> Result<Database> {
    let db = open(dir, ConcurrencyMode::ExclusiveWriter)?;
    let w = db.begin_write()?;
    {
        let mut t = w.open_table(TABLE)?;
        for i in 0..STATE_SLOTS as u64 {
            t.insert(i, &Slot::fill(i).to_bytes()[..])?;
        }
    }
    w.commit()?;
    Ok(db)
}

/// One transaction that overwrites `n` random slots.
fn commit_slots(db: &Database, durability: Durability, rng: &mut Rng, n: usize) -> Result<()> {
    let mut w = db.begin_write()?;
    w.set_durability(durability)?;
    {
        let mut t = w.open_table(TABLE)?;
        for _ in 0..n {
            let k = rng.below(STATE_SLOTS) as u64;
            t.insert(k, &Slot::fill(rng.next_u64()).to_bytes()[..])?;
        }
    }
    w.commit()?;
    Ok(())
}

/// Reads slot `k` in a read transaction; whether it is whole.
fn read_slot(db: &impl ReadableDatabase, k: u64) -> Result<bool> {
    let r = db.begin_read()?;
    let t = r.open_table(TABLE)?;
    let v = t.get(k)?.ok_or("slot missing")?;
    Ok(Slot::check_bytes(v.value()))
}

/// Reads the value of slot 0 (notify).
fn read_value0(db: &impl ReadableDatabase) -> Result<u64> {
    let r = db.begin_read()?;
    let t = r.open_table(TABLE)?;
    let v = t.get(0)?.ok_or("slot missing")?;
    Ok(Slot::from_bytes(v.value()).map_or(0, |s| s.value()))
}

/// A read-only handle in the mode of a `SingleWriter` writer.
fn open_reader(dir: &Path) -> Result<redb::ReadOnlyDatabase> {
    Ok(Builder::new()
        .set_concurrency_mode(ConcurrencyMode::SingleWriter)
        .open_read_only(path(dir))?)
}

/// The end of a run of `Durability::None` commits, as its users end one:
/// one empty `Immediate` commit persists them all.
fn persist(db: &Database) -> Result<()> {
    let mut w = db.begin_write()?;
    w.set_durability(Durability::Immediate)?;
    w.commit()?;
    Ok(())
}

fn w6(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let n = total / APPEND_RECORD as u64;
    let io = DiskWrites::start()?;
    let db = open(dir.path(), ConcurrencyMode::ExclusiveWriter)?;
    let t = Instant::now();
    for i in 0..n {
        let mut w = db.begin_write()?;
        w.set_durability(Durability::None)?;
        w.open_table(TABLE)?
            .insert(i, &recs[(i % 16) as usize][..])?;
        w.commit()?;
    }
    let secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    persist(&db)?;
    drop(db);
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut m = Measurement {
        ops_per_sec: Some(n as f64 / secs),
        mb_per_sec: Some(total as f64 / secs / 1e6),
        notes: format!(
            "Durability::None (lost by a process crash), one write transaction and commit per 4 KiB record, increasing keys; timed: the commits (not the open, nor the close: close_ms, one empty Immediate commit that persists them, then drop); {}; disk_bytes after closing; disk writes from the open to after the close",
            cx.params.size_note(|p| p.w6_bytes)
        ),
        ..Measurement::default()
    };
    m.set(crate::report::key::CLOSE_MS, close_ms);
    io.finish(total, &mut m)?;
    footprint(&mut m, disk_bytes(dir.path())?, total);
    Ok(m)
}

fn reopen(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.kept_dir("redb", Workload::Reopen)?;
    let records = records_for(cx.params.reopen_bytes);
    let done = dir.join("populated");
    if !done.exists() {
        let db = open(&dir, ConcurrencyMode::ExclusiveWriter)?;
        let w = db.begin_write()?;
        {
            let mut t = w.open_table(TABLE)?;
            let mut rec = vec![0_u8; RECORD_BYTES];
            for i in 0..records {
                fill_slots(&mut rec, i * RECORD_SLOTS as u64);
                t.insert(i, &rec[..])?;
            }
        }
        w.commit()?;
        drop(db);
        std::fs::write(&done, b"")?;
    }
    let mut rng = Rng::from_entropy();
    let mut opened = None;
    let mut m = reopen_parent(cx, "redb", &dir, || {
        let db = Database::open(path(&dir))?;
        let whole = {
            let r = db.begin_read()?;
            let t = r.open_table(TABLE)?;
            let v = t
                .get(rng.below(records as usize) as u64)?
                .ok_or("record missing")?;
            v.value().chunks_exact(SLOT_BYTES).all(Slot::check_bytes)
        };
        opened = Some(db);
        Ok(whole)
    })?;
    drop(opened);
    m.notes = format!(
        "{} as {records} records of 4,032 B; writer child (Immediate: the fastest mode that survives a process crash) killed with SIGKILL while committing; timed: Database::open, which repairs after a crash (quick-repair off, the default), then a read transaction reading one record (its 63 slot checksums checked)",
        cx.params.size_note(|p| p.reopen_bytes)
    );
    Ok(m)
}

impl System for Redb {
    fn name(&self) -> &'static str {
        "redb"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let p = &cx.params;
        let mut rng = Rng::from_entropy();
        let m = match workload {
            Workload::W1 | Workload::W2 | Workload::W3 => {
                let durable = workload == Workload::W2;
                let durability = if durable {
                    Durability::Immediate
                } else {
                    Durability::None
                };
                let dir = cx.tempdir()?;
                let db = create_state(dir.path())?;
                let n = if workload == Workload::W3 { 1000 } else { 1 };
                let io = (!durable).then(DiskWrites::start).transpose()?;
                let mut m = measure(p, || commit_slots(&db, durability, &mut rng, n))?;
                m.notes = String::from(if durable { IMMEDIATE } else { NONE });
                if let Some(io) = io {
                    persist(&db)?;
                    drop(db);
                    let payload = m.calls.unwrap_or(0) * (n * SLOT_BYTES) as u64;
                    io.finish(payload, &mut m)?;
                    m.notes.push_str("; disk writes: the commits, then one empty Immediate commit that persists them and the close");
                }
                m
            }
            Workload::W2x8 => {
                let dir = cx.tempdir()?;
                let db = create_state(dir.path())?;
                let mut m = measure_threads(p, 8, |i| {
                    let mut rng = Rng::new(i as u64 + 1);
                    let db = &db;
                    Ok(move || commit_slots(db, Durability::Immediate, &mut rng, 1))
                })?;
                m.notes =
                    format!("8 threads; redb runs one write transaction at a time; {IMMEDIATE}");
                m
            }
            Workload::W4 => {
                let dir = cx.tempdir()?;
                let db = create_state(dir.path())?;
                let mut torn = 0_u64;
                let mut m = measure(p, || {
                    torn += u64::from(!read_slot(&db, rng.below(STATE_SLOTS) as u64)?);
                    Ok(())
                })?;
                m.torn = Some(torn);
                m.notes = format!("a read transaction per read (MVCC snapshot); {CHECKED}");
                m
            }
            Workload::W5 => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path())?);
                let mut m = w5_parent(cx, self.name(), dir.path())?;
                m.notes = format!(
                    "{SHARED}; reader process: read-only handle, a read transaction per read; {CHECKED}; {COMMITS_TIMED}; {CLOCK_IN_RATE}"
                );
                m
            }
            Workload::Notify => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path())?);
                let db = open(dir.path(), ConcurrencyMode::SingleWriter)?;
                let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
                    let w = db.begin_write()?;
                    w.open_table(TABLE)?
                        .insert(0, &Slot::fill(t0).to_bytes()[..])?;
                    w.commit()?;
                    Ok(())
                })?;
                m.notes = format!(
                    "no push notification: the waiter process polls slot 0 every 1 ms (read-only handle); {SHARED}; t0 taken before the commit"
                );
                m
            }
            Workload::W6 => w6(cx)?,
            Workload::Grow => {
                return Ok(na(
                    "no mapped growth to touch: redb grows its file with writes inside commits (w6 measures appending)",
                ));
            }
            Workload::Reopen => reopen(cx)?,
            Workload::Freestore | Workload::Create | Workload::Checkpoint => {
                return Ok(mapstate_only(workload));
            }
        };
        Ok(Outcome::Measured(m))
    }

    fn child(&self, args: &ChildArgs) -> Result<()> {
        let parent = Parent::new();
        let mut rng = Rng::from_entropy();
        match (args.workload, args.role.as_str()) {
            (Workload::W5, "writer") => {
                let db = open(&args.dir, ConcurrencyMode::SingleWriter)?;
                timed_commit_loop(parent, Pace::FlatOut, || {
                    commit_slots(&db, Durability::Immediate, &mut rng, 1).map(|()| true)
                })
            }
            (Workload::W5, "reader") => {
                let db = open_reader(&args.dir)?;
                timed_loop(parent, || read_slot(&db, rng.below(STATE_SLOTS) as u64))
            }
            (Workload::Notify, "waiter") => {
                let db = open_reader(&args.dir)?;
                let next = poller(|| read_value0(&db))?;
                notify_waiter(parent, args.arg, next)
            }
            (Workload::Reopen, "writer") => {
                let db = Database::open(path(&args.dir))?;
                let records = records_for(args.arg) as usize;
                write_until_killed(parent, || {
                    let k = rng.below(records) as u64;
                    let w = db.begin_write()?;
                    {
                        let mut t = w.open_table(TABLE)?;
                        let mut rec = t.get(k)?.ok_or("record missing")?.value().to_vec();
                        let j = rng.below(RECORD_SLOTS) * SLOT_BYTES;
                        rec[j..j + SLOT_BYTES]
                            .copy_from_slice(&Slot::fill(rng.next_u64()).to_bytes());
                        t.insert(k, &rec[..])?;
                    }
                    w.commit()?;
                    Ok(())
                })
            }
            _ => Err(format!("redb: no child {} for {}", args.role, args.workload.name()).into()),
        }
    }
}
