//! A state through `Writer`, `Txn` and `Reader`: commits, aborts, readers,
//! the writer lock, and recovery after a SIGKILL at every numbered step of
//! the commit, checkpoint and recovery paths.
#![allow(clippy::many_single_char_names)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};

use mapstate::testing::Step;
use mapstate::{Error, Offset, Writer, WriterOptions};

fn opts(dir: &std::path::Path) -> WriterOptions {
    Writer::options()
        .create(true)
        .len(64 * 1024)
        .max_size(1 << 24)
        .live_dir(dir.join("shm"))
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, WriterOptions) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(dir.path().join("shm")).unwrap();
    let p = dir.path().join("state");
    let o = opts(dir.path());
    (dir, p, o)
}

/// One `Reader` in an `Arc` serves five threads (it reads through `&self`
/// and is `Send + Sync`): every read, of every kind, is of one commit.
#[test]
fn one_reader_serves_five_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<mapstate::Reader>();
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let r = std::sync::Arc::new(o.reader().open(&p).unwrap());
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Commit `c` writes `c` into eight words across a page boundary.
    let words: Vec<u64> = (0..8).map(|i| 4064 + 8 * i).collect();
    let threads: Vec<_> = (0..5)
        .map(|k| {
            let (r, done, words) = (r.clone(), done.clone(), words.clone());
            std::thread::spawn(move || {
                let (mut reads, mut last) = (0u64, 0u64);
                while !done.load(std::sync::atomic::Ordering::Relaxed) || reads < 100 {
                    let got: Vec<u64> = match k {
                        0 => {
                            let mut b = [0u8; 64];
                            r.read_at(4064, &mut b).unwrap();
                            b.chunks(8)
                                .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                                .collect()
                        }
                        1 => {
                            let (_, s) = r.snapshot().unwrap();
                            words
                                .iter()
                                .map(|&o| {
                                    let o = o as usize;
                                    u64::from_le_bytes(s[o..o + 8].try_into().unwrap())
                                })
                                .collect()
                        }
                        2 => {
                            let mut bufs = [[0u8; 8]; 8];
                            let mut reqs: Vec<(u64, &mut [u8])> = words
                                .iter()
                                .zip(bufs.iter_mut())
                                .map(|(&o, b)| (o, &mut b[..]))
                                .collect();
                            r.read_many(&mut reqs).unwrap();
                            bufs.iter().map(|b| u64::from_le_bytes(*b)).collect()
                        }
                        3 => {
                            let (seq, v) = r
                                .read_with(4064, 64, |b| {
                                    b.chunks(8)
                                        .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
                                        .collect::<Vec<_>>()
                                })
                                .unwrap();
                            assert_eq!(v[0], seq, "the closure saw another commit's bytes");
                            v
                        }
                        _ => {
                            let seq = r.seq();
                            let v = r.read::<[u64; 8]>(Offset::new(4064)).unwrap();
                            assert!(v[0] >= seq, "a read older than a seq seen before it");
                            v.to_vec()
                        }
                    };
                    assert!(got.iter().all(|&v| v == got[0]), "torn: {got:?}");
                    assert!(got[0] >= last, "went back from {last} to {}", got[0]);
                    last = got[0];
                    reads += 1;
                }
                (reads, last)
            })
        })
        .collect();
    for c in 1..=2000u64 {
        let mut t = w.begin();
        for &o in &words {
            t.write_at(o, &c.to_le_bytes()).unwrap();
        }
        assert_eq!(t.commit().unwrap(), c);
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in threads {
        let (reads, last) = t.join().unwrap();
        assert!(reads >= 100 && last <= 2000, "{reads} reads, last {last}");
    }
}

#[test]
fn commit_is_visible_and_abort_is_not() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(4090, b"across a page").unwrap();
    *t.get_mut::<u64>(Offset::new(8)).unwrap() = 42;
    assert_eq!(t.commit().unwrap(), 1);
    let mut buf = [0u8; 13];
    assert_eq!(r.read_at(4090, &mut buf).unwrap(), 1);
    assert_eq!(&buf, b"across a page");
    assert_eq!(r.read(Offset::<u64>::new(8)).unwrap(), 42);

    let mut t = w.begin();
    t.write_at(0, b"never").unwrap();
    t.as_mut_slice()[100] = 7;
    drop(t);
    let t = w.begin();
    let mut five = [0u8; 5];
    t.read_at(0, &mut five).unwrap();
    assert_eq!(
        five, [0; 5],
        "a dropped transaction's explicit change is gone from the view"
    );
    assert_eq!(
        t.as_slice()[100],
        0,
        "a dropped transaction's free store is gone from the view"
    );
    t.abort();
    assert_eq!(r.seq(), 1);
    r.read_at(0, &mut five).unwrap();
    assert_eq!(five, [0; 5]);
}

#[test]
fn free_stores_commit_atomically() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    let s = t.as_mut_slice();
    s[5] = 1;
    s[20_000] = 2;
    s[65_535] = 3;
    t.commit().unwrap();
    drop(w);
    let r = o.reader().open(&p).unwrap();
    let (_, snap) = r.snapshot().unwrap();
    assert_eq!((snap[5], snap[20_000], snap[65_535]), (1, 2, 3));
}

