//! The `mapstate` command line.

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
    /// Map a file read-only and print what mapstate sees: its size, the
    /// filesystem, the blocks it occupies and whether MAP_SYNC is available.
    ///
    /// Example: `mapstate info state.db`
    Info {
        /// The file to inspect.
        path: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Info { path } => info(&path),
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
    let m = mapstate::MapOptions::new().read_only().open(path)?;
    println!("path: {}", m.path().display());
    println!("length: {} bytes", m.len());
    println!("reserved: {} bytes", m.max_size());
    Ok(())
}
