//! C programs compiled with gcc (`-Wall -Wextra -Werror`) against
//! `include/mapstate.h` and the libraries of this very build
//! (`libmapstate.a`, `libmapstate.so`, beside this test binary in
//! `target/<profile>/deps`), then run:
//!
//! - `writer_kill.c` commits N times and SIGKILLs itself in the middle of an
//!   uncommitted transaction; `validator.c` then checks every byte of the
//!   state: exactly the last commit, nothing of the uncommitted half. Also
//!   after the live image is lost (an OS restart) and after a recovery.
//! - the validator is shown to fail on a torn state (a flipped byte in the
//!   live image, a byte outside the records, and a commit of exactly the
//!   half-written transaction);
//! - `bad_input.c`: misuse and bad files return the documented codes and
//!   messages;
//! - the C example in `README.md` compiles and keeps its counter;
//! - `aix_attach.c`: the AIX `shmat(SHM_MAP)`-style pair;
//! - `attach_unaligned.c`: stores past the end of a file that is not a
//!   whole number of pages, inside its last page, survive `mapstate_detach`;
//! - `old_names.c`: the old names of renamed functions still link (static
//!   and shared) and work, and gcc warns at each call, naming the new one.
//!
//! Without gcc each test prints SKIPPED and passes (Debian package `gcc`).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use mapstate_rs::{Writer, WriterOptions};

const CFLAGS: &[&str] = &["-std=gnu11", "-O1", "-g", "-Wall", "-Wextra", "-Werror"];
/// What the static library needs besides itself (`rustc --print native-static-libs`).
const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];
/// A program still running after this long is killed and the test fails
/// (a watchdog, not a wait: every run ends on its own long before).
const DEADLINE: Duration = Duration::from_secs(300);
const PAGE: u64 = 4096;

