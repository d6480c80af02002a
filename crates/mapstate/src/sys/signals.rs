//! Termination deferral: the handler mapstate installs for SIGHUP, SIGINT and
//! SIGTERM, the process-wide count of open critical sections, and the
//! watchdog thread that enforces the deadline. The safe API is
//! [`crate::signals`].
//!
//! # State
//!
//! - `COUNT` (`AtomicUsize`): open critical sections in the whole process.
//!   Its top bit, `DYING`, is set (and never cleared) once a signal has been
//!   handed to its default, fatal action; from then on no new section opens.
//! - `PENDING` (`AtomicU32`, also the watchdog's futex word): bits 0..3 are
//!   the deferred signals (one bit per signal, like the kernel's own pending
//!   set: repeats coalesce), bits 8.. an episode number bumped each time the
//!   set goes from empty to non-empty, so the watchdog can tell a new
//!   deferral from an old one.
//! - `FORCE` (`AtomicU32`): one bit per signal the watchdog is re-sending
//!   past its deadline, so the handler delivers it although a section is open.
//! - `SAVED`: the `siginfo_t` of a deferred signal, so that a user handler
//!   finally sees the original sender (`si_pid`, `si_code`), not mapstate.
//! - `PREV`: the dispositions found at installation, written once before the
//!   first handler is installed and read-only afterwards.
//!
//! # Protocol
//!
//! The handler, for a signal that no section holds back, acts at once
//! ("forwards"): default action (restore `SIG_DFL`, re-raise), or the previous
//! handler, called with the same arguments. Otherwise it sets the signal's
//! bit in `PENDING` and returns. The guard's drop decrements `COUNT`; the one
//! that brings it to 0 looks at `PENDING` and, if a bit is set, takes it and
//! re-sends the signal to its own thread, where the handler (now seeing no
//! open section) forwards it before the send returns.
//!
//! No signal is lost when it arrives while the last section closes: the
//! handler writes `PENDING` then reads `COUNT`; the dropper writes `COUNT`
//! then reads `PENDING`, all `SeqCst`, so at least one sees the other's
//! write. Whoever sees it takes the bit with an atomic `fetch_and`, so
//! exactly one of them delivers.
//!
//! The default action is claimed by setting `DYING` with a compare-exchange
//! that requires no open section, so a section cannot open between "no
//! section is open" and the process dying: a thread that tries is parked
//! (the process is about to exit). A handler that delivers a deferred fatal
//! signal itself (having found `COUNT` at 0 on its re-check) sets `DYING`
//! before it takes the bit, so a dropper that saw the bit but lost it to the
//! handler finds `DYING` and parks rather than running past its section.
//!
//! The watchdog sleeps on `PENDING`; when a new episode has waited out the
//! deadline it takes the bits, sets them in `FORCE` and re-sends each signal
//! to itself (it keeps the three signals blocked, so it never takes them
//! from the program's threads, and unblocks one just to take it).
//!
//! # Async-signal safety
//!
//! The handler uses only atomics (lock-free), `OnceLock::get` (one atomic
//! load), and `sigaction`, `pthread_sigmask`, `sigemptyset`, `sigaddset`,
//! `raise` and `futex` wake, all async-signal-safe. It saves and restores
//! `errno`. It never allocates, locks or panics (indexes are proven in
//! range; nothing unwraps).

use std::cell::UnsafeCell;
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// The deferred signals; index `i` owns bit `1 << i` of `PENDING`, and a
/// guard's drop delivers them in this order.
const SIGNALS: [c_int; 3] = [libc::SIGHUP, libc::SIGINT, libc::SIGTERM];
/// The signal bits of `PENDING`.
const BITS: u32 = 0b111;
/// One step of the episode number of `PENDING`.
const EPISODE_ONE: u32 = 1 << 8;
/// Set in `COUNT` once a default (fatal) action has been claimed.
const DYING: usize = 1 << (usize::BITS - 1);
/// The default deadline: 10 s.
const DEFAULT_DEADLINE_NS: u64 = 10_000_000_000;

