//! The handover counter: a word in the durable file's header page (outside
//! both header slots, `format::HANDOVERS`) that moves on whenever the live
//! image commits go to may change: when a writer opens, and when a new
//! shared live image replaces the one in place. Readers map the page
//! read-only and compare the word on every read: one load says that the
//! live image they map is still the writer's, and only when it moved do
//! they ask the kernel (`Reader::check_visible`).
//!
//! Every process that shares the durable file shares the page, whatever its
//! mount namespace or `/dev/shm`. Advisory: moved with an atomic add through
//! a shared mapping and never synced (a power cut may take it back; nothing
//! reads it across a reboot), and outside the checksummed header slots.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::Ordering;

use crate::error::{Error, Result};
use crate::format::{HANDOVERS, PAGE};
use crate::sys::{self, FileMap, Protection, Reservation};

/// The durable file's header page, mapped for its handover counter.
#[derive(Debug)]
pub(crate) struct Handovers {
    res: Reservation,
}

impl Handovers {
    /// Maps the header page of the durable file `file` (read-only unless
    /// `prot` says otherwise; a valid durable file is longer than the word).
    pub(crate) fn map(file: &File, path: &Path, prot: Protection) -> Result<Self> {
        let mut res =
            Reservation::new(PAGE as usize).map_err(|e| Error::io("mmap (reserve)", path, e))?;
        res.map_file(0, PAGE as usize, sys::fd_of(file), 0, FileMap::shared(prot))
            .map_err(|e| Error::io("mmap", path, e))?;
        Ok(Self { res })
    }

    /// The counter now.
    #[inline]
    pub(crate) fn load(&self) -> u64 {
        self.res
            .atomic_u64(HANDOVERS as usize)
            .load(Ordering::Acquire)
    }

    /// Moves the counter of the durable file `file` (opened read-write) on.
    pub(crate) fn bump(file: &File, path: &Path) -> Result<()> {
        let h = Self::map(file, path, Protection::ReadWrite)?;
        h.res
            .atomic_u64(HANDOVERS as usize)
            .fetch_add(1, Ordering::AcqRel);
        Ok(())
    }
}
