//! `SQLite` through rusqlite (bundled), WAL mode: one table of rows
//! `(id INTEGER PRIMARY KEY, v BLOB)`, the slot (or record) as the blob.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

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

/// `SQLite`.
pub(crate) struct Sqlite;

const OFF: &str = "WAL, synchronous=OFF: survives a process crash; an OS crash may lose recent commits or corrupt the database (SQLite docs on synchronous=OFF)";
const FULL: &str = "WAL, synchronous=FULL (the WAL is synced at every commit): survives a process crash and an OS crash";
const UPDATE: &str = "UPDATE slots SET v = ?1 WHERE id = ?2";
const SELECT: &str = "SELECT v FROM slots WHERE id = ?1";

/// The database file in `dir`.
fn path(dir: &Path) -> std::path::PathBuf {
    dir.join("state.sqlite")
}

/// Opens (creating if needed) the database in `dir` in WAL mode with
/// `synchronous` set to `sync` (`OFF` or `FULL`).
fn open(dir: &Path, sync: &str) -> Result<Connection> {
    let c = Connection::open(path(dir))?;
    let mode: String = c.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("sqlite: journal_mode is {mode}, not wal").into());
    }
    c.pragma_update(None, "synchronous", sync)?;
    c.busy_timeout(Duration::from_secs(60))?;
    Ok(c)
}

