//! The `mapstate` command line.

mod bench;
mod checkfs;
mod demo;
mod replicate;
mod state;
mod torture;
mod util;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, Subcommand};
use mapstate::Durability;
use serde_json::json;

use crate::util::{
    EXIT_OK, EXIT_USAGE, EXIT_VIOLATION, parse_durability, parse_duration, parse_hex, parse_size,
};

const ABOUT: &str = "Inspect, change, check and demonstrate mapstate states";

const LONG_ABOUT: &str = "\
mapstate makes a memory-mapped file safe to use as a Linux program's persistent
state: atomic commits that survive any crash, readers in other processes that
never see a torn state, push notification of changes.

This command line creates, inspects, checks and changes states from the
outside, through the same locks and commit path as any program using the
library: `get` and `set` are the safe way to read and change a running
program's state (no ptrace). `demo` shows the whole product in under a minute.

Sizes take units: 4096, 0x1000, 64KiB, 1MiB, 1.5GiB (powers of 1024).
--json prints machine-readable output (one JSON object, or one per line for
`watch`); progress bars appear only when stdout is a terminal.";

const EXAMPLES: &str = "\
Examples:
  mapstate demo                                   the whole product in under a minute
  mapstate create state.db --len 1MiB             a new state of 1 MiB of zeros
  mapstate set state.db --offset 0 --str hello    one commit, through the writer lock
  mapstate get state.db --offset 0 --len 5        the bytes of one committed state
  mapstate watch state.db                         a line per commit, as it happens
  mapstate check-fs /var/lib/myapp                what holds on that filesystem";

