//! Extend-on-write of a [`Mapping`] (the AIX `shmat(SHM_MAP)` model): the
//! whole reservation is usable, and a store past the mapped part grows the
//! file from the fault handler (`sys::grow`). How far the file was written,
//! and cutting it there.

use crate::error::{Error, Result};
use crate::fs::growth_failure;
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
            },
        )
        .map_err(|e| Error::io("register for extend-on-write", &self.path, e))?;
        self.grow = Some(g);
        Ok(())
    }

    /// Extend-on-write: how far the file was written. That is the end of
    /// the last page past the initial (or an explicitly set) length that
    /// holds a non-zero byte, page granularity; a page only read, or
    /// written with zeros only, does not count. It sees stores by any
    /// process. It costs nothing on the store path: it looks for the file's
    /// data segments (`SEEK_DATA`; grown space is allocated but unwritten,
    /// so a hole to the filesystem until touched) and reads their pages
    /// backwards from the end until one is non-zero. Without
    /// extend-on-write it is the length.
    pub fn high_water(&mut self) -> Result<u64> {
        let Some(g) = &self.grow else {
            return Ok(self.len);
        };
        let from = page_up(self.high_water);
        let to = g.mapped() as u64;
        let segments = sys::data_segments(sys::fd_of(&self.file), from, to)
            .map_err(|e| Error::io("lseek(SEEK_DATA)", &self.path, e))?;
        let mut page = vec![0u8; sys::page_size()];
        let ps = page.len() as u64;
        'found: for &(start, end) in segments.iter().rev() {
            let mut at = page_up(end);
            while at > start - start % ps {
                at -= ps;
                self.res.read(at as usize, &mut page);
                if page.iter().any(|&b| b != 0) {
                    self.high_water = self.high_water.max((at + ps).min(self.max));
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

    /// Extend-on-write: truncates the file (and the mapping) to the
    /// [high-water mark](Mapping::high_water) and returns it. Fails, and
    /// changes nothing, if a growth failed since the last check.
    pub fn trim(&mut self) -> Result<u64> {
        self.check_growth()?;
        let hw = self.high_water()?;
        self.len = self.len();
        if hw < self.len {
            self.shrink_to(hw)?;
        }
        Ok(hw)
    }

    /// Extend-on-write, as AIX `shmdt` after `shmat(SHM_MAP)`: writes the
    /// modified pages to stable storage (`msync(MS_SYNC)`), truncates the
    /// file to the high-water mark, unmaps, and returns the file's length.
    pub fn detach(mut self) -> Result<u64> {
        self.check_growth()?;
        self.flush()?;
        self.trim()
    }
}
