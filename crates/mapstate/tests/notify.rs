//! Change notification: ranges per commit, missed commits, in-process
//! subscriptions, no lost wake-ups across processes with kills, and idle
//! waiters that use no CPU.

#![allow(clippy::many_single_char_names, clippy::single_range_in_vec_init)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mapstate::{Event, Watcher, Writer};

mod common;
use common::small_state as setup;

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
    let mut w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
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
    // A write into the bytes a growth adds is one range, not the growth and
    // the write (it was listed twice); ranges come sorted.
    let mut t = w.begin();
    t.set_len((1 << 17) + 8).unwrap();
    t.write_at(1 << 17, &[3; 8]).unwrap();
    t.write_at(5, &[3; 1]).unwrap();
    t.commit().unwrap();
    assert_eq!(
        changes(&r.changes_since(0)),
        vec![
            (1, vec![100..110], false),
            (2, vec![7..4010], true),
            (3, vec![(1 << 16)..(1 << 17)], false),
            (4, vec![5..6, (1 << 17)..(1 << 17) + 8], false),
        ]
    );
    assert_eq!(r.changes_since(4), vec![]);
}

#[test]
fn a_reader_that_falls_behind_is_told_what_it_missed() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
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
    let mut w = o.open(&p).unwrap();
    let watcher = o.reader().open(&p).and_then(Watcher::new).unwrap();
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

/// Whether thread `tid` of this process is asleep in `futex` on `addr`.
fn asleep_on(tid: i32, addr: usize) -> bool {
    let Ok(s) = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")) else {
        return false;
    };
    let mut f = s.split_whitespace();
    f.next() == Some(libc::SYS_futex.to_string().as_str())
        && f.next()
            .and_then(|a| usize::from_str_radix(a.trim_start_matches("0x"), 16).ok())
            == Some(addr)
}

#[test]
fn one_commit_wakes_every_sleeping_waiter() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let r = std::sync::Arc::new(o.reader().open(&p).unwrap());
    // The notification word: at byte 128 of the live header, the page
    // before the data.
    let word = r.as_ptr() as usize - 4096 + 128;
    let (tx, woke) = mpsc::channel();
    let tids: Vec<i32> = (0..4)
        .map(|_| {
            let (r, tx) = (r.clone(), tx.clone());
            let (tid_tx, tid) = mpsc::channel();
            std::thread::spawn(move || {
                tid_tx.send(rustix::thread::gettid().as_raw_pid()).unwrap();
                let _ = tx.send(r.wait_for_change(0, Some(Duration::from_secs(60))).unwrap());
            });
            tid.recv().unwrap()
        })
        .collect();
    // Commit only once every waiter sleeps in FUTEX_WAIT on the word.
    let deadline = Instant::now() + STEP;
    while !tids.iter().all(|&t| asleep_on(t, word)) {
        assert!(Instant::now() < deadline, "the waiters never went to sleep");
        std::thread::yield_now();
    }
    let mut t = w.begin();
    t.write_at(0, b"wake").unwrap();
    assert_eq!(t.commit().unwrap(), 1);
    for i in 0..tids.len() {
        let seen = woke.recv_timeout(STEP).unwrap_or_else(|_| {
            panic!(
                "{i} of {} waiters woke; one commit must wake all",
                tids.len()
            )
        });
        assert_eq!(seen, Some(1));
    }
}

/// Child roles for the cross-process tests.
fn child() -> Option<()> {
    let role = std::env::var("MAPSTATE_NOTIFY_CHILD").ok()?;
    let args: Vec<String> = role.split(',').map(str::to_owned).collect();
    let o = Writer::options().live_dir(&args[2]);
    match args[0].as_str() {
        // Waits until it has seen commit `target`, printing what it sees.
        "waiter" => {
            let r = o.reader().open(&args[1]).unwrap();
            let target: u64 = args[3].parse().unwrap();
            let mut seen = r.seq();
            println!("ready {seen}");
            while seen < target {
                seen = match r.wait_for_change(seen, None) {
                    Ok(s) => s.expect("no timeout"),
                    Err(e) => {
                        println!("failed: {e:?}");
                        return Some(());
                    }
                };
                println!("saw {seen}");
                std::io::stdout().flush().unwrap();
            }
            println!("done {seen}");
        }
        // Commits forever (until killed), a commit every so often.
        "writer" => {
            let mut w = o.wait_for_lock(true).open(&args[1]).unwrap();
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
            let r = o.reader().open(&args[1]).unwrap();
            println!("ready");
            r.wait_for_change(r.seq(), Some(Duration::from_secs(30)))
                .unwrap();
        }
        _ => unreachable!(),
    }
    Some(())
}