static COUNT: AtomicUsize = AtomicUsize::new(0);
static PENDING: AtomicU32 = AtomicU32::new(0);
static FORCE: AtomicU32 = AtomicU32::new(0);
/// Bits of previous handlers with `SA_RESETHAND` that have run once (and so
/// behave as `SIG_DFL` from then on, as the kernel would have made them).
static RESET_DONE: AtomicU32 = AtomicU32::new(0);
static DEADLINE_NS: AtomicU64 = AtomicU64::new(DEFAULT_DEADLINE_NS);
static INSTALL: Once = Once::new();
/// The disposition of each signal before mapstate's handler, or `None` if
/// mapstate left the signal alone (it was ignored, or installation failed).
static PREV: OnceLock<[Option<libc::sigaction>; 3]> = OnceLock::new();
static SAVED: [InfoSlot; 3] = [const { InfoSlot::new() }; 3];

fn bit(i: usize) -> u32 {
    1 << i
}

fn index_of(sig: c_int) -> Option<usize> {
    SIGNALS.iter().position(|&s| s == sig)
}

// ---------------------------------------------------------------------------
// Entry points for `crate::signals`.

/// Opens a critical section (installing the handlers on first use).
#[inline]
pub(crate) fn enter() {
    INSTALL.call_once(install);
    let old = COUNT.fetch_add(1, SeqCst);
    if old & DYING != 0 {
        dying();
    }
}

/// Closes a critical section; the last one delivers what was deferred.
#[inline]
pub(crate) fn exit() {
    let old = COUNT.fetch_sub(1, SeqCst);
    if old & !DYING == 1 && PENDING.load(SeqCst) & BITS != 0 {
        deliver_pending();
    }
}

/// The deferred signal, if any (SIGTERM first, then SIGINT, then SIGHUP).
pub(crate) fn pending() -> Option<i32> {
    let w = PENDING.load(SeqCst);
    (0..SIGNALS.len())
        .rev()
        .find(|&i| w & bit(i) != 0)
        .map(|i| SIGNALS[i])
}

/// Sets how long a deferred signal may wait for the sections to close.
pub(crate) fn set_deadline(d: Duration) {
    DEADLINE_NS.store(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), SeqCst);
    // Let the watchdog recompute its wait.
    wake_watchdog();
}

/// The current deadline.
pub(crate) fn deadline() -> Duration {
    Duration::from_nanos(DEADLINE_NS.load(SeqCst))
}

/// A section was asked to open after a default action was claimed: the
/// process is exiting, so this thread must not start work it cannot finish.
#[cold]
#[inline(never)]
fn dying() -> ! {
    COUNT.fetch_sub(1, SeqCst);
    wait_for_the_end()
}

/// Parks this thread until the default action claimed with `DYING` ends
/// the process (a matter of microseconds).
fn wait_for_the_end() -> ! {
    loop {
        std::thread::park();
    }
}

#[cold]
#[inline(never)]
fn deliver_pending() {
    // Unless a section opened again meanwhile: its close will deliver (it
    // reads `PENDING` after its own decrement, so it sees our bits).
    if COUNT.load(SeqCst) & !DYING == 0 {
        let taken = PENDING.fetch_and(!BITS, SeqCst) & BITS;
        for i in 0..SIGNALS.len() {
            if taken & bit(i) != 0 {
                redeliver(i);
            }
        }
    }
    // We saw a deferred signal, but a handler on another thread may have
    // taken it and be killing the process: do not run past the section.
    if COUNT.load(SeqCst) & DYING != 0 {
        wait_for_the_end();
    }
}

/// Sends the deferred signal `i` again, with its saved `siginfo_t` when
/// there is one: to this thread if it does not block the signal (so the
/// handler runs before this returns and, for a fatal signal, the code after
/// the critical section never runs), else to the process.
fn redeliver(i: usize) {
    let sig = SIGNALS[i];
    let info = SAVED[i].take();
    if blocked_here(sig) {
        if info
            .as_ref()
            .is_some_and(|info| queue_to_process(sig, info))
        {
            return;
        }
        kill_self(sig);
    } else {
        if info
            .as_ref()
            .is_some_and(|info| queue_to_this_thread(sig, info))
        {
            return;
        }
        raise(sig);
    }
}

// ---------------------------------------------------------------------------
// Installation and the watchdog.

