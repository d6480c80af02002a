//! What recovery trusts, and what a state's life leaves on disk: one epoch
//! for every position recovery trusts (a kill inside a checkpoint, old log
//! records after a power cut), creation that leaves no state or a whole
//! one, journals that survive a power cut and go when done, and nothing
//! left behind.
//!
//! A reboot is simulated by deleting the live image (tmpfs does not survive
//! one); a power cut that keeps some pages of a file and not others, by
//! editing the file. Writers that must die without closing run in a child
//! process (`child`), which exits or is killed without running destructors.
#![allow(clippy::many_single_char_names)]

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mapstate::testing::Step;
use mapstate::{Durability, Error, StateFiles, Writer, WriterOptions};

const PAGE: u64 = 4096;

/// A fresh directory on disk with a `live` directory for live images.
fn setup() -> (tempfile::TempDir, PathBuf, WriterOptions) {
    let d = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(d.path().join("live")).unwrap();
    let p = d.path().join("state");
    let o = Writer::options()
        .create(true)
        .len(1 << 16)
        .max_size(1 << 24)
        .live_dir(d.path().join("live"));
    (d, p, o)
}

/// The options a child uses for the state at `path` (its `live` directory
/// beside it).
fn child_opts(path: &Path) -> WriterOptions {
    Writer::options()
        .len(1 << 16)
        .max_size(1 << 24)
        .live_dir(path.parent().unwrap().join("live"))
}

/// Commit `c`: the counter at offset 0 and `c` stamped over page `c % 8 + 1`.
fn commit(w: &mut Writer, c: u64, d: Durability) -> u64 {
    let mut t = w.begin();
    t.write_at(0, &c.to_le_bytes()).unwrap();
    t.write_at((c % 8 + 1) * PAGE, &[c as u8; 100]).unwrap();
    t.commit_with(d).unwrap()
}

fn counter(path: &Path) -> u64 {
    let r = child_opts(path).reader().open(path).unwrap();
    r.read(mapstate::Offset::<u64>::new(0)).unwrap()
}

/// The live image is lost with the OS.
fn reboot(path: &Path) {
    let live = StateFiles::of(path, Some(&path.parent().unwrap().join("live")))
        .unwrap()
        .live()
        .to_path_buf();
    std::fs::remove_file(live).unwrap();
}

