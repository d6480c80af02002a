//! Change events as an async stream in a tokio program (the `tokio`
//! feature): `ChangeStream` yields each commit with its ranges.
//!
//! `cargo run -p mapstate --features tokio --example tokio_stream`

use mapstate::{ChangeStream, Event, Reader, Writer};

fn main() -> mapstate::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("stream.state");
    let mut w = Writer::options().create(true).len(4096).open(&path)?;
    let mut changes = ChangeStream::new(Reader::open(&path)?)?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let consumer = async {
            let mut got = Vec::new();
            while got.len() < 3 {
                match changes.next().await {
                    Some(Event::Change(c)) => got.push((c.seq, c.ranges)),
                    Some(Event::Missed { first, last }) => {
                        panic!("missed {first}..={last}: re-read the state")
                    }
                    None => break,
                }
            }
            got
        };
        // The writer commits from a blocking thread (commits may sync).
        let producer = tokio::task::spawn_blocking(move || -> mapstate::Result<Writer> {
            for i in 0..3u64 {
                let mut t = w.begin();
                t.write_at(i * 100, b"tick")?;
                t.commit()?;
            }
            Ok(w)
        });
        let got = consumer.await;
        let w = producer.await.expect("the producer")?;
        for (seq, ranges) in &got {
            println!("commit {seq}: {ranges:?}");
        }
        assert_eq!((got[2].0, got[2].1.first()), (3, Some(&(200..204))));
        drop(changes);
        w.remove()
    })
}
