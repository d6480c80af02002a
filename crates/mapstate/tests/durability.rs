//! Durability: a power-cut model, failing syncs, and the periodic syncer.
//!
//! The sync hooks are process-wide, so each test runs its body in a child
//! process (the test binary re-executed with `MAPSTATE_DURABILITY_CHILD`).
//!
//! The power-cut model: an observer sees every `fdatasync`/`fsync` mapstate
//! makes. After each sync it records the file's bytes as the *synced* image.
//! Before some syncs it "cuts the power": for each file of the state it
//! builds what a disk could hold at that moment, namely the synced image
//! plus a random subset of the pages written since (and, at random, the
//! length the file had at its last sync or now). Each cut is then opened,
//! which runs mapstate's recovery, and must give a consistent committed
//! state that has every commit the mode promised durable before the cut.

#![allow(clippy::many_single_char_names)]

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use mapstate::{Durability, Error, Writer, WriterOptions};

const PAGE: usize = 4096;
const LEN: u64 = 64 * 1024;

fn child_mode() -> Option<String> {
    std::env::var("MAPSTATE_DURABILITY_CHILD").ok()
}

/// Runs the test `name` in a child process and asserts it passed.
fn in_child(name: &str, role: &str) {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env("MAPSTATE_DURABILITY_CHILD", role)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && text.contains("child ok"),
        "{name}/{role}: {text}"
    );
}

fn opts(dir: &Path, d: Durability) -> WriterOptions {
    Writer::options()
        .create(true)
        .len(LEN)
        .max_size(LEN)
        .durability(d)
        .live_dir(dir.join("live"))
}

fn fresh_dir() -> tempfile::TempDir {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(d.path().join("live")).unwrap();
    d
}

/// Commit `c`: the counter at 0 and across the page 0/1 boundary, and one
/// data page (a function of `c`) stamped with `c` all through.
fn commit(w: &mut Writer, c: u64) -> mapstate::Result<u64> {
    let mut t = w.begin();
    t.write_at(0, &c.to_le_bytes())?;
    t.write_at(4092, &c.to_le_bytes())?;
    let page = stamp_page(c);
    let mut p = vec![(c % 251) as u8; PAGE];
    p[..8].copy_from_slice(&c.to_le_bytes());
    t.write_at(page as u64 * PAGE as u64, &p)?;
    t.commit()
}

fn stamp_page(c: u64) -> usize {
    2 + (c % 13) as usize
}

/// The counter of a consistent state, or what is torn.
fn check(s: &[u8]) -> Result<u64, String> {
    let word = |o: usize| u64::from_le_bytes(s[o..o + 8].try_into().unwrap());
    let c = word(0);
    if word(4092) != c {
        return Err(format!("counter {c} / {}", word(4092)));
    }
    for page in 2..15 {
        let at = page * PAGE;
        let pc = word(at);
        if pc == 0 && s[at..at + PAGE].iter().all(|&b| b == 0) {
            continue;
        }
        if pc > c
            || stamp_page(pc) != page
            || s[at + 8..at + PAGE].iter().any(|&b| b != (pc % 251) as u8)
        {
            return Err(format!(
                "page {page} torn or newer (stamp {pc}, counter {c})"
            ));
        }
    }
    if c > 0 && word(stamp_page(c) * PAGE) != c {
        return Err(format!("commit {c} is only partly there"));
    }
    Ok(c)
}

/// One simulated power cut: a directory holding the files as a disk could
/// hold them, and the commit that had to survive.
struct Cut {
    dir: PathBuf,
    must_have: u64,
}

/// The model's state, shared with the sync observer.
#[derive(Default)]
struct Model {
    dir: PathBuf,
    /// Where cuts are written.
    cuts_dir: PathBuf,
    /// Cut before one sync in this many (at random).
    cut_every: u64,
    synced: HashMap<String, Vec<u8>>,
    cuts: Vec<Cut>,
    /// The newest commit the mode promises durable so far.
    durable: u64,
    rng: u64,
    syncs: u64,
}

