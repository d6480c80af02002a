//! [`StateFiles`]: where the files of a state are. One place names them,
//! for the library and for the tools around it.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::filesystem::{Filesystem, FsClass};

/// The files of a state named `NAME`: the durable image (`NAME`), the redo
/// log (`NAME-wal`), the checkpoint journal (`NAME-ckpt`) and the live
/// image (on tmpfs, named after the durable file's device and inode:
/// `/dev/shm/mapstate-DEV-INO.live`, or in the live directory the writer
/// was given, or `NAME-live` beside the durable file when `/dev/shm` is not
/// tmpfs).
///
/// ```
/// # fn main() -> mapstate::Result<()> {
/// use mapstate::{StateFiles, Writer};
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("state");
/// let w = Writer::options().create(true).live_dir(dir.path()).open(&path)?;
/// let files = StateFiles::of(&path, Some(dir.path()))?;
/// assert_eq!(files.log(), dir.path().join("state-wal"));
/// assert!(files.live().exists());
/// # Ok(()) }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateFiles {
    durable: PathBuf,
    log: PathBuf,
    journal: PathBuf,
    live: PathBuf,
}

impl StateFiles {
    /// The files of the state whose durable file is `path`, with its live
    /// image in `live_dir` (`None`: the default place). The durable file
    /// must exist: the live image is named after its device and inode.
    pub fn of(path: impl AsRef<Path>, live_dir: Option<&Path>) -> Result<Self> {
        let path = path.as_ref();
        let md = std::fs::metadata(path).map_err(|e| crate::fs::open_error(path, false, e))?;
        Ok(Self::named(path, md.dev(), md.ino(), live_dir))
    }

    /// As [`StateFiles::of`] for a durable file already open as `file`.
    pub(crate) fn of_open(path: &Path, file: &File, live_dir: Option<&Path>) -> Result<Self> {
        let md = file.metadata().map_err(|e| Error::io("fstat", path, e))?;
        Ok(Self::named(path, md.dev(), md.ino(), live_dir))
    }

    fn named(path: &Path, dev: u64, ino: u64, live_dir: Option<&Path>) -> Self {
        let name = format!("mapstate-{dev:x}-{ino}.live");
        let live = match live_dir {
            Some(d) => d.join(name),
            None if shm_is_tmpfs() => Path::new(SHM).join(name),
            None => beside(path, "-live"),
        };
        Self {
            durable: path.into(),
            log: beside(path, "-wal"),
            journal: beside(path, "-ckpt"),
            live,
        }
    }

    /// The durable image: the file the user names, consistent on disk as of
    /// the last checkpoint.
    pub fn durable(&self) -> &Path {
        &self.durable
    }

    /// The redo log: every commit since the last checkpoint.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// The checkpoint journal: the pages a checkpoint is writing into the
    /// durable image.
    pub fn journal(&self) -> &Path {
        &self.journal
    }

    /// The live image: the committed state now, which every process maps.
    pub fn live(&self) -> &Path {
        &self.live
    }

    /// All four, the live image first and the durable image last (the
    /// order in which a state is removed).
    pub fn all(&self) -> [&Path; 4] {
        [&self.live, &self.log, &self.journal, &self.durable]
    }
}

/// Where live images go by default, when it is tmpfs.
const SHM: &str = "/dev/shm";

fn shm_is_tmpfs() -> bool {
    Filesystem::of(SHM).is_ok_and(|f| f.class == FsClass::Memory)
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}