/// A child process whose stdout lines a thread forwards into a channel, so
/// that its pipe never fills (a child blocked writing a line is not
/// waiting) and so that reading a line can time out (a test that fails,
/// not one that hangs).
struct Proc {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// The first line containing `prefix` (from `prefix` on), waiting at
    /// most until `deadline`.
    fn line_starting(&mut self, prefix: &str, deadline: Instant) -> String {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                // libtest may print "test NAME ... " before the child's first line.
                Ok(l) => {
                    if let Some(at) = l.find(prefix) {
                        return l[at..].trim().to_owned();
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "child {} printed no line with {prefix:?} in time",
                    self.child.id()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("child {} ended before printing {prefix:?}", self.child.id())
                }
            }
        }
    }

    fn kill(self) {
        drop(self);
    }
}

/// A failing test kills its children too (they would outlive it).
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(test: &str, role: &str) -> Proc {
    let mut child = Command::new(std::env::current_exe().unwrap())
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
    let out = BufReader::new(child.stdout.take().unwrap());
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    Proc { child, lines }
}

/// How long any one step of a cross-process test may take before it fails.
const STEP: Duration = Duration::from_secs(20);

#[test]
fn no_waiter_sleeps_through_a_commit_across_processes_and_kills() {
    const T: &str = "no_waiter_sleeps_through_a_commit_across_processes_and_kills";
    if child().is_some() {
        return;
    }
    let (d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let live = d.path().join("live");
    let arg =
        |role: &str, target: u64| format!("{role},{},{},{target}", p.display(), live.display());
    let target = 1_000_000_000; // waiters never finish on their own; we check progress
    let mut waiters: Vec<Proc> = (0..4).map(|_| spawn(T, &arg("waiter", target))).collect();
    for w in &mut waiters {
        w.line_starting("ready", Instant::now() + STEP);
    }
    let mut rng = 0x2545_F491_u64;
    for round in 0..60 {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        // A writer commits back to back and is killed at a random moment,
        // often in the middle of a commit.
        let mut w = spawn(T, &arg("writer", 0));
        w.line_starting("ready", Instant::now() + STEP);
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(200 + rng % 5000) {
            std::hint::spin_loop();
        }
        w.kill();
        // Now and then a waiter dies in its wait, and a new one takes its place.
        if round % 4 == 3 {
            waiters.remove((rng % waiters.len() as u64) as usize).kill();
            let mut n = spawn(T, &arg("waiter", target));
            n.line_starting("ready", Instant::now() + STEP);
            waiters.push(n);
        }
    }
    // A last writer's commit must wake every live waiter: each must report
    // a sequence number at least as new as that commit.
    let mut w = o.open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(8, b"last").unwrap();
    let last = t.commit().unwrap();
    assert!(last > 60, "the writers committed (last commit {last})");
    let deadline = Instant::now() + STEP;
    for (i, mut c) in waiters.into_iter().enumerate() {
        let mut seen = 0;
        while seen < last {
            let l = c.line_starting("saw ", deadline);
            seen = l["saw ".len()..].parse().unwrap();
        }
        assert!(
            seen == last,
            "waiter {i} saw {seen}, past the last commit {last}"
        );
        c.kill();
    }
}

/// A writer that replaces the live image (it found the one in place
/// damaged after the previous writer was killed) retires the old one: a
/// waiter in another process that maps it is woken and told to open the
/// state again, rather than sleeping on a word no writer advances (the
/// killed writer's pid stays in the old image, so nothing else would ever
/// wake it).
#[test]
fn a_waiter_on_a_replaced_live_image_is_told_to_reopen() {
    const T: &str = "a_waiter_on_a_replaced_live_image_is_told_to_reopen";
    if child().is_some() {
        return;
    }
    let (d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let live = d.path().join("live");
    let arg =
        |role: &str, target: u64| format!("{role},{},{},{target}", p.display(), live.display());
    let mut waiter = spawn(T, &arg("waiter", 1_000_000_000));
    waiter.line_starting("ready", Instant::now() + STEP);
    let mut w = spawn(T, &arg("writer", 0));
    w.line_starting("ready", Instant::now() + STEP);
    w.kill();
    // Damage the image the killed writer left: its ready flag (byte 48).
    let [_, image] = state_files(&d, &p);
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap(),
        &0u64.to_le_bytes(),
        48,
    )
    .unwrap();
    let w = o.open(&p).unwrap();
    assert_eq!(
        w.live_image(),
        mapstate::LiveImage::Rebuilt(mapstate::Rebuilt::Incomplete)
    );
    let l = waiter.line_starting("failed", Instant::now() + STEP);
    assert!(l.contains("WriterNotVisible"), "{l}");
    assert!(l.contains("replaced"), "{l}");
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
    drop(o.open(&p).unwrap());
    let role = format!("idle,{},{},0", p.display(), d.path().join("live").display());
    let mut c = spawn(T, &role);
    c.line_starting("ready", Instant::now() + STEP);
    let before = cpu_ticks(c.child.id());
    // How long the waiter is watched, not a synchronisation.
    std::thread::sleep(Duration::from_secs(3));
    let used = cpu_ticks(c.child.id()) - before;
    c.kill();
    assert_eq!(used, 0, "an idle waiter used {used} clock ticks in 3 s");
}

/// The state's files: the durable file and the live image (the one file
/// in the live directory).
fn state_files(d: &tempfile::TempDir, p: &std::path::Path) -> [std::path::PathBuf; 2] {
    let live = std::fs::read_dir(d.path().join("live"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|f| f.extension().is_some_and(|x| x == "live"))
        .unwrap();
    [p.to_owned(), live]
}

/// Sets the files' mtimes to the distant past, so that only a commit can
/// bring them to now.
fn age(files: &[std::path::PathBuf]) {
    let past = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000);
    for f in files {
        let file = std::fs::OpenOptions::new().write(true).open(f).unwrap();
        file.set_modified(past).unwrap();
    }
}

fn mtimes(files: &[std::path::PathBuf]) -> Vec<std::time::SystemTime> {
    files
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().modified().unwrap())
        .collect()
}

