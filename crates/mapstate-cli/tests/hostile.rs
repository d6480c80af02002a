//! Hostile neighbours (issue 13): another local user, planted files and
//! restored backups against a state owned by root. The other user is
//! `nobody` (uid 65534) through `setpriv --reuid=65534 --regid=65534
//! --clear-groups`; the scenarios that plant files run with
//! `fs.protected_symlinks` and `fs.protected_regular` both 0 and both 1.
//!
//! One test (or a few) per attack 1–12 of the issue, named `attackNN_*`,
//! each asserting what must hold now:
//! - 1: a forged live image; a live directory another user made first;
//! - 2: planted temporaries;
//! - 3: a reader that rebuilds the live image;
//! - 4: a planted journal or log in a directory others can write;
//! - 5: locks that readers can take (command line; `Writer::open`);
//! - 6: a restored backup, in place and as a new file;
//! - 7: a reader in another mount namespace;
//! - 8: `kill -SEGV`/`-BUS`, and handlers of the program's own;
//! - 9: modes (in process; command line; commits only in the log);
//! - 10: read-only and unsuitable filesystems;
//! - 11: a writer in another pid namespace (command line; library);
//! - 12: hostile values in the live header (command line; in process).
//!
//! They need root (CI runs as root) and
//! util-linux (`setpriv`, `unshare`, `flock`, `mount`): without them they
//! fail, unless `MAPSTATE_SKIP_HOSTILE=1`. All of them take one lock (the
//! sysctls, `/dev/shm` and the mounts are the machine's).
//!
//! The command-line parts run the `mapstate` binary of this build, or the
//! one `MAPSTATE_CLI` names (an older build, to show the attacks working
//! there: the flags used are ones old builds had too, `--size` and
//! `--wait`). The parts that use the library in this process, or a state
//! made by it, always use this build.
//!
//! Long-lived roles (a lock holder, a planting user, a writer killed
//! without a checkpoint, a process with an extend-on-write region, a
//! scenario in a mount namespace of its own) are this test binary run
//! again: the `#[ignore]`d tests `helper_*`, with their parameters in
//! `HOSTILE_*` variables, speaking through lines on stdin and stdout. The
//! binaries are hard-linked (or copied) into the test's scratch directory,
//! so that uid 65534 may run them wherever the checkout is.

// OFD read locks and a SIGSEGV handler of the program's own, through libc;
// each block says why it is sound.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use mapstate::{Error, Filesystem, FsClass, Reader, Writer};
use rustix::process::{Pid, Signal};
use serde_json::Value;

/// The other user.
const NOBODY: u32 = 65534;
/// The size of the header page of every mapstate file (data follows it).
const PAGE: u64 = 4096;
/// What a helper's protocol lines start with (libtest prints lines too).
const MARK: &str = "HOSTILE:";
/// How long an operation of the owner may take when someone else holds a
/// lock on its state (attack 5).
const BOUND: Duration = Duration::from_secs(5);
/// How long any command may run before it is killed and called hung.
const PATIENCE: Duration = Duration::from_secs(30);
/// The owner's bytes, and the other user's.
const ROOT_BYTES: &[u8] = b"ROOT";
const EVIL: &[u8] = b"EVIL";

/// The tests share the machine's sysctls, `/dev/shm` and mount table.
static SERIAL: Mutex<()> = Mutex::new(());

// ---------------------------------------------------------------------
// The environment: prerequisites, scratch directory, binaries, cleanup.
// ---------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum User {
    Root,
    Nobody,
}

/// One test's world: the lock, a scratch directory uid 65534 can reach,
/// the binaries in it, and what to remove at the end.
struct Env {
    scratch: tempfile::TempDir,
    /// The `mapstate` binary under test (`MAPSTATE_CLI` or this build's).
    cli: PathBuf,
    /// This build's `mapstate` binary (for states the library made here).
    built_cli: PathBuf,
    /// This test binary (for the helpers).
    me: PathBuf,
    /// Files outside the scratch directory to remove at the end (live
    /// images, planted files).
    leftovers: RefCell<Vec<PathBuf>>,
    /// Device and inode of every durable file made (their live images go).
    ids: RefCell<Vec<(u64, u64)>>,
    /// Whether nobody's own live directory was there before (else it goes
    /// at the end, if empty).
    nobody_dir_was_there: bool,
    _serial: MutexGuard<'static, ()>,
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(tool))
            .find(|f| f.is_file())
    })
}

/// Why these tests cannot run here, if they cannot.
fn missing_prerequisite() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some(
            "root (they switch to uid 65534 with setpriv, set fs.protected_* and mount \
             filesystems)"
                .into(),
        );
    }
    for tool in ["setpriv", "unshare", "flock", "mount", "umount", "cp", "sh"] {
        if which(tool).is_none() {
            return Some(format!("`{tool}` (util-linux / coreutils) on PATH"));
        }
    }
    None
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", p.display()));
}

/// `src` at `dst` (a hard link, else a copy), runnable by anyone.
fn reachable(src: &Path, dst: &Path) -> PathBuf {
    if fs::hard_link(src, dst).is_err() {
        fs::copy(src, dst).unwrap_or_else(|e| panic!("copy {}: {e}", src.display()));
        chmod(dst, 0o755);
    }
    dst.into()
}

/// The lock and a fresh world, or `None` when the tests are skipped.
fn env() -> Option<Env> {
    let serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(missing) = missing_prerequisite() {
        assert!(
            std::env::var("MAPSTATE_SKIP_HOSTILE").as_deref() == Ok("1"),
            "the hostile-neighbour tests (issue 13) need {missing}; CI runs them as root. \
             Set MAPSTATE_SKIP_HOSTILE=1 to skip them"
        );
        eprintln!("hostile-neighbour test skipped (MAPSTATE_SKIP_HOSTILE=1): it needs {missing}");
        return None;
    }
    let scratch = tempfile::Builder::new()
        .prefix("mapstate-hostile-")
        .tempdir()
        .expect("a scratch directory");
    chmod(scratch.path(), 0o755);
    let bin = scratch.path().join("bin");
    fs::create_dir(&bin).expect("bin/");
    chmod(&bin, 0o755);
    let built = PathBuf::from(env!("CARGO_BIN_EXE_mapstate"));
    let tested = std::env::var_os("MAPSTATE_CLI").map_or_else(|| built.clone(), PathBuf::from);
    let cli = reachable(&tested, &bin.join("mapstate"));
    let built_cli = if tested == built {
        cli.clone()
    } else {
        reachable(&built, &bin.join("mapstate-built"))
    };
    let me = reachable(
        &std::env::current_exe().expect("the test binary"),
        &bin.join("hostile"),
    );
    Some(Env {
        scratch,
        cli,
        built_cli,
        me,
        leftovers: RefCell::default(),
        ids: RefCell::default(),
        nobody_dir_was_there: live_dirs()[2].exists(),
        _serial: serial,
    })
}

/// The directories live images of root's and nobody's states may be in.
fn live_dirs() -> [PathBuf; 4] {
    [
        "/dev/shm".into(),
        "/dev/shm/mapstate-0".into(),
        format!("/dev/shm/mapstate-{NOBODY}").into(),
        "/run/mapstate".into(),
    ]
}

fn dev_ino(p: &Path) -> (u64, u64) {
    let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("lstat {}: {e}", p.display()));
    (md.dev(), md.ino())
}

/// The part of a live image's name that names the durable file.
fn live_id((dev, ino): (u64, u64)) -> String {
    format!("mapstate-{dev:x}-{ino}.live")
}

impl Drop for Env {
    fn drop(&mut self) {
        // Every durable file in the scratch tree, and every one tracked,
        // loses its live images (and any temporary named after them).
        let mut ids = self.ids.borrow().clone();
        let mut stack = vec![self.scratch.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let Ok(md) = fs::symlink_metadata(e.path()) else {
                    continue;
                };
                if md.is_dir() {
                    stack.push(e.path());
                } else if md.is_file() {
                    ids.push((md.dev(), md.ino()));
                }
            }
        }
        let names: Vec<String> = ids.into_iter().map(live_id).collect();
        for d in live_dirs() {
            for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if names.iter().any(|id| n.contains(id.as_str())) {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        for p in self.leftovers.borrow().iter() {
            let _ = fs::remove_file(p);
        }
        if !self.nobody_dir_was_there {
            let _ = fs::remove_dir(&live_dirs()[2]);
        }
        // Files nobody made in the scratch tree are removed with it (root).
    }
}

// ---------------------------------------------------------------------
// Running commands.
// ---------------------------------------------------------------------

/// What a command did.
struct Out {
    what: String,
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
    took: Duration,
    hung: bool,
}

impl Out {
    fn ok(&self) -> bool {
        !self.hung && self.status.is_some_and(|s| s.success())
    }

    fn code(&self) -> Option<i32> {
        self.status.and_then(|s| s.code())
    }

    /// A Rust panic, or death by a signal other than our own SIGKILL of a
    /// hung command.
    fn crashed(&self) -> bool {
        self.stderr.contains("panicked")
            || self.code() == Some(101)
            || (!self.hung && self.status.is_some_and(|s| s.signal().is_some()))
    }

    fn show(&self) -> String {
        let how = if self.hung {
            format!("HUNG (killed after {:.1} s)", self.took.as_secs_f64())
        } else {
            match self.status {
                Some(s) => format!("{s} after {:.2} s", self.took.as_secs_f64()),
                None => "no status".into(),
            }
        };
        format!(
            "`{}`: {how}\n    stdout: {}\n    stderr: {}",
            self.what,
            self.stdout.trim(),
            self.stderr.trim()
        )
    }

    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", self.show()))
    }

    /// The bytes `get --hex` printed.
    fn bytes(&self) -> Vec<u8> {
        let s = self.stdout.trim();
        (0..s.len() / 2)
            .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap_or(b'?'))
            .collect()
    }
}

