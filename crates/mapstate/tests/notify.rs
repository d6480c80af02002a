//! Change notification: ranges per commit, missed commits, in-process
//! subscriptions, no lost wake-ups across processes with kills, and idle
//! waiters that use no CPU.

#![allow(clippy::many_single_char_names, clippy::single_range_in_vec_init)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mapstate::{Event, Options, Reader, Watcher, Writer};

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Options) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(dir.path().join("live")).unwrap();
    let p = dir.path().join("state");
    let o = Options::new()
        .create(true)
        .len(1 << 16)
        .max_size(1 << 20)
        .live_dir(dir.path().join("live"));
    (dir, p, o)
}

fn changes(events: &[Event]) -> Vec<(u64, Vec<std::ops::Range<u64>>, bool)> {
    events
        .iter()
        .map(|e| match e {
            Event::Change(c) => (c.seq, c.ranges.clone(), c.widened),
            Event::Missed { .. } => panic!("unexpected miss: {e:?}"),
        })
        .collect()
}

#[test]
fn each_change_carries_its_ranges() {
    let (_d, p, o) = setup();
    let mut w = Writer::open(&p, &o).unwrap();
    let r = Reader::open_with(&p, &o).unwrap();
    let mut t = w.begin();
    t.write_at(100, &[1; 10]).unwrap();
    t.commit().unwrap();
    let mut t = w.begin();
    for i in 0..5 {
        t.write_at(1000 * i + 7, &[2; 3]).unwrap();
    }
    t.commit().unwrap();
    let mut t = w.begin();
    t.set_len(1 << 17).unwrap();
    t.commit().unwrap();
    assert_eq!(
        changes(&r.changes_since(0)),
        vec![
            (1, vec![100..110], false),
            (2, vec![7..4010], true),
            (3, vec![(1 << 16)..(1 << 17)], false),
        ]
    );
    assert_eq!(r.changes_since(3), vec![]);
}

#[test]
fn a_reader_that_falls_behind_is_told_what_it_missed() {
    let (_d, p, o) = setup();
    let mut w = Writer::open(&p, &o).unwrap();
    let r = Reader::open_with(&p, &o).unwrap();
    for i in 0..100u64 {
        let mut t = w.begin();
        t.write_at(i * 8, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    let ev = r.changes_since(0);
    let Event::Missed { first: 1, last } = ev[0] else {
        panic!("{:?}", ev[0])
    };
    assert_eq!(
        ev.len() as u64,
        1 + 100 - last,
        "one miss, then one event per commit still in the ring"
    );
    assert_eq!(ev.last().unwrap().seq(), 100);
    for (k, e) in ev[1..].iter().enumerate() {
        let seq = last + 1 + k as u64;
        assert_eq!(
            e,
            &Event::Change(mapstate::Change {
                seq,
                ranges: vec![(seq - 1) * 8..seq * 8],
                widened: false
            })
        );
    }
}

#[test]
fn subscriptions_get_the_commits_that_touch_their_range() {
    let (_d, p, o) = setup();
    let mut w = Writer::open(&p, &o).unwrap();
    let watcher = Watcher::spawn(&p, &o).unwrap();
    let low = watcher.subscribe(0..100);
    let high = watcher.subscribe(1000..2000);
    for (i, off) in [(1u64, 10), (2, 1500), (3, 50), (4, 5000)] {
        let mut t = w.begin();
        t.write_at(off, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    let got = |rx: &std::sync::mpsc::Receiver<Event>, n: usize| {
        (0..n)
            .map(|_| rx.recv_timeout(Duration::from_secs(10)).unwrap().seq())
            .collect::<Vec<_>>()
    };
    assert_eq!(got(&low, 2), vec![1, 3]);
    assert_eq!(got(&high, 1), vec![2]);
    let t = Instant::now();
    drop(watcher);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "dropping the watcher stops its thread"
    );
    assert!(low.try_recv().is_err(), "commit 4 touched neither range");
}

/// Child roles for the cross-process tests.
fn child() -> Option<()> {
    let role = std::env::var("MAPSTATE_NOTIFY_CHILD").ok()?;
    let args: Vec<String> = role.split(',').map(str::to_owned).collect();
    let o = Options::new().live_dir(&args[2]);
    match args[0].as_str() {
        // Waits until it has seen commit `target`, printing what it sees.
        "waiter" => {
            let r = Reader::open_with(&args[1], &o).unwrap();
            let target: u64 = args[3].parse().unwrap();
            let mut seen = r.seq();
            println!("ready {seen}");
            while seen < target {
                seen = r.wait_for_change(seen, None);
                println!("saw {seen}");
                std::io::stdout().flush().unwrap();
            }
            println!("done {seen}");
        }
        // Commits forever (until killed), a commit every so often.
        "writer" => {
            let mut w = Writer::open(&args[1], &o.wait_for_lock(true)).unwrap();
            println!("ready {}", w.seq());
            loop {
                let mut t = w.begin();
                let s = t.len();
                t.write_at(0, &s.to_le_bytes()).unwrap();
                t.commit().unwrap();
                std::io::stdout().flush().unwrap();
            }
        }
        // Sleeps in wait_for_change for a long time (the CPU check).
        "idle" => {
            let r = Reader::open_with(&args[1], &o).unwrap();
            println!("ready");
            r.wait_for_change(r.seq(), Some(Duration::from_secs(30)));
        }
        _ => unreachable!(),
    }
    Some(())
}

fn spawn(test: &str, role: &str) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            test,
            "--nocapture",
            "--test-threads=1",
            "--include-ignored",
        ])
        .env("MAPSTATE_NOTIFY_CHILD", role)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(c.stdout.take().unwrap());
    (c, out)
}

