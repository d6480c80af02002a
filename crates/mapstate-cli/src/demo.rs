//! `demo`: the whole product in a temporary directory, with real processes
//! and real numbers, in a few seconds. Also the watcher helpers that
//! `check-fs` shares.

use std::fmt::Display;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime};

use mapstate::{Durability, Flush, MapOptions, Reader, Writer};
use serde_json::{Map, Value, json};

use crate::util::{self, CmdResult, EXIT_FAILURE, EXIT_OK, Failure, human, human_duration};

/// The state starts at this length ...
const INITIAL: u64 = 1 << 20;
/// ... and may grow to this.
const MAX: u64 = 1 << 30;
/// The large transactions fill `REGION..REGION + REGION_LEN`.
const REGION: u64 = 1 << 20;
const REGION_LEN: u64 = 32 << 20;
const CHUNK: u64 = 1 << 20;
/// Commits the watcher sees.
const WATCHED: u64 = 5;

/// The byte every position of the region holds after commit `c` filled it.
fn pattern(c: u64) -> u8 {
    (c % 250) as u8 + 1
}

/// A `mapstate watch --json` process.
pub(crate) struct Watcher {
    child: Child,
    lines: Receiver<String>,
}

impl Watcher {
    /// Starts `mapstate watch PATH --json --count N` and waits until it is
    /// registered (its status line on stderr).
    pub(crate) fn spawn(path: &Path, count: u64) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
        let mut child = Command::new(exe)
            .arg("watch")
            .arg(path)
            .args(["--json", "--timeout", "60s", "--count", &count.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the watcher: {e}"))?;
        let mut err = BufReader::new(child.stderr.take().expect("piped"));
        let mut first = String::new();
        let _ = err.read_line(&mut first);
        if !first.starts_with("watching") {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("the watcher failed: {}", first.trim()));
        }
        // Drain the rest of stderr so that the watcher never blocks on it.
        std::thread::spawn(move || for _ in err.lines() {});
        let out = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Self { child, lines })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next change the watcher printed: (seq, len, time it woke).
    pub(crate) fn next(&self, timeout: Duration) -> Result<(u64, u64, SystemTime), String> {
        let line = match self.lines.recv_timeout(timeout) {
            Ok(l) => l,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "the watcher printed nothing within {}",
                    human_duration(timeout)
                ));
            }
            Err(RecvTimeoutError::Disconnected) => return Err("the watcher exited".into()),
        };
        let v: Value =
            serde_json::from_str(&line).map_err(|e| format!("watcher line {line:?}: {e}"))?;
        let seq = v["seq"].as_u64();
        let len = v["len"].as_u64();
        let time = v["time"].as_str().and_then(util::parse_rfc3339);
        match (seq, len, time) {
            (Some(s), Some(l), Some(t)) => Ok((s, l, t)),
            _ => Err(format!("unexpected watcher line {line:?}")),
        }
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Commits once to the (closed) state at `path` while a watcher process
/// waits; returns how long after `commit()` was called the watcher woke.
pub(crate) fn notify_latency(path: &Path) -> Result<Duration, String> {
    let watcher = Watcher::spawn(path, 1)?;
    let mut w = Writer::open(path).map_err(|e| e.to_string())?;
    let mut t = w.begin();
    t.write_at(0, &[1, 2, 3, 4, 5, 6, 7, 8])
        .map_err(|e| e.to_string())?;
    let t0 = SystemTime::now();
    t.commit().map_err(|e| e.to_string())?;
    let (_, _, woke) = watcher.next(Duration::from_secs(5))?;
    drop(w);
    Ok(woke.duration_since(t0).unwrap_or_default())
}

/// What the demo prints (text) or collects (JSON).
struct Out {
    json: bool,
    report: Map<String, Value>,
}

impl Out {
    fn say(&self, s: impl Display) {
        if !self.json {
            println!("{s}");
        }
    }

