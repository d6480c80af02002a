//! A `MAP_SHARED` file mapping that other processes change at any time,
//! seen only through atomics.
//!
//! # Safety
//!
//! A Rust reference to bytes that another process may change is undefined
//! behaviour, so this mapping is never lent out as `&[u8]` or `&mut [u8]`.
//! It is lent out as `&[AtomicU64]` (and `&AtomicU32` for a futex word),
//! whose loads and stores are defined under concurrent modification. The
//! benchmark's "plain stores" are relaxed atomic stores: on x86-64 the same
//! `mov` instructions as plain stores, with no fence.
#![allow(unsafe_code)]

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicU32, AtomicU64};

use memmap2::MmapRaw;

use crate::harness::Result;

/// A shared, writable mapping of a whole file.
#[derive(Debug)]
pub(crate) struct SharedMap {
    raw: MmapRaw,
}

impl SharedMap {
    /// Maps the whole of the existing file at `path`, `MAP_SHARED`, read and
    /// write. Its length must be a non-zero multiple of 8.
    pub(crate) fn open(path: &Path) -> Result<Self> {
        let file = File::options().read(true).write(true).open(path)?;
        let raw = MmapRaw::map_raw(&file)?;
        if raw.len() == 0 || raw.len() % 8 != 0 {
            return Err(format!(
                "{}: length {} is not a multiple of 8",
                path.display(),
                raw.len()
            )
            .into());
        }
        Ok(Self { raw })
    }

    /// The mapping as 64-bit words.
    pub(crate) fn words(&self) -> &[AtomicU64] {
        #[expect(clippy::cast_ptr_alignment, reason = "a mapping is page-aligned")]
        let ptr = self.raw.as_ptr().cast::<AtomicU64>();
        // SAFETY: the mapping is page-aligned (so `ptr` is aligned for
        // AtomicU64), `len` bytes long with `len` a multiple of 8 (checked in
        // `open`), and stays mapped while `self` lives, which the returned
        // borrow cannot outlive. AtomicU64 has the size of u64 and accepts
        // concurrent changes from other processes; the memory is only ever
        // accessed through atomics (module docs).
        unsafe { std::slice::from_raw_parts(ptr, self.raw.len() / 8) }
    }

    /// The 32-bit word at byte offset `offset` (a futex word). It must be
    /// 4-aligned and never also accessed as part of a 64-bit word.
    pub(crate) fn u32_at(&self, offset: usize) -> &AtomicU32 {
        assert!(
            offset.is_multiple_of(4) && offset + 4 <= self.raw.len(),
            "offset {offset} out of the mapping"
        );
        #[expect(
            clippy::cast_ptr_alignment,
            reason = "page-aligned base, 4-aligned offset"
        )]
        let ptr = self.raw.as_ptr().wrapping_add(offset).cast::<AtomicU32>();
        // SAFETY: the mapping is page-aligned and `offset` is a multiple of
        // 4, so `ptr` is aligned for AtomicU32; its 4 bytes lie inside the
        // mapping (asserted), which stays mapped while `self` lives, and the
        // borrow cannot outlive `self`. Accessed only through atomics
        // (module docs).
        unsafe { &*ptr }
    }

    /// `msync(MS_SYNC)` of the pages that hold `offset..offset + len`.
    pub(crate) fn flush_range(&self, offset: usize, len: usize) -> Result<()> {
        Ok(self.raw.flush_range(offset, len)?)
    }
}
