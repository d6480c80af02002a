//! Termination deferral (`mapstate::signals`), end to end.
//!
//! Every case runs in a child process: the test binary re-executes itself for
//! that one test with `MAPSTATE_SIGNALS_ROLE` set, and the test body then
//! plays the child instead of the parent. Parent and child synchronise through
//! lines (the child prints `@@<marker>` on stdout, the parent writes lines to
//! its stdin), never through sleeps. The child's own harness runs the test on
//! a second thread, so a signal from the parent usually lands on the harness's
//! main thread, not on the thread holding the guard: the cross-thread case is
//! exercised everywhere.
#![allow(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::os::unix::thread::JoinHandleExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use mapstate::signals::{defer_termination, pending, set_deadline};

const ROLE: &str = "MAPSTATE_SIGNALS_ROLE";
/// How long the parent waits for anything before killing the child.
const PATIENCE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Parent side.

/// A child process running one test in its child role.
struct Kid {
    child: Child,
    stdin: Option<ChildStdin>,
    out: BufReader<ChildStdout>,
    /// Every marker seen so far, in order.
    seen: Vec<String>,
    /// Dropped (or sent to) when the child has been reaped: stops the killer.
    reaped: Option<mpsc::Sender<()>>,
}

impl Kid {
    fn spawn(test: &str) -> Kid {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, test)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        // A hung child must fail the test, not hang it.
        let (tx, rx) = mpsc::channel::<()>();
        let pid = child.id() as i32;
        std::thread::spawn(move || {
            if rx.recv_timeout(PATIENCE) == Err(mpsc::RecvTimeoutError::Timeout) {
                eprintln!("child {pid} hung: killing it");
                // SAFETY: `kill` has no memory preconditions; the child is not
                // reaped yet (the sender is dropped only after `wait`).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        Kid {
            stdin: child.stdin.take(),
            out: BufReader::new(child.stdout.take().unwrap()),
            child,
            seen: Vec::new(),
            reaped: Some(tx),
        }
    }

    /// Reads the child's markers up to `marker`.
    fn expect(&mut self, marker: &str) {
        loop {
            let Some(m) = self.next_marker() else {
                panic!("child ended before {marker:?}; markers: {:?}", self.seen);
            };
            if m == marker {
                return;
            }
        }
    }

    fn next_marker(&mut self) -> Option<String> {
        loop {
            let mut line = String::new();
            if self.out.read_line(&mut line).unwrap() == 0 {
                return None;
            }
            // The harness may have printed "test name ... " before ours.
            if let Some(pos) = line.find("@@") {
                let m = line[pos + 2..].trim_end().to_owned();
                self.seen.push(m.clone());
                return Some(m);
            }
        }
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, sig: i32) {
        // SAFETY: `kill` has no memory preconditions; the child is alive
        // (not reaped: we hold its `Child`).
        let r = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(r, 0);
    }

    /// Reads the rest of the child's output (stdin stays open meanwhile, so
    /// a child blocked reading it stays blocked), then reaps it.
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        while self.next_marker().is_some() {}
        let mut rest = Vec::new();
        let _ = self.out.read_to_end(&mut rest);
        self.stdin = None;
        let status = self.child.wait().unwrap();
        self.reaped = None;
        (status, std::mem::take(&mut self.seen))
    }
}

impl Drop for Kid {
    fn drop(&mut self) {
        if self.reaped.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs `child` if this process is the child for `test`; returns whether it did.
fn is_child(test: &str) -> bool {
    std::env::var(ROLE).is_ok_and(|r| r == test)
}

fn name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        _ => "?",
    }
}

// ---------------------------------------------------------------------------
// Child side.

fn say(marker: &str) {
    println!("@@{marker}");
    std::io::stdout().flush().unwrap();
}

fn read_line() -> String {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    line.trim_end().to_owned()
}

/// Waits for the parent's "go" line.
fn wait_for(word: &str) {
    assert_eq!(read_line(), word);
}