fn install() {
    let mut prev = [None; 3];
    for (slot, &sig) in prev.iter_mut().zip(SIGNALS.iter()) {
        if let Some(old) = get_action(sig) {
            // An ignored signal stays ignored, and stays so across `exec`
            // (which a caught signal would not): mapstate leaves it alone.
            if old.sa_sigaction != libc::SIG_IGN {
                *slot = Some(old);
            }
        }
    }
    if prev.iter().all(Option::is_none) {
        let _ = PREV.set(prev);
        return;
    }
    // The watchdog must never take these signals from the program's threads
    // (a program that reads them from a signalfd blocks them everywhere), so
    // it starts with them blocked: a new thread inherits its creator's mask.
    let old_mask = block_all();
    let spawned = std::thread::Builder::new()
        .name("mapstate-signals".into())
        .spawn(watchdog);
    set_mask(&old_mask);
    if spawned.is_err() {
        // Without a watchdog a stuck section could make the process
        // unkillable by SIGTERM: defer nothing rather than that.
        let _ = PREV.set([None; 3]);
        return;
    }
    let _ = PREV.set(prev);
    for (old, &sig) in prev.iter().zip(SIGNALS.iter()) {
        if let Some(old) = old {
            let inherited = if is_user_handler(old) {
                old.sa_flags & (libc::SA_RESTART | libc::SA_ONSTACK)
            } else {
                libc::SA_RESTART
            };
            set_action(sig, handler_address(), libc::SA_SIGINFO | inherited);
        }
    }
}

fn is_user_handler(a: &libc::sigaction) -> bool {
    a.sa_sigaction != libc::SIG_DFL && a.sa_sigaction != libc::SIG_IGN
}

fn wake_watchdog() {
    // The count is a signed int to the kernel: i32::MAX means all (u32::MAX would be -1: one).
    let _ = rustix::thread::futex::wake(
        &PENDING,
        rustix::thread::futex::Flags::PRIVATE,
        i32::MAX as u32,
    );
}

fn wait_watchdog(expected: u32, timeout: Option<Duration>) {
    use rustix::thread::futex;
    let ts = timeout.map(|d| futex::Timespec {
        tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        tv_nsec: i64::from(d.subsec_nanos()),
    });
    // Every outcome (woken, value changed, EINTR, timeout) means "look again".
    let _ = futex::wait(&PENDING, futex::Flags::PRIVATE, expected, ts.as_ref());
}

/// Waits for deferrals; forces one through when it has waited out the
/// deadline with a section still open.
fn watchdog() {
    // The episode being timed and when the watchdog first saw it.
    let mut timing: Option<(u32, Instant)> = None;
    loop {
        let w = PENDING.load(SeqCst);
        if w & BITS == 0 {
            timing = None;
            wait_watchdog(w, None);
            continue;
        }
        let episode = w & !BITS;
        let start = match timing {
            Some((e, t)) if e == episode => t,
            _ => {
                let t = Instant::now();
                timing = Some((episode, t));
                t
            }
        };
        let left = deadline().saturating_sub(start.elapsed());
        if !left.is_zero() {
            wait_watchdog(w, Some(left));
            continue;
        }
        // Deadline passed: take this episode's bits unless they changed
        // (a dropper took them, or another signal joined: look again).
        if PENDING.compare_exchange(w, episode, SeqCst, SeqCst).is_ok() {
            for i in 0..SIGNALS.len() {
                if w & bit(i) != 0 {
                    force(i);
                }
            }
        }
    }
}

/// Delivers signal `i` now although a section is open: marks it forced,
/// queues it to this (watchdog) thread, which blocks it, then unblocks it
/// so the handler runs here, before `pthread_sigmask` returns.
fn force(i: usize) {
    let sig = SIGNALS[i];
    FORCE.fetch_or(bit(i), SeqCst);
    let info = SAVED[i].take();
    if !info
        .as_ref()
        .is_some_and(|info| queue_to_this_thread(sig, info))
    {
        raise(sig);
    }
    let set = sigset(&[sig]);
    change_mask(libc::SIG_UNBLOCK, &set);
    change_mask(libc::SIG_BLOCK, &set);
}

// ---------------------------------------------------------------------------
// The handler.

fn handler_address() -> libc::sighandler_t {
    on_signal as extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void) as libc::sighandler_t
}

extern "C" fn on_signal(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    handle(sig, info, ctx);
    set_errno(errno);
}

