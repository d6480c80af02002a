//! LMDB through heed: one unnamed database, 8-byte big-endian keys, the
//! slot (or record) as the value.
//!
//! # Safety
//!
//! heed marks two calls `unsafe`: `EnvOpenOptions::flags` for the flags that
//! weaken durability (`NO_SYNC` here, whose cost is stated in the notes, not
//! a memory-safety matter), and `EnvOpenOptions::open`, because the map
//! would be undefined behaviour if its file were changed behind LMDB's
//! locks. Every process here changes the environment only through LMDB, and
//! this process closes an environment before opening the same path again.
#![allow(unsafe_code)]

use std::path::Path;
use std::time::Instant;

use heed::types::Bytes;
use heed::{CommitOrAbort, Database, Env, EnvFlags, EnvOpenOptions, PutFlags};

use crate::child::{
    CLOCK_IN_RATE, COMMITS_TIMED, ChildArgs, Pace, Parent, notify_parent, notify_waiter, poller,
    reopen_parent, timed_commit_loop, timed_loop, w5_parent, write_until_killed,
};
use crate::harness::{Ctx, DiskWrites, Result, Workload, disk_bytes, measure, measure_threads};
use crate::peers::{
    APPEND_RECORD, CHECKED, RECORD_BYTES, RECORD_SLOTS, System, append_records, footprint, key,
    mapstate_only, na, records_for,
};
use crate::report::{Measurement, Outcome};
use crate::slot::{Rng, SLOT_BYTES, STATE_SLOTS, Slot, fill_slots};

/// LMDB.
pub(crate) struct Lmdb;

type Db<'e> = Database<'e, Bytes, Bytes>;

/// Address space reserved for the map: the largest state is 1 GiB of
/// records plus its copy-on-write pages.
const MAP_SIZE: usize = 8 << 30;

const NO_SYNC: &str = "NO_SYNC: survives a process crash; an OS crash may lose recent commits or corrupt the file (LMDB docs on MDB_NOSYNC)";

/// Opens (creating if needed) the environment in `dir`.
fn open(dir: &Path, sync: bool) -> Result<Env> {
    let mut opts = EnvOpenOptions::new();
    opts.map_size(MAP_SIZE);
    if !sync {
        // SAFETY: NO_SYNC only skips the fsync at commit: an OS crash may
        // lose or corrupt recent commits (the notes say so); memory safety
        // does not depend on it.
        unsafe {
            opts.flags(EnvFlags::NO_SYNC);
        }
    }
    // SAFETY: the files in `dir` are changed only through LMDB (by this or
    // another bench process, under LMDB's lock file), and this process
    // never has the same environment open twice (see module docs).
    let env = unsafe { opts.open(dir)? };
    Ok(env)
}

/// The unnamed database of `env` (a write transaction opens it).
fn main_db(env: &Env) -> Result<Db<'_>> {
    let w = env.write_txn()?;
    let db = env
        .create_databases_and_commit(w, |opener, w| -> Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.create_database(w, None)?,
            ))
        })?
        .unwrap_commit();
    Ok(db)
}

/// The unnamed database of `env`, opened by a read transaction.
fn main_db_read(env: &Env) -> Result<Db<'_>> {
    let r = env.read_txn()?;
    let db = env
        .open_databases_and_commit(r, |opener, r| -> Result<_> {
            Ok(CommitOrAbort::<_, ()>::Commit(
                opener.open_database(r, None)?,
            ))
        })?
        .unwrap_commit();
    Ok(db.ok_or("no main database")?)
}

/// Closes `env` and waits until LMDB has really closed it.
fn close(env: Env) {
    env.prepare_for_closing().wait();
}

/// A fresh environment in `dir` holding the 1 MiB state.
fn create_state(dir: &Path, sync: bool) -> Result<Env> {
    let env = open(dir, sync)?;
    let db = main_db(&env)?;
    let mut w = env.write_txn()?;
    for i in 0..STATE_SLOTS as u64 {
        db.put_with_flags(&mut w, PutFlags::APPEND, &key(i), &Slot::fill(i).to_bytes())?;
    }
    w.commit()?;
    Ok(env)
}