    fn put(&mut self, key: &str, v: Value) {
        self.report.insert(key.into(), v);
    }
}

/// Removes the state (its live image in `/dev/shm` too) when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Ok(w) = Writer::open(&self.0) {
            let _ = w.remove();
        }
    }
}

fn err(e: impl Display) -> Failure {
    Failure::new(EXIT_FAILURE, format!("demo: {e}"))
}

/// Runs the demo.
pub(crate) fn run(parent: Option<&Path>, json: bool) -> CmdResult {
    let started = Instant::now();
    let parent = parent.map_or_else(std::env::temp_dir, Path::to_path_buf);
    let dir = tempfile::Builder::new()
        .prefix("mapstate-demo-")
        .tempdir_in(&parent)
        .map_err(|e| {
            err(format!(
                "cannot create a directory in {}: {e}",
                parent.display()
            ))
        })?;
    let path = dir.path().join("demo.state");
    let cleanup = RemoveOnDrop(path.clone());
    let mut o = Out {
        json,
        report: Map::new(),
    };
    let fs = util::mount_type(dir.path()).map_or_else(|| "?".into(), |(t, _)| t);
    o.say("mapstate demo: a memory-mapped file as a program's persistent state");
    o.say(format!(
        "in {} ({fs}); every step runs for real, in real processes\n",
        dir.path().display()
    ));
    o.put("dir", json!(dir.path()));
    o.put("filesystem", json!(fs));

    // 1. Create.
    let opts = Writer::options().create(true).len(INITIAL).max_size(MAX);
    let mut w = opts.open(&path)?;
    o.say(format!(
        "1. create\n   demo.state: {} of zeros, may grow to {}",
        human(INITIAL),
        human(MAX)
    ));
    o.say("   files: demo.state (durable image), demo.state-wal (redo log),");
    o.say(format!(
        "          {} (live image)",
        w.files().live().display()
    ));
    let counter = commit_and_watch(&mut o, &path, &mut w)?;
    let filled = growth(&mut o, dir.path(), w, counter + 1)?;
    let ok = kills(&mut o, &path, filled)?;
    durability(&mut o, dir.path(), &path, &fs)?;

    let total = started.elapsed();
    drop(cleanup);
    o.put("ok", json!(ok));
    o.put("seconds", json!(total.as_secs_f64()));
    o.say(format!(
        "\ndone in {:.1} s{}; the directory and the live image are removed.",
        total.as_secs_f64(),
        if ok {
            ""
        } else {
            ": a state was TORN (a bug: please report it)"
        }
    ));
    o.say("next: mapstate create my.state --len 1MiB");
    o.say("      mapstate watch my.state                  (in another terminal)");
    o.say("      mapstate set my.state --offset 0 --str hello");
    if json {
        println!("{}", Value::Object(o.report));
    }
    Ok(if ok { EXIT_OK } else { util::EXIT_VIOLATION })
}

/// Step 2: this process commits a counter; a watcher process sees each
/// commit. Returns the counter.
fn commit_and_watch(o: &mut Out, path: &Path, w: &mut Writer) -> Result<u64, Failure> {
    let watcher = Watcher::spawn(path, WATCHED).map_err(err)?;
    o.say(format!(
        "\n2. commit and watch\n   \
         a watcher process (pid {}: mapstate watch demo.state --json) sleeps\n   \
         on a futex in the live image; this process (pid {}) commits a counter:",
        watcher.pid(),
        std::process::id()
    ));
    let mut wakes = Vec::new();
    let mut counter = 0u64;
    for i in 0..WATCHED {
        if i > 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
        counter += 1;
        let mut t = w.begin();
        t.write_at(0, &counter.to_le_bytes())?;
        let t0 = SystemTime::now();
        let seq = t.commit()?;
        let (wseq, _, woke) = watcher.next(Duration::from_secs(5)).map_err(err)?;
        let lat = woke.duration_since(t0).unwrap_or_default();
        wakes.push(lat.as_micros() as u64);
        o.say(format!(
            "   commit {seq}: counter = {counter}    the watcher saw commit {wseq}, {} later",
            human_duration(lat)
        ));
    }
    o.say("   (inotify sees nothing of stores through a mapping: the commit woke it)");
    o.put("watcher_wake_us", json!(wakes));
    Ok(counter)
}