/// Inspect, change, check and demonstrate mapstate states.
#[derive(Parser)]
#[command(
    name = "mapstate",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = format!("{EXAMPLES}\n\nExit codes: 0 ok, 1 error, 2 usage, 3 violation found, 4 locked, \
        5 not found or no permission (--help says more)"),
    after_long_help = format!("{EXAMPLES}\n\n{}", util::EXIT_CODES_HELP),
)]
struct Cli {
    /// Print machine-readable JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

// The doc comments are the `--help` text, where backticks would show.
#[allow(clippy::doc_markdown)]
#[derive(Subcommand)]
enum Command {
    /// Create a new state: a file of zeros, its redo log and its live image.
    #[command(
        after_help = "Example:\n  mapstate create state.db --len 1MiB --max-size 1GiB --durability sync"
    )]
    Create {
        /// The state's durable file (must not exist).
        path: PathBuf,
        /// Its length (`--size` is an old name of this option).
        #[arg(long, alias = "size", value_parser = parse_size, default_value = "4KiB")]
        len: u64,
        /// The largest length it may grow to (address space is reserved for
        /// it, not memory or disk). Default: 1 GiB, or the length if larger.
        #[arg(long, value_parser = parse_size)]
        max_size: Option<u64>,
        /// Durability of commits: pagecache, periodic:1s or sync.
        #[arg(long, value_parser = parse_durability, default_value = "pagecache")]
        durability: Durability,
    },
    /// Print what mapstate sees of a state: its length, last commit and checkpoint,
    /// durability, log use, writer, live image, MAP_SYNC support and files.
    #[command(after_help = "Example:\n  mapstate info state.db")]
    Info {
        /// The state's durable file.
        path: PathBuf,
    },
    /// Check a state: every checksum the library checks, every byte read back,
    /// and the state rebuilt from the files on disk compared with the live one.
    #[command(after_help = "Example:\n  mapstate verify state.db && echo intact\n\n\
        Exit code 3 when the state is damaged.")]
    Verify {
        /// The state's durable file.
        path: PathBuf,
    },
    /// Recover a state after a crash (open it as a writer), checkpoint it and close it.
    #[command(after_help = "Example:\n  mapstate recover state.db")]
    Recover {
        /// The state's durable file.
        path: PathBuf,
        /// Wait for a running writer to close instead of failing (exit 4).
        #[arg(long, alias = "wait")]
        wait_for_lock: bool,
    },
    /// Copy a state, as of one commit, to a new file while its writer runs.
    #[command(
        after_help = "Example:\n  mapstate backup state.db state.db.backup\n\n\
        The copy is a state of its own (open it, or put it back with `mapstate restore`), \
        written and synced before it gets its name: DEST never names a partial copy. \
        DEST must not exist."
    )]
    Backup {
        /// The state's durable file.
        path: PathBuf,
        /// Where the copy goes (a new file).
        dest: PathBuf,
    },
    /// Put a backup in place of a state (or where none is).
    #[command(
        after_help = "Example:\n  mapstate restore state.db.backup state.db\n\n\
        It takes the state's writer lock first: a state a writer has open is refused \
        (exit 4) unless --wait-for-lock waits for it to close. The old state is \
        checkpointed, then replaced in one rename: a crash leaves the old state or the \
        restored one. Readers of the old state are told to reopen. The restored state \
        keeps the old one's owner and mode and continues from the backup's commit."
    )]
    Restore {
        /// The backup (made by `mapstate backup`, or any state).
        backup: PathBuf,
        /// The state to replace (or create).
        path: PathBuf,
        /// Wait for a running writer to close instead of failing (exit 4).
        #[arg(long, alias = "wait")]
        wait_for_lock: bool,
    },
    /// Publish every commit of a state to a NATS JetStream stream, beside its writer.
    #[command(
        after_help = "Example:\n  mapstate replicate state.db --nats nats://10.0.0.1:4222,nats://10.0.0.2:4222\n\n\
        A companion process: it reads the commits from the state's redo log, so any writer \
        (a program, `mapstate set`, a C program) is replicated unchanged. Each commit is one \
        entry, appended in order with a message id (a retry is never stored twice) and the \
        stream's expected last sequence (only one publisher can append). When the log has \
        moved on past a checkpoint, a snapshot of the whole state goes to the object store \
        and the stream is trimmed behind it. Started again, it goes on where the stream ends. \
        The server comes from --nats or MAPSTATE_NATS_URL. See docs/REPLICATION.md."
    )]
    Replicate {
        /// The state's durable file.
        path: PathBuf,
        #[command(flatten)]
        nats: NatsArgs,
    },
    /// Keep a local copy of a replicated state, commit by commit.
    #[command(
        after_help = "Example:\n  mapstate follow copy.db --stream mapstate-state.db --nats nats://10.0.0.1:4222\n\n\
        Each entry of the stream becomes one local commit with the writer's sequence number, so \
        readers, watchers and the C API work on the copy as on the writer's machine. A missing \
        copy starts from the stream's snapshot. The durable reader (--name, default \
        follow-HOSTNAME) keeps the position in the cluster: started again, it goes on where it \
        stopped. Prints a line per batch applied (the local commit it reached)."
    )]
    Follow {
        /// The local copy's durable file (made if missing).
        path: PathBuf,
        #[command(flatten)]
        nats: NatsArgs,
        /// The durable reader's name (default: follow-HOSTNAME).
        #[arg(long)]
        name: Option<String>,
    },
    /// Delete a state: its durable file, redo log, checkpoint journal and live
    /// image (deleting the file by hand leaves the live image in memory).
    #[command(after_help = "Example:\n  mapstate rm state.db\n\n\
        It takes the writer lock first: a state a writer has open is refused (exit 4) \
        unless --wait-for-lock waits for it to close.")]
    Rm {
        /// The state's durable file.
        path: PathBuf,
        /// Wait for a running writer to close instead of failing (exit 4).
        #[arg(long, alias = "wait")]
        wait_for_lock: bool,
    },
    /// Print a line (or a JSON object with --json) for each commit as it is published.
    #[command(after_help = "Examples:\n  mapstate watch state.db\n  \
        mapstate watch state.db --json --count 10\n\n\
        Each line: the time the watcher woke (UTC), the commit's sequence number, the \
        state's length and the byte ranges the commit changed (offset+length; JSON: \
        {\"seq\", \"ranges\": [{\"offset\", \"len\"}], \"widened\", \"len\", \"time\"}). \
        Commits that left the change ring before the watcher read them come as one \
        line (JSON: \"missed\": {\"first\", \"last\"}). A status line goes to stderr \
        once the watcher is registered.")]
    Watch {
        /// The state's durable file.
        path: PathBuf,
        /// Stop after this many lines (commits).
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (e.g. 10s).
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
    },
    /// Read bytes of one committed state (raw to a pipe, a hexdump on a terminal).
    #[command(
        after_help = "Examples:\n  mapstate get state.db --offset 0 --len 16 --hex\n  \
        mapstate get state.db --offset 4KiB --len 64 > bytes.bin"
    )]
    Get {
        /// The state's durable file.
        path: PathBuf,
        /// Where to start.
        #[arg(long, value_parser = parse_size)]
        offset: u64,
        /// How many bytes.
        #[arg(long, value_parser = parse_size)]
        len: u64,
        /// Print the bytes as one hex string.
        #[arg(long)]
        hex: bool,
    },
    /// Change bytes of a state in one transaction, through the writer lock
    /// (fails with the holder's pid, exit 4, unless --wait-for-lock).
    #[command(
        group(ArgGroup::new("data").required(true).args(["hex", "str"])),
        after_help = "Examples:\n  mapstate set state.db --offset 0 --str hello\n  \
            mapstate set state.db --offset 0x100 --hex 'de ad be ef' --wait-for-lock\n\n\
            The commit is checkpointed before `set` returns: it is on disk."
    )]
    Set {
        /// The state's durable file.
        path: PathBuf,
        /// Where to write.
        #[arg(long, value_parser = parse_size)]
        offset: u64,
        /// The bytes, in hex (`deadbeef`, `de ad be ef`, `0xdeadbeef`).
        #[arg(long, value_parser = parse_bytes)]
        hex: Option<Bytes>,
        /// The bytes, as a UTF-8 string.
        #[arg(long)]
        str: Option<String>,
        /// Lengthen the state if the bytes reach past its end.
        #[arg(long)]
        grow: bool,
        /// Wait for the running writer to close instead of failing.
        #[arg(long, alias = "wait")]
        wait_for_lock: bool,
    },
    /// Hexdump (xxd-like) a range of one committed state; --json gives base64.
    #[command(after_help = "Examples:\n  mapstate dump state.db\n  \
        mapstate dump state.db --offset 4KiB --len 256\n  \
        mapstate dump state.db --json --hex\n\nRuns of identical lines print as `*`.")]
    Dump {
        /// The state's durable file.
        path: PathBuf,
        /// Where to start.
        #[arg(long, value_parser = parse_size, default_value = "0")]
        offset: u64,
        /// How many bytes (default: to the end).
        #[arg(long, value_parser = parse_size)]
        len: Option<u64>,
        /// With --json: a hex string instead of base64.
        #[arg(long)]
        hex: bool,
    },
    /// Kill a committing writer with SIGKILL N times (at random moments and,
    /// in a build with the `testing` feature, at every numbered step of the
    /// commit and checkpoint paths) while a reader process checks every
    /// snapshot; the last line is `N kills, X torn, Y lost`.
    #[command(
        after_help = "Example:\n  cargo run --release --features testing -- torture --kills 300\n\n\
        Exit code 3 if any commit was torn or lost."
    )]
    Torture {
        /// How many times to kill the writer.
        #[arg(long, default_value_t = 100)]
        kills: u64,
        /// Directory for the state (default: a new one under the temp dir).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Seed of the random choices.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Check what mapstate can promise on the filesystem under DIR: its
    /// type, fallocate, fdatasync latency, MAP_SYNC, the tmpfs live image,
    /// a short kill torture and msync write amplification; a verdict per guarantee.
    #[command(after_help = "Example:\n  mapstate check-fs /var/lib/myapp\n\n\
        Exit code 3 if a guarantee does not hold there (or the filesystem is refused).")]
    CheckFs {
        /// A directory on the filesystem to check (a scratch directory is made inside).
        dir: PathBuf,
        /// Kills of the short torture (0 skips it).
        #[arg(long, default_value_t = 20)]
        kills: u64,
    },
    /// Show the whole product with real processes and real numbers, in a
    /// temporary directory, in well under a minute.
    #[command(
        after_help = "Example:\n  cargo run --release -- demo\n  mapstate demo --dir /var/tmp"
    )]
    Demo {
        /// Where to make the temporary directory (default: the temp dir;
        /// use a disk filesystem for meaningful sync costs).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Run the benchmark's mapstate workloads (quick sizes), or say how to
    /// run the full comparison against LMDB, redb, SQLite and others.
    #[command(
        after_help = "Examples:\n  mapstate bench\n  mapstate bench -- w1 w2 --runs 5\n\n\
        Needs a source checkout and cargo; elsewhere it prints the command to run."
    )]
    Bench {
        /// Print the command instead of running it.
        #[arg(long)]
        dry_run: bool,
        /// Arguments passed to mapstate-bench after `--systems mapstate --quick`.
        #[arg(last = true)]
        args: Vec<String>,
    },
    #[command(hide = true)]
    TortureChild { path: PathBuf, step: u32, nth: u64 },
    #[command(hide = true)]
    TortureReader { path: PathBuf },
    #[command(hide = true)]
    DemoChild { path: PathBuf, mode: String },
}

