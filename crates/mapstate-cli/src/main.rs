//! The `mapstate` command line.

mod torture;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Inspect and operate mapstate files.
#[derive(Parser)]
#[command(name = "mapstate", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print what mapstate sees of a state: its length, sequence number and files.
    ///
    /// Example: `mapstate info state.db`
    Info {
        /// The state's durable file.
        path: PathBuf,
    },
    /// Kill a committing writer with SIGKILL N times (at random moments and
    /// at every numbered step of the commit path) while a reader process
    /// checks every snapshot; the last line is `N kills, X torn, Y lost`.
    ///
    /// Example: `mapstate torture --kills 300`
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
    #[command(hide = true)]
    TortureChild { path: PathBuf, step: u32, nth: u64 },
    #[command(hide = true)]
    TortureReader { path: PathBuf },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Info { path } => info(&path),
        Command::Torture { kills, dir, seed } => match torture::run(kills, dir, seed, true) {
            Ok((torn, lost)) => {
                println!("{kills} kills, {torn} torn, {lost} lost");
                return if torn == 0 && lost == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::from(3)
                };
            }
            Err(e) => Err(e),
        },
        Command::TortureChild { path, step, nth } => torture::child(&path, step, nth),
        Command::TortureReader { path } => torture::reader(&path),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mapstate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn info(path: &std::path::Path) -> mapstate::Result<()> {
    let r = mapstate::Reader::open(path)?;
    println!("path: {}", path.display());
    println!("length: {} bytes", r.len());
    println!("sequence: {}", r.seq());
    Ok(())
}
