//! Restoring a backup: a new durable image in place of the state's, under
//! its writer lock (`WriterOptions::restore`).

use std::path::Path;

use super::Writer;
use crate::error::{Error, Result};
use crate::fs::{self, NewFile};
use crate::options::WriterOptions;
use crate::store::StateFiles;
use crate::store::durable::Durable;
use crate::store::handover::Handovers;
use crate::store::lock::BuildLock;

impl WriterOptions {
    /// Puts the state at `backup` (made by [`Reader::backup`], or any
    /// state) in place of the state at `path`, and opens it for writing
    /// with these options. `path` need not exist; if it does, its writer
    /// lock is taken first (failing with [`Error::Locked`] while a writer
    /// runs, unless `wait_for_lock`), and the restored file gets its owner
    /// and permission bits.
    ///
    /// The restored state has the backup's bytes, length, maximum size,
    /// durability and sequence number, and a new identity: nothing of the
    /// state it replaces (its log, journal or live image, or a position
    /// published in one) is believed for it. Readers that have the old
    /// state open are told at their next read ([`Error::WriterNotVisible`]:
    /// reopen). The swap is crash-safe: a crash at any moment leaves either
    /// the old state, whole (it is checkpointed first), or the restored
    /// one. A backup with a log beside it (a state in use, not a copy made
    /// by [`Reader::backup`]) is recovered first, as its writer would, which
    /// needs its writer lock.
    ///
    /// ```
    /// # fn main() -> mapstate::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use mapstate::{Reader, Writer};
    /// let path = dir.path().join("state");
    /// let copy = dir.path().join("state.backup");
    /// let mut w = Writer::options().create(true).len(4096).open(&path)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"good")?;
    /// let good = t.commit()?;
    /// Reader::open(&path)?.backup(&copy)?;
    /// let mut t = w.begin();
    /// t.write_at(0, b"oops")?;
    /// t.commit()?;
    /// drop(w);
    ///
    /// let w = Writer::options().restore(&copy, &path)?;
    /// assert_eq!(w.seq(), good);
    /// let mut buf = [0u8; 4];
    /// Reader::open(&path)?.read_at(0, &mut buf)?;
    /// assert_eq!(&buf, b"good");
    /// # w.remove()?;
    /// # Writer::open(&copy)?.remove()?;
    /// # Ok(()) }
    /// ```
    ///
    /// [`Reader::backup`]: crate::Reader::backup
    pub fn restore(&self, backup: impl AsRef<Path>, path: impl AsRef<Path>) -> Result<Writer> {
        let (backup, path) = (backup.as_ref(), path.as_ref());
        let src = self.open_backup(backup)?;
        let opening = self.clone().create(false);
        match opening.open(path) {
            Ok(old) => {
                let owner = old.durable.owner;
                let new = NewFile::create(path, owner.mode)?;
                owner.give(new.file(), path, owner.mode)?;
                src.copy_as_new(new.file(), path)?;
                old.replace(new)?;
            }
            Err(Error::NotFound { path: missing }) if missing == path => {
                let mut new = NewFile::create(path, src.owner.mode)?;
                src.copy_as_new(new.file(), path)?;
                if !new.name_new(path)? {
                    return Err(fs::name_taken(path));
                }
                fs::sync_parent(path)?;
            }
            Err(e) => return Err(e),
        }
        opening.open(path)
    }

    /// The durable image of the backup at `path`, whole: a backup with a
    /// log beside it is recovered and checkpointed first (its live image,
    /// if that made one, deleted again).
    fn open_backup(&self, path: &Path) -> Result<Durable> {
        let file = fs::open_file(path, fs::Open::Read)?;
        fs::check_regular(path, &file)?;
        let files = StateFiles::of_open(path, &file, self.reader().live_dir_path())?;
        if std::fs::symlink_metadata(files.log()).is_ok() {
            // With default options but the live directory: these options
            // are the restored state's (a `max_size` given for it must not
            // raise the backup's).
            let mut recover = WriterOptions::new().release_live_image(true);
            recover.live_dir.clone_from(&self.live_dir);
            recover.open(path)?.close()?;
            let file = fs::open_file(path, fs::Open::Read)?;
            return Durable::open(file, path);
        }
        Durable::open(file, path)
    }
}

impl Writer {
    /// Replaces this state by the new durable image `new` (see
    /// [`WriterOptions::restore`]): checkpoints (so the old image alone
    /// holds every commit, and its log can go before the swap), then, under
    /// the build lock, retires the live image (its readers are told),
    /// deletes the log, journal and live image, and renames `new` over the
    /// durable file.
    fn replace(mut self, mut new: NewFile) -> Result<()> {
        self.checkpoint()?;
        self.release();
        let _build = BuildLock::take(&self.durable.file, self.files.durable())?;
        self.live.retire();
        Handovers::bump(&self.durable.file, self.files.durable())?;
        let temps = self.files.temporaries();
        for p in temps.iter().chain([
            &self.files.log().to_path_buf(),
            &self.files.journal().to_path_buf(),
            &self.files.live().to_path_buf(),
        ]) {
            fs::remove_if_present(p)?;
        }
        // The unlinks reach the disk before the rename: after a power cut,
        // the restored file never finds the old state's log beside it.
        fs::sync_parent(self.files.durable())?;
        new.name_replacing(self.files.durable())?;
        fs::sync_parent(self.files.durable())
    }
}
