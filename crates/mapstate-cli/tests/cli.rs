//! The `mapstate` command line, run as a user would: every subcommand, and
//! bad input (missing file, corrupt file, offsets past the end, malformed
//! hex, a second writer, no permission) gives a clear message, a non-zero
//! exit code and leaves the state unchanged.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command as StdCommand, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use mapstate::{Durability, Reader, Writer};
use predicates::prelude::*;
use predicates::str::contains;

/// Deletes the state at `path`, if there is one.
fn remove(path: &Path) {
    if let Ok(w) = Writer::open(path) {
        let _ = w.remove();
    }
}

fn mapstate() -> Command {
    Command::cargo_bin("mapstate").expect("the mapstate binary")
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("mapstate")
}

/// A state in a temporary directory, removed (with its live image in
/// `/dev/shm`) at the end.
struct State {
    dir: tempfile::TempDir,
    path: PathBuf,
}

impl State {
    /// A new state of `size` bytes, made by `mapstate create`.
    fn new(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.db");
        mapstate()
            .args(["create", "--len", size])
            .arg(&path)
            .assert()
            .success();
        Self { dir, path }
    }

    fn p(&self) -> &str {
        self.path.to_str().expect("utf-8 path")
    }

    /// The committed sequence number and bytes.
    fn snapshot(&self) -> (u64, Vec<u8>) {
        Reader::open(&self.path)
            .expect("open")
            .snapshot()
            .expect("snapshot")
    }
}

impl Drop for State {
    fn drop(&mut self) {
        remove(&self.path);
    }
}

fn stdout_of(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

/// `s` with every run of whitespace made one space (the text output wraps).
fn flat(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn json_of(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_str(stdout_of(a).trim()).expect("one JSON object")
}

/// The rest of a child's stdout (its pipe), and each of its lines parsed as
/// a JSON object (`watch --json`).
fn json_lines_of(child: &mut std::process::Child) -> (String, Vec<serde_json::Value>) {
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_string(&mut out)
        .unwrap();
    let lines = out
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    (out, lines)
}

#[test]
fn help_documents_exit_codes_and_an_example_per_subcommand() {
    mapstate().arg("--help").assert().success().stdout(
        contains("Exit codes:")
            .and(contains("4  locked"))
            .and(contains("Examples:")),
    );
    for sub in [
        "create", "info", "verify", "recover", "rm", "watch", "get", "set", "dump", "torture",
        "check-fs", "demo", "bench",
    ] {
        mapstate()
            .args([sub, "--help"])
            .assert()
            .success()
            .stdout(contains("Example"));
    }
    mapstate().arg("frobnicate").assert().code(2);
    mapstate().assert().code(2);
    // Under --json a usage error is a JSON object on stdout too.
    let a = mapstate().args(["--json", "frobnicate"]).assert().code(2);
    let v = json_of(&a);
    assert_eq!(v["exit_code"], 2, "{v}");
    assert!(v["error"].as_str().unwrap().contains("frobnicate"), "{v}");
    let a = mapstate().args(["info", "--json"]).assert().code(2);
    assert!(json_of(&a)["error"].as_str().unwrap().contains("PATH"));
}

/// `mapstate rm` deletes every file of a state, its live image in
/// `/dev/shm` included (deleting the durable file by hand left that image
/// in memory for good); a state a writer has open is refused.
#[test]
fn rm_deletes_every_file_of_a_state() {
    let s = State::new("64KiB");
    let files = mapstate::StateFiles::of(&s.path, None).unwrap();
    let live = files.live().to_path_buf();
    assert!(live.exists(), "{}", live.display());
    let w = Writer::open(&s.path).unwrap();
    let pid = std::process::id().to_string();
    mapstate()
        .args(["rm", s.p()])
        .assert()
        .code(4)
        .stderr(contains(format!("pid {pid}")));
    assert!(s.path.exists());
    drop(w);
    mapstate()
        .args(["--json", "rm", s.p()])
        .assert()
        .success()
        .stdout(contains("\"removed\""));
    for f in [files.durable(), files.log(), files.journal(), &live] {
        assert!(!f.exists(), "{} is left", f.display());
    }
    assert_eq!(std::fs::read_dir(s.dir.path()).unwrap().count(), 0);
    mapstate()
        .args(["rm", s.p()])
        .assert()
        .failure()
        .stderr(contains("does not exist"));
    // create on an existing state names rm.
    let t = State::new("4KiB");
    mapstate()
        .args(["create", t.p()])
        .assert()
        .failure()
        .stderr(contains(format!("mapstate rm {}", t.p())));
}

#[test]
fn backup_and_restore_round_trip() {
    let s = State::new("64KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "good"])
        .assert()
        .success();
    let copy = s.dir.path().join("copy");
    let copy_s = copy.to_str().unwrap();
    let v = json_of(
        &mapstate()
            .args(["--json", "backup", s.p(), copy_s])
            .assert()
            .success(),
    );
    assert_eq!(
        (v["seq"].as_u64(), v["len"].as_u64()),
        (Some(1), Some(65536))
    );
    // DEST is never overwritten.
    mapstate()
        .args(["backup", s.p(), copy_s])
        .assert()
        .code(1)
        .stderr(contains("never overwrites"));
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "oops"])
        .assert()
        .success();
    // A running writer: exit 4, nothing changed.
    let w = Writer::open(&s.path).unwrap();
    mapstate().args(["restore", copy_s, s.p()]).assert().code(4);
    drop(w);
    mapstate()
        .args(["restore", copy_s, s.p()])
        .assert()
        .success()
        .stdout(contains("commit 1"));
    let a = mapstate()
        .args(["get", s.p(), "--offset", "0", "--len", "4"])
        .assert()
        .success();
    assert_eq!(a.get_output().stdout, b"good");
    mapstate().args(["verify", s.p()]).assert().success();
}

#[test]
fn create_info_and_its_bad_input() {
    let s = State::new("1MiB");
    let a = mapstate().arg("info").arg(s.p()).assert().success();
    let out = stdout_of(&a);
    assert!(out.contains("length 1 MiB"), "{out}");
    assert!(out.contains("commit 0"), "{out}");
    assert!(out.contains("s.db-wal"), "{out}");
    let v = json_of(
        &mapstate()
            .args(["--json", "info", s.p()])
            .assert()
            .success(),
    );
    assert_eq!(v["len"], 1 << 20);
    assert_eq!(v["seq"], 0);
    assert_eq!(v["writer"]["open"], false);

    // An existing state is never reinitialized.
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "keep"])
        .assert()
        .success();
    let before = s.snapshot();
    mapstate()
        .args(["create", s.p(), "--len", "4KiB"])
        .assert()
        .code(1)
        .stderr(contains("already exists"));
    assert_eq!(s.snapshot(), before);

    // Sizes: ambiguous or malformed units are usage errors; too large is an error.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("n.db");
    mapstate()
        .arg("create")
        .arg(&p)
        .args(["--len", "1MB"])
        .assert()
        .code(2)
        .stderr(contains("MiB"));
    mapstate()
        .arg("create")
        .arg(&p)
        .args(["--len", "2MiB", "--max-size", "1MiB"])
        .assert()
        .code(1)
        .stderr(contains("maximum size"));
    assert!(!p.exists(), "a failed create leaves no file");
    mapstate()
        .arg("create")
        .arg(dir.path().join("no/such/dir/x.db"))
        .assert()
        .code(5);
    mapstate()
        .arg("create")
        .arg(&p)
        .args(["--durability", "fast"])
        .assert()
        .code(2)
        .stderr(contains("pagecache, periodic:1s or sync"));
    mapstate()
        .arg("create")
        .arg(&p)
        .args(["--durability", "periodic:250ms", "--len", "8KiB"])
        .assert()
        .success()
        .stdout(contains("periodic:250.0ms"));
    remove(&p);

    // Missing, foreign, directory.
    mapstate()
        .args(["info", "/nonexistent/s.db"])
        .assert()
        .code(5)
        .stderr(contains("does not exist"));
    let foreign = dir.path().join("foreign");
    std::fs::write(&foreign, b"not a state").unwrap();
    mapstate()
        .arg("info")
        .arg(&foreign)
        .assert()
        .code(1)
        .stderr(contains("not a mapstate file"));
    assert_eq!(std::fs::read(&foreign).unwrap(), b"not a state");
    mapstate()
        .arg("info")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(contains("directory"));
}

