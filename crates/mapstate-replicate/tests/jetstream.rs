//! The `JetStream` features the replication design relies on, each proven on
//! a real three-server cluster that `scripts/jetstream.sh` installs and starts
//! in a temporary directory (and stops when the test ends, also on a panic).
//!
//! `features` proves (a) R3 streams and acks, (b) de-duplication, (c) the
//! fence, (d) durable readers that resume, (e) the object store and (g) purges;
//! `quorum` proves (f): the log stays writable and readable with one of the
//! three servers killed with SIGKILL, and the server catches up when it is back.
//! A missing server is no skip: `up` installs it or the test fails with the
//! script's message.

use std::time::{Duration, Instant};

use mapstate_replicate::{Append, AppendError, Entry, Log, LogConfig, Reader, Snapshots, connect};

mod common;
use common::Cluster;

async fn log(cluster: &Cluster, name: &str) -> Log {
    let js = connect(Some(&cluster.urls)).await.expect("connect");
    Log::create(&js, LogConfig::new(name, 3))
        .await
        .expect("create an R3 stream")
}

async fn append(log: &Log, entry: Append) -> u64 {
    let appended = log.append(entry).await.expect("append");
    assert!(!appended.duplicate, "a new entry was taken for a duplicate");
    appended.sequence
}

/// (a) An R3 stream: the cluster places three replicas, and an append is
/// acknowledged with its sequence.
async fn replicated_stream_and_acks(cluster: &Cluster) {
    let log = log(cluster, "A").await;
    let info = log.stream().get_info().await.unwrap();
    assert_eq!(info.config.num_replicas, 3);
    let placement = info.cluster.expect("a clustered stream has cluster info");
    assert!(placement.leader.is_some(), "the stream has no leader");
    assert_eq!(
        placement.replicas.len(),
        2,
        "an R3 stream lists its two followers: {placement:?}"
    );
    assert_eq!(log.bounds().await.unwrap(), (0, 0), "a new log is empty");
    assert_eq!(append(&log, Append::new("one")).await, 1);
    assert_eq!(append(&log, Append::new("two")).await, 2);
    assert_eq!(log.bounds().await.unwrap(), (1, 2));
}

/// (b) De-duplication: a second publish with the same `Nats-Msg-Id` stores
/// nothing and is acknowledged as a duplicate with the first one's sequence.
async fn deduplication(cluster: &Cluster) {
    let log = log(cluster, "B").await;
    append(&log, Append::new("zero")).await;
    let first = log.append(Append::new("x").id("w1:c1")).await.unwrap();
    assert_eq!((first.sequence, first.duplicate), (2, false));
    let again = log.append(Append::new("x").id("w1:c1")).await.unwrap();
    assert_eq!((again.sequence, again.duplicate), (2, true));
    // A different payload under the same id is still the same entry: the id
    // alone decides.
    let other = log.append(Append::new("y").id("w1:c1")).await.unwrap();
    assert_eq!((other.sequence, other.duplicate), (2, true));
    assert_eq!(log.last_sequence().await.unwrap(), 2);
    let info = log.stream().get_info().await.unwrap();
    assert_eq!(info.state.messages, 2, "the duplicates were stored");
    // A new id is a new entry.
    let next = log.append(Append::new("x").id("w1:c2")).await.unwrap();
    assert_eq!((next.sequence, next.duplicate), (3, false));
}

/// (c) The fence: `Nats-Expected-Last-Sequence` equal to the last sequence
/// appends; a stale one fails with error 10071, mapped to `Fenced`.
async fn fence(cluster: &Cluster) {
    let log = log(cluster, "C").await;
    // On an empty log the last sequence is 0.
    assert_eq!(append(&log, Append::new("a").after(0)).await, 1);
    assert_eq!(append(&log, Append::new("b").after(1)).await, 2);
    // Writer 2 saw last = 2 and appended; writer 1 also saw 2 and is fenced.
    assert_eq!(append(&log, Append::new("w2").after(2)).await, 3);
    match log.append(Append::new("w1").after(2)).await {
        Err(AppendError::Fenced { expected, actual }) => {
            assert_eq!(expected, 2);
            assert_eq!(actual, Some(3), "the server names the last sequence");
        }
        other => panic!("a stale fence was not reported as Fenced: {other:?}"),
    }
    // How the client reports it, unwrapped: kind WrongLastSequence, source
    // the server's error with code 10071.
    let js = connect(Some(&cluster.urls)).await.unwrap();
    let raw = js
        .send_publish(
            log.subject().to_owned(),
            async_nats::jetstream::message::PublishMessage::build()
                .payload("w1".into())
                .expected_last_sequence(2),
        )
        .await
        .unwrap()
        .await
        .expect_err("a stale fence was accepted");
    assert_eq!(
        raw.kind(),
        async_nats::jetstream::context::PublishErrorKind::WrongLastSequence
    );
    let server = std::error::Error::source(&raw)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::Error>())
        .expect("the server's error is the source");
    assert_eq!(
        server.error_code(),
        async_nats::jetstream::ErrorCode::STREAM_WRONG_LAST_SEQUENCE
    );
    assert_eq!(server.error_code().0, 10071);
    assert_eq!(server.code(), 400);
    assert_eq!(
        log.last_sequence().await.unwrap(),
        3,
        "a fenced append stored"
    );
    // The fence and the id together: the retry of an append whose ack was
    // lost carries the same id and the same, now stale, fence; the server
    // checks the id first, so the retry is a duplicate, not fenced.
    let sent = log
        .append(Append::new("d").id("w2:c9").after(3))
        .await
        .unwrap();
    assert_eq!((sent.sequence, sent.duplicate), (4, false));
    let retry = log
        .append(Append::new("d").id("w2:c9").after(3))
        .await
        .unwrap();
    assert_eq!((retry.sequence, retry.duplicate), (4, true));
    // A fence of 0 on a non-empty log is checked too: 0 means "the log is
    // empty" (so on 2.9.10 as on 2.15.1).
    assert!(
        matches!(
            log.append(Append::new("e").after(0)).await,
            Err(AppendError::Fenced {
                expected: 0,
                actual: Some(4)
            })
        ),
        "a fence of 0 on a non-empty log was accepted"
    );
}