/// A shell-like rendering of a command, for messages.
fn render(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Kills the process group `pgid` with `sig` (every child is spawned as
/// the leader of its own group).
fn kill_group(pgid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(p, sig);
    }
}

/// Runs `cmd` to its end, or kills it (and its group) after `limit`.
fn run(mut cmd: Command, limit: Duration) -> Out {
    let what = render(&cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (res, hung) = if let Ok(r) = rx.recv_timeout(limit) {
        (r, false)
    } else {
        kill_group(pid, Signal::KILL);
        (rx.recv().expect("the waiting thread"), true)
    };
    let took = start.elapsed();
    let out = res.unwrap_or_else(|e| panic!("waiting for `{what}`: {e}"));
    Out {
        what,
        status: Some(out.status),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took,
        hung,
    }
}

/// A long-lived child: its stdout lines as they come, its stderr at the end.
struct Kid {
    what: String,
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    seen: Vec<String>,
    stderr: Arc<Mutex<String>>,
}

impl Kid {
    fn spawn(mut cmd: Command) -> Kid {
        let what = render(&cmd);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{what}`: {e}"));
        let out = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().expect("piped");
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Kid {
            what,
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            seen: Vec::new(),
            stderr,
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The next line holding `word`; panics if the child ends or is silent
    /// for `PATIENCE` first.
    fn expect(&mut self, word: &str) -> String {
        loop {
            match self.lines.recv_timeout(PATIENCE) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if l.contains(word) {
                        return after_mark(&l).unwrap_or(&l).to_owned();
                    }
                }
                Err(e) => panic!(
                    "`{}` never printed {word:?} ({e:?}); its stdout: {:?}; its stderr: {}",
                    self.what,
                    self.seen,
                    self.stderr()
                ),
            }
        }
    }

    /// Sends `sig` to the child itself (not its group).
    fn signal(&self, sig: Signal) {
        let pid = Pid::from_raw(self.pid() as i32).expect("a pid");
        rustix::process::kill_process(pid, sig).expect("kill");
    }

    /// Writes a line to its stdin (ignoring a child that is gone).
    fn say(&mut self, line: &str) {
        if let Some(s) = self.stdin.as_mut() {
            let _ = writeln!(s, "{line}").and_then(|()| s.flush());
        }
    }

    /// Closes its stdin and waits for its end (killing its group after
    /// `limit`): its status, and whether it had to be killed.
    fn finish(mut self, limit: Duration) -> (ExitStatus, bool) {
        drop(self.stdin.take());
        let mut child = self.child.take().expect("running");
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        if let Ok(s) = rx.recv_timeout(limit) {
            (s.expect("wait"), false)
        } else {
            kill_group(pid, Signal::KILL);
            (rx.recv().expect("waiter").expect("wait"), true)
        }
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        drop(self.stdin.take());
        if let Some(mut c) = self.child.take() {
            kill_group(c.id(), Signal::KILL);
            let _ = c.wait();
        }
    }
}

/// Sets `fs.protected_symlinks` and `fs.protected_regular` for as long as
/// it lives, then puts back what they were (on a panic too).
struct Protected {
    saved: Vec<(&'static str, String)>,
}

const PROTECTED: [&str; 2] = [
    "/proc/sys/fs/protected_symlinks",
    "/proc/sys/fs/protected_regular",
];

impl Protected {
    fn set(on: bool) -> Self {
        let saved = PROTECTED
            .iter()
            .map(|p| {
                let v = fs::read_to_string(p).unwrap_or_else(|e| panic!("read {p}: {e}"));
                (*p, v.trim().to_owned())
            })
            .collect();
        let g = Self { saved };
        for p in PROTECTED {
            fs::write(p, if on { "1" } else { "0" }).unwrap_or_else(|e| panic!("write {p}: {e}"));
        }
        g
    }
}

impl Drop for Protected {
    fn drop(&mut self) {
        for (p, v) in &self.saved {
            let _ = fs::write(p, v);
        }
    }
}

fn protected_name(on: bool) -> &'static str {
    if on {
        "fs.protected_symlinks=1 fs.protected_regular=1"
    } else {
        "fs.protected_symlinks=0 fs.protected_regular=0"
    }
}

/// A filesystem mounted for as long as it lives (lazily unmounted after).
struct Mounted(PathBuf);

impl Mounted {
    fn new(args: &[&str], at: &Path) -> Self {
        let mut c = Command::new("mount");
        c.args(args).arg(at);
        let out = run(c, PATIENCE);
        assert!(out.ok(), "mount failed: {}", out.show());
        Self(at.into())
    }

    fn remount(&self, opts: &str) {
        let mut c = Command::new("mount");
        c.args(["-o", opts]).arg(&self.0);
        let out = run(c, PATIENCE);
        assert!(out.ok(), "remount failed: {}", out.show());
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `args![a, b, ...]`: a command line of paths, strings and numbers.
macro_rules! args {
    ($($a:expr),* $(,)?) => { [$(OsString::from($a)),*] };
}

impl Env {
    fn path(&self, rel: &str) -> PathBuf {
        self.scratch.path().join(rel)
    }

    /// A directory in the scratch tree with exactly `mode`.
    fn mkdir(&self, rel: &str, mode: u32) -> PathBuf {
        let p = self.path(rel);
        fs::create_dir_all(&p).unwrap_or_else(|e| panic!("mkdir {}: {e}", p.display()));
        chmod(&p, mode);
        p
    }

    /// A command running `prog` as `user`, in the scratch directory.
    fn command(&self, user: User, prog: &Path) -> Command {
        let mut c = match user {
            User::Root => Command::new(prog),
            User::Nobody => {
                let mut c = Command::new("setpriv");
                c.args([
                    format!("--reuid={NOBODY}"),
                    format!("--regid={NOBODY}"),
                    "--clear-groups".into(),
                    "--".into(),
                ])
                .arg(prog);
                c
            }
        };
        c.current_dir(self.scratch.path());
        c
    }

    /// The CLI under test, as `user`, to its end.
    fn ms(&self, user: User, args: &[OsString]) -> Out {
        self.ms_within(user, args, PATIENCE)
    }

    /// The CLI under test, as `user`, killed (and called hung) after `limit`.
    fn ms_within(&self, user: User, args: &[OsString], limit: Duration) -> Out {
        let mut c = self.command(user, &self.cli);
        c.args(args);
        run(c, limit)
    }

    /// This build's CLI (for states this build's library made).
    fn built(&self, user: User, args: &[OsString]) -> Out {
        let mut c = self.command(user, &self.built_cli);
        c.args(args);
        run(c, PATIENCE)
    }

    /// The helper test `name` of this binary, as `user`.
    fn helper(&self, user: User, name: &str, vars: &[(&str, OsString)]) -> Command {
        let mut c = self.command(user, &self.me);
        c.args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ]);
        for (k, v) in vars {
            c.env(k, v);
        }
        c
    }

    /// Runs a planting plan as nobody (see `helper_plant`): each line with
    /// its outcome (`Ok(note)` or `Err(error)`).
    fn plant(&self, plan: &[String]) -> Vec<(String, Result<String, String>)> {
        let out = run(
            self.helper(
                User::Nobody,
                "helper_plant",
                &[("HOSTILE_PLAN", plan.join("\n").into())],
            ),
            PATIENCE,
        );
        assert!(out.ok(), "the planting helper failed: {}", out.show());
        let results: Vec<_> = out
            .stdout
            .lines()
            .filter_map(after_mark)
            .map(|l| {
                let (kind, rest) = l.split_once(' ').unwrap_or((l, ""));
                let (line, note) = rest.split_once(" => ").unwrap_or((rest, ""));
                let r = if kind == "ok" {
                    Ok(note.to_owned())
                } else {
                    Err(note.to_owned())
                };
                (line.to_owned(), r)
            })
            .collect();
        assert_eq!(
            results.len(),
            plan.len(),
            "the planting helper answered {results:?}"
        );
        results
    }

    /// Remembers files to remove at the end.
    fn later(&self, paths: impl IntoIterator<Item = PathBuf>) {
        self.leftovers.borrow_mut().extend(paths);
    }

    fn track(&self, durable: &Path) {
        self.ids.borrow_mut().push(dev_ino(durable));
    }

    /// `mapstate create PATH --size SIZE`, which must succeed.
    fn create(&self, path: &Path, size: &str) {
        let out = self.ms(User::Root, &args!["create", path, "--size", size]);
        assert!(out.ok(), "create failed: {}", out.show());
        self.track(path);
    }

    fn get(&self, user: User, path: &Path, off: u64, len: u64) -> Out {
        self.ms(
            user,
            &args![
                "get",
                path,
                "--offset",
                off.to_string(),
                "--len",
                len.to_string(),
                "--hex"
            ],
        )
    }

    /// `get` that must succeed: the bytes.
    fn read(&self, user: User, path: &Path, off: u64, len: u64) -> Vec<u8> {
        let out = self.get(user, path, off, len);
        assert!(out.ok(), "get as {user:?} failed: {}", out.show());
        out.bytes()
    }

    fn set(&self, user: User, path: &Path, off: u64, s: &[u8]) -> Out {
        self.ms(
            user,
            &args!["set", path, "--offset", off.to_string(), "--hex", hex(s)],
        )
    }

    fn must_set(&self, path: &Path, off: u64, s: &[u8]) {
        let out = self.set(User::Root, path, off, s);
        assert!(out.ok(), "root's set failed: {}", out.show());
    }

    fn info(&self, user: User, path: &Path) -> Out {
        self.ms(user, &args!["--json", "info", path])
    }

    /// The live image root's readers use (as `info --json` says).
    fn live_of(&self, path: &Path) -> PathBuf {
        let out = self.info(User::Root, path);
        assert!(out.ok(), "info failed: {}", out.show());
        let live = live_path(&out.json());
        self.later([live.clone()]);
        live
    }

    /// A reboot, as far as the state can tell: its live image is gone.
    fn reboot(&self, path: &Path) {
        let live = self.live_of(path);
        fs::remove_file(&live).unwrap_or_else(|e| panic!("rm {}: {e}", live.display()));
    }

    /// Gives every file of the state `mode` (a state made with it); its
    /// live image's path.
    fn chmod_state(&self, path: &Path, mode: u32) -> PathBuf {
        let live = self.live_of(path);
        for p in [path, &with(path, "-wal"), &with(path, "-ckpt"), &live] {
            if p.exists() {
                chmod(p, mode);
            }
        }
        live
    }

    /// A root-only file (mode 0600 in a 0700 directory) to aim symlinks at.
    fn secret(&self, tag: &str) -> Secret {
        let d = self.mkdir(&format!("root-only-{tag}"), 0o700);
        let p = d.join("secret");
        fs::write(&p, b"root's own file: nobody may change it\n").expect("secret");
        chmod(&p, 0o600);
        Secret::of(p)
    }
}

/// `path` with `suffix` after its file name.
fn with(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    s.into()
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The live image path of `info --json` (an object now, a string in old
/// builds).
fn live_path(info: &Value) -> PathBuf {
    match &info["live_image"] {
        Value::String(s) => s.into(),
        v => v["path"]
            .as_str()
            .unwrap_or_else(|| panic!("no live image path in {info}"))
            .into(),
    }
}

/// `info --json`'s live image origin and why it was built (absent in old
/// builds).
fn live_origin(info: &Value) -> (Option<String>, Option<String>) {
    let v = &info["live_image"];
    (
        v["origin"].as_str().map(str::to_owned),
        v["rebuilt_because"].as_str().map(str::to_owned),
    )
}

/// `len` bytes of the durable file's data at `off` (read from the file).
fn durable_bytes(path: &Path, off: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open(path)
        .and_then(|f| f.read_exact_at(&mut b, PAGE + off))
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    b
}

/// A root-only file and everything that says it is unchanged.
struct Secret {
    path: PathBuf,
    bytes: Vec<u8>,
    ino: u64,
}

impl Secret {
    fn of(path: PathBuf) -> Self {
        let bytes = fs::read(&path).expect("secret");
        let ino = dev_ino(&path).1;
        Self { path, bytes, ino }
    }

    fn assert_untouched(&self, ctx: &str) {
        let md = fs::symlink_metadata(&self.path).expect("the secret");
        let now = fs::read(&self.path).expect("the secret");
        assert!(
            now == self.bytes && md.ino() == self.ino && md.mode() & 0o7777 == 0o600,
            "{ctx}: root's own file {} was changed through a planted symlink: now {} bytes \
             starting {:?}, mode {:o}",
            self.path.display(),
            now.len(),
            text(&now[..now.len().min(16)]),
            md.mode() & 0o7777
        );
    }
}

/// Asserts that `p`, a file of root's state, is root's regular file
/// granting no more than `mode` (if it exists).
fn assert_roots_file(p: &Path, mode: u32, ctx: &str) {
    let Ok(md) = fs::symlink_metadata(p) else {
        return;
    };
    assert!(
        md.file_type().is_file(),
        "{ctx}: {} is not a regular file but {:?}",
        p.display(),
        md.file_type()
    );
    assert_eq!(
        md.uid(),
        0,
        "{ctx}: {} belongs to uid {}: a file another user made is part of root's state",
        p.display(),
        md.uid()
    );
    assert_eq!(
        md.mode() & 0o7777 & !mode,
        0,
        "{ctx}: {} has mode {:o}, wider than the state's {mode:o}",
        p.display(),
        md.mode() & 0o7777
    );
}

/// Entries of the directories in `dirs` whose names contain one of `needles`.
fn entries_with(dirs: &[PathBuf], needles: &[String]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        for e in fs::read_dir(d).into_iter().flatten().flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if needles.iter().any(|x| n.contains(x.as_str())) {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

/// An operation of the owner under attack either worked or was refused
/// with an error that names the planted file (or symbolic link) and its
/// owner (issue 13: "refused with an error that names the path and its
/// owner"); it never crashed or hung. A refusal that names the path but
/// not the owner is returned (the caller collects those and fails at the
/// end, after every scenario ran).
fn assert_ok_or_refused_naming(out: &Out, planted: &Path, ctx: &str) -> Result<(), String> {
    assert!(!out.hung && !out.crashed(), "{ctx}: {}", out.show());
    if out.ok() {
        return Ok(());
    }
    let name = planted.to_string_lossy();
    assert!(
        out.stderr.contains(name.as_ref()),
        "{ctx}: the owner's command failed without naming the planted {name}: {}",
        out.show()
    );
    if out.stderr.contains(&format!("uid {NOBODY}")) {
        Ok(())
    } else {
        Err(format!(
            "{ctx}: the error names the planted {name} but not its owner (uid {NOBODY}): {}",
            out.show()
        ))
    }
}

// ---------------------------------------------------------------------
// Helpers: this binary run again in another role.
// ---------------------------------------------------------------------

/// A helper's protocol line: what follows the mark (libtest may have
/// printed `test NAME ... ` before it on the same line).
fn after_mark(l: &str) -> Option<&str> {
    l.split_once(MARK).map(|(_, rest)| rest)
}

fn say(line: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{MARK}{line}").and_then(|()| o.flush());
}

/// Blocks until stdin ends (the parent closed it or died).
fn wait_for_stdin_end() {
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

/// Writes `bytes` as a new file `dst` that anyone may write (mode 0666),
/// or, where `dst` exists, renames such a file over it.
fn plant_bytes(dst: &Path, bytes: &[u8]) -> std::io::Result<String> {
    let write_new = |p: &Path| -> std::io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(p)?;
        f.write_all(bytes)?;
        f.set_permissions(fs::Permissions::from_mode(0o666))
    };
    match write_new(dst) {
        Ok(()) => Ok("created".into()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let tmp = with(dst, ".nobody");
            write_new(&tmp)?;
            fs::rename(&tmp, dst).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
            Ok("renamed over the file there".into())
        }
        Err(e) => Err(e),
    }
}

/// A symbolic link to `target` at `at`, renamed over whatever is there.
fn plant_symlink(target: &Path, at: &Path) -> std::io::Result<String> {
    match std::os::unix::fs::symlink(target, at) {
        Ok(()) => Ok("linked".into()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let tmp = with(at, ".nobody");
            std::os::unix::fs::symlink(target, &tmp)?;
            fs::rename(&tmp, at).inspect_err(|_| {
                let _ = fs::remove_file(&tmp);
            })?;
            Ok("renamed over the file there".into())
        }
        Err(e) => Err(e),
    }
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// A live image as someone who could read one would forge it: the owner's
/// image `src` with `EVIL` as its first data bytes and a sequence number
/// 1000 commits ahead (offsets of `format::live`: the sequence lock at 64,
/// the published log sequence number at 200).
fn forged_live(src: &Path) -> std::io::Result<Vec<u8>> {
    let mut b = fs::read(src)?;
    if b.len() < (PAGE + 4) as usize {
        return Err(std::io::Error::other("too short for a live image"));
    }
    b[PAGE as usize..PAGE as usize + 4].copy_from_slice(EVIL);
    let seqlock = u64_at(&b, 64) + 2000;
    b[64..72].copy_from_slice(&seqlock.to_le_bytes());
    let log_seq = u64_at(&b, 200) + 1000;
    b[200..208].copy_from_slice(&log_seq.to_le_bytes());
    Ok(b)
}

/// A checkpoint journal for the state `state` as its owner's next
/// checkpoint would write it (every field and hash right, from the durable
/// header anyone who may read the state can read), whose one page makes
/// the state start with `EVIL`. Layouts: `format::DurableHeader` (128
/// bytes, checksum of bytes 0..120 at 120, `epoch` at 88 and `prev_epoch`
/// at 104 from version 2 on) and `format::JournalHeader` (magic, file id,
/// target header, page count, body hash, checksum), the page list at
/// 4096, the pages after it.
fn forged_journal(state: &Path) -> std::io::Result<Vec<u8>> {
    use xxhash_rust::xxh3::xxh3_64_with_seed;
    let f = File::open(state)?;
    let mut page0 = vec![0u8; PAGE as usize];
    f.read_exact_at(&mut page0, 0)?;
    let mut data0 = vec![0u8; PAGE as usize];
    f.read_exact_at(&mut data0, PAGE)?;
    let mut best: Option<Vec<u8>> = None;
    for slot in [0usize, 2048] {
        let h = &page0[slot..slot + 128];
        let valid = &h[..8] == b"MAPSTATE" && xxh3_64_with_seed(&h[..120], 0) == u64_at(h, 120);
        if valid && best.as_ref().is_none_or(|b| u64_at(h, 32) > u64_at(b, 32)) {
            best = Some(h.to_vec());
        }
    }
    let current = best.ok_or_else(|| std::io::Error::other("no valid durable header"))?;
    let mut target = current.clone();
    target[32..40].copy_from_slice(&(u64_at(&current, 32) + 1).to_le_bytes());
    let version = u32::from_le_bytes(current[8..12].try_into().expect("4 bytes"));
    if version >= 2 {
        target[104..120].copy_from_slice(&current[88..104]);
        let mut epoch = [0u8; 16];
        rustix::rand::getrandom(&mut epoch[..], rustix::rand::GetRandomFlags::empty())?;
        target[88..104].copy_from_slice(&epoch);
    }
    let sum = xxh3_64_with_seed(&target[..120], 0);
    target[120..128].copy_from_slice(&sum.to_le_bytes());
    let mut list = vec![0u8; PAGE as usize]; // one page: number 0
    list[..8].copy_from_slice(&0u64.to_le_bytes());
    data0[..4].copy_from_slice(EVIL);
    let mut body = list.clone();
    body.extend_from_slice(&data0);
    let body_hash = xxh3_64_with_seed(&body, sum);
    let mut hdr = Vec::with_capacity(176);
    hdr.extend_from_slice(b"MAPSTJNL");
    hdr.extend_from_slice(&current[16..32]);
    hdr.extend_from_slice(&target);
    hdr.extend_from_slice(&1u64.to_le_bytes());
    hdr.extend_from_slice(&body_hash.to_le_bytes());
    let check = xxh3_64_with_seed(&hdr, 0);
    hdr.extend_from_slice(&check.to_le_bytes());
    hdr.resize(PAGE as usize, 0);
    hdr.extend_from_slice(&body);
    Ok(hdr)
}

/// One line of a planting plan (see `helper_plant`).
fn plant_one(w: &[&str]) -> std::io::Result<String> {
    let p = |i: usize| Path::new(w[i]);
    match w[0] {
        "symlink" => plant_symlink(p(1), p(2)),
        "file" => plant_bytes(p(1), b"planted by uid 65534\n"),
        "copy" => plant_bytes(p(2), &fs::read(p(1))?),
        "forge-live" => plant_bytes(p(2), &forged_live(p(1))?),
        "forge-journal" => plant_bytes(p(2), &forged_journal(p(1))?),
        "mkdir" => {
            let mode = u32::from_str_radix(w[2], 8).map_err(std::io::Error::other)?;
            fs::create_dir(p(1))?;
            fs::set_permissions(p(1), fs::Permissions::from_mode(mode))?;
            Ok("made".into())
        }
        // `pids KIND PREFIX FROM TO [TARGET]`: PREFIX{pid} for every pid of
        // FROM..TO, a symlink to TARGET or a file anyone may write.
        "pids" => {
            let (from, to): (u32, u32) = (
                w[3].parse().map_err(std::io::Error::other)?,
                w[4].parse().map_err(std::io::Error::other)?,
            );
            let mut n = 0;
            for pid in from..to {
                let at = PathBuf::from(format!("{}{pid}", w[2]));
                let r = if w[1] == "symlink" {
                    std::os::unix::fs::symlink(w[5], &at).map(|()| String::new())
                } else {
                    plant_bytes(&at, b"planted by uid 65534\n")
                };
                n += u32::from(r.is_ok());
            }
            Ok(format!("{n} planted"))
        }
        other => Err(std::io::Error::other(format!("unknown plan step {other}"))),
    }
}

/// Plants files as the user it runs as: one plan line per step of
/// `HOSTILE_PLAN`, one answer line each (`ok LINE => note` or `err LINE =>
/// error`). Paths hold no spaces (they are the tests' own).
#[test]
#[ignore = "a role of the hostile tests: they run it as another user"]
fn helper_plant() {
    let Ok(plan) = std::env::var("HOSTILE_PLAN") else {
        return;
    };
    for line in plan.lines() {
        let w: Vec<&str> = line.split(' ').collect();
        match plant_one(&w) {
            Ok(note) => say(&format!("ok {line} => {note}")),
            Err(e) => say(&format!("err {line} => {e}")),
        }
    }
}

/// Holds a lock on `HOSTILE_PATH`, opened read-only, until stdin ends:
/// `HOSTILE_LOCK` `ofd` (an OFD read lock on the whole file) or `posix`
/// (a POSIX record read lock on the whole file, as `lockf` takes).
#[test]
#[ignore = "a role of the hostile tests: they run it as another user"]
fn helper_lock() {
    let (Some(path), Ok(kind)) = (
        std::env::var_os("HOSTILE_PATH"),
        std::env::var("HOSTILE_LOCK"),
    ) else {
        return;
    };
    let f = File::open(&path).expect("open read-only");
    if kind == "ofd" {
        // SAFETY: a zeroed `flock` is a valid value of the plain C struct.
        let mut l: libc::flock = unsafe { std::mem::zeroed() };
        l.l_type = libc::F_RDLCK as i16;
        l.l_whence = libc::SEEK_SET as i16;
        // SAFETY: `f` is an open descriptor and `l` a valid `flock` that
        // outlives the call.
        let r = unsafe {
            libc::fcntl(
                std::os::fd::AsRawFd::as_raw_fd(&f),
                libc::F_OFD_SETLK,
                &raw const l,
            )
        };
        assert_eq!(r, 0, "F_OFD_SETLK: {}", std::io::Error::last_os_error());
    } else {
        rustix::fs::fcntl_lock(f.as_fd(), rustix::fs::FlockOperation::NonBlockingLockShared)
            .expect("F_SETLK F_RDLCK");
    }
    say("locked");
    wait_for_stdin_end();
    drop(f);
}

/// A writer that dies without a checkpoint: commits `UNCKPT!!` at 0 of the
/// state `HOSTILE_PATH`, says so, and waits to be killed.
#[test]
#[ignore = "a role of the hostile tests: they run it and kill it"]
fn helper_writer_dies() {
    let Some(path) = std::env::var_os("HOSTILE_PATH") else {
        return;
    };
    let mut w = Writer::open(&path).expect("writer");
    let mut t = w.begin();
    t.write_at(0, b"UNCKPT!!").expect("write");
    let seq = t.commit().expect("commit");
    say(&format!("committed {seq}"));
    wait_for_stdin_end();
    // Not reached when killed; a clean end leaves no checkpoint either.
    std::process::exit(0);
}

/// A process with an extend-on-write region (`HOSTILE_DIR/grow`).
/// `HOSTILE_FAULT` = `plain`: says `ready`, then answers `alive` to each
/// line on stdin (it must never get there after a sent SIGSEGV or SIGBUS).
/// `own-handler` / `own-handler-reinstalled`: installs a SIGSEGV handler of
/// its own after the region exists (it `_exit`s with 42), calls
/// `reinstall_fault_handler` in the second case, then stores past the
/// mapped end (saying `grew LEN` if the file grew) and sends itself a
/// SIGSEGV (which must reach its handler: exit 42).
#[test]
#[ignore = "a role of the hostile tests: they run it and signal it"]
fn helper_fault() {
    extern "C" fn own(_: libc::c_int) {
        // SAFETY: `_exit` is async-signal-safe and never returns.
        unsafe { libc::_exit(42) };
    }
    let (Some(dir), Ok(mode)) = (
        std::env::var_os("HOSTILE_DIR"),
        std::env::var("HOSTILE_FAULT"),
    ) else {
        return;
    };
    // A C program starts with SIG_DFL for both; a Rust one with std's
    // stack-overflow handler, which (like mapstate before issue 13)
    // restores SIG_DFL and returns, so that a sent SIGSEGV is survived.
    // Start where a C program starts: what mapstate forwards to is then
    // the default action.
    for sig in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
        let dfl: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: installs the default action; no handler runs.
        let r = unsafe { libc::sigaction(sig, &raw const dfl, std::ptr::null_mut()) };
        assert_eq!(r, 0);
    }
    let path = Path::new(&dir).join("grow");
    let mut m = mapstate::Mapping::options()
        .create(true)
        .len(PAGE)
        .max_size(1 << 24)
        .extend_on_write(true)
        .open(&path)
        .expect("an extend-on-write mapping");
    let p = m.as_mut_ptr();
    // SAFETY: `p` starts 16 MiB of reservation, extend-on-write: any byte
    // below the maximum size is in it (a store there grows the file).
    let near = unsafe { p.add(2 * PAGE as usize) };
    // SAFETY: as above: within the reservation; the store grows the file.
    unsafe { near.write_volatile(1) };
    if mode == "plain" {
        say("ready");
        for _ in std::io::stdin().lines() {
            say("alive");
        }
        return;
    }
    // SAFETY: a zeroed sigaction is valid (empty mask, no flags); the
    // handler only calls `_exit`.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = own as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: installs that handler for SIGSEGV; the old action is not kept.
    let r = unsafe { libc::sigaction(libc::SIGSEGV, &raw const act, std::ptr::null_mut()) };
    assert_eq!(r, 0);
    if mode == "own-handler-reinstalled" {
        mapstate::signals::reinstall_fault_handler();
    }
    // Past the first growth chunk (1 MiB), within the reservation.
    // SAFETY: as above: within the reservation.
    let far = unsafe { p.add(8 << 20) };
    // SAFETY: within the reservation, extend-on-write: the store grows it.
    unsafe { far.write_volatile(7) };
    let len = fs::metadata(&path).expect("stat").len();
    // SAFETY: the store above mapped it.
    let v = unsafe { far.read_volatile() };
    say(&format!("grew {len} {v}"));
    rustix::process::kill_process(rustix::process::getpid(), Signal::SEGV).expect("kill");
    say("survived a sent SIGSEGV");
    drop(m);
}

/// Attack 1's second half, inside `unshare --mount`: a fresh tmpfs on
/// `/dev/shm` (a reboot), `/run` not tmpfs (a bind mount of
/// `HOSTILE_RUN_DIR`), and nobody makes root's live directory
/// `/dev/shm/mapstate-0` first, with a forged live image
/// (`HOSTILE_FORGED`) in it named `HOSTILE_NAME`. Then root's `get`, `set`
/// and `create` with the CLI `HOSTILE_CLI`: one JSON line each.
#[test]
#[ignore = "a role of the hostile tests: they run it in a mount namespace"]
fn helper_ns_live_dir() {
    let Some(cli) = std::env::var_os("HOSTILE_CLI") else {
        return;
    };
    let var = |k: &str| PathBuf::from(std::env::var_os(k).expect(k));
    let (state, forged, name, run_dir, me, fresh) = (
        var("HOSTILE_STATE"),
        var("HOSTILE_FORGED"),
        var("HOSTILE_NAME"),
        var("HOSTILE_RUN_DIR"),
        var("HOSTILE_ME"),
        var("HOSTILE_FRESH"),
    );
    let sh = |script: &str| {
        let st = Command::new("sh")
            .args(["-c", script])
            .status()
            .expect("sh");
        assert!(st.success(), "`{script}` failed");
    };
    sh("mount -t tmpfs -o mode=1777 hostile-shm /dev/shm");
    sh(&format!("mount --bind '{}' /run", run_dir.display()));
    let dir = Path::new("/dev/shm/mapstate-0");
    let plan = [
        format!("mkdir {} 777", dir.display()),
        format!("copy {} {}", forged.display(), dir.join(&name).display()),
    ]
    .join("\n");
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(&me)
        .args([
            "helper_plant",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("HOSTILE_PLAN", plan)
        .output()
        .expect("plant");
    for l in String::from_utf8_lossy(&out.stdout).lines() {
        if let Some(l) = after_mark(l) {
            say(&serde_json::json!({"step": "plant", "line": l}).to_string());
        }
    }
    let steps: [(&str, Vec<OsString>); 3] = [
        (
            "get",
            args!["get", &state, "--offset", "0", "--len", "12", "--hex"].to_vec(),
        ),
        (
            "set",
            args!["set", &state, "--offset", "8", "--str", "MORE"].to_vec(),
        ),
        ("create", args!["create", &fresh, "--size", "8KiB"].to_vec()),
    ];
    for (step, a) in steps {
        let o = Command::new(&cli).args(a).output().expect("the CLI");
        say(&serde_json::json!({
            "step": step,
            "code": o.status.code(),
            "signal": o.status.signal(),
            "stdout": String::from_utf8_lossy(&o.stdout),
            "stderr": String::from_utf8_lossy(&o.stderr),
        })
        .to_string());
    }
    let mut listing = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let md = fs::symlink_metadata(e.path()).expect("lstat");
        listing.push(serde_json::json!({"name": e.file_name().to_string_lossy(), "uid": md.uid()}));
    }
    say(&serde_json::json!({"step": "listing", "entries": listing}).to_string());
}

// ---------------------------------------------------------------------
// Attack 1: a forged live image.
// ---------------------------------------------------------------------

/// Attack 1: after a reboot, nobody (who may read the state) writes a
/// forged live image (the owner's bytes replaced by `EVIL`, 1000 commits
/// ahead) where root's readers look and everywhere else it can. Root's
/// `get` returns root's bytes, `set` checkpoints root's bytes, and nobody
/// cannot create files in root's live directory.
#[test]
fn attack01_forged_live_image_is_never_read_or_checkpointed() {
    let Some(env) = env() else { return };
    for on in [false, true] {
        let _p = Protected::set(on);
        let ctx = protected_name(on);
        let tag = u8::from(on);
        let dir = env.mkdir(&format!("a1-{tag}"), 0o755);
        let state = dir.join("s");
        env.create(&state, "8KiB");
        env.must_set(&state, 0, ROOT_BYTES);
        env.chmod_state(&state, 0o644);
        let live = env.live_of(&state);
        // While it exists, nobody keeps a copy of root's live image (the
        // state is readable: so is its live image).
        let own = env.mkdir(&format!("a1-nobody-{tag}"), 0o777);
        let copy = own.join("live.copy");
        let r = env.plant(&[format!("copy {} {}", live.display(), copy.display())]);
        assert!(
            r[0].1.is_ok(),
            "{ctx}: nobody could not read the live image: {r:?}"
        );
        env.reboot(&state);
        let name = live_id(dev_ino(&state));
        let mut targets = vec![
            live.clone(),
            Path::new("/dev/shm").join(&name),
            Path::new(&format!("/dev/shm/mapstate-{NOBODY}")).join(&name),
            Path::new("/run/mapstate").join(&name),
            with(&state, "-live"),
        ];
        targets.dedup();
        let intruder = live
            .parent()
            .expect("a directory")
            .join("planted-by-nobody");
        let mut plan = vec![format!("mkdir /dev/shm/mapstate-{NOBODY} 711")];
        plan.extend(
            targets
                .iter()
                .map(|t| format!("forge-live {} {}", copy.display(), t.display())),
        );
        plan.push(format!("file {}", intruder.display()));
        let planted = env.plant(&plan);
        env.later(targets.iter().cloned().chain([intruder.clone()]));
        eprintln!("{ctx}: nobody's forgeries: {planted:?}");

        let got = env.read(User::Root, &state, 0, 4);
        assert_eq!(
            text(&got),
            text(ROOT_BYTES),
            "{ctx}: after a reboot root's `get` returned nobody's forged bytes, not root's"
        );
        env.must_set(&state, 8, b"MORE");
        assert_eq!(
            text(&durable_bytes(&state, 0, 12)),
            text(b"ROOT\0\0\0\0MORE"),
            "{ctx}: root's `set` checkpointed bytes that are not root's"
        );
        assert_eq!(
            text(&env.read(User::Root, &state, 0, 12)),
            text(b"ROOT\0\0\0\0MORE"),
            "{ctx}: root's `get` after its `set`"
        );
        let now = env.live_of(&state);
        assert_roots_file(&now, 0o644, ctx);
        // Root's live directory: only root may create files in it.
        let d = live.parent().expect("a directory");
        let md = fs::symlink_metadata(d).expect("the live directory");
        let at_live = planted
            .iter()
            .find(|(l, _)| l.ends_with(&live.display().to_string()));
        let other_file = planted.iter().find(|(l, _)| l.starts_with("file "));
        assert!(
            md.uid() == 0
                && md.mode() & 0o022 == 0
                && at_live.is_some_and(|(_, r)| r.is_err())
                && other_file.is_some_and(|(_, r)| r.is_err()),
            "{ctx}: nobody could create files in root's live directory {} (uid {}, mode {:o}): \
             forging at the live path: {at_live:?}; another file: {other_file:?}",
            d.display(),
            md.uid(),
            md.mode() & 0o7777
        );
    }
}

/// Attack 1, the live directory: if nobody makes root's live directory
/// (`/dev/shm/mapstate-0`) before root's first use (after a reboot, in a
/// mount namespace of its own with a fresh `/dev/shm` and a `/run` that is
/// not tmpfs), and puts a forged live image in it, root's `get`, `set` and
/// `create` fail with an error naming the directory and its owner, and
/// never use it.
#[test]
fn attack01_live_dir_made_by_another_user_is_refused() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a1b", 0o755);
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.must_set(&state, 0, ROOT_BYTES);
    env.chmod_state(&state, 0o644);
    let live = env.live_of(&state);
    let own = env.mkdir("a1b-nobody", 0o777);
    let forged = own.join("forged");
    let r = env.plant(&[format!(
        "forge-live {} {}",
        live.display(),
        forged.display()
    )]);
    assert!(r[0].1.is_ok(), "nobody could not forge: {r:?}");
    let run_dir = env.mkdir("a1b-run", 0o755);
    let fresh = dir.join("fresh");
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--"])
        .arg(&env.me);
    c.args([
        "helper_ns_live_dir",
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    c.env("HOSTILE_CLI", &env.cli)
        .env("HOSTILE_STATE", &state)
        .env("HOSTILE_FORGED", &forged)
        .env("HOSTILE_NAME", live_id(dev_ino(&state)))
        .env("HOSTILE_RUN_DIR", &run_dir)
        .env("HOSTILE_ME", &env.me)
        .env("HOSTILE_FRESH", &fresh)
        .current_dir(env.scratch.path());
    let out = run(c, PATIENCE);
    assert!(out.ok(), "the namespace helper failed: {}", out.show());
    let steps: Vec<Value> = out
        .stdout
        .lines()
        .filter_map(after_mark)
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    let step = |name: &str| -> &Value {
        steps
            .iter()
            .find(|s| s["step"] == name)
            .unwrap_or_else(|| panic!("no {name} step in {steps:#?}"))
    };
    let plants: Vec<&Value> = steps.iter().filter(|s| s["step"] == "plant").collect();
    assert!(
        plants
            .iter()
            .all(|p| p["line"].as_str().is_some_and(|l| l.starts_with("ok"))),
        "nobody could not make the directory first: {plants:?}"
    );
    for name in ["get", "set", "create"] {
        let s = step(name);
        let stderr = s["stderr"].as_str().unwrap_or_default();
        assert!(
            s["code"].as_i64().is_some_and(|c| c != 0 && c != 101)
                && stderr.contains("/dev/shm/mapstate-0")
                && stderr.contains(&format!("uid {NOBODY}")),
            "root's `{name}` with a live directory nobody made must fail with an error naming \
             /dev/shm/mapstate-0 and its owner (uid {NOBODY}); it gave {s:#}"
        );
        assert!(
            !s["stdout"]
                .as_str()
                .unwrap_or_default()
                .contains(&hex(EVIL)),
            "root read nobody's forged bytes: {s:#}"
        );
    }
    let listing = step("listing");
    assert!(
        listing["entries"]
            .as_array()
            .is_some_and(|a| a.iter().all(|e| e["uid"] == NOBODY)),
        "root made files in the directory nobody made: {listing}"
    );
    assert!(!fresh.exists(), "`create` left {} behind", fresh.display());
    assert_eq!(
        text(&durable_bytes(&state, 0, 12)),
        text(b"ROOT\0\0\0\0\0\0\0\0"),
        "the durable file changed"
    );
}

// ---------------------------------------------------------------------
// Attack 2: predictable temporaries.
// ---------------------------------------------------------------------

/// Attack 2: nobody plants symlinks (to a root-only file) or regular files
/// at every temporary name it can guess, in `/dev/shm` (the old
/// `mapstate-DEV-INO.live.tmpPID` for the next 800 pids, and
/// `.NAME.mapstate-HEX` guesses) and in the state's directory (mode 1777);
/// root then creates, opens, sets and gets. The root-only file is
/// untouched, every file of the state is root's, and nothing is left in
/// `/dev/shm` or the directory.
#[test]
fn attack02_planted_temporaries_are_never_used() {
    let Some(env) = env() else { return };
    for on in [false, true] {
        let _p = Protected::set(on);
        for kind in ["symlink", "file"] {
            let ctx = &format!("{} {kind}s", protected_name(on));
            let tag = format!("a2-{}-{kind}", u8::from(on));
            let secret = env.secret(&tag);
            let dir = env.mkdir(&tag, 0o1777);
            let state = dir.join("s");
            let plant_at = |p: &Path| match kind {
                "symlink" => format!("symlink {} {}", secret.path.display(), p.display()),
                _ => format!("file {}", p.display()),
            };
            let guesses = ["0000000000000000", "ffffffffffffffff", "0123456789abcdef"];
            let mut plan: Vec<String> = Vec::new();
            for f in ["s", "s-wal", "s-ckpt", "s-live"] {
                for g in guesses {
                    plan.push(plant_at(&dir.join(format!(".{f}.mapstate-{g}"))));
                }
            }
            env.plant(&plan);
            env.create(&state, "8KiB");
            let live = env.live_of(&state);
            let name = live_id(dev_ino(&state));
            let next: u32 = fs::read_to_string("/proc/sys/kernel/ns_last_pid")
                .expect("ns_last_pid")
                .trim()
                .parse()
                .expect("a pid");
            let mut plan = vec![match kind {
                "symlink" => format!(
                    "pids symlink /dev/shm/{name}.tmp {} {} {}",
                    next + 1,
                    next + 800,
                    secret.path.display()
                ),
                _ => format!("pids file /dev/shm/{name}.tmp {} {}", next + 1, next + 800),
            }];
            for d in [
                Path::new("/dev/shm"),
                live.parent().expect("a directory"),
                &dir,
            ] {
                for g in guesses {
                    plan.push(plant_at(&d.join(format!(".{name}.mapstate-{g}"))));
                }
            }
            let planted = env.plant(&plan);
            eprintln!("{ctx}: planted {planted:?}");
            let shm_dirs = [
                PathBuf::from("/dev/shm"),
                live.parent().expect("dir").into(),
            ];
            let leftovers = || {
                let mut v = entries_with(&shm_dirs, std::slice::from_ref(&name));
                v.extend(entries_with(
                    std::slice::from_ref(&dir),
                    &[name.clone(), ".s".into(), "s.".into(), ".tmp".into()],
                ));
                v.retain(|p| *p != live);
                v
            };
            let before = leftovers();
            env.later(before.iter().cloned());

            env.reboot(&state);
            let mut outs = vec![env.get(User::Root, &state, 0, 4)];
            outs.push(env.info(User::Root, &state));
            outs.push(env.set(User::Root, &state, 0, ROOT_BYTES));
            outs.push(env.get(User::Root, &state, 0, 4));
            outs.push(env.ms(User::Root, &args!["recover", &state]));
            env.reboot(&state);
            outs.push(env.ms(User::Root, &args!["verify", &state]));
            outs.push(env.get(User::Root, &state, 0, 4));
            secret.assert_untouched(ctx);
            for o in &outs {
                assert!(o.ok(), "{ctx}: root's command failed: {}", o.show());
            }
            assert_eq!(
                text(&outs[6].bytes()),
                text(ROOT_BYTES),
                "{ctx}: root's bytes"
            );
            assert_eq!(env.live_of(&state), live, "{ctx}: the live image moved");
            for p in [
                state.clone(),
                with(&state, "-wal"),
                with(&state, "-ckpt"),
                live.clone(),
            ] {
                assert_roots_file(&p, 0o600, ctx);
            }
            // Nothing left behind: the planted names go, then whatever
            // remains is the state's own four files.
            for p in &before {
                let _ = fs::remove_file(p);
            }
            let left = leftovers();
            assert!(left.is_empty(), "{ctx}: temporaries left behind: {left:?}");
        }
    }
}

// ---------------------------------------------------------------------
// Attack 3: a reader that rebuilds never becomes the owner.
// ---------------------------------------------------------------------

/// Attack 3: after a reboot nobody runs `get` first. It works (root's
/// bytes, a private live image: `info --json` as nobody says `private`), no
/// file of nobody's appears at the live path, and root's next `set` builds
/// on root's own image.
#[test]
fn attack03_a_reader_that_rebuilds_never_becomes_the_owner() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a3", 0o755);
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.must_set(&state, 0, ROOT_BYTES);
    env.chmod_state(&state, 0o644);
    let live = env.live_of(&state);
    env.reboot(&state);
    let got = env.read(User::Nobody, &state, 0, 4);
    assert_eq!(text(&got), text(ROOT_BYTES), "nobody's get after a reboot");
    if let Ok(md) = fs::symlink_metadata(&live) {
        assert_eq!(
            md.uid(),
            0,
            "nobody's `get` put a live image of its own at {}, where root's writer and readers \
             will use it",
            live.display()
        );
    }
    let info = env.info(User::Nobody, &state);
    assert!(info.ok(), "nobody's info: {}", info.show());
    assert_eq!(
        live_origin(&info.json()).0.as_deref(),
        Some("private"),
        "nobody's reader must say its live image is private: {}",
        info.show()
    );
    let mine = entries_with(&live_dirs(), &[live_id(dev_ino(&state))]);
    for p in &mine {
        assert_eq!(
            fs::symlink_metadata(p).expect("lstat").uid(),
            0,
            "nobody made {}",
            p.display()
        );
    }
    env.must_set(&state, 8, b"MORE");
    assert_eq!(
        text(&env.read(User::Root, &state, 0, 12)),
        text(b"ROOT\0\0\0\0MORE")
    );
    assert_roots_file(
        &env.live_of(&state),
        0o644,
        "root's live image after its set",
    );
    assert_eq!(
        text(&env.read(User::Nobody, &state, 0, 12)),
        text(b"ROOT\0\0\0\0MORE"),
        "nobody reads root's new commit"
    );
}

// ---------------------------------------------------------------------
// Attack 4: the journal and the log in a directory others can write.
// ---------------------------------------------------------------------

/// Attack 4: the state lives in a directory others can write (1777, then
/// 0777). Nobody plants at `NAME-ckpt` (the checkpoint journal) or
/// `NAME-wal` (the log) a symlink to a root-only file, or a file of its own
/// (a journal forged with every checksum right whose page is `EVIL`; a copy
/// of the real log; garbage where nothing can be copied yet). In a 1777
/// directory it plants where no file is yet (the log before `create`, the
/// journal before the first checkpoint); in a 0777 one it renames its file
/// over root's. Root's `set`, `get`, `verify` and `recover` never follow
/// the link, never apply the planted bytes, and either work (the planted
/// file set aside) or refuse with an error naming the file and its owner.
#[test]
fn attack04_planted_journal_and_log_are_never_followed_or_trusted() {
    let Some(env) = env() else { return };
    let mut unnamed_owner = Vec::new();
    for on in [false, true] {
        let _p = Protected::set(on);
        for dir_mode in [0o1777, 0o777] {
            for file in ["-ckpt", "-wal"] {
                for kind in ["symlink", "forged"] {
                    unnamed_owner.extend(attack04_one(&env, on, dir_mode, file, kind));
                }
            }
        }
    }
    assert!(
        unnamed_owner.is_empty(),
        "refusals of a planted file must name its owner ({} of them do not):\n{}",
        unnamed_owner.len(),
        unnamed_owner.join("\n")
    );
}

/// One scenario of attack 4; the refusals that do not name the owner.
fn attack04_one(env: &Env, on: bool, dir_mode: u32, file: &str, kind: &str) -> Vec<String> {
    let ctx = &format!(
        "{}, directory {dir_mode:o}, NAME{file} {kind}",
        protected_name(on)
    );
    let tag = format!("a4-{}-{dir_mode:o}{file}-{kind}", u8::from(on));
    let secret = env.secret(&tag);
    let dir = env.mkdir(&tag, dir_mode);
    let state = dir.join("s");
    let planted = with(&state, file);
    let step = |when: &str| -> Option<String> {
        let sticky = dir_mode & 0o1000 != 0;
        let now = match (sticky, file) {
            (true, "-wal") => "before create",
            (true, _) => "after create",
            (false, _) => "after set",
        };
        if now != when {
            return None;
        }
        Some(match (kind, file, when) {
            ("symlink", ..) => format!("symlink {} {}", secret.path.display(), planted.display()),
            (_, "-ckpt", _) => format!("forge-journal {} {}", state.display(), planted.display()),
            (_, _, "before create") => format!("file {}", planted.display()),
            _ => format!(
                "copy {} {}",
                with(&state, "-wal").display(),
                planted.display()
            ),
        })
    };
    let mut outs = Vec::new();
    let plant = |when: &str| {
        if let Some(line) = step(when) {
            let r = env.plant(std::slice::from_ref(&line));
            assert!(r[0].1.is_ok(), "{ctx}: nobody could not plant: {r:?}");
        }
    };
    plant("before create");
    let out = env.ms(User::Root, &args!["create", &state, "--size", "8KiB"]);
    assert!(out.ok(), "{ctx}: create: {}", out.show());
    env.track(&state);
    let live = env.chmod_state(&state, 0o644);
    plant("after create");
    let first = env.set(User::Root, &state, 0, ROOT_BYTES);
    let expected: &[u8] = if first.ok() { ROOT_BYTES } else { b"\0\0\0\0" };
    outs.push(first);
    plant("after set");
    outs.push(env.set(User::Root, &state, PAGE, b"MORE"));
    outs.push(env.get(User::Root, &state, 0, 4));
    outs.push(env.ms(User::Root, &args!["verify", &state]));
    let _ = fs::remove_file(&live); // a reboot: the next reader rebuilds from disk
    outs.push(env.get(User::Root, &state, 0, 4));
    outs.push(env.ms(User::Root, &args!["verify", &state]));
    outs.push(env.ms(User::Root, &args!["recover", &state]));
    outs.push(env.get(User::Root, &state, 0, 4));
    eprintln!(
        "{ctx}: {}",
        outs.iter()
            .map(|o| if o.ok() {
                "ok".to_owned()
            } else {
                o.stderr.lines().next().unwrap_or_default().to_owned()
            })
            .collect::<Vec<_>>()
            .join(" | ")
    );
    secret.assert_untouched(ctx);
    let mut unnamed_owner = Vec::new();
    for o in &outs {
        if let Err(e) = assert_ok_or_refused_naming(o, &planted, ctx) {
            // One per scenario is enough to say it.
            if unnamed_owner.is_empty() {
                unnamed_owner.push(e);
            }
        }
        assert!(
            !(o.what.contains(" get ") && o.ok() && o.bytes() != expected),
            "{ctx}: root read bytes that are not its own: {}",
            o.show()
        );
    }
    let on_disk = durable_bytes(&state, 0, 4);
    assert!(
        on_disk == expected,
        "{ctx}: the durable file now starts with {:?}, not root's {:?}: the planted file's \
         bytes reached it ({})",
        text(&on_disk),
        text(expected),
        outs.iter().map(Out::show).collect::<Vec<_>>().join("\n")
    );
    // What root's commands used is root's: if they all worked, the file at
    // the planted name is root's own (the planted one was set aside).
    if outs.iter().all(Out::ok) {
        assert_roots_file(&planted, 0o644, ctx);
    }
    assert_roots_file(&state, 0o644, ctx);
    unnamed_owner
}

// ---------------------------------------------------------------------
// Attack 5: locks that readers can take.
// ---------------------------------------------------------------------

/// Whether the CLI under test has `--wait-for-lock` (new builds; old ones
/// only `--wait`).
fn has_wait_for_lock(env: &Env) -> bool {
    env.ms(User::Root, &args!["set", "--help"])
        .stdout
        .contains("--wait-for-lock")
}

/// Attack 5 from the command line: nobody, who may only read the state,
/// holds `flock -x` on it, then an OFD read lock, then a POSIX read lock.
/// Root's `get`, `set`, `set --wait` and `set --wait-for-lock` each return
/// within 5 s, with success or a typed error (the shared lock: "blocked by
/// a shared lock"); so does `get` after a reboot (the build lock).
#[test]
fn attack05_locks_of_readers_never_stall_the_owner() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a5", 0o755);
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.must_set(&state, 0, ROOT_BYTES);
    env.chmod_state(&state, 0o644);
    let live = env.live_of(&state);
    let waits = if has_wait_for_lock(&env) {
        vec!["--wait", "--wait-for-lock"]
    } else {
        vec!["--wait"]
    };
    for holder in ["flock -x", "ofd read lock", "posix read lock"] {
        // A live image in place (the last round's reboot took it).
        env.read(User::Root, &state, 0, 4);
        let mut kid = Kid::spawn(match holder {
            "flock -x" => {
                let mut c = env.command(User::Nobody, Path::new("flock"));
                c.args(["-x"])
                    .arg(&state)
                    .args(["sh", "-c", "echo HOSTILE:locked; exec sleep 30"]);
                c
            }
            h => env.helper(
                User::Nobody,
                "helper_lock",
                &[
                    ("HOSTILE_PATH", state.clone().into()),
                    (
                        "HOSTILE_LOCK",
                        (if h.starts_with("ofd") { "ofd" } else { "posix" }).into(),
                    ),
                ],
            ),
        });
        kid.expect("locked");
        let limit = 2 * BOUND;
        let get = args!["get", &state, "--offset", "0", "--len", "4", "--hex"];
        let mut outs = vec![
            env.ms_within(User::Root, &get, limit),
            env.ms_within(
                User::Root,
                &args!["set", &state, "--offset", "4", "--str", "more"],
                limit,
            ),
        ];
        for w in &waits {
            outs.push(env.ms_within(
                User::Root,
                &args!["set", &state, "--offset", "4", "--str", "wait", *w],
                limit,
            ));
        }
        // A reboot: the reader must build the live image (the build lock).
        let _ = fs::remove_file(&live);
        outs.push(env.ms_within(User::Root, &get, limit));
        drop(kid);
        for o in &outs {
            assert!(
                !o.hung && o.took < BOUND && !o.crashed(),
                "with nobody's {holder} on the state, root's command must end within {BOUND:?}: \
                 {}",
                o.show()
            );
            assert!(
                o.ok() || o.stderr.contains("shared lock"),
                "with nobody's {holder}: root's command must work or say a shared lock blocks \
                 it: {}",
                o.show()
            );
            eprintln!("{holder}: {}", o.show());
        }
        if holder == "flock -x" {
            assert!(
                outs.iter().all(Out::ok),
                "mapstate takes no flock: nobody's flock must change nothing"
            );
        }
    }
}

/// Attack 5 in process: `Writer::open` (and with `wait_for_lock`) returns
/// within 5 s under each of nobody's locks: `Ok` under `flock -x`,
/// `Error::ForeignLock` under a read lock.
#[test]
fn attack05_writer_open_is_bounded_under_foreign_locks() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a5p", 0o755);
    let state = dir.join("s");
    let w = Writer::options()
        .create(true)
        .len(8192)
        .mode(0o644)
        .open(&state)
        .expect("create");
    w.close().expect("close");
    env.track(&state);
    for holder in ["flock -x", "ofd", "posix"] {
        let mut kid = Kid::spawn(if holder == "flock -x" {
            let mut c = env.command(User::Nobody, Path::new("flock"));
            c.args(["-x"])
                .arg(&state)
                .args(["sh", "-c", "echo HOSTILE:locked; exec sleep 30"]);
            c
        } else {
            env.helper(
                User::Nobody,
                "helper_lock",
                &[
                    ("HOSTILE_PATH", state.clone().into()),
                    ("HOSTILE_LOCK", holder.into()),
                ],
            )
        });
        kid.expect("locked");
        for wait in [false, true] {
            let (tx, rx) = mpsc::channel();
            let p = state.clone();
            let start = Instant::now();
            std::thread::spawn(move || {
                let r = Writer::options().wait_for_lock(wait).open(&p);
                let _ = tx.send(r.map(Writer::close));
            });
            let r = rx.recv_timeout(BOUND);
            let took = start.elapsed();
            match (holder, r) {
                ("flock -x", Ok(Ok(Ok(())))) => {}
                (_, Ok(Err(Error::ForeignLock { .. }))) if holder != "flock -x" => {}
                (_, r) => panic!(
                    "Writer::open (wait_for_lock {wait}) under nobody's {holder}: {r:?} after \
                     {took:?}; it must return within {BOUND:?}, Ok under a flock, ForeignLock \
                     under a read lock"
                ),
            }
        }
        drop(kid);
    }
}

// ---------------------------------------------------------------------
// Attack 6: a restored backup.
// ---------------------------------------------------------------------

/// A state with a backup of its first checkpoint (`AAAA` at 0) in
/// `s.bak`, then more commits (`BBBB` at 0, `CCCC` at 4096), closed.
fn state_with_backup(env: &Env, tag: &str) -> (PathBuf, PathBuf) {
    let dir = env.mkdir(tag, 0o755);
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.must_set(&state, 0, b"AAAA");
    let bak = dir.join("s.bak");
    fs::copy(&state, &bak).expect("backup");
    env.must_set(&state, 0, b"BBBB");
    env.must_set(&state, PAGE, b"CCCC");
    (state, bak)
}

fn cp(from: &Path, to: &Path) {
    let mut c = Command::new("cp");
    c.arg(from).arg(to);
    let out = run(c, PATIENCE);
    assert!(out.ok(), "{}", out.show());
}

/// Attack 6 (a): `cp state.bak state` in place (same inode). The backup's
/// bytes are what everyone reads, `info` says the live image was rebuilt
/// because of another epoch, `verify` says so and is ok, and the next
/// `set` builds on the backup.
#[test]
fn attack06_restored_backup_in_place_wins() {
    let Some(env) = env() else { return };
    let (state, bak) = state_with_backup(&env, "a6a");
    let id = dev_ino(&state);
    cp(&bak, &state);
    assert_eq!(dev_ino(&state), id, "cp in place keeps the inode");
    let checked = env.ms(User::Root, &args!["--json", "verify", &state]);
    let get = env.get(User::Root, &state, 0, 4);
    assert!(get.ok(), "{}", get.show());
    assert_eq!(
        text(&get.bytes()),
        "AAAA",
        "after a restore, `get` must return the backup's bytes, not the newer ones the backup \
         replaced"
    );
    assert!(checked.ok(), "verify after a restore: {}", checked.show());
    let v = checked.json();
    assert!(
        v["ok"] == true
            && v["live_image"] == "rebuilt"
            && v["notes"].to_string().contains("another epoch"),
        "verify must be ok and say the live image was rebuilt for another epoch: {v:#}"
    );
    env.must_set(&state, 4, b"DDDD");
    assert_eq!(
        text(&env.read(User::Root, &state, 0, 8)),
        "AAAADDDD",
        "the next set builds on the backup"
    );
    assert_eq!(
        text(&env.read(User::Root, &state, PAGE, 4)),
        "\0\0\0\0",
        "a commit the backup does not hold came back"
    );
    // Again, and this time `info` is the first to look.
    cp(&bak, &state);
    let info = env.info(User::Root, &state);
    assert!(info.ok(), "{}", info.show());
    assert_eq!(
        live_origin(&info.json()),
        (Some("rebuilt".into()), Some("other_epoch".into())),
        "info after a restore: {}",
        info.show()
    );
    assert_eq!(text(&env.read(User::Root, &state, 0, 8)), "AAAA\0\0\0\0");
}

/// Attack 6 (b): `rm state*; cp state.bak state` (the inode may come back
/// or not: both are valid). The backup's bytes are what everyone reads,
/// `info` says the live image was rebuilt, `verify` is ok, and the next
/// `set` builds on the backup.
#[test]
fn attack06_restored_backup_as_a_new_file_wins() {
    let Some(env) = env() else { return };
    let (state, bak) = state_with_backup(&env, "a6b");
    let old = dev_ino(&state);
    for p in [state.clone(), with(&state, "-wal"), with(&state, "-ckpt")] {
        let _ = fs::remove_file(p);
    }
    cp(&bak, &state);
    let same = dev_ino(&state) == old;
    eprintln!("the restored file got the same inode back: {same}");
    env.track(&state);
    // `info` opens it first (it is the one to see why the live image is
    // rebuilt); its answer is checked last.
    let info = env.info(User::Root, &state);
    let get = env.get(User::Root, &state, 0, 4);
    assert!(get.ok(), "{}", get.show());
    assert_eq!(
        text(&get.bytes()),
        "AAAA",
        "after `rm state*; cp state.bak state` (same inode: {same}), `get` must return the \
         backup's bytes"
    );
    let verify = env.ms(User::Root, &args!["verify", &state]);
    assert!(verify.ok(), "{}", verify.show());
    env.must_set(&state, 4, b"DDDD");
    assert_eq!(text(&env.read(User::Root, &state, 0, 8)), "AAAADDDD");
    assert_eq!(text(&env.read(User::Root, &state, PAGE, 4)), "\0\0\0\0");
    assert!(
        info.ok(),
        "`info` of a state restored without its log: {}",
        info.show()
    );
    let (origin, why) = live_origin(&info.json());
    assert_eq!(origin.as_deref(), Some("rebuilt"), "{}", info.show());
    let want = if same { "other_epoch" } else { "missing" };
    assert_eq!(why.as_deref(), Some(want), "{}", info.show());
}

// ---------------------------------------------------------------------
// Attack 7: a reader in another mount namespace.
// ---------------------------------------------------------------------

/// A writer held open by the CLI (`demo-child … kill-mid-txn`: a writer
/// with an open transaction, waiting on stdin), optionally under `wrap`.
fn held_writer(env: &Env, state: &Path, wrap: &[&str]) -> Kid {
    let mut c = if wrap.is_empty() {
        env.command(User::Root, &env.cli)
    } else {
        let mut c = env.command(User::Root, Path::new(wrap[0]));
        c.args(&wrap[1..]).arg(&env.cli);
        c
    };
    c.args(args!["demo-child", state, "kill-mid-txn"]);
    let mut k = Kid::spawn(c);
    k.expect("half");
    k
}

/// Attack 7: root holds a writer open; a reader with its own `/dev/shm`
/// and `/run` (`unshare --mount`, fresh tmpfs on both) fails with the
/// "writer is not visible" error instead of reading; `info` there never
/// says the writer "has not recorded its pid yet".
#[test]
fn attack07_reader_in_another_mount_namespace_fails_typed() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a7", 0o755);
    let state = dir.join("s");
    env.create(&state, "34MiB");
    env.must_set(&state, 0, ROOT_BYTES);
    let kid = held_writer(&env, &state, &[]);
    let here = env.get(User::Root, &state, 0, 4);
    assert!(here.ok(), "a reader beside the writer: {}", here.show());
    let elsewhere = |a: &[OsString]| {
        let mut c = Command::new("unshare");
        c.args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            "mount -t tmpfs -o mode=1777 none /dev/shm && mount -t tmpfs none /run && exec \"$0\" \"$@\"",
        ])
        .arg(&env.cli)
        .args(a)
        .current_dir(env.scratch.path());
        run(c, PATIENCE)
    };
    let get = elsewhere(&args![
        "get", &state, "--offset", "0", "--len", "4", "--hex"
    ]);
    let info = elsewhere(&args!["info", &state]);
    drop(kid);
    assert!(
        !get.ok() && !get.crashed() && get.stderr.contains("not visible"),
        "a reader in another mount namespace must fail with the writer-not-visible error, not \
         read: {}",
        get.show()
    );
    assert!(
        !info.stdout.contains("has not recorded its pid yet")
            && !info.stderr.contains("has not recorded its pid yet")
            && !info.crashed(),
        "info in another mount namespace: {}",
        info.show()
    );
}

