//! A three-server `JetStream` cluster for a test: `scripts/jetstream.sh up`
//! in a temporary directory, `down` on drop (also on a panic).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// A running cluster; `down` when dropped.
pub(crate) struct Cluster {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) urls: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/jetstream.sh")
}

/// Runs `jetstream.sh ARGS`; its last line of output, or a panic that shows
/// what it printed on stderr.
fn run_script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(script())
        .args(args)
        // The script's watchdog stops the servers if this process is killed.
        .env("JETSTREAM_OWNER_PID", std::process::id().to_string())
        .output()
        .expect("running scripts/jetstream.sh");
    assert!(
        out.status.success(),
        "scripts/jetstream.sh {} failed ({}):\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    stdout.lines().last().unwrap_or_default().to_owned()
}

impl Cluster {
    pub(crate) fn up() -> Cluster {
        let dir = tempfile::Builder::new()
            .prefix("mapstate-jetstream-")
            .tempdir()
            .expect("temporary directory");
        let urls = run_script(&["up", dir.path().to_str().unwrap()]);
        assert!(
            urls.starts_with("nats://127.0.0.1:") && urls.split(',').count() == 3,
            "the last line of `up` is not three URLs: {urls:?}"
        );
        Cluster { dir, urls }
    }

    pub(crate) fn kill(&self, n: usize) {
        run_script(&["kill", self.dir.path().to_str().unwrap(), &n.to_string()]);
    }

    pub(crate) fn start(&self, n: usize) {
        run_script(&["start", self.dir.path().to_str().unwrap(), &n.to_string()]);
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Not run_script: a panic while panicking would abort and hide the first.
        let _ = Command::new("bash")
            .arg(script())
            .args(["down", self.dir.path().to_str().unwrap()])
            .status();
    }
}
