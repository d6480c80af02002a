//! Cross-process workloads (w5, notify, reopen) re-execute this binary:
//! `mapstate-bench __child SYSTEM WORKLOAD ROLE DIR QUICK ARG`.
//!
//! Parent and child talk through the child's stdin and stdout, which are
//! pipes, one line per message (`ready`, `go`, `stop`, `ack`,
//! `result {json}`). Every wait is a blocking read of such a pipe: nothing
//! waits by sleeping. The child's stderr is the parent's, for errors.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::harness::{Ctx, Histogram, Result, Workload, monotonic_ns, nanos};
use crate::report::{Measurement, key, p50_p99};
use crate::slot::Rng;

/// The hidden first argument that makes the binary a child.
pub(crate) const CHILD_COMMAND: &str = "__child";

/// What a child is told on its command line.
#[derive(Clone, Debug)]
pub(crate) struct ChildArgs {
    /// The system whose adapter runs in the child.
    pub(crate) system: String,
    /// The workload.
    pub(crate) workload: Workload,
    /// `reader`, `writer` or `waiter`.
    pub(crate) role: String,
    /// The directory that holds the state.
    pub(crate) dir: PathBuf,
    /// Whether the parent runs `--quick`.
    pub(crate) quick: bool,
    /// A workload-specific number (notify: events; reopen: state bytes; w5
    /// writer: commits per second to hold to, 0 for as fast as it can with
    /// every commit timed, [`UNTIMED`] for as fast as it can untimed).
    pub(crate) arg: u64,
}

impl ChildArgs {
    /// The arguments after [`CHILD_COMMAND`].
    pub(crate) fn parse(args: &[String]) -> Result<Self> {
        let [system, workload, role, dir, quick, arg] = args else {
            return Err(format!("{CHILD_COMMAND}: expected 6 arguments, got {args:?}").into());
        };
        Ok(Self {
            system: system.clone(),
            workload: Workload::parse(workload).ok_or("unknown workload")?,
            role: role.clone(),
            dir: PathBuf::from(dir),
            quick: quick == "1",
            arg: arg.parse()?,
        })
    }

    fn to_args(&self) -> Vec<String> {
        vec![
            CHILD_COMMAND.to_owned(),
            self.system.clone(),
            self.workload.name().to_owned(),
            self.role.clone(),
            self.dir.display().to_string(),
            if self.quick { "1" } else { "0" }.to_owned(),
            self.arg.to_string(),
        ]
    }
}

/// A child process seen from the parent. Dropping it kills the child, so
/// that an error in the parent never leaves children running.
pub(crate) struct ChildProc {
    child: std::process::Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl ChildProc {
    /// Starts `current_exe() __child ...`.
    pub(crate) fn spawn(args: &ChildArgs) -> Result<Self> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args.to_args())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdin = child.stdin.take().ok_or("child has no stdin")?;
        let stdout = BufReader::new(child.stdout.take().ok_or("child has no stdout")?);
        Ok(Self {
            child,
            stdin,
            stdout,
        })
    }

    /// Sends one line.
    pub(crate) fn send(&mut self, msg: &str) -> Result<()> {
        writeln!(self.stdin, "{msg}")?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Sends raw bytes (the raw-pipe notification).
    pub(crate) fn send_bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.stdin.write_all(bytes)?;
        self.stdin.flush()?;
        Ok(())
    }

    /// Blocks until the child says one line.
    pub(crate) fn line(&mut self) -> Result<String> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            let status = self.child.wait()?;
            return Err(format!("child exited early ({status})").into());
        }
        Ok(line.trim_end().to_owned())
    }

    /// Blocks until the child says `want`; anything else is an error.
    pub(crate) fn expect(&mut self, want: &str) -> Result<()> {
        let got = self.line()?;
        if got == want {
            Ok(())
        } else {
            Err(format!("child said {got:?}, expected {want:?}").into())
        }
    }

    /// Reads the child's `result {json}` line and waits for it to exit.
    pub(crate) fn finish<T: DeserializeOwned>(mut self) -> Result<T> {
        loop {
            let line = self.line()?;
            if let Some(json) = line.strip_prefix("result ") {
                let value = serde_json::from_str(json)?;
                let status = self.child.wait()?;
                if !status.success() {
                    return Err(format!("child failed after its result ({status})").into());
                }
                return Ok(value);
            }
        }
    }

    /// Kills the child with SIGKILL and reaps it.
    pub(crate) fn kill(mut self) -> Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The parent seen from a child: its stdin and stdout.
pub(crate) struct Parent {
    stdin: BufReader<std::io::Stdin>,
    stdout: std::io::Stdout,
}