// ---------------------------------------------------------------------
// Attack 8: the fault handler.
// ---------------------------------------------------------------------

/// Attack 8: a process with an extend-on-write region that is sent SIGSEGV
/// (then, in another run, SIGBUS) with `kill` dies of it.
#[test]
fn attack08_sent_sigsegv_and_sigbus_kill() {
    let Some(env) = env() else { return };
    for sig in [Signal::SEGV, Signal::BUS] {
        let dir = env.mkdir(&format!("a8-{}", sig.as_raw()), 0o755);
        let mut kid = Kid::spawn(env.helper(
            User::Root,
            "helper_fault",
            &[
                ("HOSTILE_DIR", dir.into()),
                ("HOSTILE_FAULT", "plain".into()),
            ],
        ));
        kid.expect("ready");
        kid.signal(sig);
        kid.say("are you alive?");
        let (st, killed) = kid.finish(PATIENCE);
        assert!(
            !killed && st.signal() == Some(sig.as_raw()),
            "a process with an extend-on-write region sent {sig:?} by another process must die \
             of it; it ended with {st:?} (killed by the test: {killed})"
        );
    }
}

/// Attack 8, handlers of the program's own: one installed after the region
/// exists takes the growth faults (documented); after
/// `signals::reinstall_fault_handler()` a store past the end grows the file
/// again, and a SIGSEGV sent with `kill` still reaches the program's
/// handler. (The C API's `mapstate_reinstall_fault_handler` is covered by
/// crates/mapstate-capi/tests/c/identity.c; crates/mapstate/tests/signals.rs
/// covers the termination signals only.)
#[test]
fn attack08_reinstall_fault_handler_after_own_handler() {
    let Some(env) = env() else { return };
    for mode in ["own-handler", "own-handler-reinstalled"] {
        let dir = env.mkdir(&format!("a8b-{mode}"), 0o755);
        let mut kid = Kid::spawn(env.helper(
            User::Root,
            "helper_fault",
            &[("HOSTILE_DIR", dir.into()), ("HOSTILE_FAULT", mode.into())],
        ));
        if mode == "own-handler" {
            let (st, _) = kid.finish(PATIENCE);
            assert_eq!(
                st.code(),
                Some(42),
                "a handler installed after the region takes its growth faults (as documented)"
            );
            continue;
        }
        let line = kid.expect("grew");
        let len: u64 = line
            .split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .expect("a length");
        assert!(
            len > 8 << 20 && line.ends_with(" 7"),
            "after reinstall_fault_handler a store past the end must grow the file: {line}"
        );
        let (st, _) = kid.finish(PATIENCE);
        assert_eq!(
            st.code(),
            Some(42),
            "a sent SIGSEGV goes to the program's own handler: {st:?}"
        );
    }
}

