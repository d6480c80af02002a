//! Push notification inside a process: a `Watcher` calls back (or sends on
//! a channel) for each commit that touches the byte range it asked about.
//!
//! `cargo run -p mapstate --example watcher`

use std::time::Duration;

use mapstate::{Event, Reader, Watcher, Writer};

fn main() -> mapstate::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("watched.state");
    let mut writer = Writer::options().create(true).len(8192).open(&path)?;

    let watcher = Watcher::new(Reader::open(&path)?)?;
    // Only commits that change bytes 4096..4104 (one u64 "config epoch").
    let epochs = watcher.subscribe(4096..4104);

    let mut txn = writer.begin();
    txn.write_at(0, b"not watched")?; // bytes 0..11: no event
    txn.commit()?;
    let mut txn = writer.begin();
    txn.write_at(4096, &7u64.to_le_bytes())?;
    let seq = txn.commit()?;

    let e = epochs
        .recv_timeout(Duration::from_secs(10))
        .expect("an event for the watched range");
    let Event::Change(c) = &e else {
        panic!("{e:?}")
    };
    assert_eq!(c.seq, seq);
    assert_eq!(c.ranges.first(), Some(&(4096..4104)));
    let mut b = [0u8; 8];
    watcher.reader().read_at(4096, &mut b)?;
    println!(
        "commit {} changed {:?}: the epoch is now {}",
        c.seq,
        c.ranges,
        u64::from_le_bytes(b)
    );
    drop(watcher);
    writer.remove()
}
