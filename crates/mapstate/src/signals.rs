//! Graceful termination: defer SIGTERM, SIGINT and SIGHUP during critical
//! sections.
//!
//! A program killed in the middle of a commit loses nothing (commits are
//! crash-safe), but it loses the work of that commit and pays recovery on the
//! next start. [`defer_termination`] opens a critical section: while any
//! section is open, in any thread, SIGTERM, SIGINT and SIGHUP are held back;
//! when the last one closes, a signal that arrived meanwhile takes its normal
//! effect. mapstate opens one around each commit, and programs can open their
//! own around work that should not be cut in half.
//!
//! ```
//! use std::time::Duration;
//! use mapstate::signals;
//!
//! signals::set_deadline(Duration::from_secs(5));
//! {
//!     let _section = signals::defer_termination();
//!     // ... a SIGTERM arriving here waits for the end of the block ...
//!     if signals::pending().is_some() {
//!         // ... so long work can check and wind down early.
//!     }
//! } // <- here the SIGTERM, if any, takes effect (by default: the process exits)
//! ```
//!
//! # The normal effect
//!
//! On first use mapstate installs a handler for the three signals, keeping
//! the disposition each had before. A signal that arrives with no section
//! open, or that is released when the last section closes, gets exactly that
//! disposition's effect:
//! - **default**: the process is killed by the signal (its parent sees it
//!   terminated by that signal number, as without mapstate). Once that is
//!   decided no new section opens: a thread calling [`defer_termination`]
//!   then waits for the end of the process instead of starting work that
//!   would be cut;
//! - **a handler** installed before (`sa_handler`, or `sa_sigaction` with
//!   `SA_SIGINFO`): it is called, in signal context, with the signal's
//!   original `siginfo_t` (sender pid and all), under its own `sa_mask`;
//!   `SA_RESETHAND` and `SA_NODEFER` are honoured;
//! - **ignored**: mapstate does not touch the signal at all; it stays ignored
//!   (and ignored in programs started with `exec`).
//!
//! A released signal is delivered to the thread that closed the last
//! section, before the guard's drop returns, so with the default action the
//! code after the section never runs. (If that thread blocks the signal, it
//! goes to the process instead, as the original did. A signal that arrives
//! while the last section is closing may instead take effect on the thread
//! that received it, as if it had arrived just after the section.)
//!
//! Repeats of one signal while it is held back coalesce into one, as the
//! kernel's own pending signals do; different signals are each delivered,
//! SIGHUP first, then SIGINT, then SIGTERM.
//!
//! # The deadline
//!
//! A stuck section must not make the process unkillable by SIGTERM: if a
//! held-back signal has waited [`set_deadline`] (10 s by default) and a
//! section is still open, it takes effect anyway (from a watchdog thread that
//! mapstate starts on first use, with the three signals blocked so it never
//! takes them from the program's own threads).
//!
//! # Limits
//!
//! - Install your own handlers for these signals *before* the first call to
//!   [`defer_termination`] (mapstate forwards to what it found then); a
//!   handler installed later replaces mapstate's, and that signal is no
//!   longer deferred.
//! - Signals are process-wide: deferral applies to every thread, and a
//!   program that blocks the signals and reads them with `sigwait` or a
//!   `signalfd` never sees mapstate's handler run (nor needs it).
//! - After `fork`, the child has the parent's count of open sections (the
//!   forking thread's guards are copied) but no watchdog thread.
//! - SIGKILL and SIGSTOP cannot be deferred by anyone.

use std::time::Duration;

use crate::sys::signals as sys;

/// Opens a critical section: until the returned guard (and every other open
/// one, in any thread) is dropped, SIGTERM, SIGINT and SIGHUP are held back.
///
/// The first call installs the signal handlers and starts the watchdog
/// thread; every later call is one atomic increment (and the drop one atomic
/// decrement and one load), with no system call and no allocation.
///
/// Sections nest and may be opened from any thread; only the close of the
/// last open one releases a held-back signal.
#[inline]
#[must_use = "the critical section ends when the guard is dropped"]
pub fn defer_termination() -> DeferGuard {
    sys::enter();
    DeferGuard { _private: () }
}

/// An open critical section (see [`defer_termination`]); dropping it closes
/// the section. If it was the last one open and a signal was held back, the
/// signal takes its normal effect during the drop, in the dropping thread.
#[derive(Debug)]
#[must_use = "the critical section ends when the guard is dropped"]
pub struct DeferGuard {
    _private: (),
}

impl Drop for DeferGuard {
    #[inline]
    fn drop(&mut self) {
        sys::exit();
    }
}

/// Sets how long a held-back signal may wait for the open sections to close
/// before it takes effect anyway (default 10 s). Applies to a signal already
/// waiting, counted from when it arrived. `Duration::ZERO` makes signals take
/// effect at once (no deferral); `Duration::MAX` waits forever.
pub fn set_deadline(d: Duration) {
    sys::set_deadline(d);
}

/// The current deadline (see [`set_deadline`]).
pub fn deadline() -> Duration {
    sys::deadline()
}

/// The signal being held back, if any: a program can check this in long work
/// and wind down early. If several are, SIGTERM is reported before SIGINT,
/// and SIGINT before SIGHUP.
pub fn pending() -> Option<i32> {
    sys::pending()
}

/// Puts mapstate's SIGSEGV and SIGBUS handler back in front, after the
/// program installed handlers of its own for them.
///
/// Extend-on-write (`Txn::extend_on_write`, `MapOptions::extend_on_write`)
/// grows files from a process-wide handler of SIGSEGV and SIGBUS, installed
/// when the first growable region is made; it passes every fault outside
/// mapstate's regions, and every SIGSEGV or SIGBUS that a process sends
/// (`kill -SEGV`: `si_code` of zero or less), to the disposition that was in
/// place before it (by default: death, with a core dump). A program that
/// installs its own handler *after* that takes the growth faults itself,
/// and a store past the mapped part then crashes (or loops in the
/// program's handler). Call this after installing yours: yours becomes the
/// disposition mapstate passes the other faults to. Nothing happens if no
/// growable region was ever made. The C API has the same call,
/// `mapstate_reinstall_fault_handler()`.
pub fn reinstall_fault_handler() {
    crate::sys::grow::reinstall();
}