fn crate_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>/deps`, holding `libmapstate.a` and `libmapstate.so`
/// of this build (the test binary is there too). Cargo builds neither for
/// an integration test (the crate has no rlib to link), so the first call
/// runs `cargo build --lib` of this crate with the test's own profile and
/// target directory: a no-op when they are fresh, and never a stale
/// library from an earlier build. The SONAME symlink is made beside them.
fn lib_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary's path");
        let deps = exe.parent().expect("the deps directory");
        let profile_dir = deps.parent().expect("target/<profile>");
        let target_dir = profile_dir.parent().expect("the target directory");
        let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
            Some("debug") => "dev",
            Some(name) => name,
            None => panic!("no profile in {}", exe.display()),
        };
        let out = Command::new(env!("CARGO"))
            .args([
                "build",
                "--lib",
                "-p",
                env!("CARGO_PKG_NAME"),
                "--profile",
                profile,
            ])
            .arg("--target-dir")
            .arg(target_dir)
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build of the C libraries failed:\n{}",
            text(&out.stderr)
        );
        // Programs linked with libmapstate.so need its SONAME at run time,
        // libmapstate.so.MAJOR, as an install makes it: a symlink here,
        // put in place by a rename (other test binaries may do the same).
        let soname = format!("libmapstate.so.{}", env!("CARGO_PKG_VERSION_MAJOR"));
        let tmp = deps.join(format!(".{soname}.{}", std::process::id()));
        let _ = fs::remove_file(&tmp);
        std::os::unix::fs::symlink("libmapstate.so", &tmp).expect("symlink the SONAME");
        fs::rename(&tmp, deps.join(&soname)).expect("rename the SONAME symlink into place");
        deps.to_path_buf()
    })
}

/// Whether gcc runs; if not, says SKIPPED.
fn have_gcc() -> bool {
    let ok = Command::new("gcc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        eprintln!(
            "SKIPPED: gcc not found; install it (Debian package `gcc`) to compile the C tests"
        );
    }
    ok
}

#[derive(Clone, Copy)]
enum Link {
    Static,
    Shared,
}

/// Compiles `tests/c/NAME.c` into `out_dir/NAME`.
fn compile(name: &str, link: Link, out_dir: &Path) -> PathBuf {
    compile_file(
        &crate_dir().join("tests/c").join(format!("{name}.c")),
        link,
        out_dir,
    )
}

/// Compiles the C file `src` into `out_dir/STEM`.
fn compile_file(src: &Path, link: Link, out_dir: &Path) -> PathBuf {
    let name = src.file_stem().expect("a file name").to_string_lossy();
    let exe = out_dir.join(&*name);
    let libs = lib_dir();
    let mut gcc = Command::new("gcc");
    gcc.args(CFLAGS)
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(src)
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Static => {
            let lib = libs.join("libmapstate.a");
            assert!(lib.exists(), "{} is missing", lib.display());
            gcc.arg(lib).args(STATIC_LIBS);
        }
        Link::Shared => {
            let lib = libs.join("libmapstate.so");
            assert!(lib.exists(), "{} is missing", lib.display());
            gcc.arg(format!("-L{}", libs.display()))
                .arg("-lmapstate")
                .arg(format!("-Wl,-rpath,{}", libs.display()));
        }
    }
    let out = gcc.output().expect("run gcc");
    assert!(
        out.status.success(),
        "gcc {name}.c failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Runs `cmd` to its end (killed after [`DEADLINE`]) and returns its output.
fn run(cmd: &mut Command) -> Output {
    // cargo test puts target/<profile> on LD_LIBRARY_PATH, which would
    // win over the rpath and could load a stale uplifted libmapstate.so.
    let child = cmd
        .env_remove("LD_LIBRARY_PATH")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().to_string();
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        // The pid stays the child's until it is reaped below, after this
        // thread has been told to stop or has fired.
        if finished.recv_timeout(DEADLINE) == Err(mpsc::RecvTimeoutError::Timeout) {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
    });
    let out = child.wait_with_output().expect("wait for the program");
    let _ = done.send(());
    watchdog.join().expect("watchdog");
    out
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The compiled writer and validator, and a scratch directory for them.
struct Programs {
    _dir: tempfile::TempDir,
    writer: PathBuf,
    validator: PathBuf,
}

impl Programs {
    /// `None` (and SKIPPED printed) without gcc. The writer is linked with
    /// the static library, the validator with the shared one.
    fn build() -> Option<Self> {
        if !have_gcc() {
            return None;
        }
        let dir = tempfile::tempdir().expect("tempdir");
        Some(Self {
            writer: compile("writer_kill", Link::Static, dir.path()),
            validator: compile("validator", Link::Shared, dir.path()),
            _dir: dir,
        })
    }

    /// Runs the writer for `n` commits; it must die by SIGKILL, reporting
    /// the sequence number it reached.
    fn kill_writer(&self, state: &State, n: u64) -> u64 {
        let out = run(Command::new(&self.writer)
            .arg(&state.path)
            .arg(&state.live)
            .arg(n.to_string()));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "writer_kill should die by SIGKILL: {:?}\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        stdout
            .trim()
            .strip_prefix("committed ")
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("writer_kill printed {stdout:?}"))
    }

    /// Runs the validator (`expected`: a sequence number or `-`).
    fn validate(&self, state: &State, expected: &str) -> Output {
        run(Command::new(&self.validator)
            .arg(&state.path)
            .arg(&state.live)
            .arg(expected))
    }

    fn assert_valid(&self, state: &State, seq: u64, when: &str) {
        let out = self.validate(state, &seq.to_string());
        assert!(
            out.status.success(),
            "{when}: the validator found a bad state ({:?}):\n{}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        println!("{when}: {}", text(&out.stdout).trim());
    }

    /// Runs the validator on a state that must fail, with `needle` in its report.
    fn assert_invalid(&self, state: &State, needle: &str, when: &str) {
        let out = self.validate(state, "-");
        let stdout = text(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{when}: the validator should fail:\n{stdout}{}",
            text(&out.stderr)
        );
        assert!(
            stdout.contains(needle),
            "{when}: the report lacks {needle:?}: {stdout}"
        );
        println!("{when}: {}", stdout.trim());
    }

    /// The slot offsets, record size and state length (from the validator,
    /// so that they cannot drift from `record.h`).
    fn layout(&self) -> (Vec<u64>, u64, u64) {
        let out = run(Command::new(&self.validator).arg("--layout"));
        assert!(out.status.success());
        let stdout = text(&out.stdout);
        let mut lines = stdout.lines();
        let offsets = lines
            .next()
            .expect("offsets")
            .split(' ')
            .map(|s| s.parse().expect("an offset"))
            .collect();
        let sizes: Vec<u64> = lines
            .next()
            .expect("sizes")
            .split(' ')
            .map(|s| s.parse().expect("a size"))
            .collect();
        (offsets, sizes[0], sizes[1])
    }
}

/// A state in a scratch directory, with its live image in `live`.
struct State {
    _dir: tempfile::TempDir,
    path: PathBuf,
    live: PathBuf,
}

impl State {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let live = dir.path().join("live");
        fs::create_dir(&live).expect("mkdir live");
        Self {
            path: dir.path().join("state.db"),
            live,
            _dir: dir,
        }
    }

    fn options(&self) -> WriterOptions {
        Writer::options().live_dir(&self.live)
    }

    /// The live image file (the committed state every process maps).
    fn live_image(&self) -> PathBuf {
        let mut images: Vec<PathBuf> = fs::read_dir(&self.live)
            .expect("read the live dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "live"))
            .collect();
        assert_eq!(images.len(), 1, "one live image: {images:?}");
        images.pop().expect("one")
    }
}

/// The record of commit `seq` in `slot`, as `record.h` builds it.
fn record(seq: u64, slot: u64, slots: u64) -> Vec<u8> {
    const PRIME: u64 = 0x100_0000_01b3; // FNV-1a 64
    let mut r = Vec::with_capacity(80);
    r.extend_from_slice(&seq.to_le_bytes());
    r.extend_from_slice(&(seq * slots + slot).to_le_bytes());
    let mut t = format!("commit {seq}, slot {slot}").into_bytes();
    t.resize(48, 0);
    r.extend_from_slice(&t);
    let mut h = 0xcbf2_9ce4_8422_2325_u64 ^ (slot + 1).wrapping_mul(PRIME);
    for &b in &r {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    r.extend_from_slice(&h.to_le_bytes());
    r
}

/// Compiles `tests/c/NAME.c` (linked with the shared library), runs it
/// with a scratch directory as its argument, and checks that every one of
/// its checks held (its last line is `0 failed`). Returns its output.
fn run_checks(name: &str) -> String {
    run_checks_of(&crate_dir().join("tests/c").join(format!("{name}.c")))
}

/// [`run_checks`] of the C file `src`.
fn run_checks_of(src: &Path) -> String {
    let name = src.display();
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).expect("mkdir bin");
    let exe = compile_file(src, Link::Shared, &bin);
    let out = run(Command::new(&exe).arg(dir.path()));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.ends_with("\n0 failed\n"),
        "{name}: {:?}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    stdout
}

/// The cookbook's port of AIX `shmat(SHM_MAP)` code
/// (`examples/shmat_port.c`, shown in the Rust docs' cookbook) builds and
/// runs.
#[test]
fn the_shmat_port_example_runs() {
    if !have_gcc() {
        return;
    }
    let out = run_checks_of(&crate_dir().join("examples/shmat_port.c"));
    assert!(out.contains("table: 3 rows, the last \"row 2\""), "{out}");
}

#[test]
fn a_killed_c_writer_leaves_exactly_its_last_commit() {
    let Some(p) = Programs::build() else { return };
    for n in [0, 1, 7, 100] {
        let state = State::new();
        let seq = p.kill_writer(&state, n);
        assert_eq!(seq, n);
        p.assert_valid(&state, n, &format!("killed after {n} commits"));

        // An OS restart loses the live image: a reader rebuilds it from the
        // file and its log.
        fs::remove_file(state.live_image()).expect("remove the live image");
        p.assert_valid(&state, n, &format!("{n} commits, live image rebuilt"));

        // A writer's open is the recovery; its close checkpoints.
        state
            .options()
            .open(&state.path)
            .expect("recover")
            .close()
            .expect("checkpoint and close");
        p.assert_valid(&state, n, &format!("{n} commits, recovered"));

        // And the C writer goes on from there (and is killed again).
        assert_eq!(p.kill_writer(&state, 3), n + 3);
        p.assert_valid(&state, n + 3, &format!("{n} + 3 commits"));
    }
}

#[test]
fn the_validator_fails_on_a_torn_state() {
    let Some(p) = Programs::build() else { return };
    let (offsets, rec_len, state_len) = p.layout();
    let slots = offsets.len() as u64;
    let state = State::new();
    assert_eq!(p.kill_writer(&state, 5), 5);
    p.assert_valid(&state, 5, "5 commits");

    // The Rust model of record.h agrees with what the C writer committed.
    let (seq, bytes) = state
        .options()
        .reader()
        .open(&state.path)
        .expect("reader")
        .snapshot()
        .expect("snapshot");
    assert_eq!((seq, bytes.len() as u64), (5, state_len));
    for (slot, &off) in offsets.iter().enumerate() {
        let at = off as usize..(off + rec_len) as usize;
        assert_eq!(bytes[at], record(5, slot as u64, slots), "slot {slot}");
    }

    // A byte flipped in the live image (as a torn copy would show it):
    // here in the text of a record that straddles a page boundary.
    let live = File::options()
        .read(true)
        .write(true)
        .open(state.live_image())
        .expect("open the live image");
    let flip = |at: u64| {
        let mut b = [0u8];
        live.read_exact_at(&mut b, PAGE + at).expect("read");
        b[0] ^= 0x20;
        live.write_all_at(&b, PAGE + at).expect("write");
    };
    let straddling = offsets
        .iter()
        .position(|&o| o / PAGE != (o + rec_len - 1) / PAGE)
        .expect("a slot straddles a page boundary");
    flip(offsets[straddling] + 20);
    p.assert_invalid(
        &state,
        &format!("slot {straddling} "),
        "a byte flipped in a record",
    );
    flip(offsets[straddling] + 20);
    p.assert_valid(&state, 5, "flipped back");

    // A byte outside every record.
    let outside = offsets[1] + rec_len + 1;
    flip(outside);
    p.assert_invalid(
        &state,
        "outside every slot",
        "a byte flipped outside the records",
    );
    flip(outside);
    p.assert_valid(&state, 5, "flipped back");

    // The writer's uncommitted transaction, published as if it had
    // committed: the first half of the slots from commit 6 and half of the
    // next record. This is what a torn commit would leave.
    let mut w = state.options().open(&state.path).expect("writer");
    let mut t = w.begin();
    for slot in 0..slots / 2 {
        t.write_at(offsets[slot as usize], &record(6, slot, slots))
            .expect("write a record");
    }
    let half = record(6, slots / 2, slots);
    t.write_at(offsets[(slots / 2) as usize], &half[..half.len() / 2])
        .expect("write half a record");
    assert_eq!(t.commit().expect("commit"), 6);
    w.close().expect("close");
    p.assert_invalid(
        &state,
        &format!("slot {} ", slots / 2),
        "the uncommitted half published",
    );
}

#[test]
fn bad_input_from_c_returns_codes_and_messages() {
    if !have_gcc() {
        return;
    }
    let bin = tempfile::tempdir().expect("tempdir");
    let exe = compile("bad_input", Link::Shared, bin.path());
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = run(Command::new(&exe).arg(scratch.path()));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("\n0 failed"),
        "bad_input: {:?}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
    // The lock message names the holder's pid (the C program checks the
    // pid itself; here, that the line is there).
    assert!(
        stdout.contains("ok   second writer: MAPSTATE_E_LOCKED:") && stdout.contains("(pid "),
        "{stdout}"
    );
}

#[test]
fn aix_attach_extends_the_file_on_write() {
    if !have_gcc() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile("aix_attach", Link::Shared, dir.path());
    let out = run(Command::new(&exe).arg(dir.path().join("fresh.dat")));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("\n0 failed"),
        "aix_attach: {:?}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
}

/// `identity.c`: `mapstate_writer_live_image`/`mapstate_reader_live_image`
/// name where a live image came from (a restored backup is "rebuilt",
/// `"other_epoch"`, and the reader reads the backup), and
/// `mapstate_reinstall_fault_handler` puts growth back in front of the
/// program's own SIGSEGV handler.
#[test]
fn c_sees_where_the_live_image_came_from_and_reinstalls_the_fault_handler() {
    if !have_gcc() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile("identity", Link::Shared, dir.path());
    let out = run(Command::new(&exe).arg(dir.path()));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("\n0 failed"),
        "identity: {:?}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
}

/// `attach_unaligned.c`: stores past the end of a 33-byte file, inside
/// its last page, are in the file after `mapstate_detach` (which cut them
/// off, returning 0, before the fix).
#[test]
fn attach_keeps_stores_in_the_last_page_of_an_unaligned_file() {
    if !have_gcc() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = compile("attach_unaligned", Link::Shared, dir.path());
    let out = run(Command::new(&exe).arg(dir.path()));
    let stdout = text(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("\n0 failed"),
        "attach_unaligned: {:?}\n{stdout}{}",
        out.status,
        text(&out.stderr)
    );
}

#[test]
fn the_readme_example_compiles_and_counts() {
    if !have_gcc() {
        return;
    }
    let readme = fs::read_to_string(crate_dir().join("README.md")).expect("README.md");
    let example = readme
        .split("## Example")
        .nth(1)
        .and_then(|s| s.split("```c\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("a ```c block after ## Example");
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(dir.path().join("readme_example.c"), example).expect("write the example");
    let exe = compile_file(
        &dir.path().join("readme_example.c"),
        Link::Shared,
        dir.path(),
    );
    for n in 1..=2 {
        let out = run(Command::new(&exe).current_dir(dir.path()));
        assert!(out.status.success(), "{out:?}");
        assert_eq!(text(&out.stdout), format!("commit {n}: {n} hits\n"));
    }
    // The example uses the default live directory (/dev/shm): remove its
    // live image along with the state.
    Writer::open(dir.path().join("counter.db"))
        .expect("open the example's state")
        .remove()
        .expect("remove");
}

