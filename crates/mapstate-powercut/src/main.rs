//! `mapstate-powercut`: the workload and the checker of mapstate's
//! power-cut tests, run under the qemu harness in `../shared/powercut`
//! (see `scripts/powercut.sh`).
//!
//! - `workload MODE [INTERVAL_MS] [--shrink | --append] [--control] [--threads N]`
//!   runs in the guest (cwd on the ext4 disk): recovers `state.db`, then
//!   commits forever, printing what each mode promises (`committed N`,
//!   `committed N T`, `checkpointed N`). `--control` is the negative
//!   control: it opens the state with `Durability::PageCache` whatever MODE
//!   promises, so the checker must find lost commits (sync, periodic).
//!   `--threads N` (sync only) commits from N threads on one `SharedWriter`,
//!   so that group commit is what the power cuts test.
//! - `check MODE [INTERVAL_MS] [--shrink | --append] [--fresh] ROOTDIR CYCLE_LOG ALL_LOG`
//!   runs on the host after each cut: recovers a copy of the state as the
//!   next boot would, checks that it is exactly one committed state, and
//!   that no more was lost than the mode allows. Exit 0 ok, 1 violation,
//!   2 checker error.

mod bounds;
mod checker;
mod model;
mod workload;

use std::path::PathBuf;
use std::process::ExitCode;

use bounds::Mode;

const USAGE: &str = "usage:
  mapstate-powercut workload MODE [INTERVAL_MS] [--shrink | --append] [--control] [--threads N]
  mapstate-powercut check MODE [INTERVAL_MS] [--shrink | --append] [--fresh] ROOTDIR CYCLE_LOG ALL_LOG
MODE: sync | periodic (needs INTERVAL_MS) | pagecache
--shrink: the state's length follows a saw tooth (shrinks, then grows again)
--append: every transaction only appends pages (cut back now and then)
--fresh: the harness makes a new disk every cycle (no cross-cycle checks)
--control: negative control: commit with PageCache durability whatever MODE promises
--threads N: (sync) N threads commit through one SharedWriter (group commit)
env PC_SLACK_MS: periodic slack added to the interval (default 250)";

/// The flags of both subcommands.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)] // independent switches
pub(crate) struct Flags {
    /// The state's length follows a saw tooth.
    pub(crate) shrink: bool,
    /// The append workload (`model::append`).
    pub(crate) append: bool,
    /// A new disk every cycle.
    pub(crate) fresh: bool,
    /// Negative control: `PageCache` durability whatever the mode.
    pub(crate) control: bool,
    /// Threads committing through one `SharedWriter` (0: one `Writer`).
    pub(crate) threads: usize,
}

/// `MODE [INTERVAL_MS]` and the flags, then the positional rest.
fn parse_common(args: &[String]) -> Result<(Mode, Flags, Vec<String>), String> {
    let mut it = args.iter();
    let name = it.next().ok_or("missing MODE")?;
    let mut interval = None;
    let mut f = Flags::default();
    let mut rest = Vec::new();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--threads" => {
                let n = it.next().ok_or("--threads needs a number")?;
                f.threads = n
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or_else(|| format!("--threads {n}: not a positive number"))?;
            }
            "--shrink" => f.shrink = true,
            "--append" => f.append = true,
            "--fresh" => f.fresh = true,
            "--control" => f.control = true,
            _ if interval.is_none() && rest.is_empty() && a.parse::<u64>().is_ok() => {
                interval = a.parse().ok();
            }
            _ => rest.push(a.clone()),
        }
    }
    if interval.is_some() && name != "periodic" {
        return Err(format!("INTERVAL_MS is for periodic only, not {name}"));
    }
    if f.append && (f.shrink || f.threads > 0) {
        return Err("--append goes with neither --shrink nor --threads".into());
    }
    if f.threads > 0 && name != "sync" {
        return Err(format!("--threads is for sync only, not {name}"));
    }
    Ok((Mode::parse(name, interval)?, f, rest))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("workload") => parse_common(&args[1..]).and_then(|(mode, f, rest)| {
            if rest.is_empty() {
                Ok(workload::run(mode, f))
            } else {
                Err(format!("unexpected arguments {rest:?}"))
            }
        }),
        Some("check") => parse_common(&args[1..]).and_then(|(mode, f, rest)| {
            let [root, cycle_log, all_log] = <[String; 3]>::try_from(rest)
                .map_err(|r| format!("need ROOTDIR CYCLE_LOG ALL_LOG, got {r:?}"))?;
            Ok(checker::run(&checker::Args {
                mode,
                shrink: f.shrink,
                append: f.append,
                fresh: f.fresh,
                root: PathBuf::from(root),
                cycle_log: PathBuf::from(cycle_log),
                all_log: PathBuf::from(all_log),
            }))
        }),
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err("missing subcommand".into()),
    };
    r.unwrap_or_else(|e| {
        eprintln!("mapstate-powercut: {e}\n{USAGE}");
        ExitCode::from(2)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| (*x).to_string()).collect()
    }

    #[test]
    fn arguments_parse() {
        let (m, f, rest) = parse_common(&s(&["periodic", "100", "r", "c", "a"])).unwrap();
        assert_eq!(m, Mode::Periodic { interval_ms: 100 });
        assert_eq!(f, Flags::default());
        assert_eq!(rest, s(&["r", "c", "a"]));
        let (m, f, rest) =
            parse_common(&s(&["sync", "--shrink", "--control", "r", "c", "a"])).unwrap();
        assert_eq!(m, Mode::Sync);
        assert!(f.shrink && f.control && !f.fresh);
        assert_eq!(rest.len(), 3);
        let (_, f, _) = parse_common(&s(&["sync", "--threads", "4"])).unwrap();
        assert_eq!(f.threads, 4);
        assert!(parse_common(&s(&["sync", "--threads", "0"])).is_err());
        assert!(parse_common(&s(&["sync", "--threads"])).is_err());
        assert!(parse_common(&s(&["pagecache", "--threads", "2"])).is_err());
        assert!(parse_common(&s(&["periodic", "r"])).is_err());
        assert!(parse_common(&s(&["sync", "5"])).is_err());
        assert!(parse_common(&s(&["bogus"])).is_err());
    }
}
