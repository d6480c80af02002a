//! The log sized to the state and to its commit rate (issue 14): a new log
//! is twice the state (at least 1 MiB, at most 64 MiB), and doubles, up to
//! 64 MiB, when it fills up again within a second; a size the program
//! gives stays.

use mapstate::{Writer, WriterOptions};

const MIB: u64 = 1 << 20;

fn opts(dir: &std::path::Path) -> WriterOptions {
    let live = dir.join("shm");
    let _ = std::fs::create_dir(&live);
    Writer::options().create(true).len(4096).live_dir(live)
}

fn log_len(w: &Writer) -> u64 {
    std::fs::metadata(w.files().log()).unwrap().len()
}

/// Makes `n` commits of 64 bytes each (over 64 log bytes apiece), as fast
/// as they go.
fn commit_64_bytes(w: &mut Writer, n: u64) {
    for i in 0..n {
        let mut t = w.begin();
        t.write_at(64 * (i % 64), &[i as u8; 64]).unwrap();
        t.commit().unwrap();
    }
}

#[test]
fn a_small_state_gets_a_small_log() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let w = opts(dir.path()).open(dir.path().join("state")).unwrap();
    assert_eq!(log_len(&w), MIB, "a 4 KiB state starts with a 1 MiB log");
    w.remove().unwrap();
    let big = opts(dir.path())
        .len(16 * MIB)
        .max_size(16 * MIB)
        .open(dir.path().join("big"))
        .unwrap();
    assert_eq!(log_len(&big), 32 * MIB, "twice the state");
    big.remove().unwrap();
}

#[test]
fn a_log_that_fills_up_fast_grows_to_64_mib() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut w = opts(dir.path()).open(dir.path().join("state")).unwrap();
    // Seven fills of a log that doubles from 1 MiB reach 64 MiB (127 MiB
    // of records). How far it gets depends on the commit rate: 1 and
    // 2 MiB fill in milliseconds anywhere, 32 MiB in well under a second
    // on a quiet machine.
    commit_64_bytes(&mut w, 127 * MIB / 64);
    let grown = log_len(&w);
    assert!(grown >= 4 * MIB, "the log did not grow: {grown} bytes");
    // And never past 64 MiB.
    commit_64_bytes(&mut w, 2 * 64 * MIB / 64);
    let now = log_len(&w);
    assert!(now <= 64 * MIB && now >= grown, "{grown} then {now} bytes");
    w.remove().unwrap();
}

#[test]
fn a_log_size_given_stays() {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let mut w = opts(dir.path())
        .log_size(MIB)
        .open(dir.path().join("state"))
        .unwrap();
    assert_eq!(log_len(&w), MIB);
    commit_64_bytes(&mut w, 5 * MIB / 64);
    assert_eq!(log_len(&w), MIB, "a fixed size does not grow");
    w.remove().unwrap();
}