/// Polls until `cond` holds: waits for a signal the parent has sent to be
/// handled (a condition, not a guess at a duration).
fn poll_until(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::yield_now();
    }
}

/// Waits until the signal the parent sent is held back.
fn wait_pending(sig: i32) {
    poll_until(&format!("{} to be pending", name(sig)), || {
        pending() == Some(sig)
    });
}

/// Installs a process-wide handler for `sig` with libc.
fn install_handler(sig: i32, handler: libc::sighandler_t, siginfo: bool) {
    // SAFETY: all-zero bytes are a valid `struct sigaction`.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = handler;
    act.sa_flags = libc::SA_RESTART | if siginfo { libc::SA_SIGINFO } else { 0 };
    // SAFETY: `act.sa_mask` is a valid set to initialise.
    unsafe { libc::sigemptyset(&raw mut act.sa_mask) };
    // SAFETY: `act` is valid; the handler has the signature `sa_flags` says.
    let r = unsafe { libc::sigaction(sig, &raw const act, std::ptr::null_mut()) };
    assert_eq!(r, 0);
}

// ---------------------------------------------------------------------------
// A signal sent during a section waits for its end, then kills the process.

fn deferred_child(sig: i32) {
    let guard = defer_termination();
    say("in section");
    wait_for("go");
    wait_pending(sig);
    say("section done");
    drop(guard);
    say("after");
}

fn deferred_parent(test: &str, sig: i32) {
    let mut kid = Kid::spawn(test);
    kid.expect("in section");
    kid.signal(sig);
    kid.send("go");
    let (status, seen) = kid.finish();
    assert!(seen.contains(&"section done".to_owned()), "{seen:?}");
    assert!(
        !seen.contains(&"after".to_owned()),
        "ran past the section: {seen:?}"
    );
    assert_eq!(status.signal(), Some(sig), "{status:?} {seen:?}");
}

#[test]
fn sigterm_waits_for_the_section() {
    if is_child("sigterm_waits_for_the_section") {
        return deferred_child(libc::SIGTERM);
    }
    deferred_parent("sigterm_waits_for_the_section", libc::SIGTERM);
}

#[test]
fn sigint_waits_for_the_section() {
    if is_child("sigint_waits_for_the_section") {
        return deferred_child(libc::SIGINT);
    }
    deferred_parent("sigint_waits_for_the_section", libc::SIGINT);
}

#[test]
fn sighup_waits_for_the_section() {
    if is_child("sighup_waits_for_the_section") {
        return deferred_child(libc::SIGHUP);
    }
    deferred_parent("sighup_waits_for_the_section", libc::SIGHUP);
}