impl Parent {
    /// The parent of this process.
    pub(crate) fn new() -> Self {
        Self {
            stdin: BufReader::new(std::io::stdin()),
            stdout: std::io::stdout(),
        }
    }

    /// Says one line to the parent.
    pub(crate) fn say(&mut self, msg: &str) -> Result<()> {
        let mut out = self.stdout.lock();
        writeln!(out, "{msg}")?;
        out.flush()?;
        Ok(())
    }

    /// Blocks until the parent says one line (`""` at end of input).
    pub(crate) fn hear(&mut self) -> Result<String> {
        let mut line = String::new();
        self.stdin.read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    /// Blocks until the parent has sent exactly `buf.len()` bytes.
    pub(crate) fn read_exact(&mut self, buf: &mut [u8]) -> Result<()> {
        self.stdin.read_exact(buf)?;
        Ok(())
    }

    /// Sends the final `result {json}` line.
    pub(crate) fn result<T: Serialize>(&mut self, value: &T) -> Result<()> {
        self.say(&format!("result {}", serde_json::to_string(value)?))
    }
}

/// What a w5 reader or writer reports.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct LoopReport {
    /// Operations done between `go` and `stop`.
    pub(crate) ops: u64,
    /// Operations that saw a torn slot.
    pub(crate) torn: u64,
    /// Seconds between `go` and `stop`.
    pub(crate) secs: f64,
    /// A writer's commit latencies ([`timed_commit_loop`]).
    #[serde(default)]
    pub(crate) commits: Option<CommitTimes>,
}

/// A w5 writer's commit latencies, in ns.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CommitTimes {
    /// Commits timed.
    pub(crate) timed: u64,
    /// 99th percentile.
    pub(crate) p99_ns: u64,
    /// 99.9th percentile.
    pub(crate) p999_ns: u64,
    /// The longest.
    pub(crate) max_ns: u64,
    /// What one clock read costs in the writer (one per commit).
    pub(crate) clock_ns: f64,
}

/// Child side of w5: says `ready`, waits for `go`, then runs `op` (which
/// returns whether the slot it read was whole) until the parent says
/// `stop`. A second thread waits for `stop`, reports and exits the process,
/// so that even an operation blocked inside a peer does not delay the end.
pub(crate) fn timed_loop(parent: Parent, op: impl FnMut() -> Result<bool>) -> Result<()> {
    run_loop(parent, None, op)
}

/// The w5 writer's `arg` for "flat out, commits not timed" (0: flat out,
/// every commit timed; any other: commits per second to hold to).
pub(crate) const UNTIMED: u64 = u64::MAX;

/// Note for w5 rows whose writer timed every commit.
pub(crate) const COMMITS_TIMED: &str = "writer commit latency (commit_p999_us, commit_max_us): every commit timed by one clock read per commit (end of one commit to end of the next, so the loop's bookkeeping is in it; clock_read_ns says what a read costs); on a shared 2-core machine the longest includes any preemption of the writer";

/// Note for w5 rows of the peers whose writer timed every commit in the
/// throughput run.
pub(crate) const CLOCK_IN_RATE: &str =
    "the clock reads are in the writer's commits/s (each well under 1 % of this system's commit)";

/// How a w5 writer times its commits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Pace {
    /// As fast as it can; every commit timed by one clock read per commit
    /// (the time from the end of one commit to the end of the next: the
    /// commit plus the loop's two counter stores).
    FlatOut,
    /// As fast as it can; a clock read per `n` operations, each batch's
    /// time counted as one operation's (for operations of a few ns, where
    /// a clock read per operation would more than double the cost).
    Batched(u32),
    /// Held to one commit per period (spinning: sleeps are far coarser);
    /// not timed.
    Held(Duration),
}

/// [`timed_loop`] for a w5 writer: `op` commits once; its latencies are
/// timed as `pace` says and reported with the counts.
pub(crate) fn timed_commit_loop(
    parent: Parent,
    pace: Pace,
    op: impl FnMut() -> Result<bool>,
) -> Result<()> {
    run_loop(parent, Some(pace), op)
}