#[test]
fn set_get_dump_round_trip() {
    let s = State::new("64KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "16", "--str", "hello world"])
        .assert()
        .success()
        .stdout(contains("commit 1"));
    mapstate()
        .args(["set", s.p(), "--offset", "0x100", "--hex", "de ad be ef"])
        .assert()
        .success()
        .stdout(contains("commit 2"));
    // Raw bytes to a pipe.
    let a = mapstate()
        .args(["get", s.p(), "--offset", "16", "--len", "11"])
        .assert()
        .success();
    assert_eq!(a.get_output().stdout, b"hello world");
    mapstate()
        .args(["get", s.p(), "--offset", "256", "--len", "4", "--hex"])
        .assert()
        .success()
        .stdout("deadbeef\n");
    let v = json_of(
        &mapstate()
            .args(["--json", "get", s.p(), "--offset", "256", "--len", "4"])
            .assert()
            .success(),
    );
    assert_eq!(v["hex"], "deadbeef");
    assert_eq!(v["seq"], 2);
    // The dump squeezes the zeros.
    let a = mapstate()
        .args(["dump", s.p(), "--len", "512"])
        .assert()
        .success();
    let out = stdout_of(&a);
    assert!(
        out.contains("00000010: 6865 6c6c 6f20 776f 726c 6400 0000 0000  hello world....."),
        "{out}"
    );
    assert!(out.contains("00000100: dead beef"), "{out}");
    assert!(out.contains("\n*\n"), "{out}");
    let v = json_of(
        &mapstate()
            .args(["--json", "dump", s.p(), "--offset", "16", "--len", "5"])
            .assert()
            .success(),
    );
    assert_eq!(v["base64"], "aGVsbG8=");
    let v = json_of(
        &mapstate()
            .args([
                "--json",
                "dump",
                s.p(),
                "--offset",
                "16",
                "--len",
                "5",
                "--hex",
            ])
            .assert()
            .success(),
    );
    assert_eq!(v["hex"], "68656c6c6f");
}

#[test]
fn set_grow_lengthens_the_state_and_says_by_how_much() {
    let s = State::new("64KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "64KiB", "--str", "tail", "--grow"])
        .assert()
        .success()
        .stdout(contains("length 65536 -> 65540 bytes"));
    assert_eq!(Reader::open(&s.path).unwrap().len(), (64 << 10) + 4);
    mapstate()
        .args(["set", s.p(), "--offset", "128KiB", "--str", "x", "--grow"])
        .assert()
        .success()
        .stdout(contains("length 65540 -> 131073 bytes"));
}

#[test]
fn bad_input_fails_clearly_and_changes_nothing() {
    let s = State::new("4KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "original"])
        .assert()
        .success();
    let before = s.snapshot();
    let cases: &[(&[&str], i32, &str)] = &[
        (
            &["set", "--offset", "0", "--hex", "zz"],
            2,
            "not a hex digit",
        ),
        (&["set", "--offset", "0", "--hex", "abc"], 2, "two"),
        (&["set", "--offset", "0"], 2, "--hex"),
        (
            &["set", "--offset", "0", "--hex", "00", "--str", "x"],
            2,
            "cannot be used",
        ),
        (
            &["set", "--offset", "4095", "--str", "xy"],
            1,
            "4096 bytes long",
        ),
        (
            &["set", "--offset", "1GiB", "--str", "x"],
            1,
            "nothing was changed",
        ),
        (
            &["set", "--offset", "2GiB", "--str", "x", "--grow"],
            1,
            "maximum size",
        ),
        (&["set", "--offset", "-1", "--str", "x"], 2, ""),
        (
            &["get", "--offset", "4090", "--len", "7"],
            1,
            "past the end",
        ),
        (
            &["get", "--offset", "0", "--len", "1TiB"],
            1,
            "past the end",
        ),
        (&["get", "--offset", "0"], 2, "--len"),
        (&["get", "--offset", "0x", "--len", "1"], 2, "hex number"),
        (&["dump", "--offset", "5000"], 1, "past the end"),
        // Past u64: named as given (it printed u64::MAX..u64::MAX), and
        // --grow cannot help (it said "pass --grow" with --grow given).
        (
            &["get", "--offset", "18446744073709551615", "--len", "2"],
            1,
            "offset 18446744073709551615 plus length 2 is past the end",
        ),
        (
            &[
                "set",
                "--offset",
                "18446744073709551615",
                "--str",
                "xy",
                "--grow",
            ],
            1,
            "past the largest offset there is",
        ),
        (
            &["dump", "--offset", "0", "--len", "4097"],
            1,
            "past the end",
        ),
    ];
    for (args, code, msg) in cases {
        let mut c = mapstate();
        c.arg(args[0]).arg(s.p()).args(&args[1..]);
        c.assert().code(*code).stderr(contains(*msg));
        assert_eq!(s.snapshot(), before, "{args:?} changed the state");
    }
    // With --json, errors are JSON too (and on stderr for people).
    let a = mapstate()
        .args(["--json", "get", s.p(), "--offset", "4096", "--len", "1"])
        .assert()
        .code(1);
    assert_eq!(json_of(&a)["exit_code"], 1);
}

#[test]
fn a_missing_file_is_exit_5_for_every_subcommand_that_opens_one() {
    let s = State::new("4KiB");
    for sub in [
        &["info"][..],
        &["verify"],
        &["recover"],
        &["watch", "--timeout", "10ms"],
        &["get", "--offset", "0", "--len", "1"],
        &["set", "--offset", "0", "--str", "x"],
        &["dump"],
    ] {
        let missing = s.dir.path().join("missing.db");
        mapstate()
            .arg(sub[0])
            .arg(&missing)
            .args(&sub[1..])
            .assert()
            .code(5)
            .stderr(contains("does not exist"));
        assert!(!missing.exists(), "{sub:?} created the file");
    }
}

#[test]
fn a_second_writer_gets_the_holders_pid_or_waits() {
    let s = State::new("4KiB");
    let before = s.snapshot();
    let w = Writer::open(&s.path).unwrap();
    let pid = std::process::id().to_string();
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "x"])
        .assert()
        .code(4)
        .stderr(contains(format!("pid {pid}")).and(contains("--wait-for-lock")));
    mapstate()
        .args(["recover", s.p()])
        .assert()
        .code(4)
        .stderr(contains(format!("pid {pid}")));
    assert_eq!(s.snapshot(), before);
    // info names the writer; verify checks what it can while it runs.
    mapstate()
        .args(["info", s.p()])
        .assert()
        .success()
        .stdout(contains(format!("writer pid {pid} has it open")));
    let a = mapstate().args(["verify", s.p()]).assert().success();
    assert!(flat(&stdout_of(&a)).contains("has the state open"));
    // --wait waits for the lock, then commits.
    let mut child = StdCommand::new(bin())
        .args([
            "set",
            s.p(),
            "--offset",
            "0",
            "--str",
            "waited",
            "--wait-for-lock",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.contains("waiting for the writer lock"), "{line}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(child.try_wait().unwrap().is_none(), "set did not wait");
    drop(w);
    let status = child.wait().unwrap();
    assert!(status.success());
    let (seq, bytes) = s.snapshot();
    assert_eq!(seq, 1);
    assert_eq!(&bytes[..6], b"waited");
}

/// Runs the binary as user `nobody` when this test runs as root (root
/// ignores file modes); otherwise as this user, with the file's mode 000.
fn without_permission(path: &Path, args: &[&str]) -> std::process::Output {
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if root {
        // A copy of the binary that `nobody` may run wherever the checkout is.
        let exe = path.with_file_name("mapstate-copy");
        if !exe.exists() {
            std::fs::copy(bin(), &exe).unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        StdCommand::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(&exe)
            .args(args)
            .output()
            .expect("setpriv")
    } else {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o000)).unwrap();
        let out = StdCommand::new(bin()).args(args).output().unwrap();
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
        out
    }
}

#[test]
fn no_permission_is_exit_5_and_changes_nothing() {
    let s = State::new("4KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "mine"])
        .assert()
        .success();
    // Let `nobody` reach the file, not open it (mode 0600, owned by us).
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = s.snapshot();
    for args in [
        vec!["info", s.p()],
        vec!["get", s.p(), "--offset", "0", "--len", "4"],
        vec!["set", s.p(), "--offset", "0", "--str", "theirs"],
        vec!["dump", s.p()],
        vec!["verify", s.p()],
        vec!["recover", s.p()],
    ] {
        let out = without_permission(&s.path, &args);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("permission denied"), "{args:?}: {err}");
        assert_eq!(s.snapshot(), before, "{args:?} changed the state");
    }
}

#[test]
fn verify_passes_a_sound_state_and_fails_damaged_ones() {
    let s = State::new("64KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "100", "--str", "abc"])
        .assert()
        .success();
    let a = mapstate().args(["verify", s.p()]).assert().success();
    let out = flat(&stdout_of(&a));
    assert!(out.contains(": ok"), "{out}");
    assert!(out.contains("equals the state rebuilt from disk"), "{out}");
    let v = json_of(
        &mapstate()
            .args(["--json", "verify", s.p()])
            .assert()
            .success(),
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["compared"], true);

    // A flipped byte in the durable image's data: the rebuilt state differs.
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.path)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"Z", 4096 + 100).unwrap();
    f.flush().unwrap();
    let a = mapstate().args(["verify", s.p()]).assert().code(3);
    let out = flat(&stdout_of(&a));
    assert!(
        out.contains("DAMAGED") && out.contains("offset 100"),
        "{out}"
    );

    // Both header copies broken: refused, exit 3.
    let mut header = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(
        &std::fs::File::open(&s.path).unwrap(),
        &mut header,
        0,
    )
    .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"ZZZZ", 40).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"ZZZZ", 2048 + 40).unwrap();
    drop(f);
    mapstate()
        .args(["verify", s.p()])
        .assert()
        .code(3)
        .stderr(contains("corrupt"));
    // Other commands refuse it too, with exit 1, and write nothing.
    let bytes = std::fs::read(&s.path).unwrap();
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "x"])
        .assert()
        .code(1)
        .stderr(contains("corrupt"));
    assert_eq!(std::fs::read(&s.path).unwrap(), bytes);
    // Repaired, so that the state (and its live image) can be removed.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&s.path)
        .unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &header, 0).unwrap();
    drop(f);
    mapstate().args(["info", s.p()]).assert().success();

    // A foreign file.
    let foreign = s.dir.path().join("foreign");
    std::fs::write(&foreign, vec![7u8; 8192]).unwrap();
    mapstate()
        .arg("verify")
        .arg(&foreign)
        .assert()
        .code(3)
        .stderr(contains("not a mapstate file"));
}

