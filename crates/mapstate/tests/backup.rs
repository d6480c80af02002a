//! Backups (`Reader::backup`) and restores (`WriterOptions::restore`): a
//! backup is one commit's state even while the writer commits flat out and
//! the length changes, never overwrites a file, and leaves nothing when
//! killed; a restore puts it back with a new identity, tells the old
//! state's readers, and leaves the old state or the new one after a crash.
#![allow(clippy::many_single_char_names, clippy::similar_names)]

mod common;

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use mapstate::{Error, Reader, Writer};

const SLOTS: u64 = 2048;

/// The state after commit `seq` of `commit_all`: every one of `SLOTS` u64s
/// spread one per 32 bytes over 64 KiB holds `seq`, and the length is 64
/// KiB plus `seq % 5` pages and `seq % 3` bytes (not a page multiple: a
/// backup of such a length failed).
fn commit_all(w: &mut Writer, seq: u64) {
    let mut t = w.begin();
    t.set_len((1 << 16) + (seq % 5) * 4096 + seq % 3).unwrap();
    for i in 0..SLOTS {
        t.write_at(i * 32, &seq.to_le_bytes()).unwrap();
    }
    assert_eq!(t.commit().unwrap(), seq);
}

/// Checks that the state at `path` is exactly commit `seq`'s.
fn check_one_commit(path: &std::path::Path, live: &std::path::Path, seq: u64) {
    let r = Reader::options().live_dir(live).open(path).unwrap();
    let (at, bytes) = r.snapshot().unwrap();
    assert_eq!(at, seq);
    assert_eq!(bytes.len() as u64, (1 << 16) + (seq % 5) * 4096 + seq % 3);
    for i in 0..SLOTS {
        let v = u64::from_le_bytes(bytes[(i * 32) as usize..][..8].try_into().unwrap());
        assert_eq!(v, seq, "slot {i} of the copy of commit {seq}");
    }
}

#[test]
fn a_backup_is_one_commit_while_the_writer_commits_flat_out() {
    let (d, p, o) = common::small_state();
    let live = d.path().join("live");
    let mut w = o.open(&p).unwrap();
    commit_all(&mut w, 1);
    let r = o.reader().open(&p).unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let mut seq = 1;
            while !stop.load(Ordering::Relaxed) {
                seq += 1;
                commit_all(&mut w, seq);
            }
            seq
        });
        for i in 0..20 {
            let copy = d.path().join(format!("copy{i}"));
            let (seq, _) = r.backup(&copy).unwrap();
            check_one_commit(&copy, &live, seq);
        }
        stop.store(true, Ordering::Relaxed);
        assert!(
            writer.join().unwrap() > 20,
            "the writer committed meanwhile"
        );
    });
}

#[test]
fn a_backup_never_overwrites_a_file() {
    let (d, p, o) = common::small_state();
    let w = o.open(&p).unwrap();
    let r = o.reader().open(&p).unwrap();
    let dest = d.path().join("taken");
    std::fs::write(&dest, b"someone's file").unwrap();
    let e = r.backup(&dest).unwrap_err();
    assert!(e.to_string().contains("File exists"), "{e}");
    assert_eq!(std::fs::read(&dest).unwrap(), b"someone's file");
    // Nor through a symlink planted at its name.
    let link = d.path().join("link");
    std::os::unix::fs::symlink(d.path().join("target"), &link).unwrap();
    assert!(r.backup(&link).is_err());
    assert!(!d.path().join("target").exists());
    // Nothing else was left in the directory.
    let mut names: Vec<_> = std::fs::read_dir(d.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["link", "live", "state", "state-wal", "taken"]);
    drop(w);
}

/// The child side of the kill test: backs up the state named by
/// `MAPSTATE_BACKUP_CHILD` (`state,dest,live`) again and again.
#[test]
fn backup_child() {
    let Ok(arg) = std::env::var("MAPSTATE_BACKUP_CHILD") else {
        return;
    };
    let a: Vec<&str> = arg.split(',').collect();
    let r = Reader::options().live_dir(a[2]).open(a[0]).unwrap();
    println!("open");
    for i in 0.. {
        let dest = format!("{}{i}", a[1]);
        r.backup(&dest).unwrap();
        println!("{dest}");
    }
}

#[test]
fn a_killed_backup_leaves_nothing_or_a_whole_copy() {
    let (d, p, o) = common::small_state();
    let live = d.path().join("live");
    let mut w = o.clone().max_size(1 << 26).open(&p).unwrap();
    // A state large enough that a kill lands inside a copy.
    let mut t = w.begin();
    t.set_len(48 << 20).unwrap();
    t.as_mut_slice().fill(7);
    t.commit().unwrap();
    for round in 0..5u64 {
        let dest = d.path().join(format!("round{round}-"));
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "backup_child", "--nocapture"])
            .env(
                "MAPSTATE_BACKUP_CHILD",
                format!("{},{},{}", p.display(), dest.display(), live.display()),
            )
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Kill it at a different moment each round: after the open, and
        // then after 0..4 whole copies.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        for _ in 0..=round {
            line.clear();
            std::io::BufRead::read_line(&mut out, &mut line).unwrap();
        }
        child.kill().unwrap();
        child.wait().unwrap();
        for e in std::fs::read_dir(d.path()).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            assert!(!name.contains(".mapstate-"), "a temporary was left: {name}");
            if name.starts_with(&format!("round{round}-")) {
                let copy = d.path().join(&name);
                let r = Reader::options().live_dir(&live).open(&copy).unwrap();
                assert_eq!(r.len(), 48 << 20, "{name}");
                let (_, bytes) = r.snapshot().unwrap();
                assert!(bytes.iter().all(|&b| b == 7), "{name} is not whole");
            }
        }
    }
}