/// The old names and the new functions they were renamed to (the aliases
/// in `src/deprecated.rs`).
const RENAMED: &[(&str, &str)] = &[
    ("mapstate_begin", "mapstate_writer_begin"),
    ("mapstate_checkpoint", "mapstate_writer_checkpoint"),
    ("mapstate_set_len", "mapstate_txn_set_len"),
    ("mapstate_write", "mapstate_txn_write_at"),
    ("mapstate_commit", "mapstate_txn_commit"),
    ("mapstate_abort", "mapstate_txn_abort"),
    ("mapstate_read", "mapstate_reader_read_at"),
    (
        "mapstate_wait_for_change",
        "mapstate_reader_wait_for_change",
    ),
];

#[test]
fn the_old_names_still_link_and_work() {
    if !have_gcc() {
        return;
    }
    for link in [Link::Static, Link::Shared] {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).expect("mkdir bin");
        let exe = compile("old_names", link, &bin);
        let out = run(Command::new(&exe).arg(dir.path()));
        let stdout = text(&out.stdout);
        println!("{stdout}");
        assert!(
            out.status.success() && stdout.contains("\n0 failed"),
            "old_names: {:?}\n{stdout}{}",
            out.status,
            text(&out.stderr)
        );
        for (old, _) in RENAMED {
            assert!(
                stdout.contains(&format!("ok   {old}")),
                "{old} not called: {stdout}"
            );
        }
    }
}