/// Runs `role` with `args` in a child process of this test binary (the
/// test `test`), and returns its exit status and stdout.
fn child(test: &str, role: &str, args: &[&str]) -> (std::process::ExitStatus, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(
            "MAPSTATE_RECOVERY_CHILD",
            format!("{role},{}", args.join(",")),
        )
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The child roles; `None` in the parent.
fn child_role() -> Option<Vec<String>> {
    let v = std::env::var("MAPSTATE_RECOVERY_CHILD").ok()?;
    Some(v.split(',').map(str::to_owned).collect())
}

/// Runs the child side if this process is a child; `true` then.
fn as_child() -> bool {
    let Some(a) = child_role() else {
        return false;
    };
    let path = PathBuf::from(&a[1]);
    match a[0].as_str() {
        // Checkpoints (an empty log) and is killed at step `a[2]`.
        "checkpoint" => {
            let mut w = child_opts(&path).open(&path).unwrap();
            let step = Step::from_number(a[2].parse().unwrap()).unwrap();
            mapstate::testing::crash_at(step, 1);
            w.checkpoint().unwrap();
            unreachable!("the crash hook kills the process at {step:?}");
        }
        // Commits `a[2]..=a[3]` with `Sync` and exits without closing.
        "sync-commits" => {
            let mut w = child_opts(&path).open(&path).unwrap();
            for c in a[2].parse().unwrap()..=a[3].parse::<u64>().unwrap() {
                commit(&mut w, c, Durability::Sync);
                println!("durable {c}");
            }
            std::process::exit(0);
        }
        // Commits one record that fills the log's first page exactly, then
        // one more, and exits without closing (the records stay in the log).
        "two-records" | "first-record" => {
            let mut w = child_opts(&path).open(&path).unwrap();
            let mut t = w.begin();
            // header 40 + one range entry 16 + 4040 bytes = 4096
            t.write_at(0, &[0x11; 4040]).unwrap();
            t.commit().unwrap();
            if a[0] == "two-records" {
                let mut t = w.begin();
                t.write_at(8192, b"life one's second commit").unwrap();
                t.commit().unwrap();
            }
            println!("seq {}", w.seq());
            std::process::exit(0);
        }
        // Commits 1 to 3, then is killed at step `a[2]` of commit 4.
        "commit-killed" => {
            let mut w = child_opts(&path).open(&path).unwrap();
            for c in 1..=3 {
                commit(&mut w, c, Durability::PageCache);
            }
            let step = Step::from_number(a[2].parse().unwrap()).unwrap();
            mapstate::testing::crash_at(step, 1);
            commit(&mut w, 4, Durability::PageCache);
            unreachable!("the crash hook kills the process at {step:?}");
        }
        // Creates a large state (killed by the parent at some moment).
        "create" => {
            println!("creating");
            let _w = Writer::options()
                .create(true)
                .len(128 << 20)
                .max_size(128 << 20)
                .live_dir(path.parent().unwrap().join("live"))
                .open(&path)
                .unwrap();
            std::process::exit(0);
        }
        // Builds the live image of a large state (killed by the parent).
        "build" => {
            println!("building");
            let _r = child_opts(&path)
                .max_size(512 << 20)
                .reader()
                .open(&path)
                .unwrap();
            std::process::exit(0);
        }
        // Appends three pages past the durable image's end, then is killed
        // at step `a[2]` of the checkpoint.
        "append-killed" => {
            let mut w = child_opts(&path).open(&path).unwrap();
            append_three_pages(&mut w);
            let step = Step::from_number(a[2].parse().unwrap()).unwrap();
            mapstate::testing::crash_at(step, 1);
            w.checkpoint().unwrap();
            unreachable!("the crash hook kills the process at {step:?}");
        }
        other => panic!("unknown child role {other}"),
    }
}

/// Bug 1 of the crash-soundness review: a writer checkpoints, checkpoints
/// again with an empty log, and is killed after the journal, the durable
/// image or its header is synced. The live image then published the old
/// epoch's log position, the next writer trusted it and chained its `Sync`
/// commits to a salt no rebuild uses: after a reboot they were gone.
#[test]
fn sync_commits_after_a_checkpoint_killed_with_an_empty_log_survive_a_reboot() {
    if as_child() {
        return;
    }
    // A checkpoint of an empty log writes no journal (it has no page to
    // write): no `JournalSynced` step.
    for step in [Step::DurableSynced, Step::HeaderSynced] {
        let (_d, p, o) = setup();
        let mut w = o.open(&p).unwrap();
        for c in 1..=5 {
            commit(&mut w, c, Durability::PageCache);
        }
        w.checkpoint().unwrap();
        w.close().unwrap();
        let ps = p.to_str().unwrap();
        let (st, _) = child(
            "sync_commits_after_a_checkpoint_killed_with_an_empty_log_survive_a_reboot",
            "checkpoint",
            &[ps, &step.number().to_string()],
        );
        assert_eq!(st.signal(), Some(9), "killed at {step:?}");
        let (st, out) = child(
            "sync_commits_after_a_checkpoint_killed_with_an_empty_log_survive_a_reboot",
            "sync-commits",
            &[ps, "6", "10"],
        );
        assert!(st.success() && out.contains("durable 10"), "{out}");
        reboot(&p);
        assert_eq!(
            counter(&p),
            10,
            "Sync commits lost after a kill at {step:?}"
        );
    }
}

/// A writer killed while it published its log position leaves the
/// position's lock odd for good. That made the next writer rebuild the live
/// image as "incomplete", and a waiter in another process that mapped the
/// old one slept on it for good (`tests/notify.rs` caught it once in two
/// runs on a busy machine). The image is sound: the next writer keeps it
/// and validates the log from the checkpoint instead of trusting the
/// position.
#[test]
fn a_writer_killed_while_publishing_its_log_position_leaves_a_live_image_that_is_kept() {
    const T: &str =
        "a_writer_killed_while_publishing_its_log_position_leaves_a_live_image_that_is_kept";
    if as_child() {
        return;
    }
    let (_d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let step = Step::PositionHalf.number().to_string();
    let (st, _) = child(T, "commit-killed", &[p.to_str().unwrap(), &step]);
    assert_eq!(st.signal(), Some(9), "killed at PositionHalf");
    let mut w = o.open(&p).unwrap();
    assert_eq!(w.live_image(), mapstate::LiveImage::Kept);
    // Commit 4 was visible before its position was published.
    assert_eq!(w.seq(), 4);
    commit(&mut w, 5, Durability::Sync);
    w.close().unwrap();
    reboot(&p);
    assert_eq!(counter(&p), 5);
}

/// Bug 5: after a power cut kept page 2 of the log but not page 1, the next
/// life rewrote commit 1 byte for byte (so with the same chain) and was
/// killed; the next recovery then chained on into life one's commit 2. A
/// writer that opens a rebuilt live image now starts a new epoch first.
#[test]
fn a_power_cut_never_brings_back_records_of_an_earlier_life() {
    if as_child() {
        return;
    }
    let test = "a_power_cut_never_brings_back_records_of_an_earlier_life";
    let (_d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let ps = p.to_str().unwrap();
    let (st, out) = child(test, "two-records", &[ps]);
    assert!(st.success() && out.contains("seq 2"), "{out}");
    // The cut: the log's first page (commit 1) lost, its second kept.
    let files = StateFiles::of(&p, Some(&p.parent().unwrap().join("live"))).unwrap();
    let log = std::fs::OpenOptions::new()
        .write(true)
        .open(files.log())
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&log, &[0; PAGE as usize], PAGE).unwrap();
    drop(log);
    reboot(&p);
    // Life two: commit 1 again, byte for byte; killed before it closes.
    let (st, out) = child(test, "first-record", &[ps]);
    assert!(st.success() && out.contains("seq 1"), "{out}");
    let w = child_opts(&p).open(&p).unwrap();
    assert_eq!(w.seq(), 1, "life one's commit 2 came back");
    let mut b = [0u8; 24];
    w.close().unwrap();
    child_opts(&p)
        .reader()
        .open(&p)
        .unwrap()
        .read_at(8192, &mut b)
        .unwrap();
    assert_eq!(b, [0; 24]);
}

/// Bug 2: a SIGKILL while a state was created left a file without a
/// header that nothing could open or remove. Now it leaves no state or a
/// whole one, whenever the kill lands.
#[test]
fn a_kill_while_a_state_is_created_leaves_no_state_or_a_whole_one() {
    if as_child() {
        return;
    }
    let test = "a_kill_while_a_state_is_created_leaves_no_state_or_a_whole_one";
    let mut outcomes = (0, 0);
    // Kills 0 to 2 ms after the child says it starts (every 50 µs: where
    // an in-place creation was header-less), then up to 110 ms after.
    let delays = (0..40u64)
        .map(|i| i * 50)
        .chain((0..10).map(|i| i * i * 1200));
    for (i, delay) in delays.enumerate() {
        let (d, p, _) = setup();
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("MAPSTATE_RECOVERY_CHILD", format!("create,{}", p.display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        while !line.contains("creating") {
            line.clear();
            if std::io::BufRead::read_line(&mut out, &mut line).unwrap() == 0 {
                break;
            }
        }
        let t = Instant::now();
        while t.elapsed() < Duration::from_micros(delay) {
            std::hint::spin_loop();
        }
        let _ = c.kill();
        let _ = c.wait();
        let o = child_opts(&p).max_size(128 << 20);
        if p.exists() {
            let w = o
                .open(&p)
                .unwrap_or_else(|e| panic!("kill {i}: unopenable: {e}"));
            assert_eq!(w.len(), 128 << 20);
            w.remove().unwrap();
            outcomes.1 += 1;
        } else {
            outcomes.0 += 1;
        }
        // Nothing else is left in the directory (a live image goes with
        // `remove`; with no state there is nothing at all).
        let left: Vec<_> = std::fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != "live")
            .collect();
        assert!(left.is_empty(), "kill {i} left {left:?}");
    }
    println!(
        "no state {} times, a whole one {} times",
        outcomes.0, outcomes.1
    );
}

/// Bug 8: a live image build killed before its rename left a full-size
/// temporary file that nothing removed. Built unnamed, it leaves nothing.
#[test]
fn a_kill_while_the_live_image_is_built_leaves_nothing() {
    if as_child() {
        return;
    }
    let test = "a_kill_while_the_live_image_is_built_leaves_nothing";
    let (d, p, o) = setup();
    let live_dir = d.path().join("live");
    let mut w = o
        .clone()
        .len(256 << 20)
        .max_size(512 << 20)
        .open(&p)
        .unwrap();
    commit(&mut w, 1, Durability::PageCache);
    w.close().unwrap();
    for i in 0..6u64 {
        reboot(&p);
        let mut c = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", test, "--nocapture", "--test-threads=1"])
            .env("MAPSTATE_RECOVERY_CHILD", format!("build,{}", p.display()))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        let mut out = std::io::BufReader::new(c.stdout.take().unwrap());
        std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(5 + i * 15) {
            std::hint::spin_loop();
        }
        let _ = c.kill();
        let _ = c.wait();
        let names: Vec<_> = std::fs::read_dir(&live_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // Nothing but the live image itself (`mapstate-DEV-INO.live`).
        assert!(
            names
                .iter()
                .all(|n| n.starts_with("mapstate-") && !n.contains(".mapstate-")),
            "kill {i} left {names:?}"
        );
        // Make sure the next round rebuilds it.
        if names.is_empty() {
            drop(
                child_opts(&p)
                    .max_size(512 << 20)
                    .reader()
                    .open(&p)
                    .unwrap(),
            );
        }
    }
    o.create(false).open(&p).unwrap().remove().unwrap();
}

/// Bug 8: a journal stayed as large as the pages of the last checkpoint.
#[test]
fn the_journal_is_emptied_once_its_checkpoint_is_done() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    for c in 1..=20 {
        commit(&mut w, c, Durability::PageCache);
    }
    w.checkpoint().unwrap();
    let j = w.files().journal().to_path_buf();
    assert_eq!(std::fs::metadata(&j).unwrap().len(), 0);
    w.remove().unwrap();
}

/// Records the path of every file or directory this process syncs from now
/// on (until `testing::disarm_syncs`), in order.
fn record_syncs() -> std::sync::Arc<std::sync::Mutex<Vec<PathBuf>>> {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    mapstate::testing::observe_syncs(Some(Box::new(move |fd, before| {
        if !before {
            let name = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
            s.lock().unwrap().push(name);
        }
    })));
    seen
}

/// The state's length in `setup`; `append_three_pages` appends past it.
const SETUP_LEN: u64 = 1 << 16;

/// One commit of three pages of 0xa5 past the end of a state of
/// `SETUP_LEN` bytes (nothing within it changes).
fn append_three_pages(w: &mut Writer) {
    let mut t = w.begin();
    t.set_len(SETUP_LEN + 3 * PAGE).unwrap();
    t.write_at(SETUP_LEN, &[0xa5; 3 * PAGE as usize]).unwrap();
    t.commit().unwrap();
}

/// Whether the state at `path` holds `setup`'s zeros and the three
/// appended pages, as a writer and, after a reboot, as a reader see it.
fn holds_the_append(path: &Path) -> Result<(), String> {
    let expect: Vec<u8> = (0..SETUP_LEN + 3 * PAGE)
        .map(|i| if i < SETUP_LEN { 0 } else { 0xa5 })
        .collect();
    let mut w = child_opts(path).open(path).unwrap();
    let writer_sees = w.begin().as_slice().to_vec();
    w.close().unwrap();
    reboot(path);
    let (_, rebuilt) = child_opts(path)
        .reader()
        .open(path)
        .unwrap()
        .snapshot()
        .unwrap();
    for (who, got) in [
        ("the writer", writer_sees),
        ("a reader after a reboot", rebuilt),
    ] {
        if got != expect {
            return Err(format!("{who} sees {} bytes, not the append", got.len()));
        }
    }
    Ok(())
}

/// A checkpoint whose pages all lie past the durable image's end (an
/// append) writes them into the durable file once: no journal is written
/// or synced (before, every byte went to the log, the journal and the
/// durable file). Killed at each of its steps, the state reopens with the
/// append, from the log.
#[test]
fn an_append_is_checkpointed_without_a_journal() {
    const TEST: &str = "an_append_is_checkpointed_without_a_journal";
    if child_role().is_some_and(|a| a[0] == "syncs") {
        let (_d, p, o) = setup();
        o.open(&p).unwrap().close().unwrap();
        let mut w = o.open(&p).unwrap();
        append_three_pages(&mut w);
        let seen = record_syncs();
        w.checkpoint().unwrap();
        mapstate::testing::disarm_syncs();
        let seen = seen.lock().unwrap();
        assert!(
            !seen.iter().any(|n| n.ends_with("state-ckpt")),
            "the journal was synced: {seen:?}"
        );
        let journal = std::fs::metadata(w.files().journal()).map_or(0, |m| m.len());
        assert_eq!(journal, 0, "the journal holds bytes");
        w.close().unwrap();
        holds_the_append(&p).unwrap();
        println!("child ok");
        return;
    }
    if as_child() {
        return;
    }
    let (st, out) = child(TEST, "syncs", &["-"]);
    assert!(st.success() && out.contains("child ok"), "{out}");
    for step in [Step::DurableHalf, Step::DurableSynced, Step::HeaderSynced] {
        let (_d, p, o) = setup();
        o.open(&p).unwrap().close().unwrap();
        let ps = p.to_str().unwrap();
        let (st, out) = child(TEST, "append-killed", &[ps, &step.number().to_string()]);
        assert_eq!(st.signal(), Some(9), "not killed at {step:?}: {out}");
        if let Err(e) = holds_the_append(&p) {
            panic!("killed at {step:?}: {e}");
        }
    }
}

/// Bug 9: the journal was created without syncing its directory, so a power
/// cut could lose its name while the durable image it was to repair was
/// half written. A directory sync now comes between its creation and the
/// first write to the durable image.
#[test]
fn a_new_journal_is_on_disk_before_the_durable_image_changes() {
    // The hooks are process-wide: in a child of its own.
    if child_role().is_some() {
        let (d, p, o) = setup();
        // Closed cleanly first: the writer then has nothing left by another
        // to sync before its checkpoint (`Writer::sync_leftovers`).
        o.open(&p).unwrap().close().unwrap();
        let mut w = o.open(&p).unwrap();
        commit(&mut w, 1, Durability::PageCache);
        let seen = record_syncs();
        w.checkpoint().unwrap();
        mapstate::testing::disarm_syncs();
        let seen = seen.lock().unwrap();
        let journal = seen.iter().position(|n| n.ends_with("state-ckpt"));
        let dir = seen.iter().position(|n| n == d.path());
        let durable = seen.iter().position(|n| n.ends_with("state"));
        assert!(
            journal.is_some() && dir.is_some() && dir < durable && journal < durable,
            "syncs: {seen:?}"
        );
        println!("child ok");
        return;
    }
    let (st, out) = child(
        "a_new_journal_is_on_disk_before_the_durable_image_changes",
        "syncs",
        &["-"],
    );
    assert!(st.success() && out.contains("child ok"), "{out}");
}

/// A writer that opens after a kill syncs what the killed one left in the
/// page cache (the durable image, the log, their directory) before its own
/// first sync, not in its open: a reopen after a kill costs no sync (it
/// cost about 1 ms quiet and 8 to 14 ms on a busy machine in the `reopen`
/// benchmark), and the first `Sync` commit syncs the leftovers first.
#[test]
fn a_reopen_after_a_kill_syncs_nothing_until_the_first_sync() {
    const T: &str = "a_reopen_after_a_kill_syncs_nothing_until_the_first_sync";
    if let Some(a) = child_role() {
        if a[0] == "observe" {
            let path = PathBuf::from(&a[1]);
            let seen = record_syncs();
            let mut w = child_opts(&path).open(&path).unwrap();
            let at_open = seen.lock().unwrap().len();
            commit(&mut w, 2, Durability::Sync);
            mapstate::testing::disarm_syncs();
            let seen = seen.lock().unwrap();
            let names: Vec<String> = seen
                .iter()
                .map(|n| n.file_name().unwrap().to_string_lossy().into_owned())
                .collect();
            let dir = path
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy();
            assert_eq!(at_open, 0, "syncs in the open: {names:?}");
            assert_eq!(
                names,
                ["state", "state-wal", &*dir, "state-wal"],
                "the first Sync commit"
            );
            println!("child ok");
            std::process::exit(0);
        }
        as_child();
        return;
    }
    let (_d, p, o) = setup();
    drop(o.open(&p).unwrap());
    let ps = p.to_str().unwrap();
    let (st, out) = child(T, "first-record", &[ps]);
    assert!(st.success(), "{out}");
    let (st, out) = child(T, "observe", &[ps]);
    assert!(st.success() && out.contains("child ok"), "{out}");
    assert_eq!(counter(&p), 2);
}

/// Bug 8 and 11: `log_size(u64::MAX)` wrapped to 0 and left a 40-byte log
/// that made the state unusable; a failed creation left files behind. Now
/// it is refused before anything is created.
#[test]
fn a_refused_creation_leaves_nothing() {
    let (d, p, o) = setup();
    match o.clone().log_size(u64::MAX).open(&p) {
        Err(Error::InvalidSize { what, .. }) => assert_eq!(what, "log size"),
        other => panic!("expected InvalidSize, got {other:?}"),
    }
    match o.clone().len(2 << 24).open(&p) {
        Err(Error::InvalidSize { .. }) => {}
        other => panic!("expected InvalidSize, got {other:?}"),
    }
    assert_nothing_left(d.path());
    // And the state can then be created.
    o.open(&p).unwrap().remove().unwrap();
}

/// No file is left in `dir` but the empty `live` directory.
fn assert_nothing_left(dir: &Path) {
    let left: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n != "live")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let live: Vec<_> = std::fs::read_dir(dir.join("live")).unwrap().collect();
    assert!(live.is_empty(), "{live:?}");
}

/// `Writer::remove` deletes every file a state ever made, temporary ones
/// included (a kill between naming and renaming a file leaves one).
#[test]
fn remove_deletes_every_file_of_the_state() {
    let (d, p, o) = setup();
    let w = o.open(&p).unwrap();
    let stray = d.path().join(".state-wal.mapstate-0123456789abcdef");
    std::fs::write(&stray, b"left by a kill").unwrap();
    w.remove().unwrap();
    assert_nothing_left(d.path());
}

/// A state created by an older version in place, or by hand as an empty
/// file, is created in its place.
#[test]
fn an_empty_file_becomes_the_state() {
    let (_d, p, o) = setup();
    std::fs::write(&p, b"").unwrap();
    let mut w = o.open(&p).unwrap();
    commit(&mut w, 1, Durability::PageCache);
    w.close().unwrap();
    reboot(&p);
    assert_eq!(counter(&p), 1);
    o.create(false).open(&p).unwrap().remove().unwrap();
}
