//! `bench`: runs the benchmark crate's mapstate workloads at quick sizes
//! through cargo when this binary sits in a source checkout, and otherwise
//! says how to run the full comparison.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::util::{self, CmdResult, EXIT_FAILURE, EXIT_OK, Failure};

/// The full comparison, as the README and BENCHMARKS.md run it.
const FULL: &str = "cargo run --release -p mapstate-bench -- --markdown --charts docs/bench";

/// The workspace this binary was built from, if it is still there.
fn checkout() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.join("crates/mapstate-bench/Cargo.toml")
        .is_file()
        .then(|| root.canonicalize().unwrap_or(root))
}

/// The cargo to run: `$CARGO` (set when run through cargo), else `cargo` on the PATH.
fn cargo() -> Option<PathBuf> {
    let c = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    Command::new(&c)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()
        .filter(std::process::ExitStatus::success)
        .map(|_| c)
}

/// Runs `bench`.
pub(crate) fn run(extra: &[String], dry_run: bool, json: bool) -> CmdResult {
    let mut args: Vec<String> = [
        "run",
        "--release",
        "-p",
        "mapstate-bench",
        "--",
        "--systems",
        "mapstate",
        "--quick",
    ]
    .map(String::from)
    .to_vec();
    if !json {
        args.push("--markdown".into());
    }
    args.extend(extra.iter().cloned());
    let shown = format!("cargo {}", args.join(" "));
    let (Some(root), Some(cargo)) = (checkout(), cargo()) else {
        if json {
            println!(
                "{}",
                serde_json::json!({"ran": false, "quick": shown, "full": FULL})
            );
        } else {
            println!("The benchmarks run from a source checkout of mapstate, with cargo:");
            println!("  {shown}");
            println!("      mapstate's workloads at quick sizes (about a minute, after the build)");
            println!("  {FULL}");
            println!(
                "      the full comparison against LMDB, redb, SQLite, memmap2 and mmap-sync \
                 (see BENCHMARKS.md)"
            );
        }
        return Ok(EXIT_OK);
    };
    if dry_run {
        if json {
            println!(
                "{}",
                serde_json::json!({"ran": false, "dir": root, "command": shown, "full": FULL})
            );
        } else {
            println!("cd {} && {shown}", root.display());
        }
        return Ok(EXIT_OK);
    }
    let pb = util::spinner(
        "building the benchmark (the first build compiles its peers: minutes)",
        !json,
    );
    let mut cmd = Command::new(&cargo);
    cmd.args(&args).current_dir(&root).stdin(Stdio::null());
    let status = if pb.is_hidden() {
        cmd.status()
    } else {
        // Show cargo's and the bench's progress in the spinner, not as a
        // scroll of lines; print them all if it fails.
        cmd.stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot run cargo: {e}")))?;
        let err = BufReader::new(child.stderr.take().expect("piped"));
        let mut log = Vec::new();
        for line in err.lines().map_while(Result::ok) {
            let l = line.trim();
            if let Some(rest) = l.strip_prefix("mapstate-bench: ") {
                pb.set_message(rest.to_owned());
            } else if l.starts_with("Compiling") || l.starts_with("Running") {
                pb.set_message(l.to_owned());
            }
            log.push(line);
        }
        let st = child.wait();
        pb.finish_and_clear();
        if st.as_ref().is_ok_and(|s| !s.success()) {
            for l in &log {
                eprintln!("{l}");
            }
        }
        st
    };
    let status =
        status.map_err(|e| Failure::new(EXIT_FAILURE, format!("cannot run cargo: {e}")))?;
    if !status.success() {
        return Err(Failure::new(
            EXIT_FAILURE,
            format!("the benchmark failed ({status}): {shown}"),
        ));
    }
    if !json {
        println!(
            "\nThe full comparison (every workload against LMDB, redb, SQLite, memmap2 and mmap-sync):"
        );
        println!("  cd {} && {FULL}", root.display());
    }
    Ok(EXIT_OK)
}