/// `slice_mut` hands out one range for free stores: they commit (with
/// explicit writes in the same transaction), an abort drops them, and a
/// range past the length is refused.
#[test]
fn free_stores_in_a_range_commit_and_abort() {
    const P: u64 = 4096;
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let len = w.len();
    let mut t = w.begin();
    let s = t.slice_mut(5 * P + 10..7 * P).unwrap();
    s[0] = 1;
    s[(P + 5) as usize] = 2;
    t.write_at(12, b"explicit").unwrap();
    let seq = t.commit().unwrap();
    let r = o.reader().open(&p).unwrap();
    let (got, snap) = r.snapshot().unwrap();
    assert_eq!(got, seq);
    assert_eq!((snap[5 * 4096 + 10], snap[6 * 4096 + 15]), (1, 2));
    assert_eq!(&snap[12..20], b"explicit");

    let mut t = w.begin();
    t.slice_mut(5 * P + 10..5 * P + 11).unwrap()[0] = 9;
    t.write_at(12, b"dropped!").unwrap();
    t.abort();
    let t = w.begin();
    assert_eq!(
        t.as_slice()[5 * 4096 + 10],
        1,
        "the abort dropped the store"
    );
    assert_eq!(&t.as_slice()[12..20], b"explicit");
    drop(t);
    let mut t = w.begin();
    assert!(matches!(
        t.slice_mut(len - 1..len + 1),
        Err(Error::OutOfBounds { .. })
    ));
    t.slice_mut(len..len).unwrap();
    assert_eq!(t.commit().unwrap(), seq, "nothing changed");
}

/// A transaction with free stores in a range that also shrinks the state:
/// the zeros the shrink wrote into the writer's view past the range are
/// not stores of a later extend-on-write transaction. (A scan of the whole
/// view used to take them with the free stores; a scan of the range alone
/// leaves them, and they must be forgotten.)
#[test]
fn a_shrink_beside_free_stores_in_a_range_is_not_a_later_store() {
    const P: u64 = 4096;
    let (_d, p, o) = setup();
    let mut w = o.clone().len(16 * P).max_size(64 * P).open(&p).unwrap();
    let mut t = w.begin();
    t.as_mut_slice()[0] = 1; // starts the write tracker
    t.commit().unwrap();
    let mut t = w.begin();
    t.slice_mut(0..100).unwrap()[50] = 5;
    t.set_len(P).unwrap();
    t.commit().unwrap();
    assert_eq!(w.len(), P);
    let mut t = w.begin();
    t.extend_on_write()[100] = 1;
    t.commit().unwrap();
    assert_eq!(w.len(), P, "the shrink's zeros are not stores");
}

/// Appends through `extend_on_write_from(end)`: each commit looks at the
/// pages from the old end on, and the state grows to the last page
/// written; explicit writes before the end in the same transaction commit
/// too; an offset past the maximum size is refused.
#[test]
fn appends_from_the_end_commit_each_record() {
    const P: u64 = 4096;
    let (_d, p, o) = setup();
    let mut w = o.clone().len(0).max_size(64 * P).open(&p).unwrap();
    let mut want = Vec::new();
    for k in 0..10u8 {
        let rec = vec![k + 1; P as usize];
        let mut t = w.begin();
        let end = t.len();
        t.extend_on_write_from(end).unwrap()[..rec.len()].copy_from_slice(&rec);
        if k > 0 {
            t.write_at(0, &[k]).unwrap();
            want[0] = k;
        }
        t.commit().unwrap();
        want.extend_from_slice(&rec);
        assert_eq!(w.len(), u64::from(k + 1) * P);
    }
    let r = o.reader().open(&p).unwrap();
    assert!(r.snapshot().unwrap().1 == want, "the records, in order");
    let mut t = w.begin();
    assert!(matches!(
        t.extend_on_write_from(64 * P + 1),
        Err(Error::OutOfBounds { .. })
    ));
    assert!(t.extend_on_write_from(64 * P).unwrap().is_empty());
}

/// `release_live_image(true)`: a clean close deletes the live image (its
/// memory goes back); a reader that still maps it reads the last commit
/// until a writer opens the state again, and is then told to open it
/// again; the next open rebuilds it from the files, every commit in it.
/// Without the option the image stays and the reopen keeps it.
#[test]
fn a_close_that_releases_the_live_image_loses_nothing() {
    let (_d, p, o) = setup();
    let mut w = o.clone().release_live_image(true).open(&p).unwrap();
    let live = w.files().live().to_path_buf();
    let mut t = w.begin();
    t.write_at(100, b"kept on disk").unwrap();
    let seq = t.commit().unwrap();
    let r = o.reader().open(&p).unwrap();
    w.close().unwrap();
    assert!(!live.exists(), "the live image is deleted");
    let mut b = [0u8; 12];
    assert_eq!(
        r.read_at(100, &mut b).unwrap(),
        seq,
        "no writer: the last commit"
    );
    let w = o.open(&p).unwrap();
    assert_eq!(
        w.live_image(),
        mapstate::LiveImage::Rebuilt(mapstate::Rebuilt::Missing)
    );
    assert_eq!(w.seq(), seq);
    assert!(
        matches!(r.read_at(100, &mut b), Err(Error::WriterNotVisible { why, .. }) if why.contains("replaced")),
        "a reader of the deleted image is told once a writer opens"
    );
    let r = o.reader().open(&p).unwrap();
    assert_eq!(r.read_at(100, &mut b).unwrap(), seq);
    assert_eq!(&b, b"kept on disk");
    w.close().unwrap();
    assert!(live.exists(), "by default the image stays");
    assert_eq!(o.open(&p).unwrap().live_image(), mapstate::LiveImage::Kept);
}