fn line_starting(out: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let mut l = String::new();
    loop {
        l.clear();
        assert!(
            out.read_line(&mut l).unwrap() > 0,
            "child ended before printing {prefix:?}"
        );
        // libtest may print "test NAME ... " before the child's first line.
        if let Some(at) = l.find(prefix) {
            return l[at..].trim().to_owned();
        }
    }
}

#[test]
#[ignore = "open: a waiter stays asleep after writers were killed mid-commit (lost wake-up under investigation)"]
fn no_waiter_sleeps_through_a_commit_across_processes_and_kills() {
    const T: &str = "no_waiter_sleeps_through_a_commit_across_processes_and_kills";
    if child().is_some() {
        return;
    }
    let (d, p, o) = setup();
    drop(Writer::open(&p, &o).unwrap());
    let live = d.path().join("live");
    let arg =
        |role: &str, target: u64| format!("{role},{},{},{target}", p.display(), live.display());
    let target = 1_000_000_000; // waiters never finish on their own; we check progress
    let mut waiters: Vec<_> = (0..4).map(|_| spawn(T, &arg("waiter", target))).collect();
    for (_, out) in &mut waiters {
        line_starting(out, "ready");
    }
    let mut rng = 0x2545_F491_u64;
    for round in 0..20 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // A writer commits back to back and is killed at a random moment,
        // often in the middle of a commit.
        let (mut w, mut out) = spawn(T, &arg("writer", 0));
        line_starting(&mut out, "ready");
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(200 + rng % 5000) {
            std::hint::spin_loop();
        }
        w.kill().unwrap();
        w.wait().unwrap();
        // Now and then a waiter dies in its wait, and a new one takes its place.
        if round % 4 == 3 {
            let (mut c, _) = waiters.remove((rng % waiters.len() as u64) as usize);
            c.kill().unwrap();
            c.wait().unwrap();
            let mut n = spawn(T, &arg("waiter", target));
            line_starting(&mut n.1, "ready");
            waiters.push(n);
        }
    }
    // A last writer's commit must wake every live waiter: each must report
    // a sequence number at least as new as that commit.
    let mut w = Writer::open(&p, &o).unwrap();
    let mut t = w.begin();
    t.write_at(8, b"last").unwrap();
    let last = t.commit().unwrap();
    for (c, out) in &mut waiters {
        loop {
            let l = line_starting(out, "saw ");
            let seen: u64 = l["saw ".len()..].parse().unwrap();
            if seen >= last {
                break;
            }
        }
        c.kill().unwrap();
        c.wait().unwrap();
    }
}

fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of stat(5), utime and stime, are 12 and 13 after the name.
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[test]
fn an_idle_waiter_uses_no_cpu() {
    const T: &str = "an_idle_waiter_uses_no_cpu";
    if child().is_some() {
        return;
    }
    let (d, p, o) = setup();
    drop(Writer::open(&p, &o).unwrap());
    let role = format!("idle,{},{},0", p.display(), d.path().join("live").display());
    let (mut c, mut out) = spawn(T, &role);
    line_starting(&mut out, "ready");
    let before = cpu_ticks(c.id());
    // How long the waiter is watched, not a synchronisation.
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(c.id()) - before;
    c.kill().unwrap();
    c.wait().unwrap();
    assert_eq!(used, 0, "an idle waiter used {used} clock ticks in 3 s");
}