/// Runs a torture child (a writer committing forever) that the library's
/// crash hook kills with SIGKILL right after it publishes its `n`th commit
/// (step 7): the log holds records no checkpoint has written into the
/// durable image. Returns the commits it reported as returned. Needs the
/// crash hooks (the `testing` feature).
#[cfg(feature = "testing")]
fn kill_a_writer(path: &Path, n: u64) -> u64 {
    let out = StdCommand::new(bin())
        .arg("torture-child")
        .arg(path)
        .args(["7", &n.to_string()])
        .output()
        .unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(9)
    );
    String::from_utf8_lossy(&out.stdout).lines().count() as u64
}

#[cfg(feature = "testing")]
#[test]
fn recover_and_verify_after_a_killed_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.state");
    let _cleanup = Cleanup(path.clone());
    assert_eq!(kill_a_writer(&path, 5), 4);
    let p = path.to_str().unwrap();
    let v = json_of(&mapstate().args(["--json", "verify", p]).assert().success());
    assert_eq!(v["seq"], 5);
    assert_eq!(v["compared"], true);
    let v = json_of(&mapstate().args(["--json", "recover", p]).assert().success());
    assert_eq!(v["seq"], 5);
    assert!(v["log_bytes"].as_u64().unwrap() > 0);
    mapstate()
        .args(["recover", p])
        .assert()
        .success()
        .stdout(contains("recovered").and(contains("log: 0 B")));

    // The log's first record broken after another kill: the files on disk
    // lack commits the live image has.
    kill_a_writer(&path, 5);
    let wal = dir.path().join("t.state-wal");
    let f = std::fs::OpenOptions::new().write(true).open(&wal).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &[0xff; 64], 4096 + 8).unwrap();
    drop(f);
    let a = mapstate().args(["verify", p]).assert().code(3);
    let out = flat(&stdout_of(&a));
    assert!(out.contains("live image is at commit 10"), "{out}");
    assert!(out.contains("only reach commit 5"), "{out}");
    assert!(out.contains("would be lost by an OS crash"), "{out}");
}

struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        remove(&self.0);
    }
}

#[test]
fn watch_prints_each_commit_as_it_happens() {
    let s = State::new("4KiB");
    let mut child = StdCommand::new(bin())
        .args(["watch", s.p(), "--json", "--count", "2", "--timeout", "20s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching"), "{line}");
    for v in ["a", "b"] {
        mapstate()
            .args(["set", s.p(), "--offset", "0", "--str", v])
            .assert()
            .success();
        std::thread::sleep(Duration::from_millis(50));
    }
    let t = Instant::now();
    let status = child.wait().unwrap();
    assert!(status.success());
    assert!(t.elapsed() < Duration::from_secs(10));
    let (out, lines) = json_lines_of(&mut child);
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0]["seq"], 1);
    assert_eq!(lines[1]["seq"], 2);
    assert_eq!(lines[1]["len"], 4096);
    assert!(lines[1]["time"].as_str().unwrap().ends_with('Z'));
    // Nothing happens: --timeout ends it quietly.
    mapstate()
        .args(["watch", s.p(), "--timeout", "100ms"])
        .assert()
        .success()
        .stdout("");
}

#[test]
fn torture_reports_no_torn_or_lost_commits() {
    let dir = tempfile::tempdir().unwrap();
    mapstate()
        .args(["torture", "--kills", "4", "--dir"])
        .arg(dir.path())
        .assert()
        .success()
        .stdout(contains("4 kills, 0 torn, 0 lost"));
    let v = json_of(
        &mapstate()
            .args(["--json", "torture", "--kills", "2", "--dir"])
            .arg(dir.path())
            .assert()
            .success(),
    );
    assert_eq!(v["torn"], 0);
    assert_eq!(v["lost"], 0);
}