/// A fresh database in `dir` holding the 1 MiB state.
fn create_state(dir: &Path, sync: &str) -> Result<Connection> {
    let c = open(dir, sync)?;
    c.execute_batch("CREATE TABLE slots (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    let tx = c.unchecked_transaction()?;
    {
        let mut st = tx.prepare("INSERT INTO slots (id, v) VALUES (?1, ?2)")?;
        for i in 0..STATE_SLOTS as u64 {
            st.execute(params![i as i64, &Slot::fill(i).to_bytes()[..]])?;
        }
    }
    tx.commit()?;
    Ok(c)
}

/// One transaction that overwrites `n` random slots.
fn commit_slots(c: &Connection, rng: &mut Rng, n: usize) -> Result<()> {
    let mut put = |st: &mut rusqlite::CachedStatement<'_>| -> Result<()> {
        let k = rng.below(STATE_SLOTS) as i64;
        st.execute(params![&Slot::fill(rng.next_u64()).to_bytes()[..], k])?;
        Ok(())
    };
    if n == 1 {
        put(&mut c.prepare_cached(UPDATE)?)
    } else {
        let tx = c.unchecked_transaction()?;
        {
            let mut st = tx.prepare_cached(UPDATE)?;
            for _ in 0..n {
                put(&mut st)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

/// Reads slot `k`; whether it is whole.
fn read_slot(c: &Connection, k: u64) -> Result<bool> {
    Ok(c.prepare_cached(SELECT)?.query_row([k as i64], |r| {
        Ok(Slot::check_bytes(r.get_ref(0)?.as_blob()?))
    })?)
}

/// Reads the value of slot 0 (notify).
fn read_value0(c: &Connection) -> Result<u64> {
    Ok(c.prepare_cached(SELECT)?.query_row([0_i64], |r| {
        Ok(Slot::from_bytes(r.get_ref(0)?.as_blob()?).map_or(0, |s| s.value()))
    })?)
}

fn w6(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let n = total / APPEND_RECORD as u64;
    let io = DiskWrites::start()?;
    let c = open(dir.path(), "OFF")?;
    c.execute_batch("CREATE TABLE log (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
    let t = Instant::now();
    {
        let mut st = c.prepare("INSERT INTO log (id, v) VALUES (?1, ?2)")?;
        for i in 0..n {
            st.execute(params![i as i64, &recs[(i % 16) as usize][..]])?;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    c.close().map_err(|(_, e)| e)?;
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut m = Measurement {
        ops_per_sec: Some(n as f64 / secs),
        mb_per_sec: Some(total as f64 / secs / 1e6),
        notes: format!(
            "{OFF}; one INSERT (autocommit: one transaction and commit) per 4 KiB record; timed: the commits (not the open, nor the close: close_ms, which checkpoints the WAL into the database and removes it); {}; disk_bytes after closing; disk writes from the open to after the close",
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
    let dir = cx.kept_dir("sqlite", Workload::Reopen)?;
    let records = records_for(cx.params.reopen_bytes);
    let done = dir.join("populated");
    if !done.exists() {
        let c = open(&dir, "OFF")?;
        c.execute_batch("DROP TABLE IF EXISTS slots; CREATE TABLE slots (id INTEGER PRIMARY KEY, v BLOB NOT NULL)")?;
        let tx = c.unchecked_transaction()?;
        {
            let mut st = tx.prepare("INSERT INTO slots (id, v) VALUES (?1, ?2)")?;
            let mut rec = vec![0_u8; RECORD_BYTES];
            for i in 0..records {
                fill_slots(&mut rec, i * RECORD_SLOTS as u64);
                st.execute(params![i as i64, &rec[..]])?;
            }
        }
        tx.commit()?;
        c.close().map_err(|(_, e)| e)?;
        std::fs::write(&done, b"")?;
    }
    let mut rng = Rng::from_entropy();
    let mut opened = None;
    let mut m = reopen_parent(cx, "sqlite", &dir, || {
        let c = Connection::open(path(&dir))?;
        let k = rng.below(records as usize) as i64;
        let whole = c.query_row(SELECT, [k], |r| {
            Ok(r.get_ref(0)?
                .as_blob()?
                .chunks_exact(SLOT_BYTES)
                .all(Slot::check_bytes))
        })?;
        opened = Some(c);
        Ok(whole)
    })?;
    drop(opened);
    m.notes = format!(
        "{} as {records} rows of 4,032 B; writer child ({OFF}) killed with SIGKILL while committing; timed: Connection::open, then one SELECT (which recovers the WAL index) reading one row (its 63 slot checksums checked)",
        cx.params.size_note(|p| p.reopen_bytes)
    );
    Ok(m)
}

impl System for Sqlite {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let p = &cx.params;
        let mut rng = Rng::from_entropy();
        let m = match workload {
            Workload::W1 | Workload::W2 | Workload::W3 => {
                let durable = workload == Workload::W2;
                let dir = cx.tempdir()?;
                let c = create_state(dir.path(), if durable { "FULL" } else { "OFF" })?;
                let n = if workload == Workload::W3 { 1000 } else { 1 };
                let io = (!durable).then(DiskWrites::start).transpose()?;
                let mut m = measure(p, || commit_slots(&c, &mut rng, n))?;
                m.notes = String::from(if durable { FULL } else { OFF });
                if let Some(io) = io {
                    c.close().map_err(|(_, e)| e)?;
                    let payload = m.calls.unwrap_or(0) * (n * SLOT_BYTES) as u64;
                    io.finish(payload, &mut m)?;
                    m.notes.push_str("; disk writes: the commits, then the close (which checkpoints the WAL into the database)");
                }
                m
            }
            Workload::W2x8 => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path(), "FULL")?);
                let mut m = measure_threads(p, 8, |i| {
                    let c = open(dir.path(), "FULL")?;
                    let mut rng = Rng::new(i as u64 + 1);
                    Ok(move || commit_slots(&c, &mut rng, 1))
                })?;
                m.notes = format!(
                    "8 connections, one per thread; SQLite runs one writer at a time, the others wait in the busy handler; {FULL}"
                );
                m
            }
            Workload::W4 => {
                let dir = cx.tempdir()?;
                let c = create_state(dir.path(), "OFF")?;
                let mut torn = 0_u64;
                let mut m = measure(p, || {
                    torn += u64::from(!read_slot(&c, rng.below(STATE_SLOTS) as u64)?);
                    Ok(())
                })?;
                m.torn = Some(torn);
                m.notes =
                    format!("a prepared SELECT per read (its own read transaction); {CHECKED}");
                m
            }
            Workload::W5 => {
                let dir = cx.tempdir()?;
                drop(create_state(dir.path(), "OFF")?);
                let mut m = w5_parent(cx, self.name(), dir.path())?;
                m.notes = format!(
                    "writer process: {OFF}; reader process: a SELECT per read; {CHECKED}; {COMMITS_TIMED}; {CLOCK_IN_RATE}"
                );
                m
            }
            Workload::Notify => {
                let dir = cx.tempdir()?;
                let c = create_state(dir.path(), "OFF")?;
                let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
                    c.prepare_cached(UPDATE)?
                        .execute(params![&Slot::fill(t0).to_bytes()[..], 0_i64])?;
                    Ok(())
                })?;
                m.notes = String::from(
                    "no push notification: the waiter process polls slot 0 every 1 ms (SELECT); writer synchronous=OFF; t0 taken before the commit",
                );
                m
            }
            Workload::W6 => w6(cx)?,
            Workload::Grow => {
                return Ok(na(
                    "no mapped growth to touch: SQLite grows its files with write() (w6 measures appending)",
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
                let c = open(&args.dir, "OFF")?;
                timed_commit_loop(parent, Pace::FlatOut, || {
                    commit_slots(&c, &mut rng, 1).map(|()| true)
                })
            }
            (Workload::W5, "reader") => {
                let c = open(&args.dir, "OFF")?;
                timed_loop(parent, || read_slot(&c, rng.below(STATE_SLOTS) as u64))
            }
            (Workload::Notify, "waiter") => {
                let c = open(&args.dir, "OFF")?;
                let next = poller(|| read_value0(&c))?;
                notify_waiter(parent, args.arg, next)
            }
            (Workload::Reopen, "writer") => {
                let c = open(&args.dir, "OFF")?;
                let records = records_for(args.arg) as usize;
                write_until_killed(parent, || {
                    let k = rng.below(records) as i64;
                    let tx = c.unchecked_transaction()?;
                    let mut rec: Vec<u8> = tx.query_row(SELECT, [k], |r| r.get(0))?;
                    let j = rng.below(RECORD_SLOTS) * SLOT_BYTES;
                    rec[j..j + SLOT_BYTES].copy_from_slice(&Slot::fill(rng.next_u64()).to_bytes());
                    tx.prepare_cached(UPDATE)?.execute(params![&rec[..], k])?;
                    tx.commit()?;
                    Ok(())
                })
            }
            _ => Err(format!(
                "sqlite: no child {} for {}",
                args.role,
                args.workload.name()
            )
            .into()),
        }
    }
}
