//! End-to-end checks of the benchmark binary: every system answers every
//! workload, and the torn-read counter counts.

use std::process::Command;

/// Runs the benchmark with `args`; returns its JSON lines, parsed.
fn run(args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_mapstate-bench"))
        .args(args)
        .output()
        .expect("run mapstate-bench");
    assert!(
        out.status.success(),
        "mapstate-bench {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect()
}

fn row<'a>(rows: &'a [serde_json::Value], system: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["system"] == system)
        .unwrap_or_else(|| panic!("no row for {system}"))
}

#[test]
fn every_system_has_a_row() {
    let rows = run(&["w4", "--quick", "--runs", "1"]);
    let systems: Vec<&str> = rows.iter().map(|r| r["system"].as_str().unwrap()).collect();
    assert_eq!(
        systems,
        [
            "mapstate",
            "lmdb",
            "redb",
            "sqlite",
            "memmap2",
            "mmap-sync",
            "raw-fdatasync",
            "raw-futex",
            "raw-pipe"
        ]
    );
    for r in &rows {
        assert_eq!(r["workload"], "w4");
        assert!(r.get("ops_per_sec").is_some(), "{r}");
        assert!(r["notes"].as_str().is_some_and(|n| !n.is_empty()), "{r}");
    }
    for system in ["mapstate", "lmdb"] {
        assert!(
            row(&rows, system)["ops_per_sec"].as_f64().unwrap() > 0.0,
            "{system}"
        );
        assert_eq!(row(&rows, system)["torn"], 0, "{system}");
    }
}

#[test]
fn plain_stores_tear_and_transactions_do_not() {
    // The torn count of plain stores depends on timing; a few tries make
    // a false alarm vanishingly unlikely.
    for _ in 0..5 {
        let rows = run(&["w5", "--quick", "--runs", "1", "--systems", "memmap2,lmdb"]);
        assert_eq!(row(&rows, "lmdb")["torn"], 0);
        if row(&rows, "memmap2")["torn"].as_u64().unwrap() > 0 {
            return;
        }
    }
    panic!("memmap2 never tore a slot in w5");
}
