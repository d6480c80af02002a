//! Append latency and object-store throughput on a running cluster.
//!
//! ```text
//! scripts/jetstream.sh up /tmp/js     # last line: the URLs
//! MAPSTATE_NATS_URL=nats://... cargo run --release -p mapstate-replicate \
//!     --example jetstream_bench [-- APPENDS [OBJECT_MIB]]
//! scripts/jetstream.sh down /tmp/js
//! ```
//!
//! Appends 100-byte entries to an R3 log: `APPENDS` (default 1000) one at a
//! time, then with 8 and with 64 in flight, and prints each run's latency
//! percentiles and rate; then puts and gets an `OBJECT_MIB` (default 64) MiB
//! object. The log and the bucket are deleted at the end.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use mapstate_replicate::{Append, Log, LogConfig, Snapshots, connect};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn run(log: &Log, appends: usize, in_flight: usize) {
    let payload = bytes::Bytes::from(vec![0x5a; 100]);
    let mut latencies = Vec::with_capacity(appends);
    let mut pending = VecDeque::new();
    let start = Instant::now();
    for _ in 0..appends {
        if pending.len() == in_flight {
            let (sent, p): (Instant, mapstate_replicate::PendingAppend) =
                pending.pop_front().unwrap();
            p.acked().await.expect("append");
            latencies.push(sent.elapsed());
        }
        let sent = Instant::now();
        pending.push_back((
            sent,
            log.send(Append::new(payload.clone())).await.expect("send"),
        ));
    }
    while let Some((sent, p)) = pending.pop_front() {
        p.acked().await.expect("append");
        latencies.push(sent.elapsed());
    }
    let total = start.elapsed();
    latencies.sort();
    println!(
        "{appends} appends, {in_flight:>2} in flight: p50 {:>7.3} ms  p99 {:>7.3} ms  max {:>7.3} ms  {:>7.0} appends/s",
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().unwrap().as_secs_f64() * 1e3,
        appends as f64 / total.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let appends: usize = args.next().map_or(Ok(1000), |a| a.parse())?;
    let object_mib: usize = args.next().map_or(Ok(64), |a| a.parse())?;
    let js = connect(None).await?;
    let name = format!("BENCH_{}", std::process::id());
    let log = Log::create(&js, LogConfig::new(&name, 3)).await?;
    run(&log, 100, 1).await; // warm-up
    for in_flight in [1, 8, 64] {
        run(&log, appends, in_flight).await;
    }
    js.delete_stream(&name).await?;

    let bucket = format!("bench_{}", std::process::id());
    let snapshots = Snapshots::create(&js, &bucket, 3).await?;
    let data: Vec<u8> = (0..object_mib << 20)
        .map(|i| (i * 7 + i / 4096) as u8)
        .collect();
    let start = Instant::now();
    snapshots.put("object", &mut data.as_slice()).await?;
    let put = start.elapsed();
    let start = Instant::now();
    let back = snapshots.get("object").await?;
    let get = start.elapsed();
    assert!(back == data, "the object came back different");
    println!(
        "object {object_mib} MiB: put {:.2} s ({:.0} MiB/s), get {:.2} s ({:.0} MiB/s)",
        put.as_secs_f64(),
        object_mib as f64 / put.as_secs_f64(),
        get.as_secs_f64(),
        object_mib as f64 / get.as_secs_f64()
    );
    js.delete_object_store(&bucket).await?;
    Ok(())
}
