//! The log sized to the state and to its commit rate (issue 14): a new log
//! is twice the state (at least 1 MiB, at most 64 MiB), and grows, up to
//! 64 MiB, to hold a second of commits when it fills up in less; a size
//! the program gives stays.

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
    // 1 MiB of 64-byte commits fills in milliseconds anywhere: the log
    // grows at its first checkpoint to a second's worth at that rate (on
    // a quiet machine 64 MiB at once; more than 1 MiB on any machine that
    // makes 20 k commits a second).
    commit_64_bytes(&mut w, 127 * MIB / 64);
    let grown = log_len(&w);
    assert!(grown > MIB, "the log did not grow: {grown} bytes");
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