#[test]
fn growth_and_large_commits_survive_reopen() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.set_len(8 << 20).unwrap();
    let big: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    t.write_at(0, &big).unwrap();
    t.commit().unwrap();
    w.close().unwrap();
    let mut w = o.open(&p).unwrap();
    assert_eq!(w.len(), 8 << 20);
    let t = w.begin();
    assert!(t.as_slice() == &big[..]);
}

/// Aborting a transaction that grew the state and wrote past the old end
/// (where the writer has not mapped its live image yet) leaves the state as
/// it was, and the next transaction sees zeros there.
#[test]
fn abort_after_growth_restores_the_view() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let len = w.len();
    let mut t = w.begin();
    t.set_len(4 << 20).unwrap();
    t.write_at(3 << 20, b"dropped").unwrap();
    t.write_at(0, b"dropped too").unwrap();
    t.abort();
    assert_eq!(w.len(), len);
    let mut t = w.begin();
    t.set_len(4 << 20).unwrap();
    let mut b = [9u8; 11];
    t.read_at(3 << 20, &mut b).unwrap();
    assert_eq!(b, [0; 11]);
    t.read_at(0, &mut b).unwrap();
    assert_eq!(b, [0; 11]);
}

#[test]
fn second_writer_is_locked_with_pid() {
    let (_d, p, o) = setup();
    let _w = o.open(&p).unwrap();
    match o.open(&p) {
        Err(Error::Locked { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn bad_files_give_typed_errors() {
    let (d, p, o) = setup();
    std::fs::write(&p, b"hello, I am not a mapstate file at all, just text").unwrap();
    assert!(matches!(o.open(&p), Err(Error::Foreign { .. })));
    assert!(matches!(o.reader().open(&p), Err(Error::Foreign { .. })));
    let q = d.path().join("q");
    drop(o.open(&q).unwrap());
    let mut bytes = std::fs::read(&q).unwrap();
    bytes[100] ^= 0xff; // inside header slot 0
    std::fs::write(&q, &bytes).unwrap();
    assert!(
        matches!(o.open(&q), Err(Error::Corrupt { .. })),
        "one slot, damaged"
    );
    std::fs::write(&q, &bytes[..5000]).unwrap();
    assert!(matches!(
        o.clone().create(false).open(&q),
        Err(Error::Corrupt { .. } | Error::Truncated { .. })
    ));
    assert!(matches!(
        o.reader().open(d.path().join("missing")),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(o.open(d.path()), Err(Error::NotAFile { .. })));
}

/// The child side of the crash tests: commits transactions whose invariant
/// is "the three counters (on three pages, one crossing a page boundary)
/// and the free-store byte all agree", prints each returned commit.
fn child(path: &str, live: &str, step: u32, nth: u64) {
    let o = Writer::options()
        .create(true)
        .len(64 * 1024)
        .max_size(1 << 24)
        .live_dir(live);
    mapstate::testing::crash_at(Step::from_number(step).expect("a numbered step"), nth);
    let mut w = o.open(path).unwrap();
    let start = w.begin().get::<u64>(Offset::new(0)).copied().unwrap();
    for i in start + 1..start + 200 {
        let mut t = w.begin();
        t.write_at(0, &i.to_le_bytes()).unwrap();
        t.write_at(4092, &i.to_le_bytes()).unwrap();
        *t.get_mut::<u64>(Offset::new(40_000)).unwrap() = i;
        t.as_mut_slice()[60_000] = i as u8;
        t.commit().unwrap();
        println!("committed {i}");
        if i % 7 == 0 {
            w.checkpoint().unwrap();
        }
    }
}

fn check_state(p: &std::path::Path, o: &WriterOptions) -> u64 {
    let r = o.reader().open(p).unwrap();
    let (_, s) = r.snapshot().unwrap();
    let a = u64::from_le_bytes(s[0..8].try_into().unwrap());
    let b = u64::from_le_bytes(s[4092..4100].try_into().unwrap());
    let c = u64::from_le_bytes(s[40_000..40_008].try_into().unwrap());
    assert!(
        a == b && b == c && s[60_000] == a as u8,
        "torn state: {a} {b} {c} {}",
        s[60_000]
    );
    a
}

#[test]
fn crash_at_every_step_loses_nothing_and_never_tears() {
    if let Ok(args) = std::env::var("MAPSTATE_TEST_CHILD") {
        let v: Vec<&str> = args.split(',').collect();
        child(v[0], v[1], v[2].parse().unwrap(), v[3].parse().unwrap());
        return;
    }
    // Every step a commit or checkpoint reaches (recovery's is reached only
    // when there is something to replay).
    for step in Step::ALL
        .into_iter()
        .filter(|s| *s != Step::ReplayHalf)
        .map(Step::number)
    {
        for nth in [1, 3, 8] {
            let (d, p, o) = setup();
            let live = d.path().join("shm");
            let mut last = 0;
            // Two lives: the first is killed at the step; the second recovers and
            // is killed again, to cover crashes of a process that recovered.
            for _ in 0..2 {
                let mut c = Command::new(std::env::current_exe().unwrap())
                    .args([
                        "--exact",
                        "crash_at_every_step_loses_nothing_and_never_tears",
                        "--nocapture",
                    ])
                    .env(
                        "MAPSTATE_TEST_CHILD",
                        format!("{},{},{step},{nth}", p.display(), live.display()),
                    )
                    .stdout(Stdio::piped())
                    .spawn()
                    .unwrap();
                for line in BufReader::new(c.stdout.take().unwrap()).lines() {
                    if let Some(n) = line.unwrap().strip_prefix("committed ") {
                        last = n.parse().unwrap();
                    }
                }
                let st = c.wait().unwrap();
                assert_eq!(
                    st.signal(),
                    Some(9),
                    "step {step}/{nth}: the child should die at the step ({st:?})"
                );
                let seen = check_state(&p, &o);
                // A writer's open recovers (replays a complete record the
                // dead writer had not applied); its clean close checkpoints
                // every page recovery marked.
                drop(o.open(&p).unwrap());
                let got = check_state(&p, &o);
                assert!(
                    (seen == last || seen == last + 1) && (got == seen || got == last + 1),
                    "step {step}/{nth}: state {seen} then {got}, last returned {last}"
                );
                // With the live image gone (as after a reboot) the durable
                // image alone must hold the same state.
                for f in std::fs::read_dir(&live).unwrap() {
                    std::fs::remove_file(f.unwrap().path()).unwrap();
                }
                let rebuilt = check_state(&p, &o);
                assert_eq!(
                    rebuilt, got,
                    "step {step}/{nth}: the durable image after a checkpoint"
                );
                last = got;
            }
        }
    }
}

/// Bug 3 of the crash-soundness review: `snapshot` read the length, then
/// the bytes, in two steps, and so could return one commit's length with a
/// newer commit's bytes. Every commit here writes the state's length at
/// both ends of the state.
#[test]
fn a_snapshot_is_one_commits_length_and_bytes() {
    let (_d, p, o) = setup();
    let mut w = o.clone().max_size(1 << 20).open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let d2 = done.clone();
    let writer = std::thread::spawn(move || {
        for c in 1u64..=20_000 {
            // Lengths from 1 to 64 KiB, growing and shrinking.
            let len = 8 * (1 + (c * 7919) % 8192);
            let mut t = w.begin();
            t.set_len(len).unwrap();
            t.write_at(0, &len.to_le_bytes()).unwrap();
            t.write_at(len - 8, &len.to_le_bytes()).unwrap();
            t.commit().unwrap();
        }
        d2.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    let (mut snaps, mut bad) = (0u64, 0u64);
    while !done.load(std::sync::atomic::Ordering::Relaxed) {
        let (seq, s) = r.snapshot().unwrap();
        snaps += 1;
        if seq == 0 {
            continue;
        }
        let word = |o: usize| u64::from_le_bytes(s[o..o + 8].try_into().unwrap());
        if word(0) != s.len() as u64 || word(s.len() - 8) != s.len() as u64 {
            bad += 1;
        }
    }
    writer.join().unwrap();
    assert_eq!(bad, 0, "{bad} of {snaps} snapshots mixed two commits");
    assert!(snaps > 100, "only {snaps} snapshots");
}

/// Bug 4: a reader that was catching up from the log when the writer died
/// between publishing a commit and publishing the log position waited for
/// a new writer, for ever. Every read must return while no writer lives.
#[test]
fn reads_return_when_the_writer_dies_at_any_step() {
    if let Ok(args) = std::env::var("MAPSTATE_TEST_BUSY_CHILD") {
        let v: Vec<&str> = args.split(',').collect();
        let o = Writer::options().live_dir(v[1]);
        let mut w = o.open(v[0]).unwrap();
        mapstate::testing::crash_at(
            Step::from_number(v[2].parse().unwrap()).unwrap(),
            v[3].parse().unwrap(),
        );
        println!("ready");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        // Commits that change most of the state, back to back, so that
        // readers of the whole state must catch up from the log.
        let chunk = vec![0u8; 2 << 20];
        for c in 1u64.. {
            let mut t = w.begin();
            t.write_at(0, &c.to_le_bytes()).unwrap();
            t.write_at(8 << 20, &chunk).unwrap();
            t.write_at((16 << 20) - 8, &c.to_le_bytes()).unwrap();
            t.commit().unwrap();
        }
        return;
    }
    let (d, p, o) = setup();
    let o = o.max_size(16 << 20);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.set_len(16 << 20).unwrap();
    t.commit().unwrap();
    w.close().unwrap();
    let live = d.path().join("shm");
    for (round, step) in [Step::Visible, Step::Applied, Step::Published, Step::Visible]
        .into_iter()
        .enumerate()
    {
        let r = std::sync::Arc::new(o.reader().open(&p).unwrap());
        let reads = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (r, reads, stop) = (r.clone(), reads.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 << 20];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match r.read_at(0, &mut buf) {
                        Ok(_) | Err(Error::WriterDied { .. }) => {}
                        Err(e) => panic!("{e}"),
                    }
                    let word = |o: usize| u64::from_le_bytes(buf[o..o + 8].try_into().unwrap());
                    assert_eq!(word(0), word((16 << 20) - 8), "torn");
                    reads.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            })
        };
        let nth = 30 + 40 * round as u64;
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "reads_return_when_the_writer_dies_at_any_step",
                "--nocapture",
            ])
            .env(
                "MAPSTATE_TEST_BUSY_CHILD",
                format!("{},{},{},{nth}", p.display(), live.display(), step.number()),
            )
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let st = c.wait().unwrap();
        assert_eq!(st.signal(), Some(9), "{step:?}: {st:?}");
        // With no writer left, reads go on.
        let before = reads.load(std::sync::atomic::Ordering::Relaxed);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while reads.load(std::sync::atomic::Ordering::Relaxed) < before + 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{step:?}: a reader made no progress for 2 s with no writer alive"
            );
            std::thread::yield_now();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().unwrap();
        // Recover before the next round.
        drop(o.open(&p).unwrap());
    }
}

/// Bug 6: pages a shrink zeroed in the writer's view were still reported
/// written by the write tracker, so a later extend-on-write commit took
/// them as its own stores and grew the state past the one page it wrote.
#[test]
fn extend_on_write_after_a_shrink_grows_only_as_far_as_it_wrote() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.set_len(16384).unwrap();
    t.as_mut_slice()[12_000] = 1;
    t.commit().unwrap();
    let mut t = w.begin();
    t.set_len(4096).unwrap();
    t.commit().unwrap();
    let mut t = w.begin();
    t.extend_on_write()[100] = 1;
    t.commit().unwrap();
    assert_eq!(w.len(), 4096);
    // And an explicit write since is not counted either.
    let mut t = w.begin();
    t.set_len(3 * 4096).unwrap();
    t.write_at(2 * 4096 + 5, b"x").unwrap();
    t.commit().unwrap();
    let mut t = w.begin();
    t.extend_on_write()[200] = 2;
    t.commit().unwrap();
    assert_eq!(w.len(), 3 * 4096, "a free store within the length keeps it");
}