/// Step 3: one transaction grows the state and fills the region with
/// `counter`'s pattern; closing checkpoints it. Returns `counter`.
fn growth(o: &mut Out, dir: &Path, mut w: Writer, counter: u64) -> Result<u64, Failure> {
    let path = w.path().to_path_buf();
    let file_len = || std::fs::metadata(&path).map_or(0, |m| m.len());
    let file_before = file_len();
    let grown = REGION + REGION_LEN;
    let t0 = Instant::now();
    let mut t = w.begin();
    t.write_at(0, &counter.to_le_bytes())?;
    // Extend-on-write: plain stores past the end; no set_len, no growth code.
    t.extend_on_write()[REGION as usize..grown as usize].fill(pattern(counter));
    let seq = t.commit()?;
    let commit_time = t0.elapsed();
    if w.len() != grown {
        return Err(Failure::new(
            EXIT_FAILURE,
            format!(
                "extend-on-write: the state is {} after the commit, {} expected",
                human(w.len()),
                human(grown)
            ),
        ));
    }
    let t0 = Instant::now();
    w.close()?;
    let ckpt_time = t0.elapsed();
    let file_after = file_len();
    o.say(format!(
        "\n3. growth\n   \
         commit {seq}: plain stores past the end (Txn::extend_on_write, no set_len):\n   \
         the state grew to {} with a {} fill, in {}\n   \
         state {} -> {}; durable file {} -> {} at the checkpoint\n   \
         (closing the writer: {})",
        human(grown),
        human(REGION_LEN),
        human_duration(commit_time),
        human(INITIAL),
        human(grown),
        human(file_before),
        human(file_after),
        human_duration(ckpt_time)
    ));
    let stable = stable_address(dir)?;
    o.say(format!(
        "   a Mapping with extend_on_write grew to {} at the same address:\n   {stable}",
        human(grown)
    ));
    o.put(
        "growth",
        json!({"from": INITIAL, "to": grown, "commit_us": commit_time.as_micros() as u64,
               "durable_file_before": file_before, "durable_file_after": file_after}),
    );
    Ok(counter)
}

/// Step 4: SIGKILL in the middle of a large transaction, and inside
/// commit. `filled` is the commit whose pattern the region holds. Returns
/// whether both reopened states were intact.
fn kills(o: &mut Out, path: &Path, filled: u64) -> Result<bool, Failure> {
    o.say("\n4. SIGKILL");
    let (pid, status) = run_child(path, "kill-mid-txn", "half")?;
    let t0 = Instant::now();
    let reopened = Writer::open(path)?;
    let reopen = t0.elapsed();
    drop(reopened);
    let (c, bad) = check_region(path, filled)?;
    o.say(format!(
        "   a writer process (pid {pid}) began one transaction rewriting all {};\n   \
         it was {} after writing {} of it",
        human(REGION_LEN),
        describe(status),
        human(REGION_LEN / 2),
    ));
    let intact1 = bad == 0 && c == filled;
    o.say(format!(
        "   reopened in {}: counter = {c}; {}",
        human_duration(reopen),
        if intact1 {
            format!(
                "all {} still hold commit {filled}'s bytes:\n   \
                 the killed transaction left no trace",
                human(REGION_LEN)
            )
        } else {
            format!("{bad} bytes differ from commit {filled}: TORN")
        }
    ));

    let (pid, status) = run_child(path, "kill-in-commit", "committing")?;
    let t0 = Instant::now();
    let recovered = Writer::open(path)?;
    let recovery = t0.elapsed();
    drop(recovered);
    // The kill lands somewhere inside commit(): before its log record was
    // complete (recovery cuts the record off: the old state), or after
    // (recovery replays it: the new one). Never in between.
    let (c2, _) = check_region(path, filled)?;
    let (_, bad2) = check_region(path, c2)?;
    let finished = c2 == filled + 1;
    o.say(format!(
        "   another writer (pid {pid}) was {} inside commit()\n   \
         of a transaction rewriting all {} in {} ranges",
        describe(status),
        human(REGION_LEN),
        REGION_LEN / CHUNK + 1
    ));
    let intact2 = bad2 == 0 && (c2 == filled || finished);
    o.say(format!(
        "   recovered in {}: {}:\n   counter = {c2}; {}",
        human_duration(recovery),
        if finished {
            "the redo log held the whole commit; replaying it\n   finished it"
        } else {
            "its redo-log record was not complete, so\n   recovery cut it off"
        },
        if intact2 {
            format!("all {} hold commit {c2}'s bytes: whole", human(REGION_LEN))
        } else {
            format!("{bad2} bytes differ from commit {c2}: TORN")
        }
    ));
    o.put(
        "kills",
        json!({"mid_transaction": {"intact": intact1, "reopen_us": reopen.as_micros() as u64},
               "inside_commit": {"intact": intact2, "replayed": finished,
                                 "recovery_us": recovery.as_micros() as u64}}),
    );
    Ok(intact1 && intact2)
}

