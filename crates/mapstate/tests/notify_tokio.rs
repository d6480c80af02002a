//! The `tokio` feature: an async stream of change events.
//! `cargo test -p mapstate --features tokio --test notify_tokio`
#![cfg(feature = "tokio")]
#![allow(clippy::many_single_char_names, clippy::single_range_in_vec_init)]

use std::time::Duration;

use mapstate::{ChangeStream, Event};

mod common;
use common::small_state as setup;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

/// The next event, within a generous limit (a test that fails, not one
/// that hangs).
async fn next(s: &mut ChangeStream) -> Event {
    tokio::time::timeout(Duration::from_secs(20), s.next())
        .await
        .expect("no event within 20 s")
        .expect("the stream ended")
}

#[test]
fn the_stream_yields_every_commit_in_order_with_its_ranges() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let mut s = o.reader().open(&p).and_then(ChangeStream::new).unwrap();
    let rt = runtime();
    // Commits made by another thread while the task waits on the stream.
    let writer = std::thread::spawn(move || {
        for i in 0..20u64 {
            let mut t = w.begin();
            t.write_at(i * 100, &i.to_le_bytes()).unwrap();
            t.commit().unwrap();
        }
        w
    });
    let got = rt.block_on(async {
        let mut got = Vec::new();
        while got.len() < 20 {
            got.push(next(&mut s).await);
        }
        got
    });
    let w = writer.join().unwrap();
    for (i, e) in got.iter().enumerate() {
        let i = i as u64;
        let Event::Change(c) = e else {
            panic!("20 commits fit in the ring: {e:?}")
        };
        assert_eq!(
            (c.seq, c.ranges.clone()),
            (i + 1, vec![i * 100..i * 100 + 8])
        );
    }
    assert_eq!(s.reader().seq(), w.seq());
    drop(w);
    // Nothing more: a wait for the next event times out.
    rt.block_on(async {
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.next())
                .await
                .is_err()
        );
    });
}

#[test]
fn a_consumer_that_falls_behind_is_told_what_it_missed() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let mut s = o.reader().open(&p).and_then(ChangeStream::new).unwrap();
    // Far more commits than the channel and the ring hold, before the
    // consumer reads anything.
    for i in 0..1000u64 {
        let mut t = w.begin();
        t.write_at(0, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    let rt = runtime();
    let (mut next_seq, mut missed) = (1, 0);
    rt.block_on(async {
        while next_seq <= 1000 {
            match next(&mut s).await {
                Event::Change(c) => {
                    assert_eq!(c.seq, next_seq, "in order, none twice");
                    next_seq += 1;
                }
                Event::Missed { first, last } => {
                    assert_eq!(first, next_seq, "a miss starts where the events stopped");
                    missed += last - first + 1;
                    next_seq = last + 1;
                }
            }
        }
    });
    assert!(
        missed > 0,
        "1000 commits do not fit in the channel and the ring"
    );
}

#[test]
fn dropping_the_stream_stops_its_thread() {
    let (_d, p, o) = setup();
    let mut w = o.open(&p).unwrap();
    let s = o.reader().open(&p).and_then(ChangeStream::new).unwrap();
    let t = std::time::Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_secs(5), "the drop returned");
    // And a stream whose consumer never reads, with its channel full.
    let s = o.reader().open(&p).and_then(ChangeStream::new).unwrap();
    for i in 0..200u64 {
        let mut t = w.begin();
        t.write_at(0, &i.to_le_bytes()).unwrap();
        t.commit().unwrap();
    }
    let t = std::time::Instant::now();
    drop(s);
    assert!(t.elapsed() < Duration::from_secs(5), "the drop returned");
}