/// Found by `mapstate torture`: with the write tracker running (a free
/// store earlier), a growth then a shrink then an extend-on-write store set
/// the length back to the growth's (the shrink's zeros past what the
/// tracker covered stayed counted as written).
#[test]
fn extend_on_write_after_a_growth_and_a_shrink_is_exact() {
    const P: u64 = 4096;
    let (_d, p, o) = setup();
    let mut w = o.clone().len(1024 * P).max_size(2048 * P).open(&p).unwrap();
    let mut t = w.begin();
    t.as_mut_slice()[0] = 1; // starts the write tracker
    t.commit().unwrap();
    let mut t = w.begin();
    t.set_len(2005 * P).unwrap();
    t.commit().unwrap();
    let mut t = w.begin();
    t.set_len(950 * P).unwrap();
    t.commit().unwrap();
    let mut t = w.begin();
    t.extend_on_write()[(1011 * P) as usize] = 7;
    t.commit().unwrap();
    assert_eq!(
        w.len() / P,
        1012,
        "the length follows the store, not the old growth"
    );
}

/// Bug 11: a shrink logged the bytes it cut off as zeros (a 4 GiB state cut
/// to 4 KiB made a commit too large for the log, which poisoned the
/// writer). A shrink's record now only says where the zeros are.
#[test]
fn a_shrink_is_a_small_record() {
    let (_d, p, o) = setup();
    let mut w = o
        .clone()
        .max_size(64 << 20)
        .log_size(1 << 20)
        .open(&p)
        .unwrap();
    let mut t = w.begin();
    t.set_len(64 << 20).unwrap();
    t.write_at((64 << 20) - 5, b"bytes").unwrap();
    t.commit().unwrap();
    w.checkpoint().unwrap();
    let mut t = w.begin();
    t.set_len(4096).unwrap();
    t.commit().unwrap();
    assert!(w.log_bytes() < 1024, "{} bytes of log", w.log_bytes());
    let mut t = w.begin();
    t.set_len(64 << 20).unwrap();
    let mut b = [9u8; 5];
    t.read_at((64 << 20) - 5, &mut b).unwrap();
    assert_eq!(b, [0; 5], "the shrink's zeros in the view");
    t.commit().unwrap();
    drop(w);
    // After a reboot (the log replayed from the checkpoint) as well.
    for f in std::fs::read_dir(p.parent().unwrap().join("shm")).unwrap() {
        std::fs::remove_file(f.unwrap().path()).unwrap();
    }
    let r = o.reader().open(&p).unwrap();
    r.read_at((64 << 20) - 5, &mut b).unwrap();
    assert_eq!(b, [0; 5], "the shrink's zeros after a rebuild");
}