#[test]
fn check_fs_gives_a_verdict_per_guarantee() {
    let dir = tempfile::tempdir().unwrap();
    let a = mapstate()
        .args(["check-fs", "--kills", "2"])
        .arg(dir.path())
        .assert()
        .success();
    let out = stdout_of(&a);
    for want in [
        "fallocate",
        "fdatasync",
        "MAP_SYNC",
        "live image",
        "writer lock",
        "notification",
        "kill torture",
        "msync",
        "guarantees here:",
        "process crash",
        "power cut",
    ] {
        assert!(out.contains(want), "{want}: {out}");
    }
    let v = json_of(
        &mapstate()
            .args(["--json", "check-fs", "--kills", "0"])
            .arg(dir.path())
            .assert()
            .success(),
    );
    assert_eq!(v["ok"], true);
    assert!(v["verdicts"].as_array().unwrap().len() >= 5);
    // The scratch directory is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    mapstate()
        .args(["check-fs", "/nonexistent/dir"])
        .assert()
        .code(5)
        .stderr(contains("not a directory"));
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    mapstate().arg("check-fs").arg(&file).assert().code(1);
}

#[test]
fn demo_shows_the_product_and_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let a = mapstate()
        .args(["demo", "--dir"])
        .arg(dir.path())
        .timeout(Duration::from_secs(120))
        .assert()
        .success();
    let out = stdout_of(&a);
    for want in [
        "the watcher saw commit 5",
        "killed with SIGKILL after writing 16 MiB",
        "the killed transaction left no trace",
        "inside commit()",
        "plain stores past the end (Txn::extend_on_write, no set_len)",
        "the state grew to 33 MiB",
        "grew to 33 MiB at the same address",
        "PageCache",
        "Periodic(100ms)",
        "Sync",
        "raw msync",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(!out.contains("TORN"), "{out}");
    // The kill inside commit() leaves commit 6 or 7, whole.
    assert!(
        out.contains("all 32 MiB hold commit 6's bytes: whole")
            || out.contains("all 32 MiB hold commit 7's bytes: whole"),
        "{out}"
    );
    // The directory it made is gone.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    let v = json_of(
        &mapstate()
            .args(["--json", "demo", "--dir"])
            .arg(dir.path())
            .timeout(Duration::from_secs(120))
            .assert()
            .success(),
    );
    assert_eq!(v["ok"], true);
    assert_eq!(v["kills"]["inside_commit"]["intact"], true);
}