#[test]
fn the_header_marks_the_old_names_deprecated() {
    if !have_gcc() {
        return;
    }
    // old_names.c without its pragma: every old name warns, naming the new
    // function, and -Werror turns that into a failure.
    let out = Command::new("gcc")
        .env("LC_ALL", "C") // plain quotes in the messages
        .args(CFLAGS)
        .arg("-fsyntax-only")
        .arg("-DOLD_NAMES_WARN")
        .arg("-I")
        .arg(crate_dir().join("include"))
        .arg(crate_dir().join("tests/c/old_names.c"))
        .output()
        .expect("run gcc");
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "gcc accepted the old names silently");
    for (old, new) in RENAMED {
        let warning = format!("'{old}' is deprecated: renamed: use {new}() instead");
        assert!(
            stderr.contains(&warning),
            "no warning {warning:?} from gcc:\n{stderr}"
        );
    }
    // The new names and everything else compile without a warning (the
    // other C programs build with -Werror too).
    assert!(
        !stderr.contains("'mapstate_txn_commit' is deprecated"),
        "{stderr}"
    );
}

/// `extend_len.c`: after an extend-on-write commit, `mapstate_writer_len`
/// reports the length the commit gave the state (it reported the length
/// before the transaction).
#[test]
fn writer_len_follows_an_extend_on_write_commit() {
    if !have_gcc() {
        return;
    }
    run_checks("extend_len");
}