// ---------------------------------------------------------------------
// Attack 9: modes.
// ---------------------------------------------------------------------

/// Attack 9 in process: `WriterOptions::mode(0o7777)` gives files without
/// set-user-id, set-group-id or sticky bits; a 0644 state's log, journal
/// and live image get 0644.
#[test]
fn attack09_mode_is_masked_to_0777() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a9", 0o755);
    for (mode, name) in [(0o7777, "s7777"), (0o644, "s644")] {
        let state = dir.join(name);
        let mut w = Writer::options()
            .create(true)
            .len(8192)
            .mode(mode)
            .open(&state)
            .expect("create");
        env.track(&state);
        let mut t = w.begin();
        t.write_at(0, ROOT_BYTES).expect("write");
        t.commit().expect("commit");
        let live = w.files().live().to_path_buf();
        w.checkpoint().expect("checkpoint");
        let durable_mode = fs::metadata(&state).expect("stat").mode() & 0o7777;
        for p in [
            state.clone(),
            with(&state, "-wal"),
            with(&state, "-ckpt"),
            live,
        ] {
            let m = fs::metadata(&p)
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
                .mode()
                & 0o7777;
            assert_eq!(
                m & 0o7000,
                0,
                "mode {mode:o}: {} has set-id or sticky bits ({m:o})",
                p.display()
            );
            // The log and the journal get the durable file's bits; the live
            // image no more than them.
            let ok = if p.extension().is_some_and(|e| e == "live") {
                m & !durable_mode == 0
            } else {
                m == durable_mode
            };
            assert!(
                ok,
                "mode {mode:o}: {} has mode {m:o}; the durable file has {durable_mode:o}",
                p.display()
            );
        }
        w.close().expect("close");
    }
}

