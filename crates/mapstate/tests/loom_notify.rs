//! A loom model of the wait/wake protocol: the very source of
//! `src/store/notify_word.rs` ([`announce`], [`advance`]), compiled here
//! against loom's atomics and checked over every interleaving (and every
//! weak-memory outcome loom explores, within a preemption bound) of two
//! waiters, a writer that opens (waking everyone, as a new writer does in
//! case its predecessor died between publishing and waking) and publishes
//! a commit, and a reader that meanwhile wakes everyone too (as dropping a
//! `Watcher` or `ChangeStream` does), racing the writer on the word.
//! Waiter 0 stops once it has seen the commit; waiter 1 waits on for
//! another that never comes (as real waiters do), which is what lets a
//! stale sleeper's value come back (ABA).
//!
//! The kernel's futex is modelled by a mutex (its hash-bucket lock) that
//! guards a wait queue: `FUTEX_WAIT` compares the word and enqueues under
//! the lock, `FUTEX_WAKE` empties the queue under it. Every step that
//! changes the count (the word's low 31 bits) must move it exactly one on
//! from the value it replaces, never back nor by zero (checked as it is
//! stored). Once the writer and the reader are done (every commit
//! published, every wake made), a closer checks that the count equals the
//! number of `advance`s made, and looks at the queue under the lock: a
//! waiter still asleep that has not seen the last commit slept through it,
//! a lost wake-up.
//!
//! Runs with the other tests: `cargo test -p mapstate --release --test
//! loom_notify` (about 40 s; no `--cfg loom` needed: the protocol is
//! generic over [`protocol::Word`]). Broken variants it fails on, each
//! checked by hand: the writer reading the bit before publishing the
//! sequence number; the waiter not re-checking the sequence number after
//! announcing itself; a `FUTEX_WAKE` that wakes one waiter (the count of
//! -1 the library once passed); a word holding the sequence number with a
//! wake-all that adds one to it (the ABA that `protocol::advance`'s count
//! avoids); an `advance` that stores a value computed from a plain load
//! with a `swap` (right only with a single advancer: the reader's wake-all
//! that loaded before the writer's steps moves the count back or loses a
//! step; the lost wake-up that follows takes more than two preemptions
//! here, and [`a_wake_all_racing_the_writer_never_moves_the_count_back`]
//! walks through it).

#[path = "../src/store/notify_word.rs"]
#[allow(dead_code, unreachable_pub)]
mod protocol;

use std::cell::Cell;
use std::sync::atomic::AtomicBool;

use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, Ordering::SeqCst};
use loom::sync::{Arc, Condvar, Mutex};
use loom::thread;

use protocol::{WAITING, Word, advance, announce};

impl Word for AtomicU32 {
    fn fetch_or(&self, bits: u32) -> u32 {
        AtomicU32::fetch_or(self, bits, SeqCst)
    }
    fn load(&self) -> u32 {
        AtomicU32::load(self, Ordering::Relaxed)
    }
    fn compare_exchange_weak(&self, current: u32, new: u32) -> Result<u32, u32> {
        let found = AtomicU32::compare_exchange(self, current, new, SeqCst, Ordering::Relaxed);
        if found.is_ok() {
            check_step(current, new);
        }
        found
    }
}

/// Every change of the count (the word's low 31 bits) moves it exactly one
/// on from the value it replaces: never back, never by zero (a lost step).
fn check_step(old: u32, new: u32) {
    let (old, new) = (old & !WAITING, new & !WAITING);
    assert_eq!(
        new,
        old.wrapping_add(1) & !WAITING,
        "the count moved from {old} to {new}, not to {}",
        old.wrapping_add(1) & !WAITING
    );
}

const WAITERS: usize = 2;
const LAST: u64 = 1;

/// The live header's part in the protocol, and the kernel's futex queue.
struct Header {
    /// The sequence number (the sequence lock's published half).
    seq: AtomicU64,
    /// The notification word.
    word: AtomicU32,
    /// The futex queue: which waiters are asleep, under the bucket lock.
    queue: Mutex<[bool; WAITERS]>,
    wakeup: Condvar,
    /// The newest commit each waiter has seen (bookkeeping of the model:
    /// std atomics, which loom does not branch on; it runs one thread at a
    /// time, so they are always up to date).
    seen: [std::sync::atomic::AtomicU64; WAITERS],
    /// Set by the closer: waiters stop (published to sleepers like a
    /// commit: set before the closer's wake-all, checked after announcing).
    closing: AtomicBool,
    /// How many `advance`s have returned (bookkeeping, like `seen`).
    steps: std::sync::atomic::AtomicU32,
}