/// Bug 11: a full disk while a checkpoint wrote its journal came back as an
/// I/O error and poisoned the writer, though nothing durable had changed.
/// It is `NoSpace` now, and once there is room again the writer goes on.
#[test]
fn a_full_disk_in_a_checkpoint_is_no_space_and_not_sticky() {
    if !common::is_root() {
        common::skip(
            "a_full_disk_in_a_checkpoint_is_no_space_and_not_sticky",
            "needs root (mount)",
        );
        return;
    }
    let (d, _, o) = setup();
    let mnt = d.path().join("small");
    let _m = common::Mount::new(&["-t", "tmpfs", "-o", "size=2m", "tmpfs"], &mnt).unwrap();
    let p = mnt.join("state");
    let mut w = o
        .clone()
        .len(64 << 10)
        .max_size(64 << 10)
        .log_size(64 << 10)
        .open(&p)
        .unwrap();
    // Leave less room than a journal needs.
    let free = rustix::fs::statvfs(&mnt).unwrap();
    let room = free.f_bavail * free.f_frsize;
    std::fs::write(mnt.join("filler"), vec![1u8; (room - 8192) as usize]).unwrap();
    let mut full = None;
    for c in 0u64..1000 {
        let mut t = w.begin();
        t.write_at((c % 15) * 4096, &[c as u8; 4096]).unwrap();
        match t.commit() {
            Ok(_) => {}
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    let e = full.expect("the log filled and its checkpoint met the full disk");
    assert!(matches!(e, Error::NoSpace { .. }), "{e}");
    std::fs::remove_file(mnt.join("filler")).unwrap();
    let mut t = w.begin();
    t.write_at(0, b"again").unwrap();
    t.commit().expect("not poisoned");
    w.checkpoint().unwrap();
    w.remove().unwrap();
}

#[test]
fn sigterm_in_the_middle_of_a_large_commit_waits_for_it() {
    if let Ok(args) = std::env::var("MAPSTATE_TEST_TERM_CHILD") {
        let v: Vec<&str> = args.split(',').collect();
        let o = Writer::options()
            .create(true)
            .len(64 << 20)
            .max_size(1 << 27)
            .live_dir(v[1]);
        let mut w = o.open(v[0]).unwrap();
        // SIGTERM arrives half-way through copying the ranges into the live image.
        mapstate::testing::signal_at(Step::ApplyHalf, 1, 15);
        let mut t = w.begin();
        for i in 0..64u64 {
            t.write_at(i << 20, &vec![0xAB; 1 << 20]).unwrap();
        }
        let seq = t.commit().unwrap();
        println!("committed {seq}");
        // The deferred SIGTERM takes effect here, when the commit's guard drops.
        println!("still alive");
        return;
    }
    let (d, p, o) = setup();
    let live = d.path().join("shm");
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigterm_in_the_middle_of_a_large_commit_waits_for_it",
            "--nocapture",
        ])
        .env(
            "MAPSTATE_TEST_TERM_CHILD",
            format!("{},{}", p.display(), live.display()),
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.signal(),
        Some(15),
        "the child dies of SIGTERM: {:?} {stdout}",
        out.status
    );
    assert!(
        !stdout.contains("still alive"),
        "it dies right after the commit: {stdout}"
    );
    let r = o.reader().open(&p).unwrap();
    assert_eq!(r.seq(), 1, "the commit completed");
    let mut buf = vec![0u8; 1 << 20];
    r.read_at(63 << 20, &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0xAB));
}

