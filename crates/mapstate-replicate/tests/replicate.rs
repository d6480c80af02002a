//! Replication on a real three-server cluster: a follower kept by a
//! publisher beside a busy writer ends byte-identical to the writer's
//! state, at the same sequence number, through growth, shrinks, large
//! commits and checkpoints (which make the publisher send snapshots), a
//! publisher and a follower stopped mid-stream and started again, and one
//! server killed with SIGKILL and restarted.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use common::Cluster;
use mapstate::{Reader, Writer};
use mapstate_replicate::{Follower, Publisher, Target, async_nats};

/// The writer stays at most this many commits ahead of the publisher
/// (which says how far it is through `published`), so that the stream
/// carries commits, not only one snapshot at the end.
const WINDOW: u64 = 100;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One commit of a random kind: small writes, a growth, a shrink (grown
/// back in the same transaction sometimes), or a large write.
fn random_commit(w: &mut Writer, rng: &mut Rng) {
    let len = w.len();
    let mut t = w.begin();
    match rng.below(10) {
        0 => t
            .set_len((len + 1 + rng.below(30_000)).min(8 << 20))
            .unwrap(),
        1 => {
            t.set_len(len / 2 + rng.below(len / 2 + 1)).unwrap();
            if rng.below(2) == 0 {
                t.set_len(len).unwrap();
            }
        }
        2 => {
            let n = (64 << 10).min(len);
            let off = rng.below(len - n + 1);
            t.write_at(off, &vec![rng.next() as u8; n as usize])
                .unwrap();
        }
        _ => {
            for _ in 0..=rng.below(6) {
                let n = 1 + rng.below(64);
                if n <= len {
                    let off = rng.below(len - n + 1);
                    t.write_at(off, &vec![rng.next() as u8; n as usize])
                        .unwrap();
                }
            }
        }
    }
    t.commit().unwrap();
}

fn state_of(path: &Path) -> (u64, Vec<u8>) {
    Reader::open(path).unwrap().snapshot().unwrap()
}

#[test]
#[allow(clippy::too_many_lines)] // one scenario, step by step
fn a_follower_converges_through_restarts_and_a_server_kill() {
    let commits_n: u64 = std::env::var("REPL_COMMITS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    #[allow(non_snake_case)]
    let COMMITS = commits_n;
    let cluster = Cluster::up();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = dir.path().join("writer.state");
    let copy = dir.path().join("follower.state");
    let mut w = Writer::options()
        .create(true)
        .len(64 << 10)
        .max_size(16 << 20)
        .log_size(16 << 20)
        .open(&src)
        .unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt
        .block_on(mapstate_replicate::connect_to(&cluster.urls))
        .unwrap();
    let target = Target::new("REPL", 3);
    let done = AtomicBool::new(false);
    let committed = AtomicU64::new(0);
    let published = (Mutex::new(None::<u64>), Condvar::new());

    std::thread::scope(|s| {
        s.spawn(|| {
            let mut rng = Rng(0x2545_F491_4F6C_DD1D);
            for i in 0..COMMITS {
                let (m, cv) = &published;
                let g = m.lock().unwrap();
                drop(
                    cv.wait_while(g, |p| p.is_none_or(|p| p + WINDOW < i))
                        .unwrap(),
                );
                random_commit(&mut w, &mut rng);
                committed.store(i + 1, Ordering::Release);
                if i % 997 == 0 {
                    // The log restarts: a publisher behind sends a snapshot.
                    w.checkpoint().unwrap();
                }
            }
            done.store(true, Ordering::Release);
        });
        {
            rt.block_on(async {
                let mut p = Publisher::start(&client, &src, &target).await.unwrap();
                let tell = |last: u64| {
                    *published.0.lock().unwrap() = Some(last);
                    published.1.notify_all();
                };
                tell(p.last());
                let opts = Writer::options();
                let mut f = Follower::start(&client, &copy, &target, "f1", opts.clone())
                    .await
                    .unwrap();
                let (mut restarted_p, mut restarted_f, mut killed) = (false, false, false);
                let (mut commits, mut snapshots, mut applied, mut restored) = (0, 0, 0, 0);
                let deadline = Instant::now() + Duration::from_secs(300);
                loop {
                    let pubd = p.step(Duration::from_millis(2)).await.unwrap();
                    commits += pubd.commits;
                    snapshots += pubd.snapshots;
                    tell(p.last());
                    let fol = f.step(Duration::from_millis(2)).await.unwrap();
                    applied += fol.applied;
                    restored += fol.restored;
                    let n = committed.load(Ordering::Acquire);
                    if !restarted_p && n > COMMITS / 4 {
                        // The publisher stops (as if killed) and starts again.
                        drop(p);
                        p = Publisher::start(&client, &src, &target).await.unwrap();
                        restarted_p = true;
                    }
                    if !restarted_f && n > COMMITS / 2 {
                        drop(f);
                        f = Follower::start(&client, &copy, &target, "f1", opts.clone())
                            .await
                            .unwrap();
                        restarted_f = true;
                    }
                    if !killed && n > 3 * COMMITS / 4 {
                        cluster.kill(2);
                        killed = true;
                    }
                    if done.load(Ordering::Acquire) && f.seq() == COMMITS && p.last() == COMMITS {
                        break;
                    }
                    assert!(Instant::now() < deadline, "no convergence: follower at {}, publisher at {}", f.seq(), p.last());
                }
                cluster.start(2);
                eprintln!(
                    "published {commits} commits and {snapshots} snapshots; applied {applied}, restored {restored}"
                );
                assert!(commits > COMMITS / 2 && snapshots >= 1, "{commits} commits, {snapshots} snapshots");
                assert_eq!(f.behind().await.unwrap(), 0, "the follower is at the end");
                f.close().unwrap();
            });
        }
    });
    drop(w);
    let (a, b) = (state_of(&src), state_of(&copy));
    assert_eq!(a.0, COMMITS);
    assert_eq!(b.0, COMMITS, "the follower's sequence number");
    assert!(
        a.1 == b.1,
        "the follower's bytes differ ({} and {} bytes)",
        a.1.len(),
        b.1.len()
    );
}

/// `publish_through(seq)`: when it returns, the stream's last record is
/// commit `seq` (a commit that must survive this machine waits for it); a
/// commit the state does not have is an error, not a hang.
#[test]
fn publish_through_returns_once_the_stream_holds_the_commit() {
    let cluster = Cluster::up();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let src = dir.path().join("s");
    let mut w = Writer::options().create(true).len(4096).open(&src).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = mapstate_replicate::connect_to(&cluster.urls).await.unwrap();
        let target = Target::new("THROUGH", 3);
        let mut p = Publisher::start(&client, &src, &target).await.unwrap();
        for i in 0..20u8 {
            let mut t = w.begin();
            t.write_at(u64::from(i), &[i]).unwrap();
            let seq = t.commit().unwrap();
            p.publish_through(seq).await.unwrap();
            let js = async_nats::jetstream::new(client.clone());
            let stream = js.get_stream("THROUGH").await.unwrap();
            let m = stream
                .get_last_raw_message_by_subject("THROUGH.log")
                .await
                .unwrap();
            let rec = mapstate_replicate::Record::decode(&m.payload).unwrap();
            assert_eq!(rec.seq(), seq, "returned before the stream held it");
        }
        let e = p.publish_through(1000).await.unwrap_err();
        assert!(
            matches!(
                e,
                mapstate_replicate::PublishError::NotCommitted {
                    asked: 1000,
                    state: 20
                }
            ),
            "{e}"
        );
    });
}