/// (d) A durable pull consumer reads in order and, opened again on a new
/// connection, resumes after the last acknowledged entry.
async fn durable_reader_resumes(cluster: &Cluster) {
    let log = log(cluster, "D").await;
    for i in 1..=5u64 {
        assert_eq!(append(&log, Append::new(format!("e{i}"))).await, i);
    }
    let reader = log.reader("replica-1").await.unwrap();
    let entries = reader
        .next(3, Duration::from_secs(2))
        .await
        .expect("first read");
    let seqs: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [1, 2, 3]);
    for e in &entries {
        assert_eq!(e.payload().as_ref(), format!("e{}", e.sequence).as_bytes());
        e.ack().await.unwrap();
    }
    assert_eq!(reader.acked_up_to().await.unwrap(), 3);
    drop((entries, reader, log));

    // A new client (as another process would be), the same reader name.
    let log = self::log(cluster, "D").await;
    let reader = log.reader("replica-1").await.unwrap();
    assert_eq!(reader.acked_up_to().await.unwrap(), 3);
    let entries = reader.next(10, Duration::from_millis(500)).await.unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [4, 5], "the reader did not resume after its last ack");
    for e in &entries {
        e.ack().await.unwrap();
    }
    // Another name is another reader, from the start.
    let other = log.reader("replica-2").await.unwrap();
    let entries = other.next(10, Duration::from_millis(500)).await.unwrap();
    assert_eq!(entries.first().map(|e| e.sequence), Some(1));
    assert_eq!(entries.len(), 5);
    // Nothing more for the first: a wait that times out is an empty batch.
    assert!(
        reader
            .next(1, Duration::from_millis(200))
            .await
            .unwrap()
            .is_empty()
    );
}

/// Deterministic bytes that no chunking bug can reproduce by accident.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// (e) The object store: a multi-MiB object comes back byte-identical.
async fn object_store(cluster: &Cluster) {
    let js = connect(Some(&cluster.urls)).await.unwrap();
    let snapshots = Snapshots::create(&js, "snapshots", 3).await.unwrap();
    // Reads go through the leader: a direct get from a lagging replica read
    // stale metadata right after a put ("wrong digest").
    let stream = js.get_stream("OBJ_snapshots").await.unwrap();
    let info = stream.get_info().await.unwrap();
    assert!(!info.config.allow_direct, "the bucket allows direct gets");
    assert_eq!(info.config.num_replicas, 3);
    // Not a multiple of the 128 KiB chunk.
    let data = pattern(5 * 1024 * 1024 + 12345, 7);
    let size = snapshots
        .put("state@42", &mut data.as_slice())
        .await
        .unwrap();
    assert_eq!(size, data.len() as u64);
    let back = snapshots.get("state@42").await.unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the object came back different");
    // Replacing it: the new bytes, not the old.
    let newer = pattern(3 * 1024 * 1024, 8);
    snapshots
        .put("state@42", &mut newer.as_slice())
        .await
        .unwrap();
    assert!(snapshots.get("state@42").await.unwrap() == newer);
    let missing = snapshots
        .get("state@missing")
        .await
        .expect_err("a missing object was found");
    let kind = std::error::Error::source(&missing)
        .and_then(|s| s.downcast_ref::<async_nats::jetstream::object_store::GetError>())
        .map(async_nats::jetstream::object_store::GetError::kind);
    assert_eq!(
        kind,
        Some(async_nats::jetstream::object_store::GetErrorKind::NotFound)
    );
}