#[test]
fn bench_says_what_it_runs() {
    mapstate()
        .args(["bench", "--dry-run"])
        .assert()
        .success()
        .stdout(contains(
            "cargo run --release -p mapstate-bench -- --systems mapstate --quick",
        ));
    mapstate()
        .args(["bench", "--dry-run", "--", "w1"])
        .assert()
        .success()
        .stdout(contains("--quick --markdown w1"));
    // Under --json, the dry run is JSON too (it printed text).
    let v = json_of(
        &mapstate()
            .args(["--json", "bench", "--dry-run"])
            .assert()
            .success(),
    );
    assert_eq!(v["ran"], false);
    assert!(v["command"].as_str().unwrap().contains("--quick"), "{v}");
}

/// Checks `info --json`'s `map_sync` (`v`) against what the kernel answered
/// and against `check-fs DIR`, in the same words; returns its text.
fn map_sync_report_agrees_with_check_fs(v: &serde_json::Value, dir: &Path) -> String {
    // MAP_SYNC: what the kernel answered, in the words check-fs uses.
    let ms = &v["map_sync"];
    let text = ms["text"].as_str().unwrap();
    let fs = ms["fs"].as_str().unwrap();
    match ms["supported"].as_bool() {
        Some(false) => assert_eq!(
            text,
            format!("not supported ({} on {fs})", ms["errno"].as_str().unwrap())
        ),
        Some(true) => assert_eq!(text, format!("supported (DAX on {fs})")),
        None => panic!("the probe failed: {ms}"),
    }
    if fs == "ext4" || fs == "tmpfs" {
        assert_eq!(ms["supported"], false);
        assert_eq!(ms["errno"], "EOPNOTSUPP");
    }
    let cf = json_of(
        &mapstate()
            .args(["--json", "check-fs", "--kills", "0"])
            .arg(dir)
            .assert()
            .success(),
    );
    let check = cf["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == "MAP_SYNC")
        .expect("a MAP_SYNC check");
    assert!(
        check["result"].as_str().unwrap().starts_with(text),
        "check-fs says {check}, info says {text:?}"
    );
    text.to_owned()
}

#[test]
fn info_reports_durability_log_writer_live_image_and_map_sync() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("i.db");
    let _cleanup = Cleanup(path.clone());
    let p = path.to_str().unwrap();
    mapstate()
        .args(["create", p, "--len", "64KiB", "--durability", "sync"])
        .assert()
        .success();
    mapstate()
        .args(["set", p, "--offset", "0", "--str", "abc"])
        .assert()
        .success();
    let v = json_of(&mapstate().args(["--json", "info", p]).assert().success());
    assert_eq!(v["durability"], "sync", "{v}");
    assert_eq!(v["seq"], 1);
    assert_eq!(v["checkpoint_seq"], 1, "set checkpoints before it returns");
    assert_eq!(v["log"]["used"], 0);
    let wal = std::fs::metadata(dir.path().join("i.db-wal"))
        .unwrap()
        .len();
    assert_eq!(v["log"]["size"], wal - 4096, "the log's record area");
    assert_eq!(v["writer"]["open"], false);
    let live = PathBuf::from(v["live_image"]["path"].as_str().unwrap());
    assert_eq!(&std::fs::read(&live).unwrap()[..8], b"MAPSTLIV");
    assert!(
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["role"] == "live image" && f["path"] == v["live_image"]["path"]),
        "{v}"
    );
    // The last writer (`set`) left it: every identity check passes.
    assert_eq!(v["live_image"]["origin"], "kept", "{v}");
    assert!(v["live_image"]["rebuilt_because"].is_null(), "{v}");

    let text = map_sync_report_agrees_with_check_fs(&v, dir.path());
    let out = stdout_of(&mapstate().args(["info", p]).assert().success());
    for want in [
        "durability sync".to_owned(),
        "checkpoint commit 1".to_owned(),
        "log 0 B used of".to_owned(),
        "writer none".to_owned(),
        format!("live image {}", live.display()),
        "kept: every identity check passed".to_owned(),
        format!("MAP_SYNC {text}"),
    ] {
        assert!(out.contains(&want), "{want:?} missing from:\n{out}");
    }

    // With a writer running: its pid and durability, the log in use, the
    // checkpoint behind.
    let v = json_of(&mapstate().args(["--json", "info", p]).assert().success());
    assert_eq!(v["writer_durability"], serde_json::Value::Null, "no writer");
    let mut w = Writer::options()
        .durability(Durability::Periodic(Duration::from_millis(250)))
        .open(&path)
        .unwrap();
    let mut t = w.begin();
    t.write_at(0, b"xyz").unwrap();
    t.commit().unwrap();
    let used = w.log_bytes();
    assert!(used > 0);
    let v = json_of(&mapstate().args(["--json", "info", p]).assert().success());
    assert_eq!(v["writer"]["open"], true);
    assert_eq!(v["writer"]["pid"], std::process::id());
    assert_eq!(v["seq"], 2);
    assert_eq!(v["checkpoint_seq"], 1);
    assert_eq!(v["log"]["used"], used);
    assert_eq!(v["writer_durability"], "periodic:250.0ms");
    let out = stdout_of(&mapstate().args(["info", p]).assert().success());
    assert!(
        out.contains(&format!("writer pid {} has it open", std::process::id())),
        "{out}"
    );
    assert!(
        out.contains("the writer commits with periodic:250.0ms"),
        "{out}"
    );
    w.close().unwrap();
    let v = json_of(&mapstate().args(["--json", "info", p]).assert().success());
    assert_eq!(v["writer"]["open"], false);
    assert_eq!(v["checkpoint_seq"], 2, "close checkpoints");
    assert_eq!(v["log"]["used"], 0);
}

