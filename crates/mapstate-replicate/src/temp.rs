//! The temporary file a snapshot passes through, beside the state.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

/// `.NAME.snapshot-PID` beside the state at `state`: one per process, so
/// two processes never share one. What a killed process left there goes
/// first (`unlink` removes a link planted there, never what it points to).
pub(crate) fn snapshot_path(state: &Path) -> PathBuf {
    let dir = state.parent().unwrap_or(Path::new("."));
    let name = state.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.snapshot-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    tmp
}

/// A new file at `path`, readable and writable by its owner only, made
/// with `O_EXCL` (never through a link someone planted there).
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}
