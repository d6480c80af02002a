//! The project's documents and a cookbook of whole programs, in the
//! generated docs (the same files as in the repository, included at build
//! time, so the two never differ).
//!
//! - [`readme`]: what mapstate is, **the guarantee table** (what survives a
//!   process crash, an OS crash and a power cut in each durability mode),
//!   the benchmarks' summary.
//! - [`cookbook`]: whole programs for the common jobs, each run by
//!   `cargo test` and by `cargo run -p mapstate --example NAME`.
//! - [`design`]: the files, the commit, checkpoint and recovery paths step
//!   by step, and what a crash at each step leaves.
//! - [`soundness`]: why the safe API is sound over memory that other
//!   processes change (the mapping model).
//! - [`security`]: what another local user can and cannot do to a state.
//!
//! The durability modes themselves are [`Durability`](crate::Durability)'s
//! variants.
// The documents are Markdown for people (GitHub shows the same files), not
// rustdoc prose: names in them are not code items.
#![allow(clippy::doc_markdown)]

pub mod readme {
    #![doc = include_str!("../../../README.md")]
}

pub mod design {
    #![doc = include_str!("../../../docs/DESIGN.md")]
}

pub mod soundness {
    #![doc = include_str!("../../../docs/SOUNDNESS.md")]
}

pub mod security {
    #![doc = include_str!("../../../docs/SECURITY.md")]
}

pub mod cookbook {
    //! Whole programs, each a file in `crates/mapstate/examples/`: run one
    //! with `cargo run -p mapstate --example NAME`. `cargo test` runs every
    //! one of them (this page's code blocks are those files).
    //!
    //! # A program's settings (`settings`)
    //!
    //! A `#[repr(C)]` struct edited in place and committed whole; any
    //! process reads a consistent copy.
    //!
    //! ```
    #![doc = include_str!("../examples/settings.rs")]
    //! ```
    //!
    //! # An append-only log with a follower (`append_log`)
    //!
    //! A commit per record, the file growing as records come; a follower
    //! sleeps until each commit and reads what is new.
    //!
    //! ```
    #![doc = include_str!("../examples/append_log.rs")]
    //! ```
    //!
    //! # A counter shared by many threads (`counter`)
    //!
    //! One [`SharedWriter`](crate::SharedWriter), eight threads, a durable
    //! commit per increment, and group commit sharing the `fdatasync`s.
    //!
    //! ```
    #![doc = include_str!("../examples/counter.rs")]
    //! ```
    //!
    //! # Push notification for a byte range (`watcher`)
    //!
    //! A [`Watcher`](crate::Watcher) delivers the commits that touch the
    //! range a part of the program cares about.
    //!
    //! ```
    #![doc = include_str!("../examples/watcher.rs")]
    //! ```
    //!
    //! # An async stream in a tokio program (`tokio_stream`)
    //!
    //! [`ChangeStream`](crate::ChangeStream), with the `tokio` feature
    //! (`cargo run -p mapstate --features tokio --example tokio_stream`).
    //!
    #![cfg_attr(feature = "tokio", doc = "```")]
    #![cfg_attr(not(feature = "tokio"), doc = "```ignore")]
    #![doc = include_str!("../examples/tokio_stream.rs")]
    //! ```
    //!
    //! # A C program ported from `shmat(SHM_MAP)`
    //!
    //! AIX programs that map a file with `shmat(fd, 0, SHM_MAP)`, store into
    //! it and `shmdt` it get crash safety from the C API's attach calls with
    //! one change per call; `crates/mapstate-capi/examples/shmat_port.c`
    //! (compiled and run by the C API's tests) shows the port, and
    //! `crates/mapstate-capi/README.md` the whole C API.
    //!
    //! ```c
    #![doc = include_str!("../../mapstate-capi/examples/shmat_port.c")]
    //! ```
}