/// The bytes of every file of the state at `path` (durable image, log,
/// journal, live image), to show that a command changed none of them.
fn all_files(path: &Path, live: &Path) -> Vec<Option<Vec<u8>>> {
    ["", "-wal", "-ckpt"]
        .iter()
        .map(|sfx| {
            let mut p = path.as_os_str().to_owned();
            p.push(sfx);
            std::fs::read(PathBuf::from(p)).ok()
        })
        .chain([std::fs::read(live).ok()])
        .collect()
}

#[test]
fn every_subcommand_refuses_a_corrupt_state_and_changes_nothing() {
    let s = State::new("8KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "keep"])
        .assert()
        .success();
    let live = PathBuf::from(
        json_of(
            &mapstate()
                .args(["--json", "info", s.p()])
                .assert()
                .success(),
        )["live_image"]["path"]
            .as_str()
            .unwrap(),
    );
    // Both header slots damaged (their checksums no longer match).
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&s.path)
        .unwrap();
    let mut header = vec![0u8; 4096];
    std::os::unix::fs::FileExt::read_exact_at(&f, &mut header, 0).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"ZZZZ", 40).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"ZZZZ", 2048 + 40).unwrap();
    let before = all_files(&s.path, &live);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["info"], 1, "corrupt"),
        (&["get", "--offset", "0", "--len", "4"], 1, "corrupt"),
        (&["dump"], 1, "corrupt"),
        (&["set", "--offset", "0", "--str", "x"], 1, "corrupt"),
        (
            &["set", "--offset", "0", "--str", "x", "--wait"],
            1,
            "corrupt",
        ),
        (&["recover"], 1, "corrupt"),
        (&["watch", "--timeout", "100ms"], 1, "corrupt"),
        (&["verify"], 3, "corrupt"),
        (&["create"], 1, "already exists"),
    ];
    for (args, code, msg) in cases {
        let a = mapstate()
            .arg(args[0])
            .arg(s.p())
            .args(&args[1..])
            .assert()
            .code(*code)
            .stderr(contains(*msg));
        assert!(stdout_of(&a).is_empty(), "{args:?} printed to stdout");
        assert!(
            all_files(&s.path, &live) == before,
            "{args:?} changed a file of the state"
        );
    }
    // With --json the error is a JSON object on stdout too.
    let a = mapstate().args(["--json", "info", s.p()]).assert().code(1);
    let v = json_of(&a);
    assert_eq!(v["exit_code"], 1);
    assert!(v["error"].as_str().unwrap().contains("corrupt"), "{v}");
    // Repaired, so that the state can be removed.
    std::os::unix::fs::FileExt::write_all_at(&f, &header, 0).unwrap();
    drop(f);
    let (seq, bytes) = s.snapshot();
    assert_eq!((seq, &bytes[..4]), (1, &b"keep"[..]));
}

#[test]
fn malformed_arguments_are_usage_errors_and_change_nothing() {
    let s = State::new("4KiB");
    mapstate()
        .args(["set", s.p(), "--offset", "0", "--str", "same"])
        .assert()
        .success();
    let before = s.snapshot();
    let cases: &[&[&str]] = &[
        &["set", "S", "--offset", "0", "--hex", "0xg0"],
        &["set", "S", "--offset", "0", "--hex", "de ad b"],
        &["set", "S", "--offset", "0xZZ", "--str", "x"],
        &["set", "S", "--offset", "1MB", "--str", "x"],
        &["get", "S", "--offset", "0", "--len", "12QB"],
        &["get", "S", "--len", "1"],
        &["dump", "S", "--len", "lots"],
        &["watch", "S", "--timeout", "soon"],
        &["watch", "S", "--count", "-1"],
        &["recover"],
        &["info"],
        &["create", "S2", "--len", ""],
        &["create", "S2", "--max-size", "1.3B"],
        &["torture", "--kills", "-1"],
        &["check-fs"],
        &["demo", "--dir"],
    ];
    for args in cases {
        let other = s.dir.path().join("other.db");
        let args: Vec<&str> = args
            .iter()
            .map(|a| match *a {
                "S" => s.p(),
                "S2" => other.to_str().unwrap(),
                a => a,
            })
            .collect();
        let a = mapstate().args(&args).assert().code(2);
        let err = String::from_utf8_lossy(&a.get_output().stderr).into_owned();
        assert!(err.contains("error:"), "{args:?}: {err}");
        assert!(!other.exists(), "{args:?} created a file");
        assert_eq!(s.snapshot(), before, "{args:?} changed the state");
    }
}

