//! Helpers shared by the integration tests: skip notes, root checks, and
//! filesystems mounted for one test. Each test binary uses a subset.
#![allow(dead_code)]

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A new 64 KiB state (maximum 1 MiB) in a fresh temporary directory on
/// disk, with its live image in that directory: the directory, the state's
/// path, and the options that open it.
pub(crate) fn small_state() -> (tempfile::TempDir, PathBuf, mapstate::WriterOptions) {
    let dir = tempfile::tempdir_in("/var/tmp").unwrap();
    std::fs::create_dir(dir.path().join("live")).unwrap();
    let p = dir.path().join("state");
    let o = mapstate::Writer::options()
        .create(true)
        .len(1 << 16)
        .max_size(1 << 20)
        .live_dir(dir.path().join("live"));
    (dir, p, o)
}

/// Prints a skip note that `cargo test` shows even for passing tests (a write
/// to the stderr handle bypasses the harness's output capture).
pub(crate) fn skip(test: &str, why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Whether the tests run as root (mounts need it).
pub(crate) fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A filesystem mounted by a test; unmounted on drop (declare it after the
/// tempdir that holds its mount point and before any mapping of its files).
pub(crate) struct Mount {
    dir: PathBuf,
}

impl Mount {
    /// `mount <args…> <dir>`; `Err` holds mount's complaint.
    pub(crate) fn new(args: &[&str], dir: &Path) -> Result<Self, String> {
        fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(args)
            .arg(dir)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(Mount { dir: dir.into() })
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// `mount -o <opts>` again on the mount point.
    pub(crate) fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", opts])
            .arg(&self.dir)
            .status()
            .expect("run mount");
        assert!(
            st.success(),
            "mount -o {opts} {} failed",
            self.dir.display()
        );
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Never leave a mount behind, even when something still holds it.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