#[test]
fn long_reads_are_not_starved_by_a_busy_writer() {
    let (_d, p, o) = setup();
    let len: u64 = 64 << 20;
    let o = o.max_size(len);
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.set_len(len).unwrap();
    t.commit().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    // Commits back to back: each writes its sequence number at both ends.
    let writer = std::thread::spawn(move || {
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let mut t = w.begin();
            let seq = w_seq_next(&t);
            t.write_at(0, &seq.to_le_bytes()).unwrap();
            t.write_at(len - 8, &seq.to_le_bytes()).unwrap();
            t.write_at(((seq * 4096) % (len - 4096)) & !7, &seq.to_le_bytes())
                .unwrap();
            t.commit().unwrap();
            n += 1;
        }
        n
    });
    let r = o.reader().open(&p).unwrap();
    let started = std::time::Instant::now();
    let mut buf = vec![0u8; len as usize];
    for _ in 0..5 {
        let seq = r.read_at(0, &mut buf).unwrap();
        let head = u64::from_le_bytes(buf[..8].try_into().unwrap());
        let tail = u64::from_le_bytes(buf[buf.len() - 8..].try_into().unwrap());
        assert_eq!((head, tail), (seq, seq), "one consistent state");
    }
    let elapsed = started.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let commits = writer.join().unwrap();
    eprintln!("5 reads of 64 MiB in {elapsed:?} while the writer made {commits} commits");
    assert!(commits > 100, "the writer kept committing ({commits})");
    assert!(
        elapsed < std::time::Duration::from_secs(30),
        "5 reads of 64 MiB took {elapsed:?}"
    );
}

/// The sequence number the open transaction will commit as (its state's
/// first word holds the previous one, or 1 for the length-setting commit).
fn w_seq_next(t: &mapstate::Txn<'_>) -> u64 {
    let mut b = [0u8; 8];
    t.read_at(0, &mut b).unwrap();
    u64::from_le_bytes(b).max(1) + 1
}

#[test]
fn a_waiter_is_woken_by_each_commit() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let mut seen = r.seq();
    let waiter = std::thread::spawn(move || {
        let mut got = Vec::new();
        while seen < 50 {
            seen = r
                .wait_for_change(seen, Some(std::time::Duration::from_secs(20)))
                .unwrap()
                .expect("a commit within 20 s");
            let mut b = [0u8; 8];
            r.read_at(0, &mut b).unwrap();
            got.push((seen, u64::from_le_bytes(b)));
        }
        got
    });
    for i in 1..=50u64 {
        let mut t = w.begin();
        t.write_at(0, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    let got = waiter.join().unwrap();
    assert_eq!(
        got.last().map(|g| g.0),
        Some(50),
        "the waiter saw the last commit"
    );
    assert!(
        got.iter().all(|&(seq, v)| v >= seq),
        "each wake-up reads a state at least that new"
    );
}

/// A process forked by another thread holds a copy of the writer's lock
/// descriptor until it execs: closing and reopening the writer meanwhile must
/// not fail with `Locked`.
#[test]
fn reopen_while_another_thread_spawns_processes() {
    let (_d, p, o) = setup();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spawner = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                Command::new("true").status().unwrap();
                n += 1;
            }
            n
        })
    };
    for i in 0..300u32 {
        let mut w = o.open(&p).unwrap_or_else(|e| panic!("reopen {i}: {e}"));
        let mut t = w.begin();
        t.write_at(0, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
        w.close().unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(spawner.join().unwrap() > 0);
}

/// The checkpoint journal gets the durable file's permission bits (not the
/// umask's), so whoever may read the state may read its journal, and nobody
/// else.
#[test]
fn the_journal_has_the_durable_files_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    for mode in [0o600, 0o640] {
        let (d, p, o) = setup();
        let o = o.mode(mode);
        let mut w = o.open(&p).unwrap();
        let mut t = w.begin();
        t.write_at(0, b"x").unwrap();
        t.commit().unwrap();
        w.checkpoint().unwrap();
        let journal = d.path().join("state-ckpt");
        let got = std::fs::metadata(&journal).unwrap().permissions().mode() & 0o777;
        assert_eq!(got, mode, "journal mode {got:o}, durable file {mode:o}");
    }
}

