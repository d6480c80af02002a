//! A counter shared by many threads through one `SharedWriter`: each
//! increment is its own durable commit (`Durability::Sync`), and commits
//! that arrive together share one `fdatasync` (group commit).
//!
//! `cargo run -p mapstate --example counter`

use std::sync::Arc;

use mapstate::{Durability, Offset, Reader, SharedWriter, Writer};

const COUNTER: Offset<u64> = Offset::new(0);

fn main() -> mapstate::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("counter.state");
    let w = Writer::options()
        .create(true)
        .len(4096)
        .durability(Durability::Sync) // on disk before commit returns
        .open(&path)?;
    let shared = Arc::new(SharedWriter::new(w)?);

    let threads: Vec<_> = (0..8)
        .map(|_| {
            let shared = Arc::clone(&shared);
            std::thread::spawn(move || -> mapstate::Result<()> {
                for _ in 0..100 {
                    shared.transaction(|t| {
                        *t.get_mut(COUNTER)? += 1;
                        Ok(())
                    })?;
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a thread")?;
    }

    let r = Reader::open(&path)?;
    assert_eq!(r.read(COUNTER)?, 800);
    println!(
        "800 durable commits with {} fdatasyncs (group commit)",
        shared.syncs()
    );
    drop(r);
    Arc::into_inner(shared)
        .expect("the last handle")
        .into_inner()
        .remove()
}
