//! Extend-on-write of a [`Mapping`] (the AIX `shmat(SHM_MAP)` model): the
//! whole reservation is usable, and a store past the mapped part grows the
//! file from the fault handler (`sys::grow`). Keeping the file over the
//! last mapped page, how far the file was written, and cutting it there.

use crate::error::{Error, Result};
use crate::fs::{self, allocate, growth_failure};
use crate::map::{Mapping, page_up};
use crate::sys::grow::{Growth, Spec as GrowSpec};
use crate::sys::{self, MapKind};

impl Mapping {
    /// Registers the mapping for extend-on-write.
    pub(super) fn start_growth(&mut self) -> Result<()> {
        let g = Growth::register(
            &self.res,
            sys::fd_of(&self.file),
            GrowSpec {
                file_off: 0,
                kind: MapKind::Shared,
                writable: true,
                // The reservation without the guard (`check_size` rounded it to pages).
                limit: self.res.capacity() - sys::grow::GUARD,
                mapped: page_up(self.len) as usize,
                prefault: true,
                max_chunk: crate::sys::grow::CHUNK_MAX,
            },
        )
        .map_err(|e| Error::io("register for extend-on-write", &self.path, e))?;
        self.grow = Some(g);
        self.cover_last_page()
    }

    /// Grows the file with zeros to the end of the last mapped page if it
    /// ends inside it (a length that is not a whole number of pages, at
    /// open, after [`Mapping::shrink_to`] or a [`Mapping::trim`]). The rest
    /// of that page is mapped, so a store there takes no fault and grows
    /// nothing; past the file's end it would not be the file's: writeback
    /// zeroes it (`msync`, or the kernel at any time), and so may growing
    /// the file over it later. Covered, it is a store like any other.
    pub(super) fn cover_last_page(&self) -> Result<()> {
        let len = self.len();
        let end = page_up(len);
        if end == len {
            return Ok(());
        }
        let file_len = fs::file_len(&self.file, &self.path)?;
        allocate(&self.path, &self.file, file_len, end)
    }

    /// Extend-on-write: how far the file was written. That is the end of
    /// the last page past the initial (or an explicitly set) length that
    /// holds a non-zero byte, page granularity; a page only read, or
    /// written with zeros only, does not count. The page that holds that
    /// length counts too, once a byte past the length in it is non-zero
    /// (its bytes before the length are the file's already). It sees stores
    /// by any process. It costs nothing on the store path: it looks for the
    /// file's data segments from the page of the mark on (`SEEK_DATA`;
    /// grown space is allocated but unwritten, so a hole to the filesystem
    /// until touched) and reads their pages backwards from the end until
    /// one is non-zero. Without extend-on-write it is the length.
    pub fn high_water(&mut self) -> Result<u64> {
        let Some(g) = &self.grow else {
            return Ok(self.len);
        };
        let mark = self.high_water;
        let ps = sys::page_size() as u64;
        // The page holding the mark, not the next one: stores past the mark
        // inside it (no fault, no growth) count as much as any other.
        let from = mark - mark % ps;
        let to = g.mapped() as u64;
        // Segments end at the file's end at the latest: a byte past it (in
        // a page the file ends inside, after a `trim`) is not the file's.
        let segments = sys::data_segments(sys::fd_of(&self.file), from, to)
            .map_err(|e| Error::io("lseek(SEEK_DATA)", &self.path, e))?;
        let mut page = vec![0u8; ps as usize];
        'found: for &(start, end) in segments.iter().rev() {
            // Only bytes past the mark count.
            let start = start.max(mark);
            if start >= end {
                continue;
            }
            let mut at = page_up(end);
            while at > start - start % ps {
                at -= ps;
                self.res.read(at as usize, &mut page);
                let lo = (start.max(at) - at) as usize;
                let hi = (end.min(at + ps) - at) as usize;
                if page[lo..hi].iter().any(|&b| b != 0) {
                    self.high_water = mark.max((at + ps).min(self.max));
                    break 'found;
                }
            }
        }
        Ok(self.high_water)
    }

    /// Extend-on-write: the error of a growth that failed since the last
    /// call (a full disk, a quota, a store past the maximum size), whose
    /// stores landed in scratch pages and are lost; the scratch pages are
    /// dropped. `Ok` if growth never failed.
    pub fn check_growth(&mut self) -> Result<()> {
        let Some(g) = &self.grow else {
            return Ok(());
        };
        let Some(f) = g.failure() else {
            return Ok(());
        };
        let _ = g.clear_failure();
        Err(growth_failure(&self.path, f, self.max))
    }

    /// Extend-on-write: sets the file's length to the
    /// [high-water mark](Mapping::high_water), shrinking the mapping to it,
    /// and returns it. Fails, and changes nothing, if a growth failed since
    /// the last check. The mapping stays usable, but when the mark is inside
    /// a page the file now ends there: a plain store past the mark in that
    /// page is not the file's (and never counts) until the file grows over
    /// it again ([`Mapping::grow_to`], [`Mapping::write_at`] past the length,
    /// or a store in a later page).
    pub fn trim(&mut self) -> Result<u64> {
        Ok(self.trim_to_mark()?.0)
    }

    /// [`Mapping::trim`], also saying whether the file's length changed.
    fn trim_to_mark(&mut self) -> Result<(u64, bool)> {
        self.check_growth()?;
        if self.grow.is_none() {
            return Ok((self.len, false));
        }
        let hw = self.high_water()?;
        let file_len = fs::file_len(&self.file, &self.path)?;
        if hw < self.len() {
            // Truncates the file to `hw` too.
            self.cut(hw)?;
        } else {
            // The mark is in the last mapped page: the mapping stays, the
            // file (which covers the page) ends at the mark.
            self.len = hw;
            if file_len != hw {
                sys::ftruncate(sys::fd_of(&self.file), hw)
                    .map_err(|e| Error::io("ftruncate", &self.path, e))?;
            }
        }
        Ok((hw, file_len != hw))
    }

    /// Extend-on-write, as AIX `shmdt` after `shmat(SHM_MAP)`: writes the
    /// modified pages to stable storage (`msync(MS_SYNC)`), truncates the
    /// file to the high-water mark (with `fdatasync` when that changed its
    /// length, so the length is on stable storage too), unmaps, and returns
    /// the file's length.
    pub fn detach(mut self) -> Result<u64> {
        self.check_growth()?;
        self.flush()?;
        let (hw, changed) = self.trim_to_mark()?;
        if changed {
            sys::fdatasync(sys::fd_of(&self.file))
                .map_err(|e| Error::io("fdatasync", &self.path, e))?;
        }
        Ok(hw)
    }
}
