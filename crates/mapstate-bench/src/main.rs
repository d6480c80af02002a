//! Benchmarks: mapstate against its peers (LMDB, redb, `SQLite`,
//! `memmap2`, `mmap-sync`) and the kernel baselines, in one run.
//!
//! ```text
//! cargo run --release -p mapstate-bench -- [WORKLOAD ...] [--quick] [--markdown] [--charts DIR]
//! ```
//!
//! It prints one JSON line per system and workload (or, with `--markdown`,
//! one table), and with `--charts DIR` draws the same rows as SVG charts.
//! Each figure is the median of the runs; the runs of the systems are
//! interleaved (run 1 of every system, then run 2, ...), so that a noisy
//! moment of this shared machine hits them alike.

mod chart;
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
usage: mapstate-bench [WORKLOAD ...] [--quick] [--markdown] [--charts DIR] [--runs N] [--dir DIR] [--systems A,B,...]

workloads (all when none is named):
  w1      overwrite one random slot and commit, no sync
  w2      the same, each commit durable, one thread
  w2x8    the same, eight threads
  w3      one transaction changes 1,000 random slots, no sync
  w4      consistent read of one random slot, same process
  w5      a reader process reads while a writer process commits flat out
          (also: the writer's longest and p99.9 commit, every commit timed)
  w6      append 256 MiB in 4 KiB records to a growing state, one commit
          per record (PageCache; mapstate through Txn::extend_on_write;
          rows mapstate:set_len+write_at, and mapstate:mapping-no-commits
          like memmap2's: no commits, no crash safety); MB/s, disk
          footprint after close (disk_over_data), mapstate's live image
  notify  commit-to-wake latency of a waiter in another process
  grow    first touch of pages past the end of a growing file
  reopen  reopen a 1 GiB state after its writer was killed (SIGKILL)
  freestore  one commit of a one-byte free store (as_mut_slice) at a random
          page, in a 16 MiB and a 4 GiB state: p50/p99/mean per commit and
          the ratio (row mapstate:write_at: the same by write_at); mapstate
          only
  create  create a 2 GiB state, then close it; mapstate only
  checkpoint  Writer::checkpoint of a 1 GiB state after a commit that
          changed 8 bytes in every page (dense) and after one that
          changed every other page (sparse); mapstate only

w1, w3 and w6 also report the bytes written to disk per byte committed
(disk_bytes_per_byte: page-cache bytes dirtied, from /proc/self/io, over
the timed part and the close, over the payload committed).

options:
  --quick      small sizes and short loops (CI; about a minute): w6 32 MiB,
               freestore 16 MiB and 1 GiB, create 256 MiB
  --markdown   print one Markdown table instead of JSON lines
  --charts DIR also draw the rows as SVG charts into DIR (created if
               missing), from the same run: throughput.svg (ops/s per
               workload and system), commit-latency.svg (p50/p99 of w1, w2,
               w2x8, w3; w5's p99, p99.9 and longest commit) and
               notify-latency.svg (p50/p99); a chart with no figure in the
               run is not written
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
    charts: Option<PathBuf>,
    runs: Option<usize>,
    dir: Option<PathBuf>,
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut opts = Options {
        workloads: Vec::new(),
        systems: peers::all(),
        quick: false,
        markdown: false,
        charts: None,
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
            "--charts" => {
                opts.charts = Some(PathBuf::from(
                    it.next().ok_or("--charts needs a directory")?,
                ));
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

/// One row of a workload: a system, or one of its variants.
struct Entry {
    system: &'static dyn System,
    variant: Option<&'static str>,
    name: String,
}

impl Entry {
    /// The rows of `workload`: each system's own, then its variants'.
    fn all(systems: &[&'static dyn System], workload: Workload) -> Vec<Self> {
        systems
            .iter()
            .flat_map(|&system| {
                std::iter::once(Self {
                    system,
                    variant: None,
                    name: system.name().to_owned(),
                })
                .chain(system.variants(workload).iter().map(move |&v| Self {
                    system,
                    variant: Some(v),
                    name: format!("{}:{v}", system.name()),
                }))
            })
            .collect()
    }

    fn run(&self, workload: Workload, cx: &Ctx) -> harness::Result<Outcome> {
        match self.variant {
            None => self.system.run(workload, cx),
            Some(v) => self.system.run_variant(v, workload, cx),
        }
    }
}

/// Runs `workload` on every system (and variant), `runs` times,
/// interleaved (run r of every system before run r + 1 of any), and hands
/// one row per system and variant to `emit`. Returns whether any run
/// failed.
fn run_workload(
    cx: &Ctx,
    systems: &[&'static dyn System],
    workload: Workload,
    mut emit: impl FnMut(Row),
) -> bool {
    let entries = Entry::all(systems, workload);
    let n = entries.len();
    let mut outcomes: Vec<Vec<Outcome>> = vec![Vec::new(); n];
    let mut errors: Vec<Vec<String>> = vec![Vec::new(); n];
    for r in 1..=cx.params.runs {
        for (i, entry) in entries.iter().enumerate() {
            if matches!(outcomes[i].first(), Some(Outcome::NotApplicable(_))) {
                continue;
            }
            // Each run starts with no dirty pages left by the one before,
            // so that its figures do not include their writeback (untimed).
            rustix::fs::sync();
            match entry.run(workload, cx) {
                Ok(o) => outcomes[i].push(o),
                Err(e) => {
                    eprintln!(
                        "mapstate-bench: {} {} run {r}: {e}",
                        entry.name,
                        workload.name()
                    );
                    errors[i].push(format!("run {r}: {e}"));
                }
            }
        }
    }
    for (i, entry) in entries.iter().enumerate() {
        emit(Row::combine(
            &entry.name,
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
    // A directory the charts cannot go to fails now, not after the run.
    if let Some(dir) = &opts.charts
        && let Err(e) = std::fs::create_dir_all(dir)
    {
        eprintln!(
            "mapstate-bench: cannot create the charts' directory {}: {e}",
            dir.display()
        );
        return ExitCode::FAILURE;
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
    let t = Instant::now();
    for system in &opts.systems {
        system.cleanup(&cx);
    }
    drop(base);
    eprintln!(
        "mapstate-bench: cleanup (kept states and the files' directory removed) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    eprintln!(
        "mapstate-bench: total {:.1} s",
        start.elapsed().as_secs_f64()
    );

    failed |= !output(opts, &cx.params, &fs, rows);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// After the run: the table (`--markdown`) and the charts (`--charts`),
/// both of `rows` in the table's order. Returns whether the charts (if
/// asked for) were written.
fn output(opts: &Options, params: &Params, fs: &str, mut rows: Vec<Row>) -> bool {
    // The table's order, the charts' too: a variant (`mapstate:VARIANT`)
    // sorts with its system, after it (the sort is stable).
    let order = |r: &Row| {
        let w = Workload::ALL.iter().position(|w| w.name() == r.workload);
        let name = r.system.split(':').next().unwrap_or_default();
        let s = opts.systems.iter().position(|s| s.name() == name);
        (w, s)
    };
    rows.sort_by_key(order);
    let preface = format!(
        "Each figure is the median of {} run(s){}; files on {fs}.",
        params.runs,
        if params.quick { " (--quick sizes)" } else { "" }
    );
    if opts.markdown {
        println!("{preface}\n");
        print!("{}", markdown(&rows));
    }
    if let Some(dir) = &opts.charts {
        let caption = format!(
            "{preface} All figures from one run on one machine ({}): compare the systems \
             with each other, as ratios, not with another machine's figures.",
            machine()
        );
        match chart::write(dir, &rows, &caption) {
            Ok(files) => {
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                eprintln!("mapstate-bench: charts: {}", names.join(", "));
            }
            Err(e) => {
                eprintln!(
                    "mapstate-bench: cannot write the charts into {}: {e}",
                    dir.display()
                );
                return false;
            }
        }
    }
    true
}

/// The machine in a few words, for the charts: `2 CPUs, Linux 6.18.44`.
fn machine() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let uname = rustix::system::uname();
    format!(
        "{cpus} CPUs, {} {}",
        uname.sysname().to_string_lossy(),
        uname.release().to_string_lossy()
    )
}