/// Attack 9 from the command line: in a state made 0644 whose log and
/// journal are gone, root's next `set` makes them 0644 (the state's mode),
/// not 0600, and after a reboot nobody's `get` works.
#[test]
fn attack09_log_and_journal_get_the_states_mode() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a9c", 0o755);
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.chmod_state(&state, 0o644);
    let live = env.live_of(&state);
    // A reboot, and the log and journal gone (as in a state restored from
    // a backup of its durable file alone).
    for p in [with(&state, "-wal"), with(&state, "-ckpt"), live] {
        let _ = fs::remove_file(p);
    }
    env.must_set(&state, 0, ROOT_BYTES);
    for p in [
        with(&state, "-wal"),
        with(&state, "-ckpt"),
        env.live_of(&state),
    ] {
        if let Ok(md) = fs::metadata(&p) {
            assert_eq!(
                md.mode() & 0o7777,
                0o644,
                "{} was made with mode {:o}, not the state's 0644",
                p.display(),
                md.mode() & 0o7777
            );
        }
    }
    env.reboot(&state);
    let out = env.get(User::Nobody, &state, 0, 4);
    assert!(
        out.ok(),
        "nobody's get of a 0644 state after a reboot: {}",
        out.show()
    );
    assert_eq!(text(&out.bytes()), text(ROOT_BYTES));
}

