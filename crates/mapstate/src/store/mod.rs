//! The store: the files of a state and what every process maps. The four
//! pieces of the design, each in its own file:
//!
//! - the **durable image** ([`durable`], the file the user names):
//!   consistent on disk as of the last checkpoint, changed only by
//!   [`checkpoint`]s, through the [`journal`];
//! - the **redo log** ([`log`]): each commit appends its changed ranges
//!   with a sequence number and a checksum chained to the previous record;
//! - the **live image** ([`live`]): the committed state now, on tmpfs,
//!   which every process maps; readers validate copies with its
//!   [`seqlock`], waiters sleep on its [`notify_word`], and its [`ring`]
//!   says which bytes each recent commit changed;
//! - the **writer's view** ([`view`]): the live image mapped
//!   `MAP_PRIVATE`, which transactions change with plain stores.
//!
//! Around them: [`files`] names the files, [`lock`] holds the writer and
//! build locks, [`recovery`] opens a consistent store after any crash,
//! [`pages`] tracks what the next checkpoint writes, [`syncer`] syncs
//! the log in the background for `Durability::Periodic`, and [`handover`]
//! tells readers when the live image commits go to may have changed.
//!
//! Inside the store, dependencies point one way (`tests/layers.rs` checks
//! it): `seqlock`, `ring`, `notify_word`, `pages`, `files` and `handover`
//! use nothing
//! of the store; `durable`, `log`, `lock` and `syncer` use those; `journal`
//! and `live` use the durable image and the log; `view` and `checkpoint`
//! use the live image; `recovery` uses everything.

pub(crate) mod checkpoint;
pub(crate) mod durable;
pub(crate) mod files;
pub(crate) mod handover;
pub(crate) mod journal;
pub(crate) mod live;
pub(crate) mod lock;
pub(crate) mod log;
pub(crate) mod notify_word;
pub(crate) mod pages;
pub(crate) mod recovery;
pub(crate) mod ring;
pub(crate) mod seqlock;
pub(crate) mod syncer;
pub(crate) mod view;

pub use files::StateFiles;