#[test]
fn bad_directories_for_torture_demo_and_check_fs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f");
    std::fs::write(&file, b"").unwrap();
    for sub in [
        &["torture", "--kills", "1", "--dir"][..],
        &["demo", "--dir"],
    ] {
        mapstate()
            .args(sub)
            .arg(dir.path().join("missing"))
            .assert()
            .code(5)
            .stderr(contains("no such directory"));
        mapstate()
            .args(sub)
            .arg(&file)
            .assert()
            .code(1)
            .stderr(contains("not a directory"));
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    // No permission to create files there: exit 5, nothing left behind.
    let root =
        std::fs::metadata("/proc/self").is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0);
    if !root {
        println!("SKIPPED: the no-permission directory cases need root (to run as nobody)");
        return;
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = dir.path().join("mapstate-copy");
    std::fs::copy(bin(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let target = dir.path().to_str().unwrap();
    let new_state = dir.path().join("new.db");
    for args in [
        vec!["torture", "--kills", "1", "--dir", target],
        vec!["demo", "--dir", target],
        vec!["check-fs", "--kills", "0", target],
        vec!["create", new_state.to_str().unwrap()],
    ] {
        // A child forked by another test thread may still hold the copy's
        // write descriptor for a moment (ETXTBSY on exec): try again then.
        let out = (0..20)
            .map(|_| {
                StdCommand::new("setpriv")
                    .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                    .arg(&exe)
                    .args(&args)
                    .output()
                    .expect("setpriv")
            })
            .find(|o| {
                let busy = String::from_utf8_lossy(&o.stderr).contains("Text file busy");
                if busy {
                    std::thread::sleep(Duration::from_millis(50));
                }
                !busy
            })
            .expect("the copy of the binary stays busy");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(5), "{args:?}: {err}");
        assert!(
            err.to_lowercase().contains("permission denied"),
            "{args:?}: {err}"
        );
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "{args:?} left a file"
        );
    }
}

#[test]
fn watch_without_permission_is_exit_5() {
    let s = State::new("4KiB");
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = s.snapshot();
    let out = without_permission(&s.path, &["watch", s.p(), "--timeout", "50ms"]);
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("permission denied"));
    assert_eq!(s.snapshot(), before);
}

/// Microseconds since the epoch.
fn micros(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH).unwrap().as_micros() as i64
}

/// Microseconds since the epoch of `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
fn utc_micros(s: &str) -> i64 {
    assert!(
        s.len() == 27 && s.ends_with('Z') && &s[10..11] == "T",
        "{s}"
    );
    let n = |r: std::ops::Range<usize>| s[r].parse::<i64>().unwrap();
    let (y, mo, d) = (n(0..4), n(5..7), n(8..10));
    // days_from_civil (Howard Hinnant).
    let y = if mo <= 2 { y - 1 } else { y };
    let (era, yoe) = (y.div_euclid(400), y.rem_euclid(400));
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    secs * 1_000_000 + n(20..26)
}

#[test]
fn watch_json_prints_another_process_s_commits_in_order_with_ranges() {
    let s = State::new("64KiB");
    let n = 12u64;
    let mut child = StdCommand::new(bin())
        .args(["watch", s.p(), "--json", "--count", &n.to_string()])
        .args(["--timeout", "30s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    err.read_line(&mut line).unwrap();
    assert!(line.starts_with("watching"), "{line}");
    // The watcher is registered: commit back to back from this process.
    let started = std::time::SystemTime::now();
    let mut w = Writer::open(&s.path).unwrap();
    let mut want = Vec::new();
    for i in 0..n - 2 {
        let mut t = w.begin();
        t.write_at(100 * i, &vec![7; (i + 1) as usize]).unwrap();
        let seq = t.commit().unwrap();
        want.push((seq, vec![(100 * i, i + 1)], false));
    }
    // Two ranges, then more ranges than a ring entry holds (widened).
    let mut t = w.begin();
    t.write_at(10, &[1; 2]).unwrap();
    t.write_at(5000, &[1; 3]).unwrap();
    want.push((t.commit().unwrap(), vec![(10, 2), (5000, 3)], false));
    let mut t = w.begin();
    for k in 0..5 {
        t.write_at(1000 * k + 1, &[2; 4]).unwrap();
    }
    want.push((t.commit().unwrap(), vec![(1, 4004)], true));
    drop(w);
    let t = Instant::now();
    let status = child.wait().unwrap();
    let ended = std::time::SystemTime::now();
    assert!(status.success(), "watch exits after --count lines");
    assert!(t.elapsed() < Duration::from_secs(20));
    let (out, lines) = json_lines_of(&mut child);
    assert_eq!(lines.len() as u64, n, "{out}");
    for (l, (seq, ranges, widened)) in lines.iter().zip(&want) {
        assert_eq!(l["seq"], *seq, "{out}");
        let got: Vec<(u64, u64)> = l["ranges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["offset"].as_u64().unwrap(), r["len"].as_u64().unwrap()))
            .collect();
        assert_eq!(&got, ranges, "commit {seq}: {out}");
        assert_eq!(l["widened"], *widened);
        assert_eq!(l["len"], 65536);
        // When the watcher woke: between the first commit and its exit.
        let time = utc_micros(l["time"].as_str().unwrap());
        assert!(
            (micros(started)..=micros(ended)).contains(&time),
            "commit {seq}: {} is not when it happened",
            l["time"]
        );
    }
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order: {seqs:?}"
    );
}