impl Model {
    fn next(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn name_of(fd: i32) -> Option<String> {
        let p = std::fs::read_link(format!("/proc/self/fd/{fd}")).ok()?;
        Some(p.file_name()?.to_string_lossy().into_owned())
    }

    fn state_files(&self) -> Vec<String> {
        ["state", "state-wal", "state-ckpt"]
            .iter()
            .filter(|n| self.dir.join(n).exists())
            .map(|n| (*n).to_string())
            .collect()
    }

    /// What a disk could hold for every file right now.
    fn cut(&mut self) {
        let dir = self.cuts_dir.join(self.cuts.len().to_string());
        std::fs::create_dir_all(dir.join("live")).unwrap();
        for name in self.state_files() {
            let now = std::fs::read(self.dir.join(&name)).unwrap();
            let synced = self.synced.get(&name).cloned().unwrap_or_default();
            let keep_len = if self.next() % 2 == 0 {
                now.len()
            } else {
                synced.len()
            };
            let mut img = synced.clone();
            img.resize(keep_len, 0);
            for (i, chunk) in now.chunks(PAGE).enumerate() {
                let at = i * PAGE;
                if at >= keep_len {
                    break;
                }
                let end = (at + chunk.len()).min(keep_len);
                let old = synced.get(at..end.min(synced.len())).unwrap_or(&[]);
                if old != &chunk[..end - at] && self.next() % 2 == 0 {
                    img[at..end].copy_from_slice(&chunk[..end - at]);
                }
            }
            std::fs::write(dir.join(&name), img).unwrap();
        }
        let must_have = self.durable;
        self.cuts.push(Cut { dir, must_have });
    }

    fn observe(&mut self, fd: i32, before: bool) {
        let Some(name) = Self::name_of(fd) else {
            return;
        };
        if !self.state_files().contains(&name) {
            return; // the directory, or another file
        }
        if before {
            self.syncs += 1;
            if self.next() % self.cut_every == 0 {
                self.cut();
            }
        } else {
            let now = std::fs::read(self.dir.join(&name)).unwrap();
            self.synced.insert(name, now);
        }
    }
}

/// Runs a workload under the model and checks every cut.
fn model(durability: Durability, seed: u64, cut_every: u64) {
    let d = fresh_dir();
    let cuts = fresh_dir();
    let m = Arc::new(Mutex::new(Model {
        dir: d.path().to_path_buf(),
        cuts_dir: cuts.path().to_path_buf(),
        cut_every,
        rng: seed | 1,
        ..Model::default()
    }));
    let obs = m.clone();
    mapstate::testing::observe_syncs(Some(Box::new(move |fd, before| {
        obs.lock().unwrap().observe(fd, before);
    })));
    // A small log, so that it fills and restarts (with a checkpoint) often.
    let o = opts(d.path(), durability).log_size(256 << 10);
    let mut w = o.open(d.path().join("state")).unwrap();
    for c in 1..=300u64 {
        commit(&mut w, c).unwrap();
        if durability == Durability::Sync {
            m.lock().unwrap().durable = c;
        }
        if c % 37 == 0 {
            w.checkpoint().unwrap();
            m.lock().unwrap().durable = c;
        }
        if c % 101 == 0 {
            // A writer that closes and reopens: recovery runs under the model too.
            drop(w);
            w = o.open(d.path().join("state")).unwrap();
        }
    }
    drop(w);
    mapstate::testing::disarm_syncs();
    let m = m.lock().unwrap();
    assert!(
        m.cuts.len() >= 20,
        "only {} cuts over {} syncs",
        m.cuts.len(),
        m.syncs
    );
    for (i, cut) in m.cuts.iter().enumerate() {
        let o = opts(&cut.dir, durability).create(false);
        let got = match o.open(cut.dir.join("state")) {
            Ok(w) => {
                drop(w);
                let (_, s) = o
                    .reader()
                    .open(cut.dir.join("state"))
                    .unwrap()
                    .snapshot()
                    .unwrap();
                check(&s).unwrap_or_else(|e| panic!("{durability:?} cut {i}: torn: {e}"))
            }
            // A cut before the state's first sync may leave no state at all.
            Err(e) if cut.must_have == 0 => {
                println!("cut {i}: no state yet ({e})");
                continue;
            }
            Err(e) => panic!("{durability:?} cut {i}: recovery failed: {e}"),
        };
        assert!(
            got >= cut.must_have,
            "{durability:?} cut {i}: state {got} lost commit {} (durable)",
            cut.must_have
        );
    }
    println!(
        "{durability:?}: {} cuts over {} syncs, all consistent, none lost a durable commit",
        m.cuts.len(),
        m.syncs
    );
}

#[test]
fn power_cut_model_sync() {
    match child_mode().as_deref() {
        Some("model-sync") => {
            model(Durability::Sync, 0x9E37_79B9, 3);
            println!("child ok");
        }
        Some(_) => {}
        None => in_child("power_cut_model_sync", "model-sync"),
    }
}

#[test]
fn power_cut_model_page_cache() {
    match child_mode().as_deref() {
        Some("model-pagecache") => {
            model(Durability::PageCache, 0x85EB_CA6B, 1);
            println!("child ok");
        }
        Some(_) => {}
        None => in_child("power_cut_model_page_cache", "model-pagecache"),
    }
}

#[test]
fn a_failed_sync_is_sticky_and_reopen_recovers() {
    match child_mode().as_deref() {
        Some("sticky") => {
            let d = fresh_dir();
            let o = opts(d.path(), Durability::Sync);
            let p = d.path().join("state");
            let mut w = o.open(&p).unwrap();
            for c in 1..=10 {
                commit(&mut w, c).unwrap();
            }
            mapstate::testing::fail_syncs_after(0);
            let e = commit(&mut w, 11).unwrap_err();
            assert_eq!(
                e.errno(),
                Some(libc::EIO),
                "the failing sync is reported: {e}"
            );
            mapstate::testing::disarm_syncs();
            // Even with the disk healthy again, nothing pretends to be durable.
            match commit(&mut w, 11) {
                Err(Error::Poisoned { .. }) => {}
                other => panic!("expected Poisoned, got {other:?}"),
            }
            assert!(matches!(w.checkpoint(), Err(Error::Poisoned { .. })));
            drop(w);
            let mut w = o.clone().create(false).open(&p).unwrap();
            let (_, s) = o.reader().open(&p).unwrap().snapshot().unwrap();
            // Every commit that returned is there; the one whose sync failed
            // may be too (its record may have reached the disk), never torn.
            let got = check(&s).unwrap();
            assert!(got == 10 || got == 11, "state {got}");
            commit(&mut w, got + 1).unwrap();
            println!("child ok");
        }
        Some(_) => {}
        None => in_child("a_failed_sync_is_sticky_and_reopen_recovers", "sticky"),
    }
}

/// A commit that fails after the transaction's ranges were gathered (here:
/// the log is full and the checkpoint that would empty it cannot sync)
/// discards the transaction: the view reads as the committed state again.
#[test]
fn a_failed_commit_leaves_nothing_in_the_view() {
    match child_mode().as_deref() {
        Some("failed-commit") => {
            let d = fresh_dir();
            let o = opts(d.path(), Durability::PageCache).log_size(64 << 10);
            let p = d.path().join("state");
            let mut w = o.open(&p).unwrap();
            let mut t = w.begin();
            t.write_at(8192, &vec![1; 40 << 10]).unwrap();
            t.commit().unwrap();
            mapstate::testing::fail_syncs_after(0);
            let mut t = w.begin();
            t.write_at(0, b"uncommitted").unwrap();
            t.write_at(16384, &vec![2; 40 << 10]).unwrap();
            t.commit()
                .expect_err("the checkpoint's journal cannot sync");
            mapstate::testing::disarm_syncs();
            let mut b = [9u8; 11];
            w.begin().read_at(0, &mut b).unwrap();
            assert_eq!(
                b, [0; 11],
                "the failed transaction's bytes stayed in the view"
            );
            println!("child ok");
        }
        Some(_) => {}
        None => in_child(
            "a_failed_commit_leaves_nothing_in_the_view",
            "failed-commit",
        ),
    }
}

#[test]
fn periodic_syncs_in_the_background_and_reports_failures() {
    match child_mode().as_deref() {
        Some("periodic") => {
            let d = fresh_dir();
            let o = opts(
                d.path(),
                Durability::Periodic(std::time::Duration::from_millis(5)),
            );
            let (tx, rx) = std::sync::mpsc::channel::<(i32, bool)>();
            let tx = Mutex::new(tx);
            mapstate::testing::observe_syncs(Some(Box::new(move |fd, before| {
                let _ = tx.lock().unwrap().send((fd, before));
            })));
            let mut w = o.open(d.path().join("state")).unwrap();
            while rx.try_recv().is_ok() {} // the syncs of creating the state
            commit(&mut w, 1).unwrap();
            // The syncer thread syncs the log without any call from us.
            let (fd, _) = rx
                .recv_timeout(std::time::Duration::from_secs(10))
                .expect("a background sync");
            let name = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            assert!(name.to_string_lossy().ends_with("state-wal"), "{name:?}");
            // A failing background sync poisons the writer.
            mapstate::testing::fail_syncs_after(0);
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            let mut c = 2;
            let e = loop {
                match commit(&mut w, c) {
                    Ok(_) => c += 1,
                    Err(e) => break e,
                }
                assert!(
                    std::time::Instant::now() < deadline,
                    "the failure never surfaced"
                );
                let _ = rx.recv_timeout(std::time::Duration::from_millis(50));
            };
            assert!(matches!(e, Error::Poisoned { .. }), "{e}");
            mapstate::testing::disarm_syncs();
            std::io::stdout().flush().unwrap();
            println!("child ok");
        }
        Some(_) => {}
        None => in_child(
            "periodic_syncs_in_the_background_and_reports_failures",
            "periodic",
        ),
    }
}

#[test]
fn concurrent_sync_commits_share_fdatasyncs() {
    match child_mode().as_deref() {
        Some("group") => {
            let d = fresh_dir();
            let o = opts(d.path(), Durability::Sync);
            let w = o.open(d.path().join("state")).unwrap();
            let shared = std::sync::Arc::new(mapstate::SharedWriter::new(w).unwrap());
            let syncs = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let count = syncs.clone();
            mapstate::testing::observe_syncs(Some(Box::new(move |_, before| {
                if before {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })));
            let threads: Vec<_> = (0..8u64)
                .map(|i| {
                    let s = shared.clone();
                    std::thread::spawn(move || {
                        for k in 0..100u64 {
                            let v = i * 1000 + k;
                            s.transaction(|t| t.write_at(64 * (i + 1), &v.to_le_bytes()))
                                .unwrap();
                        }
                    })
                })
                .collect();
            for t in threads {
                t.join().unwrap();
            }
            let n = syncs.load(std::sync::atomic::Ordering::Relaxed);
            assert_eq!(shared.syncs(), n, "SharedWriter::syncs counts them");
            assert!(
                n <= 400,
                "800 Sync commits from 8 threads took {n} fdatasyncs: fewer than 2 a group"
            );
            println!("800 Sync commits, {n} fdatasyncs");
            // One thread alone: the leader no longer waits for the seven
            // others (the group shrinks); each commit gets its own sync.
            for k in 0..50u64 {
                shared
                    .transaction(|t| t.write_at(0, &k.to_le_bytes()))
                    .unwrap();
            }
            let alone = syncs.load(std::sync::atomic::Ordering::Relaxed) - n;
            assert_eq!(alone, 50, "50 Sync commits of one thread, one sync each");
            mapstate::testing::disarm_syncs();
            let w = std::sync::Arc::into_inner(shared).unwrap().into_inner();
            assert_eq!(w.seq(), 850, "every commit landed");
            drop(w);
            let r = o.reader().open(d.path().join("state")).unwrap();
            for i in 0..8u64 {
                let mut b = [0u8; 8];
                r.read_at(64 * (i + 1), &mut b).unwrap();
                assert_eq!(
                    u64::from_le_bytes(b),
                    i * 1000 + 99,
                    "thread {i}'s last commit"
                );
            }
            println!("child ok");
        }
        Some(_) => {}
        None => in_child("concurrent_sync_commits_share_fdatasyncs", "group"),
    }
}

#[test]
fn a_failed_group_sync_fails_every_thread_and_reopen_keeps_their_commits() {
    match child_mode().as_deref() {
        Some("group-fail") => {
            let d = fresh_dir();
            let o = opts(d.path(), Durability::Sync);
            let w = o.open(d.path().join("state")).unwrap();
            let shared = Arc::new(mapstate::SharedWriter::new(w).unwrap());
            mapstate::testing::fail_syncs_after(30);
            let threads: Vec<_> = (0..8u64)
                .map(|i| {
                    let s = shared.clone();
                    std::thread::spawn(move || {
                        // Commits until one fails; returns the last value
                        // acknowledged as durable and the error.
                        let mut last = None;
                        for k in 1.. {
                            let v = i * 1_000_000 + k;
                            match s.transaction(|t| t.write_at(64 * (i + 1), &v.to_le_bytes())) {
                                Ok(_) => last = Some(v),
                                Err(e) => return (last, e),
                            }
                        }
                        unreachable!()
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            for (i, (_, e)) in results.iter().enumerate() {
                assert!(matches!(e, Error::Poisoned { .. }), "thread {i}: {e}");
            }
            // Sticky: the next transaction fails too, before running.
            let e = shared.transaction(|_| Ok(())).unwrap_err();
            assert!(matches!(e, Error::Poisoned { .. }), "{e}");
            mapstate::testing::disarm_syncs();
            drop(shared);
            // Reopening recovers a state holding every acknowledged commit.
            let r = o.reader().open(d.path().join("state")).unwrap();
            for (i, (last, _)) in results.iter().enumerate() {
                let mut b = [0u8; 8];
                r.read_at(64 * (i as u64 + 1), &mut b).unwrap();
                let got = u64::from_le_bytes(b);
                if let Some(v) = last {
                    assert!(got >= *v, "thread {i}: acknowledged {v}, reopened {got}");
                }
            }
            println!("child ok");
        }
        Some(_) => {}
        None => in_child(
            "a_failed_group_sync_fails_every_thread_and_reopen_keeps_their_commits",
            "group-fail",
        ),
    }
}

/// The logical block ranges (`first..=last`) of `path`'s unwritten
/// (allocated, never written) extents, from `filefrag -v`; `None` (and
/// SKIPPED printed) without filefrag (Debian package `e2fsprogs`) or where
/// the filesystem does not report extents (tmpfs).
fn unwritten_extents(path: &Path) -> Option<Vec<(u64, u64)>> {
    let Ok(out) = std::process::Command::new("filefrag")
        .arg("-v")
        .arg(path)
        .output()
    else {
        eprintln!("SKIPPED: filefrag not found (Debian package e2fsprogs)");
        return None;
    };
    if !out.status.success() {
        eprintln!(
            "SKIPPED: filefrag -v {}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stdout).trim()
        );
        return None;
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut ranges = Vec::new();
    for line in text.lines().filter(|l| l.contains("unwritten")) {
        // "   1:        1..    2047:   24741889..  24743935:   2047:   last,unwritten,eof"
        let logical = line.split(':').nth(1).expect("a logical range");
        let (a, b) = logical.split_once("..").expect("first..last");
        ranges.push((a.trim().parse().unwrap(), b.trim().parse().unwrap()));
    }
    Some(ranges)
}

#[test]
fn the_log_is_written_ahead_of_its_head_not_left_unwritten() {
    // fallocate leaves the log's blocks unwritten; a store into one makes the
    // next fdatasync also write the extent change. The writer writes zeros
    // a MiB ahead of the head, so syncing a record writes only the record.
    let d = fresh_dir();
    let o = opts(d.path(), Durability::Sync);
    let mut w = o.open(d.path().join("state")).unwrap();
    commit(&mut w, 1).unwrap();
    let Some(unwritten) = unwritten_extents(&d.path().join("state-wal")) else {
        return;
    };
    let ahead = (1 << 20) / PAGE as u64; // blocks
    for (first, last) in unwritten {
        assert!(
            first > ahead,
            "blocks {first}..={last} of the log are still unwritten, within a MiB of its start"
        );
    }
}