/// A writer whose live image this reader does not map (here: another live
/// directory, as a container with its own `/dev/shm` has) is noticed at
/// the reader's next read: its open moves the durable file's handover
/// counter, which every read compares. The check used to be rate-limited
/// by a clock read on every read while no writer was alive (a fifth of
/// `read_at`'s time), and for up to 10 ms reads gave the old state: here a
/// thread reads without pause while another opens the writer and commits,
/// and no read that starts after the commit returned may succeed.
#[test]
fn a_writer_with_another_live_image_is_noticed_at_the_next_read() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let (d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let there = Writer::options().live_dir(&elsewhere);
    // The writer's live image exists there already: its next open is fast
    // (no rebuild, no checkpoint), well inside the old 10 ms.
    there.open(&p).unwrap().close().unwrap();
    let r = o.reader().open(&p).unwrap();
    let committed = AtomicBool::new(false);
    std::thread::scope(|s| {
        let reads = s.spawn(|| {
            let mut b = [0u8; 8];
            loop {
                let after = committed.load(Ordering::SeqCst);
                match r.read_at(0, &mut b) {
                    Ok(seq) => assert!(!after, "commit {seq} read after a commit it cannot see"),
                    Err(Error::WriterNotVisible { .. }) => return,
                    Err(e) => panic!("{e}"),
                }
            }
        });
        // Let the reads run a while first.
        for _ in 0..3 {
            std::thread::yield_now();
        }
        let mut w = there.open(&p).unwrap();
        assert_eq!(w.live_image(), mapstate::LiveImage::Kept);
        let mut t = w.begin();
        t.write_at(0, b"unseen!!").unwrap();
        t.commit().unwrap();
        committed.store(true, Ordering::SeqCst);
        reads.join().unwrap();
        drop(w);
    });
}

/// The same writer, but it opens, commits and closes between two reads of
/// a reader that maps another live image: at the next read no writer is
/// alive any more, and the reader compares its image with the durable
/// file, which its close checkpointed. Before, that read gave the old state
/// (and so did every later one).
#[test]
fn a_writer_with_another_live_image_that_closed_is_noticed_at_the_next_read() {
    let (d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let r = o.reader().open(&p).unwrap();
    let mut b = [0u8; 8];
    r.read_at(0, &mut b).unwrap();
    let elsewhere = d.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    let mut w = Writer::options().live_dir(&elsewhere).open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(0, b"unseen!!").unwrap();
    t.commit().unwrap();
    w.close().unwrap();
    assert!(
        matches!(r.read_at(0, &mut b), Err(Error::WriterNotVisible { .. })),
        "the read gave {b:?}"
    );
}

/// A child forked while a writer is open holds copies of the writer's
/// descriptors until it execs (`std::process::Command` forks from any
/// thread). The writer closes and a new one opens in that moment, then the
/// child execs. The new writer must still be seen as the writer of the live
/// image readers map. Before, the lock on the live image that marks it as
/// the writer's stayed with the child's copy, the new writer could not take
/// it, and once the child exec'd no lock was left: readers were told the
/// writer's live image was not theirs (`WriterNotVisible`), once in about a
/// thousand cases of `corrupt_files`.
#[test]
#[allow(unsafe_code)] // `pre_exec`: the only way to hold a child between fork and exec
fn a_child_forked_by_a_closed_writer_does_not_hide_the_next_writer() {
    use std::io::{Read, Write};
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;
    let (_d, p, o) = setup();
    let w = o.open(&p).unwrap();
    let (mut forked_r, forked_w) = std::io::pipe().unwrap();
    let (go_r, mut go_w) = std::io::pipe().unwrap();
    let (fw, gr) = (OwnedFd::from(forked_w), OwnedFd::from(go_r));
    let (fw_fd, gr_fd) = (fw.as_raw_fd(), gr.as_raw_fd());
    let mut cmd = std::process::Command::new("true");
    let between_fork_and_exec = move || {
        let mut b = [0u8; 1];
        // SAFETY: writes one byte from `b` to a descriptor this test owns
        // (open until the child has exec'd).
        unsafe { libc::write(fw_fd, b.as_ptr().cast(), 1) };
        // SAFETY: reads at most one byte into `b`, from a descriptor this
        // test owns.
        unsafe { libc::read(gr_fd, b.as_mut_ptr().cast(), 1) };
        Ok(())
    };
    // SAFETY: between fork and exec the closure only calls write(2) and
    // read(2), both async-signal-safe, and allocates nothing.
    unsafe { cmd.pre_exec(between_fork_and_exec) };
    // `spawn` returns only once the child has exec'd.
    let spawned = std::thread::spawn(move || cmd.spawn().unwrap().wait().unwrap());
    let mut b = [0u8; 1];
    forked_r.read_exact(&mut b).unwrap();
    // The child is forked and holds the writer's descriptors.
    w.close().unwrap();
    let mut w = o.open(&p).unwrap();
    go_w.write_all(b"x").unwrap();
    assert!(spawned.join().unwrap().success());
    drop((fw, gr));
    // The child exec'd: only the new writer's locks are left.
    let r = o.reader().open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(0, b"seen").unwrap();
    let seq = t.commit().unwrap();
    let mut got = [0u8; 4];
    assert_eq!(r.read_at(0, &mut got).unwrap(), seq);
    assert_eq!(&got, b"seen");
}

/// Takes an exclusive OFD lock on `byte` of `f` (as a writer does on the
/// durable file: byte 0 the writer lock, byte 1 the build lock).
#[allow(unsafe_code)] // fcntl(F_OFD_SETLK): the locks a writer takes, by hand
fn ofd_lock(f: &std::fs::File, byte: i64) {
    use std::os::fd::AsRawFd;
    // SAFETY: all-zero bytes are a valid `flock`; the fields are set below.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: F_OFD_SETLK reads one valid `flock` that outlives the call.
    let r = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_OFD_SETLK, &raw const fl) };
    assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
}