fn run_loop(
    mut parent: Parent,
    pace: Option<Pace>,
    mut op: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let clock_ns = match pace {
        Some(Pace::FlatOut | Pace::Batched(_)) => crate::harness::clock_read_ns(),
        _ => 0.0,
    };
    parent.say("ready")?;
    let go = parent.hear()?;
    if go != "go" {
        return Err(format!("expected go, got {go:?}").into());
    }
    let counts = Arc::new([AtomicU64::new(0), AtomicU64::new(0)]);
    let hist = Arc::new(Histogram::default());
    let start = Instant::now();
    {
        let counts = Arc::clone(&counts);
        let hist = Arc::clone(&hist);
        let timed = matches!(pace, Some(Pace::FlatOut | Pace::Batched(_)));
        std::thread::spawn(move || {
            let _ = parent.hear();
            let commits = timed.then(|| {
                let (n, q, max) = hist.summary(&[0.99, 0.999]);
                CommitTimes {
                    timed: n,
                    p99_ns: q[0],
                    p999_ns: q[1],
                    max_ns: max,
                    clock_ns,
                }
            });
            let report = LoopReport {
                ops: counts[0].load(Ordering::Relaxed),
                torn: counts[1].load(Ordering::Relaxed),
                secs: start.elapsed().as_secs_f64(),
                commits,
            };
            let code = i32::from(parent.result(&report).is_err());
            std::process::exit(code);
        });
    }
    let (mut ops, mut torn) = (0_u64, 0_u64);
    let mut count = |whole: bool| {
        ops += 1;
        // A plain store (no read-modify-write): only this thread writes.
        counts[0].store(ops, Ordering::Relaxed);
        if !whole {
            torn += 1;
            counts[1].store(torn, Ordering::Relaxed);
        }
    };
    match pace {
        None => loop {
            count(op()?);
        },
        Some(Pace::FlatOut) => {
            let mut prev = Instant::now();
            loop {
                let whole = op()?;
                let now = Instant::now();
                hist.record(nanos(now - prev));
                prev = now;
                count(whole);
            }
        }
        Some(Pace::Batched(n)) => {
            let mut prev = Instant::now();
            loop {
                for _ in 0..n {
                    count(op()?);
                }
                let now = Instant::now();
                hist.record(nanos(now - prev));
                prev = now;
            }
        }
        Some(Pace::Held(period)) => {
            let mut next = Instant::now();
            loop {
                next += period;
                while Instant::now() < next {
                    std::hint::spin_loop();
                }
                count(op()?);
            }
        }
    }
}

/// Parent side of w5: starts the writer and the reader on the state in
/// `dir`, lets them run side by side for `params.w5`, and collects both
/// (with the writer's commit latencies, if it timed them).
pub(crate) fn w5_parent(cx: &Ctx, system: &str, dir: &Path) -> Result<Measurement> {
    w5_parent_paced(cx, system, dir, 0)
}

/// As [`w5_parent`], with the writer held to `writer_rate` commits per
/// second (its `arg`; 0: as fast as it can, every commit timed;
/// [`UNTIMED`]: as fast as it can, untimed).
pub(crate) fn w5_parent_paced(
    cx: &Ctx,
    system: &str,
    dir: &Path,
    writer_rate: u64,
) -> Result<Measurement> {
    let args = |role: &str| ChildArgs {
        system: system.to_owned(),
        workload: Workload::W5,
        role: role.to_owned(),
        dir: dir.to_owned(),
        quick: cx.params.quick,
        arg: if role == "writer" { writer_rate } else { 0 },
    };
    let mut writer = ChildProc::spawn(&args("writer"))?;
    let mut reader = ChildProc::spawn(&args("reader"))?;
    writer.expect("ready")?;
    reader.expect("ready")?;
    writer.send("go")?;
    reader.send("go")?;
    // The length of the workload, not a synchronisation.
    std::thread::sleep(cx.params.w5);
    reader.send("stop")?;
    writer.send("stop")?;
    let r: LoopReport = reader.finish()?;
    let w: LoopReport = writer.finish()?;
    let mut m = Measurement {
        ops_per_sec: Some(r.ops as f64 / r.secs),
        writer_ops_per_sec: Some(w.ops as f64 / w.secs),
        torn: Some(r.torn),
        ..Measurement::default()
    };
    if let Some(c) = w.commits {
        m.set(key::COMMIT_MAX_US, c.max_ns as f64 / 1e3);
        m.set(key::COMMIT_MAX_US_WORST, c.max_ns as f64 / 1e3);
        m.set(key::COMMIT_P99_US, c.p99_ns as f64 / 1e3);
        m.set(key::COMMIT_P999_US, c.p999_ns as f64 / 1e3);
        m.set(key::COMMITS_TIMED, c.timed as f64);
        m.set(key::CLOCK_READ_NS, c.clock_ns);
    }
    Ok(m)
}

/// What a notify waiter reports.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct NotifyReport {
    /// Events seen.
    pub(crate) events: usize,
    /// Median commit-to-wake latency.
    pub(crate) p50_ns: Option<f64>,
    /// 99th-percentile commit-to-wake latency.
    pub(crate) p99_ns: Option<f64>,
}