fn handle(sig: c_int, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let Some(i) = index_of(sig) else { return };
    let b = bit(i);
    if FORCE.fetch_and(!b, SeqCst) & b != 0 {
        forward(i, info, ctx);
        return;
    }
    let fatal = acts_as_default(i);
    if try_claim(fatal) {
        forward(i, info, ctx);
        return;
    }
    SAVED[i].save(info);
    loop {
        record(b);
        // Re-check: the last section may have closed before it could see
        // our bit. If one is still open, its close will see it.
        if COUNT.load(SeqCst) & !DYING != 0 {
            return;
        }
        // None open: deliver ourselves, unless a dropper takes the bit first.
        // A fatal signal claims the process's death *before* taking the bit,
        // so that a dropper that saw the bit but lost it to us finds `DYING`
        // and stops there instead of running past its section. If the claim
        // fails, a section opened meanwhile: its close will see the bit.
        if fatal && !try_claim(true) {
            return;
        }
        if PENDING.fetch_and(!b, SeqCst) & b == 0 {
            return; // a dropper took it and delivers it
        }
        if fatal || try_claim(false) {
            let _ = SAVED[i].take();
            forward(i, info, ctx);
            return;
        }
        // A section opened in between: defer again.
    }
}

/// Whether no section is open, so the signal may act now. For a fatal
/// (default) action this also sets `DYING`, so none can open afterwards.
fn try_claim(fatal: bool) -> bool {
    if fatal {
        COUNT
            .fetch_update(SeqCst, SeqCst, |c| (c & !DYING == 0).then_some(c | DYING))
            .is_ok()
    } else {
        COUNT.load(SeqCst) & !DYING == 0
    }
}

/// Sets bit `b` in `PENDING` (starting a new episode if the set was empty)
/// and wakes the watchdog.
fn record(b: u32) {
    let mut cur = PENDING.load(Relaxed);
    loop {
        let new = if cur & BITS == 0 {
            (cur & !BITS).wrapping_add(EPISODE_ONE) | b
        } else {
            cur | b
        };
        match PENDING.compare_exchange_weak(cur, new, SeqCst, Relaxed) {
            Ok(_) => break,
            Err(v) => cur = v,
        }
    }
    wake_watchdog();
}

fn prev_action(i: usize) -> Option<libc::sigaction> {
    PREV.get().and_then(|p| p[i])
}

/// Whether forwarding signal `i` means its default action.
fn acts_as_default(i: usize) -> bool {
    match prev_action(i) {
        None => true,
        Some(a) if a.sa_sigaction == libc::SIG_DFL => true,
        Some(a) => a.sa_flags & libc::SA_RESETHAND != 0 && RESET_DONE.load(SeqCst) & bit(i) != 0,
    }
}

/// Gives signal `i` the effect its previous disposition would have had.
/// Runs in the handler, with the signal blocked in this thread.
fn forward(i: usize, info: *mut libc::siginfo_t, ctx: *mut c_void) {
    let sig = SIGNALS[i];
    let Some(prev) = prev_action(i) else {
        die(sig);
        return;
    };
    match prev.sa_sigaction {
        libc::SIG_DFL => die(sig),
        libc::SIG_IGN => {}
        h => {
            if prev.sa_flags & libc::SA_RESETHAND != 0
                && RESET_DONE.fetch_or(bit(i), SeqCst) & bit(i) != 0
            {
                die(sig);
                return;
            }
            // What the kernel would have done for this handler: block its
            // mask (and the signal itself unless SA_NODEFER) while it runs.
            // The mask in force before the signal is restored on return.
            change_mask(libc::SIG_BLOCK, &prev.sa_mask);
            if prev.sa_flags & libc::SA_NODEFER != 0 {
                change_mask(libc::SIG_UNBLOCK, &sigset(&[sig]));
            }
            call_user_handler(h, prev.sa_flags & libc::SA_SIGINFO != 0, sig, info, ctx);
        }
    }
}

/// The default action of a terminating signal: restore `SIG_DFL` and raise
/// it. The signal is blocked while the handler runs, so it stays pending and
/// kills the process as the handler returns.
fn die(sig: c_int) {
    COUNT.fetch_or(DYING, SeqCst);
    set_action(sig, libc::SIG_DFL, 0);
    raise(sig);
}

/// Calls `prev`, a user handler (neither `SIG_DFL` nor `SIG_IGN`), as the
/// kernel would have for `sig`: with its mask blocked (and `sig` unblocked
/// if it asked for `SA_NODEFER`), after restoring `SIG_DFL` if it asked for
/// `SA_RESETHAND`. Used by the extend-on-write handler for faults that are
/// not its own.
pub(super) fn call_previous(
    prev: &libc::sigaction,
    sig: c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut c_void,
) {
    if prev.sa_flags & libc::SA_RESETHAND != 0 {
        set_action(sig, libc::SIG_DFL, 0);
    }
    change_mask(libc::SIG_BLOCK, &prev.sa_mask);
    if prev.sa_flags & libc::SA_NODEFER != 0 {
        change_mask(libc::SIG_UNBLOCK, &sigset(&[sig]));
    }
    call_user_handler(
        prev.sa_sigaction,
        prev.sa_flags & libc::SA_SIGINFO != 0,
        sig,
        info,
        ctx,
    );
}