/// `attach_past_maximum.c`: a store past the maximum of an attachment is
/// reported in terms of the attachment (it spoke of a discarded
/// transaction and of recreating the state, which attach has neither of).
#[test]
fn attach_past_its_maximum_says_what_to_do() {
    if !have_gcc() {
        return;
    }
    run_checks("attach_past_maximum");
}

/// `options_size.c`: `mapstate_options` carries its size. A program built
/// with the first, smaller struct still opens (and the library reads
/// nothing past it); a larger struct's unknown bytes must be zero; a size
/// too small or too large is refused; the fields added at the end
/// (`mtime_interval_ms`, `release_live_image`) work.
#[test]
fn options_carry_their_size() {
    if !have_gcc() {
        return;
    }
    run_checks("options_size");
}

/// `version.c`: `MAPSTATE_VERSION_MAJOR`/`_MINOR`/`_PATCH`, the string
/// made from them, `mapstate_version()` and the Cargo version are one.
#[test]
fn the_version_macros_are_the_cargo_version() {
    if !have_gcc() {
        return;
    }
    let stdout = run_checks("version");
    assert!(
        stdout.starts_with(&format!("version {}\n", env!("CARGO_PKG_VERSION"))),
        "{stdout}"
    );
}

/// `reader_copies.c`: `mapstate_reader_snapshot`,
/// `mapstate_reader_changes_since` (ranges, whole commits per call, a
/// missed entry for commits that left the ring) and `mapstate_writer_remove`.
#[test]
fn readers_get_snapshots_and_change_ranges_and_writers_remove() {
    if !have_gcc() {
        return;
    }
    run_checks("reader_copies");
}