impl Header {
    fn new() -> Self {
        Self {
            seq: AtomicU64::new(0),
            word: AtomicU32::new(0),
            queue: Mutex::new([false; WAITERS]),
            wakeup: Condvar::new(),
            seen: Default::default(),
            closing: AtomicBool::new(false),
            steps: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// `FUTEX_WAIT`: sleeps only if the word still holds `expected`, which
    /// the kernel checks under the bucket lock that `FUTEX_WAKE` takes too.
    fn futex_wait(&self, me: usize, expected: u32) {
        let mut q = self.queue.lock().unwrap();
        if self.word.load(SeqCst) != expected {
            return; // EAGAIN
        }
        q[me] = true;
        while q[me] {
            q = self.wakeup.wait(q).unwrap();
        }
    }

    /// `FUTEX_WAKE` of every waiter.
    fn futex_wake(&self) {
        let mut q = self.queue.lock().unwrap();
        *q = [false; WAITERS];
        self.wakeup.notify_all();
    }

    /// `Live::end_apply`: publish commit `seq`, wake only if a waiter set the bit.
    fn commit(&self, seq: u64) {
        // The sequence lock goes even with a release store, as there.
        self.seq.store(seq, Ordering::Release);
        let woken = advance(&self.word);
        self.steps.fetch_add(1, SeqCst);
        if woken {
            self.futex_wake();
        }
    }

    /// `Live::wake_all`: a new writer's when it opens, and a reader's
    /// `stop_waiting` when a `Watcher` or `ChangeStream` is dropped, which
    /// may run while the writer commits.
    fn wake_all(&self) {
        advance(&self.word);
        self.steps.fetch_add(1, SeqCst);
        self.futex_wake();
    }

    /// `Reader::wait_for_change` in a loop (`Reader::wait_once` inside),
    /// until the closer says stop (waiter 0: until it saw the commit).
    fn waiter(&self, me: usize) {
        let mut seen = 0;
        while !self.closing.load(SeqCst) {
            // `Reader::seq` is an acquire load of the sequence lock.
            let now = self.seq.load(Ordering::Acquire);
            if now > seen {
                seen = now;
                self.seen[me].store(seen, SeqCst);
                if me == 0 && seen == LAST {
                    return; // waiter 0 stops there, waiter 1 waits on
                }
                continue;
            }
            let expected = announce(&self.word);
            // The closer's stop request is published like a commit.
            if self.seq.load(Ordering::Acquire) <= seen && !self.closing.load(SeqCst) {
                self.futex_wait(me, expected);
            }
        }
    }

    /// After the writer and the reader are done: the count must equal the
    /// number of steps made, and no waiter may be asleep without having
    /// seen the last commit. Then stops everyone (as `Watcher::drop` does).
    fn close(&self) {
        let count = self.word.load(SeqCst) & !WAITING;
        let steps = self.steps.load(SeqCst);
        assert_eq!(count, steps, "the count is {count} after {steps} steps");
        for (me, asleep) in self.queue.lock().unwrap().iter().enumerate() {
            let seen = self.seen[me].load(SeqCst);
            assert!(
                !*asleep || seen == LAST,
                "lost wake-up: waiter {me} is asleep having seen commit {seen} of {LAST}"
            );
        }
        self.closing.store(true, SeqCst);
        self.wake_all();
    }
}

/// A model thread with a small stack (each of the many executions maps
/// fresh stacks: small ones keep the check fast).
fn spawn(f: impl FnOnce() + Send + 'static) -> thread::JoinHandle<()> {
    thread::Builder::new()
        .stack_size(64 << 10)
        .spawn(f)
        .unwrap()
}

#[test]
fn loom_no_lost_wake_up_with_two_waiters_a_writer_and_a_waking_reader() {
    let mut model = loom::model::Builder::new();
    // Bounded so that the check takes seconds in a release build; the
    // broken variants fail within two preemptions.
    model.preemption_bound = Some(2);
    model.check(|| {
        let h = Arc::new(Header::new());
        let waiters: Vec<_> = (0..WAITERS)
            .map(|me| {
                let h = h.clone();
                spawn(move || h.waiter(me))
            })
            .collect();
        let w = {
            let h = h.clone();
            spawn(move || {
                // A writer opens and commits.
                h.wake_all();
                h.commit(LAST);
            })
        };
        // Meanwhile a reader of the state drops its `Watcher`: it wakes
        // everyone, racing the writer on the word.
        h.wake_all();
        w.join().unwrap();
        h.close();
        for t in waiters {
            t.join().unwrap();
        }
    });
}

/// The word values of the ABA interleaving that a wake-all adding one to a
/// word holding the sequence number allowed: waiter A announces itself
/// after the wake-all, the commit lands, waiter B announces itself for the
/// next commit, and only then does A call `FUTEX_WAIT`.
#[test]
fn a_word_moved_on_never_returns_to_a_sleepers_value() {
    use std::sync::atomic::{AtomicU32, Ordering::SeqCst};
    let word = AtomicU32::new(41); // as left by commit 41
    // A new writer opens and wakes everyone.
    advance(&word);
    let a = announce(&word); // A has seen 41 and goes to sleep
    // Commit 42 is published: the writer sees A's bit.
    assert!(advance(&word));
    let b = announce(&word); // B has seen 42 and goes to sleep
    assert_ne!(
        a,
        word.load(SeqCst),
        "A's FUTEX_WAIT must fail: it would sleep through commit 42"
    );
    assert_eq!(b, word.load(SeqCst));
    // The count wraps within 31 bits and never sets the bit itself.
    let word = AtomicU32::new(u32::MAX);
    assert!(advance(&word));
    assert_eq!(word.load(SeqCst), 0);
    let word = AtomicU32::new(!protocol::WAITING);
    assert!(!advance(&word));
    assert_eq!(word.load(SeqCst), 0);
}

/// A reader's wake-all that reads the word, then stalls while `meanwhile`
/// runs (the writer's steps and a waiter's), then stores.
struct Stalled<'a> {
    word: &'a std::sync::atomic::AtomicU32,
    meanwhile: Cell<Option<Box<dyn FnOnce() + 'a>>>,
}

impl Word for Stalled<'_> {
    fn fetch_or(&self, bits: u32) -> u32 {
        self.word.fetch_or(bits, SeqCst)
    }
    fn load(&self) -> u32 {
        let v = self.word.load(Ordering::Relaxed);
        if let Some(f) = self.meanwhile.take() {
            f();
        }
        v
    }
    fn compare_exchange_weak(&self, current: u32, new: u32) -> Result<u32, u32> {
        self.word
            .compare_exchange(current, new, SeqCst, Ordering::Relaxed)
    }
}