/// One transaction that overwrites `n` random slots.
fn commit_slots(env: &Env, db: Db<'_>, rng: &mut Rng, n: usize) -> Result<()> {
    let mut w = env.write_txn()?;
    for _ in 0..n {
        let k = rng.below(STATE_SLOTS) as u64;
        db.put(&mut w, &key(k), &Slot::fill(rng.next_u64()).to_bytes())?;
    }
    w.commit()?;
    Ok(())
}

/// Reads slot `k` in a read transaction; whether it is whole.
fn read_slot(env: &Env, db: Db<'_>, k: u64) -> Result<bool> {
    let r = env.read_txn()?;
    let v = db.get(&r, &key(k))?.ok_or("slot missing")?;
    Ok(Slot::check_bytes(v))
}

/// Reads the value of slot 0 (notify).
fn read_value0(env: &Env, db: Db<'_>) -> Result<u64> {
    let r = env.read_txn()?;
    let v = db.get(&r, &key(0))?.ok_or("slot missing")?;
    Ok(Slot::from_bytes(v).map_or(0, |s| s.value()))
}

fn w6(cx: &Ctx) -> Result<Measurement> {
    let dir = cx.tempdir()?;
    let recs = append_records();
    let total = cx.params.w6_bytes;
    let n = total / APPEND_RECORD as u64;
    let io = DiskWrites::start()?;
    let env = open(dir.path(), false)?;
    let db = main_db(&env)?;
    let t = Instant::now();
    for i in 0..n {
        let mut w = env.write_txn()?;
        db.put_with_flags(&mut w, PutFlags::APPEND, &key(i), &recs[(i % 16) as usize])?;
        w.commit()?;
    }
    let secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    close(env);
    let close_ms = t.elapsed().as_secs_f64() * 1e3;
    let mut m = Measurement {
        ops_per_sec: Some(n as f64 / secs),
        mb_per_sec: Some(total as f64 / secs / 1e6),
        notes: format!(
            "{NO_SYNC}; one write transaction and commit per 4 KiB record (MDB_APPEND, increasing keys); timed: the commits (not the open, nor the close: close_ms); {}; disk_bytes after closing; disk writes from the open to after the close",
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
    let dir = cx.kept_dir("lmdb", Workload::Reopen)?;
    let records = records_for(cx.params.reopen_bytes);
    let done = dir.join("populated");
    if !done.exists() {
        let env = open(&dir, false)?;
        let db = main_db(&env)?;
        let mut w = env.write_txn()?;
        let mut rec = vec![0_u8; RECORD_BYTES];
        for i in 0..records {
            fill_slots(&mut rec, i * RECORD_SLOTS as u64);
            db.put_with_flags(&mut w, PutFlags::APPEND, &key(i), &rec)?;
        }
        w.commit()?;
        env.force_sync()?;
        close(env);
        std::fs::write(&done, b"")?;
    }
    let mut rng = Rng::from_entropy();
    let mut opened = None;
    let mut m = reopen_parent(cx, "lmdb", &dir, || {
        let env = open(&dir, false)?;
        let whole = {
            let db = main_db_read(&env)?;
            let r = env.read_txn()?;
            let v = db
                .get(&r, &key(rng.below(records as usize) as u64))?
                .ok_or("record missing")?;
            v.chunks_exact(SLOT_BYTES).all(Slot::check_bytes)
        };
        opened = Some(env);
        Ok(whole)
    })?;
    if let Some(env) = opened {
        close(env);
    }
    m.notes = format!(
        "{} as {records} records of 4,032 B; writer child ({NO_SYNC}) killed with SIGKILL while committing; timed: open the environment, then a read transaction reading one record (its 63 slot checksums checked)",
        cx.params.size_note(|p| p.reopen_bytes)
    );
    Ok(m)
}

impl System for Lmdb {
    fn name(&self) -> &'static str {
        "lmdb"
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> Result<Outcome> {
        let p = &cx.params;
        let mut rng = Rng::from_entropy();
        let m = match workload {
            Workload::W1 | Workload::W2 | Workload::W3 => {
                let sync = workload == Workload::W2;
                let dir = cx.tempdir()?;
                let env = create_state(dir.path(), sync)?;
                let db = main_db(&env)?;
                let n = if workload == Workload::W3 { 1000 } else { 1 };
                let io = (!sync).then(DiskWrites::start).transpose()?;
                let mut m = measure(p, || commit_slots(&env, db, &mut rng, n))?;
                m.notes = if sync {
                    "default flags: fsync at every commit; survives a process crash and an OS crash"
                        .to_owned()
                } else {
                    format!("{NO_SYNC}; disk writes: the commits, then closing the environment")
                };
                close(env);
                if let Some(io) = io {
                    let payload = m.calls.unwrap_or(0) * (n * SLOT_BYTES) as u64;
                    io.finish(payload, &mut m)?;
                }
                m
            }
            Workload::W2x8 => {
                let dir = cx.tempdir()?;
                let env = create_state(dir.path(), true)?;
                let db = main_db(&env)?;
                let mut m = measure_threads(p, 8, |i| {
                    let mut rng = Rng::new(i as u64 + 1);
                    let env = &env;
                    Ok(move || commit_slots(env, db, &mut rng, 1))
                })?;
                m.notes = String::from(
                    "8 threads; LMDB runs one write transaction at a time; default flags (fsync at every commit): survives an OS crash",
                );
                close(env);
                m
            }
            Workload::W4 => {
                let dir = cx.tempdir()?;
                let env = create_state(dir.path(), false)?;
                let db = main_db(&env)?;
                let mut torn = 0_u64;
                let mut m = measure(p, || {
                    torn += u64::from(!read_slot(&env, db, rng.below(STATE_SLOTS) as u64)?);
                    Ok(())
                })?;
                m.torn = Some(torn);
                m.notes = format!("a read transaction per read (MVCC snapshot); {CHECKED}");
                close(env);
                m
            }
            Workload::W5 => {
                let dir = cx.tempdir()?;
                close(create_state(dir.path(), false)?);
                let mut m = w5_parent(cx, self.name(), dir.path())?;
                m.notes = format!(
                    "writer process: {NO_SYNC}; reader process: a read transaction per read; {CHECKED}; {COMMITS_TIMED}; {CLOCK_IN_RATE}"
                );
                m
            }
            Workload::Notify => {
                let dir = cx.tempdir()?;
                let env = create_state(dir.path(), false)?;
                let db = main_db(&env)?;
                let mut m = notify_parent(cx, self.name(), dir.path(), |_, t0| {
                    let mut w = env.write_txn()?;
                    db.put(&mut w, &key(0), &Slot::fill(t0).to_bytes())?;
                    w.commit()?;
                    Ok(())
                })?;
                m.notes = String::from(
                    "no push notification: the waiter process polls slot 0 every 1 ms (read transaction); writer NO_SYNC; t0 taken before the commit",
                );
                close(env);
                m
            }
            Workload::W6 => w6(cx)?,
            Workload::Grow => {
                return Ok(na(
                    "no mapped growth to touch: LMDB grows its file with write() inside commits (w6 measures appending)",
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
                let env = open(&args.dir, false)?;
                let db = main_db(&env)?;
                timed_commit_loop(parent, Pace::FlatOut, || {
                    commit_slots(&env, db, &mut rng, 1).map(|()| true)
                })
            }
            (Workload::W5, "reader") => {
                let env = open(&args.dir, false)?;
                let db = main_db_read(&env)?;
                timed_loop(parent, || {
                    read_slot(&env, db, rng.below(STATE_SLOTS) as u64)
                })
            }
            (Workload::Notify, "waiter") => {
                let env = open(&args.dir, false)?;
                let db = main_db_read(&env)?;
                let next = poller(|| read_value0(&env, db))?;
                notify_waiter(parent, args.arg, next)
            }
            (Workload::Reopen, "writer") => {
                let env = open(&args.dir, false)?;
                let db = main_db(&env)?;
                let records = records_for(args.arg) as usize;
                write_until_killed(parent, || {
                    let k = key(rng.below(records) as u64);
                    let mut w = env.write_txn()?;
                    let mut rec = db.get(&w, &k)?.ok_or("record missing")?.to_vec();
                    let j = rng.below(RECORD_SLOTS) * SLOT_BYTES;
                    rec[j..j + SLOT_BYTES].copy_from_slice(&Slot::fill(rng.next_u64()).to_bytes());
                    db.put(&mut w, &k, &rec)?;
                    w.commit()?;
                    Ok(())
                })
            }
            _ => Err(format!("lmdb: no child {} for {}", args.role, args.workload.name()).into()),
        }
    }
}