fn call_user_handler(
    h: libc::sighandler_t,
    siginfo: bool,
    sig: c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut c_void,
) {
    if siginfo {
        type Action = unsafe extern "C" fn(c_int, *mut libc::siginfo_t, *mut c_void);
        // SAFETY: `h` is the `sa_sigaction` of a disposition this process
        // installed with SA_SIGINFO (and is neither SIG_DFL nor SIG_IGN), so
        // by the sigaction contract it is the address of a function of this
        // type; function pointers and `usize` have the same size here.
        let f = unsafe { std::mem::transmute::<libc::sighandler_t, Action>(h) };
        // SAFETY: the function expects exactly what the kernel passes a
        // SA_SIGINFO handler, and we pass what the kernel passed us for this
        // signal (or the siginfo of its original delivery), from a handler
        // context, as it would have been called without mapstate.
        unsafe { f(sig, info, ctx) };
    } else {
        type Handler = unsafe extern "C" fn(c_int);
        // SAFETY: as above, for a disposition installed without SA_SIGINFO,
        // whose `sa_handler` (the same field) takes the signal number only.
        let f = unsafe { std::mem::transmute::<libc::sighandler_t, Handler>(h) };
        // SAFETY: called with the signal number, from a handler context, as
        // the kernel would have.
        unsafe { f(sig) };
    }
}

// ---------------------------------------------------------------------------
// The saved siginfo of a deferred signal.

const EMPTY: u8 = 0;
const BUSY: u8 = 1;
const FULL: u8 = 2;

/// One `siginfo_t`, guarded by `state`: only the party that moved it
/// `EMPTY -> BUSY` writes the bytes (then publishes `FULL`); only the party
/// that moved it `FULL -> BUSY` reads them (then releases `EMPTY`). Nobody
/// waits for `BUSY`: a handler that finds the slot busy does without it.
struct InfoSlot {
    state: AtomicU8,
    info: UnsafeCell<MaybeUninit<libc::siginfo_t>>,
}

// SAFETY: the bytes are only accessed by the one party that owns the slot
// through the `state` protocol above (acquire on taking, release on
// handing over), so shared use from several threads never races.
unsafe impl Sync for InfoSlot {}