/// Attack 9, with commits not yet checkpointed: a 0644 state whose writer
/// committed and was killed (SIGKILL: no checkpoint); after a reboot
/// nobody's `get` reads the log and returns the last commit.
#[test]
fn attack09_others_read_uncheckpointed_commits_after_reboot() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a9k", 0o755);
    let state = dir.join("s");
    Writer::options()
        .create(true)
        .len(8192)
        .mode(0o644)
        .open(&state)
        .expect("create")
        .close()
        .expect("close");
    env.track(&state);
    let mut kid = Kid::spawn(env.helper(
        User::Root,
        "helper_writer_dies",
        &[("HOSTILE_PATH", state.clone().into())],
    ));
    kid.expect("committed");
    kid.signal(Signal::KILL);
    let (st, _) = kid.finish(PATIENCE);
    assert_eq!(st.signal(), Some(Signal::KILL.as_raw()));
    let info = env.built(User::Root, &args!["--json", "info", &state]);
    assert!(info.ok(), "{}", info.show());
    let v = info.json();
    assert!(
        v["seq"].as_u64() > v["checkpoint_seq"].as_u64(),
        "the commit must still be only in the log: {v}"
    );
    let live = live_path(&v);
    env.later([live.clone()]);
    fs::remove_file(&live).expect("reboot");
    let log = fs::metadata(with(&state, "-wal")).expect("the log").mode() & 0o7777;
    assert_eq!(log, 0o644, "the log of a 0644 state has mode {log:o}");
    let out = env.built(
        User::Nobody,
        &args!["get", &state, "--offset", "0", "--len", "8", "--hex"],
    );
    assert!(
        out.ok(),
        "nobody's get after a reboot, with commits only in the log: {}",
        out.show()
    );
    assert_eq!(text(&out.bytes()), "UNCKPT!!");
}