/// Bytes given in hex on the command line (a newtype: clap would take a
/// `Vec<u8>` for many values).
#[derive(Clone)]
struct Bytes(Vec<u8>);

fn parse_bytes(s: &str) -> Result<Bytes, String> {
    parse_hex(s).map(Bytes)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { EXIT_OK };
            if code == EXIT_USAGE {
                usage_json(&e, code);
            }
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    let json = cli.json;
    let r = match cli.command {
        Command::Create {
            path,
            len,
            max_size,
            durability,
        } => state::create(&path, len, max_size, durability, json),
        Command::Info { path } => state::info(&path, json),
        Command::Verify { path } => state::verify(&path, json),
        Command::Recover {
            path,
            wait_for_lock,
        } => state::recover(&path, wait_for_lock, json),
        Command::Rm {
            path,
            wait_for_lock,
        } => state::rm(&path, wait_for_lock, json),
        Command::Backup { path, dest } => state::backup(&path, &dest, json),
        Command::Replicate { path, nats } => replicate::replicate(&nats.args(&path, json)),
        Command::Follow { path, nats, name } => {
            replicate::follow(&nats.args(&path, json), name.as_deref())
        }
        Command::Restore {
            backup,
            path,
            wait_for_lock,
        } => state::restore(&backup, &path, wait_for_lock, json),
        Command::Watch {
            path,
            count,
            timeout,
        } => state::watch(&path, count, timeout, json),
        Command::Get {
            path,
            offset,
            len,
            hex,
        } => state::get(&path, offset, len, hex, json),
        Command::Set {
            path,
            offset,
            hex,
            str,
            grow,
            wait_for_lock,
        } => {
            let data = hex.map_or_else(|| str.unwrap_or_default().into_bytes(), |b| b.0);
            state::set(&path, offset, &data, grow, wait_for_lock, json)
        }
        Command::Dump {
            path,
            offset,
            len,
            hex,
        } => state::dump(&path, offset, len, hex, json),
        Command::Torture { kills, dir, seed } => dir
            .as_deref()
            .map_or(Ok(()), |d| util::check_dir(d, "--dir"))
            .and_then(|()| torture(kills, dir, seed, json)),
        Command::CheckFs { dir, kills } => checkfs::run(&dir, kills, json),
        Command::Demo { dir } => dir
            .as_deref()
            .map_or(Ok(()), |d| util::check_dir(d, "--dir"))
            .and_then(|()| demo::run(dir.as_deref(), json)),
        Command::Bench { dry_run, args } => bench::run(&args, dry_run, json),
        Command::TortureChild { path, step, nth } => torture::child(&path, step, nth)
            .map(|()| EXIT_OK)
            .map_err(Into::into),
        Command::TortureReader { path } => {
            torture::reader(&path).map(|()| EXIT_OK).map_err(Into::into)
        }
        Command::DemoChild { path, mode } => demo::child(&path, &mode),
    };
    match r {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            if json {
                println!("{}", json!({"error": f.msg, "exit_code": f.code}));
            }
            eprintln!("mapstate: {}", f.msg);
            ExitCode::from(f.code)
        }
    }
}