#[test]
fn a_restore_puts_the_backup_back_with_a_new_identity_and_tells_readers() {
    let (d, p, o) = common::small_state();
    let live = d.path().join("live");
    let mut w = o.open(&p).unwrap();
    for seq in 1..=3 {
        commit_all(&mut w, seq);
    }
    let copy = d.path().join("copy");
    let r = o.reader().open(&p).unwrap();
    assert_eq!(r.backup(&copy).unwrap(), (3, (1 << 16) + 3 * 4096));
    for seq in 4..=9 {
        commit_all(&mut w, seq);
    }
    // A writer runs: the restore waits for it or fails.
    let e = o.restore(&copy, &p).unwrap_err();
    assert!(matches!(e, Error::Locked { .. }), "{e:?}");
    drop(w);
    let old_log = std::fs::read(d.path().join("state-wal")).unwrap();
    let w = o.restore(&copy, &p).unwrap();
    assert_eq!(w.seq(), 3);
    drop(w);
    check_one_commit(&p, &live, 3);
    // The reader of the old state is told; reopened, it reads the backup.
    let mut b = [0u8; 8];
    assert!(
        matches!(r.read_at(0, &mut b), Err(Error::WriterNotVisible { .. })),
        "a reader of the replaced state read on"
    );
    // Nothing of the old state is believed: its log, put back beside the
    // restored file, is another state's.
    std::fs::write(d.path().join("state-wal"), &old_log).unwrap();
    let e = o.clone().create(false).open(&p).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e:?}");
    std::fs::remove_file(d.path().join("state-wal")).unwrap();
    // The restored state commits on from the backup's sequence number.
    let mut w = o.clone().create(false).open(&p).unwrap();
    commit_all(&mut w, 4);
    drop(w);
    check_one_commit(&p, &live, 4);
    // The backup itself is untouched, and restores into a new path too.
    check_one_commit(&copy, &live, 3);
    let fresh = d.path().join("fresh");
    drop(o.restore(&copy, &fresh).unwrap());
    check_one_commit(&fresh, &live, 3);
}

#[test]
fn a_restore_keeps_the_old_state_s_owner_and_mode() {
    use std::os::unix::fs::PermissionsExt as _;
    let (d, p, o) = common::small_state();
    drop(o.clone().mode(0o640).open(&p).unwrap());
    let src = d.path().join("src");
    drop(o.clone().mode(0o600).open(&src).unwrap());
    let copy = d.path().join("copy");
    Reader::options()
        .live_dir(d.path().join("live"))
        .open(&src)
        .unwrap()
        .backup(&copy)
        .unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&copy), 0o600);
    drop(o.restore(&copy, &p).unwrap());
    assert_eq!(mode(&p), 0o640);
}

/// A restore whose backup is a state with a log (copied by hand with its
/// files) recovers it first: commits only in the log are restored too.
#[test]
fn a_restore_of_a_state_with_a_log_recovers_it_first() {
    let (d, p, o) = common::small_state();
    let live = d.path().join("live");
    let src = d.path().join("src");
    let mut w = o.open(&src).unwrap();
    for seq in 1..=2 {
        commit_all(&mut w, seq);
    }
    // Its files copied while the writer runs (idle): the commits are only
    // in the copied log, not in the copied durable file.
    let copy = d.path().join("copy");
    std::fs::copy(&src, &copy).unwrap();
    std::fs::copy(d.path().join("src-wal"), d.path().join("copy-wal")).unwrap();
    drop(w);
    let w = o.restore(&copy, &p).unwrap();
    assert_eq!(w.seq(), 2);
    drop(w);
    check_one_commit(&p, &live, 2);
}

/// What a crash in the middle of a restore leaves on disk, state by state:
/// the old state, checkpointed, with any of its log and journal already
/// deleted, opens whole (the restore deletes them before the rename and
/// syncs the directory in between); after the rename, the restored state.
#[test]
fn every_state_a_restore_passes_through_opens_whole() {
    let (d, p, o) = common::small_state();
    let live = d.path().join("live");
    let mut w = o.open(&p).unwrap();
    commit_all(&mut w, 1);
    let copy = d.path().join("copy");
    o.reader().open(&p).unwrap().backup(&copy).unwrap();
    commit_all(&mut w, 2);
    w.checkpoint().unwrap(); // the restore's first step
    drop(w);
    let files = mapstate::StateFiles::of(&p, Some(&live)).unwrap();
    // Saved with their modes (std::fs::copy keeps them).
    let saved = d.path().join("saved");
    std::fs::create_dir(&saved).unwrap();
    let kept = [files.durable(), files.log(), files.journal()];
    let keep = |f: &std::path::Path| saved.join(f.file_name().unwrap());
    for f in kept {
        std::fs::copy(f, keep(f)).unwrap();
    }
    let put_back = || {
        for f in kept {
            let _ = std::fs::remove_file(f);
            std::fs::copy(keep(f), f).unwrap();
        }
        let _ = std::fs::remove_file(files.live());
    };
    for gone in [
        &[files.log()][..],
        &[files.journal()],
        &[files.log(), files.journal()],
        &[files.log(), files.journal(), files.live()],
    ] {
        put_back();
        for f in gone {
            let _ = std::fs::remove_file(f);
        }
        check_one_commit(&p, &live, 2);
        drop(o.clone().create(false).open(&p).unwrap());
        check_one_commit(&p, &live, 2);
    }
    put_back();
    drop(o.restore(&copy, &p).unwrap());
    check_one_commit(&p, &live, 1);
}