/// The lost wake-up that an `advance` storing a value computed from a plain
/// load allowed once readers woke everyone too, step by step: a reader's
/// wake-all reads the word, then stalls while the writer opens (a wake-all)
/// and publishes commit 1; between the two, waiter U (which has seen commit
/// 0) announced itself and is about to `FUTEX_WAIT`. The stalled store put
/// the word back to U's value, and once waiter V (which has seen commit 1)
/// set the bit again, U's `FUTEX_WAIT` found its value: it slept through
/// commit 1.
#[test]
fn a_wake_all_racing_the_writer_never_moves_the_count_back() {
    let word = std::sync::atomic::AtomicU32::new(0);
    let u = Cell::new(0);
    let reader = Stalled {
        word: &word,
        meanwhile: Cell::new(Some(Box::new(|| {
            // The writer opens and wakes everyone (nobody waits yet).
            advance(&word);
            // U announces itself and re-checks: no commit after 0 yet.
            u.set(announce(&word));
            // Commit 1: the writer sees U's bit and wakes (U is not queued).
            assert!(advance(&word));
        }))),
    };
    advance(&reader);
    // V has seen commit 1 and goes to sleep.
    let v = announce(&word);
    assert_ne!(
        u.get(),
        v,
        "U's FUTEX_WAIT must fail: it would sleep through commit 1"
    );
    assert_eq!(word.load(SeqCst) & !WAITING, 3, "three steps, three counts");
}