/// `torture`, with a progress bar per kill on a terminal.
fn torture(kills: u64, dir: Option<PathBuf>, seed: u64, json: bool) -> util::CmdResult {
    let pb = util::bar(kills, "torture: kills", false, !json);
    let started = std::time::Instant::now();
    let mut tick = |k: u64| {
        pb.set_position(k);
        if k == kills {
            pb.finish_and_clear(); // before the reader's tally line
        }
        if pb.is_hidden() && !json && k % 50 == 0 {
            // No terminal (a CI log): a line now and then instead of a bar.
            eprintln!("{k} kills, {:.0} s", started.elapsed().as_secs_f64());
        }
    };
    // Without --dir, a temporary directory that goes away at the end.
    let tmp = match &dir {
        Some(_) => None,
        None => Some(
            tempfile::Builder::new()
                .prefix("mapstate-torture-")
                .tempdir()
                .map_err(|e| util::Failure::new(util::EXIT_FAILURE, format!("temp dir: {e}")))?,
        ),
    };
    let dir = dir.or_else(|| tmp.as_ref().map(|t| t.path().to_path_buf()));
    let (torn, lost) = torture::run_observed(kills, dir, seed, &mut tick, !json)?;
    pb.finish_and_clear();
    if json {
        println!("{}", json!({"kills": kills, "torn": torn, "lost": lost}));
    } else {
        println!("{kills} kills, {torn} torn, {lost} lost");
    }
    Ok(if torn == 0 && lost == 0 {
        EXIT_OK
    } else {
        EXIT_VIOLATION
    })
}