/// Step 5: the cost of a commit in each durability mode, and of raw msync.
fn durability(o: &mut Out, dir: &Path, path: &Path, fs: &str) -> Result<(), Failure> {
    o.say("\n5. durability: what one commit of 64 bytes costs here (median)");
    let modes = [
        (
            Durability::PageCache,
            "PageCache",
            20_000,
            "the commits since the last checkpoint",
        ),
        (
            Durability::Periodic(Duration::from_millis(100)),
            "Periodic(100ms)",
            20_000,
            "at most the commits of the last 100 ms",
        ),
        (Durability::Sync, "Sync", 300, "nothing that returned"),
    ];
    let mut costs = Map::new();
    o.say("     mode              commit      a power cut may lose");
    for (d, name, n, loses) in modes {
        let med = commit_cost(path, d, n)?;
        costs.insert(name.into(), json!(med.as_nanos() as u64));
        o.say(format!(
            "     {name:<17} {:<11} {loses}",
            human_duration(med)
        ));
    }
    let raw = msync_cost(dir)?;
    costs.insert("raw_msync".into(), json!(raw.as_nanos() as u64));
    o.say(format!(
        "     {:<17} {:<11} (store + msync: durable, not atomic)",
        "raw msync",
        human_duration(raw)
    ));
    o.say("   in every mode a process crash loses no returned commit; nothing is ever torn");
    if fs == "tmpfs" {
        o.say("   note: this directory is on tmpfs, where syncs cost nothing; try --dir on a disk");
    }
    o.put("commit_ns", Value::Object(costs));
    Ok(())
}

fn describe(s: ExitStatus) -> String {
    match s.signal() {
        Some(9) => "killed with SIGKILL".into(),
        Some(n) => format!("killed by signal {n}"),
        None => format!("not killed (it exited with {s})"),
    }
}

/// Grows a bare extend-on-write `Mapping` from 1 MiB to 33 MiB by a store
/// past its end and says whether its address stayed.
fn stable_address(dir: &Path) -> Result<String, Failure> {
    let mut m = MapOptions::new()
        .create(true)
        .len(INITIAL)
        .max_size(MAX)
        .extend_on_write(true)
        .open(dir.join("mapping.bin"))?;
    let before = m.as_ptr();
    m.write_at(REGION + REGION_LEN - 1, &[1])?;
    let after = m.as_ptr();
    Ok(format!(
        "{before:p} -> {after:p}{}",
        if before == after { "" } else { " (MOVED)" }
    ))
}