#[test]
fn a_commit_sets_the_mtime_of_the_state_files() {
    let (d, p, o) = setup();
    // Zero: every commit sets it.
    let mut w = o
        .clone()
        .mtime_interval(Some(Duration::ZERO))
        .open(&p)
        .unwrap();
    let files = state_files(&d, &p);
    for i in 0..3u64 {
        age(&files);
        let before = std::time::SystemTime::now();
        let mut t = w.begin();
        t.write_at(i * 8, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
        for (f, m) in files.iter().zip(mtimes(&files)) {
            assert!(m >= before, "commit {i}: {} has mtime {m:?}", f.display());
        }
    }
    drop(w);
    // Off: commits leave it alone (the live image's page is dirty already,
    // so the kernel does not set it either).
    let mut w = o.clone().mtime_interval(None).open(&p).unwrap();
    let mut t = w.begin();
    t.write_at(0, b"x").unwrap();
    t.commit().unwrap();
    age(&files);
    let mut t = w.begin();
    t.write_at(0, b"y").unwrap();
    t.commit().unwrap();
    assert!(
        mtimes(&files)[0] < std::time::UNIX_EPOCH + Duration::from_secs(2_000_000),
        "with mtime_interval(None) the durable file keeps its mtime"
    );
}

#[test]
fn mtime_updates_are_rate_limited_but_never_skip_a_quiet_period() {
    let (d, p, o) = setup();
    let every = Duration::from_millis(200);
    let mut w = o.mtime_interval(Some(every)).open(&p).unwrap();
    let files = state_files(&d, &p);
    let commit = |w: &mut Writer, v: u8| {
        let mut t = w.begin();
        t.write_at(0, &[v]).unwrap();
        t.commit().unwrap();
    };
    // The first commit sets it.
    age(&files);
    let before = std::time::SystemTime::now();
    let start = Instant::now();
    commit(&mut w, 1);
    assert!(mtimes(&files).iter().all(|&m| m >= before));
    // Commits right after it do not (a syscall per commit is what the limit
    // saves), unless this machine stalled for the whole interval.
    age(&files);
    commit(&mut w, 2);
    commit(&mut w, 3);
    if start.elapsed() < every {
        assert!(
            mtimes(&files)[0] < std::time::UNIX_EPOCH + Duration::from_secs(2_000_000),
            "a second update within {every:?}"
        );
    }
    // The first commit after a quiet interval does. The wait is the rate
    // limit itself, plus the coarse clock's granularity (a few ms).
    std::thread::sleep(every + Duration::from_millis(50));
    age(&files);
    let before = std::time::SystemTime::now();
    commit(&mut w, 4);
    assert!(
        mtimes(&files).iter().all(|&m| m >= before),
        "the first commit after a quiet interval sets the mtime"
    );
}