/// A usage error under --json as JSON too (the flag is read from the raw
/// arguments: they did not parse).
fn usage_json(e: &clap::Error, code: u8) {
    if std::env::args_os().any(|a| a == "--json") {
        let text = e.render().to_string();
        // What went wrong is what comes before the usage line.
        let what = text.split("\n\nUsage:").next().unwrap_or_default();
        let what = what.trim_start_matches("error: ");
        let what = what.split_whitespace().collect::<Vec<_>>().join(" ");
        println!(
            "{}",
            json!({"error": what, "usage": text, "exit_code": code})
        );
    }
}

/// Where `replicate` and `follow` connect, and how long they run.
#[derive(clap::Args, Debug)]
struct NatsArgs {
    /// The NATS servers (comma-separated URLs); default: `MAPSTATE_NATS_URL`.
    #[arg(long)]
    nats: Option<String>,
    /// The stream (default: mapstate-FILENAME of the state `replicate` publishes).
    #[arg(long)]
    stream: Option<String>,
    /// Copies of every entry in the cluster.
    #[arg(long, default_value_t = 3)]
    replicas: usize,
    /// Stop after this long (e.g. 30s); default: run until killed.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
}

impl NatsArgs {
    fn args<'a>(&'a self, path: &'a std::path::Path, json: bool) -> replicate::Args<'a> {
        replicate::Args {
            path,
            nats: self.nats.as_deref(),
            stream: self.stream.as_deref(),
            replicas: self.replicas,
            timeout: self.timeout,
            json,
        }
    }
}