#[test]
fn nested_sections_deliver_at_the_outermost_end() {
    const T: &str = "nested_sections_deliver_at_the_outermost_end";
    if is_child(T) {
        let outer = defer_termination();
        let inner = defer_termination();
        say("in section");
        wait_for("go");
        wait_pending(libc::SIGTERM);
        drop(inner);
        say("inner dropped");
        assert_eq!(pending(), Some(libc::SIGTERM));
        say("section done");
        drop(outer);
        say("after");
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("in section");
    kid.signal(libc::SIGTERM);
    kid.send("go");
    let (status, seen) = kid.finish();
    assert_eq!(seen, ["in section", "inner dropped", "section done"]);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn two_threads_deliver_after_both_sections() {
    const T: &str = "two_threads_deliver_after_both_sections";
    if is_child(T) {
        // Each thread opens a section, reports, waits to be told to close it.
        let spawn = |id: &'static str| {
            let (opened_tx, opened_rx) = mpsc::channel::<()>();
            let (close_tx, close_rx) = mpsc::channel::<()>();
            let t = std::thread::spawn(move || {
                let guard = defer_termination();
                opened_tx.send(()).unwrap();
                close_rx.recv().unwrap();
                drop(guard);
                say(&format!("{id} after"));
            });
            opened_rx.recv().unwrap();
            (t, close_tx)
        };
        let (t1, close1) = spawn("t1");
        let (t2, close2) = spawn("t2");
        say("in section");
        wait_for("go");
        wait_pending(libc::SIGTERM);
        close1.send(()).unwrap();
        t1.join().unwrap();
        say("t1 joined");
        close2.send(()).unwrap();
        let _ = t2.join();
        say("after");
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("in section");
    kid.signal(libc::SIGTERM);
    kid.send("go");
    let (status, seen) = kid.finish();
    assert_eq!(seen, ["in section", "t1 after", "t1 joined"]);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn without_a_section_sigterm_kills_at_once() {
    const T: &str = "without_a_section_sigterm_kills_at_once";
    if is_child(T) {
        drop(defer_termination()); // installs the handlers
        say("ready");
        let _ = read_line(); // blocks: the parent never writes
        say("after");
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("ready");
    kid.signal(libc::SIGTERM);
    let (status, seen) = kid.finish();
    assert_eq!(seen, ["ready"]);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

// ---------------------------------------------------------------------------
// A handler installed before mapstate.

static CALLS: AtomicUsize = AtomicUsize::new(0);
static SENDER: AtomicI32 = AtomicI32::new(0);

extern "C" fn counting_action(_sig: i32, info: *mut libc::siginfo_t, _ctx: *mut std::ffi::c_void) {
    // SAFETY: the kernel passes a valid, aligned siginfo to a SA_SIGINFO handler.
    let info = unsafe { &*info };
    // SAFETY: a SIGTERM/SIGINT/SIGHUP sent by kill(2) carries a sender pid.
    let pid = unsafe { info.si_pid() };
    SENDER.store(pid, Ordering::SeqCst);
    CALLS.fetch_add(1, Ordering::SeqCst);
}

#[test]
fn a_previous_handler_runs_once_after_the_section() {
    const T: &str = "a_previous_handler_runs_once_after_the_section";
    if is_child(T) {
        let f = counting_action as extern "C" fn(i32, *mut libc::siginfo_t, *mut std::ffi::c_void);
        install_handler(libc::SIGTERM, f as libc::sighandler_t, true);
        let guard = defer_termination();
        say("in section");
        wait_for("go");
        wait_pending(libc::SIGTERM);
        say(&format!("calls inside {}", CALLS.load(Ordering::SeqCst)));
        drop(guard);
        // Delivered on this thread before the drop returned.
        say(&format!("calls after {}", CALLS.load(Ordering::SeqCst)));
        say(&format!("sender {}", SENDER.load(Ordering::SeqCst)));
        // No section open: the handler runs at once.
        wait_for("go2");
        poll_until("the second call", || CALLS.load(Ordering::SeqCst) == 2);
        say(&format!("calls {}", CALLS.load(Ordering::SeqCst)));
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("in section");
    kid.signal(libc::SIGTERM);
    kid.send("go");
    kid.expect("calls after 1");
    kid.signal(libc::SIGTERM);
    kid.send("go2");
    let (status, seen) = kid.finish();
    let me = std::process::id();
    assert_eq!(
        seen,
        [
            "in section",
            "calls inside 0",
            "calls after 1",
            &format!("sender {me}"),
            "calls 2"
        ]
    );
    assert!(status.success(), "{status:?}");
}

static HUPS: AtomicUsize = AtomicUsize::new(0);

extern "C" fn counting_handler(_sig: i32) {
    HUPS.fetch_add(1, Ordering::SeqCst);
}

/// Spins (staying on the CPU) until `until`.
fn spin_until(until: Instant) {
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Spins until `flag` holds `value`.
fn spin_for(flag: &AtomicUsize, value: usize) {
    while flag.load(Ordering::SeqCst) != value {
        std::hint::spin_loop();
    }
}

/// A signal arriving while the last section closes, on another thread or on
/// the closing one, in many rounds: each must reach the handler exactly once.
///
/// In each round a churning thread opens a section, then closes it a chosen
/// delay after the main thread starts sending the signal; the delays sweep a
/// few microseconds, so that across the rounds the close lands at every point
/// of the handler's run, including between its "is a section open?" check
/// and its recording of the signal. After the close no section opens again
/// (and the deadline is an hour), so a signal still held back then is lost
/// for good; one delivered twice shows up in the count.
#[test]
fn no_signal_is_lost_or_doubled_under_churn() {
    const T: &str = "no_signal_is_lost_or_doubled_under_churn";
    const ROUNDS: usize = 20_000;
    /// The close is delayed by `round % STEPS` times `STEP` after the send starts.
    const STEPS: usize = 400;
    const STEP: Duration = Duration::from_nanos(10);
    if is_child(T) {
        set_deadline(Duration::from_secs(3600)); // only the race may deliver
        install_handler(
            libc::SIGHUP,
            counting_handler as extern "C" fn(i32) as libc::sighandler_t,
            false,
        );
        // The round number the churner has reached, for each step of a round.
        let start = Arc::new(AtomicUsize::new(usize::MAX));
        let opened = Arc::new(AtomicUsize::new(usize::MAX));
        let go = Arc::new(AtomicUsize::new(usize::MAX));
        let closed = Arc::new(AtomicUsize::new(usize::MAX));
        let churner = {
            let (start, opened, go, closed) =
                (start.clone(), opened.clone(), go.clone(), closed.clone());
            std::thread::spawn(move || {
                for round in 0..ROUNDS {
                    spin_for(&start, round);
                    let outer = defer_termination();
                    let inner = defer_termination();
                    opened.store(round, Ordering::SeqCst);
                    spin_for(&go, round);
                    let delay = STEP * (round % STEPS) as u32;
                    spin_until(Instant::now() + delay);
                    drop(inner);
                    drop(outer);
                    closed.store(round, Ordering::SeqCst);
                }
            })
        };
        let churner_thread = churner.as_pthread_t();
        let mut longest = Duration::ZERO;
        for round in 0..ROUNDS {
            start.store(round, Ordering::SeqCst);
            spin_for(&opened, round);
            go.store(round, Ordering::SeqCst);
            match round % 8 {
                // Into the churning thread, inside its own section.
                // SAFETY: the thread is alive (it waits for this round).
                7 => unsafe { libc::pthread_kill(churner_thread, libc::SIGHUP) },
                // To the process: lands on whichever thread the kernel picks.
                // SAFETY: `kill` has no memory preconditions.
                6 => unsafe { libc::kill(std::process::id() as i32, libc::SIGHUP) },
                // To this thread, which holds no section: its handler races
                // the churner's close.
                // SAFETY: `raise` has no memory preconditions.
                _ => unsafe { libc::raise(libc::SIGHUP) },
            };
            spin_for(&closed, round);
            // The round's sections are closed and none will open before the
            // signal arrives: if it is held back now, it is lost.
            let waited = Instant::now();
            poll_until(&format!("signal {round} (lost?)"), || {
                HUPS.load(Ordering::SeqCst) > round
            });
            longest = longest.max(waited.elapsed());
            assert_eq!(
                HUPS.load(Ordering::SeqCst),
                round + 1,
                "a signal was delivered twice"
            );
            assert_eq!(pending(), None);
        }
        churner.join().unwrap();
        assert_eq!(HUPS.load(Ordering::SeqCst), ROUNDS);
        say(&format!("delivered {ROUNDS}"));
        eprintln!("longest wait after the last section closed: {longest:?}");
        return;
    }
    let kid = Kid::spawn(T);
    let (status, seen) = kid.finish();
    assert_eq!(seen, [format!("delivered {ROUNDS}")]);
    assert!(status.success(), "{status:?}");
}

#[test]
fn an_ignored_signal_stays_ignored() {
    const T: &str = "an_ignored_signal_stays_ignored";
    if is_child(T) {
        // SAFETY: SIG_IGN is a valid disposition for SIGTERM.
        unsafe { libc::signal(libc::SIGTERM, libc::SIG_IGN) };
        let guard = defer_termination();
        say("in section");
        wait_for("go");
        say(&format!("pending {:?}", pending()));
        drop(guard);
        say("section done");
        wait_for("go2");
        say("still alive");
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("in section");
    // The kernel discards a signal that is ignored when it is sent, so once
    // `kill` has returned it is gone for good.
    kid.signal(libc::SIGTERM);
    kid.send("go");
    kid.expect("section done");
    kid.signal(libc::SIGTERM);
    kid.send("go2");
    let (status, seen) = kid.finish();
    assert_eq!(
        seen,
        ["in section", "pending None", "section done", "still alive"]
    );
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// The deadline.

#[test]
fn a_stuck_section_is_killed_at_the_deadline() {
    const T: &str = "a_stuck_section_is_killed_at_the_deadline";
    if is_child(T) {
        set_deadline(Duration::from_millis(200));
        let _guard = defer_termination();
        say("in section");
        let _ = read_line(); // stuck: the parent never writes
        say("after");
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("in section");
    let sent = Instant::now();
    kid.signal(libc::SIGTERM);
    let (status, seen) = kid.finish();
    let waited = sent.elapsed();
    println!("SIGTERM took effect {waited:?} after it was sent (deadline 200 ms)");
    assert_eq!(seen, ["in section"]);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
    assert!(
        waited >= Duration::from_millis(150),
        "took effect before the deadline: {waited:?}"
    );
}

#[test]
fn a_previous_handler_is_called_once_at_the_deadline() {
    const T: &str = "a_previous_handler_is_called_once_at_the_deadline";
    if is_child(T) {
        let f = counting_action as extern "C" fn(i32, *mut libc::siginfo_t, *mut std::ffi::c_void);
        install_handler(libc::SIGTERM, f as libc::sighandler_t, true);
        set_deadline(Duration::from_millis(100));
        let guard = defer_termination();
        say("in section");
        wait_for("go");
        // The section stays open: the watchdog forces the delivery.
        poll_until("the forced call", || CALLS.load(Ordering::SeqCst) == 1);
        say(&format!("forced, pending {:?}", pending()));
        drop(guard);
        say(&format!("calls after {}", CALLS.load(Ordering::SeqCst)));
        say(&format!("sender {}", SENDER.load(Ordering::SeqCst)));
        return;
    }
    let mut kid = Kid::spawn(T);
    kid.expect("in section");
    kid.signal(libc::SIGTERM);
    kid.send("go");
    let (status, seen) = kid.finish();
    let me = std::process::id();
    assert_eq!(
        seen,
        [
            "in section",
            "forced, pending None",
            "calls after 1",
            &format!("sender {me}")
        ]
    );
    assert!(status.success(), "{status:?}");
}

// ---------------------------------------------------------------------------
// Cost.

#[test]
fn bench_defer_termination() {
    const T: &str = "bench_defer_termination";
    if is_child(T) {
        const N: u32 = 10_000_000;
        drop(defer_termination()); // installs
        let mut best = Duration::MAX;
        for _ in 0..3 {
            let start = Instant::now();
            for _ in 0..N {
                drop(std::hint::black_box(defer_termination()));
            }
            best = best.min(start.elapsed());
        }
        let ns = best.as_secs_f64() * 1e9 / f64::from(N);
        say(&format!("{ns:.2} ns per defer_termination() + drop"));
        return;
    }
    let kid = Kid::spawn(T);
    let (status, seen) = kid.finish();
    assert!(status.success(), "{status:?}");
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("{} ({profile} build, uncontended)", seen.join(" "));
}