/// A writer that is opening holds the writer lock a moment before it takes
/// the build lock; on a loaded machine that moment can last. A reader that
/// opens (or whose handover counter moved) then must wait for the build
/// lock, not conclude that the writer's live image is another one. Before,
/// it looked twice, 2 ms apart, and failed with `WriterNotVisible` (a
/// waiter in tests/notify.rs, once, under load). Here the "writer" takes
/// the build lock 10 ms after the writer lock.
#[test]
fn a_reader_waits_for_a_writer_between_its_two_locks() {
    let (_d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    ofd_lock(&f, 0);
    std::thread::scope(|s| {
        let opened = s.spawn(|| o.reader().open(&p).map(drop));
        std::thread::sleep(std::time::Duration::from_millis(10));
        ofd_lock(&f, 1);
        opened.join().unwrap().unwrap();
    });
}

/// Creating a state in a directory that does not exist named the state's
/// path, not the directory to make.
#[test]
fn creating_in_a_missing_directory_names_the_directory() {
    let d = tempfile::tempdir().unwrap();
    let missing = d.path().join("missing");
    let path = missing.join("dir").join("state");
    let e = Writer::options().create(true).open(&path).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { path } if *path == missing),
        "{e:?}"
    );
    assert!(e.to_string().contains("mkdir -p"), "{e}");
    // A missing state in a directory that exists names the state.
    let state = d.path().join("state");
    let e = Writer::open(&state).unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { path } if *path == state),
        "{e:?}"
    );
    assert!(!missing.exists());
}

/// A create that fails on its options (a length above the maximum size,
/// given or default; a maximum past what can be reserved) leaves no file
/// behind (issue 15 reported a 0-byte durable file; this shows it holds).
#[test]
fn a_create_with_bad_options_leaves_no_file() {
    let (d, p, o) = setup();
    let e = o.clone().len(2 << 24).open(&p).unwrap_err();
    assert!(e.to_string().contains("maximum"), "{e:?}");
    let e = o.clone().max_size(u64::MAX).open(&p).unwrap_err();
    assert!(!e.to_string().is_empty());
    let e = Writer::options()
        .create(true)
        .live_dir(d.path().join("shm"))
        .len(1 << 40)
        .open(&p)
        .unwrap_err();
    assert!(matches!(e, Error::InvalidSize { .. }), "{e:?}");
    let left: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "shm")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(std::fs::read_dir(d.path().join("shm")).unwrap().count(), 0);
    // And the same path then creates fine.
    drop(o.open(&p).unwrap());
}

/// `max_size` on an existing state changes its maximum (it was silently
/// ignored): raised, the state grows past the old maximum, a reopen and a
/// new reader see the new one, and a reader opened before is told to reopen
/// when it reads past what it reserved.
#[test]
fn max_size_on_reopen_raises_the_maximum() {
    let (_d, p, o) = setup();
    drop(o.clone().max_size(1 << 20).open(&p).unwrap());
    let early = o.reader().open(&p).unwrap();
    let mut w = o.clone().create(false).max_size(4 << 20).open(&p).unwrap();
    assert_eq!(w.max_size(), 4 << 20);
    let mut t = w.begin();
    t.set_len(3 << 20).unwrap();
    t.write_at((3 << 20) - 4, b"tail").unwrap();
    t.commit().unwrap();
    // Killed, in effect (no close): the new maximum is on disk already,
    // and recovery replays the commit past the old one.
    std::mem::forget(w);
    let r = o.reader().open(&p).unwrap();
    let mut b = [0u8; 4];
    r.read_at((3 << 20) - 4, &mut b).unwrap();
    assert_eq!(&b, b"tail");
    // The reader opened before reads on inside what it reserved, and is
    // told to reopen past it.
    let mut buf = [0u8; 4];
    assert_eq!(early.read_at(0, &mut buf).unwrap(), 1);
    let e = early.read_at((3 << 20) - 4, &mut buf).unwrap_err();
    assert!(
        matches!(&e, Error::WriterNotVisible { why, .. } if why.contains("maximum size was raised")),
        "{e:?}"
    );
}

#[test]
fn max_size_on_reopen_never_lowers_the_maximum() {
    let (d, p, o) = setup();
    drop(o.clone().max_size(1 << 20).open(&p).unwrap());
    // Options shared with the code that created it, or smaller: unchanged.
    let w = o.clone().create(false).max_size(4096).open(&p).unwrap();
    assert_eq!(w.max_size(), 1 << 20);
    drop(w);
    let plain = Writer::options().live_dir(d.path().join("shm"));
    assert_eq!(plain.open(&p).unwrap().max_size(), 1 << 20);
}
