//! mapstate: a memory-mapped file made safe to use as a Linux program's
//! persistent state.
//!
//! This crate root only re-exports; each module is one concept:
//! - [`map`](crate::Mapping): a file mapped at a stable address inside a
//!   reserved range, with every mmap knob (msync, madvise, mlock, mprotect,
//!   populate, `MAP_SYNC`) behind safe, checked methods;
//! - [`Offset`]: typed relative pointers that stay valid across growth;
//! - [`Error`]: typed errors that carry the path, the operation and the errno.
//!
//! All system calls live in one private `sys` module, the only place with
//! `unsafe` code; `docs/SOUNDNESS.md` argues why the safe API is sound.
//!
//! ```
//! # fn main() -> mapstate::Result<()> {
//! use mapstate::{Mapping, Offset};
//! let dir = tempfile::tempdir().unwrap();
//! let mut m = Mapping::options().create(true).len(4096).open(dir.path().join("counter"))?;
//! let hits: Offset<u64> = Offset::new(0);
//! let n = m.read(hits)?;
//! m.write(hits, &(n + 1))?;
//! let base = m.as_ptr();
//! m.grow_to(1 << 20)?; // grows the file with fallocate: no SIGBUS on a full disk
//! assert_eq!(m.as_ptr(), base); // at the same address
//! # Ok(()) }
//! ```
#![deny(unsafe_code)]

mod durable;
mod error;
mod format;
mod group;
mod live;
mod log;
mod map;
mod notify;
mod offset;
mod probe;
mod region;
pub mod signals;
mod sys;

pub use error::{Error, Result};
pub use group::SharedWriter;
pub use map::{DEFAULT_RESERVATION, MAX_RESERVATION, MapOptions, MapSync, Mapping};
#[cfg(feature = "tokio")]
pub use notify::ChangeStream;
pub use notify::{Change, Changes, Event, Watcher};
pub use offset::Offset;
pub use probe::{MapSyncSupport, probe_map_sync};
pub use region::{Durability, Options, Reader, Txn, Writer, remove};
pub use sys::{Advice, Discard, Flush, Protection};

/// Hooks for crash tests (`mapstate torture`); not part of the stable API.
#[doc(hidden)]
pub mod testing {
    /// Kills this process with SIGKILL when a commit, checkpoint or recovery
    /// reaches numbered `step` for the `nth` time (see `docs/DESIGN.md`).
    pub fn crash_at(step: u32, nth: u64) {
        crate::sys::crash::arm(step, nth, 9);
    }

    /// Makes every `fdatasync`/`fsync` after the next `n` successful ones
    /// fail with EIO, as a dying disk would.
    pub fn fail_syncs_after(n: u64) {
        crate::sys::sync_hooks::fail_after(n);
    }

    /// Calls `f(fd, before)` before (`true`) and after (`false`) every
    /// `fdatasync`/`fsync` mapstate makes; `None` removes it.
    #[allow(clippy::type_complexity)]
    pub fn observe_syncs(f: Option<Box<dyn FnMut(i32, bool) + Send>>) {
        crate::sys::sync_hooks::observe(f);
    }

    /// Removes the sync hooks.
    pub fn disarm_syncs() {
        crate::sys::sync_hooks::disarm();
    }

    /// Makes the userfaultfd write tracker unavailable, as on a kernel
    /// before 6.7: free stores are then found by comparing the view with
    /// the live image.
    pub fn disable_write_tracking() {
        crate::sys::uffd::DISABLED.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Sends `signal` to this process when a commit reaches `step` for the
    /// `nth` time (to show that termination signals wait for the commit).
    pub fn signal_at(step: u32, nth: u64, signal: u32) {
        crate::sys::crash::arm(step, nth, signal);
    }
}

/// The README's example, compiled by `cargo test --doc` (not run: it would
/// leave `state.db` in the crate's directory), so that what users copy
/// first builds against this version.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
