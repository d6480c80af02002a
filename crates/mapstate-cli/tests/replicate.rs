//! `mapstate replicate` and `mapstate follow` as processes, on a real
//! three-server cluster: commits made by other processes (`mapstate set`,
//! each one a writer that checkpoints when it closes) reach a copy through
//! a publisher that is killed with SIGKILL mid-stream and started again;
//! the copy ends at the same commit with the same bytes.

#[path = "../../mapstate-replicate/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::Cluster;
use mapstate::Reader;

fn mapstate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mapstate"))
}

fn ok(c: &mut Command) {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{c:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn publisher(state: &Path, urls: &str) -> Child {
    mapstate()
        .arg("replicate")
        .arg(state)
        .args(["--nats", urls, "--json"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Kills the publisher `p`, which must still be running.
fn kill(mut p: Child) {
    if let Some(st) = p.try_wait().unwrap() {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut p.stderr.take().unwrap(), &mut err).unwrap();
        panic!("the publisher stopped on its own ({st}): {err}");
    }
    p.kill().unwrap();
    p.wait().unwrap();
}

#[test]
fn a_copy_follows_commits_of_other_processes_through_a_killed_publisher() {
    let cluster = Cluster::up();
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    let state = dir.path().join("state.db");
    let copy = dir.path().join("copy.db");
    ok(mapstate()
        .arg("create")
        .arg(&state)
        .args(["--len", "64KiB"]));
    let mut p = publisher(&state, &cluster.urls);
    for i in 0..40u64 {
        if i == 20 {
            // SIGKILL mid-stream, then a new publisher goes on from where
            // the stream ends.
            kill(p);
            p = publisher(&state, &cluster.urls);
        }
        ok(mapstate().arg("set").arg(&state).args([
            "--offset",
            &(i * 1000).to_string(),
            "--str",
            &format!("commit {i}"),
        ]));
    }
    let want = Reader::open(&state).unwrap().snapshot().unwrap();
    assert_eq!(want.0, 40);
    // The follower, run until its copy reaches commit 40 (each run ends
    // after its timeout; the next goes on through the same durable reader).
    let mut seq = 0;
    for _ in 0..30 {
        let out = mapstate()
            .arg("follow")
            .arg(&copy)
            .args(["--stream", "mapstate-state_db", "--nats", &cluster.urls])
            .args(["--name", "f", "--timeout", "2s", "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        if copy.exists() {
            seq = Reader::open(&copy).unwrap().seq();
        }
        if seq == 40 {
            // Its last line says how far behind it is: nothing left.
            let out = String::from_utf8(out.stdout).unwrap();
            let last = out.lines().last().unwrap_or_default();
            assert!(
                last.contains("\"seq\":40") && last.contains("\"behind\":0"),
                "{out}"
            );
            break;
        }
    }
    kill(p);
    assert_eq!(seq, 40, "the copy did not reach the last commit");
    assert!(
        Reader::open(&copy).unwrap().snapshot().unwrap() == want,
        "the copy's bytes differ"
    );
}