// ---------------------------------------------------------------------
// Attack 10: filesystems.
// ---------------------------------------------------------------------

/// Attack 10: a state on a filesystem mounted read-only: a writer (`set`,
/// `Writer::open`) gets the read-only-filesystem error, not "permission
/// denied", and `get` works (before and after a reboot).
#[test]
fn attack10_read_only_filesystem_has_its_own_error() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a10-ro", 0o755);
    let m = Mounted::new(
        &["-t", "tmpfs", "-o", "size=128m,mode=0755", "hostile-ro"],
        &dir,
    );
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.must_set(&state, 0, ROOT_BYTES);
    env.live_of(&state);
    m.remount("remount,ro");
    let set = env.set(User::Root, &state, 0, b"XXXX");
    let in_process = Writer::open(&state);
    let get = env.get(User::Root, &state, 0, 4);
    env.reboot(&state);
    let get_after = env.get(User::Root, &state, 0, 4);
    drop(m);
    assert!(
        !set.ok()
            && !set.crashed()
            && set.stderr.contains("read-only filesystem")
            && !set.stderr.contains("permission denied"),
        "set on a read-only mount must say the filesystem is read-only: {}",
        set.show()
    );
    assert!(
        matches!(in_process, Err(Error::ReadOnlyFilesystem { .. })),
        "Writer::open on a read-only mount: {in_process:?}"
    );
    for g in [get, get_after] {
        assert!(g.ok(), "get on a read-only mount: {}", g.show());
        assert_eq!(text(&g.bytes()), text(ROOT_BYTES));
    }
}