/// Parent side of notify: starts a waiter on the state in `dir`, then
/// `params.notify_events` times waits a random 0 to 2 ms (so that events
/// fall at random phases of a poller's 1 ms period), takes `t0` from
/// `CLOCK_MONOTONIC`, calls `commit(waiter, t0)` (which commits `t0` and
/// notifies if the system can) and waits for the waiter's `ack`.
pub(crate) fn notify_parent(
    cx: &Ctx,
    system: &str,
    dir: &Path,
    mut commit: impl FnMut(&mut ChildProc, u64) -> Result<()>,
) -> Result<Measurement> {
    let events = cx.params.notify_events;
    let mut waiter = ChildProc::spawn(&ChildArgs {
        system: system.to_owned(),
        workload: Workload::Notify,
        role: "waiter".to_owned(),
        dir: dir.to_owned(),
        quick: cx.params.quick,
        arg: events as u64,
    })?;
    waiter.expect("ready")?;
    let mut rng = Rng::from_entropy();
    for _ in 0..events {
        // The spacing of the events (the load), not a synchronisation.
        std::thread::sleep(Duration::from_micros(rng.below(2000) as u64));
        commit(&mut waiter, monotonic_ns())?;
        waiter.expect("ack")?;
    }
    let r: NotifyReport = waiter.finish()?;
    if r.events != events {
        return Err(format!("waiter saw {} events of {events}", r.events).into());
    }
    Ok(Measurement {
        p50_ns: r.p50_ns,
        p99_ns: r.p99_ns,
        ..Measurement::default()
    })
}

/// Child side of notify: says `ready`, then `events` times calls `next`
/// (which blocks until the next commit and returns its `t0`), takes `t1`
/// and says `ack`; finally reports the p50 and p99 of `t1 - t0`.
pub(crate) fn notify_waiter(
    mut parent: Parent,
    events: u64,
    mut next: impl FnMut(&mut Parent) -> Result<u64>,
) -> Result<()> {
    parent.say("ready")?;
    let mut samples = Vec::with_capacity(events as usize);
    for _ in 0..events {
        let t0 = next(&mut parent)?;
        samples.push(monotonic_ns().saturating_sub(t0));
        parent.say("ack")?;
    }
    let (p50_ns, p99_ns) = p50_p99(&mut samples);
    parent.result(&NotifyReport {
        events: samples.len(),
        p50_ns,
        p99_ns,
    })
}

/// The poll period of peers that cannot push a notification.
pub(crate) const POLL_PERIOD: Duration = Duration::from_millis(1);

/// A `next` for [`notify_waiter`] that polls `read` (the value of slot 0)
/// every millisecond, what users of a system without notification do.
pub(crate) fn poller(
    mut read: impl FnMut() -> Result<u64>,
) -> Result<impl FnMut(&mut Parent) -> Result<u64>> {
    let mut last = read()?;
    Ok(move |_: &mut Parent| {
        loop {
            let v = read()?;
            if v != last {
                last = v;
                return Ok(v);
            }
            std::thread::sleep(POLL_PERIOD);
        }
    })
}

/// Child side of reopen: commits once, says `ready`, then goes on
/// committing until the parent kills it.
pub(crate) fn write_until_killed(
    mut parent: Parent,
    mut commit: impl FnMut() -> Result<()>,
) -> Result<()> {
    commit()?;
    parent.say("ready")?;
    loop {
        commit()?;
    }
}

/// Parent side of reopen: starts a writer on the state in `dir` (`arg` is
/// the state size), kills it with SIGKILL as soon as it says `ready` (it has
/// committed once and is committing again), then times
/// `reopen` (open plus first consistent read, which returns whether the slot
/// it read was whole).
pub(crate) fn reopen_parent(
    cx: &Ctx,
    system: &str,
    dir: &Path,
    reopen: impl FnOnce() -> Result<bool>,
) -> Result<Measurement> {
    let mut writer = ChildProc::spawn(&ChildArgs {
        system: system.to_owned(),
        workload: Workload::Reopen,
        role: "writer".to_owned(),
        dir: dir.to_owned(),
        quick: cx.params.quick,
        arg: cx.params.reopen_bytes,
    })?;
    writer.expect("ready")?;
    writer.kill()?;
    let t = Instant::now();
    let whole = reopen()?;
    let ns = nanos(t.elapsed());
    Ok(Measurement {
        reopen_ms: Some(ns as f64 / 1e6),
        torn: Some(u64::from(!whole)),
        ..Measurement::default()
    })
}
