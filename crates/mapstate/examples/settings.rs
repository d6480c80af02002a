//! A program's settings kept in a state: a `#[repr(C)]` struct edited in
//! place, committed whole, read by every other process.
//!
//! `cargo run -p mapstate --example settings`

use mapstate::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
use mapstate::{Offset, Reader, Writer};

/// The settings, at byte 0 of the state.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Debug)]
#[zerocopy(crate = "mapstate::zerocopy")]
#[repr(C)]
struct Settings {
    /// Bumped at every change, so readers can tell versions apart.
    version: u64,
    threads: u32,
    log_level: u32,
    name: [u8; 32],
}

const SETTINGS: Offset<Settings> = Offset::new(0);

fn main() -> mapstate::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("settings.state");

    // The one process that changes the settings.
    let mut w = Writer::options().create(true).len(4096).open(&path)?;
    let mut t = w.begin();
    let s = t.get_mut(SETTINGS)?;
    s.version += 1;
    s.threads = 8;
    s.log_level = 2;
    s.name[..7].copy_from_slice(b"default");
    t.commit()?; // all four fields at once, or none after a crash

    // Any other process: a consistent copy, never half of a change.
    let r = Reader::open(&path)?;
    let s = r.read(SETTINGS)?;
    assert_eq!((s.version, s.threads, s.log_level), (1, 8, 2));
    println!(
        "settings v{}: {} threads, log level {}, name {:?}",
        s.version,
        s.threads,
        s.log_level,
        String::from_utf8_lossy(&s.name).trim_end_matches('\0')
    );
    drop(r);
    w.remove() // the state's files, and its live image in /dev/shm
}
