//! mapstate: a memory-mapped file made safe to use as a Linux program's
//! persistent state. A program changes its state with plain stores or
//! explicit writes, commits, and every other process sees the commit at
//! once, whole: a SIGKILL at any instruction never tears the state and
//! never loses a commit that returned, and a power cut never tears it
//! either ([`Durability`] says how many recent commits it may take).
//!
//! ```
//! # fn main() -> mapstate::Result<()> {
//! use mapstate::{Offset, Reader, Writer};
//! # let dir = tempfile::tempdir().unwrap();
//! # let path = dir.path().join("state.db");
//! // The writer: one per state, in any process.
//! let mut w = Writer::options().create(true).len(1 << 20).open(&path)?;
//! let counter: Offset<u64> = Offset::new(64);
//! let mut t = w.begin();
//! t.write_at(0, b"hello")?;            // an explicit change
//! *t.get_mut(counter)? += 1;           // a typed one (zerocopy types)
//! t.as_mut_slice()[4096] = 7;          // a free store, found at commit
//! let seq = t.commit()?;               // all or nothing, visible to everyone
//!
//! // A reader, here or in another process: consistent copies, and a wait
//! // for the next commit that sleeps on a futex in the shared file.
//! let r = Reader::open(&path)?;
//! assert_eq!(r.read(counter)?, 1);
//! assert_eq!(r.wait_for_change(seq - 1, None)?, Some(seq));
//! # w.remove()?; // and its live image in /dev/shm
//! # Ok(()) }
//! ```
//!
//! # The pieces
//!
//! A state is four images (`docs/DESIGN.md` has the whole design, the
//! commit and recovery steps, and what a crash at each leaves):
//! - the **durable image**, the file the user names, consistent on disk as
//!   of the last checkpoint;
//! - the **redo log** beside it, which every commit appends to;
//! - the **live image** on tmpfs, the committed state now, which every
//!   process maps ([`Reader`]);
//! - the **writer's view**, a private copy-on-write mapping of the live
//!   image that a transaction ([`Txn`]) changes, so a killed writer leaves
//!   the shared state untouched.
//!
//! [`StateFiles`] names the files. [`SharedWriter`] shares one writer
//! between threads with group commit; [`Watcher`] (and `ChangeStream` with
//! the `tokio` feature) deliver change events inside a process;
//! [`Mapping`] is a plain file mapping with every mmap knob behind safe
//! methods and extend-on-write.
//!
//! # Soundness
//!
//! All system calls and every `unsafe` block live in one private `sys`
//! module. Readers never get references into memory another process may
//! change: they get copies validated by a sequence lock, or raw pointers.
//! [`docs::soundness`] argues why the safe API is sound.
#![deny(unsafe_code)]

// The layers, lowest first; a module imports only from layers below it
// (`tests/layers.rs` checks this):
// 1. sys, error, docs (documents only)
// 2. testing, filesystem, format, offset, change, signals, mtime, live_image,
//    backoff
// 3. fs, options
// 4. map, then probe
// 5. store (the four images; layered inside, see store/mod.rs)
// 6. writer, then txn (its transactions) and reader
// 7. shared, notify
mod backoff;
mod change;
pub mod docs;
mod error;
mod filesystem;
mod format;
mod fs;
mod live_image;
mod map;
mod mtime;
mod notify;
mod offset;
mod options;
mod probe;
mod reader;
mod shared;
pub mod signals;
mod store;
mod sys;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(not(feature = "testing"))]
#[allow(dead_code, unreachable_pub)]
mod testing;
mod txn;
mod writer;

pub use change::{Change, Commit, Event};
pub use error::{Error, Result};
pub use filesystem::{Filesystem, FsClass};
pub use fs::MAX_RESERVATION;
pub use live_image::{LiveImage, Rebuilt};
pub use map::{MapOptions, MapSync, Mapping};
#[cfg(feature = "tokio")]
pub use notify::ChangeStream;
pub use notify::Watcher;
pub use offset::Offset;
pub use options::{DEFAULT_RESERVATION, Durability, ReaderOptions, WriterOptions};
pub use probe::{MapSyncSupport, probe_map_sync};
pub use reader::{Changes, CommitsSince, Reader};
pub use shared::SharedWriter;
pub use store::StateFiles;
pub use sys::{Advice, Discard, Flush, Protection};
pub use txn::Txn;
pub use writer::Writer;
/// The `zerocopy` crate whose traits [`Txn::get`], [`Txn::get_mut`] and
/// [`Reader::read`] ask of a type, re-exported so that a program needs no
/// copy of its own (nor has to match its version). Its derives name the
/// crate `::zerocopy` unless told otherwise, so derive through the
/// re-export with `#[zerocopy(crate = "mapstate::zerocopy")]`:
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use mapstate::zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
/// use mapstate::{Offset, Reader, Writer};
///
/// #[derive(FromBytes, IntoBytes, KnownLayout, Immutable)]
/// #[zerocopy(crate = "mapstate::zerocopy")]
/// #[repr(C)]
/// struct Settings {
///     version: u64,
///     threads: u32,
///     verbose: u32,
/// }
///
/// let path = dir.path().join("settings");
/// let mut w = Writer::options().create(true).len(4096).open(&path)?;
/// let at = Offset::<Settings>::new(0);
/// let mut t = w.begin();
/// let s = t.get_mut(at)?;
/// s.version = 2;
/// s.threads = 8;
/// t.commit()?;
/// assert_eq!(Reader::open(&path)?.read(at)?.threads, 8);
/// # Ok(())
/// # }
/// ```
pub use zerocopy;