/// (g) Purges trim the log behind a snapshot; the last sequence, and so the
/// fence, is kept.
async fn purge(cluster: &Cluster) {
    let log = log(cluster, "G").await;
    for i in 1..=10u64 {
        append(&log, Append::new(format!("e{i}"))).await;
    }
    let trimmed = log.trim_before(6).await.unwrap();
    assert_eq!((trimmed.purged, trimmed.first), (5, 6));
    assert_eq!(log.bounds().await.unwrap(), (6, 10));
    let trimmed = log.keep_last(2).await.unwrap();
    assert_eq!((trimmed.purged, trimmed.first), (3, 9));
    // A reader created now starts at the first entry left.
    let reader = log.reader("late").await.unwrap();
    let seqs: Vec<u64> = reader
        .next(10, Duration::from_millis(500))
        .await
        .unwrap()
        .iter()
        .map(|e| e.sequence)
        .collect();
    assert_eq!(seqs, [9, 10]);
    // The fence survives the purge.
    assert_eq!(append(&log, Append::new("e11").after(10)).await, 11);
    // Purging everything: first = last + 1, last unchanged.
    let trimmed = log.trim_before(12).await.unwrap();
    assert_eq!((trimmed.purged, trimmed.first), (3, 12));
    assert_eq!(log.bounds().await.unwrap(), (12, 11));
    assert!(matches!(
        log.append(Append::new("x").after(0)).await,
        Err(AppendError::Fenced { .. })
    ));
    assert_eq!(append(&log, Append::new("e12").after(11)).await, 12);
    // Purging before a sequence not yet reached empties the log and moves
    // the first sequence there: the next append still gets last + 1.
    let trimmed = log.trim_before(100).await.unwrap();
    assert_eq!((trimmed.purged, trimmed.first), (1, 100));
    let (first, last) = log.bounds().await.unwrap();
    assert_eq!(
        (first, last),
        (100, 99),
        "purge past the end moves last too"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn features() {
    let cluster = Cluster::up();
    replicated_stream_and_acks(&cluster).await;
    deduplication(&cluster).await;
    fence(&cluster).await;
    durable_reader_resumes(&cluster).await;
    object_store(&cluster).await;
    purge(&cluster).await;
}

/// Reads `want` entries within 30 s, retrying failed reads (a consumer's
/// replicas electing a leader answer 503, "no responders").
async fn read(reader: &Reader, want: usize, when: &str) -> Vec<Entry> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut entries = Vec::new();
    while entries.len() < want {
        match reader
            .next(want - entries.len(), Duration::from_secs(1))
            .await
        {
            Ok(more) => entries.extend(more),
            Err(e) => eprintln!("read {when}: {e:?}; retrying"),
        }
        assert!(Instant::now() < deadline, "no read {when} within 30 s");
    }
    entries
}

/// (f) Kill -9 the server leading the stream: appends (retried with their id
/// until acknowledged) and reads go on with the two left, then the server
/// comes back and catches up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum() {
    let cluster = Cluster::up();
    let log = log(&cluster, "F").await;
    for i in 1..=3u64 {
        assert_eq!(
            append(&log, Append::new(format!("e{i}")).id(format!("e{i}"))).await,
            i
        );
    }
    let reader = log.reader("r").await.unwrap();
    for e in read(&reader, 3, "before the kill").await {
        e.ack().await.unwrap();
    }
    let leader = log
        .stream()
        .get_info()
        .await
        .unwrap()
        .cluster
        .unwrap()
        .leader
        .unwrap();
    let n: usize = leader
        .trim_start_matches('n')
        .parse()
        .expect("server names are n1..n3");
    cluster.kill(n);
    let killed = Instant::now();

    // Appends with ids, retried until acknowledged: no entry lost or doubled.
    // While the two left elect a new stream leader, a publish finds no
    // responder (`Unavailable`) or times out.
    let mut retries = 0;
    for i in 4..=8u64 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let appended = loop {
            match log
                .append(Append::new(format!("e{i}")).id(format!("e{i}")))
                .await
            {
                Ok(a) => break a,
                Err(e) if Instant::now() < deadline => {
                    if retries == 0 {
                        eprintln!("append e{i} with server {n} down: {e}; retrying");
                    }
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => panic!("no append within 30 s of killing server {n}: {e}"),
            }
        };
        assert_eq!(appended.sequence, i);
        if i == 4 {
            eprintln!(
                "first append acked {:?} after killing the stream leader ({retries} retries)",
                killed.elapsed()
            );
        }
    }
    let info = log.stream().get_info().await.unwrap();
    let placement = info.cluster.unwrap();
    assert_ne!(
        placement.leader.as_deref(),
        Some(leader.as_str()),
        "the dead leader leads"
    );
    assert_eq!(info.state.messages, 8);
    // The reader's consumer has its own replicas and its own leader, which
    // may have been on the killed server too: reads are retried like appends.
    let entries = read(&reader, 5, &format!("with server {n} down")).await;
    eprintln!("first read {:?} after the kill", killed.elapsed());
    let seqs: Vec<u64> = entries.iter().map(|e| e.sequence).collect();
    assert_eq!(seqs, [4, 5, 6, 7, 8], "reads with one server down");
    for e in &entries {
        e.ack().await.unwrap();
    }

    // Back: `start` waits until every server is healthy (caught up).
    cluster.start(n);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let info = log.stream().get_info().await.unwrap();
        let replicas = info.cluster.unwrap().replicas;
        if replicas.len() == 2 && replicas.iter().all(|p| p.current && !p.offline) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server {n} did not catch up: {replicas:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(append(&log, Append::new("e9").after(8)).await, 9);
}
