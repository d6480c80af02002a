//! Benchmarks: mapstate against its peers (LMDB, redb, `SQLite`,
//! `memmap2`, `mmap-sync`) and the kernel baselines, in one run.
//!
//! ```text
//! cargo run --release -p mapstate-bench -- [WORKLOAD ...] [--quick] [--markdown]
//! ```
//!
//! It prints one JSON line per system and workload (or, with `--markdown`,
//! one table). Each figure is the median of the runs; the runs of the
//! systems are interleaved (run 1 of every system, then run 2, ...), so that
//! a noisy moment of this shared machine hits them alike.

mod child;
mod harness;
mod peers;
mod report;
mod shm;
mod slot;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use crate::child::{CHILD_COMMAND, ChildArgs};
use crate::harness::{Ctx, Params, Workload, filesystem};
use crate::peers::System;
use crate::report::{Outcome, Row, markdown};

const USAGE: &str = "\
usage: mapstate-bench [WORKLOAD ...] [--quick] [--markdown] [--runs N] [--dir DIR] [--systems A,B,...]

workloads (all when none is named):
  w1      overwrite one random slot and commit, no sync
  w2      the same, each commit durable, one thread
  w2x8    the same, eight threads
  w3      one transaction changes 1,000 random slots, no sync
  w4      consistent read of one random slot, same process
  w5      a reader process reads while a writer process commits
  w6      append 256 MiB in 4 KiB records to a growing file
  notify  commit-to-wake latency of a waiter in another process
  grow    first touch of pages past the end of a growing file
  reopen  reopen a 1 GiB state after its writer was killed (SIGKILL)

options:
  --quick      small sizes and short loops (CI; under a minute)
  --markdown   print one Markdown table instead of JSON lines
  --runs N     runs per figure (default 3; each figure is their median)
  --dir DIR    where to create the files (default: the temp dir; use a disk
               filesystem, not tmpfs)
  --systems    only these systems (default: all)";

/// What the command line asked for.
struct Options {
    workloads: Vec<Workload>,
    systems: Vec<&'static dyn System>,
    quick: bool,
    markdown: bool,
    runs: Option<usize>,
    dir: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        workloads: Vec::new(),
        systems: peers::all(),
        quick: false,
        markdown: false,
        runs: None,
        dir: None,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--quick" => opts.quick = true,
            "--markdown" => opts.markdown = true,
            "--runs" => {
                let n = it.next().ok_or("--runs needs a number")?;
                let n: usize = n.parse().map_err(|e| format!("--runs {n}: {e}"))?;
                if n == 0 {
                    return Err("--runs must be at least 1".to_owned());
                }
                opts.runs = Some(n);
            }
            "--dir" => opts.dir = Some(PathBuf::from(it.next().ok_or("--dir needs a path")?)),
            "--systems" => {
                let list = it.next().ok_or("--systems needs a list")?;
                opts.systems = list
                    .split(',')
                    .map(|name| peers::find(name).ok_or(format!("unknown system {name:?}")))
                    .collect::<Result<_, _>>()?;
            }
            "-h" | "--help" => return Err(String::new()),
            name => opts
                .workloads
                .push(Workload::parse(name).ok_or(format!("unknown workload or option {name:?}"))?),
        }
    }
    if opts.workloads.is_empty() {
        opts.workloads = Workload::ALL.to_vec();
    }
    Ok(opts)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(CHILD_COMMAND) {
        return child_main(&args[1..]);
    }
    match parse(&args) {
        Ok(opts) => run(&opts),
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("mapstate-bench: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// The hidden child subcommand of the cross-process workloads.
fn child_main(args: &[String]) -> ExitCode {
    let result = ChildArgs::parse(args).and_then(|a| {
        let system = peers::find(&a.system).ok_or("unknown system")?;
        system.child(&a)
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mapstate-bench child {args:?}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs `workload` on every system, `runs` times, interleaved (run r of
/// every system before run r + 1 of any), and hands one row per system to
/// `emit`. Returns whether any run failed.
fn run_workload(
    cx: &Ctx,
    systems: &[&'static dyn System],
    workload: Workload,
    mut emit: impl FnMut(Row),
) -> bool {
    let n = systems.len();
    let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); n];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); n];
    for r in 1..=cx.params.runs {
        for (i, system) in systems.iter().enumerate() {
            if matches!(outcomes[i].first(), Some(Outcome::NotApplicable(_))) {
                continue;
            }
            // Each run starts with no dirty pages left by the one before,
            // so that its figures do not include their writeback (untimed).
            rustix::fs::sync();
            match system.run(workload, cx) {
                Ok(o) => outcomes[i].push(o),
                Err(e) => {
                    eprintln!(
                        "mapstate-bench: {} {} run {r}: {e}",
                        system.name(),
                        workload.name()
                    );
                    errors[i].push(format!("run {r}: {e}"));
                }
            }
        }
    }
    for (i, system) in systems.iter().enumerate() {
        emit(Row::combine(
            system.name(),
            workload.name(),
            &outcomes[i],
            &errors[i],
        ));
    }
    errors.iter().any(|e| !e.is_empty())
}

fn run(opts: &Options) -> ExitCode {
    let mut params = Params::new(opts.quick);
    if let Some(runs) = opts.runs {
        params.runs = runs;
    }
    let parent = opts.dir.clone().unwrap_or_else(std::env::temp_dir);
    let base = match tempfile::Builder::new()
        .prefix("mapstate-bench-")
        .tempdir_in(&parent)
    {
        Ok(base) => base,
        Err(e) => {
            eprintln!(
                "mapstate-bench: cannot create a directory in {}: {e}",
                parent.display()
            );
            return ExitCode::FAILURE;
        }
    };
    let fs = filesystem(base.path());
    if fs == "tmpfs" {
        eprintln!(
            "mapstate-bench: warning: {} is tmpfs; syncs are no-ops there (use --dir on a disk)",
            parent.display()
        );
    }
    eprintln!(
        "mapstate-bench: {} run(s) per figure{}, files in {} ({fs})",
        params.runs,
        if params.quick { ", --quick" } else { "" },
        base.path().display()
    );
    let cx = Ctx {
        params,
        base: base.path().to_owned(),
    };

    let start = Instant::now();
    let mut rows = Vec::new();
    let mut failed = false;
    for workload in Workload::RUN_ORDER {
        if opts.workloads.contains(&workload) {
            let t = Instant::now();
            failed |= run_workload(&cx, &opts.systems, workload, |row| {
                if !opts.markdown {
                    println!("{}", row.to_json());
                }
                rows.push(row);
            });
            eprintln!(
                "mapstate-bench: {} done in {:.1} s",
                workload.name(),
                t.elapsed().as_secs_f64()
            );
        }
    }
    for system in &opts.systems {
        system.cleanup(&cx);
    }
    eprintln!(
        "mapstate-bench: total {:.1} s",
        start.elapsed().as_secs_f64()
    );

    if opts.markdown {
        let order = |r: &Row| {
            let w = Workload::ALL.iter().position(|w| w.name() == r.workload);
            let s = opts.systems.iter().position(|s| s.name() == r.system);
            (w, s)
        };
        rows.sort_by_key(order);
        println!(
            "Each figure is the median of {} run(s){}; files on {fs}.\n",
            cx.params.runs,
            if cx.params.quick {
                " (--quick sizes)"
            } else {
                ""
            }
        );
        print!("{}", markdown(&rows));
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