/// Attack 10: filesystems whose locks, shared mappings or per-host memory
/// break the guarantees are refused at open. ramfs is mounted for real
/// (`create` there, and `get` of a state copied there); NFS, CIFS/SMB, 9p
/// and FUSE cannot be mounted here without a network or a FUSE server, so
/// their classification is checked through `Filesystem::from_magic` (the
/// magic numbers `statfs` reports).
#[test]
fn attack10_unsuitable_filesystems_are_refused() {
    let Some(env) = env() else { return };
    for (magic, what) in [
        (0x6969, "nfs"),
        (0xFF53_4D42, "cifs"),
        (0xFE53_4D42, "smb2"),
        (0x0102_1997, "9p"),
        (0x6573_5546, "fuse"),
        (0x8584_58f6, "ramfs"),
    ] {
        let fs = Filesystem::from_magic(magic);
        assert_eq!(
            fs.class,
            FsClass::Unsuitable,
            "{what} ({magic:#x}) must be refused: {fs:?}"
        );
    }
    for (magic, what) in [(0xEF53, "ext4"), (0x0102_1994, "tmpfs")] {
        let fs = Filesystem::from_magic(magic);
        assert_ne!(fs.class, FsClass::Unsuitable, "{what} is fine: {fs:?}");
    }
    let src_dir = env.mkdir("a10-src", 0o755);
    let src = src_dir.join("s");
    env.create(&src, "8KiB");
    env.must_set(&src, 0, ROOT_BYTES);
    let dir = env.mkdir("a10-ramfs", 0o755);
    let _m = Mounted::new(&["-t", "ramfs", "-o", "mode=0755", "hostile-ramfs"], &dir);
    let fresh = dir.join("fresh");
    let create = env.ms(User::Root, &args!["create", &fresh, "--size", "8KiB"]);
    let copied = dir.join("copied");
    cp(&src, &copied);
    cp(&with(&src, "-wal"), &with(&copied, "-wal"));
    env.track(&copied);
    let get = env.get(User::Root, &copied, 0, 4);
    let set = env.set(User::Root, &copied, 0, b"XXXX");
    for o in [&create, &get, &set] {
        assert!(
            !o.ok() && !o.crashed() && o.stderr.contains("ramfs"),
            "a state on ramfs must be refused with an error naming the filesystem: {}",
            o.show()
        );
    }
    assert!(
        matches!(
            Writer::open(&copied),
            Err(Error::UnsuitableFilesystem { .. })
        ),
        "Writer::open on ramfs"
    );
    // The explicit override gets past the check (ramfs may still lack
    // what the writer needs, such as fallocate).
    let allowed = Writer::options()
        .allow_unsuitable_filesystem(true)
        .open(&copied);
    assert!(
        !matches!(allowed, Err(Error::UnsuitableFilesystem { .. })),
        "allow_unsuitable_filesystem(true) must get past the check"
    );
    drop(allowed);
}

// ---------------------------------------------------------------------
// Attack 11: a writer in another pid namespace.
// ---------------------------------------------------------------------

/// Attack 11 from the command line: with a writer held open inside
/// `unshare --pid --fork --mount-proc`, root's `set` on the host fails
/// with the locked error saying the holder is in another pid namespace
/// (not "pid 1").
#[test]
fn attack11_writer_in_another_pid_namespace_cli() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a11", 0o755);
    let state = dir.join("s");
    env.create(&state, "34MiB");
    let kid = held_writer(
        &env,
        &state,
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
    );
    let set = env.set(User::Root, &state, 0, b"XXXX");
    drop(kid);
    assert!(
        set.code() == Some(4)
            && set.stderr.contains("another pid namespace")
            && !set.stderr.contains("pid 1)"),
        "root's set against a writer in another pid namespace must fail as locked (exit 4) \
         saying the holder is in another pid namespace: {}",
        set.show()
    );
}

/// Attack 11 in process: `Writer::open` gives `Error::Locked` with no pid
/// and `other_pid_namespace`, and its message says so.
#[test]
fn attack11_writer_in_another_pid_namespace_library() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a11p", 0o755);
    let state = dir.join("s");
    env.create(&state, "34MiB");
    let kid = held_writer(
        &env,
        &state,
        &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"],
    );
    let r = Writer::open(&state);
    drop(kid);
    match r {
        Err(
            ref e @ Error::Locked {
                pid: None,
                other_pid_namespace: true,
                ..
            },
        ) => assert!(
            e.to_string().contains("another pid namespace"),
            "the message: {e}"
        ),
        r => panic!(
            "Writer::open against a writer in another pid namespace: {:?}",
            r.map(|_| "a writer")
        ),
    }
}

// ---------------------------------------------------------------------
// Attack 12: arithmetic on untrusted values.
// ---------------------------------------------------------------------

/// Fields of the live image header (`format::live`) and their widths.
const LIVE_FIELDS: [(&str, u64, usize); 13] = [
    ("READY", 48, 8),
    ("REBUILT", 56, 8),
    ("SEQLOCK", 64, 8),
    ("LEN", 72, 8),
    ("WRITER_PID", 80, 4),
    ("WRITER_DURABILITY", 88, 8),
    ("WRITER_PIDNS", 96, 8),
    ("NOTIFY", 128, 4),
    ("LOG_GEN", 192, 8),
    ("LOG_SEQ", 200, 8),
    ("LOG_HEAD", 208, 8),
    ("LOG_CHAIN", 216, 8),
    ("LOG_EPOCH", 224, 8),
];

/// Hostile values: the issue's log position, the largest values, the sign
/// bit, and just past what sequence numbers may be.
const HOSTILE_VALUES: [u64; 4] = [0xFFFF_FFFF_FFFF_FFF8, u64::MAX, 1 << 63, (1 << 62) + 1];

/// The change ring entry of commit `seq` (`format::live::RING`, 56 entries
/// of 64 bytes: sequence number, range count, then offset/length pairs).
fn ring_entry(seq: u64) -> u64 {
    256 + (seq % 56) * 64
}

fn poke(live: &Path, at: u64, width: usize, v: u64) {
    let f = OpenOptions::new()
        .write(true)
        .open(live)
        .unwrap_or_else(|e| panic!("open {}: {e}", live.display()));
    f.write_all_at(&v.to_le_bytes()[..width], at)
        .expect("pwrite");
}

/// Attack 12 from the command line (run it with a debug build, whose
/// overflow checks turn wrapping into panics): root writes hostile values
/// into each field of its live image header; `get`, `info`, `verify`,
/// `set` and `get` again never panic, never hang, and return an error or
/// root's bytes.
#[test]
fn attack12_hostile_live_header_values_cli() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a12", 0o755);
    let state = dir.join("s");
    env.create(&state, "8KiB");
    env.must_set(&state, 0, ROOT_BYTES);
    let mut fields: Vec<(String, u64, usize)> = LIVE_FIELDS
        .iter()
        .map(|&(n, o, w)| (n.to_owned(), o, w))
        .collect();
    for (n, o) in [
        ("RING.seq", 0),
        ("RING.count", 8),
        ("RING.off", 16),
        ("RING.len", 24),
    ] {
        fields.push((n.to_owned(), o, 8));
    }
    let mut failures = Vec::new();
    let mut case = 0u32;
    for (field, at, width) in &fields {
        for v in HOSTILE_VALUES {
            case += 1;
            // A fresh live image from the files on disk, then the damage.
            env.reboot(&state);
            let first = env.get(User::Root, &state, 0, 4);
            if !first.ok() {
                failures.push(format!("before {field} = {v:#x}: {}", first.show()));
                continue;
            }
            let info = env.info(User::Root, &state);
            let live = live_path(&info.json());
            let seq = info.json()["seq"].as_u64().unwrap_or(0);
            let at = if field.starts_with("RING") {
                ring_entry(seq) + at
            } else {
                *at
            };
            poke(&live, at, *width, v);
            let tag = format!("C{case:03}");
            let outs = [
                env.get(User::Root, &state, 0, 4),
                env.info(User::Root, &state),
                env.ms(User::Root, &args!["verify", &state]),
                env.set(User::Root, &state, 8, tag.as_bytes()),
                env.get(User::Root, &state, 0, 12),
            ];
            for (i, o) in outs.iter().enumerate() {
                let wrong = o.ok()
                    && o.what.contains(" get ")
                    && (!o.bytes().starts_with(ROOT_BYTES)
                        || (i == 4 && outs[3].ok() && !o.bytes().ends_with(tag.as_bytes())));
                if o.hung || o.crashed() || wrong {
                    failures.push(format!("{field} = {v:#x}: {}", o.show()));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "hostile live header values made the CLI panic, hang or misread ({} of {case} cases):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// A reader (open, read, the change ring) and a writer (open, commit,
/// close) of a state whose live image is damaged and whose last commit
/// (`UNCKPT!!` at 0, number `seq`) is only in the log: what each said.
fn read_and_write_damaged(p: &Path, seq: u64) -> Vec<String> {
    let mut notes = Vec::new();
    match Reader::open(p) {
        Ok(r) => {
            let mut b = [0u8; 8];
            notes.push(format!("read {:?}", r.read_at(0, &mut b).map(|_| b)));
            let _ = r.changes_since(seq.saturating_sub(1));
            let _ = r.wait_changes(seq.saturating_sub(1), Some(Duration::ZERO));
            if r.read_at(0, &mut b).is_ok() && &b != b"UNCKPT!!" {
                notes.push(format!("WRONG BYTES {:?}", text(&b)));
            }
        }
        Err(e) => notes.push(format!("reader: {e}")),
    }
    match Writer::open(p) {
        Ok(mut w) => {
            let mut t = w.begin();
            let _ = t.write_at(8, b"again");
            notes.push(format!("commit {:?}", t.commit()));
            notes.push(format!("close {:?}", w.close()));
        }
        Err(e) => notes.push(format!("writer: {e}")),
    }
    notes
}

/// Attack 12 in process, with a commit only in the log (its writer killed):
/// hostile values in the live header's log position, sequence lock, length
/// and change ring; `Reader::open`, `read_at`, `changes_since`,
/// `wait_changes`, `Writer::open` and a commit return errors or root's
/// bytes, never panic (overflow checks are on in a debug build) or hang.
#[test]
fn attack12_hostile_live_header_values_in_process() {
    let Some(env) = env() else { return };
    let dir = env.mkdir("a12p", 0o755);
    let state = dir.join("s");
    Writer::options()
        .create(true)
        .len(8192)
        .open(&state)
        .expect("create")
        .close()
        .expect("close");
    env.track(&state);
    let live = mapstate::StateFiles::of(&state, None)
        .expect("files")
        .live()
        .to_path_buf();
    let fields: Vec<(&str, u64, usize)> = LIVE_FIELDS
        .iter()
        .copied()
        .filter(|(n, ..)| {
            [
                "SEQLOCK",
                "LEN",
                "LOG_GEN",
                "LOG_SEQ",
                "LOG_HEAD",
                "LOG_CHAIN",
                "NOTIFY",
            ]
            .contains(n)
        })
        .chain([
            ("RING.count", 8, 8),
            ("RING.off", 16, 8),
            ("RING.len", 24, 8),
        ])
        .collect();
    let mut failures = Vec::new();
    for (field, at, width) in fields {
        for v in HOSTILE_VALUES {
            // From the files on disk, then a commit in the log only: the
            // writer is killed after it.
            let _ = fs::remove_file(&live);
            let mut kid = Kid::spawn(env.helper(
                User::Root,
                "helper_writer_dies",
                &[("HOSTILE_PATH", state.clone().into())],
            ));
            let said = kid.expect("committed");
            kid.signal(Signal::KILL);
            kid.finish(PATIENCE);
            let seq: u64 = said
                .rsplit(' ')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("a sequence number");
            let at = if field.starts_with("RING") {
                ring_entry(seq) + at
            } else {
                at
            };
            poke(&live, at, width, v);
            let p = state.clone();
            let (tx, rx) = mpsc::channel();
            let t = std::thread::spawn(move || {
                let _ = tx.send(read_and_write_damaged(&p, seq));
            });
            match rx.recv_timeout(PATIENCE) {
                Ok(notes) => {
                    eprintln!("{field} = {v:#x}: {notes:?}");
                    if notes.iter().any(|n| n.starts_with("WRONG")) {
                        failures.push(format!("{field} = {v:#x}: {notes:?}"));
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    failures.push(format!("{field} = {v:#x}: HUNG"));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => match t.join() {
                    Err(p) => failures.push(format!(
                        "{field} = {v:#x}: PANIC {}",
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                            .unwrap_or_default()
                    )),
                    Ok(()) => failures.push(format!("{field} = {v:#x}: ended without an answer")),
                },
            }
        }
    }
    assert!(
        failures.is_empty(),
        "hostile live header values made the library panic, hang or misread:\n{}",
        failures.join("\n")
    );
}