/// `attach_trim.c`: `mapstate_attach_high_water` and `mapstate_attach_trim`.
#[test]
fn attach_reports_its_high_water_and_trims_to_it() {
    if !have_gcc() {
        return;
    }
    run_checks("attach_trim");
}

/// `shared_commit.c`: group commit from C. 8 threads × N `MAPSTATE_SYNC`
/// commits of a counter through one shared handle end at 8N with distinct
/// sequence numbers and fewer fdatasyncs than commits; a callback's
/// non-zero return commits nothing; calls back into the handle from its
/// callback are `MAPSTATE_E_IN_CALLBACK`; a close during another thread's
/// transaction is `MAPSTATE_E_BUSY`; the views' functions; bad handles.
#[test]
fn shared_handles_commit_from_many_threads_and_share_syncs() {
    if !have_gcc() {
        return;
    }
    let out = run_checks("shared_commit");
    assert!(out.contains(" fdatasyncs\n"), "{out}");
}

/// `shared_kill.c`: 8 threads commit a counter through one shared handle
/// (`MAPSTATE_SYNC`), printing each sequence number once its commit
/// returned, until SIGKILL. Reopened (by a writer's recovery, also after
/// the live image is lost), the state holds one whole commit: the counter
/// is its sequence number, the threads' own counters add up to it, and it
/// is no older than the newest commit a thread was told was durable. Run
/// twice on one state, so the second run goes on from a recovered one.
#[test]
fn a_killed_shared_writer_keeps_every_returned_commit() {
    use std::io::{BufRead, BufReader};

    if !have_gcc() {
        return;
    }
    let state = State::new();
    let bin = tempfile::tempdir().expect("tempdir");
    let exe = compile("shared_kill", Link::Static, bin.path());
    let mut before = 0;
    for round in 0..2 {
        let mut child = Command::new(&exe)
            .arg(&state.path)
            .arg(&state.live)
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn shared_kill");
        let pid = child.id().to_string();
        let (done, finished) = mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(DEADLINE) == Err(mpsc::RecvTimeoutError::Timeout) {
                let _ = Command::new("kill").args(["-KILL", &pid]).status();
            }
        });
        let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut newest = 0;
        let mut seen = 0;
        // Kill it once 200 commits have returned (or it ended).
        while seen < 200 {
            let Some(line) = lines.next() else { break };
            let line = line.expect("a line");
            let mut words = line.split_whitespace().skip(1).map(str::parse::<u64>);
            let (Some(Ok(seq)), Some(Ok(counter))) = (words.next(), words.next()) else {
                panic!("round {round}: unexpected line {line:?}");
            };
            assert_eq!(seq, counter, "round {round}: a commit's counter is its seq");
            assert!(seq > before, "round {round}: seq {seq} after {before}");
            newest = newest.max(seq);
            seen += 1;
        }
        child.kill().expect("SIGKILL shared_kill");
        // What was printed before the kill landed was durable too.
        for line in lines {
            let line = line.expect("a line");
            let Some(Ok(seq)) = line.split_whitespace().nth(1).map(str::parse::<u64>) else {
                continue; // a line cut by the kill cannot be: one write(2) each
            };
            newest = newest.max(seq);
        }
        let status = child.wait().expect("wait for shared_kill");
        let _ = done.send(());
        watchdog.join().expect("watchdog");
        let mut stderr = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
            .expect("read stderr");
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: {status:?}: {stderr}"
        );
        assert!(
            seen == 200,
            "round {round}: only {seen} commits returned: {stderr}"
        );

        if round == 1 {
            fs::remove_file(state.live_image()).expect("remove the live image");
        }
        let mut w = state.options().open(&state.path).expect("recover");
        let seq = w.seq();
        let mut bytes = [0u8; 8 * 9];
        let t = w.begin();
        t.read_at(0, &mut bytes).expect("read the counters");
        t.abort();
        let word = |i: usize| u64::from_le_bytes(bytes[8 * i..8 * i + 8].try_into().expect("8"));
        let counter = word(0);
        let sum: u64 = (1..9).map(word).sum();
        println!("round {round}: {seen} commits seen, newest durable {newest}, reopened at {seq}");
        assert_eq!(
            counter, seq,
            "round {round}: the counter is the reopened seq"
        );
        assert_eq!(
            sum, counter,
            "round {round}: the threads' counters add up to it"
        );
        assert!(
            seq >= newest,
            "round {round}: reopened at {seq}, but commit {newest} was returned as durable"
        );
        w.close().expect("checkpoint and close");
        before = seq;
    }
}