/// Runs a demo child and waits for it: with `kill`, kills it with SIGKILL
/// once it says it has written half of its transaction.
/// Runs a demo writer child, and kills it (SIGKILL) when it prints `kill_on`.
fn run_child(path: &Path, mode: &str, kill_on: &str) -> Result<(u32, ExitStatus), Failure> {
    let exe = std::env::current_exe().map_err(err)?;
    let mut c = Command::new(exe)
        .arg("demo-child")
        .arg(path)
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(err)?;
    let pid = c.id();
    let out = BufReader::new(c.stdout.take().expect("piped"));
    for line in out.lines().map_while(Result::ok) {
        if line.starts_with(kill_on) {
            c.kill().map_err(err)?; // SIGKILL
            break;
        }
    }
    let status = c.wait().map_err(err)?;
    Ok((pid, status))
}

/// The counter and how many bytes of the region differ from commit `c`'s fill.
fn check_region(path: &Path, c: u64) -> Result<(u64, u64), Failure> {
    let r = Reader::open(path)?;
    let mut counter = [0u8; 8];
    let mut region = vec![0u8; REGION_LEN as usize];
    r.read_many(&mut [(0, &mut counter[..]), (REGION, &mut region[..])])?;
    let want = pattern(c);
    let bad = region.iter().filter(|&&b| b != want).count() as u64;
    Ok((u64::from_le_bytes(counter), bad))
}

/// The median time of `commit()` of a 64-byte change, over `n` commits.
fn commit_cost(path: &Path, d: Durability, n: usize) -> Result<Duration, Failure> {
    let mut w = Writer::options().durability(d).open(path)?;
    let mut times = Vec::with_capacity(n);
    for i in 0..n {
        let mut t = w.begin();
        t.write_at(64 + (i as u64 % 64) * 64, &[i as u8; 64])?;
        let t0 = Instant::now();
        t.commit()?;
        times.push(t0.elapsed());
    }
    w.close()?;
    times.sort();
    Ok(times[times.len() / 2])
}

/// The median time of a 64-byte store plus `msync(MS_SYNC)` of its page.
fn msync_cost(dir: &Path) -> Result<Duration, Failure> {
    let mut m = MapOptions::new()
        .create(true)
        .len(INITIAL)
        .open(dir.join("raw.bin"))?;
    let mut times = Vec::with_capacity(300);
    for i in 0..300u64 {
        let off = (i % 64) * 64;
        let t0 = Instant::now();
        m.write_at(off, &[i as u8; 64])?;
        m.flush_range(off..off + 64, Flush::Sync)?;
        times.push(t0.elapsed());
    }
    times.sort();
    Ok(times[times.len() / 2])
}

/// The demo's writer processes (hidden `demo-child PATH MODE`).
pub(crate) fn child(path: &Path, mode: &str) -> CmdResult {
    let mut w = Writer::open(path)?;
    let mut t = w.begin();
    let mut b = [0u8; 8];
    t.read_at(0, &mut b)?;
    let c = u64::from_le_bytes(b) + 1;
    t.write_at(0, &c.to_le_bytes())?;
    let fill = vec![pattern(c); CHUNK as usize];
    let chunks = REGION_LEN / CHUNK;
    let mut out = std::io::stdout().lock();
    // Descending, so that every chunk is a range of its own.
    for (k, i) in (0..chunks).rev().enumerate() {
        t.write_at(REGION + i * CHUNK, &fill)?;
        if mode == "kill-mid-txn" && k as u64 + 1 == chunks / 2 {
            writeln!(out, "half")
                .and_then(|()| out.flush())
                .map_err(err)?;
            // The parent kills this process now; if it does not, go on.
            let mut line = String::new();
            let _ = std::io::stdin().read_line(&mut line);
        }
    }
    writeln!(out, "committing")
        .and_then(|()| out.flush())
        .map_err(err)?;
    t.commit()?;
    writeln!(out, "committed").map_err(err)?;
    Ok(EXIT_OK)
}