impl InfoSlot {
    const fn new() -> Self {
        Self {
            state: AtomicU8::new(EMPTY),
            info: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// Keeps a copy of `info` unless the slot is already in use.
    fn save(&self, info: *const libc::siginfo_t) {
        if info.is_null()
            || self
                .state
                .compare_exchange(EMPTY, BUSY, Acquire, Relaxed)
                .is_err()
        {
            return;
        }
        // SAFETY: `info` is the non-null siginfo the kernel passed to this
        // SA_SIGINFO handler, valid for reads for the handler's duration;
        // the destination is our slot, owned exclusively after the
        // EMPTY -> BUSY exchange; the two cannot overlap.
        unsafe { ptr::copy_nonoverlapping(info, self.info.get().cast::<libc::siginfo_t>(), 1) };
        self.state.store(FULL, Release);
    }

    /// Takes the saved copy, if any.
    fn take(&self) -> Option<MaybeUninit<libc::siginfo_t>> {
        if self
            .state
            .compare_exchange(FULL, BUSY, Acquire, Relaxed)
            .is_err()
        {
            return None;
        }
        // SAFETY: after the FULL -> BUSY exchange we own the slot, and its
        // bytes were written completely before FULL was released. Reading a
        // `MaybeUninit` never asserts initialisation.
        let info = unsafe { self.info.get().read() };
        self.state.store(EMPTY, Release);
        Some(info)
    }
}

// ---------------------------------------------------------------------------
// Thin wrappers over the kernel (all async-signal-safe).

pub(super) fn set_errno(e: c_int) {
    // SAFETY: `__errno_location` has no preconditions; it returns this
    // thread's errno slot.
    let p = unsafe { libc::__errno_location() };
    // SAFETY: `p` is valid for writes for the life of the thread.
    unsafe { p.write(e) };
}

pub(super) fn get_action(sig: c_int) -> Option<libc::sigaction> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is a valid, writable
    // `struct sigaction` that outlives the call.
    let r = unsafe { libc::sigaction(sig, ptr::null(), old.as_mut_ptr()) };
    // SAFETY: on success the kernel filled `old`; and a zeroed sigaction is
    // a valid value anyway (SIG_DFL, empty mask, no flags).
    (r == 0).then(|| unsafe { old.assume_init() })
}

/// Installs `handler` (an address or `SIG_DFL`) for `sig` with `flags` and an
/// empty `sa_mask`.
pub(super) fn set_action(sig: c_int, handler: libc::sighandler_t, flags: c_int) {
    let act = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: all-zero bytes are a valid `sigaction` (SIG_DFL, no flags, a
    // null restorer that libc replaces); the set is then emptied properly.
    let mut act = unsafe { act.assume_init() };
    act.sa_sigaction = handler;
    act.sa_flags = flags;
    act.sa_mask = sigset(&[]);
    // SAFETY: `act` is a valid `struct sigaction` that outlives the call;
    // the handler address is either SIG_DFL or `on_signal`, whose signature
    // is the SA_SIGINFO one that `flags` then includes.
    let _ = unsafe { libc::sigaction(sig, &raw const act, ptr::null_mut()) };
}

fn sigset(sigs: &[c_int]) -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: `sigemptyset` initialises the whole set it points to.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    // SAFETY: initialised by `sigemptyset` just above.
    let mut set = unsafe { set.assume_init() };
    for &s in sigs {
        // SAFETY: `set` is a valid, initialised set; `s` is a valid signal.
        unsafe { libc::sigaddset(&raw mut set, s) };
    }
    set
}

fn change_mask(how: c_int, set: &libc::sigset_t) {
    // SAFETY: `set` is a valid set; a null old set is allowed.
    let _ = unsafe { libc::pthread_sigmask(how, set, ptr::null_mut()) };
}

/// Blocks the three signals in this thread; returns the mask before.
fn block_all() -> libc::sigset_t {
    let set = sigset(&SIGNALS);
    let mut old = sigset(&[]);
    // SAFETY: both sets are valid and outlive the call.
    let _ = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &raw const set, &raw mut old) };
    old
}

fn set_mask(set: &libc::sigset_t) {
    change_mask(libc::SIG_SETMASK, set);
}

/// Whether the calling thread blocks `sig`.
fn blocked_here(sig: c_int) -> bool {
    let mut cur = sigset(&[]);
    // SAFETY: a null new set only queries; `cur` is valid and writable.
    let r = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, ptr::null(), &raw mut cur) };
    // SAFETY: `cur` is a valid, initialised set.
    r == 0 && unsafe { libc::sigismember(&raw const cur, sig) } == 1
}

/// `raise(sig)`: to the calling thread.
pub(super) fn raise(sig: c_int) {
    // SAFETY: `raise` has no memory preconditions.
    let _ = unsafe { libc::raise(sig) };
}

/// `kill(getpid(), sig)`: to the process (any thread not blocking it).
fn kill_self(sig: c_int) {
    // SAFETY: `getpid` has no preconditions and cannot fail.
    let pid = unsafe { libc::getpid() };
    // SAFETY: `kill` has no memory preconditions.
    let _ = unsafe { libc::kill(pid, sig) };
}

/// `rt_tgsigqueueinfo(getpid(), gettid(), sig, info)`: the signal with its
/// original siginfo, to the calling thread (the kernel allows any `si_code`
/// when a thread signals itself). Returns whether it was queued.
fn queue_to_this_thread(sig: c_int, info: &MaybeUninit<libc::siginfo_t>) -> bool {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    let tid = rustix::thread::gettid().as_raw_nonzero().get();
    // SAFETY: the kernel reads one `siginfo_t` from `info`, which holds the
    // bytes of one the kernel produced, and writes nothing.
    let r = unsafe { libc::syscall(libc::SYS_rt_tgsigqueueinfo, pid, tid, sig, info.as_ptr()) };
    r == 0
}

/// `rt_sigqueueinfo(getpid(), sig, info)`: to the process. The kernel only
/// accepts a sender-style `si_code` from the main thread; elsewhere this
/// fails and the caller falls back to `kill`.
fn queue_to_process(sig: c_int, info: &MaybeUninit<libc::siginfo_t>) -> bool {
    let pid = rustix::process::getpid().as_raw_nonzero().get();
    // SAFETY: as in `queue_to_this_thread`.
    let r = unsafe { libc::syscall(libc::SYS_rt_sigqueueinfo, pid, sig, info.as_ptr()) };
    r == 0
}
